//! The eventfd program ([`kcore_test_guest::eventfd`]): doorbells for the
//! host's ioeventfd and SPIs from its irqfds, on vCPU 0 alone. The guest
//! programs the distributor itself (the tests never do), then reports each
//! step on the test device and its own checks in the status word.

use super::{console, cpu, gic, irq, mmu, psci, testdev, timer};
use core::sync::atomic::Ordering::SeqCst;
use kcore_test_guest::Status;
use kcore_test_guest::eventfd::{
    DOORBELL, DOORBELL_VALUE, DOORBELLS, EDGE_GSI, GUEST_CHECKS, LEVEL_GSI, QUIET_MS, ROM,
    ROM_WRITE, ROM_XROM_WORD, STEP, XROM, XROM_RESULT, rom_word, spi, step_word,
};
use kcore_test_guest::testdev::{STATUS, Width};

/// Affinity routing and Group 1 on, both SPIs enabled and routed to this
/// vCPU (the edge irqfd's edge-triggered), and the timer PPI enabled: the
/// waits' deadlines are timer interrupts.
fn program_distributor() {
    gic::enable_distributor();
    gic::enable_spi(spi(EDGE_GSI), true);
    gic::enable_spi(spi(LEVEL_GSI), false);
    gic::enable_timer_ppi(0);
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
