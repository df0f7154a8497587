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
//! - [`kserv_aml`]: the DSDT and each SSDT with the devices KCore keeps
//!   (those of `namespace::kept_by_kcore`, on QEMU's `virt` the PCI host
//!   bridge, fw_cfg and the virtio-mmio transports) renamed so no driver
//!   binds, and [`kserv_fadt`] pointing at KServ's DSDT.
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

/// Hardware IDs (`_HID`, `_CID`) [`kserv_aml`] always renames: PCI host
/// bridges (PNP0A08, PNP0A03: KCore keeps the ECAM, the bridge is a DMA
/// master), whatever their `_CRS` says.
pub const PCI_HOST_IDS: [&str; 2] = ["PNP0A08", "PNP0A03"];
/// What a hidden ID becomes: the vendor `KCR` for a PNP ID (EISA-encoded
/// or not), `KCOR` for an ACPI ID, so that no driver matches.
const KCORE_EISA_VENDOR: [u8; 2] = [0x2c, 0x72];
const KCORE_PNP_VENDOR: &[u8; 3] = b"KCR";
const KCORE_ACPI_VENDOR: &[u8; 4] = b"KCOR";

/// AML opcodes [`kserv_aml`] reads (ACPI 6.5, 20.2): `Name`, `Method`,
/// `Return`, `Package`, and the prefixes of the constants an ID is.
const NAME_OP: u8 = 0x08;
const METHOD_OP: u8 = 0x14;
const RETURN_OP: u8 = 0xa4;
const PACKAGE_OP: u8 = 0x12;
const WORD_PREFIX: u8 = 0x0b;
const DWORD_PREFIX: u8 = 0x0c;
const STRING_PREFIX: u8 = 0x0d;
/// The names whose values are IDs.
const ID_NAMES: [&[u8; 4]; 2] = [b"_HID", b"_CID"];

/// An AML table KServ sees: `table` (a DSDT or an SSDT; any other
/// signature is refused) with the `_HID`/`_CID`s in `hidden` (the IDs of
/// the devices KCore keeps, `namespace::ids_to_hide`) and [`PCI_HOST_IDS`]
/// renamed to IDs no driver binds to, so that KServ's kernel does not probe
/// them (it would touch memory KCore keeps and take an external abort).
///
/// The AML is not parsed: the table is searched for the exact encodings of
/// an ID's definition, and the IDs among their values are patched in place,
/// so every offset and length stays as it was; the checksum is fixed. The
/// definitions are `Name (_HID|_CID, <value>)` and `Method (_HID|_CID, 0,
/// ...) { Return (<value>) ... }` (the method's first statement: it always
/// returns that value), both with the name as one segment (a device's own
/// object, not a path); a value is an ID constant (`EisaId`, encoded as a
/// DWord or Word constant, or a string) or a `Package` of them (a `_CID`
/// list: its elements in order, until one is not such a constant, each
/// whole inside the package). A package whose length runs past the table is
/// left alone. Not renamed: an ID a method computes or returns from
/// another object, a `VarPackage`. Returns the table and how many IDs were
/// renamed.
pub fn kserv_aml(table: &[u8], hidden: &[&str]) -> Result<(Vec<u8>, usize), Error> {
    let sig = signature(table);
    if sig != *b"DSDT" && sig != *b"SSDT" {
        return Err(Error::BadTable {
            signature: sig,
            reason: "is not an AML table (a DSDT or an SSDT)",
        });
    }
    check_sdt(table, &sig)?;
    let hide = |id: &[u8]| {
        hidden
            .iter()
            .chain(&PCI_HOST_IDS)
            .any(|h| h.as_bytes() == id)
    };
    let mut out = table.to_vec();
    let mut renamed = 0;
    for at in HEADER_LEN..out.len() {
        if let Some((value, end)) = id_definition(&out, at) {
            renamed += rename_value(&mut out, value, end, &hide);
        }
    }
    let len = out.len();
    fix_checksum(&mut out, len, SDT_CHECKSUM);
    Ok((out, renamed))
}

/// If an ID's definition starts at `at` ([`kserv_aml`]), where its value
/// starts and the end of the bytes it may take.
fn id_definition(aml: &[u8], at: usize) -> Option<(usize, usize)> {
    let is_id = |name: usize| {
        aml.get(name..name + 4)
            .is_some_and(|n| ID_NAMES.iter().any(|id| id.as_slice() == n))
    };
    match *aml.get(at)? {
        NAME_OP if is_id(at + 1) => Some((at + 5, aml.len())),
        METHOD_OP => {
            let (len, skip) = pkg_length(aml, at + 1)?;
            let end = (at + 1).checked_add(len).filter(|&e| e <= aml.len())?;
            let name = at + 1 + skip;
            // No arguments, and `Return` first.
            let flags = *aml.get(name + 4)?;
            let first = *aml.get(name + 5)?;
            (is_id(name) && flags & 7 == 0 && first == RETURN_OP).then_some((name + 6, end))
        }
        _ => None,
    }
}

/// A PkgLength at `at` (ACPI 6.5, 20.2.4): its value (which counts its own
/// bytes) and how many bytes it takes.
fn pkg_length(aml: &[u8], at: usize) -> Option<(usize, usize)> {
    let lead = *aml.get(at)?;
    let follow = usize::from(lead >> 6);
    if follow == 0 {
        return Some((usize::from(lead & 0x3f), 1));
    }
    let mut len = usize::from(lead & 0x0f);
    for k in 0..follow {
        len |= usize::from(*aml.get(at + 1 + k)?) << (4 + 8 * k);
    }
    Some((len, 1 + follow))
}

/// Renames the hidden IDs of the value at `at`, which ends by `end`: an ID
/// constant or a package of them. Returns how many it renamed.
fn rename_value(aml: &mut [u8], at: usize, end: usize, hide: &dyn Fn(&[u8]) -> bool) -> usize {
    if aml.get(at) != Some(&PACKAGE_OP) {
        return rename_id(aml, at, end, hide).map_or(0, |(_, hit)| usize::from(hit));
    }
    let Some((len, skip)) = pkg_length(aml, at + 1) else {
        return 0;
    };
    let Some(end) = (at + 1).checked_add(len).filter(|&e| e <= end) else {
        return 0;
    };
    let Some(&count) = aml.get(at + 1 + skip) else {
        return 0;
    };
    let mut next = at + 2 + skip;
    let mut renamed = 0;
    for _ in 0..count {
        let Some((after, hit)) = rename_id(aml, next, end, hide) else {
            break;
        };
        renamed += usize::from(hit);
        next = after;
    }
    renamed
}

/// Renames the ID constant at `at` if it is hidden, touching only bytes
/// before `end`: a DWord or Word constant (an EISA ID; its vendor becomes
/// `KCR`) or a string (a PNP ID of 7 characters, its vendor becoming `KCR`,
/// or an ACPI ID of 8, `KCOR`). Returns where the constant ends and whether
/// it was renamed; `None` if no such constant lies whole before `end`.
fn rename_id(
    aml: &mut [u8],
    at: usize,
    end: usize,
    hide: &dyn Fn(&[u8]) -> bool,
) -> Option<(usize, bool)> {
    let prefix = *aml.get(at)?;
    let body = aml.get_mut(at + 1..end)?;
    match prefix {
        WORD_PREFIX | DWORD_PREFIX => {
            let width = if prefix == WORD_PREFIX { 2 } else { 4 };
            let id = body.get_mut(..width)?;
            let value = id.iter().rev().fold(0u64, |v, &b| (v << 8) | u64::from(b));
            let hit = crate::namespace::eisa_id(value).is_some_and(|t| hide(t.as_bytes()));
            if hit {
                id.get_mut(..2)?.copy_from_slice(&KCORE_EISA_VENDOR);
            }
            Some((at + 1 + width, hit))
        }
        STRING_PREFIX => {
            let len = body.iter().position(|&b| b == 0)?;
            let id = body.get_mut(..len)?;
            let vendor: &[u8] = match len {
                7 => KCORE_PNP_VENDOR,
                8 => KCORE_ACPI_VENDOR,
                _ => &[],
            };
            let hit = !vendor.is_empty() && hide(id);
            if hit {
                id.get_mut(..vendor.len())?.copy_from_slice(vendor);
            }
            Some((at + 2 + len, hit))
        }
        _ => None,
    }
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
