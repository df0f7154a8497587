//! Host-testable parts of the EL2 binary: platform discovery from the device
//! tree, the device tree KServ is handed, and the layout of KCore's pool.
//!
//! This crate root only wires the modules: [`platform`] reads the loader's
//! device tree (behind a guard that validates the blob before the `fdt` crate
//! sees it), [`kserv_dt`] writes the edited tree KServ boots with,
//! [`dtb_writer`] serializes trees (for [`kserv_dt`] and the EFI loader's
//! ACPI translation), and
//! [`pool`] places KCore's pool and cuts it up. All are plain `no_std` +
//! `alloc` Rust with no hardware access, compiled for the host in `cargo test`
//! and for `aarch64-unknown-none-softfloat` into KCore.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod dtb_writer;
pub mod efi_map;
pub mod kserv_dt;
pub mod platform;
pub mod pool;

pub use kserv_dt::KservDtEdits;
pub use platform::{DtError, Platform};
