//! What KCore must know before its MMU is on: where RAM is, where the
//! console is and how to reach PSCI firmware.
//!
//! The loader's device tree is first validated and copied, with its `FDT_NOP`
//! tokens removed, into KCore's own buffer ([`kcore_boot::platform::sanitized_copy`],
//! which needs no heap); only that checked copy is ever handed to the `fdt`
//! crate. Then the boot heap is started (it is KCore's bss, which the EL2
//! map keeps at the same address) and the copy is read once, by
//! [`kcore_boot::platform::parse`]: every address KCore uses (RAM banks, the
//! console, the GIC) is translated through the `ranges` of the buses above
//! it, as on the Raspberry Pi 4, whose peripherals sit at 0x7e000000 on the
//! bus and 0xfe000000 for the CPU.

use kcore_boot::platform::{self, Platform, sanitized_copy};

/// Largest device tree KCore accepts.
pub const MAX_DT_SIZE: usize = 2 << 20;

#[repr(C, align(8))]
struct DtBuffer([u8; MAX_DT_SIZE]);
static mut DT_COPY: DtBuffer = DtBuffer([0; MAX_DT_SIZE]);

/// The early view of the platform.
pub struct Early {
    /// The platform the tree describes.
    pub plat: Platform,
    /// KCore's checked copy of the device tree.
    pub dt: &'static [u8],
}

/// Why the loader's device tree could not be used.
#[derive(Debug)]
pub enum EarlyError {
    /// No device tree at `x0`, or not a valid one (nothing can be printed:
    /// the console is only known from a valid tree).
    BadTree,
    /// The tree is well formed but KCore cannot use it (nothing can be
    /// printed either: the console is read from the same tree).
    BadPlatform,
    /// No usable `/memory` node.
    NoMemory,
}

/// Validates and copies the device tree at `dtb`, then starts the heap and
/// reads the platform from the copy. Call once, on the primary CPU.
///
/// # Safety
/// `dtb` must be readable for the size its header announces, up to
/// [`MAX_DT_SIZE`] (the loader's contract); the header is checked first.
pub unsafe fn discover(dtb: u64) -> Result<Early, EarlyError> {
    if dtb == 0 || !dtb.is_multiple_of(8) {
        return Err(EarlyError::BadTree);
    }
    // SAFETY: a device tree header is 40 bytes, readable by the loader's contract.
    let header = unsafe { core::slice::from_raw_parts(dtb as *const u8, 40) };
    let size = u32::from_be_bytes([header[4], header[5], header[6], header[7]]) as usize;
    if !(40..=MAX_DT_SIZE).contains(&size) {
        return Err(EarlyError::BadTree);
    }
    // SAFETY: the whole blob is readable (loader's contract), its size bounded.
    let blob = unsafe { core::slice::from_raw_parts(dtb as *const u8, size) };
    let buffer = &raw mut DT_COPY;
    // SAFETY: only the primary CPU runs, once; nothing else refers to the buffer.
    let out = unsafe { &mut (*buffer).0 };
    let len = sanitized_copy(blob, out).map_err(|_| EarlyError::BadTree)?;
    let dt: &'static [u8] = &out[..len];
    super::heap::init();
    let plat = platform::parse(dt).map_err(|_| EarlyError::BadPlatform)?;
    if plat.memory.is_empty() {
        return Err(EarlyError::NoMemory);
    }
    Ok(Early { plat, dt })
}
