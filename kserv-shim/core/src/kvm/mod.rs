//! `/dev/kvm`: Linux's KVM API (arm64, as Linux 6.1 implements it) on top
//! of KCore's hypercalls, for unmodified VMMs. The module's glue registers
//! the misc device, makes the fds and calls in here for every ioctl; all
//! the decisions are here, host-tested against the real KCore (on
//! `kcore_arch::host_world`) and a fake kernel.
//!
//! - [`vm`]: `/dev/kvm` and VM fds, memory slots, guest memory, teardown;
//! - [`vcpu`]: vCPU fds, registers, `KVM_RUN` and its exits, PSCI;
//! - [`vgic`]: the virtual GICv3 (distributor, redistributors, interrupt
//!   delivery through KCore's list registers);
//! - [`eventfd`]: `KVM_IOEVENTFD` and `KVM_IRQFD`;
//! - [`icc`]: the vGIC's CPU interface registers for save and restore;
//! - [`hypercalls`]: a guest's SMCCC calls but PSCI, and the firmware
//!   feature bitmaps; [`pvtime`]: stolen time; [`timer`]: the timers' PPIs;
//! - [`stats`]: `KVM_GET_STATS_FD`'s counters and file layout; [`events`]:
//!   `KVM_{GET,SET}_VCPU_EVENTS`;
//! - [`memslot`], [`regs`], [`uapi`], [`errno`]: the API's rules, register
//!   ids and numbers.

pub mod env;
pub mod errno;
pub mod eventfd;
pub mod events;
pub mod gicc;
pub mod hypercalls;
pub mod icc;
pub mod memslot;
pub mod pvtime;
pub mod regs;
pub mod stats;
pub mod timer;
pub mod uapi;
pub mod vcpu;
pub mod vgic;
pub mod vm;

#[cfg(target_arch = "aarch64")]
pub mod ffi;

#[cfg(test)]
mod tests;
