//! `memcpy`, `memset` and a word copy for KCore at EL2.
//!
//! The compiler calls `memcpy` and `memset` for every move of a large value
//! and every zeroed array, and the generic versions it would otherwise link
//! copy one word per loop turn. On the vCPU run path (a vCPU's context in and
//! out, the run page's halves) that was most of KCore's instructions per exit,
//! so these move 64 bytes per turn with `LDP`/`STP` and what is left in one
//! step each of 32, 16 and 8 bytes. They only use wide accesses when both
//! pointers are 8-byte aligned and otherwise go byte by byte, so they are
//! also correct with the MMU off (Device memory, where an
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
    b.ne    6f
    cmp     x2, #64
    b.lo    2f
1:  ldp     x4, x5, [x1]
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
    cmp     x2, #64
    b.hs    1b
    // Under 64 bytes left: one step each for 32, 16 and 8 (the bits of
    // the count), then single bytes.
2:  tbz     x2, #5, 3f
    ldp     x4, x5, [x1]
    ldp     x6, x7, [x1, #16]
    add     x1, x1, #32
    stp     x4, x5, [x3]
    stp     x6, x7, [x3, #16]
    add     x3, x3, #32
3:  tbz     x2, #4, 4f
    ldp     x4, x5, [x1], #16
    stp     x4, x5, [x3], #16
4:  tbz     x2, #3, 5f
    ldr     x4, [x1], #8
    str     x4, [x3], #8
5:  and     x2, x2, #7
6:  cbz     x2, 7f
    ldrb    w4, [x1], #1
    strb    w4, [x3], #1
    sub     x2, x2, #1
    b       6b
7:  ret
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
    b.ne    6f
    cmp     x2, #64
    b.lo    2f
1:  stp     x1, x1, [x3]
    stp     x1, x1, [x3, #16]
    stp     x1, x1, [x3, #32]
    stp     x1, x1, [x3, #48]
    add     x3, x3, #64
    sub     x2, x2, #64
    cmp     x2, #64
    b.hs    1b
2:  tbz     x2, #5, 3f
    stp     x1, x1, [x3]
    stp     x1, x1, [x3, #16]
    add     x3, x3, #32
3:  tbz     x2, #4, 4f
    stp     x1, x1, [x3], #16
4:  tbz     x2, #3, 5f
    str     x1, [x3], #8
5:  and     x2, x2, #7
6:  cbz     x2, 7f
    strb    w1, [x3], #1
    sub     x2, x2, #1
    b       6b
7:  ret
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

/// Copies `n` bytes from `src` to `dst`, each read exactly once: 64 bytes a
/// turn when both are 8-byte aligned, else byte by byte.
///
/// # Safety
/// `src` must be readable and `dst` writable for `n` bytes, and the two must
/// not overlap.
pub unsafe fn copy_bytes(dst: *mut u8, src: *const u8, n: usize) {
    // SAFETY: the caller's contract; the routine touches only those bytes.
    unsafe { kcore_copy_words(dst.cast(), src.cast(), n) };
}

/// Checks `memcpy` and `memset` against byte-at-a-time volatile loops for
/// every length up to 200 bytes, both pointers aligned (the wide paths) and
/// not (source, destination or both off by some bytes). Test images run it
/// at boot, so a routine that copied one step too few or too many stops KCore
/// before anything relies on it.
pub fn check() -> Result<(), &'static str> {
    const N: usize = 200;
    const SPAN: usize = N + 16;
    let pattern = |i: usize| (i as u8).wrapping_mul(37).wrapping_add(11);
    let mut src = [0u8; SPAN];
    for (i, b) in src.iter_mut().enumerate() {
        // SAFETY: a write of this function's own byte.
        unsafe { core::ptr::write_volatile(b, pattern(i)) };
    }
    for len in 0..=N {
        for (so, d_off) in [(0, 0), (1, 0), (0, 3), (5, 7)] {
            let mut dst = [0xEEu8; SPAN];
            let n = core::hint::black_box(len);
            // SAFETY: both ranges lie within the two local arrays (offsets
            // under 8, length at most N, arrays N + 16 long) and do not
            // overlap.
            unsafe {
                core::ptr::copy_nonoverlapping(src[so..].as_ptr(), dst[d_off..].as_mut_ptr(), n)
            };
            for (i, b) in dst.iter().enumerate() {
                // SAFETY: a read of this function's own byte.
                let got = unsafe { core::ptr::read_volatile(b) };
                let want = if (d_off..d_off + len).contains(&i) {
                    pattern(i - d_off + so)
                } else {
                    0xEE
                };
                if got != want {
                    return Err("memcpy wrote a wrong byte");
                }
            }
        }
        for d_off in [0, 3] {
            let mut dst = [0xEEu8; SPAN];
            let n = core::hint::black_box(len);
            // SAFETY: the range lies within the local array.
            unsafe { core::ptr::write_bytes(dst[d_off..].as_mut_ptr(), 0x5A, n) };
            for (i, b) in dst.iter().enumerate() {
                // SAFETY: a read of this function's own byte.
                let got = unsafe { core::ptr::read_volatile(b) };
                let want = if (d_off..d_off + len).contains(&i) {
                    0x5A
                } else {
                    0xEE
                };
                if got != want {
                    return Err("memset wrote a wrong byte");
                }
            }
        }
    }
    Ok(())
}
