//! Platform discovery: what the device tree the loader passed to KCore says
//! about the machine.
//!
//! This module owns three things. First, the guard in front of the `fdt`
//! crate: [`parse`] (and [`crate::kserv_dt::build`]) hand a blob to `fdt` only
//! after [`Dtb::check`] has validated its header, every block offset and size,
//! and every token, name and property of the structure block, because `fdt`
//! indexes and `expect`s its way through malformed input. Second, a small
//! index over the validated tree ([`Tree`]) with path lookup, aliases, `reg`
//! decoding and address translation through simple buses. Third, [`parse`]
//! itself, which turns the tree into a [`Platform`]: RAM, reserved memory,
//! CPUs, GIC, console UART, PSCI and boot arguments. Nothing here touches
//! hardware, so all of it is tested on the host against real QEMU trees.

use alloc::borrow::Cow;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use fdt::Fdt;
use fdt::node::FdtNode;

/// A range of physical addresses `[base, base + size)`.
///
/// Regions returned by [`parse`] never wrap: `base + size` fits in a `u64`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct MemRegion {
    /// First address of the region.
    pub base: u64,
    /// Size of the region in bytes.
    pub size: u64,
}

impl MemRegion {
    /// The region `[base, base + size)`, or `None` if that end overflows.
    pub const fn new(base: u64, size: u64) -> Option<MemRegion> {
        match base.checked_add(size) {
            Some(_) => Some(MemRegion { base, size }),
            None => None,
        }
    }

    /// The first address past the region, or `None` if it does not fit in a
    /// `u64`.
    pub const fn end(&self) -> Option<u64> {
        self.base.checked_add(self.size)
    }

    /// Whether the region is empty.
    pub const fn is_empty(&self) -> bool {
        self.size == 0
    }

    /// Whether `addr` lies inside the region.
    pub const fn contains(&self, addr: u64) -> bool {
        addr >= self.base && addr - self.base < self.size
    }

    /// Whether all of `other` lies inside the region (an empty `other` lies
    /// inside any region that contains or ends at its base).
    pub const fn contains_region(&self, other: &MemRegion) -> bool {
        other.base >= self.base
            && other.base - self.base <= self.size
            && other.size <= self.size - (other.base - self.base)
    }

    /// Whether the two regions share at least one address.
    pub const fn overlaps(&self, other: &MemRegion) -> bool {
        if self.size == 0 || other.size == 0 {
            return false;
        }
        if self.base <= other.base {
            other.base - self.base < self.size
        } else {
            self.base - other.base < other.size
        }
    }
}

impl fmt::Display for MemRegion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.end() {
            Some(end) => write!(f, "[{:#x}, {:#x})", self.base, end),
            None => write!(f, "[{:#x}, +{:#x})", self.base, self.size),
        }
    }
}

/// An optional region for the console: the region as [`MemRegion`] shows
/// it, or `none`.
pub struct MaybeRegion(pub Option<MemRegion>);

impl fmt::Display for MaybeRegion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(r) => r.fmt(f),
            None => f.write_str("none"),
        }
    }
}

/// Sorts `regions`, drops empty ones and merges those that overlap or touch.
pub fn normalize_regions(regions: &mut Vec<MemRegion>) {
    regions.retain(|r| !r.is_empty());
    regions.sort_unstable();
    let mut out: Vec<MemRegion> = Vec::with_capacity(regions.len());
    for r in regions.iter() {
        if let Some(last) = out.last_mut() {
            // Regions never wrap (built with `MemRegion::new`), so the ends exist;
            // a wrapping one is kept separate rather than merged wrongly.
            if let (Some(last_end), Some(r_end)) = (last.end(), r.end())
                && r.base <= last_end
            {
                last.size = last_end.max(r_end) - last.base;
                continue;
            }
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
    pub dist: MemRegion,
    /// GICv3 redistributor regions (GICR); empty for GICv2.
    pub redist: Vec<MemRegion>,
    /// The CPU interface (GICC): always there on GICv2, optional on GICv3.
    pub cpu_if: Option<MemRegion>,
    /// The virtual interface control (GICH).
    pub hyp_if: Option<MemRegion>,
    /// The virtual CPU interface (GICV).
    pub vcpu_if: Option<MemRegion>,
    /// INTID of the virtual-interface maintenance interrupt.
    pub maintenance_irq: Option<u32>,
    /// The register frames of the GICv3's ITSes (`arm,gic-v3-its`
    /// children that are available), translated to physical addresses.
    /// KCore keeps them: an ITS writes its tables by physical address.
    pub its: Vec<MemRegion>,
}

/// `compatible` of a GICv3 ITS node.
pub const ITS_COMPATIBLE: &str = "arm,gic-v3-its";

/// A PL011 UART.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Uart {
    /// Physical address of its registers.
    pub base: u64,
    /// Size of the register frame.
    pub size: u64,
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
    pub memory: Vec<MemRegion>,
    /// `/memreserve/` entries and `/reserved-memory` children with `reg`:
    /// sorted, merged, no empty regions.
    pub reserved: Vec<MemRegion>,
    /// CPU nodes, in tree order.
    pub cpus: Vec<Cpu>,
    /// The interrupt controller.
    pub gic: Option<Gic>,
    /// The console: the PL011 `/chosen/stdout-path` names, else the first PL011.
    pub uart: Option<Uart>,
    /// PSCI, if the tree describes it.
    pub psci: Option<Psci>,
    /// `/chosen/bootargs`.
    pub bootargs: Option<String>,
    /// The register frames of devices that master memory with no SMMU of
    /// KCore's in front of them ([`DMA_MASTER_COMPATIBLES`]), translated to
    /// physical addresses, sorted and merged. KCore keeps them: KServ could
    /// make them write anywhere, KCore's memory included.
    pub dma_masters: Vec<MemRegion>,
}

/// `compatible`s of devices that read and write memory by physical address
/// (DMA) and that KCore keeps from KServ while it has no SMMU to put in
/// front of them: QEMU's fw_cfg (its DMA interface), a generic PCIe host
/// bridge (every device behind it can be made a bus master through its
/// config space; QEMU's `virt` puts a virtio-net NIC there by default) and
/// virtio-mmio transports (their queues live wherever the driver says).
pub const DMA_MASTER_COMPATIBLES: [&str; 4] = [
    "qemu,fw-cfg-mmio",
    "pci-host-ecam-generic",
    "pci-host-cam-generic",
    "virtio,mmio",
];

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

// ---- The guard in front of the `fdt` crate -------------------------------------

const FDT_MAGIC: u32 = 0xd00d_feed;
const FDT_BEGIN_NODE: u32 = 1;
const FDT_END_NODE: u32 = 2;
const FDT_PROP: u32 = 3;
const FDT_NOP: u32 = 4;
const FDT_END: u32 = 9;
/// Size of the version-17 header.
pub(crate) const FDT_HEADER_SIZE: usize = 40;
/// The format version KCore reads and writes.
pub(crate) const FDT_VERSION: u32 = 17;
/// Deepest node nesting accepted (the `fdt` crate's own limit is 64).
pub const MAX_DEPTH: u32 = 32;

/// Big-endian `u32` at `at`, `None` past the end.
pub(crate) fn be32(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at.checked_add(4)?)?;
    let mut w = [0u8; 4];
    w.copy_from_slice(b);
    Some(u32::from_be_bytes(w))
}

/// Big-endian `u64` at `at`, `None` past the end.
fn be64(bytes: &[u8], at: usize) -> Option<u64> {
    let b = bytes.get(at..at.checked_add(8)?)?;
    let mut w = [0u8; 8];
    w.copy_from_slice(b);
    Some(u64::from_be_bytes(w))
}

/// `x` rounded up to a multiple of 4, `None` on overflow.
fn align4(x: usize) -> Option<usize> {
    Some(x.checked_add(3)? & !3)
}

/// `bytes[start..start + len]`, `None` if out of range.
fn sub(bytes: &[u8], start: usize, len: usize) -> Option<&[u8]> {
    bytes.get(start..start.checked_add(len)?)
}

/// The NUL-terminated string at the start of `bytes`, without its NUL.
fn cstr(bytes: &[u8]) -> Option<&[u8]> {
    let end = bytes.iter().position(|&b| b == 0)?;
    bytes.get(..end)
}

/// A device tree blob that passed [`Dtb::check`]: the `fdt` crate can walk it
/// without hitting any of its panics.
pub(crate) struct Dtb<'a> {
    /// The blob, cut to `totalsize`; a copy when `FDT_NOP` tokens had to be
    /// removed (the `fdt` crate mis-parses them in several places).
    blob: Cow<'a, [u8]>,
    /// The `/memreserve/` entries `(address, size)`, in order.
    pub(crate) reservations: Vec<(u64, u64)>,
    /// The header's `boot_cpuid_phys`.
    pub(crate) boot_cpuid_phys: u32,
}

/// Header field offsets.
mod hdr {
    pub const TOTALSIZE: usize = 4;
    pub const OFF_DT_STRUCT: usize = 8;
    pub const OFF_DT_STRINGS: usize = 12;
    pub const OFF_MEM_RSVMAP: usize = 16;
    pub const VERSION: usize = 20;
    pub const LAST_COMP_VERSION: usize = 24;
    pub const BOOT_CPUID_PHYS: usize = 28;
    pub const SIZE_DT_STRINGS: usize = 32;
    pub const SIZE_DT_STRUCT: usize = 36;
}

/// Where the blocks of a validated blob are.
struct Layout<'a> {
    /// The blob, cut to `totalsize`.
    blob: &'a [u8],
    off_rsvmap: usize,
    off_struct: usize,
    size_struct: usize,
    boot_cpuid_phys: u32,
    /// `FDT_NOP` tokens in the structure block.
    nops: usize,
}

/// The `/memreserve/` entries of a blob whose reservation block `check_layout`
/// validated, in order.
fn reservations(blob: &[u8], off_rsvmap: usize) -> impl Iterator<Item = (u64, u64)> + '_ {
    (0..)
        .map(move |i| {
            let at = off_rsvmap + 16 * i;
            (be64(blob, at).unwrap_or(0), be64(blob, at + 8).unwrap_or(0))
        })
        .take_while(|&e| e != (0, 0))
}

/// Validates `dtb` completely without allocating: header, memory
/// reservation block, block bounds, and every token of the structure block
/// (nesting, names, property lengths and name offsets).
fn check_layout(dtb: &[u8]) -> Result<Layout<'_>, DtError> {
    let available = dtb.len() as u64;
    let truncated = |needed: u64| DtError::Truncated { needed, available };
    let magic = be32(dtb, 0).ok_or(truncated(FDT_HEADER_SIZE as u64))?;
    if magic != FDT_MAGIC {
        return Err(DtError::BadMagic { found: magic });
    }
    let field = |at| be32(dtb, at).ok_or(truncated(FDT_HEADER_SIZE as u64));
    let totalsize = field(hdr::TOTALSIZE)? as usize;
    let off_struct = field(hdr::OFF_DT_STRUCT)? as usize;
    let off_strings = field(hdr::OFF_DT_STRINGS)? as usize;
    let off_rsvmap = field(hdr::OFF_MEM_RSVMAP)? as usize;
    let version = field(hdr::VERSION)?;
    let last_compatible = field(hdr::LAST_COMP_VERSION)?;
    let boot_cpuid_phys = field(hdr::BOOT_CPUID_PHYS)?;
    let size_strings = field(hdr::SIZE_DT_STRINGS)? as usize;
    let size_struct = field(hdr::SIZE_DT_STRUCT)? as usize;
    if totalsize as u64 > available {
        return Err(truncated(totalsize as u64));
    }
    if version < FDT_VERSION || last_compatible > FDT_VERSION {
        return Err(DtError::UnsupportedVersion {
            version,
            last_compatible,
        });
    }
    let blob = dtb.get(..totalsize).ok_or(truncated(totalsize as u64))?;
    if totalsize < FDT_HEADER_SIZE {
        return Err(DtError::BadLayout("totalsize is smaller than the header"));
    }

    // Memory reservation block: 16-byte entries up to a (0, 0) entry.
    if off_rsvmap < FDT_HEADER_SIZE || !off_rsvmap.is_multiple_of(8) {
        return Err(DtError::BadLayout("memory reservation block is misplaced"));
    }
    let mut at = off_rsvmap;
    loop {
        let entry = (
            be64(blob, at),
            at.checked_add(8).and_then(|a| be64(blob, a)),
        );
        let (Some(address), Some(size)) = entry else {
            return Err(DtError::BadLayout(
                "memory reservation block runs past totalsize",
            ));
        };
        if address == 0 && size == 0 {
            break;
        }
        at += 16;
    }

    if off_struct < FDT_HEADER_SIZE
        || !off_struct.is_multiple_of(4)
        || !size_struct.is_multiple_of(4)
    {
        return Err(DtError::BadLayout("structure block is misaligned"));
    }
    let structure = sub(blob, off_struct, size_struct)
        .ok_or(DtError::BadLayout("structure block runs past totalsize"))?;
    if off_strings < FDT_HEADER_SIZE {
        return Err(DtError::BadLayout("strings block overlaps the header"));
    }
    let strings = sub(blob, off_strings, size_strings)
        .ok_or(DtError::BadLayout("strings block runs past totalsize"))?;

    let nops = check_structure(structure, strings)?;
    Ok(Layout {
        blob,
        off_rsvmap,
        off_struct,
        size_struct,
        boot_cpuid_phys,
        nops,
    })
}

/// Validates `dtb` (as [`parse`] does) and copies it into `out` with its
/// `FDT_NOP` tokens removed, without allocating; returns the copy's length.
/// KCore calls this with its MMU still off, so that it only ever hands the
/// `fdt` crate a checked, NOP-free tree.
pub fn sanitized_copy(dtb: &[u8], out: &mut [u8]) -> Result<usize, DtError> {
    let layout = check_layout(dtb)?;
    let len = layout.blob.len();
    let out = out.get_mut(..len).ok_or(DtError::Truncated {
        needed: len as u64,
        available: 0,
    })?;
    out.copy_from_slice(layout.blob);
    if layout.nops > 0 {
        remove_nops(out, layout.off_struct, layout.size_struct)?;
    }
    Ok(len)
}

impl<'a> Dtb<'a> {
    /// Validates `dtb` completely (see [`check_layout`]). Only blobs that
    /// pass reach `fdt`.
    pub(crate) fn check(dtb: &'a [u8]) -> Result<Dtb<'a>, DtError> {
        let layout = check_layout(dtb)?;
        let reservations = reservations(layout.blob, layout.off_rsvmap).collect();
        let blob = if layout.nops == 0 {
            Cow::Borrowed(layout.blob)
        } else {
            let mut copy = layout.blob.to_vec();
            remove_nops(&mut copy, layout.off_struct, layout.size_struct)?;
            Cow::Owned(copy)
        };
        Ok(Dtb {
            blob,
            reservations,
            boot_cpuid_phys: layout.boot_cpuid_phys,
        })
    }

    /// The `fdt` view of the checked blob.
    pub(crate) fn fdt(&self) -> Result<Fdt<'_>, DtError> {
        Fdt::new(&self.blob).map_err(|_| DtError::BadLayout("rejected by the FDT parser"))
    }
}

/// Walks every token of the structure block. Returns how many `FDT_NOP`
/// tokens it holds.
fn check_structure(s: &[u8], strings: &[u8]) -> Result<usize, DtError> {
    let bad = |offset: usize, reason| DtError::BadStructure {
        offset: offset as u64,
        reason,
    };
    let mut nops = 0usize;
    let mut pos = 0usize;
    let mut depth = 0u32;
    let mut seen_root = false;
    // Whether the innermost open node may still have properties (not once a
    // child node has started).
    let mut props_allowed = false;
    loop {
        let at = pos;
        let token = be32(s, at).ok_or(bad(at, "the block ends without FDT_END"))?;
        pos = at + 4;
        match token {
            FDT_BEGIN_NODE => {
                if depth == 0 && seen_root {
                    return Err(bad(at, "a second root node"));
                }
                let rest = s.get(pos..).unwrap_or_default();
                let name = cstr(rest).ok_or(bad(at, "node name is not NUL-terminated"))?;
                let name =
                    core::str::from_utf8(name).map_err(|_| bad(at, "node name is not UTF-8"))?;
                if depth == 0 && !name.is_empty() {
                    return Err(bad(at, "the root node has a name"));
                }
                if depth > 0 && name.is_empty() {
                    return Err(bad(at, "a node without a name"));
                }
                if name.contains('/') {
                    return Err(bad(at, "node name contains '/'"));
                }
                pos = pos
                    .checked_add(name.len() + 1)
                    .and_then(align4)
                    .ok_or(bad(at, "node name runs past the block"))?;
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(DtError::TooDeep { limit: MAX_DEPTH });
                }
                seen_root = true;
                props_allowed = true;
            }
            FDT_PROP => {
                if depth == 0 {
                    return Err(bad(at, "a property outside any node"));
                }
                if !props_allowed {
                    return Err(bad(at, "a property after a child node"));
                }
                let len = be32(s, pos).ok_or(bad(at, "property header runs past the block"))?;
                let nameoff =
                    be32(s, pos + 4).ok_or(bad(at, "property header runs past the block"))?;
                let value_at = pos + 8;
                sub(s, value_at, len as usize)
                    .ok_or(bad(at, "property value runs past the block"))?;
                let name = strings
                    .get(nameoff as usize..)
                    .and_then(cstr)
                    .ok_or(bad(at, "property name lies outside the strings block"))?;
                if name.is_empty() || core::str::from_utf8(name).is_err() {
                    return Err(bad(at, "property name is empty or not UTF-8"));
                }
                if (name == b"#address-cells" || name == b"#size-cells") && len != 4 {
                    return Err(bad(at, "#address-cells or #size-cells is not one cell"));
                }
                pos = value_at
                    .checked_add(len as usize)
                    .and_then(align4)
                    .ok_or(bad(at, "property value runs past the block"))?;
            }
            FDT_END_NODE => {
                if depth == 0 {
                    return Err(bad(at, "FDT_END_NODE without a node to end"));
                }
                depth -= 1;
                props_allowed = false;
            }
            FDT_NOP => nops += 1,
            FDT_END => {
                if !seen_root {
                    return Err(bad(at, "no root node"));
                }
                if depth != 0 {
                    return Err(bad(at, "FDT_END inside a node"));
                }
                return Ok(nops);
            }
            _ => return Err(bad(at, "unknown token")),
        }
    }
}

/// Removes the `FDT_NOP` tokens from the structure block of a blob that
/// [`check_layout`] accepted, in place: later tokens move down, the freed
/// tail of the block is zeroed and `size_dt_struct` shrinks to match.
fn remove_nops(blob: &mut [u8], off_struct: usize, size_struct: usize) -> Result<(), DtError> {
    let layout = || DtError::BadLayout("structure block");
    let block = blob
        .get_mut(off_struct..off_struct + size_struct)
        .ok_or_else(layout)?;
    let (mut read, mut write) = (0usize, 0usize);
    loop {
        let token = be32(block, read).ok_or_else(layout)?;
        let len = match token {
            FDT_BEGIN_NODE => {
                let name = block.get(read + 4..).and_then(cstr).ok_or_else(layout)?;
                align4(4 + name.len() + 1).ok_or_else(layout)?
            }
            FDT_PROP => {
                let value = be32(block, read + 4).ok_or_else(layout)? as usize;
                align4(12 + value).ok_or_else(layout)?
            }
            _ => 4,
        };
        if read + len > block.len() {
            return Err(layout());
        }
        if token != FDT_NOP {
            block.copy_within(read..read + len, write);
            write += len;
        }
        read += len;
        if token == FDT_END {
            break;
        }
    }
    block.get_mut(write..).ok_or_else(layout)?.fill(0);
    let size = (write as u32).to_be_bytes();
    blob.get_mut(hdr::SIZE_DT_STRUCT..hdr::SIZE_DT_STRUCT + 4)
        .ok_or_else(layout)?
        .copy_from_slice(&size);
    Ok(())
}

// ---- An index over the validated tree -------------------------------------------

/// One node of a [`Tree`].
pub(crate) struct TreeNode<'b, 'a> {
    /// The node, as the `fdt` crate sees it.
    pub(crate) node: FdtNode<'b, 'a>,
    /// Its properties `(name, value)`, in order (read once: the `fdt` crate
    /// re-parses them on every lookup).
    pub(crate) props: Vec<(&'a str, &'a [u8])>,
    /// Index of the parent (`None` for the root).
    pub(crate) parent: Option<usize>,
    /// Indices of the children, in tree order.
    pub(crate) children: Vec<usize>,
}

/// All nodes of a checked tree in document order; index 0 is the root.
pub(crate) struct Tree<'b, 'a> {
    pub(crate) nodes: Vec<TreeNode<'b, 'a>>,
}

/// Index of the root node in a [`Tree`].
pub(crate) const ROOT: usize = 0;

/// Default `#address-cells` when a node has none (Devicetree spec 2.3.5).
const DEFAULT_ADDRESS_CELLS: u32 = 2;
/// Default `#size-cells` when a node has none.
const DEFAULT_SIZE_CELLS: u32 = 1;

impl<'b, 'a> Tree<'b, 'a> {
    /// Indexes every node of `fdt`, which must come from a checked [`Dtb`].
    pub(crate) fn new(fdt: &'b Fdt<'a>) -> Result<Self, DtError> {
        let root = fdt.all_nodes().next().ok_or(DtError::BadStructure {
            offset: 0,
            reason: "no root node",
        })?;
        let mut tree = Tree { nodes: Vec::new() };
        tree.add(root, None, 0)?;
        Ok(tree)
    }

    fn add(
        &mut self,
        node: FdtNode<'b, 'a>,
        parent: Option<usize>,
        depth: u32,
    ) -> Result<(), DtError> {
        if depth >= MAX_DEPTH {
            return Err(DtError::TooDeep { limit: MAX_DEPTH });
        }
        let index = self.nodes.len();
        let props = node.properties().map(|p| (p.name, p.value)).collect();
        self.nodes.push(TreeNode {
            node,
            props,
            parent,
            children: Vec::new(),
        });
        if let Some(p) = parent.and_then(|p| self.nodes.get_mut(p)) {
            p.children.push(index);
        }
        for child in node.children() {
            self.add(child, Some(index), depth + 1)?;
        }
        Ok(())
    }

    fn get(&self, i: usize) -> Option<&TreeNode<'b, 'a>> {
        self.nodes.get(i)
    }

    /// The node's name (`""` for the root).
    pub(crate) fn name(&self, i: usize) -> &'a str {
        match self.get(i) {
            Some(n) if n.parent.is_some() => n.node.name,
            _ => "",
        }
    }

    /// The node's parent.
    pub(crate) fn parent(&self, i: usize) -> Option<usize> {
        self.get(i).and_then(|n| n.parent)
    }

    /// The node's children, in tree order.
    pub(crate) fn children(&self, i: usize) -> &[usize] {
        self.get(i)
            .map(|n| n.children.as_slice())
            .unwrap_or_default()
    }

    /// The node's full path, for messages.
    pub(crate) fn path(&self, i: usize) -> String {
        let mut parts = Vec::new();
        let mut cur = Some(i);
        while let Some(c) = cur {
            if self.parent(c).is_some() {
                parts.push(self.name(c));
            }
            cur = self.parent(c);
        }
        if parts.is_empty() {
            return String::from("/");
        }
        let mut path = String::new();
        for p in parts.iter().rev() {
            path.push('/');
            path.push_str(p);
        }
        path
    }

    /// The node's properties `(name, value)`, in order.
    pub(crate) fn props(&self, i: usize) -> impl Iterator<Item = (&'a str, &'a [u8])> + '_ {
        self.get(i)
            .map(|n| n.props.as_slice())
            .unwrap_or_default()
            .iter()
            .copied()
    }

    /// The value of property `name` of node `i`.
    pub(crate) fn prop(&self, i: usize, name: &str) -> Option<&'a [u8]> {
        self.props(i).find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// Whether property `name` holds exactly the string `value`.
    pub(crate) fn prop_is(&self, i: usize, name: &str, value: &str) -> bool {
        self.prop(i, name)
            .is_some_and(|v| string_value(v) == Some(value.as_bytes()))
    }

    /// Property `name` as a string: `None` if absent, an error if it is not a
    /// NUL-terminated UTF-8 string.
    pub(crate) fn string(&self, i: usize, name: &'static str) -> Result<Option<&'a str>, DtError> {
        let Some(v) = self.prop(i, name) else {
            return Ok(None);
        };
        string_value(v)
            .and_then(|s| core::str::from_utf8(s).ok())
            .map(Some)
            .ok_or_else(|| self.bad(i, name, "is not a NUL-terminated UTF-8 string"))
    }

    /// Property `name` as one `u32` cell, `None` if absent.
    pub(crate) fn u32_prop(&self, i: usize, name: &'static str) -> Result<Option<u32>, DtError> {
        match self.prop(i, name) {
            None => Ok(None),
            Some(v) if v.len() == 4 => Ok(be32(v, 0)),
            Some(_) => Err(self.bad(i, name, "is not one 32-bit cell")),
        }
    }

    /// A [`DtError::BadProperty`] for node `i`.
    pub(crate) fn bad(&self, i: usize, property: &'static str, reason: &'static str) -> DtError {
        DtError::BadProperty {
            node: self.path(i),
            property,
            reason,
        }
    }

    /// Whether one of the node's `compatible` strings satisfies `pred`.
    pub(crate) fn compatible_with(&self, i: usize, pred: impl Fn(&[u8]) -> bool) -> bool {
        self.prop(i, "compatible")
            .is_some_and(|v| v.split(|&b| b == 0).filter(|s| !s.is_empty()).any(pred))
    }

    /// Whether the node is compatible with `compat`.
    pub(crate) fn is_compatible(&self, i: usize, compat: &str) -> bool {
        self.compatible_with(i, |c| c == compat.as_bytes())
    }

    /// Whether the node's `status` says it is usable ("okay", "ok" or absent).
    pub(crate) fn is_available(&self, i: usize) -> bool {
        match self.prop(i, "status") {
            None => true,
            Some(v) => matches!(string_value(v), Some(b"okay") | Some(b"ok")),
        }
    }

    /// `(#address-cells, #size-cells)` that node `i` gives its children.
    pub(crate) fn cells(&self, i: usize) -> (u32, u32) {
        let get = |name, default| {
            self.prop(i, name)
                .and_then(|v| be32(v, 0))
                .unwrap_or(default)
        };
        (
            get("#address-cells", DEFAULT_ADDRESS_CELLS),
            get("#size-cells", DEFAULT_SIZE_CELLS),
        )
    }

    /// The child of `i` called `name`: an exact match, else (for a name
    /// without a unit address) the first child whose name before `@` matches.
    pub(crate) fn child(&self, i: usize, name: &str) -> Option<usize> {
        let children = self.children(i);
        children
            .iter()
            .copied()
            .find(|&c| self.name(c) == name)
            .or_else(|| {
                if name.contains('@') {
                    return None;
                }
                children
                    .iter()
                    .copied()
                    .find(|&c| self.name(c).split('@').next() == Some(name))
            })
    }

    /// The node at absolute `path`.
    pub(crate) fn find_path(&self, path: &str) -> Option<usize> {
        if !path.starts_with('/') {
            return None;
        }
        path.split('/')
            .filter(|c| !c.is_empty())
            .try_fold(ROOT, |cur, c| self.child(cur, c))
    }

    /// The node a path or an alias names (`stdout-path` style, options after
    /// `:` already removed). Aliases resolve one level, as the spec defines.
    pub(crate) fn resolve(&self, path_or_alias: &str) -> Option<usize> {
        if path_or_alias.starts_with('/') {
            return self.find_path(path_or_alias);
        }
        let aliases = self.child(ROOT, "aliases")?;
        let target = self.prop(aliases, path_or_alias).and_then(string_value)?;
        let target = core::str::from_utf8(target).ok()?;
        self.find_path(target)
    }

    /// The `reg` entries of node `i` as `(address, size)` in its parent's
    /// address space (untranslated).
    pub(crate) fn raw_reg(&self, i: usize) -> Result<Vec<(u64, u64)>, DtError> {
        let parent = self.parent(i).unwrap_or(ROOT);
        let (ac, sc) = self.cells(parent);
        let unsupported = || DtError::UnsupportedCells {
            node: self.path(i),
            address_cells: ac,
            size_cells: sc,
        };
        if !(1..=2).contains(&ac) || sc > 2 {
            return Err(unsupported());
        }
        let value = self
            .prop(i, "reg")
            .ok_or_else(|| DtError::MissingProperty {
                node: self.path(i),
                property: "reg",
            })?;
        let entry = 4 * (ac + sc) as usize;
        if value.is_empty() || value.len() % entry != 0 {
            return Err(self.bad(i, "reg", "is not a whole number of (address, size) entries"));
        }
        Ok(value
            .chunks_exact(entry)
            .map(|e| (read_cells(e, 0, ac), read_cells(e, ac as usize * 4, sc)))
            .collect())
    }

    /// The `reg` entries of node `i` translated to CPU physical addresses
    /// through the `ranges` of every ancestor bus.
    pub(crate) fn reg(&self, i: usize) -> Result<Vec<MemRegion>, DtError> {
        let mut out = Vec::new();
        for (address, size) in self.raw_reg(i)? {
            let base = self.translate(i, address, size)?;
            let region = MemRegion::new(base, size).ok_or_else(|| DtError::RegionOverflow {
                node: self.path(i),
                base,
                size,
            })?;
            out.push(region);
        }
        Ok(out)
    }

    /// Maps `[address, address + size)` of node `i`'s parent bus to the root's
    /// address space.
    fn translate(&self, i: usize, address: u64, size: u64) -> Result<u64, DtError> {
        let untranslatable = |address, reason| DtError::Untranslatable {
            node: self.path(i),
            address,
            reason,
        };
        let mut address = address;
        let mut bus = self.parent(i).unwrap_or(ROOT);
        while let Some(up) = self.parent(bus) {
            let Some(ranges) = self.prop(bus, "ranges") else {
                return Err(untranslatable(address, "a parent bus has no `ranges`"));
            };
            if !ranges.is_empty() {
                let (child_ac, child_sc) = self.cells(bus);
                let (parent_ac, _) = self.cells(up);
                if !(1..=2).contains(&child_ac)
                    || !(1..=2).contains(&parent_ac)
                    || !(1..=2).contains(&child_sc)
                {
                    return Err(untranslatable(
                        address,
                        "a parent bus's `ranges` has unsupported cell sizes",
                    ));
                }
                let entry = 4 * (child_ac + parent_ac + child_sc) as usize;
                if ranges.len() % entry != 0 {
                    return Err(self.bad(bus, "ranges", "is not a whole number of entries"));
                }
                let mapped = ranges.chunks_exact(entry).find_map(|e| {
                    let child = read_cells(e, 0, child_ac);
                    let parent = read_cells(e, child_ac as usize * 4, parent_ac);
                    let len = read_cells(e, (child_ac + parent_ac) as usize * 4, child_sc);
                    let offset = address.checked_sub(child)?;
                    if offset.checked_add(size)? > len {
                        return None;
                    }
                    parent.checked_add(offset)
                });
                address = mapped.ok_or_else(|| {
                    untranslatable(address, "no entry of a parent bus's `ranges` covers it")
                })?;
            }
            bus = up;
        }
        Ok(address)
    }
}

/// `cells` big-endian cells at byte `at` of `bytes` as one number (at most 2
/// cells; missing bytes read as zero, which callers rule out by length).
fn read_cells(bytes: &[u8], at: usize, cells: u32) -> u64 {
    (0..cells as usize).fold(0u64, |acc, k| {
        (acc << 32) | u64::from(be32(bytes, at + 4 * k).unwrap_or(0))
    })
}

/// A string property's bytes without the NUL terminator, `None` if the value
/// is not exactly one NUL-terminated string.
pub(crate) fn string_value(v: &[u8]) -> Option<&[u8]> {
    let (last, s) = v.split_last()?;
    (*last == 0 && !s.contains(&0)).then_some(s)
}

// ---- Platform discovery -----------------------------------------------------------

/// Compatible strings of GICv2-architecture interrupt controllers.
const GIC_V2_COMPATIBLE: [&str; 8] = [
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
    })
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
fn dma_masters(tree: &Tree<'_, '_>) -> Result<Vec<MemRegion>, DtError> {
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
fn memory(tree: &Tree<'_, '_>) -> Result<Vec<MemRegion>, DtError> {
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
fn reserved(tree: &Tree<'_, '_>, memreserve: &[(u64, u64)]) -> Result<Vec<MemRegion>, DtError> {
    let mut regions = Vec::new();
    for &(base, size) in memreserve {
        let region = MemRegion::new(base, size).ok_or_else(|| DtError::RegionOverflow {
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
    let regs = tree.reg(i)?;
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
                let r = tree.reg(j)?;
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

/// The PL011 `/chosen/stdout-path` names, else the first usable PL011.
fn uart(tree: &Tree<'_, '_>) -> Result<Option<Uart>, DtError> {
    let is_pl011 = |i: usize| tree.is_compatible(i, "arm,pl011");
    let chosen_one = match tree.child(ROOT, "chosen") {
        Some(chosen) => match tree.string(chosen, "stdout-path")? {
            Some(path) => {
                let path = path.split(':').next().unwrap_or_default();
                tree.resolve(path).filter(|&i| is_pl011(i))
            }
            None => None,
        },
        None => None,
    };
    let first = || (0..tree.nodes.len()).find(|&i| is_pl011(i) && tree.is_available(i));
    let Some(i) = chosen_one.or_else(first) else {
        return Ok(None);
    };
    let region = tree
        .reg(i)?
        .first()
        .copied()
        .ok_or_else(|| tree.bad(i, "reg", "is empty"))?;
    Ok(Some(Uart {
        base: region.base,
        size: region.size,
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
        let initrd = MemRegion {
            base: 0x4069_0000,
            size: 0x248_8890,
        };
        assert_eq!(format!("{initrd}"), "[0x40690000, 0x42b18890)");
        assert_eq!(
            format!("{}", MaybeRegion(Some(initrd))),
            "[0x40690000, 0x42b18890)"
        );
        assert_eq!(format!("{}", MaybeRegion(None)), "none");
    }

    #[test]
    fn region_arithmetic_never_overflows() {
        let top = MemRegion {
            base: u64::MAX - 15,
            size: 16,
        };
        assert_eq!(top.end(), None);
        assert!(top.contains(u64::MAX));
        assert!(!top.contains(u64::MAX - 16));
        assert_eq!(MemRegion::new(u64::MAX, 1), None);
        assert_eq!(
            MemRegion::new(u64::MAX, 0),
            Some(MemRegion {
                base: u64::MAX,
                size: 0
            })
        );
        let a = MemRegion {
            base: 0x1000,
            size: 0x1000,
        };
        assert!(a.overlaps(&MemRegion {
            base: 0x1fff,
            size: u64::MAX - 0x1fff
        }));
        assert!(!a.overlaps(&MemRegion {
            base: 0x2000,
            size: 1
        }));
        assert!(!a.overlaps(&MemRegion {
            base: 0x1800,
            size: 0
        }));
        assert!(a.overlaps(&MemRegion {
            base: 0,
            size: 0x1001
        }));
        assert!(!a.overlaps(&MemRegion {
            base: 0,
            size: 0x1000
        }));
        assert!(top.overlaps(&MemRegion {
            base: 0,
            size: u64::MAX
        }));
        assert!(a.contains_region(&MemRegion {
            base: 0x1800,
            size: 0x800
        }));
        assert!(!a.contains_region(&MemRegion {
            base: 0x1800,
            size: 0x801
        }));
        assert!(!a.contains_region(&MemRegion {
            base: 0x800,
            size: 0x10
        }));
        assert!(!a.contains_region(&MemRegion {
            base: u64::MAX,
            size: u64::MAX
        }));
        assert!(top.contains_region(&top));
    }

    #[test]
    fn normalize_sorts_merges_and_drops_empty() {
        let mut v = alloc::vec![
            MemRegion {
                base: 0x3000,
                size: 0x1000
            },
            MemRegion {
                base: 0x0,
                size: 0x1000
            },
            MemRegion {
                base: 0x1000,
                size: 0x800
            },
            MemRegion {
                base: 0x9000,
                size: 0
            },
            MemRegion {
                base: 0x1200,
                size: 0x100
            },
            MemRegion {
                base: u64::MAX - 9,
                size: 10
            },
        ];
        normalize_regions(&mut v);
        assert_eq!(
            v,
            [
                MemRegion {
                    base: 0,
                    size: 0x1800
                },
                MemRegion {
                    base: 0x3000,
                    size: 0x1000
                },
                MemRegion {
                    base: u64::MAX - 9,
                    size: 10
                },
            ]
        );
    }

    #[test]
    fn string_values() {
        assert_eq!(string_value(b"psci\0"), Some(&b"psci"[..]));
        assert_eq!(string_value(b"\0"), Some(&b""[..]));
        assert_eq!(string_value(b"psci"), None);
        assert_eq!(string_value(b"a\0b\0"), None);
        assert_eq!(string_value(b""), None);
    }

    #[test]
    fn read_cells_combines_big_endian() {
        assert_eq!(read_cells(&[0, 0, 0, 1, 0, 0, 0, 2], 0, 2), 0x1_0000_0002);
        assert_eq!(read_cells(&[0, 0, 0, 1, 0, 0, 0, 2], 4, 1), 2);
        assert_eq!(read_cells(&[], 0, 0), 0);
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
