//! The second vCPU: PSCI `CPU_ON`, SGIs both ways, FP/SIMD state of two
//! vCPUs exiting at once, and PSCI `CPU_OFF` seen through `AFFINITY_INFO`.
//! See [`crate::guest::secondary`] for vCPU 1's side.

use crate::guest::fpsimd::{self, EXIT_ROUNDS};
use crate::guest::runner::{TestResult, ensure, fail};
use crate::guest::secondary::{self, FaultNote, FpOutcome, Phase};
use crate::guest::{boot, gic, irq, psci, timer};
use core::sync::atomic::Ordering;
use kcore_abi::psci::{AFFINITY_OFF, AFFINITY_ON, SUCCESS};
use kcore_test_guest::gic::SGI_PING;
use kcore_test_guest::{SECONDARY_CTX, VCPUS};

/// vCPU 1's MPIDR affinity (Aff0 = 1, Aff1..3 = 0).
const VCPU1: u64 = 1;
const _: () = assert!(VCPU1 < VCPUS);
/// How long vCPU 1 may take to come up, or to go off.
const POWER_TIMEOUT_MS: u64 = 5000;
/// PING/PONG round trips.
const SGI_ROUNDS: u32 = 10;
/// How long one round trip may take.
const SGI_TIMEOUT_MS: u64 = 2000;
/// How long vCPU 1's FP/SIMD check may take.
const FPSIMD_TIMEOUT_MS: u64 = 60_000;

/// Fails the enclosing test unless vCPU 1 is up.
macro_rules! require_vcpu1 {
    () => {
        ensure!(secondary::alive(), "vCPU 1 is not running{FaultNote}")
    };
}

/// `AFFINITY_INFO` says vCPU 1 is off; `CPU_ON` succeeds; vCPU 1 comes up at
/// its entry point with `x0` = [`SECONDARY_CTX`] and `MPIDR_EL1` affinity
/// 0.0.0.1; `AFFINITY_INFO` then says it is on.
pub fn cpu_on() -> TestResult {
    let state = psci::affinity_info(VCPU1);
    ensure!(
        state == AFFINITY_OFF,
        "AFFINITY_INFO(1) returned {state:#x} before CPU_ON"
    );
    let r = psci::cpu_on(VCPU1, boot::secondary_entry(), SECONDARY_CTX);
    ensure!(r == SUCCESS, "CPU_ON returned {r:#x}");
    let up = timer::spin_until(secondary::alive, timer::deadline_after_ms(POWER_TIMEOUT_MS));
    ensure!(
        up,
        "vCPU 1 not up after {POWER_TIMEOUT_MS} ms (AFFINITY_INFO(1) = {:#x}){FaultNote}",
        psci::affinity_info(VCPU1)
    );
    let (x0, mpidr) = secondary::boot_registers();
    ensure!(
        x0 == SECONDARY_CTX,
        "vCPU 1's x0 was {x0:#x}, expected {SECONDARY_CTX:#x}"
    );
    ensure!(
        mpidr & 0xff_00ff_ffff == VCPU1,
        "vCPU 1's MPIDR_EL1 is {mpidr:#x}"
    );
    let state = psci::affinity_info(VCPU1);
    ensure!(
        state == AFFINITY_ON,
        "AFFINITY_INFO(1) returned {state:#x} with vCPU 1 running"
    );
    Ok(())
}

/// [`SGI_ROUNDS`] round trips: vCPU 0 sends PING and idles until the PONG
/// that vCPU 1's handler sends back arrives.
pub fn sgi() -> TestResult {
    require_vcpu1!();
    let unexpected = irq::UNEXPECTED.load(Ordering::SeqCst);
    for round in 1..=SGI_ROUNDS {
        gic::send_sgi(SGI_PING, VCPU1 as usize);
        let ponged = irq::wait_until(
            || irq::PONGS.load(Ordering::SeqCst) >= round,
            timer::deadline_after_ms(SGI_TIMEOUT_MS),
        );
        ensure!(
            ponged,
            "round {round}: no PONG within {SGI_TIMEOUT_MS} ms (vCPU 1 took {} PINGs){FaultNote}",
            irq::PINGS.load(Ordering::SeqCst)
        );
    }
    let pings = irq::PINGS.load(Ordering::SeqCst);
    let pongs = irq::PONGS.load(Ordering::SeqCst);
    ensure!(
        pings == SGI_ROUNDS && pongs == SGI_ROUNDS,
        "{pings} PINGs and {pongs} PONGs taken for {SGI_ROUNDS} round trips"
    );
    ensure!(
        irq::UNEXPECTED.load(Ordering::SeqCst) == unexpected,
        "unexpected INTID {}",
        irq::LAST_UNEXPECTED.load(Ordering::SeqCst)
    );
    Ok(())
}

/// vCPU 1 checks its FP/SIMD pattern across exits while vCPU 0 checks its
/// own (a different one) across exits at the same time.
pub fn fpsimd() -> TestResult {
    require_vcpu1!();
    secondary::set_phase(Phase::FpSimd);
    let mine = fpsimd::check(&fpsimd::VCPU0_PATTERN);
    timer::spin_until(
        || secondary::fpsimd_outcome() != FpOutcome::Pending,
        timer::deadline_after_ms(FPSIMD_TIMEOUT_MS),
    );
    match secondary::fpsimd_outcome() {
        FpOutcome::Pass => {}
        FpOutcome::Fail(m) => fail!("vCPU 1's {m} changed across {} exits", 2 * EXIT_ROUNDS),
        FpOutcome::Pending => {
            fail!("vCPU 1 did not finish within {FPSIMD_TIMEOUT_MS} ms{FaultNote}")
        }
    }
    if let Err(m) = mine {
        fail!("vCPU 0's {m} changed across exits while vCPU 1 exited too");
    }
    Ok(())
}

/// vCPU 1 calls `CPU_OFF`; `AFFINITY_INFO` reports it off.
pub fn cpu_off() -> TestResult {
    require_vcpu1!();
    secondary::set_phase(Phase::Off);
    let off = timer::spin_until(
        || psci::affinity_info(VCPU1) == AFFINITY_OFF,
        timer::deadline_after_ms(POWER_TIMEOUT_MS),
    );
    if let Some(r) = secondary::cpu_off_result() {
        fail!("CPU_OFF returned {r:#x} on vCPU 1");
    }
    ensure!(
        off,
        "AFFINITY_INFO(1) still {:#x} after {POWER_TIMEOUT_MS} ms{FaultNote}",
        psci::affinity_info(VCPU1)
    );
    Ok(())
}
