//! The GIC virtual CPU interface as KCore programs it: list registers in a
//! GIC-version-neutral form, and the checks on the interrupts KServ asks to
//! inject.
//!
//! KServ runs the distributor and redistributor model (in the untrusted
//! shim, as KVM does) and tells KCore, at each entry, which virtual
//! interrupts should be pending or active. KCore refuses anything that could
//! reach beyond the VM: a hardware-mapped entry (KServ owns no physical
//! interrupt that is delegated to a guest), the timers' PPIs (KCore
//! delivers the guest's own virtual and physical timers itself), INTIDs outside the SGI/PPI/SPI
//! and LPI ranges, duplicates, more entries than the hardware has list
//! registers. LPIs (`LPI_START..LPI_END`, the 16 ID bits every GICv3 CPU
//! interface implements) come from KServ's ITS emulation; like an SPI, an
//! LPI in a list register reaches nothing outside the VM.
//! `kcore-arch` turns an [`Lr`] into `ICH_LR<n>_EL2` (GICv3) or `GICH_LR<n>`
//! (GICv2, [`Lr::to_gicv2`]). A GICv2 list register also names an SGI's
//! source CPU, which KServ supplies in the interrupt word ([`IrqSpace`]:
//! only for SGIs, below the VM's vCPU count, never on GICv3), and holds no
//! LPIs.

use kcore_abi::Error;
use kcore_abi::run::irq;

/// The virtual timer's PPI (the architected `CNTV` interrupt).
pub const TIMER_PPI: u32 = 27;
/// The EL1 physical timer's PPI (the architected `CNTP` interrupt).
pub const PTIMER_PPI: u32 = 30;
/// First INTID that is not an SPI (1020..1023 are special).
const SPI_END: u32 = 1020;
/// First LPI.
pub const LPI_START: u32 = 8192;
/// First INTID past 16 ID bits: the LPIs KServ may hand over (a GICv3
/// CPU interface has at least 16 `IDbits`, and KServ's vGIC advertises 16).
pub const LPI_END: u32 = 1 << 16;
/// Most list registers any GIC has (GICv3: 16).
pub const MAX_LRS: usize = 16;

/// The state of a list register entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum LrState {
    /// Empty: the interrupt was completed (or never loaded).
    #[default]
    Invalid,
    /// Pending.
    Pending,
    /// Active (acknowledged, not yet deactivated).
    Active,
    /// Active and pending again.
    PendingActive,
}

impl LrState {
    /// From the two state bits of an [`irq`] word.
    pub const fn from_bits(b: u64) -> LrState {
        match b & 3 {
            0 => LrState::Invalid,
            1 => LrState::Pending,
            2 => LrState::Active,
            _ => LrState::PendingActive,
        }
    }
    /// The two state bits.
    pub const fn bits(self) -> u64 {
        match self {
            LrState::Invalid => 0,
            LrState::Pending => 1,
            LrState::Active => 2,
            LrState::PendingActive => 3,
        }
    }
}

/// One list register entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Lr {
    /// The virtual INTID the guest sees.
    pub vintid: u32,
    /// Priority (GICv3 LR: 8 bits, of which the implemented ones count).
    pub priority: u8,
    /// Group 1 (else group 0).
    pub group1: bool,
    /// State.
    pub state: LrState,
    /// The physical INTID the guest's deactivation also deactivates.
    pub hw: Option<u32>,
    /// A GICv2 SGI's source vCPU (what the guest's `GICC_IAR` reports in
    /// bits 12:10); always 0 on GICv3 and for other interrupts.
    pub source: u8,
}

impl Lr {
    /// The entry as a GICv2 `GICH_LR<n>`: bits 9:0 the virtual INTID;
    /// with the hardware bit (31) bits 19:10 the physical INTID, else bits
    /// 12:10 an SGI's source CPU; bits 27:23 the priority's top five bits;
    /// bits 29:28 the state; bit 30 group 1. `None` for an INTID a GICv2
    /// cannot hold (10 bits: no LPIs).
    pub fn to_gicv2(&self) -> Option<u32> {
        if self.vintid >= 1 << 10 {
            return None;
        }
        let mut v = self.vintid
            | u32::from(self.priority >> 3) << 23
            | (self.state.bits() as u32) << 28
            | u32::from(self.group1) << 30;
        match self.hw {
            Some(p) if p < 1 << 10 => v |= 1 << 31 | p << 10,
            Some(_) => return None,
            None => v |= u32::from(self.source & 7) << 10,
        }
        Some(v)
    }

    /// The state bits of a GICv2 `GICH_LR<n>` value.
    pub const fn gicv2_state(lr: u32) -> LrState {
        LrState::from_bits((lr >> 28) as u64)
    }
}

/// The entries loaded for one entry into a guest: KServ's first (in the
/// order supplied), then KCore's own timer entries if it has any (the only
/// hardware-mapped ones).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LrSet {
    /// The entries; only the first `len` count.
    pub lrs: [Lr; MAX_LRS],
    /// How many entries are in use.
    pub len: usize,
    /// Private interrupts (bit = INTID < 32) whose physical line the guest
    /// asserts but which are not delivered now: held active at the
    /// physical GIC for the run, so that they cannot end it again and
    /// again (a guest timer while KServ's vGIC has its PPI disabled, or
    /// while every list register holds one of KServ's entries).
    pub hold_active: u32,
    /// KServ has more interrupts queued than it could hand over: the
    /// guest gets an underflow maintenance interrupt (`UIE`), which ends
    /// the run, once at most one list register is still in use.
    pub underflow: bool,
}

impl LrSet {
    /// The entries in use.
    pub fn as_slice(&self) -> &[Lr] {
        &self.lrs[..self.len.min(MAX_LRS)]
    }
    /// The entries in use, mutably.
    pub fn as_mut_slice(&mut self) -> &mut [Lr] {
        let n = self.len.min(MAX_LRS);
        &mut self.lrs[..n]
    }
    /// Appends `lr`; false when full.
    pub fn push(&mut self, lr: Lr) -> bool {
        if self.len >= MAX_LRS {
            return false;
        }
        self.lrs[self.len] = lr;
        self.len += 1;
        true
    }
}

/// What the GIC KServ's interrupt words are for can hold beyond the
/// INTID: a GICv2 keeps an SGI's source CPU in the list register (and
/// cannot hold an LPI); a GICv3 does neither.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IrqSpace {
    /// GICv3: no source field.
    V3,
    /// GICv2: an SGI's source must be below this many vCPUs (at most 8).
    V2 {
        /// The VM's vCPU count.
        vcpus: u8,
    },
}

/// Checks KServ's interrupt words for one entry and turns them into list
/// register entries. `free_lrs` is how many list registers KServ may fill:
/// all of them (KCore's timer entries take free ones when they need them;
/// see `vcpu::timer::prepare_timer`). The timers' INTIDs (the physical
/// [`TIMER_PPI`] and [`PTIMER_PPI`], and the guest's `timer_intids`, the
/// virtual and physical timers' as the guest sees them) are KCore's.
pub fn check_irqs(
    words: &[u64],
    free_lrs: usize,
    timer_intids: [u32; 2],
    space: IrqSpace,
) -> Result<LrSet, Error> {
    let mut set = LrSet::default();
    check_irqs_into(words, free_lrs, timer_intids, space, &mut set)?;
    Ok(set)
}

/// [`check_irqs`] into `set`, whose entries it replaces (the run path: the
/// set lives in the loaded vCPU and entries past its length are never
/// looked at, so they are not cleared). `set` is only meaningful on `Ok`.
pub fn check_irqs_into(
    words: &[u64],
    free_lrs: usize,
    timer_intids: [u32; 2],
    space: IrqSpace,
    set: &mut LrSet,
) -> Result<(), Error> {
    set.len = 0;
    set.hold_active = 0;
    set.underflow = false;
    if words.len() > free_lrs || words.len() > MAX_LRS {
        return Err(Error::InvalidParameter);
    }
    for (i, &w) in words.iter().enumerate() {
        if irq::hw(w).is_some() {
            return Err(Error::Denied);
        }
        let vintid = irq::vintid(w);
        if vintid == TIMER_PPI || vintid == PTIMER_PPI || timer_intids.contains(&vintid) {
            return Err(Error::Denied);
        }
        if vintid >= SPI_END && !(LPI_START..LPI_END).contains(&vintid) {
            return Err(Error::InvalidParameter);
        }
        // Bits 44..64 only mean something with the hardware bit, but for
        // a GICv2 SGI's source (bits 56..59).
        let source = irq::sgi_source(w);
        if (w & !(irq::SGI_SOURCE_MASK << irq::SGI_SOURCE_SHIFT)) >> 44 != 0 {
            return Err(Error::InvalidParameter);
        }
        if source != 0 {
            let ok = match space {
                IrqSpace::V3 => false,
                IrqSpace::V2 { vcpus } => vintid < 16 && source < vcpus.min(8),
            };
            if !ok {
                return Err(Error::InvalidParameter);
            }
        }
        if matches!(space, IrqSpace::V2 { .. }) && vintid >= SPI_END {
            return Err(Error::InvalidParameter);
        }
        let state = LrState::from_bits(irq::state(w));
        if state == LrState::Invalid {
            return Err(Error::InvalidParameter);
        }
        if words[..i].iter().any(|&o| irq::vintid(o) == vintid) {
            return Err(Error::InvalidParameter);
        }
        set.push(Lr {
            vintid,
            priority: irq::priority(w),
            group1: irq::group1(w),
            state,
            hw: None,
            source,
        });
    }
    Ok(())
}

/// The word reporting `lr`'s state after an exit, for KServ's entry `w`:
/// `w` as supplied when `lr` is not its entry (a timer entry of KCore's,
/// hardware-mapped, took its place for the run: the guest never saw it).
pub fn report(w: u64, lr: &Lr) -> u64 {
    if lr.vintid != irq::vintid(w) || lr.hw.is_some() {
        return w;
    }
    irq::with_state(w, lr.state.bits())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The timers' default INTIDs.
    const TIMERS: [u32; 2] = [TIMER_PPI, PTIMER_PPI];

    fn w(vintid: u32, state: u64) -> u64 {
        irq::encode(vintid, 0xa0, true, state)
    }

    #[test]
    fn accepts_sgis_ppis_spis() {
        let s =
            check_irqs(&[w(1, 1), w(28, 2), w(1019, 3)], 3, TIMERS, IrqSpace::V3).expect("valid");
        assert_eq!(s.len, 3);
        assert_eq!(s.lrs[0].vintid, 1);
        assert_eq!(s.lrs[1].state, LrState::Active);
        assert_eq!(s.lrs[2].state, LrState::PendingActive);
        assert_eq!(s.lrs[2].priority, 0xa0);
        assert!(s.lrs[2].group1);
        assert!(s.as_slice().iter().all(|l| l.hw.is_none()));
    }

    #[test]
    fn accepts_lpis_within_16_id_bits() {
        let s = check_irqs(
            &[w(LPI_START, 1), w(LPI_END - 1, 3)],
            3,
            TIMERS,
            IrqSpace::V3,
        )
        .expect("LPIs");
        assert_eq!(s.lrs[0].vintid, 8192);
        assert_eq!(s.lrs[1].vintid, 65535);
        assert_eq!(
            check_irqs(&[w(8200, 1), w(8200, 1)], 3, TIMERS, IrqSpace::V3),
            Err(Error::InvalidParameter),
            "duplicates"
        );
    }

    #[test]
    fn refuses_what_is_not_kservs() {
        assert_eq!(
            check_irqs(&[w(40, 1) | irq::HW | 40 << 44], 3, TIMERS, IrqSpace::V3),
            Err(Error::Denied)
        );
        assert_eq!(
            check_irqs(&[w(40, 1) | irq::HW], 3, TIMERS, IrqSpace::V3),
            Err(Error::Denied)
        );
        // Both timers' physical PPIs and their INTIDs as the guest sees
        // them, whatever those are.
        for (i, timers) in [
            (TIMER_PPI, TIMERS),
            (PTIMER_PPI, TIMERS),
            (20, [20, 21]),
            (21, [20, 21]),
            (27, [20, 21]),
            (30, [20, 21]),
        ] {
            assert_eq!(
                check_irqs(&[w(i, 1)], 3, timers, IrqSpace::V3),
                Err(Error::Denied),
                "{i}"
            );
        }
        assert!(check_irqs(&[w(27, 1)], 3, [27, 30], IrqSpace::V3).is_err());
        assert!(check_irqs(&[w(22, 1)], 3, [20, 21], IrqSpace::V3).is_ok());
    }

    #[test]
    fn refuses_malformed() {
        let bad: [&[u64]; 8] = [
            &[w(1020, 1)],
            &[w(1023, 1)],
            &[w(8191, 1)],
            &[w(LPI_END, 1)],
            &[w(u32::MAX, 1)],
            &[w(5, 0)],
            &[w(5, 1), w(5, 2)],
            &[w(5, 1) | 1 << 50],
        ];
        for b in bad {
            assert_eq!(
                check_irqs(b, 3, TIMERS, IrqSpace::V3),
                Err(Error::InvalidParameter),
                "{b:x?}"
            );
        }
        assert_eq!(
            check_irqs(
                &[w(1, 1), w(2, 1), w(3, 1), w(4, 1)],
                3,
                TIMERS,
                IrqSpace::V3
            ),
            Err(Error::InvalidParameter),
            "more than the free list registers"
        );
        assert!(check_irqs(&[], 0, TIMERS, IrqSpace::V3).is_ok());
    }

    #[test]
    fn gicv2_list_register_layout() {
        let lr = Lr {
            vintid: 1019,
            priority: 0xa8,
            group1: true,
            state: LrState::PendingActive,
            hw: None,
            source: 0,
        };
        // vINTID 9:0, priority[7:3] at 27:23, state 29:28, group 30.
        assert_eq!(lr.to_gicv2(), Some(1019 | 0x15 << 23 | 3 << 28 | 1 << 30));
        let sgi = Lr {
            vintid: 3,
            source: 5,
            state: LrState::Pending,
            ..Lr::default()
        };
        assert_eq!(sgi.to_gicv2(), Some(3 | 5 << 10 | 1 << 28));
        let timer = Lr {
            vintid: 27,
            hw: Some(27),
            state: LrState::Pending,
            source: 7,
            ..Lr::default()
        };
        // HW: pINTID at 19:10, bit 31; no source.
        assert_eq!(timer.to_gicv2(), Some(27 | 27 << 10 | 1 << 28 | 1 << 31));
        assert_eq!(Lr { vintid: 1024, ..lr }.to_gicv2(), None, "no LPIs");
        assert_eq!(
            Lr {
                hw: Some(1 << 10),
                ..lr
            }
            .to_gicv2(),
            None
        );
        for s in [
            LrState::Invalid,
            LrState::Pending,
            LrState::Active,
            LrState::PendingActive,
        ] {
            let v = Lr { state: s, ..lr }.to_gicv2().unwrap_or_default();
            assert_eq!(Lr::gicv2_state(v), s);
        }
    }

    #[test]
    fn sgi_sources_only_on_gicv2_sgis() {
        let src = |w: u64, s: u64| w | s << irq::SGI_SOURCE_SHIFT;
        let v2 = IrqSpace::V2 { vcpus: 4 };
        let s = check_irqs(&[src(w(2, 1), 3)], 3, TIMERS, v2).expect("an SGI from vCPU 3");
        assert_eq!(s.lrs[0].source, 3);
        assert_eq!(
            s.lrs[0].to_gicv2(),
            Some(2 | 3 << 10 | 1 << 28 | 0x14 << 23 | 1 << 30)
        );
        let bad = [
            (src(w(2, 1), 4), v2),                        // no such vCPU
            (src(w(2, 1), 1), IrqSpace::V3),              // not on GICv3
            (src(w(16, 1), 1), v2),                       // not an SGI
            (src(w(2, 1), 1), IrqSpace::V2 { vcpus: 1 }), // one vCPU
            (w(2, 1) | 1 << 59, v2),                      // past the field
            (w(LPI_START, 1), v2),                        // no LPIs on GICv2
        ];
        for (word, space) in bad {
            assert_eq!(
                check_irqs(&[word], 3, TIMERS, space),
                Err(Error::InvalidParameter),
                "{word:#x} {space:?}"
            );
        }
        assert!(check_irqs(&[w(2, 1)], 3, TIMERS, v2).is_ok());
    }

    #[test]
    fn report_replaces_only_the_state() {
        let word = w(33, 1);
        let lr = Lr {
            vintid: 33,
            state: LrState::Active,
            ..Lr::default()
        };
        assert_eq!(irq::state(report(word, &lr)), 2);
        assert_eq!(irq::vintid(report(word, &lr)), 33);
        assert_eq!(irq::priority(report(word, &lr)), 0xa0);
        let timer = Lr {
            vintid: TIMER_PPI,
            state: LrState::Active,
            hw: Some(TIMER_PPI),
            ..Lr::default()
        };
        assert_eq!(report(word, &timer), word, "displaced: as supplied");
    }
}
