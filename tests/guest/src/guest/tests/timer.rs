//! The virtual timer: its interrupt through the GIC CPU interface
//! (`vtimer`), and waking a vCPU that idles in WFI with the interrupt
//! masked (`wfi-timer`); the EL1 physical timer's interrupt, with the
//! vCPU idling in WFI meanwhile (`ptimer`).

use crate::guest::runner::{TestResult, ensure};
use crate::guest::timer::{self, CTL_IMASK, CTL_ISTATUS};
use crate::guest::{cpu, gic, irq};
use core::sync::atomic::Ordering;
use kcore_test_guest::gic::{PTIMER_INTID, TIMER_INTID};

/// The `vtimer` test's deadline.
const VTIMER_MS: u64 = 2;
/// The `wfi-timer` test's deadline.
const WFI_TIMER_MS: u64 = 10;
/// How long an expected interrupt may take.
const TIMEOUT_MS: u64 = 5000;

/// Timer interrupts vCPU 0 has taken.
fn taken() -> u32 {
    irq::TIMER[0].count.load(Ordering::SeqCst)
}

/// Sets up vCPU 0's GIC CPU interface (for this and every later test), arms
/// the timer 2 ms ahead and idles until the handler has taken its interrupt:
/// not before the deadline (and none before the timer fired), exactly INTID
/// 27, with the timer condition still met and masked by the handler.
pub fn vtimer() -> TestResult {
    gic::init();
    let before = taken();
    let spurious = irq::SPURIOUS_TIMER.load(Ordering::SeqCst);
    let unexpected = irq::UNEXPECTED.load(Ordering::SeqCst);
    let start = timer::counter();
    let cval = start + timer::ticks_in_ms(VTIMER_MS);
    let timeout = start + timer::ticks_in_ms(TIMEOUT_MS);
    timer::arm(cval);
    while taken() == before && timer::counter() < timeout {
        cpu::wfi();
        cpu::take_pending_irqs();
    }
    let end = timer::counter();
    let ctl = timer::control();
    timer::disarm();
    ensure!(
        taken() != before,
        "no interrupt {TIMER_INTID} within {TIMEOUT_MS} ms (CNTV_CTL_EL0 {ctl:#x}, {} other interrupts)",
        irq::UNEXPECTED.load(Ordering::SeqCst) - unexpected
    );
    let at = irq::TIMER[0].at.load(Ordering::SeqCst);
    ensure!(
        cval <= at && at <= end,
        "interrupt at counter {at:#x}: CVAL was {cval:#x}, the wait ended at {end:#x}"
    );
    // Nothing turned the timer off or re-armed it: an interrupt before it
    // fired would be the host's doing.
    let early = irq::SPURIOUS_TIMER.load(Ordering::SeqCst) - spurious;
    ensure!(
        early == 0,
        "{early} interrupts {TIMER_INTID} before the timer fired"
    );
    ensure!(
        ctl & (CTL_ISTATUS | CTL_IMASK) == CTL_ISTATUS | CTL_IMASK,
        "CNTV_CTL_EL0 is {ctl:#x} after the interrupt"
    );
    ensure!(
        irq::UNEXPECTED.load(Ordering::SeqCst) == unexpected,
        "unexpected INTID {}",
        irq::LAST_UNEXPECTED.load(Ordering::SeqCst)
    );
    Ok(())
}

/// Arms the timer 10 ms ahead and waits in WFI with IRQs masked until the
/// counter passes it (only the host can end those WFIs); the interrupt must
/// then be pending and is taken as soon as IRQs are unmasked.
pub fn wfi_timer() -> TestResult {
    let before = taken();
    let start = timer::counter();
    let cval = start + timer::ticks_in_ms(WFI_TIMER_MS);
    timer::arm(cval);
    let mut wakeups = 0u32;
    while timer::counter() < cval {
        cpu::wfi();
        wakeups += 1;
    }
    let woke = timer::counter();
    let ctl = timer::control();
    let delivered = timer::spin_until(
        || {
            cpu::take_pending_irqs();
            taken() != before
        },
        woke + timer::ticks_in_ms(TIMEOUT_MS),
    );
    timer::disarm();
    ensure!(
        ctl & CTL_ISTATUS != 0,
        "CNTV_CTL_EL0 is {ctl:#x} at counter {woke:#x} (CVAL {cval:#x})"
    );
    ensure!(
        delivered,
        "woke at {woke:#x} (CVAL {cval:#x}, {wakeups} WFIs) but no interrupt {TIMER_INTID} was pending"
    );
    let at = irq::TIMER[0].at.load(Ordering::SeqCst);
    ensure!(
        at >= cval,
        "interrupt at counter {at:#x}, before CVAL {cval:#x}"
    );
    Ok(())
}

/// Arms the physical timer 2 ms ahead through `CNTP_TVAL_EL0` and idles in
/// WFI (the virtual timer off: only the physical one can end the waits)
/// until the handler has taken its interrupt: exactly INTID 30, not before
/// the compare value, with the timer condition still met and masked by the
/// handler, and nothing else taken.
pub fn ptimer() -> TestResult {
    let taken = || irq::PTIMER[0].count.load(Ordering::SeqCst);
    let before = taken();
    let spurious = irq::SPURIOUS_TIMER.load(Ordering::SeqCst);
    let unexpected = irq::UNEXPECTED.load(Ordering::SeqCst);
    let ticks = timer::ticks_in_ms(VTIMER_MS);
    let start = timer::physical::counter();
    let cval = timer::physical::arm_in(ticks);
    ensure!(
        start + ticks <= cval && cval <= timer::physical::counter() + ticks,
        "CNTP_TVAL_EL0 {ticks:#x} at counter {start:#x} set CNTP_CVAL_EL0 {cval:#x}"
    );
    let timeout = timer::deadline_after_ms(TIMEOUT_MS);
    while taken() == before && timer::counter() < timeout {
        cpu::wfi();
        cpu::take_pending_irqs();
    }
    let end = timer::physical::counter();
    let ctl = timer::physical::control();
    timer::physical::disarm();
    ensure!(
        taken() != before,
        "no interrupt {PTIMER_INTID} within {TIMEOUT_MS} ms (CNTP_CTL_EL0 {ctl:#x}, {} other interrupts)",
        irq::UNEXPECTED.load(Ordering::SeqCst) - unexpected
    );
    let at = irq::PTIMER[0].at.load(Ordering::SeqCst);
    ensure!(
        cval <= at && at <= end,
        "interrupt at counter {at:#x}: CVAL was {cval:#x}, the wait ended at {end:#x}"
    );
    let early = irq::SPURIOUS_TIMER.load(Ordering::SeqCst) - spurious;
    ensure!(early == 0, "{early} stale timer interrupts");
    ensure!(
        ctl & (CTL_ISTATUS | CTL_IMASK) == CTL_ISTATUS | CTL_IMASK,
        "CNTP_CTL_EL0 is {ctl:#x} after the interrupt"
    );
    ensure!(
        irq::UNEXPECTED.load(Ordering::SeqCst) == unexpected,
        "unexpected INTID {}",
        irq::LAST_UNEXPECTED.load(Ordering::SeqCst)
    );
    Ok(())
}
