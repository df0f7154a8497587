//! vCPU 1: what it does once `cpu-on` starts it, and the state it shares
//! with vCPU 0.
//!
//! vCPU 1's entry code has turned its MMU on (vCPU 0's tables, see
//! [`super::boot`]); it turns on its GIC CPU interface, records its boot
//! `x0` and MPIDR and says it is alive. Then it follows
//! [`Phase`], which only vCPU 0 advances: while [`Phase::Idle`] it idles in
//! WFI, answering PINGs (in [`super::irq`]); in [`Phase::FpSimd`] it runs its
//! own FP/SIMD check across exits and reports the outcome; in [`Phase::Off`]
//! it calls PSCI `CPU_OFF`. It never prints: vCPU 0 reports for it, including
//! any [`Fault`] or panic it recorded. Started by the bench program (context
//! id [`kcore_test_guest::bench::SECONDARY_CTX`]) it runs
//! [`super::bench::secondary`] instead.

use super::exception::Fault;
use super::fpsimd::{self, FpMismatch};
use super::{cpu, gic, irq, psci, timer};
use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

/// What vCPU 0 wants vCPU 1 to do; only advances.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u32)]
pub enum Phase {
    /// Idle in WFI, answering PINGs.
    Idle = 0,
    /// Run the FP/SIMD check once, then idle.
    FpSimd = 1,
    /// Turn off.
    Off = 2,
}

impl Phase {
    /// The phase stored as `raw`.
    const fn from_raw(raw: u32) -> Self {
        match raw {
            0 => Self::Idle,
            1 => Self::FpSimd,
            _ => Self::Off,
        }
    }
}

/// The outcome of vCPU 1's FP/SIMD check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FpOutcome {
    /// Not finished.
    Pending,
    /// All registers kept their values.
    Pass,
    /// This register did not.
    Fail(FpMismatch),
}

impl FpOutcome {
    /// `Pending` and `Pass` as stored; `Fail` is [`FAIL_BASE`] + register.
    const PENDING: u64 = 0;
    /// See [`Self::PENDING`].
    const PASS: u64 = 1;
    /// See [`Self::PENDING`].
    const FAIL_BASE: u64 = 2;

    /// The stored form.
    fn to_raw(self) -> u64 {
        match self {
            Self::Pending => Self::PENDING,
            Self::Pass => Self::PASS,
            Self::Fail(m) => Self::FAIL_BASE + m.to_raw(),
        }
    }

    /// The outcome stored as `raw`.
    fn from_raw(raw: u64) -> Self {
        match raw {
            Self::PENDING => Self::Pending,
            Self::PASS => Self::Pass,
            r => Self::Fail(FpMismatch::from_raw(r - Self::FAIL_BASE)),
        }
    }
}

/// State shared between the two vCPUs (both access it with their MMU and
/// caches on).
struct Shared {
    /// vCPU 1 is up and has recorded `x0` and `mpidr`.
    alive: AtomicBool,
    /// vCPU 1's `x0` at its entry point.
    x0: AtomicU64,
    /// vCPU 1's `MPIDR_EL1`.
    mpidr: AtomicU64,
    /// A [`Phase`].
    phase: AtomicU32,
    /// An [`FpOutcome`].
    fpsimd: AtomicU64,
    /// `CPU_OFF` returned (it must not).
    cpu_off_returned: AtomicBool,
    /// What it returned.
    cpu_off_result: AtomicU64,
    /// vCPU 1 stopped on a fault or panic (see below).
    faulted: AtomicBool,
    /// The fault's vector index, or [`PANICKED`].
    fault_vector: AtomicU64,
    /// The fault's `ESR_EL1`.
    fault_esr: AtomicU64,
    /// The fault's `ELR_EL1`.
    fault_elr: AtomicU64,
    /// The fault's `FAR_EL1`.
    fault_far: AtomicU64,
}

/// `fault_vector` of a panic.
const PANICKED: u64 = u64::MAX;

/// The one instance.
static SHARED: Shared = Shared {
    alive: AtomicBool::new(false),
    x0: AtomicU64::new(0),
    mpidr: AtomicU64::new(0),
    phase: AtomicU32::new(Phase::Idle as u32),
    fpsimd: AtomicU64::new(FpOutcome::PENDING),
    cpu_off_returned: AtomicBool::new(false),
    cpu_off_result: AtomicU64::new(0),
    faulted: AtomicBool::new(false),
    fault_vector: AtomicU64::new(0),
    fault_esr: AtomicU64::new(0),
    fault_elr: AtomicU64::new(0),
    fault_far: AtomicU64::new(0),
};

/// How often vCPU 1 looks at [`Phase`] while idle.
const PHASE_POLL_MS: u64 = 10;

/// vCPU 1's first Rust code, called by `guest_secondary_entry` with the
/// context id from `x0`, on vCPU 1's stack with the MMU on.
#[unsafe(no_mangle)]
extern "C" fn guest_secondary_main(context: u64) -> ! {
    if context == kcore_test_guest::bench::SECONDARY_CTX {
        super::bench::secondary()
    }
    if context == kcore_test_guest::dirty::SECONDARY_CTX {
        super::dirty::secondary()
    }
    gic::init();
    SHARED.x0.store(context, Ordering::SeqCst);
    SHARED.mpidr.store(cpu::mpidr(), Ordering::SeqCst);
    SHARED.alive.store(true, Ordering::SeqCst);

    wait_for_phase(Phase::FpSimd);
    let outcome = match fpsimd::check(&fpsimd::VCPU1_PATTERN) {
        Ok(()) => FpOutcome::Pass,
        Err(m) => FpOutcome::Fail(m),
    };
    SHARED.fpsimd.store(outcome.to_raw(), Ordering::SeqCst);

    wait_for_phase(Phase::Off);
    let result = psci::cpu_off();
    SHARED.cpu_off_result.store(result, Ordering::SeqCst);
    SHARED.cpu_off_returned.store(true, Ordering::SeqCst);
    cpu::park()
}

/// Idles (answering interrupts) until vCPU 0 moves to `phase` or beyond.
fn wait_for_phase(phase: Phase) {
    let reached = || Phase::from_raw(SHARED.phase.load(Ordering::SeqCst)) >= phase;
    while !irq::wait_until(reached, timer::deadline_after_ms(PHASE_POLL_MS)) {}
}

/// Moves vCPU 1 to `phase` (vCPU 0 only); it notices within
/// [`PHASE_POLL_MS`].
pub fn set_phase(phase: Phase) {
    SHARED.phase.store(phase as u32, Ordering::SeqCst);
}

/// Whether vCPU 1 is up.
pub fn alive() -> bool {
    SHARED.alive.load(Ordering::SeqCst)
}

/// vCPU 1's `x0` at entry and its MPIDR, once [`alive`].
pub fn boot_registers() -> (u64, u64) {
    (
        SHARED.x0.load(Ordering::SeqCst),
        SHARED.mpidr.load(Ordering::SeqCst),
    )
}

/// The outcome of vCPU 1's FP/SIMD check so far.
pub fn fpsimd_outcome() -> FpOutcome {
    FpOutcome::from_raw(SHARED.fpsimd.load(Ordering::SeqCst))
}

/// What `CPU_OFF` returned on vCPU 1, if it returned.
pub fn cpu_off_result() -> Option<u64> {
    SHARED
        .cpu_off_returned
        .load(Ordering::SeqCst)
        .then(|| SHARED.cpu_off_result.load(Ordering::SeqCst))
}

/// Records a fault on vCPU 1 (which then parks).
pub fn record_fault(fault: &Fault) {
    SHARED
        .fault_vector
        .store(fault.vector.index(), Ordering::SeqCst);
    SHARED.fault_esr.store(fault.esr, Ordering::SeqCst);
    SHARED.fault_elr.store(fault.elr, Ordering::SeqCst);
    SHARED.fault_far.store(fault.far, Ordering::SeqCst);
    SHARED.faulted.store(true, Ordering::SeqCst);
}

/// Records a panic on vCPU 1 (which then parks).
pub fn record_panic() {
    SHARED.fault_vector.store(PANICKED, Ordering::SeqCst);
    SHARED.faulted.store(true, Ordering::SeqCst);
}

/// A note for vCPU 0's FAIL lines about vCPU 1: what stopped it, if
/// anything; displays as nothing otherwise.
pub struct FaultNote;

impl fmt::Display for FaultNote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !SHARED.faulted.load(Ordering::SeqCst) {
            return Ok(());
        }
        match SHARED.fault_vector.load(Ordering::SeqCst) {
            PANICKED => write!(f, " (vCPU 1 panicked)"),
            vector => {
                let fault = Fault {
                    vector: super::exception::Vector::from_index(vector),
                    esr: SHARED.fault_esr.load(Ordering::SeqCst),
                    elr: SHARED.fault_elr.load(Ordering::SeqCst),
                    far: SHARED.fault_far.load(Ordering::SeqCst),
                };
                write!(f, " (vCPU 1: {fault})")
            }
        }
    }
}
