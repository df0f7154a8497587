//! SMCCC calls through either conduit, and the PSCI calls built on them.

use core::arch::asm;
use kcore_abi::psci;

/// How a call reaches the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Conduit {
    /// `HVC #0`.
    Hvc,
    /// `SMC #0` (trapped by the hypervisor).
    Smc,
}

/// An SMCCC call: function id `fid`, arguments `x1`..`x3`; returns `x0`.
/// Everything the C calling convention lets a callee clobber is treated as
/// clobbered (SMCCC 1.0 allows `x4`..`x17` to change).
pub fn call(conduit: Conduit, fid: u64, args: [u64; 3]) -> u64 {
    let r: u64;
    match conduit {
        // SAFETY: a call to the host; it changes no memory of ours except
        // what a successful CPU_ON or CPU_OFF implies, and those calls'
        // callers order their shared state around it.
        Conduit::Hvc => unsafe {
            asm!(
                "hvc #0",
                inout("x0") fid => r,
                inout("x1") args[0] => _,
                inout("x2") args[1] => _,
                inout("x3") args[2] => _,
                clobber_abi("C"),
                options(nostack),
            )
        },
        // SAFETY: as for HVC; the hypervisor traps and answers SMC the same.
        Conduit::Smc => unsafe {
            asm!(
                "smc #0",
                inout("x0") fid => r,
                inout("x1") args[0] => _,
                inout("x2") args[1] => _,
                inout("x3") args[2] => _,
                clobber_abi("C"),
                options(nostack),
            )
        },
    }
    r
}

/// `PSCI_VERSION` through `conduit`.
pub fn version(conduit: Conduit) -> u64 {
    call(conduit, psci::VERSION.into(), [0; 3])
}

/// `CPU_ON` (SMC64): starts the vCPU with MPIDR `target` at physical address
/// `entry` with `x0` = `context`.
pub fn cpu_on(target: u64, entry: u64, context: u64) -> u64 {
    call(
        Conduit::Hvc,
        psci::CPU_ON_64.into(),
        [target, entry, context],
    )
}

/// `CPU_OFF`: turns this vCPU off; returns only on failure.
pub fn cpu_off() -> u64 {
    call(Conduit::Hvc, psci::CPU_OFF.into(), [0; 3])
}

/// `AFFINITY_INFO` (SMC64) for the vCPU with MPIDR `target` (level 0).
pub fn affinity_info(target: u64) -> u64 {
    call(Conduit::Hvc, psci::AFFINITY_INFO_64.into(), [target, 0, 0])
}

/// `SYSTEM_OFF`: ends the VM; returns only if the host ignored it.
pub fn system_off() {
    call(Conduit::Hvc, psci::SYSTEM_OFF.into(), [0; 3]);
}
