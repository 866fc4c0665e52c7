//! One-of enums (`arrival: {ramp: {over: 60s}}`) read the same way in every format.
//!
//! serde's externally tagged enums take a one-key map in JSON and TOML, but serde_yaml_ng
//! wants a YAML tag (`arrival: !ramp {over: 60s}`) and refused the map form that the docs
//! show. An enum declared with `#[serde(remote = "Self")]` (which turns its derived impls
//! into inherent functions) and then passed to [`one_of_enum!`] accepts the one-key map in
//! every format, a YAML tag as well, and a bare string for a unit variant. Reading stays
//! streaming, so YAML errors keep their line.

/// Implements `Deserialize` (map, tag or string, as above) and `Serialize` (the derived
/// form) for an enum declared with `#[derive(Serialize, Deserialize)]` and
/// `#[serde(remote = "Self")]`. `$what` names the value in errors ("a load shape").
#[macro_export]
#[doc(hidden)]
macro_rules! one_of_enum {
    ($ty:ty, $what:expr) => {
        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct OneOf;
                impl<'de> serde::de::Visitor<'de> for OneOf {
                    type Value = $ty;
                    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                        f.write_str(concat!($what, ": a map with one key that names its kind"))
                    }
                    fn visit_map<A: serde::de::MapAccess<'de>>(
                        self,
                        mut map: A,
                    ) -> Result<$ty, A::Error> {
                        // The inherent (derived) deserializer, reading the map as an enum.
                        let value = <$ty>::deserialize(
                            serde::de::value::MapAccessDeserializer::new(&mut map),
                        )?;
                        if map.next_key::<serde::de::IgnoredAny>()?.is_some() {
                            return Err(serde::de::Error::custom(concat!(
                                $what,
                                " takes one kind: write a map with a single key"
                            )));
                        }
                        Ok(value)
                    }
                    fn visit_enum<A: serde::de::EnumAccess<'de>>(
                        self,
                        data: A,
                    ) -> Result<$ty, A::Error> {
                        <$ty>::deserialize(serde::de::value::EnumAccessDeserializer::new(data))
                    }
                    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<$ty, E> {
                        <$ty>::deserialize(serde::de::IntoDeserializer::<E>::into_deserializer(s))
                    }
                }
                d.deserialize_any(OneOf)
            }
        }
        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                <$ty>::serialize(self, s)
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    #[serde(remote = "Self", rename_all = "snake_case", deny_unknown_fields)]
    enum Kind {
        Ramp { over: u32 },
        Flat,
        List(Vec<u32>),
    }
    crate::one_of_enum!(Kind, "a kind");

    #[derive(Debug, PartialEq, Deserialize)]
    struct Holder {
        k: Kind,
    }

    fn yaml(s: &str) -> Result<Holder, String> {
        serde_yaml_ng::from_str(s).map_err(|e| e.to_string())
    }

    #[test]
    fn every_format_takes_the_map_form() {
        let want = Kind::Ramp { over: 3 };
        assert_eq!(
            yaml("k: {ramp: {over: 3}}").map(|h| h.k),
            Ok(Kind::Ramp { over: 3 })
        );
        assert_eq!(
            yaml("k:\n  ramp:\n    over: 3\n").map(|h| h.k),
            Ok(Kind::Ramp { over: 3 })
        );
        assert_eq!(
            yaml("k: !ramp {over: 3}").map(|h| h.k),
            Ok(Kind::Ramp { over: 3 })
        );
        let json: Holder = serde_json::from_str(r#"{"k":{"ramp":{"over":3}}}"#).expect("json");
        assert_eq!(json.k, want);
        let toml: Holder = toml::from_str("[k.ramp]\nover = 3\n").expect("toml");
        assert_eq!(toml.k, want);
        assert_eq!(
            yaml("k: {list: [1, 2]}").map(|h| h.k),
            Ok(Kind::List(vec![1, 2]))
        );
        assert_eq!(yaml("k: flat").map(|h| h.k), Ok(Kind::Flat));
        assert_eq!(
            serde_json::to_string(&want).ok().as_deref(),
            Some(r#"{"ramp":{"over":3}}"#)
        );
    }

    #[test]
    fn mistakes_are_named_with_their_line() {
        let e = yaml("k:\n  ramp: {over: 3, under: 1}\n").expect_err("unknown field");
        assert!(e.contains("under") && e.contains("line 2"), "{e}");
        let e = yaml("k:\n  rmp: {over: 3}\n").expect_err("unknown kind");
        assert!(e.contains("rmp") && e.contains("ramp"), "{e}");
        let e = yaml("k: {ramp: {over: 3}, flat: null}").expect_err("two kinds");
        assert!(e.contains("single key"), "{e}");
    }
}
