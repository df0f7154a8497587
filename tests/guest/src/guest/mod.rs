//! The guest proper, at EL1: [`boot`] enters [`runner::guest_primary_main`]
//! on vCPU 0, which runs [`tests`] in order and reports them; vCPU 1 starts
//! in [`secondary`] when the `cpu-on` test turns it on. Booted with
//! [`EVENTFD_X0`](kcore_test_guest::EVENTFD_X0), vCPU 0 runs [`eventfd`]'s
//! program instead; with [`BENCH_X0`](kcore_test_guest::BENCH_X0), both run
//! [`bench`]'s; with [`TOUCH_X0`](kcore_test_guest::TOUCH_X0), vCPU 0 runs
//! [`bench::touch`]; with [`DIRTY_X0`](kcore_test_guest::DIRTY_X0), both run
//! [`dirty`]'s.
//!
//! Both vCPUs keep IRQs masked except in [`irq::wait_until`]'s window after
//! each WFI, so interrupt handlers never run in the middle of other code.

mod bench;
mod boot;
mod console;
mod cpu;
mod dirty;
mod eventfd;
mod exception;
mod fpsimd;
mod gic;
mod irq;
mod its;
mod mmu;
mod psci;
mod runner;
mod secondary;
mod testdev;
mod tests;
mod timer;
