//! `cargo xtask bench`: benchmarks under `-icount shift=0,sleep=off`.
//!
//! Under that flag QEMU advances the virtual clock by one nanosecond per
//! executed instruction and skips idle time instead of sleeping, so the
//! guest-visible counter measures instructions, not host time: results are
//! deterministic and independent of host load, and a ratio between two
//! configurations on the same machine is meaningful on a noisy laptop.
//!
//! `bench boot` measures boot to KServ's `/init` (its `KSERV-TIME cntvct=..`
//! line) for KCore -> KServ and for the same Debian kernel booted directly at
//! EL2, on the same machine, and reports the medians and their ratio.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use kcore_qemu::kserv::{self, Time, Verdict};
use kcore_qemu::{Machine, QemuCommand, Session};

use crate::run::{boot_target, log_path};

/// Arguments of `cargo xtask bench`.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    #[command(subcommand)]
    what: What,
}

/// The benchmarks.
#[derive(clap::Subcommand, Debug)]
enum What {
    /// Instruction time from reset to KServ's /init: KCore -> KServ against
    /// the same kernel booted directly at EL2.
    Boot(BootArgs),
}

/// Arguments of `cargo xtask bench boot`.
#[derive(clap::Args, Debug)]
struct BootArgs {
    /// Boots of each kind; the median is reported.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    runs: u32,
    /// Number of CPUs (the same for both).
    #[arg(long, default_value_t = 2)]
    smp: u32,
    /// RAM in MiB (the same for both).
    #[arg(long, value_name = "MiB", default_value_t = 1024)]
    mem: u32,
    /// Also write the results as JSON to this file.
    #[arg(long, value_name = "PATH")]
    json: Option<PathBuf>,
    /// Seconds each boot may take (wall-clock).
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    timeout: u64,
    /// Do not build first; use what is in build/.
    #[arg(long)]
    no_build: bool,
}

/// Runs `cargo xtask bench`.
pub fn main(args: BenchArgs) -> anyhow::Result<()> {
    match args.what {
        What::Boot(args) => boot(&args),
    }
}

/// One side of the comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    Kcore,
    Direct,
}

impl Side {
    fn label(self) -> &'static str {
        match self {
            Side::Kcore => "KCore -> KServ at EL1",
            Side::Direct => "direct at EL2, no KCore",
        }
    }

    fn key(self) -> &'static str {
        match self {
            Side::Kcore => "kcore",
            Side::Direct => "direct",
        }
    }
}

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

fn boot(args: &BootArgs) -> anyhow::Result<()> {
    if !args.no_build {
        crate::build::all()?;
    }
    kcore_qemu::check_qemu()?;
    let machine = Machine::virt_gicv3()
        .with_smp(args.smp)
        .with_mem_mib(args.mem)
        .with_icount(true);
    machine.validate().map_err(anyhow::Error::msg)?;
    let kcore = QemuCommand::new(machine.clone(), boot_target(false, None)?);
    let direct = QemuCommand::new(machine.clone(), boot_target(true, None)?);
    let extra = kserv::batch_args(&["boot"], machine.smp);
    let (kcore, direct) = (kcore.append(&extra), direct.append(&extra));
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
        // The two boots of a round run side by side: under -icount the
        // results do not depend on host load.
        let (k, d) = std::thread::scope(|s| {
            let k = s.spawn(|| boot_once(&kcore, Side::Kcore, run, timeout));
            let d = s.spawn(|| boot_once(&direct, Side::Direct, run, timeout));
            (join(k), join(d))
        });
        let (k, d) = (k?, d?);
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
        let json = to_json(&machine, args.runs, &series, ratio);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))?;
        println!("JSON written to {}", path.display());
    }
    Ok(())
}

fn join<T>(handle: std::thread::ScopedJoinHandle<'_, anyhow::Result<T>>) -> anyhow::Result<T> {
    handle
        .join()
        .unwrap_or_else(|_| bail!("a benchmark thread panicked"))
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

/// The median; the mean of the middle two for an even count.
fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
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
    fn medians() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(&[7.0]), 7.0);
        assert!(median(&[]).is_nan());
    }

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
