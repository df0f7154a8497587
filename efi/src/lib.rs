//! The host-testable logic of `kcore.efi` (`docs/platforms.md`, "UEFI
//! servers"): everything that decides, and nothing that touches firmware or
//! hardware. The UEFI application (`main.rs`, built for
//! `aarch64-unknown-uefi`) gathers the inputs from the firmware and hands
//! them to these functions.
//!
//! - [`memmap`]: the RAM banks of KCore's tree (read from the EFI memory
//!   map by `kcore_acpi::banks`, as Linux's `reserve_regions` reads it).
//! - [`dt`]: the firmware's device tree → the tree KCore boots with (its
//!   memory nodes replaced by those banks, the firmware's reserved ranges
//!   in `/memreserve/`, `/chosen/bootargs` from the load options and the
//!   UEFI hand-off in `/chosen`).
//! - [`image`]: where `kcore.img` goes (its Image header) and how much
//!   memory to set aside for it.
//! - [`cmdline`]: the application's load options → the bootargs.
//! - [`handoff`]: in either mode, the memory map KServ receives (runtime
//!   services mapped 1:1) and the `/chosen` properties naming it.
//!
//! [`dt`] does not allocate: it runs after `ExitBootServices` and writes
//! into a buffer the application sized before.
#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub mod cmdline;
pub mod dt;
pub mod fault;
pub mod handoff;
pub mod image;
pub mod memmap;
