//! The tests vCPU 0 runs, in the order of [`kcore_test_guest::TESTS`]
//! (checked at compile time). Each returns `Ok`, or fails with `fail!` /
//! `ensure!`, which print its FAIL line; a test that depends on an earlier
//! one (vCPU 1 running, say) fails with a note rather than waiting.

mod boot;
mod calls;
mod its;
mod memory;
mod mmio;
mod timer;
mod traps;
mod vcpu1;

use super::runner::TestResult;
pub use boot::record_boot_registers;
use kcore_test_guest::TESTS;

/// A test: its name and body.
pub type Test = (&'static str, fn() -> TestResult);

/// Every test, in order.
pub const ALL: [Test; 26] = [
    ("x0", boot::x0),
    ("mmu", boot::mmu),
    ("mmio8", mmio::mmio8),
    ("mmio16", mmio::mmio16),
    ("mmio32", mmio::mmio32),
    ("mmio64", mmio::mmio64),
    ("mmio-signed", mmio::signed),
    ("mmio-zero-reg", mmio::zero_register),
    ("hvc-unknown", calls::hvc_unknown),
    ("smc-unknown", calls::smc_unknown),
    ("smccc-version", calls::smccc_version),
    ("psci-version-hvc", calls::psci_version_hvc),
    ("psci-version-smc", calls::psci_version_smc),
    ("sysreg-undef", traps::sysreg_undef),
    ("fpsimd", traps::fpsimd),
    ("vtimer", timer::vtimer),
    ("wfi-timer", timer::wfi_timer),
    ("ptimer", timer::ptimer),
    ("cpu-on", vcpu1::cpu_on),
    ("sgi", vcpu1::sgi),
    ("fpsimd-vcpu1", vcpu1::fpsimd),
    ("cpu-off", vcpu1::cpu_off),
    ("checksum", memory::checksum),
    ("its", its::its),
    ("its-int", its::int),
    ("its-discard", its::discard),
];

/// Whether `tests` has exactly the names of `names`, in order.
const fn same_names(tests: &[Test], names: &[&str]) -> bool {
    if tests.len() != names.len() {
        return false;
    }
    let mut i = 0;
    while i < tests.len() {
        let (a, b) = (tests[i].0.as_bytes(), names[i].as_bytes());
        if a.len() != b.len() {
            return false;
        }
        let mut j = 0;
        while j < a.len() {
            if a[j] != b[j] {
                return false;
            }
            j += 1;
        }
        i += 1;
    }
    true
}

const _: () = assert!(same_names(&ALL, TESTS), "tests::ALL and TESTS differ");
