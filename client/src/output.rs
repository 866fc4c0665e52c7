//! What the commands print: aligned tables and JSON on stdout, progress on stderr.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use serde::Serialize;

use crate::state::{labels_text, AgentRow, Share};

/// Prints one JSON document on stdout.
pub fn print_json<T: Serialize>(value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value).context("cannot encode the JSON output")?;
    println!("{text}");
    Ok(())
}

/// Prints one JSON document on one line of stdout (for streams of documents).
pub fn print_json_line<T: Serialize>(value: &T) -> Result<()> {
    let text = serde_json::to_string(value).context("cannot encode the JSON output")?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}").context("cannot write to stdout")?;
    out.flush().context("cannot write to stdout")
}

/// A table with a header row, columns aligned with spaces.
#[derive(Debug, Clone)]
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headers.
    pub fn new(headers: &[&str]) -> Self {
        Self {
            rows: vec![headers.iter().map(|h| h.to_string()).collect()],
        }
    }

    /// Adds a row.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Appends one cell to each row after the header, in order.
    pub fn push_column(&mut self, cells: &[String]) {
        for (row, cell) in self.rows.iter_mut().skip(1).zip(cells) {
            row.push(cell.clone());
        }
    }

    /// The table as text, one line per row, each ending with a newline.
    pub fn render(&self) -> String {
        let cols = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..cols)
            .map(|c| {
                self.rows
                    .iter()
                    .filter_map(|r| r.get(c))
                    .map(|s| s.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        for row in &self.rows {
            let mut line = String::new();
            for (c, cell) in row.iter().enumerate() {
                if c + 1 == row.len() {
                    line.push_str(cell);
                } else {
                    let pad = widths[c].saturating_sub(cell.chars().count());
                    line.push_str(cell);
                    line.push_str(&" ".repeat(pad + 2));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// Default views fit in this many columns (`--wide` lifts it).
pub const WIDTH: usize = 100;

/// Characters of an agent id the default views show (as docker shows 12 of a container id):
/// enough to tell agents apart; `--wide` and `--json` give whole ids.
pub const SHORT_ID: usize = 8;

/// The id as shown: whole with `wide`, else its first [`SHORT_ID`] characters.
pub fn short_id(id: &str, wide: bool) -> String {
    if wide {
        id.to_string()
    } else {
        id.chars().take(SHORT_ID).collect()
    }
}

/// `text` as lines of at most `width` characters (words longer than that stay whole): the
/// first starts with `first`, the others with as many spaces.
pub fn wrap(first: &str, text: &str, width: usize) -> String {
    let indent = " ".repeat(first.chars().count());
    let mut out = String::new();
    let mut line = first.to_string();
    let mut empty = true;
    for word in text.split_whitespace() {
        let len = line.chars().count();
        if !empty && len + 1 + word.chars().count() > width {
            out.push_str(line.trim_end());
            out.push('\n');
            line = indent.clone();
            empty = true;
        }
        if !empty {
            line.push(' ');
        }
        line.push_str(word);
        empty = false;
    }
    out.push_str(line.trim_end());
    out.push('\n');
    out
}

/// The agents table of `status` and `agents`. Within 100 columns by default: 8-character
/// ids, DRAINING only when some agent drains, VERSION only when the agents' versions differ;
/// `wide` shows whole ids and every column.
pub fn agents_table(rows: &[AgentRow], wide: bool) -> String {
    if rows.is_empty() {
        return "no agents: start one with `pluribus-agent`\n".into();
    }
    let draining = wide || rows.iter().any(|a| a.draining);
    let version = wide || rows.iter().any(|a| a.version != rows[0].version);
    let mut head = vec![
        "ID", "NAME", "ALIVE", "HB AGE", "ASSIGNED", "ACTIVE", "CAPACITY",
    ];
    if draining {
        head.push("DRAINING");
    }
    head.push("LABELS");
    if version {
        head.push("VERSION");
    }
    let mut t = Table::new(&head);
    for a in rows {
        let mut row = vec![
            short_id(&a.id, wide),
            a.name.clone(),
            yes_no(a.alive),
            format!("{:.1}s", a.heartbeat_age_s),
            a.assigned.to_string(),
            a.active.to_string(),
            a.capacity.map_or("-".into(), |c| c.to_string()),
        ];
        if draining {
            row.push(yes_no(a.draining));
        }
        row.push(dash_if_empty(labels_text(&a.labels)));
        if version {
            row.push(a.version.clone());
        }
        t.row(row);
    }
    t.render()
}

/// "yes" or "no".
pub fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.into()
}

/// The text, or "-" when empty.
pub fn dash_if_empty(s: String) -> String {
    if s.is_empty() {
        "-".into()
    } else {
        s
    }
}

/// `name:600 other:400`; an agent that stopped heartbeating is marked `(stale)`.
pub fn shares_text(shares: &[Share]) -> String {
    dash_if_empty(
        shares
            .iter()
            .map(|s| {
                let stale = if s.alive { "" } else { "(stale)" };
                format!("{}:{}{stale}", s.agent_name, s.devices)
            })
            .collect::<Vec<_>>()
            .join(" "),
    )
}

/// [`shares_text`] within `room` characters: the agents with the most devices first, then
/// `+N more` for those that do not fit (`status --wide` shows them all).
pub fn shares_fit(shares: &[Share], room: usize) -> String {
    let all = shares_text(shares);
    if all.chars().count() <= room {
        return all;
    }
    for keep in (0..shares.len()).rev() {
        let more = format!("+{} more", shares.len() - keep);
        let text = if keep == 0 {
            more
        } else {
            format!("{} {more}", shares_text(&shares[..keep]))
        };
        if keep == 0 || text.chars().count() <= room {
            return text;
        }
    }
    all
}

/// A time in the future relative to `now_ms`, e.g. `in 9m 12s`, or `overdue`.
pub fn until(now_ms: u64, at_ms: u64) -> String {
    if at_ms <= now_ms {
        return "overdue".into();
    }
    let secs = (at_ms - now_ms).div_ceil(1000);
    format!(
        "in {}",
        humantime::format_duration(Duration::from_secs(secs))
    )
}

/// A duration for messages, e.g. `1m 30s`.
pub fn duration(d: Duration) -> String {
    humantime::format_duration(Duration::from_millis(d.as_millis() as u64)).to_string()
}

/// `1 device`, `2 devices`.
pub fn plural(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// A rate with at most one decimal.
pub fn rate(r: f64) -> String {
    if r >= 100.0 {
        format!("{r:.0}")
    } else {
        format!("{r:.1}")
    }
}

/// Progress lines on stderr: at most one every 500 ms, only when the text changes (or every
/// 5 s); on a terminal each line replaces the previous one.
#[derive(Debug)]
pub struct Progress {
    tty: bool,
    last_text: String,
    last_at: Option<Instant>,
    open_line: bool,
}

impl Default for Progress {
    fn default() -> Self {
        Self::new()
    }
}

impl Progress {
    /// A progress reporter on stderr.
    pub fn new() -> Self {
        Self {
            tty: std::io::stderr().is_terminal(),
            last_text: String::new(),
            last_at: None,
            open_line: false,
        }
    }

    /// Shows `text` unless shown too recently.
    pub fn show(&mut self, text: &str) {
        let due = match self.last_at {
            None => true,
            Some(t) => {
                let age = t.elapsed();
                (age >= Duration::from_millis(500) && text != self.last_text)
                    || age >= Duration::from_secs(5)
            }
        };
        if !due {
            return;
        }
        let mut err = std::io::stderr().lock();
        let _ = if self.tty {
            write!(err, "\r\x1b[2K{text}")
        } else {
            writeln!(err, "{text}")
        };
        let _ = err.flush();
        self.open_line = self.tty;
        self.last_text = text.to_string();
        self.last_at = Some(Instant::now());
    }

    /// Ends the progress line, so that what follows starts on a new line.
    pub fn finish(&mut self) {
        if self.open_line {
            eprintln!();
            self.open_line = false;
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns() {
        let mut t = Table::new(&["NAME", "N"]);
        t.row(vec!["long-name".into(), "1".into()]);
        t.row(vec!["x".into(), "1000".into()]);
        assert_eq!(t.render(), "NAME       N\nlong-name  1\nx          1000\n");
    }

    #[test]
    fn long_text_wraps_under_the_width() {
        let text = wrap("f1: ", "one two three four five six", 14);
        assert_eq!(text, "f1: one two\n    three four\n    five six\n");
        assert!(text.lines().all(|l| l.chars().count() <= 14));
        assert_eq!(wrap("x: ", "short", 100), "x: short\n");
        assert_eq!(short_id("0123456789abcdef", false), "01234567");
        assert_eq!(short_id("0123456789abcdef", true), "0123456789abcdef");
        let share = |name: &str, n: u64| Share {
            agent_id: name.into(),
            agent_name: name.into(),
            devices: n,
            alive: true,
        };
        let shares = [share("alpha", 600), share("beta", 300), share("gamma", 100)];
        assert_eq!(shares_fit(&shares, 100), "alpha:600 beta:300 gamma:100");
        assert_eq!(shares_fit(&shares, 27), "alpha:600 beta:300 +1 more");
        assert_eq!(shares_fit(&shares, 12), "+3 more");
    }

    #[test]
    fn times_read_well() {
        assert_eq!(until(1_000, 62_000), "in 1m 1s");
        assert_eq!(until(5_000, 1_000), "overdue");
        assert_eq!(duration(Duration::from_secs(60)), "1m");
        assert_eq!(rate(12.345), "12.3");
        assert_eq!(rate(1234.4), "1234");
    }
}
