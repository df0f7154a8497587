//! Platform discovery: what the device tree the loader passed to KCore says
//! about the machine.
//!
//! Three modules share the work. [`dtb`] is the guard in front of the `fdt`
//! crate: [`parse`] (and [`crate::kserv_dt::build`]) hand a blob to `fdt` only
//! after [`dtb::Dtb::check`] has validated its header, every block offset and
//! size, and every token, name and property of the structure block, because
//! `fdt` indexes and `expect`s its way through malformed input. [`tree`] is a
//! small index over the validated tree ([`tree::Tree`]) with path lookup,
//! aliases, `reg` decoding and address translation through simple buses. This
//! module is the platform description: [`parse`] turns the tree into a
//! [`Platform`] (RAM, reserved memory, CPUs, GIC, console UART, PSCI, DMA
//! masters and boot arguments), with [`DtError`] shared by all three.
//! Regions are `kcore`'s [`MemRange`]: never empty, never wrapping. Nothing
//! here touches hardware, so all of it is tested on the host against real
//! QEMU trees.

pub mod dtb;
pub(crate) mod tree;

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use kcore::addr::MemRange;

use dtb::{Dtb, be32};
pub use dtb::{MAX_DEPTH, sanitized_copy};
use tree::{ROOT, Tree, read_cells};

/// An optional region for the console: the region as [`MemRange`] shows
/// it, or `none`.
pub struct MaybeRegion(pub Option<MemRange>);

impl fmt::Display for MaybeRegion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(r) => r.fmt(f),
            None => f.write_str("none"),
        }
    }
}

/// Sorts `regions` and merges those that overlap or touch.
pub fn normalize_regions(regions: &mut Vec<MemRange>) {
    regions.sort_unstable_by_key(|r| (r.base(), r.size()));
    let mut out: Vec<MemRange> = Vec::with_capacity(regions.len());
    for r in regions.iter() {
        if let Some(last) = out.last_mut()
            && r.base() <= last.end()
            && let Some(merged) = MemRange::from_bounds(last.base(), last.end().max(r.end()))
        {
            *last = merged;
            continue;
        }
        out.push(*r);
    }
    *regions = out;
}

/// How the loader asks a secondary CPU to start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EnableMethod {
    /// `enable-method = "psci"`: PSCI `CPU_ON`.
    Psci,
    /// `enable-method = "spin-table"`: the CPU polls `release_addr`.
    SpinTable {
        /// The `cpu-release-addr` property.
        release_addr: u64,
    },
    /// Any other method, or none.
    Other,
}

/// A CPU node (`device_type = "cpu"` under `/cpus`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cpu {
    /// The affinity fields of `MPIDR_EL1` the `reg` property gives.
    pub mpidr: u64,
    /// How the loader starts it.
    pub enable_method: EnableMethod,
}

/// Architecture version of the interrupt controller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GicVersion {
    /// GICv2 (`arm,cortex-a15-gic`, `arm,gic-400`, ...).
    V2,
    /// GICv3 (`arm,gic-v3`).
    V3,
}

/// The interrupt controller's register frames.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Gic {
    /// GICv2 or GICv3.
    pub version: GicVersion,
    /// The distributor (GICD).
    pub dist: MemRange,
    /// GICv3 redistributor regions (GICR); empty for GICv2.
    pub redist: Vec<MemRange>,
    /// The CPU interface (GICC): always there on GICv2, optional on GICv3.
    pub cpu_if: Option<MemRange>,
    /// The virtual interface control (GICH).
    pub hyp_if: Option<MemRange>,
    /// The virtual CPU interface (GICV).
    pub vcpu_if: Option<MemRange>,
    /// INTID of the virtual-interface maintenance interrupt.
    pub maintenance_irq: Option<u32>,
    /// The register frames of the GICv3's ITSes (`arm,gic-v3-its`
    /// children that are available), translated to physical addresses.
    /// KCore keeps them: an ITS writes its tables by physical address.
    pub its: Vec<MemRange>,
}

/// `compatible` of a GICv3 ITS node.
pub const ITS_COMPATIBLE: &str = "arm,gic-v3-its";

/// Which UART driver the console needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UartKind {
    /// An Arm PL011 (`arm,pl011`).
    Pl011,
    /// The BCM2835/BCM2711 auxiliary mini UART (`brcm,bcm2835-aux-uart`),
    /// the Raspberry Pi's default console.
    MiniUart,
}

/// `compatible` of the Raspberry Pi's mini UART.
pub const MINI_UART_COMPATIBLE: &str = "brcm,bcm2835-aux-uart";

/// The console UART.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Uart {
    /// Physical address of its registers (translated through `ranges`).
    pub base: u64,
    /// Size of the register frame.
    pub size: u64,
    /// Its driver.
    pub kind: UartKind,
}

/// The instruction that reaches PSCI firmware.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Conduit {
    /// `SMC #0`.
    Smc,
    /// `HVC #0`.
    Hvc,
}

/// PSCI 0.1 function ids, which a node compatible with plain `"arm,psci"`
/// lists as properties.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Psci01Ids {
    /// `cpu_suspend`.
    pub cpu_suspend: Option<u32>,
    /// `cpu_off`.
    pub cpu_off: Option<u32>,
    /// `cpu_on`.
    pub cpu_on: Option<u32>,
    /// `migrate`.
    pub migrate: Option<u32>,
}

/// The PSCI firmware interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Psci {
    /// How to call it.
    pub method: Conduit,
    /// Present when the node is compatible with `"arm,psci"` (PSCI 0.1).
    pub v0_1_ids: Option<Psci01Ids>,
}

/// Everything KCore needs to know about the machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Platform {
    /// The root's `#address-cells`.
    pub address_cells: u32,
    /// The root's `#size-cells`.
    pub size_cells: u32,
    /// RAM from every `/memory*` node: sorted, merged, no empty regions.
    pub memory: Vec<MemRange>,
    /// `/memreserve/` entries and `/reserved-memory` children with `reg`:
    /// sorted, merged, no empty regions.
    pub reserved: Vec<MemRange>,
    /// CPU nodes, in tree order.
    pub cpus: Vec<Cpu>,
    /// The interrupt controller.
    pub gic: Option<Gic>,
    /// The console: the PL011 or mini UART `/chosen/stdout-path` names
    /// (directly or through an alias), else the first usable PL011.
    pub uart: Option<Uart>,
    /// PSCI, if the tree describes it.
    pub psci: Option<Psci>,
    /// `/chosen/bootargs`.
    pub bootargs: Option<String>,
    /// The BCM2835/BCM2711 power-management block whose watchdog resets the
    /// board (the first `reg` of the first usable node compatible with one
    /// of [`PM_WATCHDOG_COMPATIBLES`]), translated: KCore's `SYSTEM_RESET`
    /// on a Raspberry Pi, which has no PSCI firmware.
    pub pm_watchdog: Option<MemRange>,
    /// The register frames of devices that master memory with no SMMU of
    /// KCore's in front of them ([`DMA_MASTER_COMPATIBLES`]), translated to
    /// physical addresses, sorted and merged. KCore keeps them: KServ could
    /// make them write anywhere, KCore's memory included.
    pub dma_masters: Vec<MemRange>,
    /// `/chosen/kcore,acpi` ([`ACPI_MARKER`]): the loader (`kcore.efi`)
    /// booted an ACPI machine, and KServ gets a stub tree holding only
    /// `/chosen` (`crate::kserv_dt::stub`) and reads the ACPI tables.
    pub kserv_stub: bool,
    /// The EFI memory map the loader hands on to KServ
    /// (`/chosen/linux,uefi-mmap-*` and [`MMAP_CAPACITY_PROP`]), in which
    /// KCore reserves its memory (`crate::efi_map`).
    pub efi_map: Option<crate::efi_map::EfiMap>,
}

/// The `/chosen` property by which `kcore.efi` tells KCore it booted an
/// ACPI machine: KServ gets a stub tree (KCore's loader ABI, not KServ's).
pub const ACPI_MARKER: &str = "kcore,acpi";
/// The `/chosen` property giving the bytes of the EFI memory map's buffer
/// (a `u32`), room included for the descriptors KCore splits.
pub const MMAP_CAPACITY_PROP: &str = "kcore,uefi-mmap-capacity";

/// `compatible`s of devices that read and write memory by physical address
/// (DMA) and that KCore keeps from KServ while it has no SMMU to put in
/// front of them: QEMU's fw_cfg (its DMA interface), a generic PCIe host
/// bridge (every device behind it can be made a bus master through its
/// config space; QEMU's `virt` puts a virtio-net NIC there by default) and
/// virtio-mmio transports (their queues live wherever the driver says),
/// and [`ACPI_DEVICE_COMPATIBLE`].
pub const DMA_MASTER_COMPATIBLES: [&str; 5] = [
    "qemu,fw-cfg-mmio",
    "pci-host-ecam-generic",
    "pci-host-cam-generic",
    "virtio,mmio",
    ACPI_DEVICE_COMPATIBLE,
];

/// The `compatible` `kcore.efi` gives a device the DSDT or an SSDT
/// describes and KCore keeps (every device whose `_CRS` names memory, but
/// for a short allow-list: `kcore_acpi::namespace`); its `reg` is the
/// device's memory. KCore's loader ABI, not a binding of KServ's.
pub const ACPI_DEVICE_COMPATIBLE: &str = "kcore,acpi-device";

/// `compatible`s of the Raspberry Pi's power-management block (watchdog and
/// reset).
pub const PM_WATCHDOG_COMPATIBLES: [&str; 3] =
    ["brcm,bcm2711-pm", "brcm,bcm2835-pm", "brcm,bcm2835-pm-wdt"];

impl Platform {
    /// Whether KCore must start the secondary CPUs itself: no PSCI in the
    /// tree, and every CPU but the boot CPU `boot_mpidr` starts through a
    /// spin table (the Raspberry Pi 4 with its stock armstub). With TF-A as
    /// the armstub the tree has a `/psci` node and the firmware path is
    /// used.
    pub fn spin_table(&self, boot_mpidr: u64) -> bool {
        let mut secondaries = self.cpus.iter().filter(|c| c.mpidr != boot_mpidr);
        self.psci.is_none()
            && self.cpus.len() > 1
            && secondaries.all(|c| matches!(c.enable_method, EnableMethod::SpinTable { .. }))
    }
}

/// Why a device tree was refused. Messages name the node and property, so
/// that KCore's console says what to fix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DtError {
    /// The blob is shorter than its header or than `totalsize`.
    Truncated {
        /// Bytes needed.
        needed: u64,
        /// Bytes available.
        available: u64,
    },
    /// No FDT magic (`0xd00dfeed`).
    BadMagic {
        /// The word found.
        found: u32,
    },
    /// A header version older than 17 or incompatible with 17.
    UnsupportedVersion {
        /// `version`.
        version: u32,
        /// `last_comp_version`.
        last_compatible: u32,
    },
    /// A header field places a block outside the blob or misaligned.
    BadLayout(&'static str),
    /// The structure block is malformed at `offset` (from its start).
    BadStructure {
        /// Offset of the offending token inside the structure block.
        offset: u64,
        /// What is wrong.
        reason: &'static str,
    },
    /// Nodes nest deeper than KCore accepts.
    TooDeep {
        /// The limit.
        limit: u32,
    },
    /// A property KCore needs is absent.
    MissingProperty {
        /// Path of the node.
        node: String,
        /// The property.
        property: &'static str,
    },
    /// A property KCore needs has a value it cannot use.
    BadProperty {
        /// Path of the node.
        node: String,
        /// The property.
        property: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// `#address-cells`/`#size-cells` that KCore cannot decode for this node.
    UnsupportedCells {
        /// Path of the node whose addresses they describe.
        node: String,
        /// `#address-cells` of its parent.
        address_cells: u32,
        /// `#size-cells` of its parent.
        size_cells: u32,
    },
    /// An address that no `ranges` of an ancestor bus maps to the CPU.
    Untranslatable {
        /// Path of the node.
        node: String,
        /// The address, in the parent bus's address space.
        address: u64,
        /// Why.
        reason: &'static str,
    },
    /// A `reg` entry that wraps past the end of the address space.
    RegionOverflow {
        /// Path of the node.
        node: String,
        /// Base address.
        base: u64,
        /// Size.
        size: u64,
    },
    /// The edits asked of [`crate::kserv_dt::build`] are inconsistent.
    BadEdit(&'static str),
    /// The tree KServ would get does not fit the 32-bit fields of the format.
    TooLarge,
}

impl fmt::Display for DtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DtError::Truncated { needed, available } => write!(
                f,
                "device tree truncated: needs {needed:#x} bytes, {available:#x} available"
            ),
            DtError::BadMagic { found } => {
                write!(
                    f,
                    "no device tree (magic {found:#010x}, expected 0xd00dfeed)"
                )
            }
            DtError::UnsupportedVersion {
                version,
                last_compatible,
            } => write!(
                f,
                "device tree version {version} (compatible with {last_compatible}) is not \
                 supported; version 17 is needed"
            ),
            DtError::BadLayout(what) => write!(f, "device tree header: {what}"),
            DtError::BadStructure { offset, reason } => {
                write!(f, "device tree structure block at {offset:#x}: {reason}")
            }
            DtError::TooDeep { limit } => {
                write!(f, "device tree nodes nest deeper than {limit} levels")
            }
            DtError::MissingProperty { node, property } => {
                write!(f, "device tree node {node} has no `{property}` property")
            }
            DtError::BadProperty {
                node,
                property,
                reason,
            } => {
                write!(f, "device tree node {node}: property `{property}` {reason}")
            }
            DtError::UnsupportedCells {
                node,
                address_cells,
                size_cells,
            } => write!(
                f,
                "device tree node {node}: #address-cells = {address_cells}, #size-cells = \
                 {size_cells} are not supported"
            ),
            DtError::Untranslatable {
                node,
                address,
                reason,
            } => write!(
                f,
                "device tree node {node}: address {address:#x} cannot be translated to a \
                 physical address: {reason}"
            ),
            DtError::RegionOverflow { node, base, size } => write!(
                f,
                "device tree node {node}: region {base:#x} + {size:#x} wraps around"
            ),
            DtError::BadEdit(what) => write!(f, "device tree for KServ: {what}"),
            DtError::TooLarge => f.write_str("device tree for KServ is larger than 4 GiB"),
        }
    }
}

/// Compatible strings of GICv2-architecture interrupt controllers.
pub const GIC_V2_COMPATIBLE: [&str; 8] = [
    "arm,gic-400",
    "arm,cortex-a15-gic",
    "arm,cortex-a9-gic",
    "arm,cortex-a7-gic",
    "arm,cortex-a5-gic",
    "arm,arm11mp-gic",
    "arm,pl390",
    "arm,arm1176jzf-devchip-gic",
];

/// Reads the platform description from the device tree `dtb`.
pub fn parse(dtb: &[u8]) -> Result<Platform, DtError> {
    let dtb = Dtb::check(dtb)?;
    let fdt = dtb.fdt()?;
    let tree = Tree::new(&fdt)?;
    let (address_cells, size_cells) = tree.cells(ROOT);
    Ok(Platform {
        address_cells,
        size_cells,
        memory: memory(&tree)?,
        reserved: reserved(&tree, &dtb.reservations)?,
        cpus: cpus(&tree)?,
        gic: gic(&tree)?,
        uart: uart(&tree)?,
        psci: psci(&tree)?,
        bootargs: match tree.child(ROOT, "chosen") {
            Some(chosen) => tree.string(chosen, "bootargs")?.map(String::from),
            None => None,
        },
        dma_masters: dma_masters(&tree)?,
        pm_watchdog: pm_watchdog(&tree)?,
        kserv_stub: tree
            .child(ROOT, "chosen")
            .is_some_and(|c| tree.prop(c, ACPI_MARKER).is_some()),
        efi_map: efi_map(&tree)?,
    })
}

/// The EFI memory map's buffer from `/chosen`: the three `linux,uefi-mmap-*`
/// properties KCore uses, or none; without [`MMAP_CAPACITY_PROP`] (a loader
/// other than `kcore.efi`) the buffer holds just the map.
fn efi_map(tree: &Tree<'_, '_>) -> Result<Option<crate::efi_map::EfiMap>, DtError> {
    let Some(c) = tree.child(ROOT, "chosen") else {
        return Ok(None);
    };
    let start = match tree.prop(c, "linux,uefi-mmap-start") {
        None => return Ok(None),
        Some(v) => v
            .try_into()
            .map(u64::from_be_bytes)
            .map_err(|_| tree.bad(c, "linux,uefi-mmap-start", "is not one 64-bit value"))?,
    };
    let need = |name: &'static str| {
        tree.u32_prop(c, name)?
            .ok_or_else(|| tree.bad(c, name, "is missing beside linux,uefi-mmap-start"))
    };
    let size = need(crate::kserv_dt::MMAP_SIZE_PROP)?;
    let map = crate::efi_map::EfiMap {
        start,
        size,
        desc_size: need("linux,uefi-mmap-desc-size")?,
        capacity: tree.u32_prop(c, MMAP_CAPACITY_PROP)?.unwrap_or(size),
    };
    if map.capacity < map.size {
        return Err(tree.bad(
            c,
            MMAP_CAPACITY_PROP,
            "is smaller than linux,uefi-mmap-size",
        ));
    }
    Ok(Some(map))
}

/// The first `reg` region of the first usable PM block.
fn pm_watchdog(tree: &Tree<'_, '_>) -> Result<Option<MemRange>, DtError> {
    let found = (0..tree.nodes.len()).find(|&i| {
        PM_WATCHDOG_COMPATIBLES
            .iter()
            .any(|c| tree.is_compatible(i, c))
            && tree.is_available(i)
    });
    match found {
        Some(i) => Ok(tree.device_reg(i)?.first().copied()),
        None => Ok(None),
    }
}

/// Whether node `i` is a device KCore keeps from KServ: a GICv3 ITS or a
/// DMA master of [`DMA_MASTER_COMPATIBLES`].
pub(crate) fn kept_from_kserv(tree: &Tree<'_, '_>, i: usize) -> bool {
    tree.is_compatible(i, ITS_COMPATIBLE)
        || DMA_MASTER_COMPATIBLES
            .iter()
            .any(|c| tree.is_compatible(i, c))
}

/// Every `reg` region of every available DMA master, sorted and merged.
fn dma_masters(tree: &Tree<'_, '_>) -> Result<Vec<MemRange>, DtError> {
    let mut out = Vec::new();
    for i in 0..tree.nodes.len() {
        if DMA_MASTER_COMPATIBLES
            .iter()
            .any(|c| tree.is_compatible(i, c))
            && tree.is_available(i)
        {
            out.extend(tree.reg(i)?);
        }
    }
    normalize_regions(&mut out);
    Ok(out)
}

/// Every usable `/memory*` node (or root child with `device_type = "memory"`).
fn memory(tree: &Tree<'_, '_>) -> Result<Vec<MemRange>, DtError> {
    let mut regions = Vec::new();
    for &i in tree.children(ROOT) {
        let named = tree.name(i).split('@').next() == Some("memory");
        if (named || tree.prop_is(i, "device_type", "memory")) && tree.is_available(i) {
            regions.extend(tree.reg(i)?);
        }
    }
    normalize_regions(&mut regions);
    Ok(regions)
}

/// `/memreserve/` entries and the usable `/reserved-memory` children with
/// `reg` (dynamically placed ones, with only `size`, are the kernel's affair).
fn reserved(tree: &Tree<'_, '_>, memreserve: &[(u64, u64)]) -> Result<Vec<MemRange>, DtError> {
    let mut regions = Vec::new();
    for &(base, size) in memreserve.iter().filter(|&&(_, size)| size != 0) {
        let region = MemRange::new(base, size).ok_or_else(|| DtError::RegionOverflow {
            node: String::from("/memreserve/"),
            base,
            size,
        })?;
        regions.push(region);
    }
    if let Some(rm) = tree.child(ROOT, "reserved-memory") {
        for &i in tree.children(rm) {
            if tree.prop(i, "reg").is_some() && tree.is_available(i) {
                regions.extend(tree.reg(i)?);
            }
        }
    }
    normalize_regions(&mut regions);
    Ok(regions)
}

/// The `device_type = "cpu"` children of `/cpus`.
fn cpus(tree: &Tree<'_, '_>) -> Result<Vec<Cpu>, DtError> {
    let Some(cpus) = tree.child(ROOT, "cpus") else {
        return Ok(Vec::new());
    };
    let (ac, sc) = tree.cells(cpus);
    let mut out = Vec::new();
    for &i in tree.children(cpus) {
        if !tree.prop_is(i, "device_type", "cpu") {
            continue;
        }
        if !(1..=2).contains(&ac) {
            return Err(DtError::UnsupportedCells {
                node: tree.path(i),
                address_cells: ac,
                size_cells: sc,
            });
        }
        let reg = tree
            .prop(i, "reg")
            .ok_or_else(|| DtError::MissingProperty {
                node: tree.path(i),
                property: "reg",
            })?;
        let width = 4 * ac as usize;
        if reg.is_empty() || reg.len() % width != 0 {
            return Err(tree.bad(i, "reg", "is not a whole number of #address-cells"));
        }
        let mpidr = read_cells(reg, 0, ac);
        let enable_method = match tree.string(i, "enable-method")? {
            Some("psci") => EnableMethod::Psci,
            Some("spin-table") => {
                let addr =
                    tree.prop(i, "cpu-release-addr")
                        .ok_or_else(|| DtError::MissingProperty {
                            node: tree.path(i),
                            property: "cpu-release-addr",
                        })?;
                if addr.len() != 8 {
                    return Err(tree.bad(i, "cpu-release-addr", "is not one 64-bit value"));
                }
                EnableMethod::SpinTable {
                    release_addr: read_cells(addr, 0, 2),
                }
            }
            _ => EnableMethod::Other,
        };
        out.push(Cpu {
            mpidr,
            enable_method,
        });
    }
    Ok(out)
}

/// The first usable GICv3, else the first usable GICv2.
fn gic(tree: &Tree<'_, '_>) -> Result<Option<Gic>, DtError> {
    let find = |pred: &dyn Fn(usize) -> bool| {
        (0..tree.nodes.len()).find(|&i| pred(i) && tree.is_available(i))
    };
    let v3 = find(&|i| tree.is_compatible(i, "arm,gic-v3"));
    let v2 = || {
        find(&|i| {
            tree.compatible_with(i, |c| GIC_V2_COMPATIBLE.iter().any(|v2| v2.as_bytes() == c))
        })
    };
    let (i, version) = match (v3, v2()) {
        (Some(i), _) => (i, GicVersion::V3),
        (None, Some(i)) => (i, GicVersion::V2),
        (None, None) => return Ok(None),
    };
    let regs = tree.device_reg(i)?;
    let at = |k: usize| regs.get(k).copied();
    let (dist, redist, first_cpu_if) = match version {
        GicVersion::V3 => {
            let n = tree.u32_prop(i, "#redistributor-regions")?.unwrap_or(1) as usize;
            if n == 0 || regs.len() < 1 + n {
                return Err(tree.bad(i, "reg", "lacks the distributor or a redistributor region"));
            }
            let redist = regs.get(1..1 + n).unwrap_or_default().to_vec();
            (regs.first().copied(), redist, 1 + n)
        }
        GicVersion::V2 => {
            if regs.len() < 2 {
                return Err(tree.bad(i, "reg", "lacks the distributor or the CPU interface"));
            }
            (regs.first().copied(), Vec::new(), 1)
        }
    };
    let dist = dist.ok_or_else(|| tree.bad(i, "reg", "lacks the distributor"))?;
    let maintenance_irq = match tree.prop(i, "interrupts") {
        None => None,
        Some(v) => {
            let (Some(kind), Some(number)) = (be32(v, 0), be32(v, 4)) else {
                return Err(tree.bad(i, "interrupts", "is shorter than two cells"));
            };
            let intid = match kind {
                0 => number.checked_add(32),
                1 => number.checked_add(16),
                _ => None,
            };
            Some(intid.ok_or_else(|| tree.bad(i, "interrupts", "is neither an SPI nor a PPI"))?)
        }
    };
    let mut its = Vec::new();
    if version == GicVersion::V3 {
        for j in 0..tree.nodes.len() {
            if tree.is_compatible(j, ITS_COMPATIBLE) && tree.is_available(j) {
                let r = tree.device_reg(j)?;
                let first = r
                    .first()
                    .copied()
                    .ok_or_else(|| tree.bad(j, "reg", "is empty"))?;
                its.push(first);
            }
        }
    }
    Ok(Some(Gic {
        version,
        dist,
        redist,
        cpu_if: at(first_cpu_if),
        hyp_if: at(first_cpu_if + 1),
        vcpu_if: at(first_cpu_if + 2),
        maintenance_irq,
        its,
    }))
}

/// The UART `/chosen/stdout-path` names if KCore has a driver for it (a
/// PL011 or a mini UART), else the first usable PL011.
fn uart(tree: &Tree<'_, '_>) -> Result<Option<Uart>, DtError> {
    let kind = |i: usize| {
        if tree.is_compatible(i, "arm,pl011") {
            Some(UartKind::Pl011)
        } else if tree.is_compatible(i, MINI_UART_COMPATIBLE) {
            Some(UartKind::MiniUart)
        } else {
            None
        }
    };
    let chosen_one = match tree.child(ROOT, "chosen") {
        Some(chosen) => match tree.string(chosen, "stdout-path")? {
            Some(path) => {
                let path = path.split(':').next().unwrap_or_default();
                tree.resolve(path)
                    .and_then(|i| Some((i, kind(i)?)))
                    .filter(|&(i, _)| tree.is_available(i))
            }
            None => None,
        },
        None => None,
    };
    let first = || {
        (0..tree.nodes.len())
            .find(|&i| kind(i) == Some(UartKind::Pl011) && tree.is_available(i))
            .map(|i| (i, UartKind::Pl011))
    };
    let Some((i, kind)) = chosen_one.or_else(first) else {
        return Ok(None);
    };
    let region = tree
        .device_reg(i)?
        .first()
        .copied()
        .ok_or_else(|| tree.bad(i, "reg", "is empty"))?;
    Ok(Some(Uart {
        base: region.base(),
        size: region.size(),
        kind,
    }))
}

/// The first usable node compatible with `arm,psci*`.
fn psci(tree: &Tree<'_, '_>) -> Result<Option<Psci>, DtError> {
    let Some(i) = (0..tree.nodes.len())
        .find(|&i| tree.compatible_with(i, |c| c.starts_with(b"arm,psci")) && tree.is_available(i))
    else {
        return Ok(None);
    };
    let method = match tree.string(i, "method")? {
        Some("smc") => Conduit::Smc,
        Some("hvc") => Conduit::Hvc,
        Some(_) => return Err(tree.bad(i, "method", "is neither \"smc\" nor \"hvc\"")),
        None => {
            return Err(DtError::MissingProperty {
                node: tree.path(i),
                property: "method",
            });
        }
    };
    let v0_1_ids = if tree.is_compatible(i, "arm,psci") {
        Some(Psci01Ids {
            cpu_suspend: tree.u32_prop(i, "cpu_suspend")?,
            cpu_off: tree.u32_prop(i, "cpu_off")?,
            cpu_on: tree.u32_prop(i, "cpu_on")?,
            migrate: tree.u32_prop(i, "migrate")?,
        })
    } else {
        None
    };
    Ok(Some(Psci { method, v0_1_ids }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;

    #[test]
    fn regions_show_as_hex_ranges() {
        let initrd = MemRange::new(0x4069_0000, 0x248_8890).unwrap();
        assert_eq!(format!("{initrd}"), "[0x40690000, 0x42b18890)");
        assert_eq!(
            format!("{}", MaybeRegion(Some(initrd))),
            "[0x40690000, 0x42b18890)"
        );
        assert_eq!(format!("{}", MaybeRegion(None)), "none");
    }

    #[test]
    fn normalize_sorts_and_merges() {
        let r = |base, size| MemRange::new(base, size).unwrap();
        let mut v = alloc::vec![
            r(0x3000, 0x1000),
            r(0x0, 0x1000),
            r(0x1000, 0x800),
            r(0x1200, 0x100),
            r(u64::MAX - 10, 10),
        ];
        normalize_regions(&mut v);
        assert_eq!(v, [r(0, 0x1800), r(0x3000, 0x1000), r(u64::MAX - 10, 10)]);
    }

    #[test]
    fn every_error_has_a_message() {
        let s = || String::from("/x");
        let errors = [
            DtError::Truncated {
                needed: 1,
                available: 0,
            },
            DtError::BadMagic { found: 0 },
            DtError::UnsupportedVersion {
                version: 16,
                last_compatible: 16,
            },
            DtError::BadLayout("x"),
            DtError::BadStructure {
                offset: 0,
                reason: "x",
            },
            DtError::TooDeep { limit: MAX_DEPTH },
            DtError::MissingProperty {
                node: s(),
                property: "reg",
            },
            DtError::BadProperty {
                node: s(),
                property: "reg",
                reason: "x",
            },
            DtError::UnsupportedCells {
                node: s(),
                address_cells: 3,
                size_cells: 2,
            },
            DtError::Untranslatable {
                node: s(),
                address: 1,
                reason: "x",
            },
            DtError::RegionOverflow {
                node: s(),
                base: 1,
                size: 2,
            },
            DtError::BadEdit("x"),
            DtError::TooLarge,
        ];
        for e in errors {
            assert!(format!("{e}").len() > 10, "{e:?}");
        }
    }
}
