//! KServ's traps through `Host::handle_trap` over the host double: the
//! hypercall ABI, PSCI through SMC, stage-2 aborts and anything else.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on an unexpected error"
)]

mod common;

use common::{RAM, World, world};
use kcore::exception::{Esr, TrapState, ec};
use kcore::host::{Regs, Resume};
use kcore::psci::fid;
use kcore_abi::{Error, HypercallId};
use kcore_arch::host_double::FakeFirmware;

const KCORE_PAGE: u64 = RAM + 0x2000;
const HOST_RAM: u64 = RAM + 0x20_0000;

fn trap(ec: u64, iss: u64, far: u64, hpfar: u64) -> TrapState {
    TrapState {
        esr: (ec << 26) | (1 << 25) | iss,
        far,
        hpfar,
        elr: 0xffff_8000_0810_0000,
        spsr: 0x3c5,
        vbar_el1: 0xffff_8000_0801_0000,
        sctlr_el1: 0,
    }
}

fn run(w: &mut World, fw: &mut FakeFirmware, t: &TrapState, regs: &mut Regs) -> Resume {
    w.host.handle_trap(0, t, regs, &mut w.hw, &mut w.alloc, fw)
}

#[test]
fn hvc_version_and_unknown_ids() {
    let (mut w, mut fw) = (world(), FakeFirmware::default());
    let mut regs = [0u64; 31];
    regs[0] = HypercallId::Version.function_id() as u64;
    assert_eq!(
        run(&mut w, &mut fw, &trap(ec::HVC64, 0, 0, 0), &mut regs),
        Resume::Retry
    );
    assert_eq!((regs[0], regs[1]), (0, kcore_abi::abi_version()));
    for id in [0u64, 1, 2, 3, 0xC600_0ABC] {
        regs[0] = id;
        run(&mut w, &mut fw, &trap(ec::HVC64, 0, 0, 0), &mut regs);
        assert_eq!(regs[0], Error::NotSupported.to_x0());
    }
    regs[0] = HypercallId::HostTeardownVm.function_id() as u64;
    regs[1] = 1;
    run(&mut w, &mut fw, &trap(ec::HVC64, 1, 0, 0), &mut regs);
    assert_eq!(
        regs[0],
        Error::NotSupported.to_x0(),
        "HVC #1 is not KCore's ABI"
    );
    assert!(fw.calls.is_empty());
}

#[test]
fn smc_psci_is_relayed_and_skipped() {
    let (mut w, mut fw) = (world(), FakeFirmware::default());
    let mut regs = [0u64; 31];
    regs[0] = fid::PSCI_VERSION as u64;
    assert_eq!(
        run(&mut w, &mut fw, &trap(ec::SMC64, 0, 0, 0), &mut regs),
        Resume::Skip
    );
    assert_eq!(regs[0], 0x1_0000);
    // CPU_ON with an entry point inside KCore is refused before the firmware.
    regs[..4].copy_from_slice(&[fid::CPU_ON_64 as u64, 1, KCORE_PAGE, 0]);
    assert_eq!(
        run(&mut w, &mut fw, &trap(ec::SMC64, 0, 0, 0), &mut regs),
        Resume::Skip
    );
    assert_eq!(regs[0], -9i64 as u64, "INVALID_ADDRESS");
    regs[..4].copy_from_slice(&[fid::CPU_ON_64 as u64, 1, HOST_RAM, 42]);
    assert_eq!(
        run(&mut w, &mut fw, &trap(ec::SMC64, 0, 0, 0), &mut regs),
        Resume::StartCpu { mpidr: 1, cpu: 1 }
    );
    w.host.finish_cpu_on(1, 0, &mut regs);
    assert_eq!(regs[0], 0);
    assert_eq!(w.host.take_boot_args(1), Some((HOST_RAM, 42)));
    // A non-PSCI SMC is NOT_SUPPORTED and never reaches the firmware.
    regs[0] = 0xC200_0000;
    assert_eq!(
        run(&mut w, &mut fw, &trap(ec::SMC64, 0, 0, 0), &mut regs),
        Resume::Skip
    );
    assert_eq!(regs[0], u64::MAX);
    assert!(fw.calls.is_empty());
}

#[test]
fn kserv_touching_kcore_gets_an_external_abort() {
    let (mut w, mut fw) = (world(), FakeFirmware::default());
    let mut regs = [7u64; 31];
    let ipa = KCORE_PAGE + 8;
    // Stage-2 translation fault, level 3, read.
    let t = trap(ec::DABT_LOW, 0x07, 0xffff_0000_0000_0008, (ipa >> 12) << 4);
    match run(&mut w, &mut fw, &t, &mut regs) {
        Resume::Inject(i) => {
            assert_eq!(Esr(i.esr_el1).ec(), ec::DABT_CUR);
            assert_eq!(Esr(i.esr_el1).fsc(), 0x10, "synchronous external abort");
            assert_eq!(i.elr_el2, t.vbar_el1 + 0x200);
            assert_eq!(i.far_el1, Some(t.far));
        }
        other => panic!("expected an injection, got {other:?}"),
    }
    assert_eq!(regs, [7u64; 31], "registers untouched");
    assert_eq!(w.host.stats().denied, 1);
    assert!(w.host.mem().host().table().walk(&w.hw, ipa).is_none());
}

#[test]
fn device_abort_maps_and_retries() {
    let (mut w, mut fw) = (world(), FakeFirmware::default());
    let mut regs = [0u64; 31];
    let t = trap(
        ec::DABT_LOW,
        0x06,
        0xffff_0000_0000_0000,
        (0x0900_0000u64 >> 12) << 4,
    );
    assert_eq!(run(&mut w, &mut fw, &t, &mut regs), Resume::Retry);
    assert!(
        w.host
            .mem()
            .host()
            .table()
            .walk(&w.hw, 0x0900_0000)
            .is_some()
    );
    assert_eq!(w.host.stats().mapped, 1);
}

#[test]
fn other_traps_become_undefined() {
    let (mut w, mut fw) = (world(), FakeFirmware::default());
    let mut regs = [0u64; 31];
    for class in [ec::SYS64, 0x07, 0x19, 0x3F] {
        match run(&mut w, &mut fw, &trap(class, 0, 0, 0), &mut regs) {
            Resume::Inject(i) => assert_eq!(Esr(i.esr_el1).ec(), ec::UNKNOWN),
            other => panic!("EC {class:#x}: {other:?}"),
        }
    }
    // External abort (not a stage-2 mapping fault): KServ's own problem.
    assert!(matches!(
        run(&mut w, &mut fw, &trap(ec::DABT_LOW, 0x10, 0, 0), &mut regs),
        Resume::Inject(_)
    ));
}
