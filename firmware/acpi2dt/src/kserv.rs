//! The ACPI tables KServ sees: pure functions on byte buffers. The loader
//! places their results in KCore-owned memory and points KServ at the new
//! RSDP.
//!
//! - [`kserv_madt`]: every GICC's GICV and GICH base and VGIC maintenance
//!   GSIV zeroed (KCore owns the virtual interface; Xen's
//!   `gicv3_make_hwdom_madt` does the same), GIC ITS structures left out
//!   (KCore keeps the ITSes), GICD and GICR kept.
//! - [`kserv_xsdt`]: the XSDT with entries repointed at replaced tables or
//!   dropped (the MCFG, while KCore keeps the PCIe host bridge from KServ).
//! - [`kserv_dsdt`]: the DSDT with the devices KCore keeps (those of
//!   `namespace::kept_by_kcore`, on QEMU's `virt` the PCI host bridge,
//!   fw_cfg and the virtio-mmio transports) renamed so no driver binds,
//!   and [`kserv_fadt`] pointing at it.
//! - [`kserv_rsdp`]: the RSDP pointing at the new XSDT.
//!
//! Each fixes the checksums it invalidates.

use alloc::vec::Vec;

use crate::Error;
use crate::tables::{
    HEADER_LEN, MADT_ENTRIES, MADT_GICC, MADT_ITS, le32, le64, signature, walk_madt,
};

/// Offset of the checksum byte in an SDT header.
const SDT_CHECKSUM: usize = 9;
/// GICC field offsets: GICV, GICH (8 bytes each), VGIC maintenance GSIV.
const GICC_GICV: usize = 40;
const GICC_GICH: usize = 48;
const GICC_VGIC_GSIV: usize = 56;

/// Checks `table` is one whole SDT with signature `sig` and a good checksum.
fn check_sdt(table: &[u8], sig: &[u8; 4]) -> Result<(), Error> {
    let bad = |reason| Error::BadTable {
        signature: *sig,
        reason,
    };
    if table.len() < HEADER_LEN || signature(table) != *sig {
        return Err(bad("is not a whole table with this signature"));
    }
    if le32(table, 4).map(|l| l as usize) != Some(table.len()) {
        return Err(bad("has a length that is not the buffer's"));
    }
    if !crate::tables::sums_to_zero(table) {
        return Err(Error::BadChecksum { signature: *sig });
    }
    Ok(())
}

/// Sets byte `at` so that `bytes[range]` sums to zero.
fn fix_checksum(bytes: &mut [u8], len: usize, at: usize) {
    if let Some(b) = bytes.get_mut(at) {
        *b = 0;
    }
    let sum = bytes
        .get(..len)
        .unwrap_or_default()
        .iter()
        .fold(0u8, |s, &b| s.wrapping_add(b));
    if let Some(b) = bytes.get_mut(at) {
        *b = 0u8.wrapping_sub(sum);
    }
}

/// The MADT KServ sees: `madt` with every GICC's GICV, GICH and VGIC
/// maintenance GSIV zeroed, every GIC ITS structure left out (KCore keeps
/// the ITSes from KServ, as `kserv_dt` disables them on the device-tree
/// path: they write their tables by physical address), the length and the
/// checksum fixed.
pub fn kserv_madt(madt: &[u8]) -> Result<Vec<u8>, Error> {
    check_sdt(madt, b"APIC")?;
    let mut out = madt.get(..MADT_ENTRIES).unwrap_or_default().to_vec();
    walk_madt(madt, |ty, entry| {
        if ty == MADT_ITS {
            return Ok(());
        }
        let at = out.len();
        out.extend_from_slice(entry);
        if ty == MADT_GICC {
            for (field, len) in [(GICC_GICV, 8), (GICC_GICH, 8), (GICC_VGIC_GSIV, 4)] {
                if let Some(f) = out.get_mut(at + field..at + field + len) {
                    f.fill(0);
                }
            }
        }
        Ok(())
    })?;
    let len = out.len();
    let len32 = u32::try_from(len).map_err(|_| Error::BadEdit("MADT too long"))?;
    if let Some(f) = out.get_mut(4..8) {
        f.copy_from_slice(&len32.to_le_bytes());
    }
    fix_checksum(&mut out, len, SDT_CHECKSUM);
    Ok(out)
}

/// FADT offsets of the 32-bit `DSDT` and the 64-bit `X_DSDT` addresses.
const FADT_DSDT: usize = 40;
const FADT_X_DSDT: usize = 140;

/// The DSDT address of `fadt`: `X_DSDT` when the table has it and it is
/// not zero, else `DSDT`.
pub fn fadt_dsdt(fadt: &[u8]) -> Result<u64, Error> {
    check_sdt(fadt, b"FACP")?;
    let x = le64(fadt, FADT_X_DSDT).filter(|&x| x != 0);
    let dsdt = x.or_else(|| le32(fadt, FADT_DSDT).map(u64::from).filter(|&d| d != 0));
    dsdt.ok_or(Error::BadTable {
        signature: *b"FACP",
        reason: "names no DSDT",
    })
}

/// The FADT KServ sees: `fadt` pointing at the DSDT at `dsdt` (`X_DSDT`,
/// and `DSDT` when the address fits 32 bits, else 0), checksum fixed.
pub fn kserv_fadt(fadt: &[u8], dsdt: u64) -> Result<Vec<u8>, Error> {
    check_sdt(fadt, b"FACP")?;
    let mut out = fadt.to_vec();
    let low = u32::try_from(dsdt).unwrap_or(0);
    if let Some(f) = out.get_mut(FADT_DSDT..FADT_DSDT + 4) {
        f.copy_from_slice(&low.to_le_bytes());
    }
    if let Some(f) = out.get_mut(FADT_X_DSDT..FADT_X_DSDT + 8) {
        f.copy_from_slice(&dsdt.to_le_bytes());
    } else if low == 0 {
        return Err(Error::BadEdit(
            "the FADT has no X_DSDT for a DSDT above 4 GiB",
        ));
    }
    let len = out.len();
    fix_checksum(&mut out, len, SDT_CHECKSUM);
    Ok(out)
}

/// Hardware IDs (`_HID`, `_CID`) [`kserv_dsdt`] always renames: PCI host
/// bridges (PNP0A08, PNP0A03: KCore keeps the ECAM, the bridge is a DMA
/// master), whatever their `_CRS` says.
pub const PCI_HOST_IDS: [&str; 2] = ["PNP0A08", "PNP0A03"];
/// What a hidden ID becomes: the vendor `KCR` for a PNP ID (EISA-encoded
/// or not), `KCOR` for an ACPI ID, so that no driver matches.
const KCORE_EISA_VENDOR: [u8; 2] = [0x2c, 0x72];
const KCORE_PNP_VENDOR: &[u8; 3] = b"KCR";
const KCORE_ACPI_VENDOR: &[u8; 4] = b"KCOR";

/// The DSDT KServ sees: `dsdt` with the `_HID`/`_CID`s in `hidden` (the
/// IDs of the devices KCore keeps, `namespace::ids_to_hide`) and
/// [`PCI_HOST_IDS`] renamed to IDs no driver binds to, so that KServ's
/// kernel does not probe them (it would touch memory KCore keeps and take
/// an external abort). The AML is not parsed: only the exact encodings
/// `Name (_HID|_CID, EisaId/String)` are patched, in place, so every offset
/// and length stays as it was (a `_CID` package, or an ID a method returns,
/// is not renamed); the checksum is fixed. Returns the table and how many
/// IDs were renamed.
pub fn kserv_dsdt(dsdt: &[u8], hidden: &[&str]) -> Result<(Vec<u8>, usize), Error> {
    check_sdt(dsdt, b"DSDT")?;
    let hide = |id: &[u8]| {
        hidden
            .iter()
            .chain(&PCI_HOST_IDS)
            .any(|h| h.as_bytes() == id)
    };
    let mut out = dsdt.to_vec();
    let mut renamed = 0;
    let mut at = HEADER_LEN;
    while at + 6 < out.len() {
        // NameOp, then _HID or _CID.
        let name = out.get(at..at + 5).unwrap_or_default();
        let is_id = name == b"\x08_HID" || name == b"\x08_CID";
        if !is_id {
            at += 1;
            continue;
        }
        let value = at + 6;
        match out.get(at + 5) {
            // DWordPrefix + EISA ID.
            Some(0x0c) => {
                if let Some(id) = out.get_mut(value..value + 4)
                    && let Some(text) =
                        le32(id, 0).and_then(|v| crate::namespace::eisa_id(v.into()))
                    && hide(text.as_bytes())
                {
                    id[..2].copy_from_slice(&KCORE_EISA_VENDOR);
                    renamed += 1;
                }
            }
            // StringPrefix + a PNP (7) or ACPI (8) ID + NUL.
            Some(0x0d) => {
                for (len, vendor) in [(7, &KCORE_PNP_VENDOR[..]), (8, &KCORE_ACPI_VENDOR[..])] {
                    if let Some(id) = out.get_mut(value..value + len + 1)
                        && id[len] == 0
                        && hide(&id[..len])
                    {
                        id[..vendor.len()].copy_from_slice(vendor);
                        renamed += 1;
                    }
                }
            }
            _ => {}
        }
        at += 5;
    }
    let len = out.len();
    fix_checksum(&mut out, len, SDT_CHECKSUM);
    Ok((out, renamed))
}

/// What happens to one XSDT entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XsdtEdit {
    /// The table at `old` now lives at `new`.
    Replace {
        /// Its address in the firmware's XSDT.
        old: u64,
        /// The address of its replacement.
        new: u64,
    },
    /// The table at this address is not listed.
    Drop(u64),
}

/// The XSDT KServ sees: `xsdt` with `edits` applied, entries in their order.
/// An edit naming an address the XSDT does not list is an error.
pub fn kserv_xsdt(xsdt: &[u8], edits: &[XsdtEdit]) -> Result<Vec<u8>, Error> {
    check_sdt(xsdt, b"XSDT")?;
    let entries: Vec<u64> = (HEADER_LEN..xsdt.len())
        .step_by(8)
        .map(|k| le64(xsdt, k))
        .collect::<Option<_>>()
        .ok_or(Error::BadTable {
            signature: *b"XSDT",
            reason: "has a partial 64-bit entry",
        })?;
    for e in edits {
        let (XsdtEdit::Replace { old: a, .. } | XsdtEdit::Drop(a)) = *e;
        if !entries.contains(&a) {
            return Err(Error::BadEdit(
                "an XSDT edit names a table the XSDT does not list",
            ));
        }
    }
    let mut out = xsdt.get(..HEADER_LEN).unwrap_or_default().to_vec();
    for a in entries {
        let edit = edits.iter().find(
            |e| matches!(e, XsdtEdit::Replace { old, .. } | XsdtEdit::Drop(old) if *old == a),
        );
        match edit {
            Some(XsdtEdit::Drop(_)) => {}
            Some(XsdtEdit::Replace { new, .. }) => out.extend_from_slice(&new.to_le_bytes()),
            None => out.extend_from_slice(&a.to_le_bytes()),
        }
    }
    let len = out.len();
    let len32 = u32::try_from(len).map_err(|_| Error::BadEdit("XSDT too long"))?;
    if let Some(f) = out.get_mut(4..8) {
        f.copy_from_slice(&len32.to_le_bytes());
    }
    fix_checksum(&mut out, len, SDT_CHECKSUM);
    Ok(out)
}

/// The RSDP KServ sees: `rsdp` (revision 2 or later) pointing at `xsdt`,
/// both checksums fixed. The 32-bit RSDT address is cleared: KServ reads the
/// XSDT.
pub fn kserv_rsdp(rsdp: &[u8], xsdt: u64) -> Result<Vec<u8>, Error> {
    if rsdp.get(..8) != Some(b"RSD PTR ".as_slice()) || rsdp.get(15).is_none_or(|&r| r < 2) {
        return Err(Error::Rsdp("not an ACPI 2.0 RSDP"));
    }
    let len = le32(rsdp, 20)
        .map(|l| l as usize)
        .filter(|&l| l >= 36 && l == rsdp.len())
        .ok_or(Error::Rsdp("length is not the buffer's"))?;
    let mut out = rsdp.to_vec();
    if let Some(f) = out.get_mut(16..20) {
        f.fill(0);
    }
    if let Some(f) = out.get_mut(24..32) {
        f.copy_from_slice(&xsdt.to_le_bytes());
    }
    fix_checksum(&mut out, 20, 8);
    fix_checksum(&mut out, len, 32);
    Ok(out)
}
