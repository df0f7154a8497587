//! QEMU machine definitions and a runner for KCore/KServ.
//!
//! A [`Machine`] (QEMU `virt` with EL2, GICv2 or GICv3, a CPU model, CPUs,
//! RAM, optionally `-icount`) and a [`Boot`] (KCore's boot image, or Debian's
//! kernel straight at EL2) make a [`QemuCommand`]. A [`Session`] runs it with
//! the console captured to a log file and waits for console lines and for
//! QEMU's exit with timeouts; it never leaves a QEMU behind, and its errors
//! show the end of the console. [`kserv`] reads KServ's `/init` protocol
//! (`KSERV-TEST`, `KSERV-DONE`, `KSERV-TIME`). Used by `cargo xtask run`,
//! `cargo xtask bench` and the system tests in `tests/`.

mod command;
mod console;
mod error;
pub mod kserv;
mod machine;
mod session;
mod version;

pub use command::{Boot, QemuCommand};
pub use console::{Match, Pattern};
pub use error::{Error, ErrorKind, TAIL_LINES};
pub use machine::{Board, Cpu, EDK2_FIRMWARE, Gic, Machine, Uefi};
pub use regex::Regex;
pub use session::{Session, SessionOptions};
pub use version::{MIN_QEMU_MAJOR, QEMU_ENV, QemuVersion, check_qemu, parse_version, qemu_binary};
