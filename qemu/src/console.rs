//! Console text: splitting QEMU's output bytes into lines, and the patterns
//! a [`crate::Session`] waits for.
//!
//! The serial console carries `\r\n` line ends, arbitrary bytes and, when CPUs
//! print at once, lines interleaved mid-way. Lines are kept as lossy UTF-8
//! with the line end removed; patterns are matched against one whole line at
//! a time, so a regex capture never sees half a number.

use regex::Regex;

/// Turns a byte stream into lines.
#[derive(Default, Debug)]
pub(crate) struct LineSplitter {
    partial: Vec<u8>,
}

impl LineSplitter {
    /// Feeds `bytes`; returns the lines they complete.
    pub(crate) fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        let mut lines = Vec::new();
        for &b in bytes {
            if b == b'\n' {
                lines.push(decode(&self.partial));
                self.partial.clear();
            } else {
                self.partial.push(b);
            }
        }
        lines
    }

    /// The incomplete last line, if any (e.g. a shell prompt).
    pub(crate) fn partial(&self) -> Option<String> {
        (!self.partial.is_empty()).then(|| decode(&self.partial))
    }

    /// Ends the stream: the incomplete last line becomes a line.
    pub(crate) fn finish(&mut self) -> Option<String> {
        let last = self.partial();
        self.partial.clear();
        last
    }
}

/// Bytes of one line to text: lossy UTF-8, without `\r`s at the end.
fn decode(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    text.trim_end_matches('\r').to_string()
}

/// What [`crate::Session::wait_for`] looks for in a console line.
#[derive(Clone, Debug)]
pub enum Pattern {
    /// The line contains this text.
    Substring(String),
    /// The regex matches somewhere in the line.
    Regex(Regex),
}

impl Pattern {
    /// A regex pattern; panics never, returns the regex error instead.
    pub fn regex(re: &str) -> Result<Self, regex::Error> {
        Regex::new(re).map(Pattern::Regex)
    }

    /// The capture groups (group 0 = the whole match) if `line` matches.
    pub fn captures(&self, line: &str) -> Option<Vec<Option<String>>> {
        match self {
            Pattern::Substring(s) => line.contains(s.as_str()).then(|| vec![Some(s.clone())]),
            Pattern::Regex(re) => re.captures(line).map(|caps| {
                caps.iter()
                    .map(|m| m.map(|m| m.as_str().to_string()))
                    .collect()
            }),
        }
    }

    /// Whether `line` matches.
    pub fn is_match(&self, line: &str) -> bool {
        match self {
            Pattern::Substring(s) => line.contains(s.as_str()),
            Pattern::Regex(re) => re.is_match(line),
        }
    }
}

impl std::fmt::Display for Pattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Pattern::Substring(s) => write!(f, "{s:?}"),
            Pattern::Regex(re) => write!(f, "/{}/", re.as_str()),
        }
    }
}

impl From<&str> for Pattern {
    fn from(s: &str) -> Self {
        Pattern::Substring(s.to_string())
    }
}

impl From<String> for Pattern {
    fn from(s: String) -> Self {
        Pattern::Substring(s)
    }
}

impl From<Regex> for Pattern {
    fn from(re: Regex) -> Self {
        Pattern::Regex(re)
    }
}

impl From<&Pattern> for Pattern {
    fn from(p: &Pattern) -> Self {
        p.clone()
    }
}

/// A console line that matched a [`Pattern`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Match {
    /// The whole line.
    pub line: String,
    /// Its index among the session's console lines (0 = first).
    pub index: usize,
    /// Capture groups; 0 is the matched text.
    pub captures: Vec<Option<String>>,
}

impl Match {
    /// Capture group `i`, if it took part in the match.
    pub fn get(&self, i: usize) -> Option<&str> {
        self.captures.get(i).and_then(|c| c.as_deref())
    }
}

/// Index and capture groups of the first of `lines` (numbered from `first`)
/// that `pattern` matches.
pub(crate) fn find_in<'a>(
    lines: impl IntoIterator<Item = &'a String>,
    first: usize,
    pattern: &Pattern,
) -> Option<Match> {
    lines.into_iter().enumerate().find_map(|(i, line)| {
        pattern.captures(line).map(|captures| Match {
            line: line.clone(),
            index: first + i,
            captures,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_crlf_lines_across_chunks() {
        let mut s = LineSplitter::default();
        assert_eq!(s.push(b"kcore: KC"), Vec::<String>::new());
        assert_eq!(s.partial().as_deref(), Some("kcore: KC"));
        assert_eq!(
            s.push(b"ore v0.1.0\r\n[    0.0] Booting\r"),
            ["kcore: KCore v0.1.0"]
        );
        assert_eq!(s.push(b"\n\n~ # "), ["[    0.0] Booting", ""]);
        assert_eq!(s.finish().as_deref(), Some("~ # "));
        assert_eq!(s.finish(), None);
    }

    #[test]
    fn invalid_utf8_is_replaced() {
        let mut s = LineSplitter::default();
        assert_eq!(s.push(b"a\xffb\n"), ["a\u{fffd}b"]);
    }

    #[test]
    fn substring_and_regex_patterns() {
        let p: Pattern = "KSERV-DONE".into();
        assert!(p.is_match("KSERV-DONE: 3 passed, 0 failed"));
        assert!(!p.is_match("KSERV-TEST boot: PASS"));

        let p = Pattern::regex(r"KSERV-TIME cntvct=(\d+) cntfrq=(\d+)").unwrap_or_else(|e| {
            unreachable!("valid regex: {e}");
        });
        let caps = p
            .captures("junk KSERV-TIME cntvct=123 cntfrq=62500000")
            .unwrap_or_default();
        assert_eq!(caps.len(), 3);
        assert_eq!(caps[1].as_deref(), Some("123"));
        assert_eq!(caps[2].as_deref(), Some("62500000"));
        assert!(Pattern::regex("(").is_err());
        assert_eq!(p.to_string(), r"/KSERV-TIME cntvct=(\d+) cntfrq=(\d+)/");
    }

    #[test]
    fn find_in_numbers_lines_from_first() {
        let lines: Vec<String> = ["a", "b KSERV", "c KSERV"].map(String::from).into();
        let m = find_in(&lines[1..], 1, &"KSERV".into());
        assert_eq!(
            m.map(|m| (m.index, m.line)),
            Some((1, "b KSERV".to_string()))
        );
        assert_eq!(find_in(&lines, 0, &"zzz".into()), None);
    }
}
