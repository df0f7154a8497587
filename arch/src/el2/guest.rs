//! The world switch: KServ's CPU state out, a vCPU's in, the guest run until
//! its next exception to EL2, and everything back.
//!
//! KServ's state is saved on the EL2 stack of the CPU it called from: the
//! `ELR_EL2`/`SPSR_EL2` of its `HVC`, `SP_EL0`, the EL1 system registers,
//! FP/SIMD, its virtual and EL1 physical timers and the EL2 configuration
//! it runs under. The
//! vCPU's state comes from, and goes back into, the [`VcpuContext`] KCore
//! copied out of the VM's context page; nothing of it stays in a register
//! KServ can read once the switch back is done (the EL1 registers, FP/SIMD,
//! timer and list registers are all overwritten with KServ's own values or
//! cleared). Switching is eager: FP/SIMD moves on every entry and exit.
//!
//! While the guest runs, physical interrupts are routed to EL2 (`IMO`,
//! `FMO`, `AMO`), so any interrupt KServ should see ends the run; KServ's
//! own virtual timer deadline is carried over by the EL2 physical timer
//! (`CNTHP`), so KServ's tick is never lost to a guest that does not exit.
//! The guest's timer interrupts reach it through hardware-mapped list
//! registers: the physical PPI is made active for the run so that it cannot
//! fire again until the guest deactivates the virtual one. The guest owns
//! the EL1 physical timer while it runs (`CNTHCTL_EL2.EL1PCEN`): its
//! `CNTP_CTL/CVAL` are loaded and saved like `CNTV`'s, KServ's put back, so
//! the guest's deadline never fires into KServ.
//!
//! The guest's reads of the feature ID registers trap (`HCR_EL2.TID3`)
//! and KCore answers them from its sanitised view (`kcore::idregs`), the
//! same one KServ reads for `KVM_GET_ONE_REG`.
//!
//! Data-cache maintenance by set/way is not trapped: with `HCR_EL2.SWIO`
//! an invalidate by set/way cleans as well, so a guest can lose no one's
//! data, only make caches colder.
//!
//! The GIC virtual interface has two back ends: a GICv3's system registers
//! (`ICH_*_EL2`, the redistributor's SGI frame for the private interrupts,
//! [`gicv3`]) and a GICv2's `GICH` MMIO frame (the distributor's banked
//! registers for the private interrupts, [`gicv2`]). Each entry loads the
//! list registers, `VMCR`, the active-priority registers and `HCR` (`En`,
//! and `UIE` when KServ has more interrupts queued than it handed over, so
//! that the underflow maintenance interrupt, enabled at the GIC for the
//! run, ends it); each exit saves the list registers' states, `VMCR` and
//! the active priorities, empties the list registers and writes `HCR` = 0.
//! On a GICv2 the guest reaches its CPU interface through `GICV`, which
//! KCore maps into its stage 2 (`kcore::gicv`).

use super::{cpu, gicv2, gicv3, vectors};
use crate::sysreg::{self, CPTR_EL2_NVHE, ICC_HPPIR1_EL1};
use aarch64_cpu::registers::{
    CNTHCTL_EL2, CNTHP_CTL_EL2, CNTV_CTL_EL0, HCR_EL2, ICH_LR0_EL2, ICH_VTR_EL2, ID_AA64DFR0_EL1,
    ID_AA64MMFR1_EL1, MDCR_EL2, Readable, VTTBR_EL2,
};
use core::arch::asm;
use core::mem::MaybeUninit;
use kcore::exception::{Esr, ec};
use kcore::vcpu::{
    DEBUG_REGS, DebugCounts, ExitKind, GuestConfig, GuestCpu, GuestExit, N_SYS, Sys, Timer,
    VcpuContext, status,
};
use kcore::vgic::{Lr, LrSet, LrState, MAX_LRS};

macro_rules! mrs {
    ($name:literal) => {{
        let v: u64;
        // SAFETY: reading a system register that EL2 may access has no side
        // effect on memory.
        unsafe {
            asm!(concat!("mrs {}, ", $name), out(reg) v, options(nomem, nostack, preserves_flags))
        };
        v
    }};
}

macro_rules! msr {
    ($name:literal, $v:expr) => {{
        let v: u64 = $v;
        // SAFETY: the register belongs to a lower EL or configures traps and
        // translation for a lower EL; the world switch writes each one with
        // the value of the side (KServ or the vCPU) that is about to run.
        unsafe {
            asm!(concat!("msr ", $name, ", {}"), in(reg) v, options(nomem, nostack, preserves_flags))
        };
    }};
}

macro_rules! el1_registers {
    ($($r:path => $name:literal),* $(,)?) => {
        fn save_el1(out: &mut [u64; N_SYS]) {
            $( out[$r as usize] = mrs!($name); )*
        }
        fn load_el1(regs: &[u64; N_SYS]) {
            $( msr!($name, regs[$r as usize]); )*
        }
    };
}

/// The breakpoint and watchpoint registers, in [`VcpuContext::dbg`]'s order
/// (`n` = index / 4: `BVR`, `BCR`, `WVR`, `WCR`); only the `brps`
/// breakpoints and `wrps` watchpoints the CPU has are touched.
macro_rules! debug_registers {
    ($($n:literal: $bvr:literal, $bcr:literal, $wvr:literal, $wcr:literal;)*) => {
        fn save_debug(out: &mut [u64; DEBUG_REGS], brps: usize, wrps: usize) {
            $(
                if $n < brps {
                    out[4 * $n] = mrs!($bvr);
                    out[4 * $n + 1] = mrs!($bcr);
                }
                if $n < wrps {
                    out[4 * $n + 2] = mrs!($wvr);
                    out[4 * $n + 3] = mrs!($wcr);
                }
            )*
        }
        fn load_debug(regs: &[u64; DEBUG_REGS], brps: usize, wrps: usize) {
            $(
                if $n < brps {
                    msr!($bvr, regs[4 * $n]);
                    msr!($bcr, regs[4 * $n + 1]);
                }
                if $n < wrps {
                    msr!($wvr, regs[4 * $n + 2]);
                    msr!($wcr, regs[4 * $n + 3]);
                }
            )*
        }
    };
}

debug_registers! {
    0: "dbgbvr0_el1", "dbgbcr0_el1", "dbgwvr0_el1", "dbgwcr0_el1";
    1: "dbgbvr1_el1", "dbgbcr1_el1", "dbgwvr1_el1", "dbgwcr1_el1";
    2: "dbgbvr2_el1", "dbgbcr2_el1", "dbgwvr2_el1", "dbgwcr2_el1";
    3: "dbgbvr3_el1", "dbgbcr3_el1", "dbgwvr3_el1", "dbgwcr3_el1";
    4: "dbgbvr4_el1", "dbgbcr4_el1", "dbgwvr4_el1", "dbgwcr4_el1";
    5: "dbgbvr5_el1", "dbgbcr5_el1", "dbgwvr5_el1", "dbgwcr5_el1";
    6: "dbgbvr6_el1", "dbgbcr6_el1", "dbgwvr6_el1", "dbgwcr6_el1";
    7: "dbgbvr7_el1", "dbgbcr7_el1", "dbgwvr7_el1", "dbgwcr7_el1";
    8: "dbgbvr8_el1", "dbgbcr8_el1", "dbgwvr8_el1", "dbgwcr8_el1";
    9: "dbgbvr9_el1", "dbgbcr9_el1", "dbgwvr9_el1", "dbgwcr9_el1";
    10: "dbgbvr10_el1", "dbgbcr10_el1", "dbgwvr10_el1", "dbgwcr10_el1";
    11: "dbgbvr11_el1", "dbgbcr11_el1", "dbgwvr11_el1", "dbgwcr11_el1";
    12: "dbgbvr12_el1", "dbgbcr12_el1", "dbgwvr12_el1", "dbgwcr12_el1";
    13: "dbgbvr13_el1", "dbgbcr13_el1", "dbgwvr13_el1", "dbgwcr13_el1";
    14: "dbgbvr14_el1", "dbgbcr14_el1", "dbgwvr14_el1", "dbgwcr14_el1";
    15: "dbgbvr15_el1", "dbgbcr15_el1", "dbgwvr15_el1", "dbgwcr15_el1";
}

el1_registers! {
    Sys::Sctlr => "sctlr_el1",
    Sys::Cpacr => "cpacr_el1",
    Sys::Ttbr0 => "ttbr0_el1",
    Sys::Ttbr1 => "ttbr1_el1",
    Sys::Tcr => "tcr_el1",
    Sys::Esr => "esr_el1",
    Sys::Afsr0 => "afsr0_el1",
    Sys::Afsr1 => "afsr1_el1",
    Sys::Far => "far_el1",
    Sys::Par => "par_el1",
    Sys::Mair => "mair_el1",
    Sys::Amair => "amair_el1",
    Sys::Vbar => "vbar_el1",
    Sys::Contextidr => "contextidr_el1",
    Sys::TpidrEl1 => "tpidr_el1",
    Sys::Cntkctl => "cntkctl_el1",
    Sys::Csselr => "csselr_el1",
    Sys::TpidrEl0 => "tpidr_el0",
    Sys::TpidrroEl0 => "tpidrro_el0",
    Sys::Mdscr => "mdscr_el1",
    Sys::SpEl1 => "sp_el1",
    Sys::ElrEl1 => "elr_el1",
    Sys::SpsrEl1 => "spsr_el1",
}

/// Saves the 32 Q registers into `fp` (8-byte alignment is enough: EL2's
/// RAM is Normal memory and `SCTLR_EL2.A` is clear) and returns FPSR, FPCR.
fn save_fp(fp: &mut [u64; 64]) -> (u64, u64) {
    save_fp_to(fp.as_mut_ptr())
}

/// [`save_fp`] into a buffer that need not be initialised first (KServ's
/// registers, saved and restored on every entry: zeroing the buffer would
/// cost as much as the save).
fn save_fp_uninit(fp: &mut MaybeUninit<[u64; 64]>) -> (u64, u64) {
    save_fp_to(fp.as_mut_ptr().cast())
}

/// [`save_fp`] to the 512 bytes at `p`, which the caller owns.
fn save_fp_to(p: *mut u64) -> (u64, u64) {
    // SAFETY: stores the 32 Q registers into the 512 bytes at `p`, which
    // the callers own (a `[u64; 64]`, initialised or not); KCore's own code
    // never uses FP/SIMD registers (soft-float target), so nothing of
    // KCore's is in them.
    unsafe {
        asm!(
            ".arch_extension fp",
            ".arch_extension simd",
            "stp q0, q1, [{p}, #0]",
            "stp q2, q3, [{p}, #32]",
            "stp q4, q5, [{p}, #64]",
            "stp q6, q7, [{p}, #96]",
            "stp q8, q9, [{p}, #128]",
            "stp q10, q11, [{p}, #160]",
            "stp q12, q13, [{p}, #192]",
            "stp q14, q15, [{p}, #224]",
            "stp q16, q17, [{p}, #256]",
            "stp q18, q19, [{p}, #288]",
            "stp q20, q21, [{p}, #320]",
            "stp q22, q23, [{p}, #352]",
            "stp q24, q25, [{p}, #384]",
            "stp q26, q27, [{p}, #416]",
            "stp q28, q29, [{p}, #448]",
            "stp q30, q31, [{p}, #480]",
            p = in(reg) p,
            options(nostack, preserves_flags),
        )
    };
    (mrs!("S3_3_C4_C4_1"), mrs!("S3_3_C4_C4_0")) // FPSR, FPCR
}

/// Loads the 32 Q registers from `fp`, and FPSR, FPCR.
fn load_fp(fp: &[u64; 64], fpsr: u64, fpcr: u64) {
    load_fp_from(fp.as_ptr(), fpsr, fpcr);
}

/// [`load_fp`] from a buffer [`save_fp_uninit`] filled.
fn load_fp_saved(fp: &MaybeUninit<[u64; 64]>, fpsr: u64, fpcr: u64) {
    load_fp_from(fp.as_ptr().cast(), fpsr, fpcr);
}

/// [`load_fp`] from the 512 bytes at `p`, which the caller owns.
fn load_fp_from(p: *const u64, fpsr: u64, fpcr: u64) {
    // SAFETY: loads the 32 Q registers from the 512 bytes at `p` (written
    // before by the callers: a context's registers, or a save); KCore's own
    // code never uses them (soft-float target).
    unsafe {
        asm!(
            ".arch_extension fp",
            ".arch_extension simd",
            "ldp q0, q1, [{p}, #0]",
            "ldp q2, q3, [{p}, #32]",
            "ldp q4, q5, [{p}, #64]",
            "ldp q6, q7, [{p}, #96]",
            "ldp q8, q9, [{p}, #128]",
            "ldp q10, q11, [{p}, #160]",
            "ldp q12, q13, [{p}, #192]",
            "ldp q14, q15, [{p}, #224]",
            "ldp q16, q17, [{p}, #256]",
            "ldp q18, q19, [{p}, #288]",
            "ldp q20, q21, [{p}, #320]",
            "ldp q22, q23, [{p}, #352]",
            "ldp q24, q25, [{p}, #384]",
            "ldp q26, q27, [{p}, #416]",
            "ldp q28, q29, [{p}, #448]",
            "ldp q30, q31, [{p}, #480]",
            p = in(reg) p,
            options(nostack, preserves_flags, readonly),
        )
    };
    msr!("S3_3_C4_C4_1", fpsr); // FPSR
    msr!("S3_3_C4_C4_0", fpcr); // FPCR
}

macro_rules! lr_access {
    ($($n:literal => $name:literal),* $(,)?) => {
        fn read_lr(n: usize) -> u64 {
            match n {
                $( $n => mrs!($name), )*
                _ => 0,
            }
        }
        fn write_lr(n: usize, v: u64) {
            match n {
                $( $n => msr!($name, v), )*
                _ => {}
            }
        }
    };
}

lr_access! {
    0 => "S3_4_C12_C12_0", 1 => "S3_4_C12_C12_1", 2 => "S3_4_C12_C12_2", 3 => "S3_4_C12_C12_3",
    4 => "S3_4_C12_C12_4", 5 => "S3_4_C12_C12_5", 6 => "S3_4_C12_C12_6", 7 => "S3_4_C12_C12_7",
    8 => "S3_4_C12_C13_0", 9 => "S3_4_C12_C13_1", 10 => "S3_4_C12_C13_2", 11 => "S3_4_C12_C13_3",
    12 => "S3_4_C12_C13_4", 13 => "S3_4_C12_C13_5", 14 => "S3_4_C12_C13_6", 15 => "S3_4_C12_C13_7",
}

macro_rules! apr_access {
    ($($n:literal => $ap0:literal, $ap1:literal);* $(;)?) => {
        fn save_aprs(n: usize, ap0: &mut [u64; 4], ap1: &mut [u64; 4]) {
            $( if $n < n { ap0[$n] = mrs!($ap0); ap1[$n] = mrs!($ap1); } )*
        }
        fn load_aprs(n: usize, ap0: &[u64; 4], ap1: &[u64; 4]) {
            $( if $n < n { msr!($ap0, ap0[$n]); msr!($ap1, ap1[$n]); } )*
        }
    };
}

apr_access! {
    0 => "S3_4_C12_C8_0", "S3_4_C12_C9_0";
    1 => "S3_4_C12_C8_1", "S3_4_C12_C9_1";
    2 => "S3_4_C12_C8_2", "S3_4_C12_C9_2";
    3 => "S3_4_C12_C8_3", "S3_4_C12_C9_3";
}

/// `ICH_LR<n>_EL2` for `lr`.
fn encode_lr(lr: &Lr) -> u64 {
    let mut v = ICH_LR0_EL2::vINTID.val(u64::from(lr.vintid))
        + ICH_LR0_EL2::Priority.val(u64::from(lr.priority))
        + ICH_LR0_EL2::Group.val(u64::from(lr.group1))
        + ICH_LR0_EL2::State.val(lr.state.bits());
    if let Some(p) = lr.hw {
        v += ICH_LR0_EL2::HW::SET + ICH_LR0_EL2::pINTID.val(u64::from(p));
    }
    v.value
}

/// The private interrupts whose bits are set in `mask`, lowest first (a
/// loop over the set bits only: this runs twice per guest entry).
fn ppis(mut mask: u32) -> impl Iterator<Item = u32> {
    core::iter::from_fn(move || {
        (mask != 0).then(|| {
            let p = mask.trailing_zeros();
            mask &= mask - 1;
            p
        })
    })
}

/// `HCR_EL2.VSE`: a virtual SError pending.
const HCR_VSE: u64 = HCR_EL2::VSE::SET.value;

/// The EL2 physical timer's PPI (`CNTHP`).
const HYP_TIMER_PPI: u32 = 26;

/// The maintenance interrupt's PPI on a GICv3 (SBSA) and on a GICv2 (the
/// GIC-400, QEMU's `virt`).
const MAINTENANCE_PPI_V3: u32 = 25;
const MAINTENANCE_PPI_V2: u32 = 9;

/// `ICH_HCR_EL2.En` and `GICH_HCR.En`: the virtual CPU interface on.
const HCR_EN: u64 = 1 << 0;
/// `ICH_HCR_EL2.UIE` and `GICH_HCR.UIE`: the underflow maintenance
/// interrupt.
const HCR_UIE: u64 = 1 << 1;

/// Which GIC virtual interface this CPU has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Gic {
    /// GICv3 system registers; `aprs` active-priority registers per group.
    V3 { aprs: usize },
    /// GICv2 `GICH` MMIO.
    V2,
}

/// The CPU side of running guests on this platform.
#[derive(Clone, Copy, Debug)]
pub struct El2Guest {
    lrs: usize,
    gic: Gic,
    hcr: u64,
    /// Breakpoints and watchpoints the CPU has (`ID_AA64DFR0_EL1`).
    dbg: DebugCounts,
    /// The CPU has RAS (`ID_AA64PFR0_EL1.RAS`): `VSESR_EL2` exists.
    ras: bool,
}

impl El2Guest {
    /// The guest configuration this CPU supports; `None` without either a
    /// GICv3 system-register interface and a known redistributor for this
    /// CPU, or a GICv2 whose distributor and `GICH` KCore mapped.
    pub fn new(f: &cpu::Features) -> Option<El2Guest> {
        let (lrs, gic) = if f.gicv3_sysregs && gicv3::available() {
            let vtr = ICH_VTR_EL2.get();
            let lrs = ICH_VTR_EL2::ListRegs.read(vtr) as usize + 1;
            let pre_bits = ICH_VTR_EL2::PREbits.read(vtr) + 1;
            let aprs = 1usize << pre_bits.saturating_sub(5).min(2);
            (lrs, Gic::V3 { aprs })
        } else if gicv2::available() {
            (gicv2::list_registers(), Gic::V2)
        } else {
            return None;
        };
        let lrs = lrs.min(MAX_LRS);
        let mut hcr = HCR_EL2::VM::Enable
            + HCR_EL2::SWIO::SET
            + HCR_EL2::FMO::SET
            + HCR_EL2::IMO::SET
            + HCR_EL2::AMO::SET
            + HCR_EL2::FB::SET
            + HCR_EL2::BSU::InnerShareable
            + HCR_EL2::TWI::SET
            + HCR_EL2::TWE::SET
            + HCR_EL2::TID3::SET
            + HCR_EL2::TSC::EnableTrapEl1SmcToEl2
            + HCR_EL2::TIDCP::SET
            + HCR_EL2::TACR::SET
            + HCR_EL2::RW::EL1IsAarch64;
        if ID_AA64MMFR1_EL1.read(ID_AA64MMFR1_EL1::LO) != 0 {
            hcr += HCR_EL2::TLOR::SET;
        }
        Some(El2Guest {
            lrs,
            gic,
            hcr: hcr.value,
            dbg: DebugCounts::from_dfr0(ID_AA64DFR0_EL1.get()),
            ras: (mrs!("id_aa64pfr0_el1") >> 28) & 0xF != 0,
        })
    }
}

impl El2Guest {
    /// Sets or clears the active state of private interrupt `p` on this CPU.
    fn set_private_active(&self, p: u32, active: bool) {
        match self.gic {
            Gic::V3 { .. } => gicv3::set_private_active(p, active),
            Gic::V2 => gicv2::set_private_active(p, active),
        }
    }

    /// Enables PPI `p` on this CPU.
    fn enable_private(&self, p: u32) {
        match self.gic {
            Gic::V3 { .. } => gicv3::enable_private(p),
            Gic::V2 => gicv2::enable_private(p, true),
        }
    }

    /// The maintenance PPI: enabled for a run that asks for an underflow
    /// interrupt, disabled again after it (KServ's GIC driver never
    /// enables it).
    fn set_maintenance(&self, on: bool) {
        match (self.gic, on) {
            (Gic::V3 { .. }, true) => gicv3::enable_private(MAINTENANCE_PPI_V3),
            (Gic::V3 { .. }, false) => gicv3::disable_private(MAINTENANCE_PPI_V3),
            (Gic::V2, on) => gicv2::enable_private(MAINTENANCE_PPI_V2, on),
        }
    }

    /// Loads the guest's virtual CPU interface: the first `n` entries of
    /// `lrs` (the other list registers empty), its VMCR and active
    /// priorities, then `HCR`.
    fn load_vgic(&self, ctx: &VcpuContext, lrs: &LrSet, n: usize) {
        let hcr = HCR_EN | if lrs.underflow { HCR_UIE } else { 0 };
        for i in 0..self.lrs {
            let lr = lrs.as_slice().get(i).filter(|_| i < n);
            if let Some(p) = lr.and_then(|l| l.hw) {
                self.set_private_active(p, true);
            }
            match self.gic {
                Gic::V3 { .. } => write_lr(i, lr.map_or(0, encode_lr)),
                Gic::V2 => gicv2::write_lr(i, lr.and_then(Lr::to_gicv2).unwrap_or(0)),
            }
        }
        match self.gic {
            Gic::V3 { aprs } => {
                msr!("S3_4_C12_C11_7", ctx.vgic.vmcr); // ICH_VMCR_EL2
                load_aprs(aprs, &ctx.vgic.ap0r, &ctx.vgic.ap1r);
                msr!("S3_4_C12_C11_0", hcr); // ICH_HCR_EL2
            }
            Gic::V2 => {
                gicv2::gich_write(gicv2::VMCR, ctx.vgic.vmcr as u32);
                gicv2::gich_write(gicv2::APR, ctx.vgic.ap1r[0] as u32);
                gicv2::gich_write(gicv2::HCR, hcr as u32);
            }
        }
        if lrs.underflow {
            self.set_maintenance(true);
        }
    }

    /// Saves the guest's virtual CPU interface (the states of the first
    /// `n` entries of `lrs`, VMCR, active priorities) and leaves it empty
    /// and disabled (`HCR` = 0).
    fn save_vgic(&self, ctx: &mut VcpuContext, lrs: &mut LrSet, n: usize) {
        for (i, lr) in lrs.as_mut_slice().iter_mut().take(n).enumerate() {
            lr.state = match self.gic {
                Gic::V3 { .. } => LrState::from_bits(ICH_LR0_EL2::State.read(read_lr(i))),
                Gic::V2 => Lr::gicv2_state(gicv2::read_lr(i)),
            };
            match self.gic {
                Gic::V3 { .. } => write_lr(i, 0),
                Gic::V2 => gicv2::write_lr(i, 0),
            }
            if let Some(p) = lr.hw {
                self.set_private_active(p, false);
            }
        }
        match self.gic {
            Gic::V3 { aprs } => {
                ctx.vgic.vmcr = mrs!("S3_4_C12_C11_7");
                save_aprs(aprs, &mut ctx.vgic.ap0r, &mut ctx.vgic.ap1r);
                load_aprs(aprs, &[0; 4], &[0; 4]);
                msr!("S3_4_C12_C11_0", 0);
            }
            Gic::V2 => {
                ctx.vgic.vmcr = u64::from(gicv2::gich_read(gicv2::VMCR));
                ctx.vgic.ap1r[0] = u64::from(gicv2::gich_read(gicv2::APR));
                gicv2::gich_write(gicv2::APR, 0);
                gicv2::gich_write(gicv2::HCR, 0);
            }
        }
        if lrs.underflow {
            self.set_maintenance(false);
        }
    }

    /// Whether the guest timer `ppi` is the interrupt that ended the run:
    /// the highest pending (GICv3), or pending and not active at this CPU
    /// (GICv2, whose CPU interface is KServ's: an active timer PPI, held
    /// for a list register, is pending too while its line is high, but
    /// cannot have interrupted — taking it for the cause would re-enter the
    /// guest at once, for ever, while KServ's own interrupt waits).
    fn timer_pending(&self, ppi: u32, hppi: u64) -> bool {
        match self.gic {
            Gic::V3 { .. } => hppi == u64::from(ppi),
            Gic::V2 => gicv2::private_signalling(ppi),
        }
    }
}

/// KServ's side of the switch.
struct Host {
    el1: [u64; N_SYS],
    sp_el0: u64,
    elr: u64,
    spsr: u64,
    /// Written by [`save_fp_uninit`] before anything reads it.
    fp: MaybeUninit<[u64; 64]>,
    fpsr: u64,
    fpcr: u64,
    cntv_ctl: u64,
    cntv_cval: u64,
    cntp_ctl: u64,
    cntp_cval: u64,
    hcr: u64,
    mdcr: u64,
    cptr: u64,
    cnthctl: u64,
    vttbr: u64,
    vtcr: u64,
}

impl GuestCpu for El2Guest {
    fn list_registers(&self) -> usize {
        self.lrs
    }

    fn counter(&self) -> u64 {
        mrs!("cntpct_el0")
    }

    fn run(&mut self, cfg: &GuestConfig, ctx: &mut VcpuContext, lrs: &mut LrSet) -> GuestExit {
        let mut host = Host {
            el1: [0; N_SYS],
            sp_el0: mrs!("sp_el0"),
            elr: mrs!("elr_el2"),
            spsr: mrs!("spsr_el2"),
            fp: MaybeUninit::uninit(),
            fpsr: 0,
            fpcr: 0,
            cntv_ctl: mrs!("cntv_ctl_el0"),
            cntv_cval: mrs!("cntv_cval_el0"),
            cntp_ctl: mrs!("cntp_ctl_el0"),
            cntp_cval: mrs!("cntp_cval_el0"),
            hcr: mrs!("hcr_el2"),
            mdcr: mrs!("mdcr_el2"),
            cptr: mrs!("cptr_el2"),
            cnthctl: mrs!("cnthctl_el2"),
            vttbr: mrs!("vttbr_el2"),
            vtcr: mrs!("vtcr_el2"),
        };
        save_el1(&mut host.el1);

        // KServ's timer: off while the guest owns CNTV, its deadline kept by
        // the EL2 timer, whose interrupt ends the run.
        msr!("cntv_ctl_el0", 0);
        let enabled = CNTV_CTL_EL0::ENABLE::SET;
        if host.cntv_ctl & (enabled + CNTV_CTL_EL0::IMASK::SET).value == enabled.value {
            msr!("S3_4_C14_C2_2", host.cntv_cval); // CNTHP_CVAL_EL2 (KServ's CNTVOFF is 0)
            msr!("S3_4_C14_C2_1", CNTHP_CTL_EL2::ENABLE::SET.value); // CNTHP_CTL_EL2
            self.enable_private(HYP_TIMER_PPI);
        }

        // The vCPU. Its MDSCR_EL1 as KCore emulates it (the guest's accesses
        // trap), with what its OS lock disables cleared.
        load_el1(&ctx.sys);
        let mdscr = ctx.sys(Sys::Mdscr);
        msr!("mdscr_el1", ctx.mdscr_to_load());
        // Its breakpoints and watchpoints when its MDSCR_EL1 enables them
        // (else KServ's cannot fire in it and stay). Its accesses to them
        // trap (MDCR_EL2.TDA), so the hardware never holds a value of its
        // that KCore has not seen.
        // Under KServ's `USE_HW` they are KServ's own for the guest,
        // sanitised by `debug_to_load`; the guest's stay in `ctx.dbg`.
        let guest_debug = ctx.debug_to_load(&self.dbg);
        let (brps, wrps) = (self.dbg.brps, self.dbg.wrps);
        let mut host_debug = [0u64; DEBUG_REGS];
        if let Some(regs) = &guest_debug {
            save_debug(&mut host_debug, brps, wrps);
            load_debug(regs, brps, wrps);
        }
        // FP/SIMD stays KServ's until the guest touches it (`CPTR_EL2.TFP`
        // traps the first access): most exits then move none of it.
        msr!("cntvoff_el2", ctx.cntvoff);
        msr!("cntv_cval_el0", ctx.cntv_cval);
        msr!("cntv_ctl_el0", ctx.cntv_ctl);
        // The EL1 physical timer: the guest's (KServ's CNTP was saved above).
        // Its PPI is enabled at the redistributor while it can fire, so the
        // interrupt ends the run (KServ's Linux, on the virtual timer, never
        // enables it).
        msr!("cntp_cval_el0", ctx.cntp_cval);
        msr!("cntp_ctl_el0", ctx.cntp_ctl);
        if ctx.deadline_of(Timer::Phys) != u64::MAX {
            self.enable_private(Timer::Phys.ppi());
        }
        msr!("vmpidr_el2", ctx.mpidr);
        let n = lrs.len.min(self.lrs);
        let held = lrs.hold_active;
        for p in ppis(held) {
            self.set_private_active(p, true);
        }
        self.load_vgic(ctx, lrs, n);

        let mut hcr = self.hcr;
        if ctx.status & status::VSERROR != 0 {
            hcr |= HCR_VSE;
            ctx.status &= !status::VSERROR;
            // Its syndrome, where the CPU has one to give (RAS).
            if self.ras {
                msr!("S3_4_C5_C2_3", ctx.vsesr); // VSESR_EL2
            }
        }
        msr!(
            "vtcr_el2",
            sysreg::vtcr_el2(&cfg.geometry, sysreg::vtcr_el2_pa_range(host.vtcr))
        );
        let vmid = VTTBR_EL2::VMID.val(u64::from(cfg.vmid));
        msr!("vttbr_el2", vmid.value | cfg.root.raw());
        let mut mdcr_traps = MDCR_EL2::TPM::SET
            + MDCR_EL2::TPMCR::SET
            + MDCR_EL2::TDA::SET
            + MDCR_EL2::TDOSA::SET
            + MDCR_EL2::TDRA::SET;
        // KServ debugs the guest: its debug exceptions come to EL2.
        if ctx.host_debug() {
            mdcr_traps += MDCR_EL2::TDE::SET;
        }
        msr!("mdcr_el2", host.mdcr | mdcr_traps.value);
        let cptr_traps = CPTR_EL2_NVHE::TZ::SET + CPTR_EL2_NVHE::TSM::SET + CPTR_EL2_NVHE::TTA::SET;
        let guest_cptr = host.cptr | cptr_traps.value;
        msr!("cptr_el2", guest_cptr | CPTR_EL2_NVHE::TFP::SET.value);
        // The physical counter and the EL1 physical timer are the guest's
        // (it has no physical offset: CNTP counts CNTPCT).
        msr!(
            "cnthctl_el2",
            (CNTHCTL_EL2::EL1PCTEN::SET + CNTHCTL_EL2::EL1PCEN::SET).value
        );
        msr!("hcr_el2", hcr);
        msr!("elr_el2", ctx.pc);
        msr!("spsr_el2", ctx.pstate_to_load());
        msr!("vbar_el2", vectors::guest_vectors_addr());
        // SAFETY: a context synchronization barrier; no memory access.
        unsafe { asm!("isb", options(nostack, preserves_flags)) };

        // SAFETY: every register the guest's EL1 may use is loaded above
        // with the vCPU's values (or trapped by the configuration above);
        // `ctx` is valid for the call and its layout is what the entry code
        // expects (asserted in `vectors`). The call returns at the guest's
        // next exception to EL2 with the host's callee-saved state restored.
        let mut kind = unsafe { vectors::kcore_guest_run(core::ptr::from_mut(ctx).cast()) };
        // The guest's first FP/SIMD access: KServ's registers out, the
        // vCPU's in, the trap off, and the same instruction again (ELR_EL2
        // and SPSR_EL2 still hold it). A guest's own CPACR_EL1 trap goes to
        // its EL1 first, so this is only ever KCore's trap.
        let mut fp_loaded = false;
        if kind == 0 && Esr(mrs!("esr_el2")).ec() == ec::FP_ASIMD {
            // The trap first: it catches EL2's own FP/SIMD accesses too.
            msr!("cptr_el2", guest_cptr);
            // SAFETY: a context synchronization barrier; no memory access.
            unsafe { asm!("isb", options(nostack, preserves_flags)) };
            (host.fpsr, host.fpcr) = save_fp_uninit(&mut host.fp);
            load_fp(&ctx.v, ctx.fpsr, ctx.fpcr);
            fp_loaded = true;
            // SAFETY: as above: the guest's state is what it was at the
            // trap, with its FP/SIMD registers now loaded and untrapped.
            kind = unsafe { vectors::kcore_guest_run(core::ptr::from_mut(ctx).cast()) };
        }

        msr!("vbar_el2", vectors::vectors_addr());
        let exit = GuestExit {
            kind: match kind {
                0 => ExitKind::Sync,
                1 => ExitKind::Irq,
                2 => ExitKind::Fiq,
                _ => ExitKind::SError,
            },
            esr: mrs!("esr_el2"),
            far: mrs!("far_el2"),
            hpfar: mrs!("hpfar_el2"),
            fp: fp_loaded,
        };
        ctx.pc = mrs!("elr_el2");
        ctx.finish_pstate(mrs!("spsr_el2"));

        // A virtual SError the guest has not taken yet stays pending.
        if mrs!("hcr_el2") & HCR_VSE != 0 {
            ctx.status |= status::VSERROR;
        }
        // KServ's EL2 configuration first: from here on, interrupts stay with
        // EL1 and stage 2 is KServ's again.
        msr!("hcr_el2", host.hcr);
        msr!("vttbr_el2", host.vttbr);
        msr!("vtcr_el2", host.vtcr);
        msr!("mdcr_el2", host.mdcr);
        msr!("cptr_el2", host.cptr);
        msr!("cnthctl_el2", host.cnthctl);
        // SAFETY: a context synchronization barrier; no memory access.
        unsafe { asm!("isb", options(nostack, preserves_flags)) };

        // Save the vCPU, leaving nothing of it behind (its MDSCR_EL1 is
        // KCore's emulated one).
        save_el1(&mut ctx.sys);
        ctx.set_sys(Sys::Mdscr, mdscr);
        if fp_loaded {
            (ctx.fpsr, ctx.fpcr) = save_fp(&mut ctx.v);
        }
        ctx.cntv_ctl = mrs!("cntv_ctl_el0");
        ctx.cntv_cval = mrs!("cntv_cval_el0");
        ctx.cntp_ctl = mrs!("cntp_ctl_el0");
        ctx.cntp_cval = mrs!("cntp_cval_el0");
        // One of the guest's own timers as the interrupt that ended the
        // run: KCore delivers it without a round trip through KServ.
        // (Enabled, not masked, condition met; its PPI the highest pending
        // interrupt — read before the timers are disabled and the lines
        // drop.)
        let mut exit = exit;
        if exit.kind == ExitKind::Irq {
            let hppi = match self.gic {
                Gic::V3 { .. } => ICC_HPPIR1_EL1::INTID.read(mrs!("S3_0_C12_C12_2")),
                Gic::V2 => u64::MAX,
            };
            let fired = |ctl: u64| {
                CNTV_CTL_EL0::ENABLE.is_set(ctl)
                    && !CNTV_CTL_EL0::IMASK.is_set(ctl)
                    && CNTV_CTL_EL0::ISTATUS.is_set(ctl)
            };
            let own = [(Timer::Virt, ctx.cntv_ctl), (Timer::Phys, ctx.cntp_ctl)];
            if own
                .iter()
                .any(|&(t, ctl)| fired(ctl) && self.timer_pending(t.ppi(), hppi))
            {
                exit.kind = ExitKind::GuestTimer;
            }
        }
        // Both off before anything of KServ's returns: the guest's
        // deadlines never fire into KServ.
        msr!("cntv_ctl_el0", 0);
        msr!("cntp_ctl_el0", 0);
        self.save_vgic(ctx, lrs, n);
        for p in ppis(held) {
            self.set_private_active(p, false);
        }
        msr!("S3_4_C14_C2_1", 0); // CNTHP_CTL_EL2: off

        // KServ.
        load_el1(&host.el1);
        if guest_debug.is_some() {
            load_debug(&host_debug, brps, wrps);
        }
        if fp_loaded {
            load_fp_saved(&host.fp, host.fpsr, host.fpcr);
        }
        msr!("sp_el0", host.sp_el0);
        msr!("cntvoff_el2", 0);
        msr!("cntv_cval_el0", host.cntv_cval);
        msr!("cntv_ctl_el0", host.cntv_ctl);
        msr!("cntp_cval_el0", host.cntp_cval);
        msr!("cntp_ctl_el0", host.cntp_ctl);
        msr!("vmpidr_el2", mrs!("mpidr_el1"));
        msr!("elr_el2", host.elr);
        msr!("spsr_el2", host.spsr);
        // SAFETY: a context synchronization barrier; no memory access.
        unsafe { asm!("isb", options(nostack, preserves_flags)) };
        exit
    }
}
