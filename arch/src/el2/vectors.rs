//! KCore's EL2 exception vector table and the KServ trap frame.
//!
//! Synchronous exceptions from KServ (EL1/EL0, AArch64) save `x0..x30` in a
//! [`HostFrame`] on this CPU's EL2 stack and call `kcore_host_sync`, which
//! `boot` defines; the frame is restored and KServ resumed with `ERET`.
//! Anything else reaching EL2 — an exception taken at EL2 itself, an
//! interrupt or SError routed here, AArch32 — is a KCore bug or a broken
//! platform: `kcore_el2_unexpected` reports it once and stops the CPU.
//!
//! While a guest runs, `VBAR_EL2` holds a second table whose lower-EL
//! entries save the guest's general registers into its context and return
//! from `kcore_guest_run`, the call that entered the guest. The assembly
//! reaches the context's fields through `offset_of!` constants passed in as
//! `const` operands, never through literal offsets.

use core::mem::offset_of;
use kcore::vcpu::VcpuContext;

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

// The table VBAR_EL2 holds while a guest runs: every exception from the
// guest leaves through `kcore_guest_exit` with its kind in x1; anything
// taken at EL2 itself is unexpected, as with the host table.
.macro guest_exit kind
    .balign 0x80
    stp x0, x1, [sp, #-16]!
    mov x1, #\kind
    b kcore_guest_exit
.endm

.balign 0x800
.global kcore_guest_vectors
kcore_guest_vectors:
    unexpected 0
    unexpected 1
    unexpected 2
    unexpected 3
    unexpected 4
    unexpected 5
    unexpected 6
    unexpected 7
    guest_exit 0
    guest_exit 1
    guest_exit 2
    guest_exit 3
    guest_exit 0
    guest_exit 1
    guest_exit 2
    guest_exit 3

// u64 kcore_guest_run(VcpuContext *ctx): enters the guest whose x0..x30 and
// SP_EL0 are at ctx (ELR_EL2, SPSR_EL2 and everything else already loaded),
// returns the exit kind (0 sync, 1 IRQ, 2 FIQ, 3 SError) with the guest's
// general registers saved back into ctx. The host's callee-saved registers
// and ctx wait on the EL2 stack, which SP_EL2 keeps while the guest runs.
.balign 16
.global kcore_guest_run
kcore_guest_run:
    stp x29, x30, [sp, #-16]!
    stp x27, x28, [sp, #-16]!
    stp x25, x26, [sp, #-16]!
    stp x23, x24, [sp, #-16]!
    stp x21, x22, [sp, #-16]!
    stp x19, x20, [sp, #-16]!
    stp x18, x0, [sp, #-16]!
    ldr x1, [x0, #{ctx_sp_el0}]
    msr sp_el0, x1
    ldp x2, x3, [x0, #({ctx_x} + 16)]
    ldp x4, x5, [x0, #({ctx_x} + 32)]
    ldp x6, x7, [x0, #({ctx_x} + 48)]
    ldp x8, x9, [x0, #({ctx_x} + 64)]
    ldp x10, x11, [x0, #({ctx_x} + 80)]
    ldp x12, x13, [x0, #({ctx_x} + 96)]
    ldp x14, x15, [x0, #({ctx_x} + 112)]
    ldp x16, x17, [x0, #({ctx_x} + 128)]
    ldp x18, x19, [x0, #({ctx_x} + 144)]
    ldp x20, x21, [x0, #({ctx_x} + 160)]
    ldp x22, x23, [x0, #({ctx_x} + 176)]
    ldp x24, x25, [x0, #({ctx_x} + 192)]
    ldp x26, x27, [x0, #({ctx_x} + 208)]
    ldp x28, x29, [x0, #({ctx_x} + 224)]
    ldr x30, [x0, #({ctx_x} + 240)]
    ldp x0, x1, [x0, #{ctx_x}]
    eret
    dsb nsh
    isb

kcore_guest_exit:
    // [sp] = the guest's x0, x1; [sp + 16] = host x18, ctx.
    ldr x0, [sp, #24]
    stp x2, x3, [x0, #({ctx_x} + 16)]
    stp x4, x5, [x0, #({ctx_x} + 32)]
    stp x6, x7, [x0, #({ctx_x} + 48)]
    stp x8, x9, [x0, #({ctx_x} + 64)]
    stp x10, x11, [x0, #({ctx_x} + 80)]
    stp x12, x13, [x0, #({ctx_x} + 96)]
    stp x14, x15, [x0, #({ctx_x} + 112)]
    stp x16, x17, [x0, #({ctx_x} + 128)]
    stp x18, x19, [x0, #({ctx_x} + 144)]
    stp x20, x21, [x0, #({ctx_x} + 160)]
    stp x22, x23, [x0, #({ctx_x} + 176)]
    stp x24, x25, [x0, #({ctx_x} + 192)]
    stp x26, x27, [x0, #({ctx_x} + 208)]
    stp x28, x29, [x0, #({ctx_x} + 224)]
    str x30, [x0, #({ctx_x} + 240)]
    ldp x2, x3, [sp], #16
    stp x2, x3, [x0, #{ctx_x}]
    mrs x2, sp_el0
    str x2, [x0, #{ctx_sp_el0}]
    mov x0, x1
    ldp x18, x2, [sp], #16
    ldp x19, x20, [sp], #16
    ldp x21, x22, [sp], #16
    ldp x23, x24, [sp], #16
    ldp x25, x26, [sp], #16
    ldp x27, x28, [sp], #16
    ldp x29, x30, [sp], #16
    ret
"#,
    frame = const FRAME_SIZE,
    ctx_x = const offset_of!(VcpuContext, x),
    ctx_sp_el0 = const offset_of!(VcpuContext, sp_el0),
);

/// Size of the field `field` selects, for the layout checks below.
const fn field_size<T, F>(_field: fn(&T) -> &F) -> usize {
    size_of::<F>()
}

// The entry code moves `x0..=x30` as one block of 31 words from `ctx_x`,
// and `SP_EL0` on its own: the two must not overlap.
const _: () = assert!(field_size(|c: &VcpuContext| &c.x) == 31 * 8);
const _: () = assert!(
    offset_of!(VcpuContext, sp_el0) >= offset_of!(VcpuContext, x) + 31 * 8
        || offset_of!(VcpuContext, sp_el0) + 8 <= offset_of!(VcpuContext, x)
);

unsafe extern "C" {
    /// The vector table (2 KiB aligned).
    pub static kcore_el2_vectors: u8;
    /// The vector table while a guest runs (2 KiB aligned).
    pub static kcore_guest_vectors: u8;
    /// Enters a guest; see the assembly above. `ctx` points to a
    /// `kcore::vcpu::VcpuContext`.
    pub fn kcore_guest_run(ctx: *mut u8) -> u64;
}

/// Address of the guest vector table, for `VBAR_EL2` while a guest runs.
pub fn guest_vectors_addr() -> u64 {
    core::ptr::addr_of!(kcore_guest_vectors) as u64
}

/// Address of the vector table, for `VBAR_EL2`.
pub fn vectors_addr() -> u64 {
    core::ptr::addr_of!(kcore_el2_vectors) as u64
}
