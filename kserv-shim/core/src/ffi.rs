//! The C-callable surface of the core, declared again in
//! `kserv-shim/module/kserv_core.h` (keep the two in step). The build pulls
//! every global `kserv_core_*` symbol of the static library into the module's
//! `core.o` (`ld -r -u <symbol>`), so the names carry that prefix.
//!
//! Only the functions that issue hypercalls are `unsafe`: their caller must
//! have established that KCore is underneath (see [`Hvc::new`]).

use crate::conduit::Hvc;
use crate::version::{self, KcoreVersion};
use core::ffi::c_char;

/// `s` followed by a NUL, as a C string in a static. `N` must be `s.len() + 1`
/// (checked at compile time).
const fn nul_terminated<const N: usize>(s: &str) -> [u8; N] {
    let b = s.as_bytes();
    assert!(b.len() + 1 == N, "N must leave room for exactly one NUL");
    let mut out = [0u8; N];
    let mut i = 0;
    while i < b.len() {
        assert!(b[i] != 0, "no NUL inside the string");
        out[i] = b[i];
        i += 1;
    }
    out
}

static DT_HYPERVISOR_COMPATIBLE: [u8; kcore_abi::dt::HYPERVISOR_COMPATIBLE.len() + 1] =
    nul_terminated(kcore_abi::dt::HYPERVISOR_COMPATIBLE);
static DT_ABI_VERSION_PROP: [u8; kcore_abi::dt::ABI_VERSION_PROP.len() + 1] =
    nul_terminated(kcore_abi::dt::ABI_VERSION_PROP);
static DT_RESERVED_COMPATIBLE: [u8; kcore_abi::dt::RESERVED_COMPATIBLE.len() + 1] =
    nul_terminated(kcore_abi::dt::RESERVED_COMPATIBLE);

/// `compatible` of the device-tree node announcing KCore, as a C string.
#[unsafe(no_mangle)]
pub extern "C" fn kserv_core_dt_hypervisor_compatible() -> *const c_char {
    DT_HYPERVISOR_COMPATIBLE.as_ptr().cast()
}

/// Name of that node's ABI version property, as a C string.
#[unsafe(no_mangle)]
pub extern "C" fn kserv_core_dt_abi_version_prop() -> *const c_char {
    DT_ABI_VERSION_PROP.as_ptr().cast()
}

/// `compatible` of the `/reserved-memory` children covering KCore, as a C
/// string.
#[unsafe(no_mangle)]
pub extern "C" fn kserv_core_dt_reserved_compatible() -> *const c_char {
    DT_RESERVED_COMPATIBLE.as_ptr().cast()
}

/// `/chosen/kcore,abi-version` of the flattened device tree at `fdt`
/// (`len` bytes: `/sys/firmware/fdt`, KServ's stub tree on an ACPI
/// machine), or -1 when it has none ([`crate::chosen`]).
///
/// # Safety
///
/// `fdt` must point at `len` readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kserv_core_fdt_chosen_abi(fdt: *const u8, len: usize) -> i64 {
    if fdt.is_null() {
        return -1;
    }
    // SAFETY: the caller's contract.
    let blob = unsafe { core::slice::from_raw_parts(fdt, len) };
    crate::chosen::chosen_abi_version(blob).map_or(-1, i64::from)
}

/// The ABI version this shim was built against, `major << 16 | minor`.
#[unsafe(no_mangle)]
pub extern "C" fn kserv_core_abi_version() -> u32 {
    kcore_abi::abi_version() as u32
}

/// Whether KCore's ABI version `major.minor` works with this shim: a
/// [`version::Compat`] discriminant (0 = compatible).
#[unsafe(no_mangle)]
pub extern "C" fn kserv_core_check_abi(major: u16, minor: u16) -> u32 {
    version::check(major, minor) as u32
}

/// Asks KCore for its version. Returns 0 and fills `*out`, or KCore's negative
/// status (or [`version::MALFORMED_REPLY`]) and leaves `*out` alone.
///
/// # Safety
///
/// KCore must be underneath this kernel (see [`Hvc::new`]), and `out` must be
/// valid for writing one `KcoreVersion`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kserv_core_version(out: *mut KcoreVersion) -> i64 {
    // SAFETY: the caller guarantees KCore is underneath.
    let mut hvc = unsafe { Hvc::new() };
    match version::query(&mut hvc) {
        Ok(v) => {
            // SAFETY: the caller guarantees `out` is valid for writes.
            unsafe { out.write(v) };
            0
        }
        Err(status) => status,
    }
}
