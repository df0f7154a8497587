//! What KCore must know before its MMU is on: where RAM is and where the
//! console is. Read straight from the loader's device tree with the `fdt`
//! crate, without a heap. Everything else waits for [`crate::platform`].

use kcore::addr::MemRange;
use kcore::addr::RangeSet;

/// Most RAM banks KCore handles.
pub const MAX_BANKS: usize = 16;

/// The early view of the platform.
pub struct Early {
    /// RAM banks.
    pub ram: RangeSet<MAX_BANKS>,
    /// Base of the console PL011, if the tree names one.
    pub uart: Option<u64>,
    /// Size of the device tree blob.
    pub dtb_size: usize,
}

/// Why the loader's device tree could not even be read.
#[derive(Debug)]
pub enum EarlyError {
    /// Not a device tree at all.
    BadHeader,
    /// No usable `/memory` node.
    NoMemory,
}

/// Reads RAM banks and the console from the device tree at `dtb`.
///
/// # Safety
/// `dtb` must be readable for the size its header announces (the loader's
/// contract); the header is checked first.
pub unsafe fn discover(dtb: u64) -> Result<Early, EarlyError> {
    if dtb == 0 || !dtb.is_multiple_of(8) {
        return Err(EarlyError::BadHeader);
    }
    // SAFETY: the header's 40 bytes are readable by the loader's contract.
    let header = unsafe { core::slice::from_raw_parts(dtb as *const u8, 40) };
    let word =
        |i: usize| u32::from_be_bytes([header[i], header[i + 1], header[i + 2], header[i + 3]]);
    if word(0) != 0xd00d_feed {
        return Err(EarlyError::BadHeader);
    }
    let size = word(4) as usize;
    if !(40..=(2 << 20)).contains(&size) {
        return Err(EarlyError::BadHeader);
    }
    // SAFETY: the whole blob is readable (loader's contract), size bounded above.
    let blob = unsafe { core::slice::from_raw_parts(dtb as *const u8, size) };
    let fdt = fdt::Fdt::new(blob).map_err(|_| EarlyError::BadHeader)?;
    let mut ram = RangeSet::new();
    for node in fdt.all_nodes().filter(|n| n.name.starts_with("memory")) {
        let is_memory = node.property("device_type").and_then(|p| p.as_str()) == Some("memory");
        if !is_memory {
            continue;
        }
        for r in node.reg().into_iter().flatten() {
            let base = r.starting_address as u64;
            if let Some(range) = r.size.and_then(|s| MemRange::new(base, s as u64)) {
                let _ = ram.insert(range);
            }
        }
    }
    if ram.is_empty() {
        return Err(EarlyError::NoMemory);
    }
    let uart = fdt
        .chosen()
        .stdout()
        .filter(|n| {
            n.compatible()
                .is_some_and(|c| c.all().any(|s| s == "arm,pl011"))
        })
        .or_else(|| fdt.find_compatible(&["arm,pl011"]))
        .and_then(|n| n.reg()?.next())
        .map(|r| r.starting_address as u64);
    Ok(Early {
        ram,
        uart,
        dtb_size: size,
    })
}
