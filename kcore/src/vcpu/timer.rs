//! The guest's virtual timer around a run: before each entry KCore's list
//! register entry for it is brought up to date with the timer's state
//! ([`prepare_timer`]), after the run its state goes back into the context
//! ([`save_timer`]).

use super::loaded::Loaded;
use crate::vgic::{Lr, LrState, MAX_LRS, TIMER_PPI};

/// Brings KCore's timer list register entry up to date before an entry at
/// physical counter `now` on a GIC with `lr_count` list registers: pending
/// if the guest's timer asserts and the guest has not got it yet, and no
/// longer pending once it does not (the guest re-armed, masked or stopped it
/// since: the line is level, and KVM resamples mapped level interrupts the
/// same way), so the guest never takes a stale timer interrupt in a later
/// run. The entry is hardware-mapped to the timer's PPI, so the guest's
/// deactivation ends it at the physical GIC too.
///
/// KServ's entries come first and may fill every list register, as KVM's
/// timer shares the list registers with every other interrupt. The timer's
/// entry then takes a free one; with none free, a pending timer waits for a
/// run with one (held active at the physical GIC meanwhile, as when KServ's
/// vGIC has it disabled: its pending state comes back from the line), and
/// an active one, whose completion must reach the hardware, takes the place
/// of KServ's last entry for this run ([`LrSet::displaced`]).
///
/// [`LrSet::displaced`]: crate::vgic::LrSet::displaced
pub fn prepare_timer(l: &mut Loaded, now: u64, lr_count: usize) {
    let n = l.n_irqs.min(MAX_LRS);
    let asserts = l.ctx.timer_asserts(now);
    if !asserts {
        l.ctx.timer_lr = match l.ctx.timer_lr {
            LrState::Pending => LrState::Invalid,
            LrState::PendingActive => LrState::Active,
            s => s,
        };
    }
    // Every list register holds one of KServ's entries (and the timer has
    // not taken one of their places in this run yet).
    let room = n == 0 || n < lr_count.min(MAX_LRS) || l.lrs.displaced;
    if l.ctx.timer_lr == LrState::Invalid && l.timer.enabled && asserts && room {
        l.ctx.timer_lr = LrState::Pending;
    }
    if l.ctx.timer_lr == LrState::Pending && !room {
        // No list register for it in this run: it waits.
        l.ctx.timer_lr = LrState::Invalid;
    }
    // Asserted but not delivered: held active, as KVM does, or the line
    // would end every run at once.
    l.lrs.hold_active = if asserts && l.ctx.timer_lr == LrState::Invalid {
        1 << TIMER_PPI
    } else {
        0
    };
    l.lrs.len = n;
    if l.ctx.timer_lr != LrState::Invalid {
        let timer = Lr {
            vintid: l.timer.vintid,
            priority: l.timer.priority,
            group1: l.timer.group1,
            state: l.ctx.timer_lr,
            hw: Some(TIMER_PPI),
        };
        if !room {
            l.lrs.displaced = true;
        }
        if l.lrs.displaced {
            // Keeps the place it took in this run (KServ's entry there was
            // never loaded).
            l.lrs.lrs[n - 1] = timer;
        } else {
            l.lrs.push(timer);
        }
    } else if l.lrs.displaced {
        // Completed in this run: its place stays an empty entry.
        l.lrs.lrs[n - 1].state = LrState::Invalid;
    }
}

/// Records the list register states after a run: KCore's timer entry into
/// the context (KServ's stay in [`Loaded::lrs`] for the report).
pub fn save_timer(l: &mut Loaded) {
    let n = l.n_irqs;
    let at = if l.lrs.displaced {
        n.wrapping_sub(1)
    } else {
        n
    };
    l.ctx.timer_lr = match l.lrs.as_slice().get(at) {
        Some(lr) if lr.vintid == l.timer.vintid => lr.state,
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
        prepare_timer(&mut l, 149, 4);
        assert_eq!(l.lrs.len, 0);
        prepare_timer(&mut l, 150, 4);
        assert_eq!(l.lrs.as_slice()[0].hw, Some(TIMER_PPI));
        assert_eq!(l.lrs.as_slice()[0].state, LrState::Pending);
        // The guest acknowledged it: active survives the exit and the next
        // entry reloads it as is.
        l.lrs.lrs[0].state = LrState::Active;
        save_timer(&mut l);
        assert_eq!(l.ctx.timer_lr, LrState::Active);
        prepare_timer(&mut l, 200, 4);
        assert_eq!(l.lrs.as_slice()[0].state, LrState::Active);
        // Masked timers do not assert.
        l.ctx.cntv_ctl = 3;
        l.ctx.timer_lr = LrState::Invalid;
        prepare_timer(&mut l, 1000, 4);
        assert_eq!(l.lrs.len, 0);
        assert_eq!(l.ctx.timer_deadline(), u64::MAX);
    }

    #[test]
    fn the_guest_sees_its_timer_as_the_ppi_kserv_names() {
        use super::super::loaded::TimerIrq;
        use kcore_abi::run::entry_flags::{TIMER_INTID_SHIFT, timer_intid};
        assert_eq!(timer_intid(0), Some(27));
        assert_eq!(timer_intid(20 << TIMER_INTID_SHIFT), Some(20));
        assert_eq!(timer_intid(31 << TIMER_INTID_SHIFT), Some(31));
        assert_eq!(timer_intid(15 << TIMER_INTID_SHIFT), None);
        assert_eq!(timer_intid(32 << TIMER_INTID_SHIFT), None);
        let mut l = loaded();
        l.timer = TimerIrq::from_flags(20 << TIMER_INTID_SHIFT);
        l.ctx.cntv_ctl = 1;
        prepare_timer(&mut l, 0, 4);
        let lr = l.lrs.as_slice()[0];
        assert_eq!((lr.vintid, lr.hw), (20, Some(TIMER_PPI)), "physical 27");
        l.lrs.lrs[0].state = LrState::Active;
        save_timer(&mut l);
        assert_eq!(l.ctx.timer_lr, LrState::Active);
        // KServ may supply neither INTID.
        use crate::vgic::check_irqs_into;
        let w = |i: u64| i | 0xA0 << 32 | 1 << 40 | 1 << 41;
        for i in [20, 27] {
            let r = check_irqs_into(&[w(i)], 4, 20, &mut l.lrs);
            assert_eq!(r, Err(kcore_abi::Error::Denied), "{i}");
        }
        assert!(check_irqs_into(&[w(21)], 4, 20, &mut l.lrs).is_ok());
    }

    #[test]
    fn a_timer_pending_from_before_a_rearm_is_not_delivered() {
        let mut l = loaded();
        l.ctx.cntv_ctl = 1;
        l.ctx.cntv_cval = 100;
        prepare_timer(&mut l, 100, 4);
        assert_eq!(l.lrs.as_slice()[0].state, LrState::Pending);
        // The run ends before the guest takes it (IRQs masked), and the
        // guest then re-arms the timer for later: the pending state goes.
        save_timer(&mut l);
        l.ctx.cntv_cval = 500;
        prepare_timer(&mut l, 200, 4);
        assert_eq!(l.lrs.len, 0, "a stale timer interrupt would be taken");
        assert_eq!(l.ctx.timer_lr, LrState::Invalid);
        // Turned off while active and pending: the active part stays for
        // the guest to complete.
        l.ctx.timer_lr = LrState::PendingActive;
        l.ctx.cntv_ctl = 0;
        prepare_timer(&mut l, 600, 4);
        assert_eq!(l.lrs.as_slice()[0].state, LrState::Active);
        // When it fires again, it is pending again.
        l.ctx.timer_lr = LrState::Invalid;
        l.ctx.cntv_ctl = 1;
        prepare_timer(&mut l, 600, 4);
        assert_eq!(l.lrs.as_slice()[0].state, LrState::Pending);
    }

    #[test]
    fn kserv_may_fill_every_list_register_and_the_timer_waits_or_displaces() {
        use crate::vgic::check_irqs_into;
        use kcore_abi::run::irq;
        let mut l = loaded();
        l.ctx.cntv_ctl = 1;
        l.ctx.cntv_cval = 100;
        let words: [u64; 4] =
            core::array::from_fn(|i| irq::encode(32 + i as u32, 0x80, true, irq::ACTIVE));
        l.irq_words[..4].copy_from_slice(&words);
        l.n_irqs = 4;
        check_irqs_into(&words, 4, TIMER_PPI, &mut l.lrs).expect("all four list registers");
        // Pending, no room: it waits, held active at the GIC meanwhile.
        prepare_timer(&mut l, 100, 4);
        assert_eq!(l.lrs.len, 4);
        assert!(l.lrs.as_slice().iter().all(|lr| lr.hw.is_none()));
        assert_eq!(l.lrs.hold_active, 1 << TIMER_PPI);
        save_timer(&mut l);
        assert_eq!(l.ctx.timer_lr, LrState::Invalid);
        // With a free list register it is delivered.
        l.n_irqs = 3;
        check_irqs_into(&words[..3], 4, TIMER_PPI, &mut l.lrs).expect("three");
        prepare_timer(&mut l, 100, 4);
        assert_eq!(l.lrs.as_slice()[3].hw, Some(TIMER_PPI));
        assert_eq!(l.lrs.hold_active, 0);
        l.lrs.lrs[3].state = LrState::Active;
        save_timer(&mut l);
        assert_eq!(l.ctx.timer_lr, LrState::Active);
        // Active and KServ fills all four again: the timer takes the last
        // place, whose entry is reported as supplied.
        l.n_irqs = 4;
        check_irqs_into(&words, 4, TIMER_PPI, &mut l.lrs).expect("all four");
        prepare_timer(&mut l, 100, 4);
        assert_eq!(l.lrs.len, 4);
        assert!(l.lrs.displaced);
        let last = l.lrs.as_slice()[3];
        assert_eq!((last.vintid, last.state), (TIMER_PPI, LrState::Active));
        assert_eq!(crate::vgic::report(words[3], &last), words[3]);
        assert_eq!(l.lrs.as_slice()[2].vintid, 34, "the others stay");
        // The guest completes it within the run; at the next entry of the
        // same run its place stays empty, and the timer can take it again.
        l.lrs.lrs[3].state = LrState::Invalid;
        save_timer(&mut l);
        assert_eq!(l.ctx.timer_lr, LrState::Invalid);
        l.ctx.cntv_cval = 500;
        prepare_timer(&mut l, 200, 4);
        assert_eq!(l.lrs.as_slice()[3].state, LrState::Invalid);
        assert_eq!(l.lrs.hold_active, 0);
        prepare_timer(&mut l, 500, 4);
        let last = l.lrs.as_slice()[3];
        assert_eq!((last.vintid, last.state), (TIMER_PPI, LrState::Pending));
        assert_eq!(l.lrs.len, 4);
    }
}
