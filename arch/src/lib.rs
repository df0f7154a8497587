//! The hardware side of KCore: every instruction safe Rust cannot express.
//!
//! [`el2`] implements `kcore`'s hardware traits with real instructions at EL2
//! (system registers through `aarch64-cpu`, the PL011 through
//! `tock-registers`, `SMC` to firmware, the exception vectors and the
//! KServ trap frame); [`sysreg`] builds the translation-control values it
//! writes and names the register fields `aarch64-cpu` lacks.
//! [`host_memory`] and [`host_cpu`] implement the same traits over ordinary
//! memory and scripts, so that `kcore` runs unchanged in host tests;
//! [`host_world`] builds a whole small machine with KCore on it for them. Every
//! `unsafe` block states the invariant it relies on
//! (`clippy::undocumented_unsafe_blocks`).
#![no_std]
#![deny(clippy::undocumented_unsafe_blocks, unsafe_op_in_unsafe_fn)]

#[cfg(all(target_arch = "aarch64", target_os = "none"))]
pub mod el2;

pub mod sysreg;

#[cfg(not(target_os = "none"))]
pub mod host_cpu;

#[cfg(not(target_os = "none"))]
pub mod host_memory;

#[cfg(not(target_os = "none"))]
pub mod host_world;
