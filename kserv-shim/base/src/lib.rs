//! What the two Rust cores of KServ's modules share: `kserv-core`
//! (`kserv_shim.ko`, the production module) and `kserv-selftest`
//! (`kserv_selftest.ko`, test images only) are each a static library linked
//! into their module, and both reach KCore through this crate.
//!
//! It holds the way a hypercall reaches KCore ([`conduit`]), typed wrappers
//! for the calls ([`hypercall`]), the ABI version handshake ([`version`]) and
//! the panic handler every module core defines ([`panic_handler!`]). Like the
//! cores it is built for `aarch64-unknown-none-softfloat` (nothing in it may
//! touch the FP/SIMD registers) and host-tested with fake conduits. It
//! depends on `kcore-abi` alone: KServ never sees KCore's internals.
#![no_std]

pub mod conduit;
pub mod hypercall;
pub mod version;

/// Defines the panic handler of a module core: a panic is a broken
/// invariant of KServ itself, so it reports where through the C glue's
/// `kserv_core_panic` (`kserv_shim.ko`'s, which logs the location and
/// `BUG()`s) and lets the kernel's `BUG()` machinery take over. A core's
/// `lib.rs` invokes it under `#[cfg(not(test))]`: its host tests have
/// `std`'s.
#[macro_export]
macro_rules! panic_handler {
    () => {
        unsafe extern "C" {
            /// Provided by `kserv_shim.ko`'s C glue. Never returns.
            fn kserv_core_panic(file: *const u8, file_len: usize, line: u32) -> !;
        }

        #[panic_handler]
        fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
            let (file, line) = info
                .location()
                .map_or(("<unknown>", 0), |l| (l.file(), l.line()));
            // SAFETY: `kserv_core_panic` is defined by the C glue with exactly
            // this signature; it only reads `file_len` bytes from `file`,
            // which is a valid `&str`.
            unsafe { kserv_core_panic(file.as_ptr(), file.len(), line) }
        }
    };
}
