//! KServ's `kvmbench` test (`kserv-tools kvmbench`, the figures of
//! `cargo xtask bench`) works on both `/dev/kvm`s: on KCore's shim and on
//! stock KVM (Debian's kernel booted straight at EL2), the test guest's
//! bench program reports a figure for every benchmark, each with the
//! guest's iterations and a non-zero tick count; and its `kvmbench-vm`
//! test reports a 256 MiB VM's life (on KCore a protected VM's too, whose
//! run ends at an MMIO page its signed manifest offers). Nothing is timed
//! here: the figures themselves are `cargo xtask bench`'s business. The
//! same on a GICv2 host, where the bench program uses its GICv2 back end.

use kcore_qemu::kserv::{BatchReport, Verdict};
use kcore_qemu::{Boot, Machine};
use kcore_systests::{Failure, TestResult, batch, direct_boot, kcore_image};
use kcore_test_guest::bench::BENCHES;

/// Boots `boot` on `machine` with the `kvmbench` and `kvmbench-vm` tests;
/// checks their details name `kvm` and every benchmark's figure is there,
/// the VM's lives' (`vms`) too.
fn bench_on(name: &str, machine: Machine, boot: Boot, kvm: &str, vms: &[&str]) -> TestResult {
    let (report, run) = batch(name, machine, boot, &["kvmbench", "kvmbench-vm"])?;
    let fail = |what: String| Failure::from(run.session.failure(format!("{name}: {what}")));
    let detail = report
        .tests
        .first()
        .map(|t| t.detail.clone())
        .unwrap_or_default();
    if !detail.starts_with(&format!("/dev/kvm from {kvm}")) {
        return Err(fail(format!("expected /dev/kvm from {kvm}: {detail}")));
    }
    if let Some(t) = report.tests.iter().find(|t| t.verdict != Verdict::Pass) {
        return Err(fail(format!("{}: {}", t.name, t.detail)));
    }
    for vm in vms {
        for figure in [vm.to_string(), format!("{vm}-teardown")] {
            let ok = report
                .benches
                .iter()
                .any(|b| b.name == figure && b.figure.as_ref().is_ok_and(|f| f.ticks > 0));
            if !ok {
                return Err(fail(format!("no figure for {figure}")));
            }
        }
    }
    figures(&report).map_err(fail)
}

/// One figure per benchmark, in the guest's order, with its iterations.
fn figures(report: &BatchReport) -> Result<(), String> {
    // The bench program's, without the VM lives' (`vm-*`).
    let names: Vec<&str> = report
        .benches
        .iter()
        .map(|b| b.name.as_str())
        .filter(|n| !n.starts_with("vm-"))
        .collect();
    let want: Vec<&str> = BENCHES.iter().map(|b| b.name).collect();
    if names != want {
        return Err(format!("benchmarks {names:?}, expected {want:?}"));
    }
    let bench = report.benches.iter().filter(|b| !b.name.starts_with("vm-"));
    for (line, b) in bench.zip(BENCHES) {
        match &line.figure {
            Ok(f) if f.iters == u64::from(b.iterations) && f.ticks > 0 && f.cntfrq > 0 => {}
            other => return Err(format!("{}: {other:?}", b.name)),
        }
    }
    Ok(())
}

#[test]
fn bench_program_on_kcore() -> TestResult {
    on_kcore("kvm-bench", Machine::virt_gicv3())
}

#[test]
fn bench_program_on_stock_kvm() -> TestResult {
    on_stock_kvm("kvm-bench-direct", Machine::virt_gicv3())
}

/// Both on a GICv2 host (`cargo xtask bench --gic 2`): the bench program
/// on the guest's GICv2 back end, the VMM's vGIC a GICv2.
#[test]
fn bench_program_on_a_gicv2_host() -> TestResult {
    on_kcore("kvm-bench-gicv2", Machine::virt_gicv2())?;
    on_stock_kvm("kvm-bench-direct-gicv2", Machine::virt_gicv2())
}

fn on_kcore(name: &str, machine: Machine) -> TestResult {
    let boot = Boot::Kcore {
        image: kcore_image()?,
    };
    bench_on(
        name,
        machine.with_smp(2),
        boot,
        "kserv-shim on KCore",
        &["vm-256m", "vm-256m-protected"],
    )
}

fn on_stock_kvm(name: &str, machine: Machine) -> TestResult {
    bench_on(
        name,
        machine.with_smp(2),
        direct_boot()?,
        "stock KVM",
        &["vm-256m"],
    )
}
