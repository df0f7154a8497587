//! `kcore-vmm` on stock KVM: Debian's kernel booted straight at EL2 (no
//! KCore) brings up KVM, and KServ's `kvmguest` test runs the VMM there
//! (nested virtualisation under TCG): a Linux guest with 2 vCPUs boots once
//! with the PL011 console and once with a virtio console and a virtio-blk
//! disk, prints the expected checksum of its workload, reads and writes the
//! disk and powers off. The test must really run (not skip for lack of
//! `/dev/kvm`), and each guest's markers must reach the console.

use kcore_qemu::Machine;
use kcore_systests::{Failure, TestResult, batch, direct_boot};

#[test]
fn linux_guest_on_stock_kvm() -> TestResult {
    let name = "kvm-direct";
    let (report, run) = batch(
        name,
        Machine::virt_gicv3().with_smp(2),
        direct_boot()?,
        &["kvmguest"],
    )?;
    let fail = |what: String| Failure::from(run.session.failure(format!("{name}: {what}")));
    let detail = report.detail("kvmguest");
    if detail.starts_with("skipped") {
        return Err(fail(format!("kvmguest did not run on stock KVM: {detail}")));
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
