//! `kcore-test-guest`: a bare-metal EL1 guest that exercises what KCore and
//! KServ give a VM (boot registers, MMIO emulation, SMCCC and PSCI, trapped
//! system registers, FP/SIMD state, the virtual timer, SGIs, secondary vCPUs
//! and memory) and reports each check on its test device's console.
//!
//! Everything that runs lives in [`guest`] and is built only for
//! `aarch64-unknown-none`; the protocol it shares with the KServ-side driver
//! is this package's library. On any other target this binary only says how
//! to build it, so that host builds of the whole workspace still compile.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
mod guest;

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!(
        "kcore-test-guest runs only as an aarch64-unknown-none guest; see tests/guest/README.md"
    );
    std::process::exit(2);
}
