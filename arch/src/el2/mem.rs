//! `memcpy`, `memset` and a word copy for KCore at EL2.
//!
//! The compiler calls `memcpy` and `memset` for every move of a large value
//! and every zeroed array, and the generic versions it would otherwise link
//! copy one word per loop turn. On the vCPU run path (a vCPU's context in and
//! out, the run page's halves) that was most of KCore's instructions per exit,
//! so these move 64 bytes per turn with `LDP`/`STP`. They only use wide
//! accesses when both pointers are 8-byte aligned and otherwise go byte by
//! byte, so they are also correct with the MMU off (Device memory, where an
//! unaligned access faults).
//!
//! [`copy_words`] is the same loop under a name the compiler attaches no
//! meaning to: a copy out of memory another CPU may be writing (KServ's run
//! page) must happen exactly once, into KCore's buffer, and never be replaced
//! by later reads of the source, which the compiler may do with a `memcpy`.

core::arch::global_asm!(
    r#"
    .section .text.kcore_mem, "ax"

    // x0 = dst, x1 = src, x2 = bytes; returns dst.
    .global memcpy
    .type memcpy, %function
    .balign 16
memcpy:
    .global kcore_copy_words
kcore_copy_words:
    mov     x3, x0
    orr     x4, x0, x1
    tst     x4, #7
    b.ne    3f
1:  cmp     x2, #64
    b.lo    2f
    ldp     x4, x5, [x1]
    ldp     x6, x7, [x1, #16]
    ldp     x8, x9, [x1, #32]
    ldp     x10, x11, [x1, #48]
    add     x1, x1, #64
    stp     x4, x5, [x3]
    stp     x6, x7, [x3, #16]
    stp     x8, x9, [x3, #32]
    stp     x10, x11, [x3, #48]
    add     x3, x3, #64
    sub     x2, x2, #64
    b       1b
2:  cmp     x2, #8
    b.lo    3f
    ldr     x4, [x1], #8
    str     x4, [x3], #8
    sub     x2, x2, #8
    b       2b
3:  cbz     x2, 4f
    ldrb    w4, [x1], #1
    strb    w4, [x3], #1
    sub     x2, x2, #1
    b       3b
4:  ret
    .size memcpy, . - memcpy

    // x0 = dst, w1 = byte, x2 = bytes; returns dst.
    .global memset
    .type memset, %function
    .balign 16
memset:
    mov     x3, x0
    and     x1, x1, #0xff
    orr     x1, x1, x1, lsl #8
    orr     x1, x1, x1, lsl #16
    orr     x1, x1, x1, lsl #32
    tst     x0, #7
    b.ne    3f
1:  cmp     x2, #64
    b.lo    2f
    stp     x1, x1, [x3]
    stp     x1, x1, [x3, #16]
    stp     x1, x1, [x3, #32]
    stp     x1, x1, [x3, #48]
    add     x3, x3, #64
    sub     x2, x2, #64
    b       1b
2:  cmp     x2, #8
    b.lo    3f
    str     x1, [x3], #8
    sub     x2, x2, #8
    b       2b
3:  cbz     x2, 4f
    strb    w1, [x3], #1
    sub     x2, x2, #1
    b       3b
4:  ret
    .size memset, . - memset
"#
);

unsafe extern "C" {
    fn kcore_copy_words(dst: *mut u64, src: *const u64, bytes: usize) -> *mut u64;
}

/// Copies `n` words from `src` to `dst`, each read exactly once.
///
/// # Safety
/// `src` must be readable and `dst` writable for `n` 8-byte-aligned words,
/// and the two must not overlap.
pub unsafe fn copy_words(dst: *mut u64, src: *const u64, n: usize) {
    // SAFETY: the caller's contract; the routine touches only those bytes.
    unsafe { kcore_copy_words(dst, src, n * 8) };
}
