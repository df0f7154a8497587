//! A vCPU taken out of its page for a run ([`Loaded`]) and what travels
//! with it: the VM's entry configuration ([`GuestConfig`]), how KServ's
//! vGIC model configures the guest's timer interrupts ([`TimerIrq`]), the
//! report KServ gets at the exit ([`ExitReport`]), which context-page
//! version the copy is ([`CtxKey`]), and what to do after one exit
//! ([`Step`]). The exit decoding, the guest calls, the timer and the run
//! loop all work on these types.

use super::context::{Timer, VcpuContext};
use crate::addr::Pa;
use crate::idregs::GuestIdRegs;
use crate::pgtable::Geometry;
use crate::vgic::LrSet;
use crate::vm::{MmioRanges, VmId, VmKind};
use kcore_abi::run;

/// What the EL2 code needs to enter a VM, beyond the vCPU's context.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestConfig {
    /// Hardware VMID.
    pub vmid: u16,
    /// Root of the VM's stage 2.
    pub root: Pa,
    /// Its geometry (for `VTCR_EL2`).
    pub geometry: Geometry,
}

/// The exit report KServ gets (the exit half of the run page).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExitReport {
    /// [`run::exit`] reason.
    pub reason: u64,
    /// [`run::exit_flags`].
    pub flags: u64,
    /// Address.
    pub addr: u64,
    /// Data.
    pub data: u64,
    /// MMIO width.
    pub width: u64,
    /// PSCI `x1..x3`.
    pub args: [u64; 3],
}

/// One of the guest's timer interrupts as KServ's vGIC model configures it
/// (the run page's entry flags).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimerIrq {
    /// The guest has it enabled.
    pub enabled: bool,
    /// Its priority.
    pub priority: u8,
    /// Group 1 (else group 0).
    pub group1: bool,
    /// The INTID the guest sees it as (its physical PPI is the timer's,
    /// [`Timer::ppi`], whatever this is).
    pub vintid: u32,
}

impl TimerIrq {
    /// The virtual timer's, from the entry flags: [`Self::of`].
    pub const fn from_flags(f: u64) -> TimerIrq {
        TimerIrq::of(Timer::Virt, f)
    }

    /// Timer `t`'s, from the entry flags (already checked against
    /// [`kcore_abi::run::entry_flags::ALL`],
    /// [`kcore_abi::run::entry_flags::timer_intid`] and `ptimer_intid`; an
    /// INTID that is no PPI reads as the default).
    pub const fn of(t: Timer, f: u64) -> TimerIrq {
        use kcore_abi::run::entry_flags as ef;
        let (half, intid, default) = match t {
            Timer::Virt => (f, ef::timer_intid(f), ef::TIMER_DEFAULT_INTID),
            Timer::Phys => (
                f >> ef::PTIMER_SHIFT,
                ef::ptimer_intid(f),
                ef::PTIMER_DEFAULT_INTID,
            ),
        };
        TimerIrq {
            enabled: half & ef::TIMER_DISABLED == 0,
            priority: (half >> ef::TIMER_PRIORITY_SHIFT) as u8,
            group1: half & ef::TIMER_GROUP0 == 0,
            vintid: match intid {
                Some(i) => i,
                None => default,
            },
        }
    }
}

/// A vCPU taken out of its page for a run.
#[derive(Clone, Debug)]
pub struct Loaded {
    /// The VM.
    pub vm: VmId,
    /// The vCPU index.
    pub idx: usize,
    /// The VM's kind.
    pub kind: VmKind,
    /// Entry configuration.
    pub cfg: GuestConfig,
    /// The registers.
    pub ctx: VcpuContext,
    /// The KCore page the context lives in.
    pub ctx_page: Pa,
    /// KServ's run page.
    pub run_page: Pa,
    /// KServ's interrupt words of this entry: the first `n_irqs` (the
    /// rest are left from earlier runs and mean nothing).
    pub irq_words: [u64; run::MAX_IRQS],
    /// How many.
    pub n_irqs: usize,
    /// The list registers: KServ's entries first, then the timers'.
    pub lrs: LrSet,
    /// The VM's MMIO ranges.
    pub mmio: MmioRanges,
    /// The VM's IPA limit (bytes).
    pub ipa_limit: u64,
    /// How KServ's vGIC configures the guest's virtual timer interrupt.
    pub timer: TimerIrq,
    /// How KServ's vGIC configures the guest's physical timer interrupt.
    pub ptimer: TimerIrq,
    /// The report for KServ, once an exit needs it.
    pub report: ExitReport,
    /// Set by [`crate::mem_protect::MemCore::vcpu_put`]: `ctx` is what the
    /// put wrote into that vCPU's page. A CPU that keeps its `Loaded`
    /// between runs lets the next load of the same vCPU skip reading the
    /// page back (a kilobyte), unless KCore wrote the page in between.
    pub ctx_key: Option<CtxKey>,
    /// `ctx.v` is what the context page holds: set by a load that read the
    /// page and by each put, cleared by a run in which the guest's FP/SIMD
    /// registers were live ([`crate::vcpu::GuestExit::fp`]) and by a reset
    /// at `CPU_ON`. While it is set, a put leaves the page's 512 bytes of
    /// FP/SIMD registers alone.
    pub v_in_page: bool,
    /// The guest's view of the CPU's ID registers (copied from
    /// [`crate::mem_protect::MemCore::guest_id_regs`] by a load when it
    /// changed, [`Self::ids_version`]), from which KCore answers the guest's
    /// trapped reads of them.
    pub ids: GuestIdRegs,
    /// The `MemCore` view `ids` was copied from (0: the empty view).
    pub ids_version: u64,
}

/// Which context page, at which version, a [`Loaded`]'s `ctx` is a copy
/// of. Versions are never given out twice and a handle names one VM for its
/// life, so a key that matches the VM's current version means nothing
/// changed the page since the copy was made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CtxKey {
    /// The VM's handle.
    pub handle: u64,
    /// The vCPU.
    pub idx: usize,
    /// [`crate::vm::Vm::ctx_versions`] when the copy was made.
    pub version: u64,
}

impl Loaded {
    /// How KServ's vGIC configures timer `t`'s interrupt.
    pub fn timer_irq(&self, t: Timer) -> TimerIrq {
        match t {
            Timer::Virt => self.timer,
            Timer::Phys => self.ptimer,
        }
    }

    /// A placeholder for [`crate::vcpu::VcpuHost::load`] to fill.
    pub fn empty() -> Loaded {
        Loaded {
            vm: VmId(0),
            idx: 0,
            kind: VmKind::NonProtected,
            cfg: GuestConfig {
                vmid: 0,
                root: Pa(0),
                geometry: Geometry::SMALLEST_STAGE2,
            },
            ctx: VcpuContext::reset(0),
            ctx_page: Pa(0),
            run_page: Pa(0),
            irq_words: [0; run::MAX_IRQS],
            n_irqs: 0,
            lrs: LrSet::default(),
            mmio: MmioRanges::default(),
            ipa_limit: 0,
            timer: TimerIrq::of(Timer::Virt, 0),
            ptimer: TimerIrq::of(Timer::Phys, 0),
            report: ExitReport::default(),
            ctx_key: None,
            v_in_page: false,
            ids: GuestIdRegs::EMPTY,
            ids_version: 0,
        }
    }
}

/// What to do after one exit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// KCore handled it: enter the guest again.
    Resume,
    /// Return to KServ with [`Loaded::report`].
    Exit,
    /// A guest's `MEM_SHARE` (`share`) or `MEM_UNSHARE` of the page at
    /// `gfn` (pKVM's guest ABI): done under the state lock
    /// ([`crate::mem_protect::MemCore::vcpu_guest_mem`]), then the guest
    /// resumes with the result in `x0`.
    GuestMem {
        /// Share (else unshare).
        share: bool,
        /// The page.
        gfn: u64,
    },
    /// A guest's PSCI CPU_ON for vCPU `target`: record it (under the VM
    /// lock, [`crate::mem_protect::MemCore::vcpu_cpu_on`]), then return to
    /// KServ.
    CpuOn {
        /// The target vCPU index.
        target: usize,
        /// Entry point.
        entry: u64,
        /// Context id.
        context: u64,
    },
    /// A non-protected guest's write to a page its stage 2 maps read-only,
    /// at `ipa`: whether that is a page write-protected for dirty logging
    /// or a read-only share is decided under the state lock
    /// ([`crate::mem_protect::MemCore::vcpu_write_fault`]), then
    /// [`crate::vcpu::write_fault`] finishes the exit.
    WriteFault {
        /// The faulting IPA.
        ipa: u64,
    },
}

/// What KCore's stage 2 says about a page a non-protected guest wrote and
/// took a permission fault on ([`Step::WriteFault`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteFault {
    /// Write-protected for dirty logging, and the run page's dirty ring is
    /// full: a memory fault KServ sees with
    /// [`kcore_abi::run::exit_flags::WRITE_PROTECTED`].
    Logged,
    /// Write-protected for dirty logging, and now writable again with its
    /// gfn appended to the run page's dirty ring
    /// ([`kcore_abi::run::DIRTY_RING`]): the guest runs again and repeats
    /// the write, with no exit.
    Recorded,
    /// Read-only because KServ shared it so (a read-only memory slot): an
    /// MMIO write with its data, as KVM emulates it.
    ReadOnly,
    /// Writable or unmapped by now (another CPU changed it since the
    /// fault): the guest runs again and repeats the access.
    Retry,
}
