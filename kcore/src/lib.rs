//! KCore: the trusted core.
//!
//! Everything that decides confidentiality and integrity of VMs lives here as
//! plain, host-testable Rust: no `unsafe`, no `asm!`, no target-specific code.
//! Hardware is reached only through the traits in [`hw`], implemented for EL2
//! in the `kcore-arch` crate and by a host double there for tests.
#![no_std]
#![forbid(unsafe_code)]
