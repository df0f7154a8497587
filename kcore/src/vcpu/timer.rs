//! The guest's virtual timer around a run: before each entry KCore's list
//! register entry for it is brought up to date with the timer's state
//! ([`prepare_timer`]), after the run its state goes back into the context
//! ([`save_timer`]).

use super::loaded::Loaded;
use crate::vgic::{Lr, LrState, MAX_LRS, TIMER_PPI};

/// Brings KCore's timer list register entry up to date before an entry at
/// physical counter `now`: pending if the guest's timer asserts and the
/// guest has not got it yet, and no longer pending once it does not (the
/// guest re-armed, masked or stopped it since: the line is level, and KVM
/// resamples mapped level interrupts the same way), so the guest never
/// takes a stale timer interrupt in a later run. The entry is
/// hardware-mapped to the timer's PPI, so the guest's deactivation ends it
/// at the physical GIC too.
pub fn prepare_timer(l: &mut Loaded, now: u64) {
    let n = l.n_irqs;
    let asserts = l.ctx.timer_asserts(now);
    if !asserts {
        l.ctx.timer_lr = match l.ctx.timer_lr {
            LrState::Pending => LrState::Invalid,
            LrState::PendingActive => LrState::Active,
            s => s,
        };
    }
    if l.ctx.timer_lr == LrState::Invalid && l.timer.enabled && asserts {
        l.ctx.timer_lr = LrState::Pending;
    }
    // Asserted but not deliverable (disabled in KServ's model): held
    // active, as KVM does, or the line would end every run at once.
    l.lrs.hold_active = if asserts && l.ctx.timer_lr == LrState::Invalid {
        1 << TIMER_PPI
    } else {
        0
    };
    l.lrs.len = n.min(MAX_LRS);
    if l.ctx.timer_lr != LrState::Invalid {
        l.lrs.push(Lr {
            vintid: TIMER_PPI,
            priority: l.timer.priority,
            group1: l.timer.group1,
            state: l.ctx.timer_lr,
            hw: Some(TIMER_PPI),
        });
    }
}

/// Records the list register states after a run: KCore's timer entry into
/// the context (KServ's stay in [`Loaded::lrs`] for the report).
pub fn save_timer(l: &mut Loaded) {
    let n = l.n_irqs;
    l.ctx.timer_lr = match l.lrs.as_slice().get(n) {
        Some(lr) if lr.vintid == TIMER_PPI => lr.state,
        _ => LrState::Invalid,
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vcpu::test_util::loaded;

    #[test]
    fn timer_entry_follows_the_guest_timer() {
        let mut l = loaded();
        l.ctx.cntv_ctl = 1;
        l.ctx.cntv_cval = 100;
        l.ctx.cntvoff = 50;
        assert_eq!(l.ctx.timer_deadline(), 150);
        prepare_timer(&mut l, 149);
        assert_eq!(l.lrs.len, 0);
        prepare_timer(&mut l, 150);
        assert_eq!(l.lrs.as_slice()[0].hw, Some(TIMER_PPI));
        assert_eq!(l.lrs.as_slice()[0].state, LrState::Pending);
        // The guest acknowledged it: active survives the exit and the next
        // entry reloads it as is.
        l.lrs.lrs[0].state = LrState::Active;
        save_timer(&mut l);
        assert_eq!(l.ctx.timer_lr, LrState::Active);
        prepare_timer(&mut l, 200);
        assert_eq!(l.lrs.as_slice()[0].state, LrState::Active);
        // Masked timers do not assert.
        l.ctx.cntv_ctl = 3;
        l.ctx.timer_lr = LrState::Invalid;
        prepare_timer(&mut l, 1000);
        assert_eq!(l.lrs.len, 0);
        assert_eq!(l.ctx.timer_deadline(), u64::MAX);
    }

    #[test]
    fn a_timer_pending_from_before_a_rearm_is_not_delivered() {
        let mut l = loaded();
        l.ctx.cntv_ctl = 1;
        l.ctx.cntv_cval = 100;
        prepare_timer(&mut l, 100);
        assert_eq!(l.lrs.as_slice()[0].state, LrState::Pending);
        // The run ends before the guest takes it (IRQs masked), and the
        // guest then re-arms the timer for later: the pending state goes.
        save_timer(&mut l);
        l.ctx.cntv_cval = 500;
        prepare_timer(&mut l, 200);
        assert_eq!(l.lrs.len, 0, "a stale timer interrupt would be taken");
        assert_eq!(l.ctx.timer_lr, LrState::Invalid);
        // Turned off while active and pending: the active part stays for
        // the guest to complete.
        l.ctx.timer_lr = LrState::PendingActive;
        l.ctx.cntv_ctl = 0;
        prepare_timer(&mut l, 600);
        assert_eq!(l.lrs.as_slice()[0].state, LrState::Active);
        // When it fires again, it is pending again.
        l.ctx.timer_lr = LrState::Invalid;
        l.ctx.cntv_ctl = 1;
        prepare_timer(&mut l, 600);
        assert_eq!(l.lrs.as_slice()[0].state, LrState::Pending);
    }
}
