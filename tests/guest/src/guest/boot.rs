//! The first instructions of each vCPU, up to the first Rust function.
//!
//! vCPU 0 enters at `_start`, the first byte of the image, at EL1h with the
//! MMU and caches off and `x0` = [`kcore_test_guest::BOOT_X0`]. Before
//! anything clobbers a register it records `x0` and the OR of `x1`..`x30`
//! (all zero per the protocol) for the `x0` test; then it turns off FP/SIMD
//! traps (Rust code may use the SIMD registers anywhere), zeroes bss, takes
//! its stack, installs the vector table and calls
//! [`guest_primary_main`](super::runner::guest_primary_main)`(x0, or_x1_x30)`.
//!
//! vCPU 1 enters at [`guest_secondary_entry`] (the address vCPU 0 passes to
//! PSCI `CPU_ON`) with `x0` = the context id. It turns its MMU on (with
//! vCPU 0's tables) before its first store: vCPU 0 runs with caches on and
//! may hold speculatively fetched, stale lines of vCPU 1's stack, so vCPU 1
//! must never write memory with its own caches off. Then it does what vCPU 0
//! does minus bss, ending in
//! [`guest_secondary_main`](super::secondary::guest_secondary_main).

/// `CPACR_EL1.FPEN` = 0b11: FP/SIMD instructions do not trap at EL1.
const CPACR_EL1_FPEN: u64 = 3 << 20;

core::arch::global_asm!(
    r#"
.section .text.boot, "ax"
.global _start
_start:
    orr x1, x1, x2
    orr x1, x1, x3
    orr x1, x1, x4
    orr x1, x1, x5
    orr x1, x1, x6
    orr x1, x1, x7
    orr x1, x1, x8
    orr x1, x1, x9
    orr x1, x1, x10
    orr x1, x1, x11
    orr x1, x1, x12
    orr x1, x1, x13
    orr x1, x1, x14
    orr x1, x1, x15
    orr x1, x1, x16
    orr x1, x1, x17
    orr x1, x1, x18
    orr x1, x1, x19
    orr x1, x1, x20
    orr x1, x1, x21
    orr x1, x1, x22
    orr x1, x1, x23
    orr x1, x1, x24
    orr x1, x1, x25
    orr x1, x1, x26
    orr x1, x1, x27
    orr x1, x1, x28
    orr x1, x1, x29
    orr x1, x1, x30
    mov x20, x1                     // OR of x1..x30 at entry
    mov x19, x0                     // x0 at entry
    msr daifset, #0xf
    mov x2, #{fpen}
    msr cpacr_el1, x2
    isb
    adrp x2, __bss_start
    add x2, x2, :lo12:__bss_start
    adrp x3, __bss_end
    add x3, x3, :lo12:__bss_end
1:  cmp x2, x3
    b.hs 2f
    stp xzr, xzr, [x2], #16
    b 1b
2:  adrp x2, __stack0_top
    add x2, x2, :lo12:__stack0_top
    mov sp, x2
    adrp x2, guest_vectors
    add x2, x2, :lo12:guest_vectors
    msr vbar_el1, x2
    isb
    mov x0, x19
    mov x1, x20
    bl guest_primary_main
    b guest_park

.global guest_secondary_entry
guest_secondary_entry:
    msr daifset, #0xf
    mov x19, x0                     // context id
    mov x2, #{fpen}
    msr cpacr_el1, x2
    isb
    bl guest_mmu_enable             // before any store: see below
    adrp x2, __stack1_top
    add x2, x2, :lo12:__stack1_top
    mov sp, x2
    adrp x2, guest_vectors
    add x2, x2, :lo12:guest_vectors
    msr vbar_el1, x2
    isb
    mov x0, x19
    bl guest_secondary_main

guest_park:
    wfi
    b guest_park
"#,
    fpen = const CPACR_EL1_FPEN,
);

unsafe extern "C" {
    /// vCPU 1's entry point (above); never called from Rust, only its
    /// address is taken.
    fn guest_secondary_entry();
}

/// The physical address vCPU 1 starts at (the guest runs identity-mapped).
pub fn secondary_entry() -> u64 {
    guest_secondary_entry as *const () as u64
}
