//! The whole stack: KCore, Debian's kernel as KServ with the shim's
//! `/dev/kvm`, `kcore-vmm`, and a Debian Linux guest with 2 vCPUs. KServ's
//! `kvmguest` test boots the guest three times — non-protected with the
//! PL011 console, non-protected with a virtio console and virtio-blk disk,
//! and protected (image verified by KCore, memory donated on first touch,
//! PL011 console) — each printing its marker and the expected checksum of
//! a workload it generated, then powering off. KServ's `version` test
//! afterwards shows KCore still serving; KCore must report no trouble.

use kcore_qemu::{Boot, Machine};
use kcore_systests::{Failure, TestResult, batch, kcore_image, kcore_trouble, kvmguest_shortfall};

#[test]
fn linux_guests_on_kcore_protected_and_not() -> TestResult {
    let name = "kvm-guest";
    let boot = Boot::Kcore {
        image: kcore_image()?,
    };
    let (report, run) = batch(
        name,
        Machine::virt_gicv3().with_smp(4),
        boot,
        &["kvmguest", "version"],
    )?;
    let fail = |what: String| Failure::from(run.session.failure(format!("{name}: {what}")));
    let lines = run.session.lines();
    if let Some(problem) = kvmguest_shortfall(&report, &lines) {
        return Err(fail(problem));
    }
    if let Some(bad) = lines.iter().find(|l| kcore_trouble(l)) {
        return Err(fail(format!("KCore reported trouble: {bad:?}")));
    }
    Ok(())
}
