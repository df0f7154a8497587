//! What KCore must know before its MMU is on: where RAM is, where the
//! console is and how to reach PSCI firmware.
//!
//! The loader's device tree is first validated and copied, with its `FDT_NOP`
//! tokens removed, into KCore's own buffer ([`kcore_boot::platform::sanitized_copy`],
//! which needs no heap); only that checked copy is ever handed to the `fdt`
//! crate, here and later in [`kcore_boot::platform::parse`].

use kcore::addr::{MemRange, RangeSet};
use kcore_boot::platform::{Conduit, sanitized_copy};

/// Most RAM banks KCore handles.
pub const MAX_BANKS: usize = 16;
/// Largest device tree KCore accepts.
pub const MAX_DT_SIZE: usize = 2 << 20;

#[repr(C, align(8))]
struct DtBuffer([u8; MAX_DT_SIZE]);
static mut DT_COPY: DtBuffer = DtBuffer([0; MAX_DT_SIZE]);

/// The early view of the platform.
pub struct Early {
    /// RAM banks.
    pub ram: RangeSet<MAX_BANKS>,
    /// Base of the console PL011, if the tree names one.
    pub uart: Option<u64>,
    /// The PSCI conduit, if the tree describes PSCI.
    pub psci: Option<Conduit>,
    /// A GICv3's redistributor regions (base, size): KCore maps them to set
    /// the active state of the guest timer's PPI on its own CPU.
    pub gicr: [Option<(u64, u64)>; 4],
    /// KCore's checked copy of the device tree.
    pub dt: &'static [u8],
}

/// Why the loader's device tree could not be used.
#[derive(Debug)]
pub enum EarlyError {
    /// No device tree at `x0`, or not a valid one (nothing can be printed:
    /// the console is only known from a valid tree).
    BadTree,
    /// No usable `/memory` node.
    NoMemory,
}

/// Validates and copies the device tree at `dtb`, then reads RAM banks, the
/// console and the PSCI conduit from the copy. Call once, on the primary CPU.
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
    let fdt = fdt::Fdt::new(dt).map_err(|_| EarlyError::BadTree)?;
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
    let psci = fdt
        .find_compatible(&["arm,psci-1.0", "arm,psci-0.2", "arm,psci"])
        .and_then(|n| n.property("method")?.as_str())
        .and_then(|m| match m {
            "smc" => Some(Conduit::Smc),
            "hvc" => Some(Conduit::Hvc),
            _ => None,
        });
    let mut gicr = [None; 4];
    if let Some(gic) = fdt.find_compatible(&["arm,gic-v3"]) {
        let count = gic
            .property("#redistributor-regions")
            .and_then(|p| p.as_usize())
            .unwrap_or(1)
            .min(gicr.len());
        for (slot, r) in gicr
            .iter_mut()
            .zip(gic.reg().into_iter().flatten().skip(1).take(count))
        {
            *slot = r.size.map(|s| (r.starting_address as u64, s as u64));
        }
    }
    Ok(Early {
        ram,
        uart,
        psci,
        gicr,
        dt,
    })
}
