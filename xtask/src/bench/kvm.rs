//! `cargo xtask bench kvm` (and plain `cargo xtask bench`): the same VMs
//! through `/dev/kvm` on stock KVM and on KCore, side by side.
//!
//! One QEMU machine per side and run, both under `-icount shift=0,sleep=off`
//! with the same options, kernel, initramfs, VMM and guests: KServ's
//! benchmark tests ([`TESTS`]) print `KSERV-BENCH` lines
//! ([`kserv::parse_bench_line`]), one per figure. Each row of the table
//! gives both columns (the median over the runs), the ratio KCore / KVM and
//! whether it meets its target ([`Kind::target`]). The microbenchmarks are
//! the test guest's bench program ([`kcore_test_guest::bench`], KServ test
//! `kvmbench`): ns per iteration.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::bail;
use kcore_qemu::kserv::{self, BenchFigure};
use kcore_qemu::{Machine, QemuCommand, Session};
use serde_json::{Value, json};

use super::{Args, Pair, Side, median};
use crate::run::log_path;

/// KServ's tests that print the figures, in the order they run.
pub const TESTS: &[&str] = &["kvmbench", "kvmbench-vm", "kvmbench-linux"];

/// What a row measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A microbenchmark: ns per iteration.
    Micro,
    /// A macrobenchmark: ms.
    Macro,
}

impl Kind {
    /// The ratio KCore / KVM a row must not exceed.
    pub fn target(self) -> f64 {
        match self {
            Kind::Micro => 1.0,
            Kind::Macro => 1.05,
        }
    }

    /// The unit of the row's columns.
    fn unit(self) -> &'static str {
        match self {
            Kind::Micro => "ns",
            Kind::Macro => "ms",
        }
    }

    /// A figure in [`Self::unit`]: per iteration for a microbenchmark.
    fn value(self, f: &BenchFigure) -> f64 {
        match self {
            Kind::Micro => f.ns_per_iter(),
            Kind::Macro => f.ns_per_iter() * f.iters as f64 / 1e6,
        }
    }

    fn key(self) -> &'static str {
        match self {
            Kind::Micro => "micro",
            Kind::Macro => "macro",
        }
    }
}

/// A row of the table.
#[derive(Clone, Debug, PartialEq)]
pub struct RowSpec {
    /// The `KSERV-BENCH` name of KCore's figure.
    pub name: &'static str,
    /// The `KSERV-BENCH` name of stock KVM's figure: the same but for a
    /// protected VM, which stock KVM does not have (its plain VM's figure).
    pub kvm_name: &'static str,
    /// Micro or macro.
    pub kind: Kind,
    /// What it measures.
    pub what: &'static str,
}

/// The macro rows: (KCore's name, stock KVM's name, what).
const MACRO: &[(&str, &str, &str)] = &[
    (
        "linux-boot",
        "linux-boot",
        "Linux guest boot (kcore-vmm, 2 vCPUs, 128 MiB, PL011, quiet): VMM start to init's first line",
    ),
    (
        "linux-workload",
        "linux-workload",
        "in that guest: gzip -1 of 16 MiB of `seq` output made in the guest",
    ),
    (
        "vm-256m",
        "vm-256m",
        "a 256 MiB VM's life: create, touch every page (test guest), tear down, free the memory",
    ),
    (
        "vm-256m-teardown",
        "vm-256m-teardown",
        "its teardown: from the last touch to the memory freed",
    ),
    (
        "linux-boot-protected",
        "linux-boot",
        "linux-boot as a protected VM on KCore (stock KVM: its plain VM, it has no other)",
    ),
    (
        "linux-workload-protected",
        "linux-workload",
        "linux-workload in that protected VM (stock KVM: its plain VM)",
    ),
    (
        "vm-256m-protected",
        "vm-256m",
        "vm-256m as a protected VM: pages donated on first touch, scrubbed by KCore at teardown",
    ),
    (
        "vm-256m-protected-teardown",
        "vm-256m-teardown",
        "its teardown with KCore's scrub (stock KVM: its plain VM)",
    ),
];

/// Every row, in the table's order: the guest's microbenchmarks, then the
/// macro rows.
pub fn rows() -> Vec<RowSpec> {
    let micro = kcore_test_guest::bench::BENCHES.iter().map(|b| RowSpec {
        name: b.name,
        kvm_name: b.name,
        kind: Kind::Micro,
        what: b.what,
    });
    let macros = MACRO.iter().map(|&(name, kvm_name, what)| RowSpec {
        name,
        kvm_name,
        kind: Kind::Macro,
        what,
    });
    micro.chain(macros).collect()
}

/// The figures of one side: every run's, by benchmark.
#[derive(Debug, Default)]
struct Figures {
    by_name: BTreeMap<String, Vec<BenchFigure>>,
    /// `KSERV-BENCH <name> FAIL` lines, and figures no row expects.
    notes: Vec<String>,
}

/// One row's result.
#[derive(Debug)]
struct Row {
    spec: RowSpec,
    /// Stock KVM's median, KCore's median (in the row's unit).
    kvm: Option<f64>,
    kcore: Option<f64>,
    kvm_runs: Vec<BenchFigure>,
    kcore_runs: Vec<BenchFigure>,
}

impl Row {
    fn ratio(&self) -> Option<f64> {
        match (self.kcore, self.kvm) {
            (Some(k), Some(d)) if d > 0.0 => Some(k / d),
            _ => None,
        }
    }

    fn met(&self) -> Option<bool> {
        self.ratio().map(|r| r <= self.spec.kind.target())
    }
}

/// Runs `cargo xtask bench kvm`.
pub fn main(args: &Args) -> anyhow::Result<()> {
    let pair = Pair::new(args, TESTS)?;
    let machine = &pair.machine;
    let timeout = Duration::from_secs(args.timeout);
    eprintln!(
        "bench kvm: {machine}; KServ tests {}; {} run(s) of each side, two QEMUs at a time",
        TESTS.join(","),
        args.runs
    );
    let started = Instant::now();
    let (mut on_kcore, mut on_kvm) = (Figures::default(), Figures::default());
    for run in 1..=args.runs {
        let (k, d) = pair.both(|cmd, side| bench_once(cmd, side, run, timeout))?;
        eprintln!(
            "bench kvm: run {run}/{}: {} figures on KCore, {} on stock KVM",
            args.runs,
            k.len(),
            d.len()
        );
        on_kcore.add(k);
        on_kvm.add(d);
    }
    let rows: Vec<Row> = rows()
        .into_iter()
        .map(|spec| Row::new(spec, &on_kvm, &on_kcore))
        .collect();
    println!();
    print!("{}", table(machine, args.runs, &rows));
    for (side, f) in [("stock KVM", &on_kvm), ("KCore", &on_kcore)] {
        for n in f.unexpected(&rows).iter().chain(&f.notes) {
            println!("Note ({side}): {n}");
        }
    }
    println!(
        "({} boots in {:.1} s of wall-clock time)",
        2 * args.runs,
        started.elapsed().as_secs_f64()
    );
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&to_json(machine, args.runs, &rows))?;
        super::write_file(path, &format!("{text}\n"))?;
        println!("JSON written to {}", path.display());
    }
    let missing: Vec<&str> = rows
        .iter()
        .filter(|r| r.ratio().is_none())
        .map(|r| r.spec.name)
        .collect();
    if !missing.is_empty() {
        bail!("no figure on one side or both for: {}", missing.join(", "));
    }
    Ok(())
}

impl Figures {
    fn add(&mut self, lines: Vec<kserv::BenchLine>) {
        for l in lines {
            match l.figure {
                Ok(f) => self.by_name.entry(l.name).or_default().push(f),
                Err(why) => self.notes.push(format!("{} failed: {why}", l.name)),
            }
        }
    }

    /// Figures of benchmarks no row names.
    fn unexpected(&self, rows: &[Row]) -> Vec<String> {
        self.by_name
            .keys()
            .filter(|n| {
                rows.iter()
                    .all(|r| r.spec.name != n.as_str() && r.spec.kvm_name != n.as_str())
            })
            .map(|n| format!("a figure for `{n}`, which is not a row of the table"))
            .collect()
    }
}

impl Row {
    fn new(spec: RowSpec, kvm: &Figures, kcore: &Figures) -> Self {
        let runs = |f: &Figures, name: &str| f.by_name.get(name).cloned().unwrap_or_default();
        let (kvm_runs, kcore_runs) = (runs(kvm, spec.kvm_name), runs(kcore, spec.name));
        let med = |runs: &[BenchFigure]| {
            let v: Vec<f64> = runs.iter().map(|f| spec.kind.value(f)).collect();
            Some(median(&v)).filter(|m| m.is_finite())
        };
        Row {
            kvm: med(&kvm_runs),
            kcore: med(&kcore_runs),
            kvm_runs,
            kcore_runs,
            spec,
        }
    }
}

/// Boots one side once and returns its `KSERV-BENCH` lines. Every test must
/// pass, and say it measured the right `/dev/kvm`.
fn bench_once(
    cmd: &QemuCommand,
    side: Side,
    run: u32,
    timeout: Duration,
) -> anyhow::Result<Vec<kserv::BenchLine>> {
    let log = log_path(&format!("bench-kvm-{}-{run}", side.key()));
    let mut session = Session::spawn(cmd, &log)?;
    let report = kserv::run_batch(&mut session, timeout)?;
    let fail = |what: String| {
        anyhow::Error::from(
            session.failure(format!("bench kvm ({}, run {run}): {what}", side.label())),
        )
    };
    report.check(TESTS).map_err(|p| fail(p.join("; ")))?;
    let want = match side {
        Side::Kcore => "/dev/kvm from kserv-shim on KCore",
        Side::Direct => "/dev/kvm from stock KVM",
    };
    if let Some(t) = report.tests.iter().find(|t| !t.detail.starts_with(want)) {
        return Err(fail(format!("expected `{want}` in: {t}")));
    }
    Ok(report.benches)
}

/// The table, as printed and as `docs/benchmarks.md` shows it.
fn table(machine: &Machine, runs: u32, rows: &[Row]) -> String {
    let cell = |v: Option<f64>, digits: usize| match v {
        Some(v) => format!("{v:.digits$}"),
        None => "-".to_string(),
    };
    let w = rows
        .iter()
        .map(|r| r.spec.name.len())
        .chain([9])
        .max()
        .unwrap_or(9);
    let mut out = String::new();
    out.push_str(
        "Stock KVM and KCore side by side: guest-visible instruction time \
         (-icount shift=0,sleep=off, 1 instruction = 1 ns)\n",
    );
    out.push_str(&format!(
        "machine: {machine}; median of {runs} run(s) of each side\n\n"
    ));
    out.push_str(&format!(
        "  {:<w$} {:<5} {:>4} {:>12} {:>12} {:>9} {:>7}  {}\n",
        "benchmark", "kind", "unit", "stock KVM", "KCore", "KCore/KVM", "target", "met"
    ));
    for r in rows {
        let met = match r.met() {
            Some(true) => "yes",
            Some(false) => "NO",
            None => "-",
        };
        out.push_str(&format!(
            "  {:<w$} {:<5} {:>4} {:>12} {:>12} {:>9} {:>7}  {met}\n",
            r.spec.name,
            r.spec.kind.key(),
            r.spec.kind.unit(),
            cell(r.kvm, 1),
            cell(r.kcore, 1),
            cell(r.ratio(), 3),
            format!("<= {:.2}", r.spec.kind.target()),
        ));
    }
    out.push('\n');
    for r in rows {
        out.push_str(&format!("  {:<w$} {}\n", r.spec.name, r.spec.what));
    }
    out.push('\n');
    out
}

fn to_json(machine: &Machine, runs: u32, rows: &[Row]) -> Value {
    let side = |value: Option<f64>, figures: &[BenchFigure]| {
        json!({
            "value": value,
            "ticks": figures.iter().map(|f| f.ticks).collect::<Vec<_>>(),
            "iters": figures.first().map(|f| f.iters),
            "cntfrq": figures.first().map(|f| f.cntfrq),
        })
    };
    json!({
        "benchmark": "kvm",
        "unit": "guest-visible instruction time under -icount shift=0,sleep=off \
                 (1 instruction = 1 ns); micro rows ns per iteration, macro rows ms",
        "machine": {
            "board": "virt",
            "gic": machine.gic.version(),
            "cpu": machine.cpu.to_string(),
            "smp": machine.smp,
            "mem_mib": machine.mem_mib,
            "icount": "shift=0,sleep=off",
        },
        "runs": runs,
        "rows": rows.iter().map(|r| json!({
            "name": r.spec.name,
            "kind": r.spec.kind.key(),
            "unit": r.spec.kind.unit(),
            "what": r.spec.what,
            "kvm": side(r.kvm, &r.kvm_runs),
            "kcore": side(r.kcore, &r.kcore_runs),
            "ratio_kcore_over_kvm": r.ratio(),
            "target": r.spec.kind.target(),
            "met": r.met(),
        })).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figure(ticks: u64, iters: u64) -> BenchFigure {
        BenchFigure {
            iters,
            ticks,
            cntfrq: 1_000_000_000,
        }
    }

    fn figures(name: &str, runs: &[BenchFigure]) -> Figures {
        let mut f = Figures::default();
        f.by_name.insert(name.into(), runs.to_vec());
        f
    }

    #[test]
    fn rows_take_medians_and_ratios() {
        let spec = RowSpec {
            name: "hvc",
            kvm_name: "hvc",
            kind: Kind::Micro,
            what: "x",
        };
        let kvm = figures(
            "hvc",
            &[figure(2000, 10), figure(1000, 10), figure(1500, 10)],
        );
        let kcore = figures("hvc", &[figure(1200, 10)]);
        let row = Row::new(spec.clone(), &kvm, &kcore);
        assert_eq!((row.kvm, row.kcore), (Some(150.0), Some(120.0)));
        assert_eq!(row.ratio(), Some(0.8));
        assert_eq!(row.met(), Some(true));
        let row = Row::new(spec.clone(), &kcore, &kvm);
        assert_eq!(row.met(), Some(false));
        // A side without the figure: no ratio, never "met".
        let row = Row::new(spec, &kvm, &Figures::default());
        assert_eq!((row.kcore, row.ratio(), row.met()), (None, None, None));
    }

    #[test]
    fn macro_rows_are_milliseconds_with_their_own_target() {
        assert_eq!(Kind::Macro.value(&figure(2_500_000, 1)), 2.5);
        assert_eq!(Kind::Micro.value(&figure(2_500_000, 1000)), 2500.0);
        assert!(Kind::Macro.target() > Kind::Micro.target());
        let spec = RowSpec {
            name: "boot-protected",
            kvm_name: "boot",
            kind: Kind::Macro,
            what: "x",
        };
        // A protected row takes stock KVM's plain figure.
        let row = Row::new(
            spec,
            &figures("boot", &[figure(100_000_000, 1)]),
            &figures("boot-protected", &[figure(104_000_000, 1)]),
        );
        assert_eq!((row.kvm, row.kcore), (Some(100.0), Some(104.0)));
        assert_eq!(row.met(), Some(true));
    }

    #[test]
    fn every_guest_benchmark_is_a_row_and_the_table_shows_them() {
        let rows: Vec<Row> = rows()
            .into_iter()
            .map(|s| Row::new(s, &Figures::default(), &Figures::default()))
            .collect();
        assert_eq!(
            rows.len(),
            kcore_test_guest::bench::BENCHES.len() + MACRO.len()
        );
        assert!(
            rows.iter()
                .all(|r| rows.iter().any(|k| k.spec.name == r.spec.kvm_name))
        );
        let text = table(&Machine::virt_gicv3(), 1, &rows);
        for b in kcore_test_guest::bench::BENCHES {
            assert!(text.contains(b.name) && text.contains(b.what), "{text}");
        }
        let json = to_json(&Machine::virt_gicv3(), 1, &rows);
        assert_eq!(json["rows"][0]["name"], "hvc");
        assert_eq!(json["rows"][0]["ratio_kcore_over_kvm"], Value::Null);
        assert_eq!(json["rows"][0]["target"], 1.0);
        assert_eq!(json["machine"]["gic"], 3);
        // The GICv2 table says so, in its header and its JSON.
        let v2 = Machine::virt_gicv2();
        assert!(table(&v2, 1, &rows).contains(&v2.to_string()));
        assert_ne!(v2.to_string(), Machine::virt_gicv3().to_string());
        assert_eq!(to_json(&v2, 1, &rows)["machine"]["gic"], 2);
    }

    #[test]
    fn unexpected_figures_and_failures_become_notes() {
        let mut f = Figures::default();
        f.add(vec![
            kserv::BenchLine {
                name: "zzz".into(),
                figure: Ok(figure(1, 1)),
            },
            kserv::BenchLine {
                name: "ipi".into(),
                figure: Err("lost".into()),
            },
        ]);
        let rows: Vec<Row> = rows().into_iter().map(|s| Row::new(s, &f, &f)).collect();
        assert_eq!(f.unexpected(&rows).len(), 1);
        assert_eq!(f.notes, vec!["ipi failed: lost".to_string()]);
    }
}
