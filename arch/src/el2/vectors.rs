//! KCore's EL2 exception vector table and the KServ trap frame.
//!
//! Synchronous exceptions from KServ (EL1/EL0, AArch64) save `x0..x30` in a
//! [`HostFrame`] on this CPU's EL2 stack and call `kcore_host_sync`, which
//! `boot` defines; the frame is restored and KServ resumed with `ERET`.
//! Anything else reaching EL2 — an exception taken at EL2 itself, an
//! interrupt or SError routed here, AArch32 — is a KCore bug or a broken
//! platform: `kcore_el2_unexpected` reports it once and stops the CPU.

/// KServ's general registers as saved at the trap.
pub type HostFrame = [u64; 31];

/// Size of the frame on the stack (16-byte aligned).
pub const FRAME_SIZE: usize = 256;
const _: () = assert!(size_of::<HostFrame>() <= FRAME_SIZE);

core::arch::global_asm!(
    r#"
.macro unexpected kind
    .balign 0x80
    mov x0, #\kind
    mrs x1, esr_el2
    mrs x2, elr_el2
    mrs x3, far_el2
    b kcore_el2_unexpected
.endm

.section .text.vectors, "ax"
.balign 0x800
.global kcore_el2_vectors
kcore_el2_vectors:
    unexpected 0
    unexpected 1
    unexpected 2
    unexpected 3
    unexpected 4
    unexpected 5
    unexpected 6
    unexpected 7
    .balign 0x80
    b kcore_host_sync_entry
    unexpected 9
    unexpected 10
    unexpected 11
    unexpected 12
    unexpected 13
    unexpected 14
    unexpected 15

.balign 0x80
kcore_host_sync_entry:
    sub sp, sp, #{frame}
    stp x0, x1, [sp, #0]
    stp x2, x3, [sp, #16]
    stp x4, x5, [sp, #32]
    stp x6, x7, [sp, #48]
    stp x8, x9, [sp, #64]
    stp x10, x11, [sp, #80]
    stp x12, x13, [sp, #96]
    stp x14, x15, [sp, #112]
    stp x16, x17, [sp, #128]
    stp x18, x19, [sp, #144]
    stp x20, x21, [sp, #160]
    stp x22, x23, [sp, #176]
    stp x24, x25, [sp, #192]
    stp x26, x27, [sp, #208]
    stp x28, x29, [sp, #224]
    str x30, [sp, #240]
    mov x0, sp
    bl kcore_host_sync
    ldp x0, x1, [sp, #0]
    ldp x2, x3, [sp, #16]
    ldp x4, x5, [sp, #32]
    ldp x6, x7, [sp, #48]
    ldp x8, x9, [sp, #64]
    ldp x10, x11, [sp, #80]
    ldp x12, x13, [sp, #96]
    ldp x14, x15, [sp, #112]
    ldp x16, x17, [sp, #128]
    ldp x18, x19, [sp, #144]
    ldp x20, x21, [sp, #160]
    ldp x22, x23, [sp, #176]
    ldp x24, x25, [sp, #192]
    ldp x26, x27, [sp, #208]
    ldp x28, x29, [sp, #224]
    ldr x30, [sp, #240]
    add sp, sp, #{frame}
    eret
"#,
    frame = const FRAME_SIZE,
);

unsafe extern "C" {
    /// The vector table (2 KiB aligned).
    pub static kcore_el2_vectors: u8;
}

/// Address of the vector table, for `VBAR_EL2`.
pub fn vectors_addr() -> u64 {
    core::ptr::addr_of!(kcore_el2_vectors) as u64
}
