//! KServ's console protocol, as spoken by its `/init`, and batch runs.
//!
//! `kserv.mode=batch kserv.tests=a,b kserv.cpus=N` on the kernel command line
//! makes `/init` run the named tests and power off. It prints
//! `KSERV-TIME cntvct=<u64> cntfrq=<u64>` first (the virtual counter: under
//! `-icount shift=0,sleep=off`, instruction time since reset), then
//! `KSERV-TEST <name>: PASS|FAIL <detail>` per test and finally
//! `KSERV-DONE: <p> passed, <f> failed`. Benchmark tests also print
//! `KSERV-BENCH <name> iters=<n> ticks=<t> cntfrq=<f>` (or `KSERV-BENCH
//! <name> FAIL <why>`) per figure. KCore's own lines start `kcore: `.
//! Markers are searched anywhere in a line, since kernel messages from other
//! CPUs may be printed into the middle of one.

use std::fmt;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use crate::{Error, Machine, Pattern, Session};

/// The prefix of every line KCore prints.
pub const KCORE_PREFIX: &str = "kcore: ";
/// KCore's banner, printed early at EL2 (`kcore: KCore v0.1.0 at EL2`).
pub const KCORE_BANNER: &str = "kcore: KCore v";
/// Linux's first console line.
pub const LINUX_BANNER: &str = "Booting Linux on physical CPU";
/// Printed by `/init` when every test has run.
pub const DONE_MARKER: &str = "KSERV-DONE: ";
/// The start of a Linux panic report.
pub const KERNEL_PANIC: &str = "Kernel panic - not syncing";
/// The end of a Linux panic report.
pub const KERNEL_PANIC_END: &str = "---[ end Kernel panic";

/// How long QEMU may take to exit after `KSERV-DONE`.
pub const POWER_OFF_TIMEOUT: Duration = Duration::from_secs(60);

/// The test names `/init` knows.
pub const TESTS: &[&str] = &[
    "boot",
    "version",
    "hvc",
    "hotplug",
    "protection",
    "vmisolation",
    "kvmapi",
    "nokcore",
    "kvmguest",
    "kvmlife",
    "kvmselftests",
    "kvmbench",
    "kvmbench-linux",
    "kvmbench-vm",
    "attacks",
    "reset",
    "debqemu",
    "efi",
];

/// The kernel arguments for a batch run of `tests` expecting `cpus` CPUs.
pub fn batch_args(tests: &[&str], cpus: u32) -> String {
    format!(
        "kserv.mode=batch kserv.cpus={cpus} kserv.tests={}",
        tests.join(",")
    )
}

/// A test's verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// `PASS`.
    Pass,
    /// `FAIL`.
    Fail,
}

/// One `KSERV-TEST <name>: PASS|FAIL <detail>` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestLine {
    /// The test.
    pub name: String,
    /// Its verdict.
    pub verdict: Verdict,
    /// What the test said about it.
    pub detail: String,
}

impl fmt::Display for TestLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = match self.verdict {
            Verdict::Pass => "PASS",
            Verdict::Fail => "FAIL",
        };
        write!(f, "KSERV-TEST {}: {verdict}", self.name)?;
        if !self.detail.is_empty() {
            write!(f, " {}", self.detail)?;
        }
        Ok(())
    }
}

/// Parses a `KSERV-TEST` line.
pub fn parse_test_line(line: &str) -> Option<TestLine> {
    let rest = &line[line.find("KSERV-TEST ")? + "KSERV-TEST ".len()..];
    let (name, rest) = rest.split_once(": ")?;
    let rest = rest.trim_end();
    let (verdict, detail) = rest.split_once(' ').unwrap_or((rest, ""));
    let verdict = match verdict {
        "PASS" => Verdict::Pass,
        "FAIL" => Verdict::Fail,
        _ => return None,
    };
    let name = name.trim();
    (!name.is_empty() && !name.contains(char::is_whitespace)).then(|| TestLine {
        name: name.to_string(),
        verdict,
        detail: detail.trim().to_string(),
    })
}

/// `KSERV-DONE: <p> passed, <f> failed`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Done {
    /// Tests that passed.
    pub passed: u32,
    /// Tests that failed.
    pub failed: u32,
}

/// Parses a `KSERV-DONE` line.
pub fn parse_done(line: &str) -> Option<Done> {
    let rest = &line[line.find(DONE_MARKER)? + DONE_MARKER.len()..];
    let (passed, rest) = rest.trim().split_once(" passed, ")?;
    let failed = rest.strip_suffix(" failed").unwrap_or(rest).trim();
    Some(Done {
        passed: passed.trim().parse().ok()?,
        failed: failed.parse().ok()?,
    })
}

/// `KSERV-TIME cntvct=<u64> cntfrq=<u64>`: the virtual counter when `/init`
/// started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Time {
    /// `CNTVCT_EL0`.
    pub cntvct: u64,
    /// `CNTFRQ_EL0`, ticks per second.
    pub cntfrq: u64,
}

impl Time {
    /// The counter in milliseconds.
    pub fn millis(&self) -> f64 {
        if self.cntfrq == 0 {
            f64::NAN
        } else {
            self.cntvct as f64 * 1000.0 / self.cntfrq as f64
        }
    }
}

/// Parses a `KSERV-TIME` line.
pub fn parse_time(line: &str) -> Option<Time> {
    let rest = &line[line.find("KSERV-TIME ")? + "KSERV-TIME ".len()..];
    let mut cntvct = None;
    let mut cntfrq = None;
    for word in rest.split_whitespace() {
        if let Some(v) = word.strip_prefix("cntvct=") {
            cntvct = v.parse().ok();
        } else if let Some(v) = word.strip_prefix("cntfrq=") {
            cntfrq = v.parse().ok();
        }
    }
    Some(Time {
        cntvct: cntvct?,
        cntfrq: cntfrq?,
    })
}

/// A benchmark's figure: `ticks` of the virtual counter at `cntfrq` for
/// `iters` iterations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BenchFigure {
    /// Iterations measured.
    pub iters: u64,
    /// Counter ticks they took in all.
    pub ticks: u64,
    /// Counter ticks per second.
    pub cntfrq: u64,
}

impl BenchFigure {
    /// Nanoseconds per iteration (NaN without a frequency or iterations).
    pub fn ns_per_iter(&self) -> f64 {
        if self.cntfrq == 0 || self.iters == 0 {
            f64::NAN
        } else {
            self.ticks as f64 * 1e9 / self.cntfrq as f64 / self.iters as f64
        }
    }
}

/// One `KSERV-BENCH` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BenchLine {
    /// The benchmark.
    pub name: String,
    /// Its figure, or why there is none.
    pub figure: Result<BenchFigure, String>,
}

/// Parses a `KSERV-BENCH` line: every field present and numeric, or `None`.
pub fn parse_bench_line(line: &str) -> Option<BenchLine> {
    const MARKER: &str = "KSERV-BENCH ";
    let rest = line[line.find(MARKER)? + MARKER.len()..].trim_end();
    let (name, rest) = rest.split_once(' ')?;
    if name.is_empty() {
        return None;
    }
    if let Some(why) = rest.strip_prefix("FAIL") {
        return Some(BenchLine {
            name: name.to_string(),
            figure: Err(why.trim().to_string()),
        });
    }
    let (mut iters, mut ticks, mut cntfrq) = (None, None, None);
    for word in rest.split_whitespace() {
        let (key, value) = word.split_once('=')?;
        let value = value.parse().ok()?;
        let slot = match key {
            "iters" => &mut iters,
            "ticks" => &mut ticks,
            "cntfrq" => &mut cntfrq,
            _ => return None,
        };
        if slot.replace(value).is_some() {
            return None;
        }
    }
    Some(BenchLine {
        name: name.to_string(),
        figure: Ok(BenchFigure {
            iters: iters?,
            ticks: ticks?,
            cntfrq: cntfrq?,
        }),
    })
}

/// What a batch run printed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BatchReport {
    /// Every `KSERV-TEST` line, in order.
    pub tests: Vec<TestLine>,
    /// The `KSERV-DONE` line, if it came.
    pub done: Option<Done>,
    /// The `KSERV-TIME` line, if it came.
    pub time: Option<Time>,
    /// Every `KSERV-BENCH` line, in order.
    pub benches: Vec<BenchLine>,
    /// Index of KCore's banner line, if any.
    pub kcore_banner: Option<usize>,
    /// Index of Linux's banner line, if any.
    pub linux_banner: Option<usize>,
    /// QEMU's exit status, if it exited.
    pub exit: Option<ExitStatus>,
    /// On a machine that cannot power off: KCore said it parked every CPU
    /// ([`PARKED_MARKER`]) and the harness ended QEMU.
    pub parked: bool,
}

impl BatchReport {
    /// Reads the markers out of console `lines`.
    pub fn from_lines(lines: &[String]) -> Self {
        let mut report = BatchReport::default();
        for (i, line) in lines.iter().enumerate() {
            if let Some(t) = parse_test_line(line) {
                report.tests.push(t);
            } else if let Some(d) = parse_done(line) {
                report.done.get_or_insert(d);
            } else if let Some(t) = parse_time(line) {
                report.time.get_or_insert(t);
            } else if let Some(b) = parse_bench_line(line) {
                report.benches.push(b);
            }
            if report.kcore_banner.is_none() && line.contains(KCORE_BANNER) {
                report.kcore_banner = Some(i);
            }
            if report.linux_banner.is_none() && line.contains(LINUX_BANNER) {
                report.linux_banner = Some(i);
            }
        }
        report
    }

    /// The verdict of test `name`, if it reported one.
    pub fn verdict(&self, name: &str) -> Option<Verdict> {
        self.tests
            .iter()
            .find(|t| t.name == name)
            .map(|t| t.verdict)
    }

    /// The detail of test `name`'s result line (after its verdict); empty if
    /// it reported none.
    pub fn detail(&self, name: &str) -> &str {
        self.tests
            .iter()
            .find(|t| t.name == name)
            .map_or("", |t| t.detail.as_str())
    }

    /// Checks that each of `expected` reported exactly one PASS, nothing
    /// failed, `KSERV-DONE` agrees and QEMU exited successfully. Returns every
    /// problem found.
    pub fn check(&self, expected: &[&str]) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        for name in expected {
            let lines: Vec<&TestLine> = self.tests.iter().filter(|t| t.name == *name).collect();
            match lines.as_slice() {
                [] => problems.push(format!("test `{name}` reported nothing")),
                [t] if t.verdict == Verdict::Pass => {}
                [t] => problems.push(format!("test `{name}` failed: {t}")),
                _ => problems.push(format!("test `{name}` reported {} times", lines.len())),
            }
        }
        for t in &self.tests {
            if !expected.contains(&t.name.as_str()) {
                problems.push(format!("unexpected test line: {t}"));
            }
        }
        match self.done {
            None => problems.push("no `KSERV-DONE` line".to_string()),
            Some(d) if d.failed != 0 || d.passed as usize != expected.len() => {
                problems.push(format!(
                    "`KSERV-DONE: {} passed, {} failed`, expected {} passed, 0 failed",
                    d.passed,
                    d.failed,
                    expected.len()
                ))
            }
            Some(_) => {}
        }
        match self.exit {
            None if self.parked => {}
            None => problems.push("QEMU did not exit".to_string()),
            Some(s) if !s.success() => problems.push(format!("QEMU exited with {s}")),
            Some(_) => {}
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }
}

/// Waits for a batch run in `session` to print `KSERV-DONE` and for QEMU to
/// power off, all within `timeout`; fails early (with the console) on a Linux
/// panic or when QEMU exits before `KSERV-DONE`. The report is not checked.
pub fn run_batch(session: &mut Session, timeout: Duration) -> Result<BatchReport, Error> {
    let deadline = Instant::now() + timeout;
    let left = || deadline.saturating_duration_since(Instant::now());
    wait_done(session, deadline)?;
    // `/init` powers off right after `KSERV-DONE`; a minute is generous.
    let status = session.wait_exit(left().min(POWER_OFF_TIMEOUT))?;
    let mut report = BatchReport::from_lines(&session.lines());
    report.exit = Some(status);
    Ok(report)
}

/// Waits until `deadline` for `KSERV-DONE`; fails (with the console) on a
/// Linux panic.
fn wait_done(session: &mut Session, deadline: Instant) -> Result<(), Error> {
    let left = || deadline.saturating_duration_since(Instant::now());
    let (which, _) = session.wait_for_any(
        &[Pattern::from(DONE_MARKER), Pattern::from(KERNEL_PANIC)],
        left(),
    )?;
    if which == 1 {
        // Let the rest of the panic report reach the log, then fail with it.
        let _ = session.wait_for(KERNEL_PANIC_END, left().min(Duration::from_secs(5)));
        return Err(session.failure(format!("{}: KServ's kernel panicked", session.name())));
    }
    Ok(())
}

/// What KCore prints when KServ's `SYSTEM_OFF` parked every CPU on a
/// machine with no power-off (a spin-table platform such as `raspi4b`).
pub const PARKED_MARKER: &str = "kcore: system off: every CPU parked";

/// [`run_batch`] on `machine`: where the machine cannot power itself off
/// ([`Machine::can_power_off`]), waits for KCore's [`PARKED_MARKER`] after
/// `KSERV-DONE` instead of QEMU's exit, then ends QEMU.
pub fn run_batch_on(
    session: &mut Session,
    machine: &Machine,
    timeout: Duration,
) -> Result<BatchReport, Error> {
    if machine.can_power_off() {
        return run_batch(session, timeout);
    }
    let deadline = Instant::now() + timeout;
    let left = || deadline.saturating_duration_since(Instant::now());
    wait_done(session, deadline)?;
    session.wait_for(PARKED_MARKER, left().min(POWER_OFF_TIMEOUT))?;
    session.kill();
    let mut report = BatchReport::from_lines(&session.lines());
    report.parked = true;
    Ok(report)
}

/// One row of KServ's attack suite (its `attacks` test): the lines
/// `KSERV-ATTACK <row> expected <text>` (printed before the attack runs) and
/// `KSERV-ATTACK <row> observed PASS|FAIL <text>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttackRow {
    /// The row's name.
    pub name: String,
    /// What the row expected, as written before it ran.
    pub expected: String,
    /// Whether the outcome matched; `None` if no `observed` line came.
    pub passed: Option<bool>,
    /// What happened.
    pub observed: String,
}

const ATTACK_MARKER: &str = "KSERV-ATTACK ";

/// The attack rows in `lines`, in the order their `expected` lines came. An
/// `observed` line without an `expected` one before it is ignored; a row
/// whose `observed` line never came has `passed: None`.
pub fn attack_rows(lines: &[String]) -> Vec<AttackRow> {
    let mut rows: Vec<AttackRow> = Vec::new();
    for line in lines {
        let Some(at) = line.find(ATTACK_MARKER) else {
            continue;
        };
        let rest = line[at + ATTACK_MARKER.len()..].trim_end();
        let Some((name, rest)) = rest.split_once(' ') else {
            continue;
        };
        if let Some(expected) = rest.strip_prefix("expected ") {
            rows.push(AttackRow {
                name: name.to_string(),
                expected: expected.to_string(),
                passed: None,
                observed: String::new(),
            });
        } else if let Some(observed) = rest.strip_prefix("observed ") {
            let (passed, text) = match observed.split_once(' ').unwrap_or((observed, "")) {
                ("PASS", t) => (true, t),
                (_, t) => (false, t),
            };
            if let Some(row) = rows
                .iter_mut()
                .rev()
                .find(|r| r.name == name && r.passed.is_none())
            {
                row.passed = Some(passed);
                row.observed = text.to_string();
            }
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attack_rows_pair_expected_and_observed() {
        let lines: Vec<String> = [
            "KSERV-ATTACK scan expected a victim is found",
            "[  1.0] noise",
            "KSERV-ATTACK scan observed PASS victim VM 0x1",
            "KSERV-ATTACK fuzz expected every call answers",
            "KSERV-ATTACK stray observed PASS nobody expected this",
            "xx KSERV-ATTACK fuzz observed FAIL UNEXPECTED: -99",
            "KSERV-ATTACK lost expected an observed line",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let rows = attack_rows(&lines);
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0].name, "scan");
        assert_eq!(rows[0].expected, "a victim is found");
        assert_eq!(rows[0].passed, Some(true));
        assert_eq!(rows[0].observed, "victim VM 0x1");
        assert_eq!(rows[1].passed, Some(false));
        assert_eq!(rows[1].observed, "UNEXPECTED: -99");
        assert_eq!(rows[2].passed, None);
    }

    #[test]
    fn batch_arguments() {
        assert_eq!(
            batch_args(&["boot", "version"], 4),
            "kserv.mode=batch kserv.cpus=4 kserv.tests=boot,version"
        );
    }

    #[test]
    fn test_lines() {
        assert_eq!(
            parse_test_line("KSERV-TEST boot: PASS 4 cpus online"),
            Some(TestLine {
                name: "boot".into(),
                verdict: Verdict::Pass,
                detail: "4 cpus online".into()
            })
        );
        assert_eq!(
            parse_test_line("[    3.1] x KSERV-TEST hvc: FAIL ret=-1\r"),
            Some(TestLine {
                name: "hvc".into(),
                verdict: Verdict::Fail,
                detail: "ret=-1".into()
            })
        );
        assert_eq!(
            parse_test_line("KSERV-TEST version: PASS"),
            Some(TestLine {
                name: "version".into(),
                verdict: Verdict::Pass,
                detail: String::new()
            })
        );
        assert_eq!(parse_test_line("KSERV-TEST version: MAYBE"), None);
        assert_eq!(parse_test_line("KSERV-TEST : PASS"), None);
        assert_eq!(parse_test_line("KSERV-INIT: mounting"), None);
        let line = "KSERV-TEST boot: PASS 4 cpus";
        assert_eq!(
            parse_test_line(line).map(|t| t.to_string()).as_deref(),
            Some(line)
        );
    }

    #[test]
    fn done_lines() {
        assert_eq!(
            parse_done("KSERV-DONE: 3 passed, 0 failed"),
            Some(Done {
                passed: 3,
                failed: 0
            })
        );
        assert_eq!(
            parse_done("KSERV-DONE: 1 passed, 2 failed\r"),
            Some(Done {
                passed: 1,
                failed: 2
            })
        );
        assert_eq!(parse_done("KSERV-DONE: x passed, 0 failed"), None);
        assert_eq!(parse_done("KSERV-TEST boot: PASS"), None);
    }

    #[test]
    fn time_lines() {
        let t = parse_time("KSERV-TIME cntvct=125000000 cntfrq=62500000");
        assert_eq!(
            t,
            Some(Time {
                cntvct: 125_000_000,
                cntfrq: 62_500_000
            })
        );
        assert_eq!(t.map(|t| t.millis()), Some(2000.0));
        assert_eq!(parse_time("KSERV-TIME cntvct=12"), None);
        assert!(
            Time {
                cntvct: 1,
                cntfrq: 0
            }
            .millis()
            .is_nan()
        );
    }

    #[test]
    fn bench_lines() {
        let b =
            parse_bench_line("[ 9.1] KSERV-BENCH hvc iters=2000 ticks=125000 cntfrq=62500000\r");
        let figure = BenchFigure {
            iters: 2000,
            ticks: 125_000,
            cntfrq: 62_500_000,
        };
        assert_eq!(
            b,
            Some(BenchLine {
                name: "hvc".into(),
                figure: Ok(figure)
            })
        );
        assert_eq!(figure.ns_per_iter(), 1000.0);
        assert_eq!(
            parse_bench_line("KSERV-BENCH ipi FAIL in the guest").map(|b| b.figure),
            Some(Err("in the guest".into()))
        );
        // Anything missing, repeated, unknown or not a number: no line.
        for bad in [
            "KSERV-BENCH hvc iters=2000 ticks=125000",
            "KSERV-BENCH hvc iters=2000 ticks=1 ticks=2 cntfrq=3",
            "KSERV-BENCH hvc iters=2000 ticks=-1 cntfrq=3",
            "KSERV-BENCH hvc iters=2000 ticks=1 cntfrq=3 ns=4",
            "KSERV-BENCH hvc iters=2000 tic[ 3.2] kernel: ks=1 cntfrq=3",
            "KSERV-BENCH  iters=1 ticks=1 cntfrq=1",
            "KSERV-BENCH hvc",
        ] {
            assert_eq!(parse_bench_line(bad), None, "{bad}");
        }
        let zero = BenchFigure {
            iters: 0,
            ticks: 1,
            cntfrq: 1,
        };
        assert!(zero.ns_per_iter().is_nan());
        let r = BatchReport::from_lines(&lines(
            "KSERV-BENCH a iters=1 ticks=2 cntfrq=3\nKSERV-TEST kvmbench: PASS\n",
        ));
        assert_eq!(r.benches.len(), 1);
        assert_eq!(r.tests.len(), 1);
    }

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(String::from).collect()
    }

    #[test]
    fn report_from_console() {
        let console = lines(
            "kcore: KCore v0.1.0 at EL2\n\
             [    0.000000] Booting Linux on physical CPU 0x0\n\
             KSERV-TIME cntvct=10 cntfrq=1000\n\
             KSERV-TEST boot: PASS 4 cpus\n\
             KSERV-TEST version: FAIL got 0x0\n\
             KSERV-DONE: 1 passed, 1 failed\n",
        );
        let r = BatchReport::from_lines(&console);
        assert_eq!(r.kcore_banner, Some(0));
        assert_eq!(r.linux_banner, Some(1));
        assert_eq!(
            r.time,
            Some(Time {
                cntvct: 10,
                cntfrq: 1000
            })
        );
        assert_eq!(r.verdict("boot"), Some(Verdict::Pass));
        assert_eq!(r.verdict("version"), Some(Verdict::Fail));
        assert_eq!(r.verdict("hvc"), None);
        assert_eq!(r.detail("boot"), "4 cpus");
        assert_eq!(r.detail("version"), "got 0x0");
        assert_eq!(r.detail("hvc"), "");
        assert_eq!(
            r.done,
            Some(Done {
                passed: 1,
                failed: 1
            })
        );
        let problems = r
            .check(&["boot", "version", "hvc"])
            .err()
            .unwrap_or_default();
        assert_eq!(problems.len(), 4, "{problems:?}");
        assert!(problems[0].contains("`version` failed"));
        assert!(problems[1].contains("`hvc` reported nothing"));
        assert!(problems[2].contains("expected 3 passed"));
        assert!(problems[3].contains("did not exit"));
    }

    #[test]
    fn report_all_passed() {
        use std::os::unix::process::ExitStatusExt;
        let console =
            lines("KSERV-TEST boot: PASS\nKSERV-TEST hvc: PASS\nKSERV-DONE: 2 passed, 0 failed\n");
        let mut r = BatchReport::from_lines(&console);
        r.exit = Some(ExitStatus::from_raw(0));
        assert_eq!(r.check(&["boot", "hvc"]), Ok(()));
        assert!(r.check(&["boot"]).is_err());
        r.exit = Some(ExitStatus::from_raw(1 << 8));
        assert!(r.check(&["boot", "hvc"]).is_err());
    }
}
