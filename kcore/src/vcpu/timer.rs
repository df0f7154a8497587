//! The guest's two EL1 timers around a run: before each entry KCore's list
//! register entries for them are brought up to date with the timers' state
//! ([`prepare_timer`]), after the run their states go back into the context
//! ([`save_timer`]). The virtual timer (physical PPI 27) and the EL1
//! physical timer (PPI 30) are handled alike, each with its own entry, state
//! and configuration from KServ's vGIC ([`Loaded::timer_irq`]).

use super::context::Timer;
use super::loaded::Loaded;
use crate::vgic::{Lr, LrState, MAX_LRS};

/// Brings KCore's timer list register entries up to date before an entry
/// at physical counter `now` on a GIC with `lr_count` list registers: an
/// entry is pending if its timer asserts and the guest has not got it yet,
/// and no longer pending once it does not (the guest re-armed, masked or
/// stopped it since: the line is level, and KVM resamples mapped level
/// interrupts the same way), so the guest never takes a stale timer
/// interrupt in a later run. Each entry is hardware-mapped to its timer's
/// PPI, so the guest's deactivation ends it at the physical GIC too.
///
/// KServ's entries come first and may fill every list register, as KVM's
/// timers share the list registers with every other interrupt. A timer's
/// entry then takes a free one (the virtual timer's first); with none free,
/// a pending timer waits for a run with one (held active at the physical
/// GIC meanwhile, as when KServ's vGIC has it disabled: its pending state
/// comes back from the line), and an active one, whose completion must
/// reach the hardware, takes the place of KServ's last entry not yet taken
/// for this run. An entry taken so is not loaded and is reported back as
/// supplied ([`crate::vgic::report`]: the hardware bit marks the place as
/// KCore's); the timer keeps that place until the run ends.
pub fn prepare_timer(l: &mut Loaded, now: u64, lr_count: usize) {
    let n = l.n_irqs.min(MAX_LRS);
    l.lrs.len = n;
    l.lrs.hold_active = 0;
    let cap = lr_count.min(MAX_LRS);
    for t in Timer::BOTH {
        prepare_one(l, t, now, n, cap);
    }
}

/// [`prepare_timer`] for timer `t`, KServ's entries being the first `n`
/// of `cap` list registers.
fn prepare_one(l: &mut Loaded, t: Timer, now: u64, n: usize, cap: usize) {
    let irq = l.timer_irq(t);
    let asserts = l.ctx.timer_asserts(t, now);
    let mut state = *l.ctx.timer_lr_mut(t);
    if !asserts {
        state = match state {
            LrState::Pending => LrState::Invalid,
            LrState::PendingActive => LrState::Active,
            s => s,
        };
    }
    let hw = Some(t.ppi());
    // The place of KServ's this timer took earlier in this run.
    let taken = l.lrs.lrs[..n].iter().position(|lr| lr.hw == hw);
    let room = taken.is_some() || l.lrs.len < cap;
    if state == LrState::Invalid && irq.enabled && asserts && room {
        state = LrState::Pending;
    }
    if state == LrState::Pending && !room {
        // No list register for it in this run: it waits.
        state = LrState::Invalid;
    }
    let entry = Lr {
        vintid: irq.vintid,
        priority: irq.priority,
        group1: irq.group1,
        state,
        hw,
        source: 0,
    };
    let loaded = match taken {
        // Keeps its place (an empty entry once completed: KServ's entry
        // there was never loaded).
        Some(i) => {
            l.lrs.lrs[i] = entry;
            state != LrState::Invalid
        }
        None if state == LrState::Invalid => false,
        None if l.lrs.len < cap => l.lrs.push(entry),
        // Active, and every list register in use: KServ's last entry that
        // is still KServ's makes way (none left only on a GIC with fewer
        // list registers than timers; it then waits, held active).
        None => match l.lrs.lrs[..n].iter().rposition(|lr| lr.hw.is_none()) {
            Some(i) => {
                l.lrs.lrs[i] = entry;
                true
            }
            None => false,
        },
    };
    *l.ctx.timer_lr_mut(t) = state;
    // Asserted or active but not delivered: held active, as KVM does, or
    // the line would end every run at once.
    if !loaded && (asserts || state != LrState::Invalid) {
        l.lrs.hold_active |= 1 << t.ppi();
    }
}

/// Records the list register states after a run: KCore's timer entries
/// into the context (KServ's stay in [`Loaded::lrs`] for the report). A
/// timer with no entry in this run keeps the state [`prepare_timer`] left.
pub fn save_timer(l: &mut Loaded) {
    for t in Timer::BOTH {
        let hw = Some(t.ppi());
        if let Some(lr) = l.lrs.as_slice().iter().find(|lr| lr.hw == hw) {
            *l.ctx.timer_lr_mut(t) = lr.state;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vcpu::TimerIrq;
    use crate::vcpu::test_util::loaded;
    use crate::vgic::{PTIMER_PPI, TIMER_PPI};

    /// The timers' default INTIDs.
    const TIMERS: [u32; 2] = [TIMER_PPI, PTIMER_PPI];

    /// Checks that `l`'s timer `t` gets its entry at `at`, not before.
    fn fires_at(l: &mut Loaded, t: Timer, at: u64) {
        assert_eq!(l.ctx.timer_deadline(), at);
        prepare_timer(l, at - 1, 4);
        assert_eq!(l.lrs.len, 0);
        prepare_timer(l, at, 4);
        assert_eq!(l.lrs.as_slice()[0].hw, Some(t.ppi()));
    }

    #[test]
    fn timer_entry_follows_the_guest_timer() {
        let mut l = loaded();
        l.ctx.cntv_ctl = 1;
        l.ctx.cntv_cval = 100;
        l.ctx.cntvoff = 50;
        fires_at(&mut l, Timer::Virt, 150);
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
            let r = check_irqs_into(&[w(i)], 4, [20, 30], crate::vgic::IrqSpace::V3, &mut l.lrs);
            assert_eq!(r, Err(kcore_abi::Error::Denied), "{i}");
        }
        assert!(
            check_irqs_into(&[w(21)], 4, [20, 30], crate::vgic::IrqSpace::V3, &mut l.lrs).is_ok()
        );
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
        check_irqs_into(&words, 4, TIMERS, crate::vgic::IrqSpace::V3, &mut l.lrs)
            .expect("all four list registers");
        // Pending, no room: it waits, held active at the GIC meanwhile.
        prepare_timer(&mut l, 100, 4);
        assert_eq!(l.lrs.len, 4);
        assert!(l.lrs.as_slice().iter().all(|lr| lr.hw.is_none()));
        assert_eq!(l.lrs.hold_active, 1 << TIMER_PPI);
        save_timer(&mut l);
        assert_eq!(l.ctx.timer_lr, LrState::Invalid);
        // With a free list register it is delivered.
        l.n_irqs = 3;
        check_irqs_into(
            &words[..3],
            4,
            TIMERS,
            crate::vgic::IrqSpace::V3,
            &mut l.lrs,
        )
        .expect("three");
        prepare_timer(&mut l, 100, 4);
        assert_eq!(l.lrs.as_slice()[3].hw, Some(TIMER_PPI));
        assert_eq!(l.lrs.hold_active, 0);
        l.lrs.lrs[3].state = LrState::Active;
        save_timer(&mut l);
        assert_eq!(l.ctx.timer_lr, LrState::Active);
        // Active and KServ fills all four again: the timer takes the last
        // place, whose entry is reported as supplied.
        l.n_irqs = 4;
        check_irqs_into(&words, 4, TIMERS, crate::vgic::IrqSpace::V3, &mut l.lrs)
            .expect("all four");
        prepare_timer(&mut l, 100, 4);
        assert_eq!(l.lrs.len, 4);
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

    #[test]
    fn the_physical_timer_has_its_own_entry_at_ppi_30() {
        use kcore_abi::run::entry_flags::{PTIMER_SHIFT, TIMER_DISABLED};
        let mut l = loaded();
        // The virtual timer's offset is not the physical timer's.
        l.ctx.cntvoff = 50;
        l.ctx.cntp_ctl = 1;
        l.ctx.cntp_cval = 100;
        fires_at(&mut l, Timer::Phys, 100);
        let lr = l.lrs.as_slice()[0];
        assert_eq!(
            (lr.vintid, lr.hw, lr.state),
            (PTIMER_PPI, Some(PTIMER_PPI), LrState::Pending)
        );
        assert_eq!(l.ctx.timer_lr, LrState::Invalid, "the virtual one is off");
        // The virtual timer fires too: two entries, the virtual one first,
        // each with its own state.
        l.ctx.cntv_ctl = 1;
        l.ctx.cntv_cval = 40;
        assert_eq!(l.ctx.timer_deadline(), 90, "the earlier of the two");
        prepare_timer(&mut l, 100, 4);
        let hw: [_; 2] = core::array::from_fn(|i| l.lrs.as_slice()[i].hw);
        assert_eq!(hw, [Some(TIMER_PPI), Some(PTIMER_PPI)]);
        l.lrs.lrs[1].state = LrState::Active;
        save_timer(&mut l);
        assert_eq!(
            (l.ctx.timer_lr, l.ctx.ptimer_lr),
            (LrState::Pending, LrState::Active)
        );
        // The guest completes the physical one and re-arms it for later:
        // the virtual one is still pending, alone.
        l.lrs.lrs[1].state = LrState::Invalid;
        save_timer(&mut l);
        l.ctx.cntp_cval = 500;
        prepare_timer(&mut l, 200, 4);
        assert_eq!(l.lrs.len, 1);
        assert_eq!(l.lrs.as_slice()[0].hw, Some(TIMER_PPI));
        assert_eq!(l.ctx.ptimer_lr, LrState::Invalid);
        assert_eq!(l.ctx.timer_deadline(), 90);
        // KServ's vGIC has its PPI disabled when it fires: no entry, the
        // line held quiet; the virtual timer's configuration is its own.
        l.ptimer = TimerIrq::of(Timer::Phys, TIMER_DISABLED << PTIMER_SHIFT);
        prepare_timer(&mut l, 500, 4);
        assert_eq!(l.lrs.len, 1);
        assert_eq!(l.lrs.hold_active, 1 << PTIMER_PPI);
        // Masked, it no longer asserts, and counts for no deadline.
        l.ctx.cntp_ctl = 3;
        prepare_timer(&mut l, 500, 4);
        assert_eq!(l.lrs.hold_active, 0);
        assert_eq!(l.ctx.deadline_of(Timer::Phys), u64::MAX);
    }

    #[test]
    fn the_physical_timer_is_the_ppi_kserv_names() {
        use kcore_abi::run::entry_flags::{PTIMER_SHIFT, TIMER_INTID_SHIFT, ptimer_intid};
        assert_eq!(ptimer_intid(0), Some(30));
        assert_eq!(
            ptimer_intid(21 << TIMER_INTID_SHIFT << PTIMER_SHIFT),
            Some(21)
        );
        assert_eq!(
            ptimer_intid(21 << TIMER_INTID_SHIFT),
            Some(30),
            "the virtual half"
        );
        assert_eq!(ptimer_intid(40 << TIMER_INTID_SHIFT << PTIMER_SHIFT), None);
        let mut l = loaded();
        l.ptimer = TimerIrq::of(Timer::Phys, 21 << TIMER_INTID_SHIFT << PTIMER_SHIFT);
        l.ctx.cntp_ctl = 1;
        prepare_timer(&mut l, 0, 4);
        let lr = l.lrs.as_slice()[0];
        assert_eq!((lr.vintid, lr.hw), (21, Some(PTIMER_PPI)), "physical 30");
    }

    #[test]
    fn both_timers_active_displace_kservs_last_two_entries() {
        use crate::vgic::check_irqs_into;
        use kcore_abi::run::irq;
        let mut l = loaded();
        (l.ctx.cntv_ctl, l.ctx.cntp_ctl) = (1, 1);
        (l.ctx.timer_lr, l.ctx.ptimer_lr) = (LrState::Active, LrState::Active);
        let words: [u64; 4] =
            core::array::from_fn(|i| irq::encode(32 + i as u32, 0x80, true, irq::PENDING));
        l.irq_words[..4].copy_from_slice(&words);
        l.n_irqs = 4;
        check_irqs_into(&words, 4, TIMERS, crate::vgic::IrqSpace::V3, &mut l.lrs)
            .expect("all four");
        prepare_timer(&mut l, 100, 4);
        let s = l.lrs.as_slice();
        assert_eq!(l.lrs.len, 4);
        assert_eq!((s[0].vintid, s[1].vintid), (32, 33), "the first two stay");
        assert_eq!((s[3].hw, s[2].hw), (Some(TIMER_PPI), Some(PTIMER_PPI)));
        assert_eq!(crate::vgic::report(words[2], &s[2]), words[2]);
        assert_eq!(crate::vgic::report(words[3], &s[3]), words[3]);
        // The guest completes the physical one: its place stays empty, the
        // virtual one keeps its own, and both are the timers' for the run.
        l.lrs.lrs[2].state = LrState::Invalid;
        save_timer(&mut l);
        assert_eq!(
            (l.ctx.timer_lr, l.ctx.ptimer_lr),
            (LrState::Active, LrState::Invalid)
        );
        l.ctx.cntp_cval = 1000;
        prepare_timer(&mut l, 200, 4);
        let s = l.lrs.as_slice();
        assert_eq!((s[2].hw, s[2].state), (Some(PTIMER_PPI), LrState::Invalid));
        assert_eq!((s[3].hw, s[3].state), (Some(TIMER_PPI), LrState::Active));
        prepare_timer(&mut l, 1000, 4);
        assert_eq!(l.lrs.as_slice()[2].state, LrState::Pending, "fired again");
    }

    #[test]
    fn a_timer_that_finds_no_list_register_keeps_its_state() {
        let mut l = loaded();
        (l.ctx.cntv_ctl, l.ctx.cntp_ctl) = (1, 1);
        (l.ctx.timer_lr, l.ctx.ptimer_lr) = (LrState::Active, LrState::Active);
        // One list register, no entry of KServ's to take: the virtual timer
        // gets it, the physical one waits, active and held so.
        prepare_timer(&mut l, 100, 1);
        assert_eq!(l.lrs.len, 1);
        assert_eq!(l.lrs.as_slice()[0].hw, Some(TIMER_PPI));
        assert_eq!(l.lrs.hold_active, 1 << PTIMER_PPI);
        save_timer(&mut l);
        assert_eq!(l.ctx.ptimer_lr, LrState::Active, "not lost");
        // Once the virtual one is completed, the physical one gets it.
        l.lrs.lrs[0].state = LrState::Invalid;
        save_timer(&mut l);
        l.ctx.cntv_ctl = 0;
        prepare_timer(&mut l, 100, 1);
        let lr = l.lrs.as_slice()[0];
        assert_eq!((lr.hw, lr.state), (Some(PTIMER_PPI), LrState::Active));
        assert_eq!(l.lrs.hold_active, 0);
    }
}
