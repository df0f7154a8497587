//! vCPU 0's main loop: runs [`tests::ALL`] in order and prints one line per
//! test (PASS here, FAIL where the test fails, SKIP where it cannot run in
//! this VM), then the result line; writes
//! the status register and turns the VM off. Also the panic handler, and
//! [`abort`] for when a test dies.

use super::{console, cpu, psci, secondary, testdev, tests};
use core::fmt;
use core::panic::PanicInfo;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use kcore_test_guest::testdev::{STATUS, Width};
use kcore_test_guest::{BENCH_X0, DIRTY_X0, EVENTFD_X0, RESULT_NAME, Status, TESTS, TOUCH_X0};

/// A test failed; its FAIL line is already printed.
#[derive(Debug)]
pub struct Failed;

/// What a test returns.
pub type TestResult = Result<(), Failed>;

/// Ends the enclosing test: prints its FAIL line with the formatted detail
/// and returns [`Failed`].
macro_rules! fail {
    ($($arg:tt)*) => {
        return Err($crate::guest::runner::report_failure(format_args!($($arg)*)))
    };
}
pub(crate) use fail;

/// Fails the enclosing test (see [`fail!`]) unless the condition holds.
macro_rules! ensure {
    ($cond:expr, $($arg:tt)*) => {
        if !$cond {
            $crate::guest::runner::fail!($($arg)*);
        }
    };
}
pub(crate) use ensure;

/// Ends the enclosing test without running the rest of it: prints its
/// SKIP line with the formatted reason and returns `Ok` (a skipped test
/// counts as passed in the status; only the [`ITS_TESTS`] may, without an
/// ITS).
///
/// [`ITS_TESTS`]: kcore_test_guest::gic::ITS_TESTS
macro_rules! skip {
    ($($arg:tt)*) => {
        return $crate::guest::runner::report_skip(format_args!($($arg)*))
    };
}
pub(crate) use skip;

/// The index in [`TESTS`] of the test running now.
static CURRENT: AtomicUsize = AtomicUsize::new(0);
/// Tests that passed so far.
static PASSED: AtomicU32 = AtomicU32::new(0);
/// The running test printed its SKIP line.
static SKIPPED: AtomicBool = AtomicBool::new(false);
/// Set once the run is ending (so a fault while ending cannot recurse).
static FINISHING: AtomicBool = AtomicBool::new(false);

/// vCPU 0's first Rust code, called by `_start` with `x0` and the OR of
/// `x1`..`x30` as they were at entry.
#[unsafe(no_mangle)]
extern "C" fn guest_primary_main(x0: u64, other_registers: u64) -> ! {
    // The touch program uses no GIC (and its VMM answers no register).
    if x0 == TOUCH_X0 {
        super::bench::touch()
    }
    super::gic::detect();
    if x0 == BENCH_X0 {
        super::bench::run()
    }
    if x0 == EVENTFD_X0 {
        super::eventfd::run()
    }
    if x0 == DIRTY_X0 {
        super::dirty::run()
    }
    tests::record_boot_registers(x0, other_registers);
    for (i, &(name, test)) in tests::ALL.iter().enumerate() {
        CURRENT.store(i, Ordering::SeqCst);
        if test().is_ok() {
            PASSED.fetch_add(1, Ordering::SeqCst);
            if !SKIPPED.swap(false, Ordering::SeqCst) {
                console::line(format_args!("{name}: PASS"));
            }
        }
    }
    finish()
}

/// Prints the running test's FAIL line with `detail` (through [`fail!`]).
pub fn report_failure(detail: fmt::Arguments<'_>) -> Failed {
    let name = TESTS
        .get(CURRENT.load(Ordering::SeqCst))
        .unwrap_or(&"guest");
    console::line(format_args!("{name}: FAIL {detail}"));
    Failed
}

/// Prints the running test's SKIP line with `why` (through [`skip!`]).
pub fn report_skip(why: fmt::Arguments<'_>) -> TestResult {
    let name = TESTS
        .get(CURRENT.load(Ordering::SeqCst))
        .unwrap_or(&"guest");
    console::line(format_args!("{name}: SKIP {why}"));
    SKIPPED.store(true, Ordering::SeqCst);
    Ok(())
}

/// Fails the running test with `why`, counts the tests after it as failed
/// and ends the run. For faults and panics on vCPU 0.
pub fn abort(why: fmt::Arguments<'_>) -> ! {
    if FINISHING.load(Ordering::SeqCst) {
        cpu::park()
    }
    report_failure(why);
    finish()
}

/// Prints the result line, writes the status register and turns the VM off.
fn finish() -> ! {
    FINISHING.store(true, Ordering::SeqCst);
    let passed = PASSED.load(Ordering::SeqCst);
    let status = Status {
        passed,
        failed: TESTS.len() as u32 - passed,
    };
    console::line(format_args!(
        "{RESULT_NAME}: {} passed, {} failed",
        status.passed, status.failed
    ));
    testdev::write(STATUS, Width::Double, status.to_word());
    psci::system_off();
    cpu::park()
}

#[panic_handler]
fn panic(info: &PanicInfo<'_>) -> ! {
    if cpu::index() == 0 {
        abort(format_args!("panic: {info}"))
    }
    secondary::record_panic();
    cpu::park()
}
