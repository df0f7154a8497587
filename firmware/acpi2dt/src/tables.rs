//! Reading the firmware's tables into validated copies, and the `acpi`
//! crate's handler over those copies.
//!
//! The `acpi` crate maps tables through [`AcpiHandler`] and then trusts
//! every length it finds: a table whose `length` runs past the memory the
//! firmware gave, or a MADT entry of length 0 (its entry iterator would
//! never advance), is undefined behaviour or a hang there. So [`Tables::load`]
//! first copies the RSDP, the XSDT and the tables this crate reads out of
//! memory through [`PhysMem`] (which answers only for bytes that exist),
//! checking signatures, lengths and checksums, and walks the MADT's entry
//! list; the crate then only ever sees those copies. Each copy is followed by
//! [`PAD`] zero bytes, because the crate's table structs are those of the
//! newest ACPI revision and an older, shorter table is read with them.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::ptr::NonNull;

use acpi::{AcpiHandler, AcpiTables, PhysicalMapping};
use kcore::addr::MemRange;

use crate::Error;

/// Read access to the firmware's memory, by physical address.
pub trait PhysMem {
    /// The `len` bytes at physical address `address`, or `None` if they are
    /// not all readable.
    fn read(&self, address: u64, len: usize) -> Option<&[u8]>;
}

/// Memory given as one byte buffer that starts at physical address `base`:
/// tests, and a loader that copied the tables somewhere.
#[derive(Clone, Copy, Debug)]
pub struct SliceMem<'a> {
    /// Physical address of `bytes[0]`.
    pub base: u64,
    /// The memory.
    pub bytes: &'a [u8],
}

impl PhysMem for SliceMem<'_> {
    fn read(&self, address: u64, len: usize) -> Option<&[u8]> {
        let start = usize::try_from(address.checked_sub(self.base)?).ok()?;
        self.bytes.get(start..start.checked_add(len)?)
    }
}

/// The firmware's memory as the EFI loader sees it: identity-mapped, and
/// read only inside the ranges given (for example
/// [`crate::memory::readable`] of the EFI memory map), so that a table
/// address pointing at MMIO or at nothing gives [`Error::Unreadable`]
/// rather than a fault.
#[derive(Clone, Copy, Debug)]
pub struct IdentityMem<'a> {
    readable: &'a [MemRange],
}

impl<'a> IdentityMem<'a> {
    /// # Safety
    ///
    /// Every byte of every range in `readable` must be mapped at its
    /// physical address, readable, and not written while the result (or a
    /// slice it returned) lives.
    pub unsafe fn new(readable: &'a [MemRange]) -> Self {
        IdentityMem { readable }
    }
}

impl PhysMem for IdentityMem<'_> {
    fn read(&self, address: u64, len: usize) -> Option<&[u8]> {
        let end = address.checked_add(u64::try_from(len).ok()?)?;
        let inside = self
            .readable
            .iter()
            .any(|r| r.base() <= address && end <= r.end());
        if !inside || address == 0 {
            return None;
        }
        let ptr = usize::try_from(address).ok()? as *const u8;
        // SAFETY: `[address, end)` lies in one range `new`'s caller promised
        // is identity-mapped, readable and unchanging while `self` lives; a
        // byte slice has alignment 1, and `address` is not null.
        Some(unsafe { core::slice::from_raw_parts(ptr, len) })
    }
}

/// Zero bytes after each copy: the largest table struct of the `acpi` crate
/// this crate reads (the FADT, 276 bytes) fits in any copy of at least a
/// header.
pub const PAD: usize = 512;
/// The longest table accepted (a sanity bound; real MADTs for 256 CPUs are
/// about 21 KiB).
pub const MAX_TABLE_LEN: u32 = 16 << 20;
/// Length of an SDT header.
pub const HEADER_LEN: usize = 36;
/// The tables copied and read: MADT, FADT, SPCR, GTDT, IORT, MCFG (and the
/// DSDT the FADT names and every SSDT, for their AML).
pub const READ_SIGNATURES: [&[u8; 4]; 6] = [b"APIC", b"FACP", b"SPCR", b"GTDT", b"IORT", b"MCFG"];

/// MADT entry types and the minimum lengths this crate needs of them.
pub(crate) const MADT_GICC: u8 = 0x0b;
pub(crate) const MADT_GICD: u8 = 0x0c;
pub(crate) const MADT_GICR: u8 = 0x0e;
pub(crate) const MADT_ITS: u8 = 0x0f;
/// GICC up to and including MPIDR (ACPI 5.1).
pub(crate) const GICC_MIN_LEN: usize = 76;
const MADT_MIN_LENS: [(u8, usize); 4] = [
    (MADT_GICC, GICC_MIN_LEN),
    (MADT_GICD, 24),
    (MADT_GICR, 16),
    (MADT_ITS, 20),
];
/// Offset of the first MADT entry.
pub(crate) const MADT_ENTRIES: usize = 44;

/// The firmware's tables, copied and validated.
pub struct Tables {
    rsdp: u64,
    xsdt: u64,
    /// The DSDT the FADT names, then the SSDTs in XSDT order: the AML.
    aml: Vec<u64>,
    /// Physical address → copy (table bytes, then [`PAD`] zeroes).
    copies: BTreeMap<u64, Vec<u8>>,
}

/// Little-endian reads from a byte slice; `None` past the end.
pub(crate) fn le16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
/// See [`le16`].
pub(crate) fn le32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
/// See [`le16`].
pub(crate) fn le64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// Whether `bytes` sum to zero modulo 256.
pub(crate) fn sums_to_zero(bytes: &[u8]) -> bool {
    bytes.iter().fold(0u8, |s, &b| s.wrapping_add(b)) == 0
}

/// Reads the SDT at `address` whole: its header says how long it is.
/// `expect` is the signature it must have, if any.
fn read_sdt<'m>(
    mem: &'m dyn PhysMem,
    address: u64,
    expect: Option<&[u8; 4]>,
) -> Result<&'m [u8], Error> {
    let unreadable = |len| Error::Unreadable { address, len };
    let header = mem
        .read(address, HEADER_LEN)
        .ok_or(unreadable(HEADER_LEN as u64))?;
    let signature = signature(header);
    if let Some(e) = expect
        && *e != signature
    {
        return Err(Error::BadTable {
            signature,
            reason: "has the wrong signature",
        });
    }
    let len = le32(header, 4).unwrap_or_default();
    if !(HEADER_LEN as u32..=MAX_TABLE_LEN).contains(&len) {
        return Err(Error::BadTable {
            signature,
            reason: "has a length shorter than its header or over 16 MiB",
        });
    }
    let bytes = mem
        .read(address, len as usize)
        .ok_or(unreadable(len.into()))?;
    if !sums_to_zero(bytes) {
        return Err(Error::BadChecksum { signature });
    }
    Ok(bytes)
}

/// The table's signature.
pub(crate) fn signature(table: &[u8]) -> [u8; 4] {
    let mut s = [0; 4];
    s.copy_from_slice(table.get(..4).unwrap_or(&[0; 4]));
    s
}

/// Walks the MADT's entries: each at least 2 bytes, inside the table, and
/// long enough for the fields this crate reads. Calls `f(type, entry)`.
pub(crate) fn walk_madt<'a>(
    madt: &'a [u8],
    mut f: impl FnMut(u8, &'a [u8]) -> Result<(), Error>,
) -> Result<(), Error> {
    let bad = |reason| Error::BadTable {
        signature: *b"APIC",
        reason,
    };
    let len = le32(madt, 4)
        .map(|l| l as usize)
        .filter(|&l| l >= MADT_ENTRIES && l <= madt.len())
        .ok_or(bad("is shorter than its fixed fields"))?;
    let mut at = MADT_ENTRIES;
    while at < len {
        let (Some(&ty), Some(&elen)) = (madt.get(at), madt.get(at + 1)) else {
            return Err(bad("has an entry header past its end"));
        };
        let elen = usize::from(elen);
        if elen < 2 {
            return Err(bad("has an entry shorter than its header"));
        }
        let entry = madt
            .get(at..at + elen)
            .filter(|_| at + elen <= len)
            .ok_or(bad("has an entry running past its end"))?;
        if MADT_MIN_LENS.iter().any(|&(t, min)| t == ty && elen < min) {
            return Err(bad("has a GIC entry shorter than ACPI 5.1's"));
        }
        f(ty, entry)?;
        at += elen;
    }
    Ok(())
}

impl Tables {
    /// Copies the tables the RSDP at `rsdp` leads to. Needs ACPI 2.0 or
    /// later (an XSDT); refuses bad signatures, checksums and lengths.
    pub fn load(mem: &dyn PhysMem, rsdp: u64) -> Result<Tables, Error> {
        let head = mem.read(rsdp, 36).ok_or(Error::Unreadable {
            address: rsdp,
            len: 36,
        })?;
        if head.get(..8) != Some(b"RSD PTR ".as_slice()) {
            return Err(Error::Rsdp("no \"RSD PTR \" signature"));
        }
        if head.get(15).copied().unwrap_or_default() < 2 {
            return Err(Error::Rsdp("revision 0 (ACPI 1.0, no XSDT)"));
        }
        if !sums_to_zero(head.get(..20).unwrap_or_default()) {
            return Err(Error::Rsdp("bad checksum"));
        }
        let len = le32(head, 20).unwrap_or_default();
        if !(36..=4096).contains(&len) {
            return Err(Error::Rsdp("bad length"));
        }
        let rsdp_bytes = mem.read(rsdp, len as usize).ok_or(Error::Unreadable {
            address: rsdp,
            len: len.into(),
        })?;
        if !sums_to_zero(rsdp_bytes) {
            return Err(Error::Rsdp("bad extended checksum"));
        }
        let xsdt = le64(head, 24).unwrap_or_default();
        let xsdt_bytes = read_sdt(mem, xsdt, Some(b"XSDT"))?;
        if !(xsdt_bytes.len() - HEADER_LEN).is_multiple_of(8) {
            return Err(Error::BadTable {
                signature: *b"XSDT",
                reason: "has a partial 64-bit entry",
            });
        }
        let mut copies = BTreeMap::new();
        let padded = |b: &[u8]| [b, &[0; PAD]].concat();
        copies.insert(rsdp, padded(rsdp_bytes));
        copies.insert(xsdt, padded(xsdt_bytes));
        let mut ssdts = Vec::new();
        for k in (HEADER_LEN..xsdt_bytes.len()).step_by(8) {
            let address = le64(xsdt_bytes, k).unwrap_or_default();
            let header = mem
                .read(address, 4)
                .ok_or(Error::Unreadable { address, len: 4 })?;
            let ssdt = header == b"SSDT";
            if !ssdt && !READ_SIGNATURES.iter().any(|s| s.as_slice() == header) {
                continue;
            }
            let table = read_sdt(mem, address, None)?;
            if ssdt && !ssdts.contains(&address) {
                ssdts.push(address);
            }
            if copies.contains_key(&address) {
                continue;
            }
            if signature(table) == *b"APIC" {
                walk_madt(table, |_, _| Ok(()))?;
            }
            copies.insert(address, padded(table));
        }
        let mut t = Tables {
            rsdp,
            xsdt,
            aml: Vec::new(),
            copies,
        };
        // The DSDT, if the FADT names one (a FADT naming none describes no
        // AML devices; `kcore.efi` refuses it when it writes KServ's).
        let dsdt = t
            .find(b"FACP")
            .and_then(|(_, fadt)| crate::kserv::fadt_dsdt(fadt).ok());
        if let Some(address) = dsdt {
            let table = read_sdt(mem, address, Some(b"DSDT"))?;
            t.copies.insert(address, padded(table));
            t.aml.push(address);
        }
        t.aml.extend(ssdts);
        Ok(t)
    }

    /// The AML tables, whole: the DSDT (if the FADT names one), then the
    /// SSDTs in XSDT order.
    pub fn aml(&self) -> Vec<&[u8]> {
        self.aml.iter().filter_map(|&a| self.bytes(a)).collect()
    }

    /// The SSDTs in XSDT order (each once): their addresses and bytes.
    pub fn ssdts(&self) -> Vec<(u64, &[u8])> {
        self.aml
            .iter()
            .filter_map(|&a| Some((a, self.bytes(a)?)))
            .filter(|(_, t)| signature(t) == *b"SSDT")
            .collect()
    }

    /// The DSDT's address and bytes, if the FADT names one.
    pub fn dsdt(&self) -> Option<(u64, &[u8])> {
        let a = *self.aml.first()?;
        let t = self.bytes(a)?;
        (signature(t) == *b"DSDT").then_some((a, t))
    }

    /// Physical address of the RSDP.
    pub fn rsdp_address(&self) -> u64 {
        self.rsdp
    }

    /// Physical address of the XSDT.
    pub fn xsdt_address(&self) -> u64 {
        self.xsdt
    }

    /// The first table (of [`READ_SIGNATURES`], or the RSDP/XSDT) with
    /// `sig`, in XSDT order: its address and bytes.
    pub fn find(&self, sig: &[u8; 4]) -> Option<(u64, &[u8])> {
        let xsdt = self.bytes(self.xsdt)?;
        (HEADER_LEN..xsdt.len())
            .step_by(8)
            .filter_map(|k| le64(xsdt, k))
            .find_map(|a| {
                self.bytes(a)
                    .filter(|t| signature(t) == *sig)
                    .map(|t| (a, t))
            })
    }

    /// The bytes of the copied table at `address`, without the padding.
    pub fn bytes(&self, address: u64) -> Option<&[u8]> {
        let copy = self.copies.get(&address)?;
        let len = if address == self.rsdp {
            le32(copy, 20)?
        } else {
            le32(copy, 4)?
        };
        copy.get(..len as usize)
    }

    /// The `acpi` crate's view of the copies.
    pub fn acpi(&self) -> Result<AcpiTables<Handler<'_>>, Error> {
        let handler = Handler { tables: self };
        // SAFETY: the handler maps only the copies `load` validated (and a
        // zero page for any other address); `rsdp` is one of them.
        unsafe { AcpiTables::from_rsdp(handler, self.rsdp as usize) }.map_err(Error::from)
    }
}

/// The `acpi` crate's handler over [`Tables`]' copies.
#[derive(Clone, Copy)]
pub struct Handler<'a> {
    tables: &'a Tables,
}

/// What an address that is not a copy maps to: zeroes, which no signature
/// matches, so the crate skips it (it maps a header before anything else).
static ZEROES: [u8; 4096] = [0; 4096];

impl AcpiHandler for Handler<'_> {
    unsafe fn map_physical_region<T>(
        &self,
        physical_address: usize,
        size: usize,
    ) -> PhysicalMapping<Self, T> {
        let copy = self
            .tables
            .copies
            .get(&(physical_address as u64))
            .map(Vec::as_slice)
            .filter(|c| c.len() >= size && c.len() >= size_of::<T>());
        let bytes = copy.unwrap_or(&ZEROES);
        let len = bytes.len();
        let start = NonNull::from(bytes).cast::<T>();
        let region = size.min(len);
        // SAFETY: `start` points at `len` readable bytes that live as long as
        // `self.tables` (a copy) or forever (`ZEROES`), and are never
        // written; the crate's table types are `repr(packed)` (alignment 1)
        // and no larger than a copy's padding or `ZEROES`.
        unsafe { PhysicalMapping::new(physical_address, start, region, len, *self) }
    }

    fn unmap_physical_region<T>(_region: &PhysicalMapping<Self, T>) {}
}
