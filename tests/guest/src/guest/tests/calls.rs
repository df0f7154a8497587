//! SMCCC and PSCI calls through both conduits: unknown function ids, and
//! the version queries.

use crate::guest::psci::{self, Conduit};
use crate::guest::runner::{TestResult, ensure};
use kcore_abi::{psci::VERSION_1_0, smccc};
use kcore_test_guest::UNKNOWN_FUNCTIONS;

/// Argument registers for the unknown calls: their values must not matter.
const ARGUMENTS: [[u64; 3]; 2] = [[0; 3], [u64::MAX, 1, 0x4000_0000]];

/// Every unknown function id returns `NOT_SUPPORTED`.
fn unknown(conduit: Conduit) -> TestResult {
    for fid in UNKNOWN_FUNCTIONS {
        for args in ARGUMENTS {
            let r = psci::call(conduit, fid, args);
            ensure!(
                r == smccc::RET_NOT_SUPPORTED,
                "function {fid:#x} (x1..x3 = {:#x}, {:#x}, {:#x}) returned {r:#x}",
                args[0],
                args[1],
                args[2]
            );
        }
    }
    Ok(())
}

/// Unknown function ids through `HVC`.
pub fn hvc_unknown() -> TestResult {
    unknown(Conduit::Hvc)
}

/// Unknown function ids through `SMC`.
pub fn smc_unknown() -> TestResult {
    unknown(Conduit::Smc)
}

/// `SMCCC_VERSION` is 1.1 through both conduits.
pub fn smccc_version() -> TestResult {
    for conduit in [Conduit::Hvc, Conduit::Smc] {
        let r = psci::call(conduit, smccc::SMCCC_VERSION.into(), [0; 3]);
        ensure!(
            r == smccc::VERSION_1_1,
            "{conduit:?}: SMCCC_VERSION returned {r:#x}, expected {:#x}",
            smccc::VERSION_1_1
        );
    }
    Ok(())
}

/// `PSCI_VERSION` is 1.0 through `conduit`.
fn psci_version(conduit: Conduit) -> TestResult {
    let r = psci::version(conduit);
    ensure!(
        r == VERSION_1_0,
        "PSCI_VERSION returned {r:#x}, expected {VERSION_1_0:#x}"
    );
    Ok(())
}

/// `PSCI_VERSION` through `HVC`.
pub fn psci_version_hvc() -> TestResult {
    psci_version(Conduit::Hvc)
}

/// `PSCI_VERSION` through `SMC`.
pub fn psci_version_smc() -> TestResult {
    psci_version(Conduit::Smc)
}
