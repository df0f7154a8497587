//! A vCPU's registers as KCore keeps them between runs: [`VcpuContext`]
//! and the layout of the context page it is stored in (the word
//! (de)serialisation and the in-place copies of the run path), the EL1
//! system registers a vCPU carries ([`Sys`]), its [`status`] bits and the
//! exit awaiting completion ([`Pending`]), its two EL1 timers ([`Timer`]),
//! its state at reset, which PSTATE
//! values KCore returns into ([`pstate_ok`]) and the MPIDR of each vCPU
//! index ([`mpidr_of`], [`index_of_mpidr`]).

use super::hwdebug::{self, DebugCounts};
use crate::addr::Pa;
use crate::exception::{Injection, TrapState, ec, inject_external_abort, inject_undef};
use crate::hw::PhysMemory;
use crate::vgic::{LrState, PTIMER_PPI, TIMER_PPI};
use kcore_abi::{Error, reg};

/// One of the guest's two EL1 timers, both KCore's to switch and deliver.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Timer {
    /// The virtual timer (`CNTV_*`, counting `CNTPCT - CNTVOFF`).
    Virt,
    /// The EL1 physical timer (`CNTP_*`, counting `CNTPCT`: guests have no
    /// physical offset).
    Phys,
}

impl Timer {
    /// Both, in the order their list register entries are chosen.
    pub const BOTH: [Timer; 2] = [Timer::Virt, Timer::Phys];

    /// The physical PPI the timer asserts ([`TIMER_PPI`], [`PTIMER_PPI`]).
    pub const fn ppi(self) -> u32 {
        match self {
            Timer::Virt => TIMER_PPI,
            Timer::Phys => PTIMER_PPI,
        }
    }
}

/// `CNTx_CTL_EL0.ENABLE`.
const CTL_ENABLE: u64 = 1;
/// `CNTx_CTL_EL0.IMASK`.
const CTL_IMASK: u64 = 2;

/// The EL1 system registers a vCPU carries, indices into [`VcpuContext::sys`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(usize)]
pub enum Sys {
    /// `SCTLR_EL1`.
    Sctlr,
    /// `CPACR_EL1`.
    Cpacr,
    /// `TTBR0_EL1`.
    Ttbr0,
    /// `TTBR1_EL1`.
    Ttbr1,
    /// `TCR_EL1`.
    Tcr,
    /// `ESR_EL1`.
    Esr,
    /// `AFSR0_EL1`.
    Afsr0,
    /// `AFSR1_EL1`.
    Afsr1,
    /// `FAR_EL1`.
    Far,
    /// `PAR_EL1`.
    Par,
    /// `MAIR_EL1`.
    Mair,
    /// `AMAIR_EL1`.
    Amair,
    /// `VBAR_EL1`.
    Vbar,
    /// `CONTEXTIDR_EL1`.
    Contextidr,
    /// `TPIDR_EL1`.
    TpidrEl1,
    /// `CNTKCTL_EL1`.
    Cntkctl,
    /// `CSSELR_EL1`.
    Csselr,
    /// `TPIDR_EL0`.
    TpidrEl0,
    /// `TPIDRRO_EL0`.
    TpidrroEl0,
    /// `MDSCR_EL1` (trapped and emulated: KCore loads it, the guest's
    /// accesses are answered from here).
    Mdscr,
    /// `SP_EL1`.
    SpEl1,
    /// `ELR_EL1`.
    ElrEl1,
    /// `SPSR_EL1`.
    SpsrEl1,
}

/// How many [`Sys`] registers there are.
pub const N_SYS: usize = 23;

impl Sys {
    /// Every register, in index order.
    pub const ALL: [Sys; N_SYS] = [
        Sys::Sctlr,
        Sys::Cpacr,
        Sys::Ttbr0,
        Sys::Ttbr1,
        Sys::Tcr,
        Sys::Esr,
        Sys::Afsr0,
        Sys::Afsr1,
        Sys::Far,
        Sys::Par,
        Sys::Mair,
        Sys::Amair,
        Sys::Vbar,
        Sys::Contextidr,
        Sys::TpidrEl1,
        Sys::Cntkctl,
        Sys::Csselr,
        Sys::TpidrEl0,
        Sys::TpidrroEl0,
        Sys::Mdscr,
        Sys::SpEl1,
        Sys::ElrEl1,
        Sys::SpsrEl1,
    ];

    /// The register a [`reg`] id names.
    pub fn from_reg(id: u64) -> Option<Sys> {
        use reg::sys as s;
        Some(match id {
            s::SCTLR_EL1 => Sys::Sctlr,
            s::CPACR_EL1 => Sys::Cpacr,
            s::TTBR0_EL1 => Sys::Ttbr0,
            s::TTBR1_EL1 => Sys::Ttbr1,
            s::TCR_EL1 => Sys::Tcr,
            s::ESR_EL1 => Sys::Esr,
            s::AFSR0_EL1 => Sys::Afsr0,
            s::AFSR1_EL1 => Sys::Afsr1,
            s::FAR_EL1 => Sys::Far,
            s::PAR_EL1 => Sys::Par,
            s::MAIR_EL1 => Sys::Mair,
            s::AMAIR_EL1 => Sys::Amair,
            s::VBAR_EL1 => Sys::Vbar,
            s::CONTEXTIDR_EL1 => Sys::Contextidr,
            s::TPIDR_EL1 => Sys::TpidrEl1,
            s::CNTKCTL_EL1 => Sys::Cntkctl,
            s::CSSELR_EL1 => Sys::Csselr,
            s::TPIDR_EL0 => Sys::TpidrEl0,
            s::TPIDRRO_EL0 => Sys::TpidrroEl0,
            s::MDSCR_EL1 => Sys::Mdscr,
            reg::SP_EL1 => Sys::SpEl1,
            reg::ELR_EL1 => Sys::ElrEl1,
            reg::SPSR_EL1 => Sys::SpsrEl1,
            _ => return None,
        })
    }
}

/// The GIC virtual CPU interface state that belongs to the guest.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VgicCpu {
    /// `ICH_VMCR_EL2` (GICv2: `GICH_VMCR`).
    pub vmcr: u64,
    /// `ICH_AP0R<n>_EL2` (GICv2: `GICH_APR` in `ap1r[0]`).
    pub ap0r: [u64; 4],
    /// `ICH_AP1R<n>_EL2`.
    pub ap1r: [u64; 4],
}

/// Bits of [`VcpuContext::status`].
pub mod status {
    /// The vCPU has run at least once.
    pub const STARTED: u64 = 1 << 0;
    /// The guest turned it off (PSCI CPU_OFF); only a CPU_ON restarts it.
    pub const OFF: u64 = 1 << 1;
    /// A guest's CPU_ON is recorded in `boot_pc`/`boot_x0`.
    pub const BOOT: u64 = 1 << 2;
    /// The guest's OS lock (`OSLAR_EL1`) is set.
    pub const OS_LOCK: u64 = 1 << 3;
    /// A virtual SError is pending for the guest.
    pub const VSERROR: u64 = 1 << 4;
    /// KServ debugs the vCPU (`reg::guest_debug::ENABLE`): its debug
    /// exceptions exit to KServ.
    pub const HOST_DEBUG: u64 = 1 << 5;
    /// KServ single-steps the vCPU (`reg::guest_debug::SINGLE_STEP`).
    pub const HOST_STEP: u64 = 1 << 6;
    /// KServ single-steps the vCPU and KCore emulated an instruction: the
    /// step completed, its exception is taken before the next instruction.
    pub const STEP_PENDING: u64 = 1 << 7;
    /// KServ's breakpoints and watchpoints replace the guest's
    /// (`reg::guest_debug::USE_HW`).
    pub const HOST_HW: u64 = 1 << 8;
    /// What KServ's `reg::GUEST_DEBUG` sets.
    pub const HOST_DEBUG_BITS: u64 = HOST_DEBUG | HOST_STEP | STEP_PENDING | HOST_HW;
    /// The last exit was an MMIO access, whose instruction KCore already
    /// stepped over; cleared at the next entry.
    pub const MMIO_EXIT: u64 = 1 << 9;
}

/// `OSLSR_EL1.OSLM` = 0b10: the OS lock is implemented.
const OSLSR_OSLM_IMPLEMENTED: u64 = 1 << 3;
/// `OSLSR_EL1.OSLK`: the OS lock is set.
const OSLSR_OSLK: u64 = 1 << 1;

/// What the next entry must finish before the guest runs on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Pending {
    /// Nothing.
    #[default]
    None,
    /// An MMIO read: KServ's completion goes to `x<rt>`.
    MmioRead {
        /// Destination register (31: the zero register, discarded).
        rt: u8,
        /// Access width in bytes.
        width: u8,
        /// Sign-extend (`LDRS*`).
        sign: bool,
        /// 64-bit destination (else the upper 32 bits are cleared).
        sf: bool,
    },
    /// A PSCI call KServ handles: its completion is `x0`.
    Psci,
}

impl Pending {
    fn encode(self) -> u64 {
        match self {
            Pending::None => 0,
            Pending::MmioRead {
                rt,
                width,
                sign,
                sf,
            } => {
                1 | (rt as u64) << 8
                    | (width as u64) << 16
                    | (sign as u64) << 24
                    | (sf as u64) << 25
            }
            Pending::Psci => 2,
        }
    }
    fn decode(w: u64) -> Pending {
        match w & 0xFF {
            1 => Pending::MmioRead {
                rt: (w >> 8) as u8 & 31,
                width: (w >> 16) as u8,
                sign: w & (1 << 24) != 0,
                sf: w & (1 << 25) != 0,
            },
            2 => Pending::Psci,
            _ => Pending::None,
        }
    }
}

/// Everything that is a vCPU, as KCore keeps it between runs. The general
/// registers come first: `kcore-arch`'s entry code addresses them by offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct VcpuContext {
    /// `x0..=x30`.
    pub x: [u64; 31],
    /// `SP_EL0`.
    pub sp_el0: u64,
    /// The PC.
    pub pc: u64,
    /// PSTATE.
    pub pstate: u64,
    /// EL1 system registers, indexed by [`Sys`].
    pub sys: [u64; N_SYS],
    /// `v0..v31`, each as (low, high) 64-bit halves.
    pub v: [u64; 64],
    /// `FPSR`.
    pub fpsr: u64,
    /// `FPCR`.
    pub fpcr: u64,
    /// `CNTV_CTL_EL0`.
    pub cntv_ctl: u64,
    /// `CNTV_CVAL_EL0`.
    pub cntv_cval: u64,
    /// `CNTVOFF_EL2`.
    pub cntvoff: u64,
    /// `CNTP_CTL_EL0`.
    pub cntp_ctl: u64,
    /// `CNTP_CVAL_EL0`.
    pub cntp_cval: u64,
    /// The virtual CPU interface.
    pub vgic: VgicCpu,
    /// State of KCore's list register entry for the guest's virtual timer.
    pub timer_lr: LrState,
    /// State of KCore's list register entry for the guest's physical timer.
    pub ptimer_lr: LrState,
    /// `VMPIDR_EL2`: what the guest reads as `MPIDR_EL1`.
    pub mpidr: u64,
    /// [`status`] bits.
    pub status: u64,
    /// Entry point recorded by a guest's PSCI CPU_ON.
    pub boot_pc: u64,
    /// Context id recorded by a guest's PSCI CPU_ON.
    pub boot_x0: u64,
    /// What the next entry completes.
    pub pending: Pending,
    /// The breakpoint and watchpoint registers, indexed as
    /// [`reg::sys::debug`]: the guest's accesses trap (`MDCR_EL2.TDA`) and
    /// are answered from here; the hardware has them while the guest runs
    /// with debug exceptions enabled ([`Self::debug_to_load`]).
    pub dbg: [u64; DEBUG_REGS],
    /// `VSESR_EL2` for the pending virtual SError (`status::VSERROR`).
    pub vsesr: u64,
    /// `FAR_EL2` of the last abort exit: the address of an external abort
    /// KServ injects (`reg::INJECT_DABT`).
    pub fault_far: u64,
    /// KServ's breakpoints and watchpoints (`reg::HOST_DEBUG_REG`), as it
    /// wrote them; loaded sanitised under `status::HOST_HW`.
    pub host_dbg: [u64; DEBUG_REGS],
}

/// Breakpoint and watchpoint registers a vCPU carries.
pub const DEBUG_REGS: usize = reg::sys::DEBUG_REGS;

/// Words a [`VcpuContext`] takes in its page.
pub const CTX_WORDS: usize =
    31 + 3 + N_SYS + 64 + 2 + 5 + 9 + 2 + 1 + 1 + 2 + 1 + 2 + 2 * DEBUG_REGS;
const _: () = assert!(CTX_WORDS * 8 <= 4096);
/// Where the context page's groups start (words): `x0..x30`, then
/// `SP_EL0`, PC, PSTATE; the EL1 registers; FP/SIMD; the rest; the debug
/// registers, KServ's.
const CTX_X: usize = 0;
const CTX_SYS: usize = CTX_X + 34;
const CTX_V: usize = CTX_SYS + N_SYS;
/// Words after FP/SIMD ([`VcpuContext::tail`]).
const CTX_TAIL: usize = CTX_WORDS - CTX_V - 64 - 2 * DEBUG_REGS;
const _: () = assert!(CTX_TAIL == 25);
const CTX_DBG: usize = CTX_V + 64 + CTX_TAIL;
const CTX_HOST_DBG: usize = CTX_DBG + DEBUG_REGS;

/// `MDSCR_EL1.MDE`: breakpoint and watchpoint exceptions enabled.
const MDSCR_MDE: u64 = 1 << 15;
/// `MDSCR_EL1.KDE`: debug exceptions at EL1 enabled.
const MDSCR_KDE: u64 = 1 << 13;
/// `MDSCR_EL1.SS`: software step enabled.
const MDSCR_SS: u64 = 1;
/// PSTATE.SS (`SPSR_ELx.SS`): the software step state machine's
/// active-not-pending state.
const PSTATE_SS: u64 = 1 << 21;

/// `SCTLR_EL1` at reset: its RES1 bits, MMU and caches off.
pub const SCTLR_EL1_RESET: u64 = 0x30D0_0800;
/// PSTATE at reset: EL1h, DAIF masked.
pub const PSTATE_RESET: u64 = 0x3C5;

/// PSTATE bits KServ or a saved context may carry: NZCV, TCO, DIT, UAO,
/// PAN, SS, IL, ALLINT, SSBS, BTYPE, DAIF and M, and PM, PPEND, EXLOCK.
/// The hardware sets the newer ones on exception entry on CPUs that have
/// them (`ALLINT` with FEAT_NMI, for one).
const PSTATE_ALLOWED: u64 = 0xF000_0000
    | 1 << 25
    | 1 << 24
    | 1 << 23
    | 1 << 22
    | 1 << 21
    | 1 << 20
    | 1 << 13
    | 1 << 12
    | 3 << 10
    | 0xF << 6
    | 0x1F
    | 7 << 32;

/// Whether `pstate` is an AArch64 EL0t, EL1t or EL1h state with no bits
/// outside `PSTATE_ALLOWED`: the only states KCore ever returns into.
pub const fn pstate_ok(pstate: u64) -> bool {
    pstate & !PSTATE_ALLOWED == 0 && matches!(pstate & 0x1F, 0b00000 | 0b00100 | 0b00101)
}

/// The `MPIDR_EL1` of vCPU `idx` (Aff0 = `idx % 16`, Aff1 = `idx / 16`, as
/// KVM lays them out, so a GICv3 SGI target list reaches 16 vCPUs).
pub const fn mpidr_of(idx: usize) -> u64 {
    1 << 31 | (idx as u64 & 0xF) | ((idx as u64 >> 4) & 0xFF) << 8
}

/// The vCPU index an MPIDR names, if well formed.
pub const fn index_of_mpidr(mpidr: u64) -> Option<usize> {
    let aff = mpidr & 0xFF_00FF_FFFF;
    if aff & !0xFFFF != 0 || aff & 0xF0 != 0 {
        return None;
    }
    Some(((aff >> 8) as usize) << 4 | (aff & 0xF) as usize)
}

impl VcpuContext {
    /// A vCPU at reset: registers zero, EL1h with interrupts masked, MMU off.
    pub const fn reset(idx: usize) -> VcpuContext {
        let mut sys = [0; N_SYS];
        sys[Sys::Sctlr as usize] = SCTLR_EL1_RESET;
        VcpuContext {
            x: [0; 31],
            sp_el0: 0,
            pc: 0,
            pstate: PSTATE_RESET,
            sys,
            v: [0; 64],
            fpsr: 0,
            fpcr: 0,
            cntv_ctl: 0,
            cntv_cval: 0,
            cntvoff: 0,
            cntp_ctl: 0,
            cntp_cval: 0,
            vgic: VgicCpu {
                vmcr: 0,
                ap0r: [0; 4],
                ap1r: [0; 4],
            },
            timer_lr: LrState::Invalid,
            ptimer_lr: LrState::Invalid,
            mpidr: mpidr_of(idx),
            status: 0,
            boot_pc: 0,
            boot_x0: 0,
            pending: Pending::None,
            dbg: [0; DEBUG_REGS],
            vsesr: 0,
            fault_far: 0,
            host_dbg: [0; DEBUG_REGS],
        }
    }

    /// A system register.
    pub fn sys(&self, r: Sys) -> u64 {
        self.sys[r as usize]
    }

    /// Sets a system register.
    pub fn set_sys(&mut self, r: Sys, v: u64) {
        self.sys[r as usize] = v;
    }

    /// The words of the context page.
    pub fn to_words(&self) -> [u64; CTX_WORDS] {
        let mut out = [0u64; CTX_WORDS];
        let mut w = Cursor::new(&mut out);
        w.put(&self.x);
        w.put(&[self.sp_el0, self.pc, self.pstate]);
        w.put(&self.sys);
        w.put(&self.v);
        w.put(&self.tail());
        w.put(&self.dbg);
        w.put(&self.host_dbg);
        out
    }

    /// The context a page's words describe.
    pub fn from_words(words: &[u64; CTX_WORDS]) -> VcpuContext {
        let mut c = VcpuContext::reset(0);
        let mut r = Reader { words, at: 0 };
        r.take(&mut c.x);
        let [sp_el0, pc, pstate] = r.array();
        (c.sp_el0, c.pc, c.pstate) = (sp_el0, pc, pstate);
        r.take(&mut c.sys);
        r.take(&mut c.v);
        c.set_tail(r.array());
        r.take(&mut c.dbg);
        r.take(&mut c.host_dbg);
        c
    }

    /// The page's last group: FP control, timer, vGIC CPU interface,
    /// KCore's own state.
    fn tail(&self) -> [u64; CTX_TAIL] {
        let [a0, a1, a2, a3] = self.vgic.ap0r;
        let [b0, b1, b2, b3] = self.vgic.ap1r;
        [
            self.fpsr,
            self.fpcr,
            self.cntv_ctl,
            self.cntv_cval,
            self.cntvoff,
            self.cntp_ctl,
            self.cntp_cval,
            self.vgic.vmcr,
            a0,
            a1,
            a2,
            a3,
            b0,
            b1,
            b2,
            b3,
            self.timer_lr.bits(),
            self.ptimer_lr.bits(),
            self.mpidr,
            self.status,
            self.boot_pc,
            self.boot_x0,
            self.pending.encode(),
            self.vsesr,
            self.fault_far,
        ]
    }

    /// Sets what [`Self::tail`] returns.
    fn set_tail(&mut self, t: [u64; CTX_TAIL]) {
        let [
            fpsr,
            fpcr,
            ctl,
            cval,
            off,
            pctl,
            pcval,
            vmcr,
            ap @ ..,
            lr,
            plr,
            mpidr,
            st,
            bpc,
            bx0,
            pending,
            vsesr,
            fault_far,
        ] = t;
        (
            self.fpsr,
            self.fpcr,
            self.cntv_ctl,
            self.cntv_cval,
            self.cntvoff,
            self.cntp_ctl,
            self.cntp_cval,
        ) = (fpsr, fpcr, ctl, cval, off, pctl, pcval);
        self.vgic.vmcr = vmcr;
        self.vgic.ap0r.copy_from_slice(&ap[..4]);
        self.vgic.ap1r.copy_from_slice(&ap[4..]);
        self.timer_lr = LrState::from_bits(lr);
        self.ptimer_lr = LrState::from_bits(plr);
        (self.mpidr, self.status, self.boot_pc, self.boot_x0) = (mpidr, st, bpc, bx0);
        self.pending = Pending::decode(pending);
        (self.vsesr, self.fault_far) = (vsesr, fault_far);
    }

    /// Reads the context from its page in place, group by group, with no
    /// copy in between (the run path: a context is over a kilobyte). The
    /// same words as [`Self::from_words`].
    pub fn read_from(&mut self, mem: &impl PhysMemory, page: Pa) {
        let at = |w: usize| Pa(page.raw() + 8 * w as u64);
        mem.read_words(at(CTX_X), &mut self.x);
        let mut a = [0u64; 3];
        mem.read_words(at(CTX_X + 31), &mut a);
        [self.sp_el0, self.pc, self.pstate] = a;
        mem.read_words(at(CTX_SYS), &mut self.sys);
        mem.read_words(at(CTX_V), &mut self.v);
        let mut t = [0u64; CTX_TAIL];
        mem.read_words(at(CTX_V + 64), &mut t);
        self.set_tail(t);
        mem.read_words(at(CTX_DBG), &mut self.dbg);
        mem.read_words(at(CTX_HOST_DBG), &mut self.host_dbg);
    }

    /// Writes the context into its page, group by group: the same words as
    /// [`Self::to_words`]. Without `with_v` the FP/SIMD registers (`v`, half
    /// the page) are left as the page has them: for a caller that knows
    /// they are the same.
    pub fn write_to(&self, mem: &mut impl PhysMemory, page: Pa, with_v: bool) {
        let at = |w: usize| Pa(page.raw() + 8 * w as u64);
        mem.write_words(at(CTX_X), &self.x);
        mem.write_words(at(CTX_X + 31), &[self.sp_el0, self.pc, self.pstate]);
        mem.write_words(at(CTX_SYS), &self.sys);
        if with_v {
            mem.write_words(at(CTX_V), &self.v);
        }
        mem.write_words(at(CTX_V + 64), &self.tail());
        mem.write_words(at(CTX_DBG), &self.dbg);
        mem.write_words(at(CTX_HOST_DBG), &self.host_dbg);
    }

    /// Register `n` as an instruction names it: 31 is the zero register.
    pub fn xr(&self, n: usize) -> u64 {
        self.x.get(n).copied().unwrap_or(0)
    }

    /// Writes register `n` as an instruction names it (31: discarded).
    pub fn set_xr(&mut self, n: usize, v: u64) {
        if let Some(r) = self.x.get_mut(n) {
            *r = v;
        }
    }

    /// Reads a register by its ABI id.
    pub fn get_reg(&self, id: u64) -> Option<u64> {
        Some(match id {
            0..=30 => self.x[id as usize],
            reg::SP_EL0 => self.sp_el0,
            reg::PC => self.pc,
            reg::PSTATE => self.pstate,
            reg::FPSR => self.fpsr,
            reg::FPCR => self.fpcr,
            reg::CNTVOFF => self.cntvoff,
            reg::POWER_OFF => u64::from(self.status & status::OFF != 0),
            reg::GUEST_DEBUG => self.guest_debug(),
            reg::SERROR if self.status & status::VSERROR != 0 => reg::serror::PENDING | self.vsesr,
            reg::SERROR => 0,
            _ if (reg::HOST_DEBUG_REG..reg::HOST_DEBUG_REG + DEBUG_REGS as u64).contains(&id) => {
                self.host_dbg[(id - reg::HOST_DEBUG_REG) as usize]
            }
            reg::sys::OSLSR_EL1 => self.oslsr(),
            reg::ICH_VMCR => self.vgic.vmcr,
            _ if (reg::ICH_AP0R..reg::ICH_AP0R + 4).contains(&id) => {
                self.vgic.ap0r[(id - reg::ICH_AP0R) as usize]
            }
            _ if (reg::ICH_AP1R..reg::ICH_AP1R + 4).contains(&id) => {
                self.vgic.ap1r[(id - reg::ICH_AP1R) as usize]
            }
            _ if (reg::V_LO..reg::V_LO + 32).contains(&id) => self.v[2 * (id - reg::V_LO) as usize],
            _ if (reg::V_HI..reg::V_HI + 32).contains(&id) => {
                self.v[2 * (id - reg::V_HI) as usize + 1]
            }
            reg::sys::CNTV_CTL_EL0 => self.cntv_ctl,
            reg::sys::CNTV_CVAL_EL0 => self.cntv_cval,
            reg::sys::CNTP_CTL_EL0 => self.cntp_ctl,
            reg::sys::CNTP_CVAL_EL0 => self.cntp_cval,
            reg::sys::MPIDR_EL1 => self.mpidr,
            _ if reg::sys::debug_index(id).is_some() => self.dbg[reg::sys::debug_index(id)?],
            _ => self.sys(Sys::from_reg(id)?),
        })
    }

    /// The `MDSCR_EL1` the hardware must have while the guest runs: the
    /// guest's (which KCore emulates: its accesses trap), but with its OS
    /// lock set without the enables of breakpoints, watchpoints and
    /// software step (`MDE`, `KDE`, `SS`), as the lock disables every debug
    /// exception but `BRK`'s.
    /// KServ's single step ([`Self::host_debug`]) sets `SS`, its own
    /// breakpoints and watchpoints (`status::HOST_HW`) `MDE`.
    pub fn mdscr_to_load(&self) -> u64 {
        let mdscr = self.sys(Sys::Mdscr);
        let mdscr = if self.status & status::OS_LOCK != 0 {
            mdscr & !(MDSCR_MDE | MDSCR_KDE | MDSCR_SS)
        } else {
            mdscr
        };
        let mdscr = if self.status & status::HOST_HW != 0 {
            mdscr | MDSCR_MDE
        } else {
            mdscr
        };
        if self.status & status::HOST_STEP != 0 {
            mdscr | MDSCR_SS
        } else {
            mdscr
        }
    }

    /// The [`reg::GUEST_DEBUG`] bits KServ set.
    pub fn guest_debug(&self) -> u64 {
        let mut v = 0;
        if self.status & status::HOST_DEBUG != 0 {
            v |= reg::guest_debug::ENABLE;
        }
        if self.status & status::HOST_STEP != 0 {
            v |= reg::guest_debug::SINGLE_STEP;
        }
        if self.status & status::HOST_HW != 0 {
            v |= reg::guest_debug::USE_HW;
        }
        v
    }

    /// Whether KServ debugs the vCPU: its debug exceptions must then go to
    /// EL2 (`MDCR_EL2.TDE`) and on to KServ.
    pub fn host_debug(&self) -> bool {
        self.status & (status::HOST_DEBUG | status::HOST_STEP) != 0
    }

    /// The PSTATE to enter the guest with (`SPSR_EL2`): the guest's, but
    /// under KServ's single step with `SS` set, so one instruction runs
    /// before the step exception, or clear when KCore just emulated one
    /// (the step completed: the exception comes first).
    pub fn pstate_to_load(&self) -> u64 {
        if self.status & status::HOST_STEP == 0 {
            self.pstate
        } else if self.status & status::STEP_PENDING != 0 {
            self.pstate & !PSTATE_SS
        } else {
            self.pstate | PSTATE_SS
        }
    }

    /// Takes the guest's PSTATE back from `spsr` (`SPSR_EL2`) after a run
    /// entered with [`Self::pstate_to_load`]. Under KServ's single step the
    /// guest keeps its own `SS`, and `spsr`'s is the step machine's: clear
    /// when the exit came with the step complete but its exception not yet
    /// taken (an interrupt first, an exception-generating instruction), so
    /// the next entry takes it at once.
    pub fn finish_pstate(&mut self, spsr: u64) {
        if self.status & status::HOST_STEP == 0 {
            self.pstate = spsr;
            self.status &= !status::STEP_PENDING;
            return;
        }
        self.pstate = (spsr & !PSTATE_SS) | (self.pstate & PSTATE_SS);
        if spsr & PSTATE_SS == 0 {
            self.status |= status::STEP_PENDING;
        } else {
            self.status &= !status::STEP_PENDING;
        }
    }

    /// KServ's step exception was taken: the next entry steps the next
    /// instruction.
    pub fn step_taken(&mut self) {
        self.status &= !status::STEP_PENDING;
    }

    /// The breakpoint and watchpoint registers the hardware must have while
    /// the guest runs on a CPU with counts `k`, or `None` if
    /// [`Self::mdscr_to_load`] leaves them disabled (`MDE` and `KDE` clear:
    /// none fires, so KServ's may stay loaded): the guest's, or under
    /// `status::HOST_HW` KServ's, sanitised ([`hwdebug::sanitise`]).
    pub fn debug_to_load(&self, k: &DebugCounts) -> Option<[u64; DEBUG_REGS]> {
        if self.status & status::HOST_HW != 0 {
            return Some(hwdebug::sanitise(&self.host_dbg, k));
        }
        (self.mdscr_to_load() & (MDSCR_MDE | MDSCR_KDE) != 0).then_some(self.dbg)
    }

    /// Moves the PC past an instruction KCore emulated, as the hardware
    /// would have after executing it: clearing PSTATE.SS, so a guest that
    /// single-steps takes its step exception before the next instruction
    /// (the step completed) rather than after it.
    pub fn skip_instr(&mut self) {
        self.pc = self.pc.wrapping_add(4);
        if self.status & status::HOST_STEP != 0 {
            self.status |= status::STEP_PENDING;
        } else {
            self.pstate &= !PSTATE_SS;
        }
    }

    /// `OSLSR_EL1` as the guest reads it: the OS lock implemented, and
    /// whether it is set.
    pub fn oslsr(&self) -> u64 {
        OSLSR_OSLM_IMPLEMENTED
            | if self.status & status::OS_LOCK != 0 {
                OSLSR_OSLK
            } else {
                0
            }
    }

    /// Sets or clears the guest's OS lock (`OSLAR_EL1.OSLK`).
    pub fn set_os_lock(&mut self, locked: bool) {
        if locked {
            self.status |= status::OS_LOCK;
        } else {
            self.status &= !status::OS_LOCK;
        }
    }

    /// Starts a vCPU whose guest's `CPU_ON` KCore recorded (`status::BOOT`):
    /// reset to the entry point and context id it chose, nothing of KServ's
    /// (its FP/SIMD registers zero), its `MPIDR_EL1` and timer offset kept.
    /// Returns whether there was such a start.
    pub fn start_from_boot(&mut self, idx: usize) -> bool {
        if self.status & status::BOOT == 0 {
            return false;
        }
        let (pc, x0, mpidr, cntvoff) = (self.boot_pc, self.boot_x0, self.mpidr, self.cntvoff);
        // KServ's debugging outlives the guest's reset, as KVM's does.
        let debug = self.status & (status::HOST_DEBUG | status::HOST_STEP | status::HOST_HW);
        let host_dbg = self.host_dbg;
        *self = VcpuContext::reset(idx);
        (self.pc, self.x[0], self.mpidr, self.cntvoff) = (pc, x0, mpidr, cntvoff);
        self.host_dbg = host_dbg;
        self.status = status::STARTED | debug;
        true
    }

    /// Writes a register by its ABI id. PSTATE must be an AArch64 EL0/EL1
    /// state; `MPIDR_EL1` is read-only.
    pub fn set_reg(&mut self, id: u64, v: u64) -> Result<(), Error> {
        match id {
            0..=30 => self.x[id as usize] = v,
            reg::SP_EL0 => self.sp_el0 = v,
            reg::PC => {
                self.pc = v;
                self.status &= !status::MMIO_EXIT;
            }
            reg::PSTATE if pstate_ok(v) => self.pstate = v,
            reg::PSTATE => return Err(Error::InvalidParameter),
            reg::FPSR => self.fpsr = v,
            reg::FPCR => self.fpcr = v,
            reg::CNTVOFF => self.cntvoff = v,
            reg::POWER_OFF if v == 1 => self.status |= status::OFF,
            reg::POWER_OFF if v == 0 => self.status &= !status::OFF,
            reg::POWER_OFF => return Err(Error::InvalidParameter),
            reg::GUEST_DEBUG if v & !reg::guest_debug::ALL == 0 => {
                use reg::guest_debug::{ENABLE, SINGLE_STEP, USE_HW};
                if v & USE_HW != 0 && v & ENABLE == 0 {
                    return Err(Error::InvalidParameter);
                }
                self.status &= !status::HOST_DEBUG_BITS;
                for (bit, st) in [
                    (ENABLE, status::HOST_DEBUG),
                    (SINGLE_STEP, status::HOST_STEP),
                    (USE_HW, status::HOST_HW),
                ] {
                    if v & bit != 0 {
                        self.status |= st;
                    }
                }
            }
            reg::GUEST_DEBUG => return Err(Error::InvalidParameter),
            _ if (reg::HOST_DEBUG_REG..reg::HOST_DEBUG_REG + DEBUG_REGS as u64).contains(&id) => {
                self.host_dbg[(id - reg::HOST_DEBUG_REG) as usize] = v
            }
            reg::SERROR if v == 0 => self.status &= !status::VSERROR,
            reg::SERROR if v & !reg::serror::ESR == reg::serror::PENDING => {
                self.vsesr = v & reg::serror::ESR;
                self.status |= status::VSERROR;
            }
            reg::SERROR => return Err(Error::InvalidParameter),
            reg::INJECT_DABT if v == 0 => self.inject_dabt(),
            reg::INJECT_DABT => return Err(Error::InvalidParameter),
            reg::sys::OSLSR_EL1 if v & !OSLSR_OSLK == OSLSR_OSLM_IMPLEMENTED => {
                self.set_os_lock(v & OSLSR_OSLK != 0)
            }
            reg::sys::OSLSR_EL1 => return Err(Error::InvalidParameter),
            reg::ICH_VMCR if v & !reg::ICH_VMCR_VALID == 0 => self.vgic.vmcr = v,
            reg::ICH_VMCR => return Err(Error::InvalidParameter),
            _ if (reg::ICH_AP0R..reg::ICH_AP0R + 4).contains(&id) && v >> 32 == 0 => {
                self.vgic.ap0r[(id - reg::ICH_AP0R) as usize] = v
            }
            _ if (reg::ICH_AP1R..reg::ICH_AP1R + 4).contains(&id) && v >> 32 == 0 => {
                self.vgic.ap1r[(id - reg::ICH_AP1R) as usize] = v
            }
            _ if (reg::ICH_AP0R..reg::ICH_AP1R + 4).contains(&id) => {
                return Err(Error::InvalidParameter);
            }
            _ if (reg::V_LO..reg::V_LO + 32).contains(&id) => {
                self.v[2 * (id - reg::V_LO) as usize] = v
            }
            _ if (reg::V_HI..reg::V_HI + 32).contains(&id) => {
                self.v[2 * (id - reg::V_HI) as usize + 1] = v
            }
            reg::sys::CNTV_CTL_EL0 => self.cntv_ctl = v,
            reg::sys::CNTV_CVAL_EL0 => self.cntv_cval = v,
            // ISTATUS is the hardware's to compute; nothing else is defined.
            reg::sys::CNTP_CTL_EL0 => self.cntp_ctl = v & (CTL_ENABLE | CTL_IMASK),
            reg::sys::CNTP_CVAL_EL0 => self.cntp_cval = v,
            reg::sys::MPIDR_EL1 => return Err(Error::Denied),
            _ if reg::sys::debug_index(id).is_some() => {
                if let Some(i) = reg::sys::debug_index(id) {
                    self.dbg[i] = v;
                }
            }
            _ => {
                let r = Sys::from_reg(id).ok_or(Error::NotFound)?;
                self.set_sys(r, v);
            }
        }
        Ok(())
    }

    /// Timer `t`'s `CTL`, `CVAL` and the offset its count is the physical
    /// count minus.
    pub fn timer_regs(&self, t: Timer) -> (u64, u64, u64) {
        match t {
            Timer::Virt => (self.cntv_ctl, self.cntv_cval, self.cntvoff),
            Timer::Phys => (self.cntp_ctl, self.cntp_cval, 0),
        }
    }

    /// The state of KCore's list register entry for timer `t`.
    pub fn timer_lr_mut(&mut self, t: Timer) -> &mut LrState {
        match t {
            Timer::Virt => &mut self.timer_lr,
            Timer::Phys => &mut self.ptimer_lr,
        }
    }

    /// Whether the guest's timer `t` asserts its interrupt at physical
    /// counter value `now`: enabled, not masked, its condition met.
    pub fn timer_asserts(&self, t: Timer, now: u64) -> bool {
        let (ctl, cval, off) = self.timer_regs(t);
        ctl & (CTL_ENABLE | CTL_IMASK) == CTL_ENABLE && now.wrapping_sub(off) >= cval
    }

    /// The physical counter value at which timer `t` fires, or `u64::MAX`
    /// (disabled or masked).
    pub fn deadline_of(&self, t: Timer) -> u64 {
        let (ctl, cval, off) = self.timer_regs(t);
        if ctl & (CTL_ENABLE | CTL_IMASK) == CTL_ENABLE {
            cval.saturating_add(off)
        } else {
            u64::MAX
        }
    }

    /// The physical counter value at which the guest's next timer
    /// interrupt is due, the earlier of its two timers', or `u64::MAX`:
    /// what KServ waits for while the vCPU idles.
    pub fn timer_deadline(&self) -> u64 {
        self.deadline_of(Timer::Virt)
            .min(self.deadline_of(Timer::Phys))
    }

    fn trap_state(&self, esr: u64, far: u64) -> TrapState {
        TrapState {
            esr,
            far,
            hpfar: 0,
            elr: self.pc,
            spsr: self.pstate,
            vbar_el1: self.sys(Sys::Vbar),
            sctlr_el1: self.sys(Sys::Sctlr),
        }
    }

    /// Makes the guest take `i` at EL1 when it next runs.
    pub fn apply(&mut self, i: &Injection) {
        self.set_sys(Sys::Esr, i.esr_el1);
        if let Some(far) = i.far_el1 {
            self.set_sys(Sys::Far, far);
        }
        self.set_sys(Sys::ElrEl1, i.elr_el1);
        self.set_sys(Sys::SpsrEl1, i.spsr_el1);
        self.pc = i.elr_el2;
        self.pstate = i.spsr_el2;
    }

    /// Injects an UNDEFINED exception for the instruction at the PC.
    pub fn inject_undef(&mut self) {
        let i = inject_undef(&self.trap_state(0, 0));
        self.apply(&i);
    }

    /// Injects a synchronous external abort for the access `esr`/`far`
    /// describe (an instruction or data abort from the guest).
    pub fn inject_abort(&mut self, esr: u64, far: u64) {
        let i = inject_external_abort(&self.trap_state(esr, far));
        self.apply(&i);
    }

    /// KServ's external data abort (`reg::INJECT_DABT`, KVM's
    /// `kvm_inject_dabt`): the guest takes a synchronous external abort on
    /// a data access at the instruction it is at (an MMIO access KCore
    /// already stepped over, if that was the last exit: whose completion
    /// is dropped), reporting the last abort exit's address.
    pub fn inject_dabt(&mut self) {
        if self.status & status::MMIO_EXIT != 0 {
            self.pc = self.pc.wrapping_sub(4);
        }
        self.status &= !status::MMIO_EXIT;
        self.pending = Pending::None;
        let far = self.fault_far;
        self.inject_abort(ec::DABT_LOW << 26, far);
    }

    /// Finishes the exit the last run ended with, using KServ's completion.
    pub fn complete(&mut self, completion: u64) {
        match self.pending {
            Pending::None => {}
            Pending::MmioRead {
                rt,
                width,
                sign,
                sf,
            } => {
                let bits = 8 * width.clamp(1, 8) as u32;
                let mut v = completion & mask(bits);
                if sign && bits < 64 {
                    let shift = 64 - bits;
                    v = (((v << shift) as i64) >> shift) as u64;
                }
                if !sf {
                    v &= 0xFFFF_FFFF;
                }
                self.set_xr(rt as usize, v);
            }
            Pending::Psci => self.x[0] = completion,
        }
        self.pending = Pending::None;
    }
}

/// A mask of the low `bits` bits (all ones from 64 bits up).
pub(super) fn mask(bits: u32) -> u64 {
    if bits >= 64 {
        u64::MAX
    } else {
        (1 << bits) - 1
    }
}

struct Cursor<'a> {
    out: &'a mut [u64],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn new(out: &'a mut [u64]) -> Self {
        Cursor { out, at: 0 }
    }
    fn put(&mut self, w: &[u64]) {
        if let Some(dst) = self.out.get_mut(self.at..self.at + w.len()) {
            dst.copy_from_slice(w);
        }
        self.at += w.len();
    }
}

struct Reader<'a> {
    words: &'a [u64],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, dst: &mut [u64]) {
        if let Some(src) = self.words.get(self.at..self.at + dst.len()) {
            dst.copy_from_slice(src);
        }
        self.at += dst.len();
    }
    fn array<const N: usize>(&mut self) -> [u64; N] {
        let mut a = [0; N];
        self.take(&mut a);
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_round_trips_through_words() {
        let mut c = VcpuContext::reset(17);
        for (i, x) in c.x.iter_mut().enumerate() {
            *x = 0x1000 + i as u64;
        }
        c.pc = 0x4000_0000;
        c.v[63] = 0xdead;
        c.vgic.ap1r[3] = 7;
        c.timer_lr = LrState::Active;
        c.pending = Pending::MmioRead {
            rt: 9,
            width: 2,
            sign: true,
            sf: false,
        };
        c.status = status::STARTED | status::BOOT;
        assert_eq!(VcpuContext::from_words(&c.to_words()), c);
        assert_eq!(c.mpidr, 1 << 31 | 1 << 8 | 1);
        assert_eq!(index_of_mpidr(c.mpidr), Some(17));
    }

    /// One page of words, for the in-place context copies.
    struct Page([u64; 512]);

    impl PhysMemory for Page {
        fn read(&self, _: Pa, _: &mut [u8]) {
            unreachable!("the context is read as words")
        }
        fn read_words(&self, pa: Pa, buf: &mut [u64]) {
            let at = (pa.raw() - 0x8000) as usize / 8;
            buf.copy_from_slice(&self.0[at..at + buf.len()]);
        }
        fn write_words(&mut self, pa: Pa, words: &[u64]) {
            let at = (pa.raw() - 0x8000) as usize / 8;
            self.0[at..at + words.len()].copy_from_slice(words);
        }
        fn store_barrier(&mut self) {}
        fn scrub_page(&mut self, _: Pa) {}
        fn sync_for_guest(&mut self, _: Pa) {}
    }

    #[test]
    fn context_page_copies_in_place_match_the_words() {
        // Every word different, so a group at the wrong offset shows.
        let mut words = [0u64; CTX_WORDS];
        for (i, w) in words.iter_mut().enumerate() {
            *w = 0x5000 + i as u64;
        }
        // The tail's timer list register and pending exit: valid values.
        words[CTX_DBG - 9] = LrState::Pending.bits();
        words[CTX_DBG - 8] = LrState::Active.bits();
        words[CTX_DBG - 3] = Pending::MmioRead {
            rt: 3,
            width: 4,
            sign: false,
            sf: true,
        }
        .encode();
        let c = VcpuContext::from_words(&words);
        assert_eq!(c.to_words(), words, "the test's words are a context");

        let mut page = Page([u64::MAX; 512]);
        c.write_to(&mut page, Pa(0x8000), true);
        assert_eq!(page.0[..CTX_WORDS], words, "write_to lays out to_words");
        assert!(page.0[CTX_WORDS..].iter().all(|&w| w == u64::MAX));

        let mut back = VcpuContext::reset(5);
        back.read_from(&page, Pa(0x8000));
        assert_eq!(back, c, "read_from reads what from_words reads");
    }

    #[test]
    fn mpidr_decoding_rejects_what_no_vcpu_has() {
        assert_eq!(index_of_mpidr(0), Some(0));
        assert_eq!(index_of_mpidr(0x8000_0001), Some(1));
        assert_eq!(index_of_mpidr(0x10), None, "Aff0 >= 16");
        assert_eq!(index_of_mpidr(1 << 16), None, "Aff2");
        assert_eq!(index_of_mpidr(1 << 32), None, "Aff3");
    }

    #[test]
    fn pstate_only_el0_el1_aarch64() {
        assert!(pstate_ok(PSTATE_RESET));
        assert!(pstate_ok(0));
        assert!(pstate_ok(0x4));
        assert!(!pstate_ok(0x9), "EL2h");
        assert!(!pstate_ok(0x8), "EL2t");
        assert!(!pstate_ok(0x10), "AArch32");
        assert!(!pstate_ok(0x3C5 | 1 << 40), "unknown bits");
        assert!(pstate_ok(0x3C5 | 1 << 13), "ALLINT, set by FEAT_NMI CPUs");
        let mut c = VcpuContext::reset(0);
        assert_eq!(c.set_reg(reg::PSTATE, 0x3C9), Err(Error::InvalidParameter));
        assert_eq!(c.set_reg(reg::sys::MPIDR_EL1, 0), Err(Error::Denied));
        assert_eq!(c.set_reg(0xFFFF, 0), Err(Error::NotFound));
        c.set_reg(reg::V_HI + 31, 5).expect("v31 high");
        assert_eq!(c.v[63], 5);
        assert_eq!(c.get_reg(reg::V_HI + 31), Some(5));
        c.set_reg(reg::sys::VBAR_EL1, 0x800).expect("vbar");
        assert_eq!(c.sys(Sys::Vbar), 0x800);
    }
}
