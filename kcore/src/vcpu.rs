//! vCPUs: register state, the first run, exits and what KServ may learn
//! from them.
//!
//! A vCPU's registers live in a [`VcpuContext`] kept in one page of its VM's
//! table pool, a KCore page that no stage 2 maps. `host_vcpu_run` copies it
//! to the running CPU's EL2 stack, `kcore-arch` switches the CPU into the
//! guest and back ([`GuestCpu`]) and this module decides what each exit
//! means ([`step`]): handled inside KCore (unknown hypercalls, debug and PMU
//! registers, faults the guest made itself), or reported to KServ with
//! exactly what emulation needs (DESIGN.md §1): for MMIO the address, width,
//! direction and the one data register; for a memory fault only the page;
//! for PSCI the function id and `x1..x3`; for SGIs the SGI register's value.
//! KServ never sees the PC, the syndrome or any other register of a
//! protected vCPU, and sets only its first PC (inside the verified image) and
//! `x0`.

use crate::addr::{Gfn, PAGE_SHIFT, Pa};
use crate::exception::{Esr, Injection, TrapState, ec, fault_ipa};
use crate::exception::{inject_external_abort, inject_undef};
use crate::hw::PhysMemory;
use crate::pgtable::Geometry;
use crate::vgic::{Lr, LrSet, LrState, MAX_LRS, TIMER_PPI};
use crate::vm::{MmioRanges, VmId, VmKind};
use kcore_abi::run::{self, exit, exit_flags};
use kcore_abi::{Error, reg};

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
}

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
    /// The virtual CPU interface.
    pub vgic: VgicCpu,
    /// State of KCore's list register entry for the guest's timer.
    pub timer_lr: LrState,
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
}

/// Words a [`VcpuContext`] takes in its page.
pub const CTX_WORDS: usize = 31 + 3 + N_SYS + 64 + 2 + 3 + 9 + 1 + 1 + 1 + 2 + 1;
const _: () = assert!(CTX_WORDS * 8 <= 4096);
/// Where the context page's groups start (words): `x0..x30`, then
/// `SP_EL0`, PC, PSTATE; the EL1 registers; FP/SIMD; the rest.
const CTX_X: usize = 0;
const CTX_SYS: usize = CTX_X + 34;
const CTX_V: usize = CTX_SYS + N_SYS;
/// Words after FP/SIMD ([`VcpuContext::tail`]).
const CTX_TAIL: usize = CTX_WORDS - CTX_V - 64;
const _: () = assert!(CTX_TAIL == 20);

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
            vgic: VgicCpu {
                vmcr: 0,
                ap0r: [0; 4],
                ap1r: [0; 4],
            },
            timer_lr: LrState::Invalid,
            mpidr: mpidr_of(idx),
            status: 0,
            boot_pc: 0,
            boot_x0: 0,
            pending: Pending::None,
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
            self.mpidr,
            self.status,
            self.boot_pc,
            self.boot_x0,
            self.pending.encode(),
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
            vmcr,
            ap @ ..,
            lr,
            mpidr,
            st,
            bpc,
            bx0,
            pending,
        ] = t;
        (
            self.fpsr,
            self.fpcr,
            self.cntv_ctl,
            self.cntv_cval,
            self.cntvoff,
        ) = (fpsr, fpcr, ctl, cval, off);
        self.vgic.vmcr = vmcr;
        self.vgic.ap0r.copy_from_slice(&ap[..4]);
        self.vgic.ap1r.copy_from_slice(&ap[4..]);
        self.timer_lr = LrState::from_bits(lr);
        (self.mpidr, self.status, self.boot_pc, self.boot_x0) = (mpidr, st, bpc, bx0);
        self.pending = Pending::decode(pending);
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
            _ if (reg::V_LO..reg::V_LO + 32).contains(&id) => self.v[2 * (id - reg::V_LO) as usize],
            _ if (reg::V_HI..reg::V_HI + 32).contains(&id) => {
                self.v[2 * (id - reg::V_HI) as usize + 1]
            }
            reg::sys::CNTV_CTL_EL0 => self.cntv_ctl,
            reg::sys::CNTV_CVAL_EL0 => self.cntv_cval,
            reg::sys::MPIDR_EL1 => self.mpidr,
            _ => self.sys(Sys::from_reg(id)?),
        })
    }

    /// Writes a register by its ABI id. PSTATE must be an AArch64 EL0/EL1
    /// state; `MPIDR_EL1` is read-only.
    pub fn set_reg(&mut self, id: u64, v: u64) -> Result<(), Error> {
        match id {
            0..=30 => self.x[id as usize] = v,
            reg::SP_EL0 => self.sp_el0 = v,
            reg::PC => self.pc = v,
            reg::PSTATE if pstate_ok(v) => self.pstate = v,
            reg::PSTATE => return Err(Error::InvalidParameter),
            reg::FPSR => self.fpsr = v,
            reg::FPCR => self.fpcr = v,
            reg::CNTVOFF => self.cntvoff = v,
            _ if (reg::V_LO..reg::V_LO + 32).contains(&id) => {
                self.v[2 * (id - reg::V_LO) as usize] = v
            }
            _ if (reg::V_HI..reg::V_HI + 32).contains(&id) => {
                self.v[2 * (id - reg::V_HI) as usize + 1] = v
            }
            reg::sys::CNTV_CTL_EL0 => self.cntv_ctl = v,
            reg::sys::CNTV_CVAL_EL0 => self.cntv_cval = v,
            reg::sys::MPIDR_EL1 => return Err(Error::Denied),
            _ => {
                let r = Sys::from_reg(id).ok_or(Error::NotFound)?;
                self.set_sys(r, v);
            }
        }
        Ok(())
    }

    /// Whether the guest's virtual timer asserts its interrupt at physical
    /// counter value `now`.
    pub fn timer_asserts(&self, now: u64) -> bool {
        const ENABLE: u64 = 1;
        const IMASK: u64 = 2;
        self.cntv_ctl & (ENABLE | IMASK) == ENABLE
            && now.wrapping_sub(self.cntvoff) >= self.cntv_cval
    }

    /// The physical counter value at which the timer fires, or `u64::MAX`.
    pub fn timer_deadline(&self) -> u64 {
        if self.cntv_ctl & 3 == 1 {
            self.cntv_cval.saturating_add(self.cntvoff)
        } else {
            u64::MAX
        }
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

fn mask(bits: u32) -> u64 {
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

/// How the guest left.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ExitKind {
    /// A synchronous exception (`ESR_EL2` says which).
    Sync,
    /// A physical IRQ.
    Irq,
    /// A physical IRQ that is the guest's own virtual timer (its PPI is
    /// the highest pending and the guest's timer asserts): KCore delivers
    /// it at the next entry without involving KServ.
    GuestTimer,
    /// A physical FIQ.
    Fiq,
    /// A physical SError.
    SError,
}

/// The syndrome of one exit, as `kcore-arch` read it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestExit {
    /// The kind.
    pub kind: ExitKind,
    /// `ESR_EL2`.
    pub esr: u64,
    /// `FAR_EL2`.
    pub far: u64,
    /// `HPFAR_EL2`.
    pub hpfar: u64,
    /// The guest's FP/SIMD registers were live in this run, so `ctx.v`,
    /// `fpsr` and `fpcr` may have changed. When false the run left them as
    /// they were (KCore's trap of the guest's first FP/SIMD access never
    /// fired).
    pub fp: bool,
}

/// The CPU side of running a guest, implemented by `kcore-arch`.
pub trait GuestCpu {
    /// The GIC's list registers (GICv3: `ICH_VTR_EL2.ListRegs + 1`); 0 when
    /// this platform cannot run guests.
    fn list_registers(&self) -> usize;
    /// The physical counter, `CNTPCT_EL0`.
    fn counter(&self) -> u64;
    /// Switches this CPU to the guest described by `cfg` and `ctx` with the
    /// list registers `lrs`, runs it until its next exception to EL2, and
    /// switches back to KServ's state. `ctx` and the states in `lrs` are
    /// updated; hardware-mapped entries have their physical interrupt made
    /// active for the run and inactive again afterwards.
    fn run(&mut self, cfg: &GuestConfig, ctx: &mut VcpuContext, lrs: &mut LrSet) -> GuestExit;
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

/// The guest's timer interrupt as KServ's vGIC model configures it (the
/// run page's entry flags).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimerIrq {
    /// The guest has it enabled.
    pub enabled: bool,
    /// Its priority.
    pub priority: u8,
    /// Group 1 (else group 0).
    pub group1: bool,
}

impl TimerIrq {
    /// From the entry flags (already checked against
    /// [`kcore_abi::run::entry_flags::ALL`]).
    pub const fn from_flags(f: u64) -> TimerIrq {
        use kcore_abi::run::entry_flags as ef;
        TimerIrq {
            enabled: f & ef::TIMER_DISABLED == 0,
            priority: (f >> ef::TIMER_PRIORITY_SHIFT) as u8,
            group1: f & ef::TIMER_GROUP0 == 0,
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
    /// The list registers: KServ's entries first, then the timer's.
    pub lrs: LrSet,
    /// The VM's MMIO ranges.
    pub mmio: MmioRanges,
    /// The VM's IPA limit (bytes).
    pub ipa_limit: u64,
    /// How KServ's vGIC configures the guest's timer interrupt.
    pub timer: TimerIrq,
    /// The report for KServ, once an exit needs it.
    pub report: ExitReport,
    /// Set by [`crate::mem_protect::MemCore::vcpu_put`]: `ctx` is what the
    /// put wrote into that vCPU's page. A CPU that keeps its `Loaded`
    /// between runs lets the next load of the same vCPU skip reading the
    /// page back (a kilobyte), unless KCore wrote the page in between.
    pub ctx_key: Option<CtxKey>,
    /// `ctx.v` is what the context page holds: set by a load that read the
    /// page and by each put, cleared by a run in which the guest's FP/SIMD
    /// registers were live ([`GuestExit::fp`]) and by a reset at `CPU_ON`.
    /// While it is set, a put leaves the page's 512 bytes of FP/SIMD
    /// registers alone.
    pub v_in_page: bool,
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
    /// A placeholder for [`VcpuHost::load`] to fill.
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
            timer: TimerIrq::from_flags(0),
            report: ExitReport::default(),
            ctx_key: None,
            v_in_page: false,
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
}

/// SMCCC and PSCI function ids KCore answers or forwards for guests.
pub mod guest_fid {
    /// `SMCCC_VERSION`.
    pub const SMCCC_VERSION: u32 = 0x8000_0000;
    /// `SMCCC_ARCH_FEATURES`.
    pub const SMCCC_ARCH_FEATURES: u32 = 0x8000_0001;
    /// SMCCC 1.1.
    pub const SMCCC_1_1: u64 = 0x1_0001;
    /// `CPU_OFF`.
    pub const CPU_OFF: u32 = 0x8400_0002;
    /// `CPU_ON` (SMC32).
    pub const CPU_ON_32: u32 = 0x8400_0003;
    /// `CPU_ON` (SMC64).
    pub const CPU_ON_64: u32 = 0xC400_0003;
    /// PSCI `INVALID_PARAMETERS`.
    pub const PSCI_INVALID_PARAMETERS: u64 = -2i64 as u64;
    /// PSCI `ALREADY_ON`.
    pub const PSCI_ALREADY_ON: u64 = -4i64 as u64;
    /// SMCCC `INVALID_PARAMETER`.
    pub const SMCCC_INVALID_PARAMETER: u64 = -3i64 as u64;
    /// The vendor hypervisor service's UID query.
    pub const VENDOR_HYP_CALL_UID: u32 = 0x8600_FF01;
    /// KVM's vendor hypervisor feature bitmap query.
    pub const KVM_FEATURES: u32 = 0x8600_0000;
    /// pKVM's guest ABI: the granule of `MEM_SHARE`/`MEM_UNSHARE`.
    pub const KVM_HYP_MEMINFO: u32 = 0xC600_0002;
    /// pKVM's guest ABI: share the page at IPA `x1` with the host.
    pub const KVM_MEM_SHARE: u32 = 0xC600_0003;
    /// pKVM's guest ABI: end a `MEM_SHARE`.
    pub const KVM_MEM_UNSHARE: u32 = 0xC600_0004;
    /// KVM's vendor hypervisor UID (`28b46fb6-2ec5-11e9-a9ca-4b564d003a74`)
    /// in `x0..x3`: guests built for pKVM look for it before using the
    /// calls above.
    pub const KVM_UID: [u64; 4] = [0xb66f_b428, 0xe911_c52e, 0x564b_caa9, 0x743a_004d];
    /// The feature bits KCore offers guests in `KVM_FEATURES`: the query
    /// itself (0), `HYP_MEMINFO` (2), `MEM_SHARE` (3), `MEM_UNSHARE` (4).
    pub const KVM_FEATURE_BITS: u64 = 1 << 0 | 1 << 2 | 1 << 3 | 1 << 4;

    /// Whether `fid` is in PSCI's SMC32 or SMC64 range.
    pub const fn is_psci(fid: u32) -> bool {
        matches!(fid, 0x8400_0000..=0x8400_001F | 0xC400_0000..=0xC400_001F)
    }
}

/// SMCCC `NOT_SUPPORTED` as a register value.
const NOT_SUPPORTED: u64 = u64::MAX;

/// Decides what exit `e` means for the loaded vCPU `l`, updating its
/// registers (PC, injected exceptions, emulated registers) and, for exits
/// KServ must see, [`Loaded::report`].
pub fn step(l: &mut Loaded, e: &GuestExit) -> Step {
    match e.kind {
        // Delivered (or held quiet) by the next entry's `prepare_timer`.
        ExitKind::GuestTimer => return Step::Resume,
        ExitKind::Irq | ExitKind::Fiq => return report(l, exit::IRQ, ExitReport::default()),
        ExitKind::SError => {
            // A physical SError while the guest ran is the guest's: deliver
            // it as a virtual SError; KServ gets the CPU back meanwhile.
            l.ctx.status |= status::VSERROR;
            return report(l, exit::IRQ, ExitReport::default());
        }
        ExitKind::Sync => {}
    }
    let esr = Esr(e.esr);
    match esr.ec() {
        ec::WFX => {
            l.ctx.pc = l.ctx.pc.wrapping_add(4);
            let flags = if e.esr & 3 == 1 { exit_flags::WFE } else { 0 };
            report(
                l,
                exit::WFI,
                ExitReport {
                    flags,
                    ..ExitReport::default()
                },
            )
        }
        ec::HVC64 if esr.imm16() == 0 => guest_call(l),
        ec::SMC64 if esr.imm16() == 0 => {
            l.ctx.pc = l.ctx.pc.wrapping_add(4);
            guest_call(l)
        }
        ec::HVC64 => {
            l.ctx.x[0] = NOT_SUPPORTED;
            Step::Resume
        }
        ec::SMC64 => {
            l.ctx.pc = l.ctx.pc.wrapping_add(4);
            l.ctx.x[0] = NOT_SUPPORTED;
            Step::Resume
        }
        ec::SYS64 => sysreg(l, e.esr),
        ec::DABT_LOW | ec::IABT_LOW => abort(l, e),
        _ => {
            l.ctx.inject_undef();
            Step::Resume
        }
    }
}

fn report(l: &mut Loaded, reason: u64, r: ExitReport) -> Step {
    l.report = ExitReport { reason, ..r };
    Step::Exit
}

/// An `HVC #0` or `SMC #0` from the guest (PC already past it).
fn guest_call(l: &mut Loaded) -> Step {
    let fid = l.ctx.x[0] as u32;
    match fid {
        guest_fid::SMCCC_VERSION => {
            l.ctx.x[0] = guest_fid::SMCCC_1_1;
            Step::Resume
        }
        guest_fid::SMCCC_ARCH_FEATURES => {
            l.ctx.x[0] = NOT_SUPPORTED;
            Step::Resume
        }
        guest_fid::VENDOR_HYP_CALL_UID => {
            l.ctx.x[..4].copy_from_slice(&guest_fid::KVM_UID);
            Step::Resume
        }
        guest_fid::KVM_FEATURES => {
            l.ctx.x[0] = guest_fid::KVM_FEATURE_BITS;
            l.ctx.x[1..4].fill(0);
            Step::Resume
        }
        guest_fid::KVM_HYP_MEMINFO => {
            l.ctx.x[0] = if l.ctx.x[1..4] == [0; 3] {
                crate::addr::PAGE_SIZE
            } else {
                guest_fid::SMCCC_INVALID_PARAMETER
            };
            Step::Resume
        }
        guest_fid::KVM_MEM_SHARE | guest_fid::KVM_MEM_UNSHARE => {
            let ipa = l.ctx.x[1];
            if !ipa.is_multiple_of(crate::addr::PAGE_SIZE)
                || l.ctx.x[2..4] != [0; 2]
                || ipa >= l.ipa_limit
            {
                l.ctx.x[0] = guest_fid::SMCCC_INVALID_PARAMETER;
                return Step::Resume;
            }
            Step::GuestMem {
                share: fid == guest_fid::KVM_MEM_SHARE,
                gfn: ipa >> PAGE_SHIFT,
            }
        }
        _ if guest_fid::is_psci(fid) && l.ctx.x[0] >> 32 == 0 => {
            let args = [l.ctx.x[1], l.ctx.x[2], l.ctx.x[3]];
            l.ctx.pending = Pending::Psci;
            l.report = ExitReport {
                reason: exit::PSCI,
                data: fid as u64,
                args,
                ..ExitReport::default()
            };
            match fid {
                guest_fid::CPU_ON_32 | guest_fid::CPU_ON_64 => {
                    let (entry, context) = if fid == guest_fid::CPU_ON_32 {
                        (args[1] & 0xFFFF_FFFF, args[2] & 0xFFFF_FFFF)
                    } else {
                        (args[1], args[2])
                    };
                    match index_of_mpidr(args[0]) {
                        Some(target) if target != l.idx => Step::CpuOn {
                            target,
                            entry,
                            context,
                        },
                        Some(_) => {
                            l.ctx.pending = Pending::None;
                            l.ctx.x[0] = guest_fid::PSCI_ALREADY_ON;
                            Step::Resume
                        }
                        None => {
                            l.ctx.pending = Pending::None;
                            l.ctx.x[0] = guest_fid::PSCI_INVALID_PARAMETERS;
                            Step::Resume
                        }
                    }
                }
                guest_fid::CPU_OFF => {
                    l.ctx.status |= status::OFF;
                    Step::Exit
                }
                _ => Step::Exit,
            }
        }
        _ => {
            l.ctx.x[0] = NOT_SUPPORTED;
            Step::Resume
        }
    }
}

/// A trapped `MSR`/`MRS`.
fn sysreg(l: &mut Loaded, esr: u64) -> Step {
    let iss = esr & 0x1FF_FFFF;
    let op0 = (iss >> 20) & 3;
    let op2 = (iss >> 17) & 7;
    let op1 = (iss >> 14) & 7;
    let crn = (iss >> 10) & 15;
    let rt = ((iss >> 5) & 31) as usize;
    let crm = (iss >> 1) & 15;
    let read = iss & 1 == 1;
    let value = l.ctx.xr(rt);
    let enc = reg::sysreg(op0, op1, crn, crm, op2);
    const SGI1R: u64 = reg::sysreg(3, 0, 12, 11, 5);
    const ASGI1R: u64 = reg::sysreg(3, 0, 12, 11, 6);
    const SGI0R: u64 = reg::sysreg(3, 0, 12, 11, 7);
    const MDSCR: u64 = reg::sysreg(2, 0, 0, 2, 2);
    const OSLAR: u64 = reg::sysreg(2, 0, 1, 0, 4);
    const OSLSR: u64 = reg::sysreg(2, 0, 1, 1, 4);
    let result: Option<u64> = match enc {
        SGI1R | ASGI1R | SGI0R if !read => {
            l.ctx.pc = l.ctx.pc.wrapping_add(4);
            let flags = match enc {
                ASGI1R => exit_flags::SGI_ASGI1R,
                SGI0R => exit_flags::SGI_SGI0R,
                _ => 0,
            };
            return report(
                l,
                exit::SGI,
                ExitReport {
                    flags,
                    data: value,
                    ..ExitReport::default()
                },
            );
        }
        MDSCR => {
            if !read {
                l.ctx.set_sys(Sys::Mdscr, value);
            }
            Some(l.ctx.sys(Sys::Mdscr))
        }
        OSLAR if !read => {
            if value & 1 == 1 {
                l.ctx.status |= status::OS_LOCK;
            } else {
                l.ctx.status &= !status::OS_LOCK;
            }
            Some(0)
        }
        OSLSR if read => {
            // OSLM = 0b10 (the OS lock is implemented), OSLK.
            let locked = (l.ctx.status & status::OS_LOCK != 0) as u64;
            Some(1 << 3 | locked << 1)
        }
        // The rest of the debug registers: no breakpoints or watchpoints
        // are offered; reads as zero, writes ignored (as KVM does before a
        // debugger attaches).
        _ if op0 == 2 => Some(0),
        // The PMU: not offered; reads as zero, writes ignored, so a guest
        // that resets PMU registers on a CPU with PMUv3 keeps running.
        _ if is_pmu(op0, op1, crn, crm) => Some(0),
        _ => None,
    };
    match result {
        Some(v) => {
            if read {
                l.ctx.set_xr(rt, v);
            }
            l.ctx.pc = l.ctx.pc.wrapping_add(4);
        }
        None => l.ctx.inject_undef(),
    }
    Step::Resume
}

fn is_pmu(op0: u64, op1: u64, crn: u64, crm: u64) -> bool {
    op0 == 3 && ((op1 == 0 || op1 == 3) && crn == 9 && (12..=14).contains(&crm))
        || (op0 == 3 && op1 == 3 && crn == 14 && (8..=15).contains(&crm))
}

/// A data or instruction abort taken to EL2.
fn abort(l: &mut Loaded, e: &GuestExit) -> Step {
    let esr = Esr(e.esr);
    let is_data = esr.ec() == ec::DABT_LOW;
    // Only stage-2 translation and access-flag faults mean "no memory here
    // yet"; permission faults, external aborts and faults on the guest's
    // own stage-1 walk into MMIO are the guest's problem.
    let fsc = esr.fsc();
    let translation = matches!(fsc & 0x3C, 0x04 | 0x08) || fsc == 0x2B;
    let permission = fsc & 0x3C == 0x0C;
    let ipa = fault_ipa(e.hpfar, e.far);
    // A write to a page KServ shared read-only with a non-protected VM
    // (a read-only memory slot): emulated by KServ, as KVM does.
    if permission && is_data && esr.is_write() && l.kind == VmKind::NonProtected {
        return mmio(l, e, ipa);
    }
    if !translation || ipa >= l.ipa_limit {
        l.ctx.inject_abort(e.esr, e.far);
        return Step::Resume;
    }
    let gfn = Gfn(ipa >> PAGE_SHIFT);
    let s1ptw = e.esr & (1 << 7) != 0;
    if !l.mmio.contains(gfn) {
        let mut flags = 0;
        if is_data && esr.is_write() && !s1ptw {
            flags |= exit_flags::WRITE;
        }
        if !is_data {
            flags |= exit_flags::EXEC;
        }
        return report(
            l,
            exit::MEM_FAULT,
            ExitReport {
                flags,
                addr: gfn.0 << PAGE_SHIFT,
                ..ExitReport::default()
            },
        );
    }
    if !is_data {
        l.ctx.inject_abort(e.esr, e.far);
        return Step::Resume;
    }
    mmio(l, e, ipa)
}

/// An MMIO access KServ emulates: only a data access the hardware
/// described (ISV, not on a stage-1 walk) can be.
fn mmio(l: &mut Loaded, e: &GuestExit, ipa: u64) -> Step {
    let esr = Esr(e.esr);
    let isv = e.esr & (1 << 24) != 0;
    let s1ptw = e.esr & (1 << 7) != 0;
    if !isv || s1ptw {
        l.ctx.inject_abort(e.esr, e.far);
        return Step::Resume;
    }
    let width = 1u64 << ((e.esr >> 22) & 3);
    let sign = e.esr & (1 << 21) != 0;
    let rt = ((e.esr >> 16) & 31) as u8;
    let sf = e.esr & (1 << 15) != 0;
    let write = esr.is_write();
    l.ctx.pc = l.ctx.pc.wrapping_add(4);
    let mut r = ExitReport {
        addr: ipa,
        width,
        ..ExitReport::default()
    };
    if write {
        r.flags = exit_flags::WRITE;
        r.data = l.ctx.xr(rt as usize) & mask(8 * width as u32);
    } else {
        l.ctx.pending = Pending::MmioRead {
            rt,
            width: width as u8,
            sign,
            sf,
        };
    }
    report(l, exit::MMIO, r)
}

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

/// Where `host_vcpu_run` found a vCPU and what it asks of the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunArgs {
    /// The VM's handle.
    pub handle: u64,
    /// The vCPU index.
    pub vcpu: u64,
    /// KServ's run page.
    pub run_pfn: u64,
}

/// KCore's state as the run loop reaches it: each call takes the state lock
/// for its own duration only, so the guest runs with no lock held.
pub trait VcpuHost {
    /// [`crate::mem_protect::MemCore::vcpu_guest_mem`].
    fn guest_mem(&mut self, l: &mut Loaded, share: bool, gfn: u64);
    /// [`crate::mem_protect::MemCore::vcpu_load_into`].
    fn load(&mut self, a: RunArgs, lr_count: usize, out: &mut Loaded) -> Result<(), Error>;
    /// [`crate::mem_protect::MemCore::vcpu_cpu_on`].
    fn cpu_on(&mut self, l: &mut Loaded, target: usize, entry: u64, context: u64) -> Step;
    /// [`crate::mem_protect::MemCore::vcpu_put`].
    fn put(&mut self, l: &mut Loaded);
}

/// `host_vcpu_run`: loads the vCPU, runs it on `cpu` until an exit KServ
/// must see (exits KCore answers itself re-enter at once), and puts it back.
/// Returns the exit reason.
pub fn run_vcpu(
    host: &mut impl VcpuHost,
    cpu: &mut impl GuestCpu,
    a: RunArgs,
) -> Result<u64, Error> {
    run_vcpu_in(host, cpu, a, &mut Loaded::empty())
}

/// [`run_vcpu`] in `l`, which the caller keeps for this CPU from one run to
/// the next: when the same vCPU runs here again and KCore has not written
/// its context page since, its context is not read back (see
/// [`Loaded::ctx_key`]). Whatever `l` held before, only the context can be
/// reused, and only under that key.
pub fn run_vcpu_in(
    host: &mut impl VcpuHost,
    cpu: &mut impl GuestCpu,
    a: RunArgs,
    l: &mut Loaded,
) -> Result<u64, Error> {
    host.load(a, cpu.list_registers(), l)?;
    loop {
        prepare_timer(l, cpu.counter());
        let e = cpu.run(&l.cfg, &mut l.ctx, &mut l.lrs);
        if e.fp {
            l.v_in_page = false;
        }
        save_timer(l);
        match step(l, &e) {
            Step::Resume => {}
            Step::Exit => break,
            Step::GuestMem { share, gfn } => host.guest_mem(l, share, gfn),
            Step::CpuOn {
                target,
                entry,
                context,
            } => {
                if host.cpu_on(l, target, entry, context) != Step::Resume {
                    break;
                }
            }
        }
    }
    host.put(l);
    Ok(l.report.reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loaded() -> Loaded {
        let mut l = Loaded::empty();
        assert!(l.mmio.add(Gfn(0x9000), 1));
        l.kind = VmKind::Protected;
        l.cfg = GuestConfig {
            vmid: 1,
            root: Pa(0),
            geometry: Geometry::stage2(40).expect("geometry"),
        };
        l.ipa_limit = 1 << 40;
        l
    }

    fn sync(esr: u64, ipa: u64) -> GuestExit {
        GuestExit {
            kind: ExitKind::Sync,
            esr,
            far: 0xffff_0000_0000_0000 | (ipa & 0xFFF),
            hpfar: (ipa >> 12) << 4,
            fp: false,
        }
    }

    /// A data abort, translation fault level 3, with ISV.
    fn dabt(write: bool, sas: u64, sse: bool, rt: u64, sf: bool) -> u64 {
        ec::DABT_LOW << 26
            | 1 << 25
            | 1 << 24
            | sas << 22
            | (sse as u64) << 21
            | rt << 16
            | (sf as u64) << 15
            | (write as u64) << 6
            | 0x07
    }

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
        let tail = CTX_WORDS - 6;
        words[tail] = LrState::Pending.bits();
        words[CTX_WORDS - 1] = Pending::MmioRead {
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

    #[test]
    fn mmio_write_exposes_only_the_data_register_clamped() {
        let mut l = loaded();
        l.ctx.pc = 0x4000_1000;
        l.ctx.x[5] = 0x1122_3344_5566_7788;
        let s = step(&mut l, &sync(dabt(true, 1, false, 5, false), 0x900_0104));
        assert_eq!(s, Step::Exit);
        assert_eq!(l.report.reason, exit::MMIO);
        assert_eq!(l.report.addr, 0x900_0104);
        assert_eq!(l.report.width, 2);
        assert_eq!(l.report.data, 0x7788, "clamped to 16 bits");
        assert_eq!(l.report.flags, exit_flags::WRITE);
        assert_eq!(l.report.args, [0; 3]);
        assert_eq!(l.ctx.pc, 0x4000_1004);
        // The zero register stores zero.
        let s = step(&mut l, &sync(dabt(true, 3, false, 31, true), 0x900_0100));
        assert_eq!((s, l.report.data), (Step::Exit, 0));
    }

    #[test]
    fn mmio_reads_complete_into_one_register() {
        let mut l = loaded();
        l.ctx.x[3] = 0xFFFF_FFFF_FFFF_FFFF;
        step(&mut l, &sync(dabt(false, 0, false, 3, true), 0x900_0100));
        assert_eq!(l.report.data, 0, "a read exposes no register");
        l.ctx.complete(0xABCD_EF80);
        assert_eq!(l.ctx.x[3], 0x80, "ldrb zero-extends");
        step(&mut l, &sync(dabt(false, 0, true, 3, true), 0x900_0100));
        l.ctx.complete(0x80);
        assert_eq!(l.ctx.x[3], 0xFFFF_FFFF_FFFF_FF80, "ldrsb x");
        step(&mut l, &sync(dabt(false, 1, true, 3, false), 0x900_0100));
        l.ctx.complete(0x8000);
        assert_eq!(l.ctx.x[3], 0xFFFF_8000, "ldrsh w");
        step(&mut l, &sync(dabt(false, 2, true, 3, true), 0x900_0100));
        l.ctx.complete(0x8000_0000);
        assert_eq!(l.ctx.x[3], 0xFFFF_FFFF_8000_0000, "ldrsw");
        step(&mut l, &sync(dabt(false, 3, false, 31, true), 0x900_0100));
        let before = l.ctx.x;
        l.ctx.complete(7);
        assert_eq!(l.ctx.x, before, "xzr discards");
        l.ctx.complete(9);
        assert_eq!(
            l.ctx.x, before,
            "a completion without a pending read does nothing"
        );
    }

    #[test]
    fn memory_faults_expose_only_the_page() {
        let mut l = loaded();
        l.ctx.x[2] = 0x5EC2E7;
        let s = step(&mut l, &sync(dabt(true, 3, false, 2, true), 0x4010_2345));
        assert_eq!(s, Step::Exit);
        assert_eq!(l.report.reason, exit::MEM_FAULT);
        assert_eq!(l.report.addr, 0x4010_2000);
        assert_eq!(l.report.data, 0, "no register for RAM faults");
        assert_eq!(l.report.flags, exit_flags::WRITE);
        assert_eq!(l.ctx.pc, 0, "retried, not skipped");
        let ia = ec::IABT_LOW << 26 | 1 << 25 | 0x06;
        step(&mut l, &sync(ia, 0x4020_0000));
        assert_eq!(
            (l.report.reason, l.report.flags),
            (exit::MEM_FAULT, exit_flags::EXEC)
        );
    }

    #[test]
    fn unemulatable_faults_are_injected() {
        let mut l = loaded();
        l.ctx.set_sys(Sys::Vbar, 0x4000_8000);
        l.ctx.pc = 0x4000_0100;
        // MMIO without ISV (e.g. a load pair).
        let esr = ec::DABT_LOW << 26 | 1 << 25 | 0x07;
        assert_eq!(step(&mut l, &sync(esr, 0x900_0000)), Step::Resume);
        assert_eq!(l.ctx.pc, 0x4000_8200, "current EL, SPx, sync");
        assert_eq!(Esr(l.ctx.sys(Sys::Esr)).ec(), ec::DABT_CUR);
        assert_eq!(l.ctx.sys(Sys::ElrEl1), 0x4000_0100);
        // A permission fault.
        let mut l = loaded();
        let esr = ec::DABT_LOW << 26 | 1 << 25 | 0x0F;
        assert_eq!(step(&mut l, &sync(esr, 0x4000_0000)), Step::Resume);
        assert_eq!(Esr(l.ctx.sys(Sys::Esr)).fsc(), 0x10);
        // Beyond the IPA space.
        let mut l = loaded();
        l.ipa_limit = 1 << 32;
        let esr = ec::DABT_LOW << 26 | 1 << 25 | 0x04;
        assert_eq!(step(&mut l, &sync(esr, 1 << 33)), Step::Resume);
    }

    #[test]
    fn hypercalls_kcore_answers_itself() {
        let mut l = loaded();
        for fid in [
            0xC600_1234u64,
            0x8600_0042,
            0x8400_0000 | 1 << 32,
            0x8000_0001,
        ] {
            l.ctx.x[0] = fid;
            l.ctx.x[1] = 11;
            assert_eq!(
                step(&mut l, &sync(ec::HVC64 << 26, 0)),
                Step::Resume,
                "{fid:#x}"
            );
            assert_eq!(l.ctx.x[0], NOT_SUPPORTED);
            assert_eq!(l.ctx.x[1], 11);
        }
        l.ctx.x[0] = 0x8000_0000;
        l.ctx.pc = 0x100;
        assert_eq!(step(&mut l, &sync(ec::SMC64 << 26, 0)), Step::Resume);
        assert_eq!((l.ctx.x[0], l.ctx.pc), (guest_fid::SMCCC_1_1, 0x104));
        l.ctx.x[0] = 0x8400_0000;
        assert_eq!(step(&mut l, &sync(ec::HVC64 << 26 | 1, 0)), Step::Resume);
        assert_eq!(l.ctx.x[0], NOT_SUPPORTED, "HVC #1");
    }

    #[test]
    fn psci_goes_to_kserv_with_its_arguments_only() {
        let mut l = loaded();
        l.ctx.x = [0x77; 31];
        l.ctx.x[0] = 0x8400_0000;
        l.ctx.x[1] = 1;
        l.ctx.x[2] = 2;
        l.ctx.x[3] = 3;
        assert_eq!(step(&mut l, &sync(ec::HVC64 << 26, 0)), Step::Exit);
        assert_eq!(l.report.reason, exit::PSCI);
        assert_eq!((l.report.data, l.report.args), (0x8400_0000, [1, 2, 3]));
        l.ctx.complete(0x1_0000);
        assert_eq!(l.ctx.x[0], 0x1_0000);
        assert_eq!(l.ctx.x[4], 0x77);
        // CPU_ON: recorded by KCore, then KServ.
        l.ctx.x[0] = guest_fid::CPU_ON_64 as u64;
        l.ctx.x[1] = mpidr_of(1);
        l.ctx.x[2] = 0x4000_2000;
        l.ctx.x[3] = 42;
        assert_eq!(
            step(&mut l, &sync(ec::HVC64 << 26, 0)),
            Step::CpuOn {
                target: 1,
                entry: 0x4000_2000,
                context: 42
            }
        );
        l.ctx.x[0] = guest_fid::CPU_ON_64 as u64;
        l.ctx.x[1] = 0x10;
        assert_eq!(step(&mut l, &sync(ec::HVC64 << 26, 0)), Step::Resume);
        assert_eq!(l.ctx.x[0], guest_fid::PSCI_INVALID_PARAMETERS);
        l.ctx.x[0] = guest_fid::CPU_OFF as u64;
        assert_eq!(step(&mut l, &sync(ec::HVC64 << 26, 0)), Step::Exit);
        assert_ne!(l.ctx.status & status::OFF, 0);
    }

    #[test]
    fn system_registers() {
        let mut l = loaded();
        let sys = |op0: u64, op1: u64, crn: u64, crm: u64, op2: u64, rt: u64, read: bool| {
            ec::SYS64 << 26
                | 1 << 25
                | op0 << 20
                | op2 << 17
                | op1 << 14
                | crn << 10
                | rt << 5
                | crm << 1
                | read as u64
        };
        l.ctx.x[4] = 0x0100_0000_0002_0003;
        assert_eq!(
            step(&mut l, &sync(sys(3, 0, 12, 11, 5, 4, false), 0)),
            Step::Exit
        );
        assert_eq!(
            (l.report.reason, l.report.data),
            (exit::SGI, 0x0100_0000_0002_0003)
        );
        assert_eq!(l.ctx.pc, 4);
        // MDSCR_EL1 round trip, PMU reads as zero, OS lock status.
        l.ctx.x[6] = 0x8000;
        step(&mut l, &sync(sys(2, 0, 0, 2, 2, 6, false), 0));
        l.ctx.x[7] = 1;
        step(&mut l, &sync(sys(2, 0, 0, 2, 2, 7, true), 0));
        assert_eq!(l.ctx.x[7], 0x8000);
        l.ctx.x[8] = 5;
        step(&mut l, &sync(sys(3, 3, 9, 12, 0, 8, true), 0));
        assert_eq!(l.ctx.x[8], 0, "PMCR_EL0 reads as zero");
        l.ctx.x[1] = 1;
        step(&mut l, &sync(sys(2, 0, 1, 0, 4, 1, false), 0));
        step(&mut l, &sync(sys(2, 0, 1, 1, 4, 9, true), 0));
        assert_eq!(l.ctx.x[9], 0b1010);
        // An implementation-defined register: UNDEFINED in the guest.
        l.ctx.set_sys(Sys::Vbar, 0x8000);
        let pc = l.ctx.pc;
        step(&mut l, &sync(sys(3, 0, 15, 0, 0, 0, false), 0));
        assert_eq!(l.ctx.pc, 0x8200);
        assert_eq!(l.ctx.sys(Sys::ElrEl1), pc);
        assert_eq!(Esr(l.ctx.sys(Sys::Esr)).ec(), ec::UNKNOWN);
    }

    #[test]
    fn wfi_wfe_and_interrupts() {
        let mut l = loaded();
        assert_eq!(step(&mut l, &sync(ec::WFX << 26, 0)), Step::Exit);
        assert_eq!(
            (l.report.reason, l.report.flags, l.ctx.pc),
            (exit::WFI, 0, 4)
        );
        step(&mut l, &sync(ec::WFX << 26 | 1, 0));
        assert_eq!(l.report.flags, exit_flags::WFE);
        let irq = GuestExit {
            kind: ExitKind::Irq,
            esr: 0x1234,
            far: 0x5678,
            hpfar: 0,
            fp: false,
        };
        assert_eq!(step(&mut l, &irq), Step::Exit);
        let timer = GuestExit {
            kind: ExitKind::GuestTimer,
            ..irq
        };
        let before = l.report;
        assert_eq!(
            step(&mut l, &timer),
            Step::Resume,
            "no round trip for its own timer"
        );
        assert_eq!(l.report, before);
        assert_eq!(
            l.report,
            ExitReport {
                reason: exit::IRQ,
                ..ExitReport::default()
            }
        );
    }

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
