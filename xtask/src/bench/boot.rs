//! `bench boot` measures boot to KServ's `/init` (its `KSERV-TIME cntvct=..`
//! line) for KCore -> KServ and for the same Debian kernel booted directly at
//! EL2, on the same machine, and reports the medians and their ratio.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use kcore_qemu::kserv::{self, Time, Verdict};
use kcore_qemu::{Machine, QemuCommand, Session};

use super::{Args, Pair, Side, median};
use crate::run::log_path;

/// The runs of one side.
struct Series {
    side: Side,
    times: Vec<Time>,
}

impl Series {
    fn millis(&self) -> Vec<f64> {
        self.times.iter().map(Time::millis).collect()
    }

    fn median_ms(&self) -> f64 {
        median(&self.millis())
    }
}

/// Runs `cargo xtask bench boot`.
pub fn main(args: &Args) -> anyhow::Result<()> {
    let pair = Pair::new(args, &["boot"])?;
    let machine = &pair.machine;
    let timeout = Duration::from_secs(args.timeout);

    eprintln!(
        "bench boot: {machine}; {} run(s) of each, two QEMUs at a time",
        args.runs
    );
    let started = Instant::now();
    let mut series = [
        Series {
            side: Side::Kcore,
            times: Vec::new(),
        },
        Series {
            side: Side::Direct,
            times: Vec::new(),
        },
    ];
    let mut notes: Vec<String> = Vec::new();
    for run in 1..=args.runs {
        let (k, d) = pair.both(|cmd, side| boot_once(cmd, side, run, timeout))?;
        eprintln!(
            "bench boot: run {run}/{}: KCore {:.3} ms, direct {:.3} ms",
            args.runs,
            k.time.millis(),
            d.time.millis()
        );
        for note in k.notes.iter().chain(&d.notes) {
            if !notes.contains(note) {
                notes.push(note.clone());
            }
        }
        series[0].times.push(k.time);
        series[1].times.push(d.time);
    }
    let ratio = series[0].median_ms() / series[1].median_ms();

    println!();
    println!("Boot to KServ's /init: instruction time since reset (KSERV-TIME cntvct/cntfrq)");
    println!("machine: {machine}; median of {} run(s)", args.runs);
    println!();
    println!("  {:<26} {:>12}   runs (ms)", "boot", "median (ms)");
    for s in &series {
        let runs: Vec<String> = s.millis().iter().map(|m| format!("{m:.3}")).collect();
        println!(
            "  {:<26} {:>12.3}   {}",
            s.side.label(),
            s.median_ms(),
            runs.join(" ")
        );
    }
    println!("  {:<26} {:>12.4}", "ratio KCore/direct", ratio);
    println!();
    println!(
        "Under -icount shift=0,sleep=off these are instruction counts (1 ns each), not host time: \
         they are deterministic (up to the spread noted below, if any) and do not depend on \
         host load, so the ratio is meaningful on a busy machine."
    );
    let exact = series
        .iter()
        .all(|s| s.times.windows(2).all(|w| w[0].cntvct == w[1].cntvct));
    if exact && args.runs > 1 {
        println!("All {} runs of each kind agreed to the tick.", args.runs);
    }
    for s in &series {
        let ms = s.millis();
        let (lo, hi) = ms
            .iter()
            .fold((f64::MAX, f64::MIN), |(lo, hi), &m| (lo.min(m), hi.max(m)));
        if ms.len() > 1 && lo != hi {
            println!(
                "Note: {} runs differ by up to {:.3}%: QEMU still injects some device events \
                 (console, RTC) at host-dependent points.",
                s.side.key(),
                (hi - lo) / lo * 100.0
            );
        }
    }
    for note in &notes {
        println!(
            "Note: the direct boot reported `{note}`; only its time to /init is used \
             (KServ's tests expect KCore underneath)."
        );
    }
    println!(
        "({} boots in {:.1} s of wall-clock time)",
        2 * args.runs,
        started.elapsed().as_secs_f64()
    );

    if let Some(path) = &args.json {
        super::write_file(path, &to_json(machine, args.runs, &series, ratio))?;
        println!("JSON written to {}", path.display());
    }
    Ok(())
}

/// One boot's result.
struct Sample {
    time: Time,
    /// Failing `KSERV-TEST` lines that were accepted (direct boots only).
    notes: Vec<String>,
}

/// Boots once and returns the `KSERV-TIME` of KServ's `/init`.
///
/// The KCore boot must pass KServ's `boot` test: a broken stack is not worth
/// timing. The direct boot only has to reach `/init`, finish and power off:
/// KServ's `boot` test expects its CPUs at EL1 under KCore and fails at EL2,
/// which does not change the time measured (printed before any test runs).
fn boot_once(cmd: &QemuCommand, side: Side, run: u32, timeout: Duration) -> anyhow::Result<Sample> {
    let log = log_path(&format!("bench-boot-{}-{run}", side.key()));
    let mut session = Session::spawn(cmd, &log)?;
    let report = kserv::run_batch(&mut session, timeout)?;
    let fail = |what: String| {
        anyhow::Error::from(
            session.failure(format!("bench boot ({}, run {run}): {what}", side.label())),
        )
    };
    let mut notes = Vec::new();
    match side {
        Side::Kcore => report.check(&["boot"]).map_err(|p| fail(p.join("; ")))?,
        Side::Direct => {
            if report.done.is_none() {
                return Err(fail("no KSERV-DONE line".into()));
            }
            match report.exit {
                Some(status) if status.success() => {}
                other => return Err(fail(format!("QEMU did not power off cleanly ({other:?})"))),
            }
            notes.extend(
                report
                    .tests
                    .iter()
                    .filter(|t| t.verdict == Verdict::Fail)
                    .map(|t| t.to_string()),
            );
        }
    }
    let Some(time) = report.time else {
        return Err(fail("no KSERV-TIME line".into()));
    };
    if time.cntfrq == 0 {
        return Err(fail("cntfrq is 0".into()));
    }
    Ok(Sample { time, notes })
}

fn to_json(machine: &Machine, runs: u32, series: &[Series], ratio: f64) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{{");
    let _ = writeln!(out, "  \"benchmark\": \"boot\",");
    let _ = writeln!(
        out,
        "  \"unit\": \"ms of instruction time (-icount shift=0,sleep=off) from reset to KServ's /init\","
    );
    let _ = writeln!(
        out,
        "  \"machine\": {{\"board\": \"virt\", \"gic\": {}, \"cpu\": \"{}\", \"smp\": {}, \"mem_mib\": {}, \
         \"icount\": \"shift=0,sleep=off\"}},",
        machine.gic.version(),
        machine.cpu,
        machine.smp,
        machine.mem_mib
    );
    let _ = writeln!(out, "  \"runs\": {runs},");
    for s in series {
        let ms: Vec<String> = s.millis().iter().map(|m| format!("{m:.6}")).collect();
        let ticks: Vec<String> = s.times.iter().map(|t| t.cntvct.to_string()).collect();
        let cntfrq = s.times.first().map_or(0, |t| t.cntfrq);
        let _ = writeln!(
            out,
            "  \"{}\": {{\"median_ms\": {:.6}, \"runs_ms\": [{}], \"cntvct\": [{}], \"cntfrq\": {cntfrq}}},",
            s.side.key(),
            s.median_ms(),
            ms.join(", "),
            ticks.join(", ")
        );
    }
    let _ = writeln!(out, "  \"ratio_kcore_over_direct\": {ratio:.6}");
    let _ = writeln!(out, "}}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_shape() {
        let t = |cntvct| Time {
            cntvct,
            cntfrq: 1000,
        };
        let series = [
            Series {
                side: Side::Kcore,
                times: vec![t(1100), t(1100)],
            },
            Series {
                side: Side::Direct,
                times: vec![t(1000), t(1000)],
            },
        ];
        let json = to_json(
            &Machine::virt_gicv3().with_smp(2).with_icount(true),
            2,
            &series,
            1.1,
        );
        assert!(json.contains("\"kcore\": {\"median_ms\": 1100.000000, \"runs_ms\": [1100.000000, 1100.000000], \"cntvct\": [1100, 1100], \"cntfrq\": 1000},"), "{json}");
        assert!(
            json.contains("\"cpu\": \"cortex-a72\", \"smp\": 2"),
            "{json}"
        );
        assert!(
            json.trim_end()
                .ends_with("\"ratio_kcore_over_direct\": 1.100000\n}"),
            "{json}"
        );
    }
}
