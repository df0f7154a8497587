//! KCore's hardware layer at EL2 (AArch64, non-VHE).
//!
//! Owns the instructions: system registers, barriers, cache and TLB
//! maintenance, `SMC`, `ERET`, the vector table and the trap frame. Each
//! submodule implements one of `kcore`'s hardware traits or one step of
//! bring-up; `boot` drives them.

pub mod bcm2835_pm;
pub mod cpu;
pub mod firmware;
pub mod gicv2;
pub mod gicv3;
pub mod guest;
pub mod idregs;
pub mod memcpy;
pub mod miniuart;
pub mod phys_memory;
pub mod pl011;
pub mod uart;
pub mod vectors;
