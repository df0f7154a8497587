//! The eventfd program ([`kcore_test_guest::eventfd`]): doorbells for the
//! host's ioeventfd and SPIs from its irqfds, on vCPU 0 alone. The guest
//! programs the distributor itself (the tests never do), then reports each
//! step on the test device and its own checks in the status word.

use super::{console, cpu, gic, irq, mmu, psci, testdev, timer};
use core::sync::atomic::Ordering::SeqCst;
use kcore_test_guest::Status;
use kcore_test_guest::eventfd::{
    DOORBELL, DOORBELL_VALUE, DOORBELLS, EDGE_GSI, GICD, GICR, GUEST_CHECKS, LEVEL_GSI, QUIET_MS,
    ROM, ROM_WRITE, ROM_XROM_WORD, STEP, XROM, XROM_RESULT, rom_word, spi, step_word,
};
use kcore_test_guest::gic::TIMER_INTID;
use kcore_test_guest::testdev::{STATUS, Width};

/// A 32-bit distributor register write.
fn gicd_write(offset: u64, value: u32) {
    // SAFETY: a store to the distributor's page, which the identity map
    // maps as device memory and which holds no Rust object.
    unsafe { core::ptr::write_volatile((GICD + offset) as *mut u32, value) };
}

/// A 32-bit distributor register read.
fn gicd_read(offset: u64) -> u32 {
    // SAFETY: a load from the distributor's page, as in `gicd_write`.
    unsafe { core::ptr::read_volatile((GICD + offset) as *const u32) }
}

/// `GICD_CTLR`: affinity routing, Group 1 enabled; both SPIs Group 1,
/// priority 0xa0, routed to affinity 0.0.0.0 (this vCPU) and enabled, the
/// edge irqfd's edge-triggered; and the timer PPI enabled.
fn program_distributor() {
    gicd_write(0x0, 1 << 4 | 1 << 1);
    for intid in [spi(EDGE_GSI), spi(LEVEL_GSI)] {
        let (word, bit) = (u64::from(intid / 32) * 4, intid % 32);
        // IGROUPR is not a set/clear pair: read, modify, write.
        gicd_write(0x80 + word, gicd_read(0x80 + word) | 1 << bit);
        gicd_write(0x100 + word, 1 << bit);
        let prio = u64::from(intid) & !3;
        let shift = (intid % 4) * 8;
        let old = gicd_read(0x400 + prio);
        gicd_write(0x400 + prio, old & !(0xff << shift) | 0xa0 << shift);
        gicd_write(0x6000 + 8 * u64::from(intid), 0);
        gicd_write(0x6000 + 8 * u64::from(intid) + 4, 0);
    }
    let edge = spi(EDGE_GSI);
    let cfg = 0xC00 + u64::from(edge / 16) * 4;
    gicd_write(cfg, 2 << ((edge % 16) * 2));
    // This vCPU's timer PPI, in its redistributor's SGI frame
    // (GICR_ISENABLER0): the waits' deadlines are timer interrupts.
    // SAFETY: a store to the first redistributor's SGI frame, mapped as
    // device memory, which holds no Rust object.
    unsafe { core::ptr::write_volatile((GICR + 0x1_0100) as *mut u32, 1 << TIMER_INTID) };
}

/// Reports `step` with the SPIs taken so far.
fn step(n: u64) {
    let edge = u64::from(irq::EDGE_SPIS.load(SeqCst));
    let level = u64::from(irq::LEVEL_SPIS.load(SeqCst));
    testdev::write(STEP, Width::Double, step_word(n, edge, level));
}

/// Waits (WFI) up to `ms` for `edge` edge SPIs and `level` level ones.
fn wait_for(edge: u32, level: u32, ms: u64) -> bool {
    irq::wait_until(
        || irq::EDGE_SPIS.load(SeqCst) >= edge && irq::LEVEL_SPIS.load(SeqCst) >= level,
        timer::deadline_after_ms(ms),
    )
}

/// Reads the read-only slot, writes its first word (an MMIO exit to the
/// host) and reads it again: whether it held the host's words throughout.
fn rom() -> bool {
    let at = |i: u64| (ROM + 8 * i) as *mut u64;
    // SAFETY: a load (then another, a store and a load) in the host's
    // read-only slot, which the identity map maps as device memory and
    // which holds no Rust object.
    let a = unsafe { core::ptr::read_volatile(at(0)) };
    // SAFETY: as above.
    let b = unsafe { core::ptr::read_volatile(at(1)) };
    // SAFETY: as above.
    unsafe { core::ptr::write_volatile(at(0), ROM_WRITE) };
    // SAFETY: as above.
    let c = unsafe { core::ptr::read_volatile(at(0)) };
    let ok = a == rom_word(0) && b == rom_word(1) && c == rom_word(0);
    if !ok {
        console::line(format_args!(
            "eventfd: read-only memory read {a:#x} {b:#x}, then {c:#x}"
        ));
    }
    ok
}

/// Calls the code in the executable read-only slot: whether it returned
/// what it should.
fn call_xrom() -> bool {
    // SAFETY: the host filled XROM with `XROM_CODE`, a leaf function of
    // the C ABI that only sets x0; the identity map maps it executable.
    let f: extern "C" fn() -> u64 = unsafe { core::mem::transmute(XROM as usize) };
    let got = f();
    console::line(format_args!(
        "eventfd: the read-only slot's code returned {got:#x}"
    ));
    got == XROM_RESULT
}

/// One check: counts it, or prints why not.
fn check(ok: bool, passed: &mut u32, what: &str) {
    if ok {
        *passed += 1;
    } else {
        let (e, l) = (irq::EDGE_SPIS.load(SeqCst), irq::LEVEL_SPIS.load(SeqCst));
        console::line(format_args!(
            "eventfd: FAIL {what} (edge SPIs {e}, level SPIs {l})"
        ));
    }
}

/// Runs the program, reports and turns the VM off.
pub fn run() -> ! {
    mmu::build_tables();
    // SAFETY: a load from the host's read-only slot (device memory: the MMU
    // is still off), which holds no Rust object.
    let xrom = unsafe { core::ptr::read_volatile((ROM + 8 * ROM_XROM_WORD) as *const u64) } == 1;
    if xrom {
        mmu::map_normal_block(XROM);
    }
    mmu::enable();
    gic::init();
    program_distributor();
    let mut passed = 0;
    check(
        rom() && (!xrom || call_xrom()),
        &mut passed,
        "the read-only memory",
    );
    for _ in 0..DOORBELLS {
        testdev::write(DOORBELL, Width::Word, DOORBELL_VALUE);
    }
    testdev::write(DOORBELL, Width::Word, DOORBELL_VALUE + 1);
    step(1);
    check(
        wait_for(1, 0, 2000),
        &mut passed,
        "no SPI from the edge irqfd signalled before the entry",
    );
    step(2);
    check(
        wait_for(2, 0, 5000),
        &mut passed,
        "no SPI from the edge irqfd signalled during WFI",
    );
    step(3);
    check(
        wait_for(2, 1, 2000),
        &mut passed,
        "no SPI from the resampling irqfd",
    );
    step(4);
    check(
        !wait_for(3, 1, QUIET_MS) && irq::UNEXPECTED.load(SeqCst) == 0,
        &mut passed,
        "an interrupt after the irqfd's deassignment, or an unexpected one",
    );
    testdev::write(DOORBELL, Width::Word, DOORBELL_VALUE);
    step(5);
    let status = Status {
        passed,
        failed: GUEST_CHECKS - passed,
    };
    console::line(format_args!(
        "eventfd: {} of {GUEST_CHECKS} guest checks passed",
        status.passed
    ));
    testdev::write(STATUS, Width::Double, status.to_word());
    psci::system_off();
    cpu::park()
}
