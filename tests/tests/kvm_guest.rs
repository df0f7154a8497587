//! The whole stack: KCore, Debian's kernel as KServ with the shim's
//! `/dev/kvm`, `kcore-vmm`, and a Debian Linux guest with 2 vCPUs. KServ's
//! `kvmguest` test boots the guest three times — non-protected with the
//! PL011 console, non-protected with a virtio console and virtio-blk disk,
//! and protected (image verified by KCore, memory donated on first touch,
//! PL011 console) — each printing its marker and the expected checksum of
//! a workload it generated, then powering off. KServ's `version` test
//! afterwards shows KCore still serving; KCore must report no trouble. The
//! same runs on a GICv2 host; with KCore booted by `kcore.efi` from
//! Debian's EDK2, the `efi` system tests run the guests in both of its
//! modes.

use kcore_qemu::Machine;
use kcore_systests::{BOOT_TIMEOUT, TestResult, linux_guests};

#[test]
fn linux_guests_on_kcore_protected_and_not() -> TestResult {
    linux_guests("kvm-guest", Machine::virt_gicv3().with_smp(4), BOOT_TIMEOUT)
}

/// The same on a GICv2 host (QEMU `virt,gic-version=2`): KCore runs the
/// guests' GICv2 virtual interface (GICH list registers, its GICV mapped
/// at the guest's GICC), the shim offers `KVM_DEV_TYPE_ARM_VGIC_V2` and
/// `kcore-vmm` gives the guest an `arm,cortex-a15-gic`.
#[test]
fn linux_guests_on_a_gicv2_host() -> TestResult {
    linux_guests(
        "kvm-guest-gicv2",
        Machine::virt_gicv2().with_smp(2),
        BOOT_TIMEOUT,
    )
}
