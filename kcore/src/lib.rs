//! KCore: the trusted core.
//!
//! Everything that decides confidentiality and integrity of VMs lives here as
//! plain, host-testable Rust: no `unsafe`, no `asm!`, no target-specific code.
//! Hardware is reached only through the traits in [`hw`], implemented for EL2
//! in the `kcore-arch` crate and by a host double there for tests. Sizes are
//! const generic parameters, so the same code runs at EL2 and on the host.
#![no_std]
#![forbid(unsafe_code)]

pub mod addr;
pub mod audit;
pub mod dirty_log;
pub mod exception;
pub mod gic_guard;
pub mod gic_reads;
pub mod gic_tables;
pub mod gicv;
pub mod host;
pub mod host_stage2;
pub mod hw;
pub mod idregs;
pub mod image;
pub mod mem_protect;
pub mod ownership;
pub mod pgtable;
pub mod psci;
pub mod smc_forward;
pub mod vcpu;
pub mod vcpu_mem;
pub mod vgic;
pub mod vm;
