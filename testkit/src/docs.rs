//! The code blocks of the project's Markdown docs, so that tests can run (or at least
//! parse) every documented command and fleet file, and a documented example can never
//! silently break.

use std::path::{Path, PathBuf};

/// The Markdown files whose examples are tested, relative to the workspace root.
pub const DOC_FILES: &[&str] = &[
    "README.md",
    "ctl/README.md",
    "deploy/README.md",
    "examples/seed-mqtt/README.md",
];

/// A fenced code block.
#[derive(Debug, Clone)]
pub struct Block {
    /// The file, relative to the workspace root.
    pub file: String,
    /// The line of the opening fence (1-based).
    pub line: usize,
    /// The fence's language (`sh`, `yaml`, ...).
    pub lang: String,
    /// The text between the fences.
    pub text: String,
}

impl Block {
    /// `file:line`, for messages.
    pub fn at(&self) -> String {
        format!("{}:{}", self.file, self.line)
    }
}

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(".."))
}

/// Every fenced code block of every file in [`DOC_FILES`].
pub fn doc_blocks() -> Vec<Block> {
    DOC_FILES
        .iter()
        .flat_map(|f| {
            let text = std::fs::read_to_string(workspace_root().join(f))
                .unwrap_or_else(|e| panic!("cannot read {f}: {e}"));
            code_blocks(f, &text)
        })
        .collect()
}

/// The fenced code blocks of one Markdown text.
pub fn code_blocks(file: &str, text: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut open: Option<Block> = None;
    for (i, l) in text.lines().enumerate() {
        let fence = l.trim_start().strip_prefix("```");
        match (fence, open.take()) {
            (Some(lang), None) => {
                open = Some(Block {
                    file: file.to_string(),
                    line: i + 1,
                    lang: lang.trim().to_string(),
                    text: String::new(),
                })
            }
            (Some(_), Some(b)) => out.push(b),
            (None, Some(mut b)) => {
                b.text.push_str(l);
                b.text.push('\n');
                open = Some(b);
            }
            (None, None) => {}
        }
    }
    out
}

/// The command lines of shell blocks that run `program` (a line ending in `\\` goes on on the
/// next), split into words as the shell would, without the trailing comment or
/// redirection; each with its `file:line`.
pub fn commands(blocks: &[Block], program: &str) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    for b in blocks.iter().filter(|b| b.lang == "sh") {
        let lines: Vec<&str> = b.text.lines().collect();
        let mut next = 0;
        while next < lines.len() {
            let i = next;
            let mut l = lines[i].trim().to_string();
            next += 1;
            while l.ends_with('\\') && next < lines.len() {
                l.pop();
                l.push(' ');
                l.push_str(lines[next].trim());
                next += 1;
            }
            let l = l.as_str();
            if !l.starts_with(&format!("{program} ")) && l != program {
                continue;
            }
            let at = format!("{}:{}", b.file, b.line + 1 + i);
            let words = shlex::split(l).unwrap_or_else(|| panic!("{at}: cannot split `{l}`"));
            let words = words
                .into_iter()
                .take_while(|w| !w.starts_with('#') && w != ">" && w != "|" && w != "&")
                .collect();
            out.push((at, words));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backslash_continues_a_command() {
        let md = "```sh\npluribusctl deploy-fleet f --count 1 \\\n  --sink nats   # x\n```\n";
        let c = commands(&code_blocks("R.md", md), "pluribusctl");
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].0, "R.md:2");
        assert_eq!(c[0].1.last().map(String::as_str), Some("nats"));
    }

    #[test]
    fn blocks_and_commands_are_found() {
        let md = "x\n```sh\npluribusctl status f1 --json   # all\nls\npluribusctl report --csv > r.csv\n```\n```yaml\nname: a\n```\n";
        let blocks = code_blocks("R.md", md);
        assert_eq!(blocks.len(), 2);
        assert_eq!((blocks[1].lang.as_str(), blocks[1].line), ("yaml", 7));
        let cmds = commands(&blocks, "pluribusctl");
        assert_eq!(cmds[0].0, "R.md:3");
        assert_eq!(cmds[0].1, ["pluribusctl", "status", "f1", "--json"]);
        assert_eq!(cmds[1].1, ["pluribusctl", "report", "--csv"]);
    }
}
