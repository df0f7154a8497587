//! The Rust core of `kserv-shim`, linked into the kernel module as a static
//! library.
//!
//! The module's C glue (`kserv-shim/module`) talks to the kernel; this crate
//! talks to KCore. It issues the hypercalls of [`kcore_abi`] (typed wrappers
//! in [`hypercall`]) and holds the logic around them (decoding replies, the
//! ABI compatibility rule, parsing test requests, the VM isolation self-test
//! of [`vm_selftest`], the test guest's VMM of [`guest_run`]), so that logic
//! is unit-tested on the host through a [`conduit::Conduit`] over the real
//! KCore (a dev-dependency only) or a scripted fake. It is built
//! for `aarch64-unknown-none-softfloat` with `panic = "abort"`: nothing in it
//! may touch the FP/SIMD registers, which the kernel does not save around
//! module code. It depends on `kcore-abi` (the shim never sees KCore's
//! internals) and on the protocol library of `kcore-test-guest`.
//!
//! The C-callable surface lives in [`ffi`] (aarch64 only) and is mirrored by
//! `kserv-shim/module/kserv_core.h`.
#![no_std]

pub mod conduit;
#[cfg(target_arch = "aarch64")]
pub mod ffi;
pub mod guest_run;
pub mod hypercall;
pub mod kvm;
pub mod line;
pub mod psci;
pub mod request;
pub mod runpage;
pub mod version;
pub mod vm_selftest;

#[cfg(not(test))]
unsafe extern "C" {
    /// Provided by the C glue: logs the location and `BUG()`s. Never returns.
    fn kserv_core_panic(file: *const u8, file_len: usize, line: u32) -> !;
}

/// A panic in the core is a broken invariant of the shim itself: report where
/// and let the kernel's `BUG()` machinery take over.
#[cfg(not(test))]
#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    let (file, line) = info
        .location()
        .map_or(("<unknown>", 0), |l| (l.file(), l.line()));
    // SAFETY: `kserv_core_panic` is defined by the module's C glue with exactly
    // this signature; it only reads `file_len` bytes from `file`, which is a
    // valid `&str`.
    unsafe { kserv_core_panic(file.as_ptr(), file.len(), line) }
}
