//! `kcore.efi`: the UEFI application that boots KCore at EL2
//! (`docs/platforms.md`, "UEFI servers"). `efi/src/app.rs` is the
//! application; the decisions it takes are in this crate's host-testable
//! library.
#![cfg_attr(target_os = "uefi", no_std, no_main)]
#![deny(clippy::undocumented_unsafe_blocks, unsafe_op_in_unsafe_fn)]

#[cfg(target_os = "uefi")]
extern crate alloc;

#[cfg(target_os = "uefi")]
mod acpi_boot;
#[cfg(target_os = "uefi")]
mod app;
#[cfg(target_os = "uefi")]
mod arena;
#[cfg(target_os = "uefi")]
mod panic;

#[cfg(not(target_os = "uefi"))]
fn main() {
    eprintln!("kcore.efi is a UEFI application: build it with `cargo xtask build`");
    std::process::exit(2);
}
