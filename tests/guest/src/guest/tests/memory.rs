//! `checksum`: fill 4 MiB of RAM (backed by the host on first touch) with
//! the protocol's pattern, report its checksum, and check the memory still
//! holds it after more exits.

use crate::guest::psci::{self, Conduit};
use crate::guest::runner::{TestResult, ensure};
use crate::guest::testdev;
use kcore_test_guest::testdev::{CHECKSUM, SCRATCH, Width};
use kcore_test_guest::{
    CHECKSUM_BASE, CHECKSUM_WORDS, checksum as fnv, expected_checksum, fill_word,
};

/// Rounds of exits (a test device read and a `PSCI_VERSION` call) between
/// the two checksums.
const EXIT_ROUNDS: u32 = 100;

/// The checksum region, identity-mapped.
fn region() -> *mut u64 {
    CHECKSUM_BASE as *mut u64
}

/// The checksum of the region as it is in memory now (every word loaded).
fn region_checksum() -> u64 {
    fnv((0..CHECKSUM_WORDS).map(|i| {
        // SAFETY: the word is inside the checksum region: RAM mapped
        // read-write, aligned, past the image, its stacks and tables (the
        // linker script asserts that), and used by nothing else.
        unsafe { region().wrapping_add(i as usize).read_volatile() }
    }))
}

/// Fills the region, writes its checksum to the device, compares it with
/// the protocol's, and recomputes it after some exits.
pub fn checksum() -> TestResult {
    for i in 0..CHECKSUM_WORDS {
        // SAFETY: as in `region_checksum`.
        unsafe {
            region()
                .wrapping_add(i as usize)
                .write_volatile(fill_word(i))
        };
    }
    let sum = region_checksum();
    testdev::write(CHECKSUM, Width::Double, sum);
    let expected = expected_checksum();
    ensure!(sum == expected, "checksum {sum:#x}, expected {expected:#x}");
    for _ in 0..EXIT_ROUNDS {
        testdev::read(SCRATCH, Width::Double);
        psci::version(Conduit::Hvc);
    }
    let again = region_checksum();
    ensure!(
        again == sum,
        "checksum {again:#x} after {EXIT_ROUNDS} more exits, was {sum:#x}"
    );
    Ok(())
}
