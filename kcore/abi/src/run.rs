//! The run page of [`crate::HypercallId::HostVcpuRun`]: one KServ page per
//! call, read as 64-bit little-endian words.
//!
//! Words `0..ENTRY_WORDS` are the entry half: KServ writes them before the
//! call and KCore copies them once, then checks the copy (so a KServ CPU
//! rewriting the page during the call changes nothing). Words from
//! [`EXIT`] on are the exit half, written by KCore before the call returns.
//! Words from [`DIRTY_HEAD`] on (ABI 0.14) are the dirty ring, which KCore
//! appends to while the guest runs. KCore writes nothing else and reads
//! nothing else.

/// Entry word: [`entry_flags`]: how KServ's vGIC model configures the
/// guest's two timer interrupts (0: both enabled, priority 0, group 1, at
/// their default PPIs).
pub const FLAGS: usize = 0;

/// Bits of [`FLAGS`]; any other bit is `InvalidParameter`. Bits 0..32
/// describe the virtual timer's interrupt; bits 32..64 (ABI 0.11) describe
/// the EL1 physical timer's in the same layout, shifted by
/// [`PTIMER_SHIFT`].
pub mod entry_flags {
    /// The guest disabled its timer PPI: KCore delivers no new timer
    /// interrupt (one already pending or active stays).
    pub const TIMER_DISABLED: u64 = 1 << 0;
    /// Shift of the timer interrupt's priority (8 bits).
    pub const TIMER_PRIORITY_SHIFT: u32 = 8;
    /// The timer interrupt is group 0 (else group 1).
    pub const TIMER_GROUP0: u64 = 1 << 16;
    /// Shift of the INTID the guest sees its timer interrupt as (8 bits,
    /// ABI 0.10): 0 for PPI 27 (the default), else a PPI (16..=31), as a
    /// VMM may choose with KVM's `KVM_ARM_VCPU_TIMER_IRQ_VTIMER`. The
    /// physical interrupt behind it is always PPI 27.
    pub const TIMER_INTID_SHIFT: u32 = 24;
    /// The timer's PPI when [`TIMER_INTID_SHIFT`]'s field is 0.
    pub const TIMER_DEFAULT_INTID: u32 = 27;
    /// Shift of the EL1 physical timer's half (ABI 0.11): its disable bit,
    /// priority, group and INTID are the virtual timer's bits above,
    /// shifted by this much; 0 in its INTID field means PPI 30
    /// ([`PTIMER_DEFAULT_INTID`], KVM's `KVM_ARM_VCPU_TIMER_IRQ_PTIMER`
    /// default). The physical interrupt behind it is always PPI 30.
    pub const PTIMER_SHIFT: u32 = 32;
    /// The physical timer's PPI when its INTID field is 0.
    pub const PTIMER_DEFAULT_INTID: u32 = 30;
    /// The bits of one timer's half.
    const HALF: u64 =
        TIMER_DISABLED | 0xFF << TIMER_PRIORITY_SHIFT | TIMER_GROUP0 | 0xFF << TIMER_INTID_SHIFT;
    /// (ABI 0.12) KServ's vGIC has more interrupts queued for the vCPU
    /// than the interrupt words hold (more than the list registers): KCore
    /// asks the GIC for an underflow maintenance interrupt (`UIE`), so the
    /// run ends once the guest has taken all but at most one of them and
    /// KServ can hand over the rest.
    pub const MORE_QUEUED: u64 = 1 << 2;
    /// Every bit this ABI version defines.
    pub const ALL: u64 = HALF | HALF << PTIMER_SHIFT | MORE_QUEUED;

    /// The INTID field of one half, or `default` for 0; `None` if it names
    /// no PPI.
    const fn intid(half: u64, default: u32) -> Option<u32> {
        match ((half >> TIMER_INTID_SHIFT) & 0xFF) as u32 {
            0 => Some(default),
            i @ 16..=31 => Some(i),
            _ => None,
        }
    }

    /// The virtual timer's virtual INTID in flags `f`; `None` if the field
    /// names no PPI.
    pub const fn timer_intid(f: u64) -> Option<u32> {
        intid(f, TIMER_DEFAULT_INTID)
    }

    /// The physical timer's virtual INTID in flags `f`; `None` if the
    /// field names no PPI.
    pub const fn ptimer_intid(f: u64) -> Option<u32> {
        intid(f >> PTIMER_SHIFT, PTIMER_DEFAULT_INTID)
    }
}
/// Entry word: the answer to the previous exit: the value an MMIO read
/// returns, or `x0` of a PSCI call KServ handled. Ignored after other exits.
pub const COMPLETION: usize = 1;
/// Entry word: how many virtual interrupts follow (at most [`MAX_IRQS`]).
pub const IRQ_COUNT: usize = 2;
/// Entry words: the virtual interrupts KServ wants pending or active, each
/// an [`irq`] word.
pub const IRQS: usize = 3;
/// Most virtual interrupts per entry (more than any GIC has list registers;
/// KCore refuses more than the hardware holds).
pub const MAX_IRQS: usize = 16;
/// Words of the entry half.
pub const ENTRY_WORDS: usize = IRQS + MAX_IRQS;

/// First word of the exit half.
pub const EXIT: usize = 32;
/// Exit word: the reason, one of [`exit`].
pub const EXIT_REASON: usize = EXIT;
/// Exit word: reason-specific flags ([`exit_flags`]).
pub const EXIT_FLAGS: usize = EXIT + 1;
/// Exit word: the guest address: the full IPA of an MMIO access, the page of
/// a memory fault (offset cut off).
pub const EXIT_ADDR: usize = EXIT + 2;
/// Exit word: the data: an MMIO write's value (clamped to its width), a
/// PSCI function id, a trapped GIC system register write's value.
pub const EXIT_DATA: usize = EXIT + 3;
/// Exit word: an MMIO access's width in bytes (1, 2, 4, 8).
pub const EXIT_WIDTH: usize = EXIT + 4;
/// Exit words: `x1..x3` of a PSCI call.
pub const EXIT_ARGS: usize = EXIT + 5;
/// Exit word: the guest's `CNTV_CTL_EL0`.
pub const EXIT_TIMER_CTL: usize = EXIT + 8;
/// Exit word: the physical counter value at which the guest's next timer
/// interrupt is due: the earlier of its virtual timer's and (ABI 0.11) its
/// EL1 physical timer's deadlines, `u64::MAX` if both are disabled or
/// masked. KServ wakes a vCPU idling in `WFI` then.
pub const EXIT_TIMER_DEADLINE: usize = EXIT + 9;
/// Exit words (ABI 0.11): each timer's own deadline, the virtual timer's
/// then the EL1 physical timer's (`u64::MAX`: disabled or masked): what
/// KServ's vGIC reads as each timer PPI's line (`GICR_ISPENDR0`).
/// [`EXIT_TIMER_DEADLINE`] is the earlier of the two.
pub const EXIT_TIMER_DEADLINES: usize = EXIT + 10;
/// Exit word: how many [`irq`] words follow.
pub const EXIT_IRQ_COUNT: usize = EXIT + 12;
/// Exit words: the state now of each interrupt KServ supplied, in the order
/// supplied; an interrupt the guest completed has state 0.
pub const EXIT_IRQS: usize = EXIT + 13;
/// Words of the entry and exit halves.
pub const WORDS: usize = EXIT_IRQS + MAX_IRQS;

/// Word (ABI 0.14): the dirty ring's producer count, written by KCore
/// only: how many gfns it has ever appended to this page's ring. The ring
/// records a non-protected guest's writes to pages write-protected for
/// dirty logging that KCore made writable again by itself, without an
/// exit. KCore reads it back from the page (it keeps no copy): KServ
/// keeps it, like [`DIRTY_TAIL`], as a free-running count, 0 when the
/// page is new.
pub const DIRTY_HEAD: usize = 64;
/// Word (ABI 0.14): the dirty ring's consumer count, written by KServ
/// only: how many entries it has taken. KCore appends only while
/// `DIRTY_HEAD - DIRTY_TAIL` (wrapping) is below [`DIRTY_ENTRIES`]; at any
/// other value (a full ring, or counts KServ corrupted) the write exits as
/// before, a `MEM_FAULT` with [`exit_flags::WRITE_PROTECTED`].
pub const DIRTY_TAIL: usize = 65;
/// Words (ABI 0.14): the ring's entries, each a gfn; entry number `n`
/// (counting from 0 as [`DIRTY_HEAD`] does) is at word
/// `DIRTY_RING + n % DIRTY_ENTRIES`. KCore writes the entry, then (with a
/// store barrier between) the new [`DIRTY_HEAD`]: a consumer that reads
/// the head, then (after a read barrier) the entries below it, then
/// (after a full barrier) writes the tail, never sees an entry before it
/// is written nor has one overwritten before it was read.
pub const DIRTY_RING: usize = 66;
/// Entries of the dirty ring.
pub const DIRTY_ENTRIES: usize = 256;
/// Words of the whole page that KCore uses.
pub const PAGE_WORDS: usize = DIRTY_RING + DIRTY_ENTRIES;

/// The word of dirty ring entry number `n` (a count as [`DIRTY_HEAD`]
/// keeps): always inside the ring, whatever `n`.
pub const fn dirty_slot(n: u64) -> usize {
    DIRTY_RING + (n % DIRTY_ENTRIES as u64) as usize
}

/// Whether a ring with producer count `head` and consumer count `tail`
/// (as read from the page: any values) has room for another entry.
pub const fn dirty_room(head: u64, tail: u64) -> bool {
    head.wrapping_sub(tail) < DIRTY_ENTRIES as u64
}

/// Exit reasons (`x1` of the call and [`EXIT_REASON`]); [`ExitReason`]
/// decodes them.
pub mod exit {
    /// A physical interrupt arrived for KServ (or KCore wants KServ to
    /// schedule); nothing to emulate.
    pub const IRQ: u64 = 1;
    /// An MMIO access inside a declared range: address, width, direction and,
    /// for a write, the value. A read is completed by the next entry's
    /// [`super::COMPLETION`].
    pub const MMIO: u64 = 2;
    /// A stage-2 fault outside the declared MMIO ranges: the page at
    /// [`super::EXIT_ADDR`] needs memory (donate or share, then run again).
    pub const MEM_FAULT: u64 = 3;
    /// `WFI` (or `WFE`, see [`super::exit_flags::WFE`]): the vCPU idles until
    /// an interrupt or its timer deadline.
    pub const WFI: u64 = 4;
    /// A PSCI call: function id in [`super::EXIT_DATA`], `x1..x3` in
    /// [`super::EXIT_ARGS`]; `x0` comes back in [`super::COMPLETION`].
    pub const PSCI: u64 = 5;
    /// A write to a GIC SGI register (`ICC_SGI1R_EL1`, `ICC_ASGI1R_EL1`,
    /// `ICC_SGI0R_EL1`; which one in [`super::exit_flags`]): KServ's vGIC
    /// delivers it.
    pub const SGI: u64 = 6;
    /// A debug exception KServ asked to see (`reg::GUEST_DEBUG`; only a
    /// non-protected vCPU): a software step completed, a `BRK`, a
    /// breakpoint or a watchpoint. [`super::EXIT_DATA`] is its syndrome
    /// (`ESR_EL2`), [`super::EXIT_ADDR`] the faulting address of a
    /// watchpoint (`FAR_EL2`, else 0). The PC is where the guest continues:
    /// the next instruction to step, the `BRK` itself.
    pub const DEBUG: u64 = 7;
}

/// The [`exit`] reasons as a type, for matching on what KCore reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u64)]
pub enum ExitReason {
    /// [`exit::IRQ`].
    Irq = exit::IRQ,
    /// [`exit::MMIO`].
    Mmio = exit::MMIO,
    /// [`exit::MEM_FAULT`].
    MemFault = exit::MEM_FAULT,
    /// [`exit::WFI`].
    Wfi = exit::WFI,
    /// [`exit::PSCI`].
    Psci = exit::PSCI,
    /// [`exit::SGI`].
    Sgi = exit::SGI,
    /// [`exit::DEBUG`].
    Debug = exit::DEBUG,
}

impl ExitReason {
    /// Every exit reason.
    pub const ALL: [ExitReason; 7] = [
        ExitReason::Irq,
        ExitReason::Mmio,
        ExitReason::MemFault,
        ExitReason::Wfi,
        ExitReason::Psci,
        ExitReason::Sgi,
        ExitReason::Debug,
    ];

    /// Decodes `x1` of the call or [`EXIT_REASON`]; `None` for a reason
    /// this ABI version does not define.
    pub const fn from_raw(v: u64) -> Option<ExitReason> {
        let mut i = 0;
        while i < Self::ALL.len() {
            if Self::ALL[i] as u64 == v {
                return Some(Self::ALL[i]);
            }
            i += 1;
        }
        None
    }

    /// The raw value, one of [`exit`].
    pub const fn raw(self) -> u64 {
        self as u64
    }
}

/// Bits of [`EXIT_FLAGS`].
pub mod exit_flags {
    /// MMIO or memory fault: the access writes.
    pub const WRITE: u64 = 1 << 0;
    /// Memory fault: an instruction fetch.
    pub const EXEC: u64 = 1 << 1;
    /// WFI exit: it was `WFE`.
    pub const WFE: u64 = 1 << 2;
    /// SGI exit: `ICC_ASGI1R_EL1` (group 1, other security state).
    pub const SGI_ASGI1R: u64 = 1 << 3;
    /// SGI exit: `ICC_SGI0R_EL1` (group 0).
    pub const SGI_SGI0R: u64 = 1 << 4;
    /// Memory fault (with [`WRITE`]): a write to a page KServ shares with
    /// the (non-protected) VM that is write-protected for dirty logging
    /// (`HostProtectGuest`), while the run page's dirty ring
    /// ([`super::DIRTY_RING`], ABI 0.14) had no room (with room KCore
    /// records the write there and the guest goes on without an exit).
    /// The write did not happen; KServ records the page dirty, makes it
    /// writable (`HostUnprotectGuest`) and runs the vCPU again, which
    /// repeats it.
    pub const WRITE_PROTECTED: u64 = 1 << 5;
}

/// One virtual interrupt, as a word: `vintid` in bits 0..32, priority in
/// bits 32..40, group 1 in bit 40, state in bits 41..43 (1 pending, 2
/// active, 3 both), hardware-mapped in bit 43 with the physical INTID in
/// bits 44..64.
pub mod irq {
    /// Pending.
    pub const PENDING: u64 = 1;
    /// Active.
    pub const ACTIVE: u64 = 2;
    /// Shift of the priority (8 bits).
    pub const PRIORITY_SHIFT: u32 = 32;
    /// Bit 40: group 1 (else group 0).
    pub const GROUP1: u64 = 1 << 40;
    /// Shift of the state (2 bits: [`PENDING`], [`ACTIVE`]).
    pub const STATE_SHIFT: u32 = 41;
    /// Bit 43: hardware-mapped.
    pub const HW: u64 = 1 << 43;
    /// Shift of a hardware-mapped interrupt's physical INTID.
    pub const HW_INTID_SHIFT: u32 = 44;
    /// Shift of a GICv2 SGI's source CPU (ABI 0.12; 3 bits, 56..58): the
    /// vCPU the guest's `GICC_IAR` names as the sender. Only for an SGI
    /// (INTID 0..15) on a GICv2 host, below the VM's vCPU count; 0
    /// otherwise (on GICv3 always 0).
    pub const SGI_SOURCE_SHIFT: u32 = 56;
    /// The source field's mask (after shifting).
    pub const SGI_SOURCE_MASK: u64 = 7;

    /// Encodes an interrupt word.
    pub const fn encode(vintid: u32, priority: u8, group1: bool, state: u64) -> u64 {
        vintid as u64
            | (priority as u64) << PRIORITY_SHIFT
            | if group1 { GROUP1 } else { 0 }
            | (state & 3) << STATE_SHIFT
    }
    /// The virtual INTID.
    pub const fn vintid(w: u64) -> u32 {
        w as u32
    }
    /// The priority.
    pub const fn priority(w: u64) -> u8 {
        (w >> PRIORITY_SHIFT) as u8
    }
    /// Group 1 (else group 0).
    pub const fn group1(w: u64) -> bool {
        w & GROUP1 != 0
    }
    /// The state bits ([`PENDING`], [`ACTIVE`]).
    pub const fn state(w: u64) -> u64 {
        (w >> STATE_SHIFT) & 3
    }
    /// With the state replaced.
    pub const fn with_state(w: u64, state: u64) -> u64 {
        (w & !(3 << STATE_SHIFT)) | (state & 3) << STATE_SHIFT
    }
    /// A GICv2 SGI's source CPU ([`SGI_SOURCE_SHIFT`]).
    pub const fn sgi_source(w: u64) -> u8 {
        ((w >> SGI_SOURCE_SHIFT) & SGI_SOURCE_MASK) as u8
    }
    /// Hardware-mapped: the physical INTID, if the bit is set.
    pub const fn hw(w: u64) -> Option<u32> {
        if w & HW != 0 {
            Some((w >> HW_INTID_SHIFT) as u32)
        } else {
            None
        }
    }
}

const _: () = assert!(ENTRY_WORDS <= EXIT && WORDS <= DIRTY_HEAD && PAGE_WORDS * 8 <= 4096);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_reasons_round_trip() {
        for r in ExitReason::ALL {
            assert_eq!(ExitReason::from_raw(r.raw()), Some(r));
        }
        assert_eq!(ExitReason::from_raw(0), None);
        assert_eq!(ExitReason::from_raw(exit::DEBUG + 1), None);
        assert_eq!(
            ExitReason::ALL.map(ExitReason::raw),
            [
                exit::IRQ,
                exit::MMIO,
                exit::MEM_FAULT,
                exit::WFI,
                exit::PSCI,
                exit::SGI,
                exit::DEBUG
            ]
        );
    }

    #[test]
    fn the_dirty_ring_stays_inside_its_words_whatever_the_counts() {
        for n in [0, 1, 255, 256, 257, u64::MAX - 1, u64::MAX] {
            assert!((DIRTY_RING..PAGE_WORDS).contains(&dirty_slot(n)), "{n}");
        }
        assert_eq!(dirty_slot(256 + 3), DIRTY_RING + 3);
        assert!(dirty_room(0, 0));
        assert!(dirty_room(255, 0));
        assert!(!dirty_room(256, 0), "full");
        assert!(dirty_room(u64::MAX, u64::MAX - 255), "across the wrap");
        assert!(!dirty_room(0, 1), "a tail past the head");
        assert!(!dirty_room(5, u64::MAX - 300), "a tail far behind");
    }

    #[test]
    fn irq_words_round_trip() {
        // The layout the module's doc states, bit by bit.
        assert_eq!(
            irq::encode(40, 0xa0, true, irq::PENDING),
            40 | 0xa0 << 32 | 1 << 40 | 1 << 41
        );
        let w = irq::encode(1020, 0x5a, false, irq::PENDING | irq::ACTIVE);
        assert_eq!(
            (
                irq::vintid(w),
                irq::priority(w),
                irq::group1(w),
                irq::state(w)
            ),
            (1020, 0x5a, false, 3)
        );
        assert_eq!(irq::state(irq::with_state(w, irq::ACTIVE)), irq::ACTIVE);
        assert_eq!(irq::hw(w), None);
        assert_eq!(irq::hw(w | irq::HW | 27 << 44), Some(27));
    }
}
