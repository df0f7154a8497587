//! `host_set_vgic_cpu` on a GICv2 host: KCore maps only its own `GICV`
//! frame, only into unused pages of a VM that has not run, once; nothing
//! KServ does later can replace or move it, and the audit accepts it.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on an unexpected error"
)]

mod common;

use common::{FIRST_HOST_PFN, World, check_invariants, hvc, vm_walk, world};
use kcore::addr::Pa;
use kcore::pgtable::MemKind;
use kcore::vm::VmId;
use kcore_abi::{Error, HypercallId as H, features, vm_flags};

/// QEMU `virt`'s GICv2 `GICV` frame.
const GICV: u64 = 0x0804_0000;
/// The guest's GICC page, as kcore-vmm places it.
const GICC_GFN: u64 = 0x0801_0000 >> 12;

fn err(e: Error) -> u64 {
    e.to_x0()
}

/// A GICv2 world with one VM (pool of 16 pages) and its handle.
fn v2_vm(flags: u64, vcpus: u64) -> (World, u64) {
    let mut w = world();
    w.host.mem_mut().set_gicv(Pa(GICV));
    let r = hvc(
        &mut w,
        H::HostCreateVm,
        &[flags, 0, vcpus, FIRST_HOST_PFN, 16],
    );
    assert_eq!(r[0], 0, "create");
    (w, r[1])
}

#[test]
fn maps_gicv_as_device_memory_once() {
    let (mut w, h) = v2_vm(0, 2);
    assert_eq!(hvc(&mut w, H::HostSetVgicCpu, &[h, GICC_GFN])[0], 0);
    for i in 0..2 {
        let leaf = vm_walk(&w, VmId(0), (GICC_GFN + i) << 12).expect("mapped");
        assert_eq!(leaf.pa, Pa(GICV + i * 4096));
        assert_eq!(leaf.attrs.kind, MemKind::Device);
        assert!(!leaf.attrs.exec);
    }
    check_invariants(&w).unwrap();
    // Never moved, never replaced.
    assert_eq!(
        hvc(&mut w, H::HostSetVgicCpu, &[h, 0x9000])[0],
        err(Error::Denied)
    );
    // KServ's pages cannot go where GICV is.
    let pfn = FIRST_HOST_PFN + 40;
    assert_eq!(
        hvc(&mut w, H::HostDonateGuest, &[h, pfn, GICC_GFN + 1])[0],
        err(Error::Busy)
    );
    assert_eq!(
        hvc(&mut w, H::HostShareGuest, &[h, pfn, GICC_GFN, 0])[0],
        err(Error::Busy)
    );
    assert_ne!(hvc(&mut w, H::HostUnshareGuest, &[h, GICC_GFN])[0], 0);
    check_invariants(&w).unwrap();
    // Teardown drops it with the rest.
    assert_eq!(hvc(&mut w, H::HostTeardownVm, &[h])[0], 0);
    check_invariants(&w).unwrap();
}

#[test]
fn refuses_what_could_reach_beyond_gicv() {
    let (mut w, h) = v2_vm(0, 2);
    // Over the VM's memory (both pages checked) or its MMIO.
    assert_eq!(
        hvc(&mut w, H::HostDonateGuest, &[h, FIRST_HOST_PFN + 40, 0x81])[0],
        0
    );
    assert_eq!(
        hvc(&mut w, H::HostSetVgicCpu, &[h, 0x80])[0],
        err(Error::Busy)
    );
    assert_eq!(
        hvc(&mut w, H::HostSetVgicCpu, &[h, 0x81])[0],
        err(Error::Busy)
    );
    assert_eq!(hvc(&mut w, H::HostDeclareMmio, &[h, 0x9000, 1])[0], 0);
    assert_eq!(
        hvc(&mut w, H::HostSetVgicCpu, &[h, 0x8FFF])[0],
        err(Error::Denied)
    );
    // Outside the IPA space (40 bits), or its second page.
    for gfn in [1 << 28, (1 << 28) - 1, u64::MAX] {
        assert_eq!(
            hvc(&mut w, H::HostSetVgicCpu, &[h, gfn])[0],
            err(Error::InvalidParameter),
            "{gfn:#x}"
        );
    }
    // A stale handle.
    assert_eq!(
        hvc(&mut w, H::HostSetVgicCpu, &[h + (1 << 16), GICC_GFN])[0],
        err(Error::NotFound)
    );
    check_invariants(&w).unwrap();
    // Nothing was mapped by the refusals.
    assert!(vm_walk(&w, VmId(0), 0x80 << 12).is_none());
    // A dying VM.
    assert_eq!(hvc(&mut w, H::HostTeardownVm, &[h])[0], 0);
    assert_eq!(
        hvc(&mut w, H::HostSetVgicCpu, &[h, GICC_GFN])[0],
        err(Error::Denied)
    );
}

#[test]
fn gicv3_hosts_and_large_vms() {
    // No GICV: not supported.
    let mut w = world();
    let r = hvc(&mut w, H::HostCreateVm, &[0, 0, 16, FIRST_HOST_PFN, 16]);
    assert_eq!(r[0], 0);
    assert_eq!(
        hvc(&mut w, H::HostSetVgicCpu, &[r[1], GICC_GFN])[0],
        err(Error::NotSupported)
    );
    assert_eq!(hvc(&mut w, H::Version, &[])[2] & features::GICV2, 0);
    // A GICv2 names at most 8 CPUs.
    let mut w = world();
    w.host.mem_mut().set_gicv(Pa(GICV));
    let r = hvc(&mut w, H::HostCreateVm, &[0, 0, 9, FIRST_HOST_PFN, 16]);
    assert_eq!(r[0], err(Error::InvalidParameter));
    assert_ne!(hvc(&mut w, H::Version, &[])[2] & features::GICV2, 0);
    let (mut w, h) = v2_vm(vm_flags::PROTECTED, 8);
    // A protected VM gets it too (it shows only its own vCPU's interface).
    assert_eq!(hvc(&mut w, H::HostSetVgicCpu, &[h, GICC_GFN])[0], 0);
    check_invariants(&w).unwrap();
}
