//! The Rust core of `kserv-shim`, linked into the production kernel module
//! (`kserv_shim.ko`) as a static library.
//!
//! The module's C glue (`kserv-shim/module`) talks to the kernel; this crate
//! talks to KCore. It issues the hypercalls of [`kcore_abi`] through
//! `kserv-base` (the conduit, typed wrappers and version handshake it shares
//! with the self-test module's core, re-exported here as [`conduit`],
//! [`hypercall`] and [`version`]) and holds the logic around them: the ABI
//! compatibility rule and `/dev/kvm`'s KVM API in [`kvm`], with PSCI and
//! the run page in [`psci`] and [`runpage`], so that logic is unit-tested on
//! the host through a [`conduit::Conduit`] over the real KCore (a
//! dev-dependency only). It is built for
//! `aarch64-unknown-none-softfloat` with `panic = "abort"`: nothing in it
//! may touch the FP/SIMD registers, which the kernel does not save around
//! module code. It depends on `kcore-abi` (the shim never sees KCore's
//! internals) and `kserv-base`; the self-tests live in `kserv-selftest`.
//!
//! The C-callable surface lives in [`ffi`] (aarch64 only) and is mirrored by
//! `kserv-shim/module/kserv_core.h`.
#![no_std]

pub use kserv_base::{conduit, hypercall, version};

pub mod chosen;
#[cfg(target_arch = "aarch64")]
pub mod ffi;
pub mod kvm;
pub mod psci;
pub mod runpage;

#[cfg(not(test))]
kserv_base::panic_handler!();
