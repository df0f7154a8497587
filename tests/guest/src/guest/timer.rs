//! The generic timer: the virtual counter (every timeout in the guest) and
//! the EL1 virtual timer, whose interrupt is PPI
//! [`TIMER_INTID`](kcore_test_guest::gic::TIMER_INTID), and the EL1
//! physical timer ([`physical`]).

use core::arch::asm;

/// `CNTV_CTL_EL0.ENABLE`.
pub const CTL_ENABLE: u64 = 1 << 0;
/// `CNTV_CTL_EL0.IMASK`: the timer condition does not assert the interrupt.
pub const CTL_IMASK: u64 = 1 << 1;
/// `CNTV_CTL_EL0.ISTATUS` (read-only): the timer condition is met.
pub const CTL_ISTATUS: u64 = 1 << 2;

/// `CNTVCT_EL0`, read after all earlier instructions.
pub fn counter() -> u64 {
    let v: u64;
    // SAFETY: reads the virtual counter; no side effects.
    unsafe {
        asm!("isb", "mrs {}, cntvct_el0", out(reg) v, options(nomem, nostack, preserves_flags))
    };
    v
}

/// `CNTFRQ_EL0`: counter ticks per second.
pub fn frequency() -> u64 {
    let v: u64;
    // SAFETY: reads an ID-like register; no side effects.
    unsafe { asm!("mrs {}, cntfrq_el0", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

/// Counter ticks in `ms` milliseconds (at least one).
pub fn ticks_in_ms(ms: u64) -> u64 {
    (frequency().saturating_mul(ms) / 1000).max(1)
}

/// The counter value `ms` milliseconds from now.
pub fn deadline_after_ms(ms: u64) -> u64 {
    counter().saturating_add(ticks_in_ms(ms))
}

/// Waits, spinning, until `done()` holds or the counter reaches `deadline`;
/// returns `done()`. For waiting on the other vCPU, which sends no interrupt.
pub fn spin_until(done: impl Fn() -> bool, deadline: u64) -> bool {
    loop {
        if done() {
            return true;
        }
        if counter() >= deadline {
            return done();
        }
        core::hint::spin_loop();
    }
}

/// Arms the virtual timer to fire when the counter reaches `cval`.
pub fn arm(cval: u64) {
    // SAFETY: programs this vCPU's virtual timer; no memory access.
    unsafe {
        asm!(
            "msr cntv_cval_el0, {cval}",
            "msr cntv_ctl_el0, {ctl}",
            "isb",
            cval = in(reg) cval,
            ctl = in(reg) CTL_ENABLE,
            options(nomem, nostack, preserves_flags),
        )
    };
}

/// Keeps the timer running but stops it asserting its interrupt (what the
/// interrupt handler does before EOI).
pub fn mask() {
    // SAFETY: programs this vCPU's virtual timer; no memory access.
    unsafe {
        asm!(
            "msr cntv_ctl_el0, {ctl}",
            "isb",
            ctl = in(reg) CTL_ENABLE | CTL_IMASK,
            options(nomem, nostack, preserves_flags),
        )
    };
}

/// Turns the timer off.
pub fn disarm() {
    // SAFETY: programs this vCPU's virtual timer; no memory access.
    unsafe {
        asm!(
            "msr cntv_ctl_el0, xzr",
            "isb",
            options(nomem, nostack, preserves_flags)
        )
    };
}

/// `CNTV_CTL_EL0`.
pub fn control() -> u64 {
    let v: u64;
    // SAFETY: reads this vCPU's timer control; no side effects.
    unsafe { asm!("mrs {}, cntv_ctl_el0", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

/// The EL1 physical timer (`CNTP_*`, against the physical counter), whose
/// interrupt is PPI [`PTIMER_INTID`](kcore_test_guest::gic::PTIMER_INTID).
pub mod physical {
    use super::{CTL_ENABLE, CTL_IMASK};
    use core::arch::asm;

    /// `CNTPCT_EL0`, read after all earlier instructions.
    pub fn counter() -> u64 {
        let v: u64;
        // SAFETY: reads the physical counter; no side effects.
        unsafe {
            asm!("isb", "mrs {}, cntpct_el0", out(reg) v, options(nomem, nostack, preserves_flags))
        };
        v
    }

    /// Writes `CNTP_CTL_EL0`.
    fn set_control(ctl: u64) {
        // SAFETY: programs this vCPU's physical timer; no memory access.
        unsafe {
            asm!(
                "msr cntp_ctl_el0, {ctl}",
                "isb",
                ctl = in(reg) ctl,
                options(nomem, nostack, preserves_flags)
            )
        };
    }

    /// Arms the timer `ticks` ahead through `CNTP_TVAL_EL0`; returns the
    /// compare value that set (`CNTP_CVAL_EL0`).
    pub fn arm_in(ticks: u64) -> u64 {
        let cval: u64;
        // SAFETY: programs this vCPU's physical timer; no memory access.
        unsafe {
            asm!(
                "msr cntp_tval_el0, {tval}",
                "isb",
                "mrs {cval}, cntp_cval_el0",
                tval = in(reg) ticks,
                cval = out(reg) cval,
                options(nomem, nostack, preserves_flags),
            )
        };
        set_control(CTL_ENABLE);
        cval
    }

    /// Keeps the timer running but stops it asserting its interrupt.
    pub fn mask() {
        set_control(CTL_ENABLE | CTL_IMASK);
    }

    /// Turns the timer off.
    pub fn disarm() {
        set_control(0);
    }

    /// `CNTP_CTL_EL0`.
    pub fn control() -> u64 {
        let v: u64;
        // SAFETY: reads this vCPU's timer control; no side effects.
        unsafe {
            asm!("mrs {}, cntp_ctl_el0", out(reg) v, options(nomem, nostack, preserves_flags))
        };
        v
    }
}
