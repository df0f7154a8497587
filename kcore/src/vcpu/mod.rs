//! vCPUs: register state, the first run, exits and what KServ may learn
//! from them.
//!
//! A vCPU's registers live in a [`VcpuContext`] kept in one page of its VM's
//! table pool, a KCore page that no stage 2 maps. `host_vcpu_run` copies it
//! into a [`Loaded`] the running CPU keeps, `kcore-arch` switches the CPU
//! into the guest and back ([`GuestCpu`]) and this module decides what each
//! exit means ([`step`]): handled inside KCore (unknown hypercalls, debug and
//! PMU registers, faults the guest made itself), or reported to KServ with
//! exactly what emulation needs (DESIGN.md §1): for MMIO the address, width,
//! direction and the one data register; for a memory fault only the page;
//! for PSCI the function id and `x1..x3`; for SGIs the SGI register's value.
//! KServ never sees the PC, the syndrome or any other register of a
//! protected vCPU, and sets only its first PC (inside the verified image) and
//! `x0`.
//!
//! The submodules, each depending only on those listed before it (and on
//! `addr`, `exception`, `hw`, `pgtable`, `vgic` and `vm`), are private;
//! everything public is re-exported here:
//!
//! - `hwdebug`: KServ's breakpoints and watchpoints made safe to load
//!   ([`DebugCounts`], [`sanitise_debug`]);
//! - `context`: [`VcpuContext`] and its page layout, [`Sys`], [`status`],
//!   [`Pending`], the guest's timers ([`Timer`]), the reset state, [`pstate_ok`] and the MPIDR helpers;
//! - `loaded`: [`Loaded`], a vCPU taken out of its page for a run, with
//!   [`GuestConfig`], [`TimerIrq`], [`ExitReport`], [`CtxKey`] and [`Step`];
//! - `guest_call`: the guest's HVC/SMC calls, and the ids of KVM's vendor
//!   hypervisor calls ([`guest_fid`]; SMCCC's and PSCI's are in
//!   [`kcore_abi::smccc`] and [`kcore_abi::psci`]);
//! - `exit`: [`GuestExit`] and [`step`], the decoding of an exit;
//! - `timer`: the guest timers' list register entries ([`prepare_timer`],
//!   [`save_timer`]);
//! - `run`: the run loop ([`run_vcpu_in`]) between KCore's state
//!   ([`VcpuHost`]) and the CPU ([`GuestCpu`]), and [`RunArgs`].
//!
//! The steps of a run that take KCore's state lock — the load, the put and
//! a guest's memory sharing and `CPU_ON` — and the vCPU hypercalls are
//! methods of [`MemCore`](crate::mem_protect::MemCore) in
//! [`crate::vcpu_mem`], which builds on this module; nothing here depends
//! on `mem_protect`.

mod context;
mod exit;
mod guest_call;
mod hwdebug;
mod loaded;
mod run;
#[cfg(test)]
mod test_util;
mod timer;

pub use context::{
    CTX_WORDS, DEBUG_REGS, N_SYS, PSTATE_RESET, Pending, SCTLR_EL1_RESET, Sys, Timer, VcpuContext,
    VgicCpu, index_of_mpidr, mpidr_of, pstate_ok, status,
};
pub use exit::{ExitKind, GuestExit, step, write_fault};
pub use guest_call::guest_fid;
pub use hwdebug::{DebugCounts, sanitise as sanitise_debug};
pub use loaded::{CtxKey, ExitReport, GuestConfig, Loaded, Step, TimerIrq, WriteFault};
pub use run::{GuestCpu, RunArgs, VcpuHost, run_vcpu, run_vcpu_in};
pub use timer::{prepare_timer, save_timer};
