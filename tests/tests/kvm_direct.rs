//! `kcore-vmm` on stock KVM: Debian's kernel booted straight at EL2 (no
//! KCore) brings up KVM, and KServ's `kvmguest` test runs the VMM there
//! (nested virtualisation under TCG): a Linux guest with 2 vCPUs boots once
//! with the PL011 console and once with a virtio console and a virtio-blk
//! disk, prints the expected checksum of its workload, reads and writes the
//! disk and powers off. The test must really run (not skip for lack of
//! `/dev/kvm`), and each guest's markers must reach the console. The same
//! on a GICv2 host also runs the test guest's tests on KVM's GICv2.

use kcore_qemu::Machine;
use kcore_systests::{Failure, TestResult, batch, direct_boot};

#[test]
fn linux_guest_on_stock_kvm() -> TestResult {
    linux_guest("kvm-direct", Machine::virt_gicv3().with_smp(2), &[])
}

/// The same on a GICv2 host, where `kvmguest` also runs the test guest's
/// tests on KVM's GICv2 (`kserv-tools kvmapi --guest`: its GICv2 back end
/// held to KVM's) and the `GRP_CPU_REGS` checks (`kvmapi --gicv2-cpu`)
/// besides its eventfd and dirty-log programs.
#[test]
fn linux_guest_on_stock_kvm_gicv2() -> TestResult {
    linux_guest(
        "kvm-direct-gicv2",
        Machine::virt_gicv2().with_smp(2),
        &[
            "test guest on KVM's GICv2: 20 of 26 passed, 3 skipped",
            "GICv2 CPU registers result: 10 passed, 0 failed",
            "ioeventfd/irqfd program result: 26 passed, 0 failed",
            "dirty-log program result: 15 passed, 0 failed",
        ],
    )
}

/// KServ's `kvmguest` on stock KVM on `machine`; its result line must
/// contain each of `details`.
fn linux_guest(name: &str, machine: Machine, details: &[&str]) -> TestResult {
    let (report, run) = batch(name, machine, direct_boot()?, &["kvmguest"])?;
    let fail = |what: String| Failure::from(run.session.failure(format!("{name}: {what}")));
    let detail = report.detail("kvmguest");
    if detail.starts_with("skipped") {
        return Err(fail(format!("kvmguest did not run on stock KVM: {detail}")));
    }
    if let Some(d) = details.iter().find(|d| !detail.contains(*d)) {
        return Err(fail(format!("no `{d}` in kvmguest's result: {detail}")));
    }
    let lines = run.session.lines();
    for (run_name, marker) in [
        ("pl011", "KCORE-GUEST: hello from"),
        ("pl011", "KCORE-GUEST: checksum"),
        ("virtio", "KCORE-GUEST: disk written"),
        ("virtio", "kvmguest-exit 0"),
    ] {
        let prefix = format!("kvmguest {run_name}| ");
        if !lines
            .iter()
            .any(|l| l.contains(&prefix) && l.contains(marker))
        {
            return Err(fail(format!("no `{prefix}{marker}` line on the console")));
        }
    }
    Ok(())
}
