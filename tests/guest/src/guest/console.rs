//! Console output: bytes written to the test device's `CONSOLE` register.
//! Only vCPU 0 prints, one whole line per call of [`line`].

use super::testdev;
use core::fmt::{self, Write};
use kcore_test_guest::LINE_PREFIX;
use kcore_test_guest::testdev::{CONSOLE, Width};

/// The console as a [`fmt::Write`] sink.
struct Console;

impl Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            testdev::write(CONSOLE, Width::Byte, u64::from(b));
        }
        Ok(())
    }
}

/// Prints `kcore-test-guest: <args>` and a newline.
pub fn line(args: fmt::Arguments<'_>) {
    // Writing to the console cannot fail; a formatting error of `args`
    // would only cut the line short.
    let _ = Console.write_fmt(format_args!("{LINE_PREFIX}{args}\n"));
}
