//! KServ's traps through `Host::handle_trap` over the host double: the
//! hypercall ABI, PSCI through SMC, stage-2 aborts and anything else.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on an unexpected error"
)]

mod common;

use common::{GICR, GICR_STRIDE, RAM, World, check_invariants, host_walk, world, world_with};
use kcore::exception::{Esr, TrapState, ec};
use kcore::host::{Regs, Resume};
use kcore::psci::{Backend, PsciRelay};
use kcore_abi::{Error, HypercallId, psci};
use kcore_arch::host_cpu::FakeFirmware;
use kcore_arch::host_memory::Flush;

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
    regs[0] = psci::VERSION as u64;
    assert_eq!(
        run(&mut w, &mut fw, &trap(ec::SMC64, 0, 0, 0), &mut regs),
        Resume::Skip
    );
    assert_eq!(regs[0], 0x1_0000);
    // CPU_ON with an entry point inside KCore is refused before the firmware.
    regs[..4].copy_from_slice(&[psci::CPU_ON_64 as u64, 1, KCORE_PAGE, 0]);
    assert_eq!(
        run(&mut w, &mut fw, &trap(ec::SMC64, 0, 0, 0), &mut regs),
        Resume::Skip
    );
    assert_eq!(regs[0], -9i64 as u64, "INVALID_ADDRESS");
    regs[..4].copy_from_slice(&[psci::CPU_ON_64 as u64, 1, HOST_RAM, 42]);
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

/// `SYSTEM_OFF` with no firmware (the spin-table backend): KServ's stage 2
/// is emptied and flushed on every CPU, and every later trap from KServ, on
/// any CPU, parks it without mapping anything or reaching the firmware; a
/// `CPU_ON` posted before it never starts.
#[test]
fn spin_table_system_off_revokes_kserv_on_every_cpu() {
    let mut w = world_with(PsciRelay::new(&[0, 1, 2, 3], 0).with_backend(Backend::SpinTable));
    let mut fw = FakeFirmware::default();
    let mut regs = [0u64; 31];
    assert!(host_walk(&w, HOST_RAM).is_some(), "KServ's RAM is mapped");
    regs[..4].copy_from_slice(&[psci::CPU_ON_64 as u64, 1, HOST_RAM, 42]);
    let smc = trap(ec::SMC64, 0, 0, 0);
    assert_eq!(
        run(&mut w, &mut fw, &smc, &mut regs),
        Resume::StartCpu { mpidr: 1, cpu: 1 }
    );
    w.host.finish_cpu_on(1, psci::SUCCESS, &mut regs);
    assert!(!w.host.is_off());

    regs[0] = psci::SYSTEM_OFF as u64;
    assert_eq!(run(&mut w, &mut fw, &smc, &mut regs), Resume::SystemOff);
    assert!(w.host.is_off());
    assert!(
        host_walk(&w, HOST_RAM).is_none(),
        "KServ's stage 2 is empty"
    );
    assert!(host_walk(&w, 0x0900_0000).is_none());
    assert_eq!(w.hw.flushes().last(), Some(&Flush::Vmid(0)), "flushed");
    assert_eq!(w.host.take_boot_args(1), None, "the pen starts nothing");

    // CPU 2 still ran KServ: its next access faults in and parks, and the
    // page is not mapped again; so do an HVC, an SMC and a device access.
    let fault = trap(ec::DABT_LOW, 0x07, 0, (HOST_RAM >> 12) << 4);
    let device = trap(ec::DABT_LOW, 0x06, 0, (0x0900_0000u64 >> 12) << 4);
    let hvc = trap(ec::HVC64, 0, 0, 0);
    for t in [&fault, &device, &hvc, &smc] {
        regs[0] = HypercallId::Version.function_id() as u64;
        let r = w
            .host
            .handle_trap(2, t, &mut regs, &mut w.hw, &mut w.alloc, &mut fw);
        assert_eq!(r, Resume::Park, "{t:?}");
    }
    assert!(host_walk(&w, HOST_RAM).is_none());
    assert!(host_walk(&w, 0x0900_0000).is_none());
    assert_eq!(w.host.stats().mapped, 0);
    assert!(fw.calls.is_empty(), "no firmware call, ever");
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
    assert!(host_walk(&w, ipa).is_none());
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
    assert!(host_walk(&w, 0x0900_0000).is_some());
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

/// A data abort with a valid syndrome: `width` bytes, register `rt`, 64-bit
/// register view, read or write, stage-2 translation fault at level 3.
fn mmio_trap(addr: u64, width: u8, rt: u64, write: bool) -> TrapState {
    let sas = u64::from(width.trailing_zeros());
    let iss = 1 << 24 | sas << 22 | rt << 16 | 1 << 15 | u64::from(write) << 6 | 0x07;
    trap(
        ec::DABT_LOW,
        iss,
        0xffff_0000_0000_0000 | (addr & 0xFFF),
        (addr >> 12) << 4,
    )
}

/// KServ's accesses to a redistributor's control page: never mapped, each
/// one checked and performed by KCore; the LPI table bases and EnableLPIs
/// stay out of KServ's reach (`kcore::gic_guard`).
#[test]
fn gic_redistributor_control_pages_are_guarded() {
    let (mut w, mut fw) = (world(), FakeFirmware::default());
    let mut regs = [0u64; 31];
    let rd1 = GICR + GICR_STRIDE;
    // PROPBASER and PENDBASER: writes dropped, reads zero.
    regs[5] = 0x4000_0000 | 0x7;
    for reg in [0x70, 0x78] {
        let t = mmio_trap(rd1 + reg, 8, 5, true);
        assert_eq!(run(&mut w, &mut fw, &t, &mut regs), Resume::Skip);
    }
    w.hw.registers.insert(rd1 + 0x70, 0x1234);
    regs[7] = 99;
    let t = mmio_trap(rd1 + 0x70, 8, 7, false);
    assert_eq!(run(&mut w, &mut fw, &t, &mut regs), Resume::Skip);
    assert_eq!(regs[7], 0);
    assert!(w.hw.mmio_log.is_empty(), "{:x?}", w.hw.mmio_log);
    // GICR_CTLR: everything but EnableLPIs.
    regs[3] = 0b11;
    let t = mmio_trap(GICR, 4, 3, true);
    assert_eq!(run(&mut w, &mut fw, &t, &mut regs), Resume::Skip);
    assert_eq!(w.hw.mmio_log, [(GICR, 4, Some(0b10))]);
    // GICR_TYPER read through, into a 64-bit register; GICR_WAKER written.
    w.hw.registers.insert(GICR + 0x8, 0x0000_0001_0000_0010);
    let t = mmio_trap(GICR + 0x8, 8, 9, false);
    assert_eq!(run(&mut w, &mut fw, &t, &mut regs), Resume::Skip);
    assert_eq!(regs[9], 0x0000_0001_0000_0010);
    regs[2] = 0;
    let t = mmio_trap(rd1 + 0x14, 4, 2, true);
    assert_eq!(run(&mut w, &mut fw, &t, &mut regs), Resume::Skip);
    assert_eq!(w.hw.mmio_log.last(), Some(&(rd1 + 0x14, 4, Some(0))));
    assert_eq!(w.host.stats().emulated, 6);
    // No syndrome (a load pair, say) or a byte access: an external abort.
    let mut no_isv = mmio_trap(GICR + 0x14, 4, 2, true);
    no_isv.esr &= !(1 << 24);
    let byte = mmio_trap(GICR + 0x14, 1, 2, true);
    for t in [no_isv, byte] {
        assert!(matches!(
            run(&mut w, &mut fw, &t, &mut regs),
            Resume::Inject(_)
        ));
    }
    assert_eq!(w.host.stats().denied, 2);
    // The control pages are never mapped; the SGI frames beside them are,
    // a page at a time.
    let sgi = GICR + 0x1_0000;
    let t = mmio_trap(sgi + 0x100, 4, 2, true);
    assert_eq!(run(&mut w, &mut fw, &t, &mut regs), Resume::Retry);
    assert!(host_walk(&w, sgi).is_some());
    assert!(host_walk(&w, GICR).is_none());
    assert!(host_walk(&w, rd1).is_none());
    check_invariants(&w).unwrap();
}

/// The `SMC`s the EL2 entry code answers before taking KCore's lock
/// (`smc_forward::stateless`, then `smc_forward::handle`) get exactly what
/// `Host::handle_trap` would have given them under the lock, on both PSCI
/// backends, and every other `SMC` (PSCI, another immediate, a wider id) is
/// left to the lock.
#[test]
fn smcs_answered_without_the_lock_match_the_host() {
    use kcore::smc_forward::{handle, stateless};
    use kcore_abi::smccc;
    let calls: [(u64, [u64; 3]); 11] = [
        (smccc::SMCCC_VERSION.into(), [7, 8, 9]),
        (
            smccc::SMCCC_ARCH_FEATURES.into(),
            [smccc::ARCH_WORKAROUND_1.into(), 8, 9],
        ),
        (
            smccc::SMCCC_ARCH_FEATURES.into(),
            [psci::VERSION.into(), 0, 0],
        ),
        (smccc::ARCH_WORKAROUND_2.into(), [1, 0, 0]),
        (smccc::ARCH_WORKAROUND_2.into(), [0, 0, 0]),
        (smccc::TRNG_RND64.into(), [192, 5, 6]),
        (0xC400_0021, [0x1000, 0, 0]), // SDEI_EVENT_REGISTER
        (0xC200_0000, [1, 2, 3]),
        (0x8400_0000, [0, 0, 0]), // PSCI_VERSION: KCore's own
        (1 << 32 | 0x8000_0000, [0, 0, 0]),
        (u64::from(psci::CPU_OFF), [0, 0, 0]),
    ];
    for backend in [Backend::Firmware, Backend::SpinTable] {
        for imm in [0, 1] {
            for &(x0, args) in &calls {
                let t = trap(ec::SMC64, imm, 0, 0);
                let mut regs = [0u64; 31];
                regs[0] = x0;
                regs[1..4].copy_from_slice(&args);
                let expect_lockfree =
                    imm == 0 && u32::try_from(x0).is_ok_and(|f| !psci::is_psci(f));
                let Some(fid) = stateless(&t, x0) else {
                    assert!(!expect_lockfree, "{x0:#x} imm {imm} left to the lock");
                    continue;
                };
                assert!(expect_lockfree, "{x0:#x} imm {imm} taken without the lock");
                assert_eq!(u64::from(fid), x0);
                let mut fw_free = FakeFirmware {
                    answer: 0x55,
                    ..FakeFirmware::default()
                };
                let mut free = regs;
                handle(fid, &mut free, backend == Backend::Firmware, &mut fw_free);
                let mut w = world_with(PsciRelay::new(&[0, 1, 2, 3], 0).with_backend(backend));
                let mut fw = FakeFirmware {
                    answer: 0x55,
                    ..FakeFirmware::default()
                };
                let mut locked = regs;
                assert_eq!(run(&mut w, &mut fw, &t, &mut locked), Resume::Skip);
                assert_eq!(free, locked, "{x0:#x} on {backend:?}");
                assert_eq!(fw_free.calls, fw.calls, "{x0:#x} on {backend:?}");
            }
        }
    }
    // And only SMCs: an HVC is the hypercall ABI's.
    assert_eq!(stateless(&trap(ec::HVC64, 0, 0, 0), 0x8000_0000), None);
}
