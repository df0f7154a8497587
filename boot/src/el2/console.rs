//! KCore's console: the `log` crate over the PL011 the device tree names.
//!
//! Every line starts with `kcore: `. The UART is shared with KServ; KCore
//! writes whole lines under its own lock and never blocks forever on it.

use core::fmt::Write;
use kcore_arch::el2::pl011::Pl011;
use log::{LevelFilter, Log, Metadata, Record};
use spin::Mutex;

static UART: Mutex<Option<Pl011>> = Mutex::new(None);

struct Console;

static LOGGER: Console = Console;

impl Log for Console {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &Record<'_>) {
        // Bounded wait: a CPU that faulted while printing must not hang the
        // others forever; they then print nothing.
        for _ in 0..10_000_000 {
            if let Some(mut g) = UART.try_lock() {
                if let Some(u) = g.as_mut() {
                    let prefix = match record.level() {
                        log::Level::Error => "kcore: error: ",
                        log::Level::Warn => "kcore: warning: ",
                        _ => "kcore: ",
                    };
                    let _ = writeln!(u, "{prefix}{}", record.args());
                }
                return;
            }
            core::hint::spin_loop();
        }
    }
    fn flush(&self) {}
}

/// Starts the console on the PL011 at `base`.
///
/// # Safety
/// `base` must be a PL011 register block, mapped as device memory at EL2 (or
/// the MMU off) for as long as KCore runs.
pub unsafe fn init(base: u64) {
    // SAFETY: forwarded contract.
    *UART.lock() = Some(unsafe { Pl011::new(base as usize) });
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(LevelFilter::Info);
}
