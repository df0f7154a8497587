//! FP/SIMD state across exits: load all 32 Q registers, FPCR and FPSR with a
//! pattern, make [`EXIT_ROUNDS`] × 2 exits to the host (a test device read
//! and a `PSCI_VERSION` call each round) touching only general-purpose
//! registers, and check that everything is still there.
//!
//! The whole sequence is one `asm!` block, so the compiler cannot use (or
//! spill) a SIMD register in between; FPCR and FPSR are restored to their
//! previous values before it ends.

use core::arch::asm;
use core::fmt;
use core::mem::offset_of;
use kcore_abi::psci::VERSION;
use kcore_test_guest::{fill_word, testdev};

/// Rounds of exits per check (two exits each).
pub const EXIT_ROUNDS: u64 = 1000;

/// `FPCR.RMode` (bits 23:22) = round towards plus infinity.
const FPCR_RMODE_PLUS_INF: u64 = 0b01 << 22;
/// `FPCR.RMode` (bits 23:22) = round towards minus infinity.
const FPCR_RMODE_MINUS_INF: u64 = 0b10 << 22;
/// `FPCR.FZ`: flush denormals to zero.
const FPCR_FZ: u64 = 1 << 24;
/// `FPCR.DN`: default NaN.
const FPCR_DN: u64 = 1 << 25;
/// `FPSR.IOC`, invalid operation (cumulative).
const FPSR_IOC: u64 = 1 << 0;
/// `FPSR.DZC`, division by zero (cumulative).
const FPSR_DZC: u64 = 1 << 1;
/// `FPSR.OFC`, overflow (cumulative).
const FPSR_OFC: u64 = 1 << 2;
/// `FPSR.UFC`, underflow (cumulative).
const FPSR_UFC: u64 = 1 << 3;
/// `FPSR.IXC`, inexact (cumulative).
const FPSR_IXC: u64 = 1 << 4;
/// `FPSR.QC`, saturation (cumulative).
const FPSR_QC: u64 = 1 << 27;

/// The FP/SIMD registers a check loads and compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C, align(16))]
pub struct FpState {
    /// `q0`..`q31` as (low, high) 64-bit halves.
    pub q: [[u64; 2]; 32],
    /// `FPCR`.
    pub fpcr: u64,
    /// `FPSR`.
    pub fpsr: u64,
}

impl FpState {
    /// Distinct Q register values from `seed`, with `fpcr` and `fpsr`.
    const fn pattern(seed: u64, fpcr: u64, fpsr: u64) -> Self {
        let mut q = [[0; 2]; 32];
        let mut i = 0;
        while i < q.len() {
            let n = seed + 2 * i as u64;
            q[i] = [fill_word(n), fill_word(n + 1)];
            i += 1;
        }
        Self { q, fpcr, fpsr }
    }
}

/// vCPU 0's pattern.
pub const VCPU0_PATTERN: FpState = FpState::pattern(
    0x1000,
    FPCR_DN | FPCR_FZ | FPCR_RMODE_MINUS_INF,
    FPSR_QC | FPSR_IXC | FPSR_DZC | FPSR_IOC,
);

/// vCPU 1's pattern, different in every register.
pub const VCPU1_PATTERN: FpState = FpState::pattern(
    0x2000,
    FPCR_FZ | FPCR_RMODE_PLUS_INF,
    FPSR_QC | FPSR_UFC | FPSR_OFC,
);

/// The first register that did not keep its value (or, for FPCR and FPSR,
/// did not take it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FpMismatch {
    /// `q<n>`.
    Q(u8),
    /// `FPCR`.
    Fpcr,
    /// `FPSR`.
    Fpsr,
}

impl FpMismatch {
    /// A number for shared memory: the Q register's index, 32 or 33.
    pub const fn to_raw(self) -> u64 {
        match self {
            Self::Q(n) => n as u64,
            Self::Fpcr => 32,
            Self::Fpsr => 33,
        }
    }

    /// The mismatch [`Self::to_raw`] gave `raw`.
    pub const fn from_raw(raw: u64) -> Self {
        match raw {
            0..32 => Self::Q(raw as u8),
            32 => Self::Fpcr,
            _ => Self::Fpsr,
        }
    }
}

impl fmt::Display for FpMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Q(n) => write!(f, "q{n}"),
            Self::Fpcr => write!(f, "FPCR"),
            Self::Fpsr => write!(f, "FPSR"),
        }
    }
}

/// Loads `pattern`, makes the exits and compares.
pub fn check(pattern: &FpState) -> Result<(), FpMismatch> {
    let (after, fpcr_loaded, fpsr_loaded) = across_exits(pattern, EXIT_ROUNDS);
    if let Some(n) = (0..32).find(|&n| after.q[n] != pattern.q[n]) {
        return Err(FpMismatch::Q(n as u8));
    }
    if fpcr_loaded != pattern.fpcr || after.fpcr != pattern.fpcr {
        return Err(FpMismatch::Fpcr);
    }
    if fpsr_loaded != pattern.fpsr || after.fpsr != pattern.fpsr {
        return Err(FpMismatch::Fpsr);
    }
    Ok(())
}

/// Loads `state` into the FP/SIMD registers, makes `rounds` rounds of exits
/// and returns the registers afterwards, and FPCR and FPSR as read back
/// right after loading them.
fn across_exits(state: &FpState, rounds: u64) -> (FpState, u64, u64) {
    const _: () = assert!(offset_of!(FpState, q) == 0);
    let mut after = FpState {
        q: [[0; 2]; 32],
        fpcr: 0,
        fpsr: 0,
    };
    let (fpcr_loaded, fpsr_loaded): (u64, u64);
    // SAFETY: reads `state` and writes `after` (both 16-byte aligned
    // `FpState`s), and reads the test device's scratch register. Every
    // SIMD register and the caller-saved general registers are declared
    // clobbered (the host calls follow SMCCC); FPCR and FPSR get their old
    // values back at the end. The registers that must survive the host calls
    // are callee-saved ones (x20..x28).
    unsafe {
        asm!(
            "mrs x24, fpcr",
            "mrs x25, fpsr",
            "ldp q0, q1, [x22, #0]",
            "ldp q2, q3, [x22, #32]",
            "ldp q4, q5, [x22, #64]",
            "ldp q6, q7, [x22, #96]",
            "ldp q8, q9, [x22, #128]",
            "ldp q10, q11, [x22, #160]",
            "ldp q12, q13, [x22, #192]",
            "ldp q14, q15, [x22, #224]",
            "ldp q16, q17, [x22, #256]",
            "ldp q18, q19, [x22, #288]",
            "ldp q20, q21, [x22, #320]",
            "ldp q22, q23, [x22, #352]",
            "ldp q24, q25, [x22, #384]",
            "ldp q26, q27, [x22, #416]",
            "ldp q28, q29, [x22, #448]",
            "ldp q30, q31, [x22, #480]",
            "ldr x0, [x22, #{fpcr}]",
            "msr fpcr, x0",
            "ldr x0, [x22, #{fpsr}]",
            "msr fpsr, x0",
            "mrs x26, fpcr",
            "mrs x27, fpsr",
            "cbz x20, 3f",
            "2:",
            "ldr x0, [x21]",
            "mov x0, x28",
            "hvc #0",
            "subs x20, x20, #1",
            "b.ne 2b",
            "3:",
            "stp q0, q1, [x23, #0]",
            "stp q2, q3, [x23, #32]",
            "stp q4, q5, [x23, #64]",
            "stp q6, q7, [x23, #96]",
            "stp q8, q9, [x23, #128]",
            "stp q10, q11, [x23, #160]",
            "stp q12, q13, [x23, #192]",
            "stp q14, q15, [x23, #224]",
            "stp q16, q17, [x23, #256]",
            "stp q18, q19, [x23, #288]",
            "stp q20, q21, [x23, #320]",
            "stp q22, q23, [x23, #352]",
            "stp q24, q25, [x23, #384]",
            "stp q26, q27, [x23, #416]",
            "stp q28, q29, [x23, #448]",
            "stp q30, q31, [x23, #480]",
            "mrs x0, fpcr",
            "str x0, [x23, #{fpcr}]",
            "mrs x0, fpsr",
            "str x0, [x23, #{fpsr}]",
            "msr fpcr, x24",
            "msr fpsr, x25",
            fpcr = const offset_of!(FpState, fpcr),
            fpsr = const offset_of!(FpState, fpsr),
            inout("x20") rounds => _,
            in("x21") testdev::BASE + testdev::SCRATCH,
            in("x22") core::ptr::from_ref(state),
            in("x23") core::ptr::from_mut(&mut after),
            out("x24") _,
            out("x25") _,
            out("x26") fpcr_loaded,
            out("x27") fpsr_loaded,
            in("x28") u64::from(VERSION),
            clobber_abi("C"),
            options(nostack),
        )
    };
    (after, fpcr_loaded, fpsr_loaded)
}
