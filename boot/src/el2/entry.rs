//! The first instructions: the arm64 Image header, self-relocation, bss,
//! stacks, and the secondary-CPU entry that PSCI `CPU_ON` targets.
//!
//! Loaders enter at offset 0 at EL2 with the MMU off and `x0` = device tree
//! (Linux `booting.rst`). KCore is linked at 0 as a PIE, so the primary CPU
//! first applies its `R_AARCH64_RELATIVE` relocations for the load address,
//! then zeroes bss and calls `kcore_primary_main(dtb, load_address)`.
//! Secondary CPUs arrive at `kcore_secondary_entry` with `x0` = their CPU
//! index, take their stack and MMU configuration from [`SecondaryBoot`]
//! (cleaned to the point of coherency by the primary, since they read it with
//! the MMU off), turn the MMU on and call `kcore_secondary_main(cpu)`.
//! On a spin-table platform (no PSCI firmware) KCore releases every
//! secondary CPU at boot to `kcore_spin_entry` instead: such a CPU arrives
//! with `x0 = 0`, finds its index by looking its MPIDR up in
//! [`KCORE_CPU_TABLE`] (written and cleaned by the primary before the
//! release) and goes on as `kcore_secondary_entry`; a CPU not in the table
//! parks.

use super::state::MAX_CPUS;
use core::mem::offset_of;
use kcore_arch::el2::cpu::{MmuConfig, SCTLR_EL2_RES1};

/// What a secondary CPU needs before its MMU is on.
#[derive(Clone, Copy, Debug, Default)]
#[repr(C)]
pub struct SecondaryBoot {
    /// KCore's EL2 translation regime.
    pub mmu: MmuConfig,
    /// Base of the secondary stacks (CPU `i`'s stack top is
    /// `stacks + (i + 1) * stack_size`).
    pub stacks: u64,
    /// Bytes per stack.
    pub stack_size: u64,
    /// CPUs with a stack; higher indices park.
    pub cpus: u64,
}

/// Written by the primary CPU before any `CPU_ON`.
#[unsafe(no_mangle)]
pub static mut KCORE_SECONDARY_BOOT: SecondaryBoot = SecondaryBoot {
    mmu: MmuConfig {
        mair: 0,
        tcr: 0,
        ttbr0: 0,
        sctlr: 0,
    },
    stacks: 0,
    stack_size: 0,
    cpus: 0,
};

/// The CPUs' MPIDRs (affinity fields), by CPU index, for CPUs released
/// from a spin table.
#[derive(Clone, Copy, Debug)]
#[repr(C)]
pub struct CpuTable {
    /// Entries of `mpidrs` in use.
    pub count: u64,
    /// MPIDR affinity fields of CPU `i`.
    pub mpidrs: [u64; MAX_CPUS],
}

/// Written by the primary CPU before it releases any secondary CPU.
#[unsafe(no_mangle)]
pub static mut KCORE_CPU_TABLE: CpuTable = CpuTable {
    count: 0,
    mpidrs: [0; MAX_CPUS],
};

core::arch::global_asm!(
    r#"
.section .text.head, "ax"
.global _start
_start:
    b kcore_primary_entry           // code0
    .long 0                         // code1
    .quad 0                         // text_offset
    .quad __kcore_image_size        // image_size (rewritten by the packer)
    .quad 0xA                       // flags: little-endian, 4 KiB pages, anywhere
    .quad 0                         // res2
    .quad 0                         // res3
    .quad 0                         // res4
    .ascii "ARM\x64"                // magic
    .long 0                         // res5

kcore_primary_entry:
    msr daifset, #0xf
    mov x19, x0                     // device tree
    adr x20, _start                 // load address = relocation offset
    mrs x1, CurrentEL
    cmp x1, #(2 << 2)
    b.ne 1f
    ldr x1, ={sctlr_off}
    msr sctlr_el2, x1
    isb
1:
    adrp x1, __rela_start
    add x1, x1, :lo12:__rela_start
    adrp x2, __rela_end
    add x2, x2, :lo12:__rela_end
2:  cmp x1, x2
    b.hs 3f
    ldp x3, x4, [x1], #16           // r_offset, r_info
    ldr x5, [x1], #8                // r_addend
    cmp x4, #1027                   // R_AARCH64_RELATIVE
    b.ne 2b
    add x5, x5, x20
    str x5, [x20, x3]
    b 2b
3:
    adrp x1, __bss_start
    add x1, x1, :lo12:__bss_start
    adrp x2, __bss_end
    add x2, x2, :lo12:__bss_end
4:  cmp x1, x2
    b.hs 5f
    stp xzr, xzr, [x1], #16
    b 4b
5:
    adrp x1, __boot_stack_top
    add x1, x1, :lo12:__boot_stack_top
    mov sp, x1
    mov x0, x19
    mov x1, x20
    bl kcore_primary_main
6:  wfe
    b 6b

.global kcore_secondary_entry
kcore_secondary_entry:
    msr daifset, #0xf
    ldr x1, ={sctlr_off}
    msr sctlr_el2, x1
    isb
    adrp x1, KCORE_SECONDARY_BOOT
    add x1, x1, :lo12:KCORE_SECONDARY_BOOT
    ldr x4, [x1, #{cpus}]
    cmp x0, x4
    b.hs 7f
    ldr x2, [x1, #{stacks}]
    ldr x3, [x1, #{stack_size}]
    madd x5, x0, x3, x3
    add x5, x5, x2
    mov sp, x5
    ldr x2, [x1, #{mair}]
    msr mair_el2, x2
    ldr x2, [x1, #{tcr}]
    msr tcr_el2, x2
    ldr x2, [x1, #{ttbr0}]
    msr ttbr0_el2, x2
    dsb ish
    isb
    tlbi alle2
    dsb ish
    isb
    ldr x2, [x1, #{sctlr}]
    msr sctlr_el2, x2
    isb
    bl kcore_secondary_main
7:  wfe
    b 7b

.global kcore_spin_entry
kcore_spin_entry:
    msr daifset, #0xf
    ldr x1, ={sctlr_off}
    msr sctlr_el2, x1
    isb
    mrs x2, mpidr_el1
    ldr x3, ={affinity}
    and x2, x2, x3
    adrp x1, KCORE_CPU_TABLE
    add x1, x1, :lo12:KCORE_CPU_TABLE
    ldr x4, [x1, #{count}]
    add x1, x1, #{mpidrs}
    mov x0, #0
8:  cmp x0, x4
    b.hs 9f
    ldr x5, [x1, x0, lsl #3]
    cmp x5, x2
    b.eq kcore_secondary_entry
    add x0, x0, #1
    b 8b
9:  wfe
    b 9b
"#,
    affinity = const kcore_abi::psci::MPIDR_AFFINITY,
    count = const offset_of!(CpuTable, count),
    mpidrs = const offset_of!(CpuTable, mpidrs),
    sctlr_off = const SCTLR_EL2_RES1,
    cpus = const offset_of!(SecondaryBoot, cpus),
    stacks = const offset_of!(SecondaryBoot, stacks),
    stack_size = const offset_of!(SecondaryBoot, stack_size),
    mair = const offset_of!(SecondaryBoot, mmu) + offset_of!(MmuConfig, mair),
    tcr = const offset_of!(SecondaryBoot, mmu) + offset_of!(MmuConfig, tcr),
    ttbr0 = const offset_of!(SecondaryBoot, mmu) + offset_of!(MmuConfig, ttbr0),
    sctlr = const offset_of!(SecondaryBoot, mmu) + offset_of!(MmuConfig, sctlr),
);

unsafe extern "C" {
    static __kcore_start: u8;
    static __text_end: u8;
    static __rodata_end: u8;
    static __kcore_end: u8;
    static __boot_stack_top: u8;
    fn kcore_secondary_entry();
    fn kcore_spin_entry();
}

/// KCore's image sections, as loaded.
#[derive(Clone, Copy, Debug)]
pub struct ImageLayout {
    /// First byte (the Image header).
    pub start: u64,
    /// End of text.
    pub text_end: u64,
    /// End of read-only data.
    pub rodata_end: u64,
    /// End of the footprint (bss and boot stack included): the payload follows.
    pub end: u64,
    /// Top of the primary CPU's boot stack.
    pub boot_stack_top: u64,
    /// `kcore_secondary_entry`.
    pub secondary_entry: u64,
    /// `kcore_spin_entry`: where a spin table releases a secondary CPU.
    pub spin_entry: u64,
}

/// Where the linker put things, at the load address.
pub fn layout() -> ImageLayout {
    use core::ptr::addr_of;
    ImageLayout {
        start: addr_of!(__kcore_start) as u64,
        text_end: addr_of!(__text_end) as u64,
        rodata_end: addr_of!(__rodata_end) as u64,
        end: addr_of!(__kcore_end) as u64,
        boot_stack_top: addr_of!(__boot_stack_top) as u64,
        secondary_entry: kcore_secondary_entry as *const () as u64,
        spin_entry: kcore_spin_entry as *const () as u64,
    }
}
