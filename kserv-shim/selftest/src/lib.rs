//! The Rust core of `kserv_selftest.ko`, the test-only companion of
//! `kserv_shim.ko` (built into test images as `kserv_attack.ko` is, loaded
//! by the KServ tests that use it), linked into the module as a static
//! library.
//!
//! It holds what the production module has no use for: the VM isolation
//! self-test of [`vm_selftest`] (with its log lines, [`line`]) and the
//! parsing of raw hypercall requests ([`request`]) for the module's debugfs
//! `hvc` file. It reaches KCore through `kserv-base`, the conduit and typed
//! hypercalls it shares with `kserv-core`, and is host-tested against a fake
//! KCore (`cargo test -p kserv-selftest`). Like `kserv-core` it is built for
//! `aarch64-unknown-none-softfloat` with `panic = "abort"` and must compile
//! to no indirect branches (no `core::fmt`, `dyn` or function pointers).
//!
//! The C-callable surface lives in [`ffi`] (aarch64 only) and is mirrored by
//! `kserv-shim/module/kserv_selftest.h`.
#![no_std]

#[cfg(target_arch = "aarch64")]
pub mod ffi;
pub mod line;
pub mod request;
pub mod vm_selftest;

#[cfg(not(test))]
kserv_base::panic_handler!();
