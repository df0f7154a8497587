//! Per-CPU EL2 state: feature discovery, KCore's MMU, the configuration that
//! lets KServ run natively at EL1, and the drop to EL1.
//!
//! The trap configuration follows Linux's `Documentation/arch/arm64/booting.rst`
//! requirements for a kernel entered at EL1 with EL2 present: FP/SIMD, SVE
//! and SME untrapped with the maximum vector lengths, pointer authentication
//! and MTE usable, fine-grained traps off, counters and timers at EL1, GICv3
//! system registers enabled for EL1. The ones KCore needs are on: stage 2
//! (`HCR_EL2.VM`) and `SMC` trapping (`HCR_EL2.TSC`). Physical interrupts
//! stay with EL1 (`IMO`/`FMO`/`AMO` clear).

use crate::sysreg::{
    CPTR_EL2_NVHE, CTR_EL0, ID_AA64ISAR2_EL1, ID_AA64MMFR0, ID_AA64MMFR1, ID_AA64PFR0, ID_AA64PFR1,
    PMCR_EL0, ZCR_SMCR_EL2,
};
use aarch64_cpu::asm::barrier;
use aarch64_cpu::registers::*;
use core::arch::asm;

macro_rules! read_raw {
    ($name:literal) => {{
        let v: u64;
        // SAFETY: reading an ID or EL2 system register has no side effects.
        unsafe { asm!(concat!("mrs {}, ", $name), out(reg) v, options(nomem, nostack, preserves_flags)) };
        v
    }};
}

macro_rules! write_raw {
    ($name:literal, $v:expr) => {{
        let v: u64 = $v;
        // SAFETY: the register's value was chosen by the caller per the Arm
        // ARM; it configures only traps and limits for lower ELs.
        unsafe { asm!(concat!("msr ", $name, ", {}"), in(reg) v, options(nomem, nostack, preserves_flags)) };
    }};
}

/// CPU features KCore configures for.
#[derive(Clone, Copy, Debug)]
pub struct Features {
    /// `ID_AA64MMFR0_EL1.PARange`, capped at 48 bits (5).
    pub pa_range: u64,
    /// Physical address bits for `pa_range`.
    pub pa_bits: u32,
    /// FEAT_SVE.
    pub sve: bool,
    /// FEAT_SME.
    pub sme: bool,
    /// Any pointer-authentication algorithm.
    pub pauth: bool,
    /// FEAT_MTE2.
    pub mte2: bool,
    /// FEAT_FGT.
    pub fgt: bool,
    /// FEAT_HCX.
    pub hcx: bool,
    /// GICv3 system-register interface.
    pub gicv3_sysregs: bool,
    /// Number of PMU event counters, if a PMU exists.
    pub pmu_counters: Option<u64>,
}

/// Reads the ID registers.
pub fn features() -> Features {
    let mmfr0 = ID_AA64MMFR0_EL1.get();
    let pa_range = ID_AA64MMFR0_EL1::PARange.read(mmfr0).min(5);
    let pa_bits = [32, 36, 40, 42, 44, 48][pa_range as usize];
    let pfr0 = ID_AA64PFR0_EL1.get();
    let pfr1 = ID_AA64PFR1_EL1.get();
    let isar1 = ID_AA64ISAR1_EL1.get();
    let isar2 = read_raw!("S3_0_C0_C6_2"); // ID_AA64ISAR2_EL1
    let mmfr1 = ID_AA64MMFR1_EL1.get();
    let pmuver = ID_AA64DFR0_EL1.read(ID_AA64DFR0_EL1::PMUVer);
    let pmu_counters = if pmuver != 0 && pmuver != 0xF {
        let pmcr: u64 = read_raw!("pmcr_el0");
        Some(PMCR_EL0::N.read(pmcr))
    } else {
        None
    };
    Features {
        pa_range,
        pa_bits,
        sve: ID_AA64PFR0_EL1::SVE.read(pfr0) != 0,
        sme: ID_AA64PFR1::SME.read(pfr1) != 0,
        pauth: [
            ID_AA64ISAR1_EL1::APA.read(isar1),
            ID_AA64ISAR1_EL1::API.read(isar1),
            ID_AA64ISAR1_EL1::GPA.read(isar1),
            ID_AA64ISAR1_EL1::GPI.read(isar1),
            ID_AA64ISAR2_EL1::APA3.read(isar2),
            ID_AA64ISAR2_EL1::GPA3.read(isar2),
        ]
        .iter()
        .any(|&v| v != 0),
        mte2: ID_AA64PFR1_EL1::MTE.read(pfr1) >= 2,
        fgt: ID_AA64MMFR0::FGT.read(mmfr0) != 0,
        hcx: ID_AA64MMFR1::HCX.read(mmfr1) != 0,
        gicv3_sysregs: ID_AA64PFR0::GIC.read(pfr0) != 0,
        pmu_counters,
    }
}

/// The current exception level.
pub fn current_el() -> u64 {
    CurrentEL.read(CurrentEL::EL)
}

/// Time since reset in microseconds, from the physical counter.
pub fn uptime_us() -> u64 {
    let freq = CNTFRQ_EL0.get().max(1);
    (CNTPCT_EL0.get() as u128 * 1_000_000 / freq as u128) as u64
}

/// This CPU's MPIDR affinity.
pub fn mpidr() -> u64 {
    let affinity =
        MPIDR_EL1::Aff3::SET + MPIDR_EL1::Aff2::SET + MPIDR_EL1::Aff1::SET + MPIDR_EL1::Aff0::SET;
    MPIDR_EL1.get() & affinity.value
}

/// Values of KCore's EL2 translation regime, identical on every CPU.
#[derive(Clone, Copy, Debug, Default)]
#[repr(C)]
pub struct MmuConfig {
    /// `MAIR_EL2`.
    pub mair: u64,
    /// `TCR_EL2`.
    pub tcr: u64,
    /// `TTBR0_EL2`.
    pub ttbr0: u64,
    /// `SCTLR_EL2` with the MMU and caches on.
    pub sctlr: u64,
}

/// `SCTLR_EL2` RES1 bits (non-VHE): 29, 28, 23, 22, 18, 16, 11, 5, 4. With
/// nothing else set: the MMU and caches off, as the entry code writes it.
pub const SCTLR_EL2_RES1: u64 = 0x30C5_0830;
const SCTLR_M: u64 = SCTLR_EL2::M::SET.value;
const SCTLR_C: u64 = SCTLR_EL2::C::SET.value;
const SCTLR_SA: u64 = SCTLR_EL2::SA::SET.value;
const SCTLR_I: u64 = SCTLR_EL2::I::SET.value;
const SCTLR_WXN: u64 = SCTLR_EL2::WXN::SET.value;
/// `SCTLR_EL2.EnTP2` (FEAT_SME), which `aarch64-cpu` does not name.
const SCTLR_ENTP2: u64 = 1 << 60;
const _: () = assert!(matches!(
    (SCTLR_M, SCTLR_C, SCTLR_SA, SCTLR_I, SCTLR_WXN),
    (0x1, 0x4, 0x8, 0x1000, 0x8_0000)
));

/// `SCTLR_EL2` for KCore: MMU, caches, stack alignment check, write implies
/// execute-never, and `EnTP2` where SME exists (booting.rst).
pub fn sctlr_el2(f: &Features) -> u64 {
    let mut v = SCTLR_EL2_RES1 | SCTLR_M | SCTLR_C | SCTLR_SA | SCTLR_I | SCTLR_WXN;
    if f.sme {
        v |= SCTLR_ENTP2;
    }
    v
}

/// Turns KCore's MMU on with `cfg`.
///
/// # Safety
/// `cfg.ttbr0` must be a complete EL2 table tree that maps the code being
/// executed, the current stack and every object KCore touches afterwards at
/// their current addresses.
pub unsafe fn enable_mmu(cfg: &MmuConfig) {
    MAIR_EL2.set(cfg.mair);
    TCR_EL2.set(cfg.tcr);
    TTBR0_EL2.set(cfg.ttbr0);
    barrier::dsb(barrier::ISH);
    barrier::isb(barrier::SY);
    // SAFETY: invalidates EL2 TLB entries left by firmware; no memory access.
    unsafe {
        asm!(
            "tlbi alle2",
            "dsb ish",
            "isb",
            options(nostack, preserves_flags)
        )
    };
    SCTLR_EL2.set(cfg.sctlr);
    barrier::isb(barrier::SY);
}

/// Installs the vector table.
pub fn set_vectors(addr: u64) {
    VBAR_EL2.set(addr);
    barrier::isb(barrier::SY);
}

/// Records this CPU's index where the trap path finds it.
pub fn set_cpu_index(i: usize) {
    TPIDR_EL2.set(i as u64);
}

/// This CPU's index, as recorded by [`set_cpu_index`].
pub fn cpu_index() -> usize {
    TPIDR_EL2.get() as usize
}

/// What KServ's stage 2 and traps are built from.
#[derive(Clone, Copy, Debug, Default)]
#[repr(C)]
pub struct HostConfig {
    /// `VTTBR_EL2` (VMID 0).
    pub vttbr: u64,
    /// `VTCR_EL2`.
    pub vtcr: u64,
}

const HCR_VM: u64 = HCR_EL2::VM::Enable.value;
const HCR_SWIO: u64 = HCR_EL2::SWIO::SET.value;
const HCR_FB: u64 = HCR_EL2::FB::SET.value;
const HCR_BSU_IS: u64 = HCR_EL2::BSU::InnerShareable.value;
const HCR_TSC: u64 = HCR_EL2::TSC::EnableTrapEl1SmcToEl2.value;
const HCR_RW: u64 = HCR_EL2::RW::EL1IsAarch64.value;
const HCR_APK: u64 = HCR_EL2::APK::DisableTrapPointerAuthKeyRegsToEl2.value;
const HCR_API: u64 = HCR_EL2::API::DisableTrapPointerAuthInstToEl2.value;
const HCR_ATA: u64 = HCR_EL2::ATA::SET.value;
// The bits KCore has always written.
const _: () = assert!(matches!(
    [HCR_VM, HCR_SWIO, HCR_FB, HCR_BSU_IS, HCR_TSC, HCR_RW],
    [0x1, 0x2, 0x200, 0x400, 0x8_0000, 0x8000_0000]
));
const _: () = assert!(HCR_APK == 1 << 40 && HCR_API == 1 << 41 && HCR_ATA == 1 << 56);

/// `HCR_EL2` for KServ.
pub fn host_hcr(f: &Features) -> u64 {
    let mut v = HCR_VM | HCR_SWIO | HCR_FB | HCR_BSU_IS | HCR_TSC | HCR_RW;
    if f.pauth {
        v |= HCR_APK | HCR_API;
    }
    if f.mte2 {
        v |= HCR_ATA;
    }
    v
}

/// Fine-grained trap bits of negative polarity (`nXXX`: 0 traps), all set so
/// that nothing traps (HFGRTR_EL2/HFGWTR_EL2 bits 50 and 52-63).
const HFGXTR_NEG: u64 = 0xFFF4_0000_0000_0000;

/// Configures this CPU's EL2 so that KServ runs natively at EL1 under the
/// stage 2 described by `host`.
///
/// # Safety
/// `host.vttbr` must be a complete stage-2 tree for KServ; after this call
/// any EL1 code runs under it.
pub unsafe fn configure_for_host(f: &Features, host: &HostConfig) {
    // Traps: FP/SIMD, SVE and SME untrapped (non-VHE CPTR_EL2 layout: bits
    // 13, 9, 7:0 RES1; TZ (8) and TSM (12) RES1 when the feature is absent).
    let mut cptr =
        CPTR_EL2_NVHE::RES1_13::SET + CPTR_EL2_NVHE::RES1_9::SET + CPTR_EL2_NVHE::RES1_7_0::SET;
    if !f.sve {
        cptr += CPTR_EL2_NVHE::TZ::SET;
    }
    if !f.sme {
        cptr += CPTR_EL2_NVHE::TSM::SET;
    }
    CPTR_EL2.set(cptr.value);
    barrier::isb(barrier::SY);
    if f.sve {
        // ZCR_EL2: largest vector length.
        write_raw!("S3_4_C1_C2_0", ZCR_SMCR_EL2::LEN::SET.value);
    }
    if f.sme {
        // SMCR_EL2: FA64, largest streaming vector length.
        let smcr = ZCR_SMCR_EL2::FA64::SET + ZCR_SMCR_EL2::LEN::SET;
        write_raw!("S3_4_C1_C2_6", smcr.value);
    }
    if f.hcx {
        write_raw!("S3_4_C1_C2_2", 0); // HCRX_EL2: no extra traps, SMPME off
    }
    if f.fgt {
        HFGRTR_EL2.set(HFGXTR_NEG);
        HFGWTR_EL2.set(HFGXTR_NEG);
        HFGITR_EL2.set(0);
        HDFGRTR_EL2.set(0);
        HDFGWTR_EL2.set(0);
    }
    // Debug and PMU: nothing trapped, every counter given to EL1.
    MDCR_EL2.write(MDCR_EL2::HPMN.val(f.pmu_counters.unwrap_or(0)));
    // Counters and timers: EL1 may use the physical ones; no offset.
    CNTHCTL_EL2.write(CNTHCTL_EL2::EL1PCEN::SET + CNTHCTL_EL2::EL1PCTEN::SET);
    CNTVOFF_EL2.set(0);
    // Identity: KServ sees the real CPU.
    write_raw!("vpidr_el2", MIDR_EL1.get());
    VMPIDR_EL2.set(MPIDR_EL1.get());
    if f.gicv3_sysregs {
        // EL1 may use the system registers.
        ICC_SRE_EL2.write(ICC_SRE_EL2::SRE::SET + ICC_SRE_EL2::ENABLE::SET);
        barrier::isb(barrier::SY);
        ICH_HCR_EL2.set(0);
    }
    write_raw!("hstr_el2", 0);
    VTCR_EL2.set(host.vtcr);
    VTTBR_EL2.set(host.vttbr);
    barrier::isb(barrier::SY);
    // SAFETY: drops stale stage-1+2 TLB entries for VMID 0; no memory access.
    unsafe { asm!("tlbi alle1", "dsb ish", options(nostack, preserves_flags)) };
    HCR_EL2.set(host_hcr(f));
    barrier::isb(barrier::SY);
}

/// `SPSR_EL2` for the drop to KServ: EL1h with `DAIF` masked.
const SPSR_EL1H_MASKED: u64 = SPSR_EL2::D::Masked.value
    | SPSR_EL2::A::Masked.value
    | SPSR_EL2::I::Masked.value
    | SPSR_EL2::F::Masked.value
    | SPSR_EL2::M::EL1h.value;
const _: () = assert!(SPSR_EL1H_MASKED == 0x3c5);

/// `SCTLR_EL1` as booting.rst wants it at kernel entry: MMU and caches off
/// (RES1 bits of ARMv8.0 set).
const SCTLR_EL1_MMU_OFF: u64 = 0x30D0_0800;

/// Drops to EL1h at `entry` with `x0 = arg`, interrupts masked, MMU off, and
/// resets this CPU's EL2 stack to `el2_stack_top` for later traps.
///
/// # Safety
/// `entry` must be KServ code under the stage 2 installed by
/// [`configure_for_host`]; `el2_stack_top` must be this CPU's EL2 stack.
pub unsafe fn enter_el1(entry: u64, arg: u64, el2_stack_top: u64) -> ! {
    SCTLR_EL1.set(SCTLR_EL1_MMU_OFF);
    barrier::isb(barrier::SY);
    // SAFETY: switches to a fresh EL2 stack and leaves EL2; nothing on the
    // old stack is used again. Registers KServ could read are cleared.
    unsafe {
        asm!(
            "msr elr_el2, {entry}",
            "mov x9, #{spsr}",
            "msr spsr_el2, x9",
            "mov sp, {stack}",
            "mov x0, {arg}",
            "mov x1, xzr", "mov x2, xzr", "mov x3, xzr", "mov x4, xzr", "mov x5, xzr",
            "mov x6, xzr", "mov x7, xzr", "mov x8, xzr", "mov x9, xzr", "mov x10, xzr",
            "mov x11, xzr", "mov x12, xzr", "mov x13, xzr", "mov x14, xzr", "mov x15, xzr",
            "mov x16, xzr", "mov x17, xzr", "mov x18, xzr", "mov x19, xzr", "mov x20, xzr",
            "mov x21, xzr", "mov x22, xzr", "mov x23, xzr", "mov x24, xzr", "mov x25, xzr",
            "mov x26, xzr", "mov x27, xzr", "mov x28, xzr", "mov x29, xzr", "mov x30, xzr",
            "eret",
            entry = in(reg) entry,
            stack = in(reg) el2_stack_top,
            arg = in(reg) arg,
            spsr = const SPSR_EL1H_MASKED,
            options(noreturn),
        )
    }
}

/// Masks everything and waits forever: the clean stop.
pub fn halt() -> ! {
    loop {
        // SAFETY: masks interrupts and waits; touches no memory.
        unsafe { asm!("msr daifset, #0xf", "wfe", options(nomem, nostack)) };
    }
}

/// Releases a CPU waiting in a spin table (Linux `smp_spin_table.c`, Xen
/// `arm64/smpboot.c`): writes `entry` to its release slot, cleans the slot
/// to the point of coherency (the waiting CPU reads it with its MMU off),
/// then `dsb sy; sev` wakes it from `wfe`.
///
/// # Safety
/// `slot` must be the 8-byte aligned, EL2-mapped `cpu-release-addr` of a
/// CPU of this machine; `entry` is where that CPU jumps, at EL2, MMU off.
pub unsafe fn spin_table_release(slot: u64, entry: u64) {
    // SAFETY: forwarded contract: the slot is mapped and aligned.
    unsafe { (slot as *mut u64).write_volatile(entry) };
    clean_dcache_range(slot, 8);
    send_event();
}

/// Wakes every CPU waiting in `wfe` (after a full barrier, so that what
/// this CPU wrote before is visible to them).
pub fn send_event() {
    // SAFETY: a barrier and an event; no memory is touched.
    unsafe { asm!("dsb sy", "sev", options(nostack, preserves_flags)) };
}

/// Waits for an event (`wfe`) with everything masked at EL2.
pub fn wait_for_event() {
    // SAFETY: waits; touches no memory.
    unsafe { asm!("wfe", options(nomem, nostack, preserves_flags)) };
}

/// Cleans and invalidates the data cache lines covering `[addr, addr+len)`
/// to the point of coherency (for data a CPU with its MMU off will read).
pub fn clean_dcache_range(addr: u64, len: u64) {
    let line = 4 << CTR_EL0::DminLine.read(read_raw!("ctr_el0"));
    let mut a = addr & !(line - 1);
    while a < addr + len {
        // SAFETY: cache maintenance by VA on memory KCore maps; no data changes.
        unsafe { asm!("dc civac, {}", in(reg) a, options(nostack, preserves_flags)) };
        a += line;
    }
    barrier::dsb(barrier::ISH);
}

/// KServ-side EL1 registers KCore reads at a trap or writes to inject.
pub mod el1 {
    use super::*;
    use kcore::exception::Injection;

    /// Reads what `kcore::exception::TrapState` needs.
    pub fn trap_state() -> kcore::exception::TrapState {
        kcore::exception::TrapState {
            esr: ESR_EL2.get(),
            far: FAR_EL2.get(),
            hpfar: HPFAR_EL2.get(),
            elr: ELR_EL2.get(),
            spsr: SPSR_EL2.get(),
            vbar_el1: VBAR_EL1.get(),
            sctlr_el1: SCTLR_EL1.get(),
        }
    }

    /// Advances KServ's PC past the trapped instruction.
    pub fn skip_instruction() {
        ELR_EL2.set(ELR_EL2.get().wrapping_add(4));
    }

    /// Makes KServ take the exception `i` when KCore returns.
    pub fn inject(i: &Injection) {
        ESR_EL1.set(i.esr_el1);
        if let Some(far) = i.far_el1 {
            FAR_EL1.set(far);
        }
        ELR_EL1.set(i.elr_el1);
        SPSR_EL1.set(i.spsr_el1);
        ELR_EL2.set(i.elr_el2);
        SPSR_EL2.set(i.spsr_el2);
    }
}
