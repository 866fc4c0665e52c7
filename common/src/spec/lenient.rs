//! Fields a fleet file may write the way the CLI flag is written: `broker: mqtt://a:1883,
//! mqtt://b:1883` as well as a list, and `connect_rate: 2000/s` as well as a number.

use std::fmt::Display;
use std::str::FromStr;

use serde::de::{self, Deserializer};
use serde::Deserialize;

/// Parses a rate written `N` or `N/s` (a positive, finite number per second).
pub fn per_second(s: &str) -> Result<f64, String> {
    let n = s.trim().strip_suffix("/s").unwrap_or(s.trim());
    match n.trim().parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(r),
        _ => Err(format!(
            "'{s}' is not a rate: write a number per second, e.g. 2000/s"
        )),
    }
}

/// A list written as a sequence or as one comma-separated string.
pub fn comma_list<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr + Deserialize<'de>,
    T::Err: Display,
{
    struct ListVisitor<T>(std::marker::PhantomData<T>);
    impl<'de, T> de::Visitor<'de> for ListVisitor<T>
    where
        T: FromStr + Deserialize<'de>,
        T::Err: Display,
    {
        type Value = Vec<T>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a list, or one comma-separated string")
        }
        fn visit_str<E: de::Error>(self, s: &str) -> Result<Vec<T>, E> {
            s.split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(|p| p.parse::<T>().map_err(|e| E::custom(format!("'{p}': {e}"))))
                .collect()
        }
        fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            let mut out = Vec::new();
            while let Some(v) = seq.next_element()? {
                out.push(v);
            }
            Ok(out)
        }
    }
    d.deserialize_any(ListVisitor(std::marker::PhantomData))
}

/// An optional rate written as a number or as `N/s`.
pub fn opt_rate<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Rate {
        Number(f64),
        Text(String),
    }
    match Option::<Rate>::deserialize(d)? {
        None => Ok(None),
        Some(Rate::Number(n)) => Ok(Some(n)),
        Some(Rate::Text(s)) => per_second(&s).map(Some).map_err(de::Error::custom),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct T {
        #[serde(default, deserialize_with = "comma_list")]
        list: Vec<String>,
        #[serde(default, deserialize_with = "opt_rate")]
        rate: Option<f64>,
    }

    #[test]
    fn lists_and_rates_take_either_form() {
        let t: T = serde_json::from_str(r#"{"list":"a, b,c","rate":"2000/s"}"#).unwrap();
        assert_eq!(
            (t.list, t.rate),
            (vec!["a".into(), "b".into(), "c".into()], Some(2000.0))
        );
        let t: T = serde_json::from_str(r#"{"list":["a"],"rate":5}"#).unwrap();
        assert_eq!((t.list, t.rate), (vec!["a".to_string()], Some(5.0)));
        let e = serde_json::from_str::<T>(r#"{"rate":"fast"}"#)
            .err()
            .unwrap();
        assert!(e.to_string().contains("e.g. 2000/s"), "{e}");
        assert_eq!(per_second(" 10/s "), Ok(10.0));
        assert!(per_second("0").is_err() && per_second("-1/s").is_err());
    }
}
