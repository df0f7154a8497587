//! What the ACPI tables say about the machine, in the terms of KCore's
//! device tree ([`Description`]).
//!
//! The MADT, FADT, SPCR and MCFG are read through the `acpi` crate; the
//! GTDT and IORT, which it does not model, are read here from their fixed
//! fields in the validated copies (`tables`); the DSDT's and SSDTs' AML by
//! the `aml` crate ([`crate::namespace`]).

use alloc::collections::BTreeSet;
use alloc::vec::Vec;

use acpi::fadt::Fadt;
use acpi::madt::{Madt, MadtEntry};
use acpi::mcfg::Mcfg;
use acpi::spcr::{Spcr, SpcrInterfaceType};
use acpi::{AcpiError, AcpiTables};

use crate::namespace::{self, AcpiDevice};
use crate::tables::{Handler, Tables, le16, le32, le64};
use crate::{Error, MAX_CPUS};

/// Size of a GICv3 distributor frame.
pub const GICD_SIZE: u64 = 0x1_0000;
/// Size of one GICv3 redistributor (RD_base + SGI_base frames).
pub const GICR_V3_SIZE: u64 = 0x2_0000;
/// Size of one GICv4 redistributor (adds VLPI_base and a reserved frame).
pub const GICR_V4_SIZE: u64 = 0x4_0000;
/// Size of an ITS register frame (control and translation pages).
pub const ITS_SIZE: u64 = 0x2_0000;
/// Size given to the GICC, GICH and GICV frames.
pub const GIC_CPU_FRAME_SIZE: u64 = 0x2000;
/// Size of an SMMUv3's two register pages.
pub const SMMU_V3_SIZE: u64 = 0x2_0000;
/// Size of a PL011 / SBSA UART frame.
pub const UART_SIZE: u64 = 0x1000;

/// The console UART's register interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UartType {
    /// SPCR type 3: an Arm PL011.
    Pl011,
    /// SPCR types 0x0d/0x0e: an Arm SBSA generic UART (a PL011 subset).
    SbsaGeneric,
    /// SPCR type 0x10: the BCM2835 mini UART.
    Bcm2835,
}

/// The GIC, from the MADT.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GicDesc {
    /// GICD `GIC version` (3 or 4; 0 "discover" is taken as 3).
    pub version: u8,
    /// GICD base.
    pub dist: u64,
    /// Redistributor regions `(base, size)`: the GICR structures, or one
    /// per enabled CPU from GICC `GICR base` when there are none.
    pub redist: Vec<(u64, u64)>,
    /// GICC `Physical Base Address` of the first enabled CPU (0: none).
    pub cpu_if: u64,
    /// GICC `GICH` of the first enabled CPU (0: none).
    pub hyp_if: u64,
    /// GICC `GICV` of the first enabled CPU (0: none).
    pub vcpu_if: u64,
    /// GICC `VGIC Maintenance interrupt` (a PPI INTID; 0: none).
    pub maintenance: u32,
    /// ITS bases, in MADT order.
    pub its: Vec<u64>,
}

/// The architected timer's PPIs from the GTDT: `(INTID, GTDT flags)` for
/// the secure EL1, non-secure EL1, virtual and EL2 timers.
pub type TimerPpis = [(u32, u32); 4];

/// A PCIe ECAM window from the MCFG.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ecam {
    /// Address of the first bus's configuration space.
    pub base: u64,
    /// `(end bus - start bus + 1) << 20`.
    pub size: u64,
    /// PCI segment group.
    pub segment: u16,
    /// First bus.
    pub bus_start: u8,
    /// Last bus.
    pub bus_end: u8,
}

/// What the tables describe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Description {
    /// MPIDRs of the enabled CPUs, in MADT order.
    pub cpus: Vec<u64>,
    /// The GIC.
    pub gic: GicDesc,
    /// PSCI from FADT `ARM boot architecture flags`: `Some(true)` for HVC,
    /// `Some(false)` for SMC, `None` without PSCI.
    pub psci_hvc: Option<bool>,
    /// The SPCR console, if KCore has a driver for its type and it is in
    /// system memory.
    pub uart: Option<(u64, UartType)>,
    /// The GTDT's timer PPIs, if all four are PPIs.
    pub timer: Option<TimerPpis>,
    /// SMMUv3 bases from the IORT.
    pub smmu_v3: Vec<u64>,
    /// PCIe ECAM windows from the MCFG.
    pub ecam: Vec<Ecam>,
    /// The devices of the DSDT and SSDTs KCore keeps from KServ
    /// ([`crate::namespace`]).
    pub acpi_devices: Vec<AcpiDevice>,
}

impl From<AcpiError> for Error {
    fn from(e: AcpiError) -> Self {
        Error::Acpi(alloc::format!("{e:?}"))
    }
}

fn bad(signature: &[u8; 4], reason: &'static str) -> Error {
    Error::BadTable {
        signature: *signature,
        reason,
    }
}

/// Reads [`Description`] from `tables`.
pub fn describe(tables: &Tables) -> Result<Description, Error> {
    let acpi = tables.acpi()?;
    let (cpus, gic) = madt(&acpi)?;
    let psci_hvc = match acpi.find_table::<Fadt>() {
        Ok(fadt) => {
            let flags = fadt.arm_boot_arch;
            flags
                .implements_psci()
                .then(|| flags.use_hvc_as_psci_conduit())
        }
        Err(AcpiError::TableMissing(_)) => None,
        Err(e) => return Err(e.into()),
    };
    let uart = match acpi.find_table::<Spcr>() {
        Ok(spcr) => spcr_uart(&spcr)?,
        Err(AcpiError::TableMissing(_)) => None,
        Err(e) => return Err(e.into()),
    };
    let ecam = match acpi.find_table::<Mcfg>() {
        Ok(mcfg) => mcfg_ecam(&mcfg)?,
        Err(AcpiError::TableMissing(_)) => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    let timer = match tables.find(b"GTDT") {
        Some((_, gtdt)) => gtdt_ppis(gtdt)?,
        None => None,
    };
    let smmu_v3 = match tables.find(b"IORT") {
        Some((_, iort)) => iort_smmu_v3(iort)?,
        None => Vec::new(),
    };
    Ok(Description {
        cpus,
        gic,
        psci_hvc,
        uart,
        timer,
        smmu_v3,
        ecam,
        acpi_devices: namespace::kept(&tables.aml())?,
    })
}

/// CPUs and the GIC from the MADT.
fn madt(acpi: &AcpiTables<Handler<'_>>) -> Result<(Vec<u64>, GicDesc), Error> {
    let madt = acpi.find_table::<Madt>().map_err(|e| match e {
        AcpiError::TableMissing(_) => Error::Missing(*b"APIC"),
        e => e.into(),
    })?;
    let mut cpus = Vec::new();
    let mut seen = BTreeSet::new();
    let mut gicd = None;
    let mut gicr = Vec::new();
    let mut per_cpu_gicr = Vec::new();
    let mut its = Vec::new();
    let mut first_gicc = None;
    for entry in madt.get().entries() {
        match entry {
            MadtEntry::Gicc(g) => {
                // Bit 0: enabled. A disabled, "online capable" CPU could be
                // added later; KCore does not take CPUs at run time.
                if g.flags & 1 == 0 {
                    continue;
                }
                let mpidr = g.mpidr;
                if mpidr & !0xff_00ff_ffff != 0 {
                    return Err(bad(b"APIC", "has a GICC MPIDR with non-affinity bits"));
                }
                if !seen.insert(mpidr) {
                    return Err(Error::DuplicateMpidr(mpidr));
                }
                if cpus.len() == MAX_CPUS {
                    return Err(Error::TooManyCpus { limit: MAX_CPUS });
                }
                cpus.push(mpidr);
                per_cpu_gicr.push(g.gicr_base_address);
                let (cpu_if, hyp_if, vcpu_if, maint) = (
                    g.gic_registers_address,
                    g.gic_hypervisor_registers_address,
                    g.gic_virtual_registers_address,
                    g.vgic_maintenance_interrupt,
                );
                match first_gicc {
                    None => first_gicc = Some((cpu_if, hyp_if, vcpu_if, maint)),
                    Some((_, _, _, m)) if m != maint => {
                        return Err(bad(
                            b"APIC",
                            "gives CPUs different VGIC maintenance interrupts",
                        ));
                    }
                    Some(_) => {}
                }
            }
            MadtEntry::Gicd(d) => {
                if gicd.is_some() {
                    return Err(bad(b"APIC", "has more than one GICD"));
                }
                gicd = Some((d.physical_base_address, d.gic_version));
            }
            MadtEntry::GicRedistributor(r) => {
                let (base, len) = (r.discovery_range_base_address, r.discovery_range_length);
                if base == 0 || len == 0 || base.checked_add(len.into()).is_none() {
                    return Err(bad(b"APIC", "has an empty or wrapping GICR range"));
                }
                gicr.push((base, u64::from(len)));
            }
            MadtEntry::GicInterruptTranslationService(t) => {
                let base = t.physical_base_address;
                if its.contains(&base) {
                    return Err(Error::DuplicateIts(base));
                }
                its.push(base);
            }
            _ => {}
        }
    }
    let (Some((cpu_if, hyp_if, vcpu_if, maintenance)), Some((dist, version))) = (first_gicc, gicd)
    else {
        return Err(if cpus.is_empty() {
            Error::NoCpus
        } else {
            bad(b"APIC", "has no GICD")
        });
    };
    let version = match version {
        0 => 3,
        v @ (3 | 4) => v,
        _ => return Err(Error::UnsupportedGic(version)),
    };
    if gicr.is_empty() {
        let size = if version == 4 {
            GICR_V4_SIZE
        } else {
            GICR_V3_SIZE
        };
        if per_cpu_gicr.contains(&0) {
            return Err(bad(
                b"APIC",
                "has neither a GICR structure nor a GICR base in every GICC",
            ));
        }
        gicr = per_cpu_gicr.into_iter().map(|b| (b, size)).collect();
    }
    if maintenance != 0 && !(16..32).contains(&maintenance) {
        return Err(bad(
            b"APIC",
            "has a VGIC maintenance interrupt that is not a PPI",
        ));
    }
    Ok((
        cpus,
        GicDesc {
            version,
            dist,
            redist: gicr,
            cpu_if,
            hyp_if,
            vcpu_if,
            maintenance,
            its,
        },
    ))
}

/// The console, if KCore can drive it.
fn spcr_uart(spcr: &Spcr) -> Result<Option<(u64, UartType)>, Error> {
    let kind = match spcr.interface_type() {
        SpcrInterfaceType::ArmPL011 => UartType::Pl011,
        SpcrInterfaceType::ArmSBSAGeneric | SpcrInterfaceType::ArmSBSAGeneric32bit => {
            UartType::SbsaGeneric
        }
        SpcrInterfaceType::Bcm2835 => UartType::Bcm2835,
        _ => return Ok(None),
    };
    let Some(address) = spcr.base_address() else {
        return Ok(None);
    };
    let address = address?;
    if address.address_space != acpi::address::AddressSpace::SystemMemory || address.address == 0 {
        return Ok(None);
    }
    Ok(Some((address.address, kind)))
}

/// ECAM windows; a window with end bus before start bus is an error.
fn mcfg_ecam(mcfg: &Mcfg) -> Result<Vec<Ecam>, Error> {
    mcfg.entries()
        .iter()
        .map(|e| {
            let (start, end) = (e.bus_number_start, e.bus_number_end);
            let buses = u64::from(
                end.checked_sub(start)
                    .ok_or(bad(b"MCFG", "has end bus < start bus"))?,
            ) + 1;
            let base = e
                .base_address
                .checked_add(u64::from(start) << 20)
                .filter(|b| b.checked_add(buses << 20).is_some())
                .ok_or(bad(b"MCFG", "has a window that wraps"))?;
            Ok(Ecam {
                base,
                size: buses << 20,
                segment: e.pci_segment_group,
                bus_start: start,
                bus_end: end,
            })
        })
        .collect()
}

/// The GTDT's four timer PPIs (its fixed fields at 48..80), or `None` if one
/// is not a PPI (firmware may leave the secure timer's GSIV 0).
fn gtdt_ppis(gtdt: &[u8]) -> Result<Option<TimerPpis>, Error> {
    let field = |at| le32(gtdt, at).ok_or(bad(b"GTDT", "is shorter than its timer fields"));
    let mut out = [(0, 0); 4];
    for (k, slot) in out.iter_mut().enumerate() {
        *slot = (field(48 + 8 * k)?, field(52 + 8 * k)?);
    }
    Ok(out
        .iter()
        .all(|&(gsiv, _)| (16..32).contains(&gsiv))
        .then_some(out))
}

/// IORT node type of an SMMUv3.
const IORT_SMMU_V3: u8 = 4;

/// SMMUv3 bases from the IORT's node array (header: node count at 36,
/// array offset at 40; node: type at 0, length at 1, SMMUv3 base at 16).
fn iort_smmu_v3(iort: &[u8]) -> Result<Vec<u64>, Error> {
    let err = |reason| bad(b"IORT", reason);
    let count = le32(iort, 36).ok_or(err("is shorter than its header"))?;
    let mut at = le32(iort, 40).ok_or(err("is shorter than its header"))? as usize;
    let mut out = Vec::new();
    for _ in 0..count {
        let ty = *iort.get(at).ok_or(err("has a node past its end"))?;
        let len = usize::from(le16(iort, at + 1).ok_or(err("has a node past its end"))?);
        if len < 16 || at + len > iort.len() {
            return Err(err("has a node with a bad length"));
        }
        if ty == IORT_SMMU_V3 {
            let base = le64(iort, at + 16)
                .filter(|_| len >= 24)
                .ok_or(err("has an SMMUv3 node too short for its base"))?;
            out.push(base);
        }
        at += len;
    }
    Ok(out)
}
