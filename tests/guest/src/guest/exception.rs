//! The EL1 vector table and the synchronous exception handler.
//!
//! Every vector saves all general-purpose and SIMD registers in a [`Frame`]
//! on the current (SP_EL1) stack and calls [`guest_exception`], which may
//! change the frame's `ELR` before it is restored. IRQs go to [`irq`];
//! synchronous exceptions are expected only inside [`catch_undefined`], as an
//! UNDEFINED instruction (EC 0), which is recorded and skipped. Anything else
//! is a [`Fault`]: on vCPU 0 it fails the running test and ends the run, on
//! vCPU 1 it is recorded for vCPU 0 to report.

use super::{irq, runner, secondary};
use core::fmt;
use core::mem::offset_of;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// The registers of the interrupted context, as the vectors save them.
#[repr(C)]
pub struct Frame {
    /// `x0`..`x30`.
    pub x: [u64; 31],
    /// `ELR_EL1`: where the context resumes.
    pub elr: u64,
    /// `SPSR_EL1`.
    pub spsr: u64,
    /// Keeps `q` 16-byte aligned.
    padding: u64,
    /// `q0`..`q31`, each as (low, high) 64-bit halves.
    pub q: [[u64; 2]; 32],
}

/// Bytes of stack one exception takes.
const FRAME_SIZE: usize = size_of::<Frame>();
const _: () = assert!(FRAME_SIZE.is_multiple_of(16) && offset_of!(Frame, q).is_multiple_of(16));
const _: () = assert!(offset_of!(Frame, spsr) == offset_of!(Frame, elr) + 8);

core::arch::global_asm!(
    r#"
.macro guest_vector kind
    .balign 0x80
    sub sp, sp, #{frame_size}
    stp x0, x1, [sp, #0]
    mov x0, #\kind
    b guest_vector_common
.endm

.section .text.vectors, "ax"
.balign 0x800
.global guest_vectors
guest_vectors:
    guest_vector 0
    guest_vector 1
    guest_vector 2
    guest_vector 3
    guest_vector 4
    guest_vector 5
    guest_vector 6
    guest_vector 7
    guest_vector 8
    guest_vector 9
    guest_vector 10
    guest_vector 11
    guest_vector 12
    guest_vector 13
    guest_vector 14
    guest_vector 15

guest_vector_common:
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
    mrs x2, elr_el1
    mrs x3, spsr_el1
    stp x2, x3, [sp, #{elr}]
    add x2, sp, #{q}
    stp q0, q1, [x2, #0]
    stp q2, q3, [x2, #32]
    stp q4, q5, [x2, #64]
    stp q6, q7, [x2, #96]
    stp q8, q9, [x2, #128]
    stp q10, q11, [x2, #160]
    stp q12, q13, [x2, #192]
    stp q14, q15, [x2, #224]
    stp q16, q17, [x2, #256]
    stp q18, q19, [x2, #288]
    stp q20, q21, [x2, #320]
    stp q22, q23, [x2, #352]
    stp q24, q25, [x2, #384]
    stp q26, q27, [x2, #416]
    stp q28, q29, [x2, #448]
    stp q30, q31, [x2, #480]
    mov x1, x0
    mov x0, sp
    bl guest_exception
    add x2, sp, #{q}
    ldp q0, q1, [x2, #0]
    ldp q2, q3, [x2, #32]
    ldp q4, q5, [x2, #64]
    ldp q6, q7, [x2, #96]
    ldp q8, q9, [x2, #128]
    ldp q10, q11, [x2, #160]
    ldp q12, q13, [x2, #192]
    ldp q14, q15, [x2, #224]
    ldp q16, q17, [x2, #256]
    ldp q18, q19, [x2, #288]
    ldp q20, q21, [x2, #320]
    ldp q22, q23, [x2, #352]
    ldp q24, q25, [x2, #384]
    ldp q26, q27, [x2, #416]
    ldp q28, q29, [x2, #448]
    ldp q30, q31, [x2, #480]
    ldp x2, x3, [sp, #{elr}]
    msr elr_el1, x2
    msr spsr_el1, x3
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
    add sp, sp, #{frame_size}
    eret
"#,
    frame_size = const FRAME_SIZE,
    elr = const offset_of!(Frame, elr),
    q = const offset_of!(Frame, q),
);

/// The vector an exception came through: `VBAR_EL1 + 0x80 * kind`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Vector(u64);

impl Vector {
    /// Synchronous exception from EL1 with SP_EL1 (EL1h), where the guest
    /// runs.
    const SYNC_EL1H: Self = Self(4);
    /// IRQ from EL1h.
    const IRQ_EL1H: Self = Self(5);

    /// The vector with index `index` (0..16; higher bits are ignored).
    pub const fn from_index(index: u64) -> Self {
        Self(index & 15)
    }

    /// Its index in the table.
    pub const fn index(self) -> u64 {
        self.0
    }
}

impl fmt::Display for Vector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const TYPES: [&str; 4] = ["sync", "IRQ", "FIQ", "SError"];
        const ORIGINS: [&str; 4] = ["EL1t", "EL1h", "EL0 AArch64", "EL0 AArch32"];
        let i = self.0 as usize;
        write!(f, "{} from {}", TYPES[i % 4], ORIGINS[i / 4])
    }
}

/// An exception the guest did not expect.
#[derive(Clone, Copy, Debug)]
pub struct Fault {
    /// The vector it came through.
    pub vector: Vector,
    /// `ESR_EL1`.
    pub esr: u64,
    /// `ELR_EL1`.
    pub elr: u64,
    /// `FAR_EL1`.
    pub far: u64,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unexpected {} exception: ESR {:#x} ELR {:#x} FAR {:#x}",
            self.vector, self.esr, self.elr, self.far
        )
    }
}

/// `ESR_ELx.EC` (bits 31:26).
const fn exception_class(esr: u64) -> u64 {
    esr >> 26 & 0x3f
}

/// `ESR_ELx.EC` of an UNDEFINED instruction ("unknown reason").
const EC_UNKNOWN: u64 = 0x00;

/// Set while [`catch_undefined`] expects an UNDEFINED instruction.
static UNDEFINED_EXPECTED: AtomicBool = AtomicBool::new(false);
/// The `ELR` of the UNDEFINED instruction caught, or 0.
static UNDEFINED_AT: AtomicU64 = AtomicU64::new(0);

/// Runs `f`, which should execute exactly one instruction that is UNDEFINED
/// at EL1. Returns the address of the instruction the UNDEFINED exception was
/// taken from (after skipping it), or `None` if there was none. A second
/// synchronous exception in `f` is a [`Fault`].
pub fn catch_undefined(f: impl FnOnce()) -> Option<u64> {
    UNDEFINED_AT.store(0, Ordering::SeqCst);
    UNDEFINED_EXPECTED.store(true, Ordering::SeqCst);
    f();
    UNDEFINED_EXPECTED.store(false, Ordering::SeqCst);
    match UNDEFINED_AT.swap(0, Ordering::SeqCst) {
        0 => None,
        elr => Some(elr),
    }
}

/// Reads a system register whose value the fault report needs.
macro_rules! read_sysreg {
    ($name:literal) => {{
        let v: u64;
        // SAFETY: reads a syndrome register; no side effects.
        unsafe {
            core::arch::asm!(
                concat!("mrs {}, ", $name),
                out(reg) v,
                options(nomem, nostack, preserves_flags),
            )
        };
        v
    }};
}

/// Called by the vector table with the saved context and the vector index.
#[unsafe(no_mangle)]
extern "C" fn guest_exception(frame: &mut Frame, kind: u64) {
    let vector = Vector::from_index(kind);
    if vector == Vector::IRQ_EL1H {
        irq::handle();
        return;
    }
    let esr = read_sysreg!("esr_el1");
    if vector == Vector::SYNC_EL1H
        && exception_class(esr) == EC_UNKNOWN
        && UNDEFINED_EXPECTED.swap(false, Ordering::SeqCst)
    {
        UNDEFINED_AT.store(frame.elr, Ordering::SeqCst);
        frame.elr += 4;
        return;
    }
    let fault = Fault {
        vector,
        esr,
        elr: frame.elr,
        far: read_sysreg!("far_el1"),
    };
    if super::cpu::index() == 0 {
        runner::abort(format_args!("{fault}"))
    }
    secondary::record_fault(&fault);
    super::cpu::park()
}
