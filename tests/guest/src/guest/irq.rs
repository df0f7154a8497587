//! The IRQ handler and what it records, and the idle wait built on it.
//!
//! The handler acknowledges one interrupt and:
//! - the virtual timer: if it fired, masks it (the tests re-arm it) and
//!   counts it with the counter value it saw (a stale one is ignored);
//! - the physical timer: alike, with the physical counter's value;
//! - [`SGI_PING`] (on vCPU 1): counts it and answers with [`SGI_PONG`] to
//!   vCPU 0;
//! - [`SGI_PONG`] (on vCPU 0): counts it;
//! - the eventfd program's SPIs (on vCPU 0): counts them;
//! - the bench program's SPI (on vCPU 0): counts it;
//! - the ITS tests' LPI (on vCPU 0): counts it;
//! - anything else: counts it as unexpected.

use super::{cpu, gic, timer};
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use kcore_test_guest::VCPUS;
use kcore_test_guest::bench::IRQ_GSI;
use kcore_test_guest::eventfd::{EDGE_GSI, LEVEL_GSI, spi};
use kcore_test_guest::gic::{ITS_LPI, PTIMER_INTID, SGI_PING, SGI_PONG, TIMER_INTID};

/// The eventfd program's SPIs.
const EDGE_SPI: u32 = spi(EDGE_GSI);
const LEVEL_SPI: u32 = spi(LEVEL_GSI);
/// The bench program's SPI.
const BENCH_SPI: u32 = spi(IRQ_GSI);

/// Per-vCPU record of virtual timer interrupts.
pub struct TimerIrqs {
    /// How many the vCPU took.
    pub count: AtomicU32,
    /// `CNTVCT_EL0` in the handler of the last one.
    pub at: AtomicU64,
}

/// Timer interrupts taken, by vCPU index.
pub static TIMER: [TimerIrqs; VCPUS as usize] = [const {
    TimerIrqs {
        count: AtomicU32::new(0),
        at: AtomicU64::new(0),
    }
}; VCPUS as usize];
/// Physical timer interrupts taken, by vCPU index (`at`: `CNTPCT_EL0`).
pub static PTIMER: [TimerIrqs; VCPUS as usize] = [const {
    TimerIrqs {
        count: AtomicU32::new(0),
        at: AtomicU64::new(0),
    }
}; VCPUS as usize];
/// [`SGI_PING`]s taken by vCPU 1.
pub static PINGS: AtomicU32 = AtomicU32::new(0);
/// [`SGI_PONG`]s taken by vCPU 0.
pub static PONGS: AtomicU32 = AtomicU32::new(0);
/// SPIs of the eventfd program's edge irqfd taken (vCPU 0).
pub static EDGE_SPIS: AtomicU32 = AtomicU32::new(0);
/// SPIs of the eventfd program's resampling irqfd taken (vCPU 0).
pub static LEVEL_SPIS: AtomicU32 = AtomicU32::new(0);
/// The bench program's SPIs taken by vCPU 0.
pub static BENCH_SPIS: AtomicU32 = AtomicU32::new(0);
/// The ITS tests' LPIs ([`ITS_LPI`]) taken by vCPU 0.
pub static ITS_LPIS: AtomicU32 = AtomicU32::new(0);
/// Timer interrupts taken whose timer had not fired (stale ones, see
/// [`handle`]).
pub static SPURIOUS_TIMER: AtomicU32 = AtomicU32::new(0);
/// Interrupts with any other INTID (or an SGI on the wrong vCPU).
pub static UNEXPECTED: AtomicU32 = AtomicU32::new(0);
/// The INTID of the last unexpected interrupt.
pub static LAST_UNEXPECTED: AtomicU32 = AtomicU32::new(0);

/// Handles one IRQ (called from the vector table).
pub fn handle() {
    let irq = gic::acknowledge();
    let intid = irq.intid;
    if gic::SPECIAL_INTIDS.contains(&intid) {
        return;
    }
    let vcpu = cpu::index();
    match (intid, vcpu) {
        (TIMER_INTID, _) if vcpu < TIMER.len() => {
            // Only a timer whose condition holds fired. One that was
            // re-armed or turned off after its interrupt became pending is
            // spurious (as Linux's timer handler treats it): masking the
            // timer then would take away the wake-up `wait_until` armed.
            let fired = timer::CTL_ENABLE | timer::CTL_ISTATUS;
            if timer::control() & (fired | timer::CTL_IMASK) == fired {
                timer::mask();
                TIMER[vcpu].at.store(timer::counter(), Ordering::SeqCst);
                TIMER[vcpu].count.fetch_add(1, Ordering::SeqCst);
            } else {
                SPURIOUS_TIMER.fetch_add(1, Ordering::SeqCst);
            }
        }
        (PTIMER_INTID, _) if vcpu < PTIMER.len() => {
            let fired = timer::CTL_ENABLE | timer::CTL_ISTATUS;
            if timer::physical::control() & (fired | timer::CTL_IMASK) == fired {
                timer::physical::mask();
                let at = timer::physical::counter();
                PTIMER[vcpu].at.store(at, Ordering::SeqCst);
                PTIMER[vcpu].count.fetch_add(1, Ordering::SeqCst);
            } else {
                SPURIOUS_TIMER.fetch_add(1, Ordering::SeqCst);
            }
        }
        (SGI_PING, 1) => {
            PINGS.fetch_add(1, Ordering::SeqCst);
            gic::send_sgi(SGI_PONG, 0);
        }
        (SGI_PONG, 0) => {
            PONGS.fetch_add(1, Ordering::SeqCst);
        }
        (EDGE_SPI, 0) => {
            EDGE_SPIS.fetch_add(1, Ordering::SeqCst);
        }
        (LEVEL_SPI, 0) => {
            LEVEL_SPIS.fetch_add(1, Ordering::SeqCst);
        }
        (BENCH_SPI, 0) => {
            BENCH_SPIS.fetch_add(1, Ordering::SeqCst);
        }
        (ITS_LPI, 0) => {
            ITS_LPIS.fetch_add(1, Ordering::SeqCst);
        }
        _ => {
            LAST_UNEXPECTED.store(intid, Ordering::SeqCst);
            UNEXPECTED.fetch_add(1, Ordering::SeqCst);
        }
    }
    gic::end_of_interrupt(irq);
}

/// Idles in WFI until `done()` holds or the counter reaches `deadline`;
/// returns `done()`. The check and the WFI run with IRQs masked (an
/// interrupt arriving in between still ends the WFI) and interrupts are taken
/// right after each WFI. The virtual timer is armed at `deadline` so that the
/// wait ends even if nothing else happens, and is off again on return.
pub fn wait_until(done: impl Fn() -> bool, deadline: u64) -> bool {
    timer::arm(deadline);
    let finished = loop {
        if done() {
            break true;
        }
        if timer::counter() >= deadline {
            break done();
        }
        cpu::wfi();
        cpu::take_pending_irqs();
    };
    timer::disarm();
    finished
}
