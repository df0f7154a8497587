//! KCore's console: the `log` crate over the UART the device tree names (a
//! PL011, or the Raspberry Pi's mini UART; see
//! [`kcore_boot::platform::Platform::uart`]).
//!
//! Every line starts with `kcore: `. The UART is shared with KServ; KCore
//! writes whole lines under its own lock and never blocks forever on it.

use core::fmt::Write;
use kcore_arch::el2::miniuart::MiniUart;
use kcore_arch::el2::pl011::Pl011;
use kcore_boot::platform::{Uart, UartKind};
use log::{LevelFilter, Log, Metadata, Record};
use spin::Mutex;

/// The console's driver.
enum Driver {
    Pl011(Pl011),
    Mini(MiniUart),
}

impl Write for Driver {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        match self {
            Driver::Pl011(u) => u.write_str(s),
            Driver::Mini(u) => u.write_str(s),
        }
    }
}

static UART: Mutex<Option<Driver>> = Mutex::new(None);

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

/// Starts the console on `uart`.
///
/// # Safety
/// `uart` must be a register block of its kind, mapped as device memory at
/// EL2 (or the MMU off) for as long as KCore runs.
pub unsafe fn init(uart: &Uart) {
    let base = uart.base as usize;
    let driver = match uart.kind {
        // SAFETY: forwarded contract.
        UartKind::Pl011 => Driver::Pl011(unsafe { Pl011::new(base) }),
        // SAFETY: forwarded contract.
        UartKind::MiniUart => Driver::Mini(unsafe { MiniUart::new(base) }),
    };
    *UART.lock() = Some(driver);
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(LevelFilter::Info);
}
