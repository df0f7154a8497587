//! How the guest reports: console lines and the final status word.
//!
//! Every test in [`crate::TESTS`] prints one line, in order:
//! `kcore-test-guest: <name>: PASS` or `kcore-test-guest: <name>: FAIL
//! <detail>`; or, only for one of [`crate::gic::ITS_TESTS`] in a VM without
//! an ITS, `kcore-test-guest: <name>: SKIP <why>`: it did not run, and
//! counts as passed in the status (the driver, which knows what the VM has,
//! decides whether the skip was right). The last line is `kcore-test-guest: result: <p> passed, <f>
//! failed`, after which the guest writes [`Status::to_word`] to
//! [`crate::testdev::STATUS`] and calls PSCI `SYSTEM_OFF`. If a test dies (an
//! unexpected exception), its FAIL line says so and the tests after it count
//! as failed without a line of their own, so `passed + failed` is always
//! `TESTS.len()`.

/// What every line of the guest's console output starts with.
pub const LINE_PREFIX: &str = "kcore-test-guest: ";

/// The name of the final summary line.
pub const RESULT_NAME: &str = "result";

/// The guest's final tally, written to [`crate::testdev::STATUS`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Status {
    /// Tests that passed (or skipped).
    pub passed: u32,
    /// Tests that failed or never ran.
    pub failed: u32,
}

impl Status {
    /// The 64-bit status register value: `passed << 32 | failed`.
    pub const fn to_word(self) -> u64 {
        (self.passed as u64) << 32 | self.failed as u64
    }

    /// The tally a status register value encodes.
    pub const fn from_word(word: u64) -> Self {
        Self {
            passed: (word >> 32) as u32,
            failed: word as u32,
        }
    }

    /// Whether every test in [`crate::TESTS`] passed (or skipped).
    pub const fn all_passed(self) -> bool {
        self.failed == 0 && self.passed as usize == crate::TESTS.len()
    }
}

/// One parsed console line of the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Line<'a> {
    /// `<name>: PASS`.
    Pass {
        /// The test's name.
        name: &'a str,
    },
    /// `<name>: FAIL <detail>`.
    Fail {
        /// The test's name.
        name: &'a str,
        /// What went wrong, as the guest put it.
        detail: &'a str,
    },
    /// `<name>: SKIP <why>`.
    Skip {
        /// The test's name.
        name: &'a str,
        /// Why it did not run, as the guest put it.
        why: &'a str,
    },
    /// `result: <p> passed, <f> failed`.
    Result(Status),
}

/// Parses one console line (with or without its line ending); `None` for
/// anything that is not a well-formed guest line.
pub fn parse_line(line: &str) -> Option<Line<'_>> {
    let line = line.trim_end_matches(['\r', '\n']);
    let (name, rest) = line.strip_prefix(LINE_PREFIX)?.split_once(": ")?;
    if name == RESULT_NAME {
        let (passed, failed) = rest.strip_suffix(" failed")?.split_once(" passed, ")?;
        return Some(Line::Result(Status {
            passed: passed.parse().ok()?,
            failed: failed.parse().ok()?,
        }));
    }
    if name.is_empty() || name.contains(' ') {
        return None;
    }
    match rest {
        "PASS" => Some(Line::Pass { name }),
        "FAIL" => Some(Line::Fail { name, detail: "" }),
        _ => match rest.strip_prefix("SKIP ") {
            Some(why) if !why.is_empty() => Some(Line::Skip { name, why }),
            _ => Some(Line::Fail {
                name,
                detail: rest.strip_prefix("FAIL ")?,
            }),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_word_round_trips() {
        let s = Status {
            passed: 21,
            failed: 1,
        };
        assert_eq!(s.to_word(), 0x0000_0015_0000_0001);
        assert_eq!(Status::from_word(s.to_word()), s);
        assert!(!s.all_passed());
        let all = Status {
            passed: crate::TESTS.len() as u32,
            failed: 0,
        };
        assert!(all.all_passed());
    }

    #[test]
    fn parses_the_guests_lines() {
        assert_eq!(
            parse_line("kcore-test-guest: mmio8: PASS\r\n"),
            Some(Line::Pass { name: "mmio8" })
        );
        assert_eq!(
            parse_line("kcore-test-guest: sgi: FAIL round 3: no PONG"),
            Some(Line::Fail {
                name: "sgi",
                detail: "round 3: no PONG"
            })
        );
        assert_eq!(
            parse_line("kcore-test-guest: its: SKIP no ITS"),
            Some(Line::Skip {
                name: "its",
                why: "no ITS"
            })
        );
        assert_eq!(
            parse_line("kcore-test-guest: result: 21 passed, 1 failed\n"),
            Some(Line::Result(Status {
                passed: 21,
                failed: 1
            }))
        );
    }

    #[test]
    fn rejects_other_lines() {
        for line in [
            "",
            "mmio8: PASS",
            "kcore-test-guest: mmio8: OK",
            "kcore-test-guest: mmio8 PASS",
            "kcore-test-guest: a b: PASS",
            "kcore-test-guest: mmio8: FAILED",
            "kcore-test-guest: its: SKIP",
            "kcore-test-guest: its: SKIP ",
            "kcore-test-guest: result: 3 passed",
            "kcore-test-guest: result: x passed, 0 failed",
        ] {
            assert_eq!(parse_line(line), None, "{line:?}");
        }
    }
}
