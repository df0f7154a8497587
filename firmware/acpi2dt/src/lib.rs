//! The firmware's ACPI tables as KCore's device tree, and the ACPI tables
//! KServ sees. For the EFI loader (`kcore.efi`): KCore itself reads only a
//! device tree (`kcore_boot::platform::parse`), so on a UEFI + ACPI machine
//! the loader calls [`platform_dt`] and enters KCore with its result, and
//! `kcore/` never learns about ACPI.
//!
//! ```text
//! let readable = memory::readable(&efi_map)?;
//! let mem = unsafe { IdentityMem::new(&readable) }; // boot services' 1:1 map
//! let tables = Tables::load(&mem, rsdp)?;        // copies + validation
//! let dt = platform_dt(&tables, &efi_map, &Chosen { .. })?;
//! let madt = kserv_madt(tables.find(b"APIC")?.1)?; // KServ's MADT ...
//! let hide = namespace::ids_to_hide(&namespace::devices(&tables.aml())?);
//! let (dsdt, _) = kserv_aml(tables.dsdt()?.1, &hide)?; // ... and each of tables.ssdts()
//! let xsdt = kserv_xsdt(tables.bytes(tables.xsdt_address())?, &[Replace { .. }])?;
//! let rsdp = kserv_rsdp(tables.bytes(tables.rsdp_address())?, new_xsdt)?;
//! ```
//!
//! The tables are read with the `acpi` crate (5.2, `default-features =
//! false`: 6.x declares a nightly feature) after [`Tables::load`] copied the
//! RSDP, the XSDT and the six tables used here (MADT, FADT, SPCR, GTDT,
//! IORT, MCFG), the DSDT and the SSDTs out of memory and checked their signatures, lengths and
//! checksums and the MADT's entry list, since the crate trusts them (see
//! [`tables`]); other tables are not read. The AML of the DSDT and SSDTs is
//! read by 6.1.1's interpreter (built on our stable toolchain with
//! `RUSTC_BOOTSTRAP=acpi`), see [`namespace`]. The crate has no GTDT or IORT;
//! their fixed fields are read here from the validated bytes. Malformed
//! input gives an [`Error`], never a panic (host tests mutate tables at
//! random).
//!
//! | ACPI | device tree written |
//! |---|---|
//! | MADT GICC, flags bit 0 (enabled) | `/cpus/cpu@<mpidr>`: `reg` = GICC `MPIDR` (2 cells), `enable-method = "psci"` when the FADT has PSCI; disabled GICCs are left out |
//! | MADT GICD | `interrupt-controller@<base>`, `arm,gic-v3`, first `reg` = base + 64 KiB, the root's `interrupt-parent`; GIC version 3, 4 or 0 (discover); 1 and 2 are refused |
//! | MADT GICR (each) | next `reg` entries, `#redistributor-regions` = their number |
//! | GICC `GICR base`, when there is no GICR structure | one redistributor region per enabled CPU, 128 KiB (256 KiB on GICv4) |
//! | GICC `Physical Base Address`, `GICH`, `GICV` (first enabled GICC) | `reg` entries after the redistributors (GICC; GICH and GICV only with all three), 8 KiB each |
//! | GICC `VGIC Maintenance interrupt` (the same on every CPU) | the GIC's `interrupts = <1 (intid-16) 4>` |
//! | MADT GIC ITS (each) | `msi-controller@<base>` child, `arm,gic-v3-its`, 128 KiB |
//! | FADT `ARM boot architecture flags` bit 0 / bit 1 | `/psci` (`arm,psci-1.0`), `method` = `"hvc"` if bit 1 else `"smc"`; no `/psci` without bit 0 |
//! | SPCR interface type 3 / 0x0d, 0x0e / 0x10, base in system memory | `serial@<base>` `arm,pl011` / `arm,sbsa-uart` + `arm,pl011` / `brcm,bcm2835-aux-uart`, 4 KiB; `/chosen/stdout-path` |
//! | GTDT secure EL1, EL1, virtual, EL2 timer GSIVs and flags | `/timer` `arm,armv8-timer` `interrupts`, only when all four are PPIs |
//! | IORT SMMUv3 node (type 4) base | `iommu@<base>` `arm,smmu-v3`, 128 KiB |
//! | MCFG entry | `pcie@<ecam>` `pci-host-ecam-generic` (KCore keeps it from KServ as a DMA master, as on the DT path) |
//! | DSDT/SSDT `Device` whose `_CRS` names memory, `_HID` not in [`namespace::KSERV_DEVICES`] | `acpi-device@<base>`, `compatible` = its DT equivalent (fw_cfg, virtio-mmio) and `kcore,acpi-device` (a DMA master KCore keeps), `reg` = the memory, `kcore,acpi-path`, `kcore,acpi-hid` ([`namespace`]) |
//! | EFI memory map: descriptors that are memory (WB, WT or WC attribute) | `memory@<base>` per merged bank |
//! | of those, the ones not [`memory::usable`] (runtime, ACPI NVS, reserved, ...), ACPI reclaim, and [`Chosen::reserved`] | `/memreserve/` entries |
//! | [`Chosen::bootargs`] | `/chosen/bootargs` |
//! | [`Chosen::extra`] | further `/chosen` properties, as given |
//!
//! Not translated: AML beyond the devices' IDs and memory (no `_STA`,
//! interrupts, `_DSD` properties), GICv2 and GIC MSI frames, the ACPI
//! parking protocol (CPUs get no `enable-method` without PSCI), GICC
//! `online capable` CPUs, IORT SMMUv1/v2 and ID mappings, NUMA (SRAT/SLIT),
//! DBG2, PPTT. The sizes of frames ACPI gives only a base for are the
//! architecture's (constants in [`describe`]).

#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]

extern crate alloc;

pub mod describe;
mod dt;
pub mod kserv;
pub mod memory;
pub mod namespace;
pub mod tables;

use alloc::string::String;
use core::fmt;

use kcore::addr::MemRange;
use kcore_boot::platform::DtError;

pub use describe::{Description, describe};
pub use kserv::{XsdtEdit, fadt_dsdt, kserv_aml, kserv_fadt, kserv_madt, kserv_rsdp, kserv_xsdt};
pub use memory::{MemDesc, banks, usable};
pub use tables::{IdentityMem, PhysMem, SliceMem, Tables};

/// The most enabled CPUs a MADT may list: Linux's arm64 `NR_CPUS` limit
/// (4096). KCore itself manages fewer (`MAX_CPUS` in `boot/src/el2`).
pub const MAX_CPUS: usize = 4096;

/// What the loader adds to the tree besides the tables and the memory map.
#[derive(Clone, Copy, Debug, Default)]
pub struct Chosen<'a> {
    /// `/chosen/bootargs` (KServ's command line from the loader).
    pub bootargs: Option<&'a str>,
    /// Ranges of usable memory KCore must not take (the loader's own data,
    /// the tables it wrote for KServ): `/memreserve/` entries.
    pub reserved: &'a [MemRange],
    /// Further `/chosen` properties `(name, value)`, written as given: the
    /// UEFI hand-off (`linux,uefi-*`) and KCore's loader properties
    /// (`kcore,acpi`, `kcore,uefi-mmap-capacity`).
    pub extra: &'a [(&'a str, &'a [u8])],
}

/// Why the tables or the memory map were refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    /// The RSDP is missing or malformed.
    Rsdp(&'static str),
    /// [`PhysMem`] cannot read `len` bytes at `address` (a table or length
    /// pointing past the memory).
    Unreadable {
        /// Physical address.
        address: u64,
        /// Bytes wanted.
        len: u64,
    },
    /// A table's bytes do not sum to zero.
    BadChecksum {
        /// Its signature.
        signature: [u8; 4],
    },
    /// A table is malformed.
    BadTable {
        /// Its signature.
        signature: [u8; 4],
        /// What is wrong.
        reason: &'static str,
    },
    /// A table KCore needs is absent.
    Missing([u8; 4]),
    /// The `acpi` crate refused a table.
    Acpi(String),
    /// The DSDT's or an SSDT's AML cannot be read or a device's objects
    /// cannot be evaluated: KCore cannot tell which memory KServ may have
    /// ([`namespace`]).
    Aml(String),
    /// The MADT lists no enabled CPU.
    NoCpus,
    /// The MADT lists more enabled CPUs than [`MAX_CPUS`].
    TooManyCpus {
        /// The limit.
        limit: usize,
    },
    /// Two enabled GICCs have the same MPIDR.
    DuplicateMpidr(u64),
    /// Two GIC ITS structures have the same base.
    DuplicateIts(u64),
    /// The GICD's GIC version is not 3 or 4.
    UnsupportedGic(u8),
    /// A memory-map descriptor wraps past the end of the address space.
    BadMemoryMap {
        /// `PhysicalStart`.
        base: u64,
        /// `NumberOfPages`.
        pages: u64,
    },
    /// The bootargs contain a NUL byte.
    BadBootargs,
    /// An edit of KServ's tables is inconsistent.
    BadEdit(&'static str),
    /// The device tree could not be written.
    Dt(DtError),
}

impl From<DtError> for Error {
    fn from(e: DtError) -> Self {
        Error::Dt(e)
    }
}

/// A signature for messages.
pub(crate) struct Sig<'a>(pub(crate) &'a [u8; 4]);

impl fmt::Display for Sig<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for &b in self.0 {
            let c = if b.is_ascii_graphic() { b as char } else { '?' };
            write!(f, "{c}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Rsdp(why) => write!(f, "ACPI RSDP: {why}"),
            Error::Unreadable { address, len } => {
                write!(f, "ACPI: cannot read {len:#x} bytes at {address:#x}")
            }
            Error::BadChecksum { signature } => {
                write!(f, "ACPI table {}: bad checksum", Sig(signature))
            }
            Error::BadTable { signature, reason } => {
                write!(f, "ACPI table {} {reason}", Sig(signature))
            }
            Error::Missing(signature) => write!(f, "ACPI table {} is missing", Sig(signature)),
            Error::Acpi(e) => write!(f, "ACPI: the acpi crate refused a table: {e}"),
            Error::Aml(e) => write!(
                f,
                "ACPI AML: {e}; KCore cannot tell which devices may master memory, so it does not boot"
            ),
            Error::NoCpus => f.write_str("ACPI MADT lists no enabled CPU"),
            Error::TooManyCpus { limit } => {
                write!(f, "ACPI MADT lists more than {limit} enabled CPUs")
            }
            Error::DuplicateMpidr(m) => write!(f, "ACPI MADT lists MPIDR {m:#x} twice"),
            Error::DuplicateIts(b) => write!(f, "ACPI MADT lists the ITS at {b:#x} twice"),
            Error::UnsupportedGic(v) => {
                write!(
                    f,
                    "ACPI MADT GICD version {v}: only GICv3 and GICv4 are supported"
                )
            }
            Error::BadMemoryMap { base, pages } => write!(
                f,
                "EFI memory map: {pages:#x} pages at {base:#x} wrap past the end of memory"
            ),
            Error::BadBootargs => f.write_str("bootargs contain a NUL byte"),
            Error::BadEdit(why) => write!(f, "KServ's ACPI tables: {why}"),
            Error::Dt(e) => write!(f, "KCore's device tree: {e}"),
        }
    }
}

/// KCore's device tree for the machine `tables` describe, with RAM from
/// the EFI memory map `memory` and the loader's `chosen` additions. The
/// result is accepted by `kcore_boot::platform::parse`.
pub fn platform_dt(
    tables: &Tables,
    memory: &[MemDesc],
    chosen: &Chosen<'_>,
) -> Result<alloc::vec::Vec<u8>, Error> {
    platform_dt_of(&describe(tables)?, memory, chosen)
}

/// [`platform_dt`] for a machine already read ([`describe`]), so that a
/// loader that builds the tree more than once (on the memory map before
/// and after `ExitBootServices`) reads the tables and interprets the AML
/// once.
pub fn platform_dt_of(
    d: &Description,
    memory: &[MemDesc],
    chosen: &Chosen<'_>,
) -> Result<alloc::vec::Vec<u8>, Error> {
    let banks = banks(memory)?;
    dt::write(d, &banks, chosen)
}
