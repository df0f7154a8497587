//! The whole stack on a GICv2 host (QEMU `virt,gic-version=2`): KCore runs
//! the guests' GICv2 virtual interface (GICH list registers, GICV mapped at
//! the guest's GICC), the shim offers `KVM_DEV_TYPE_ARM_VGIC_V2`, and
//! `kcore-vmm` gives the guest an `arm,cortex-a15-gic`. KServ's `kvmguest`
//! test boots the Debian Linux guest with 2 vCPUs three times (PL011
//! console, virtio console and disk, protected), each printing its marker
//! and the workload's checksum; KServ's `version` test afterwards shows
//! KCore still serving, and KCore must report no trouble.

use kcore_qemu::{Boot, Machine};
use kcore_systests::{Failure, TestResult, batch, kcore_image, kcore_trouble, kvmguest_shortfall};

#[test]
fn linux_guests_on_a_gicv2_host() -> TestResult {
    let name = "kvm-gicv2";
    let boot = Boot::Kcore {
        image: kcore_image()?,
    };
    let (report, run) = batch(
        name,
        Machine::virt_gicv2().with_smp(2),
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
