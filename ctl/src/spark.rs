//! Sparklines: a row of characters whose heights follow a series, for `watch`.

use std::collections::VecDeque;

/// Eight heights, for terminals that speak UTF-8.
const BLOCKS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
/// The ASCII fallback, lowest to highest.
const ASCII: [char; 8] = ['_', '.', ',', '-', '~', '=', '*', '#'];

/// True when the locale says the terminal speaks UTF-8 (`LC_ALL`, `LC_CTYPE` or `LANG`).
pub fn utf8_locale() -> bool {
    ["LC_ALL", "LC_CTYPE", "LANG"]
        .iter()
        .filter_map(|k| std::env::var(k).ok())
        .find(|v| !v.is_empty())
        .is_some_and(|v| {
            let v = v.to_ascii_lowercase();
            v.contains("utf-8") || v.contains("utf8")
        })
}

/// The series scaled from 0 to its maximum, one character per value.
pub fn sparkline(values: &VecDeque<f64>, utf8: bool) -> String {
    let ramp = if utf8 { &BLOCKS } else { &ASCII };
    let max = values.iter().copied().fold(0.0_f64, f64::max);
    values
        .iter()
        .map(|&v| {
            if max <= 0.0 || v <= 0.0 {
                ramp[0]
            } else {
                let at = ((v / max) * (ramp.len() - 1) as f64).round() as usize;
                ramp[at.min(ramp.len() - 1)]
            }
        })
        .collect()
}

/// Appends `v`, keeping the last `keep` values.
pub fn push(series: &mut VecDeque<f64>, v: f64, keep: usize) {
    series.push_back(v);
    while series.len() > keep {
        series.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heights_follow_the_values() {
        let s: VecDeque<f64> = [0.0, 50.0, 100.0].into_iter().collect();
        assert_eq!(sparkline(&s, true), "▁▅█");
        assert_eq!(sparkline(&s, false), "_~#");
        let mut s = VecDeque::new();
        (0..40).for_each(|i| push(&mut s, f64::from(i), 30));
        assert_eq!(s.len(), 30);
        assert_eq!(s.front(), Some(&10.0));
    }
}
