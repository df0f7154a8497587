//! VMSAv8-64 translation tables with the 4 KiB granule, for KCore's own EL2
//! stage 1 and for stage 2.
//!
//! One walker serves both regimes; [`Regime`] supplies the leaf descriptor
//! encoding (Arm ARM D8.3, "Translation table descriptor formats"), written
//! as typed flags: [`Desc`] for the bits both regimes share,
//! [`El2Attributes`] and [`Stage2Attributes`] for each one's own. Mapping
//! uses the largest block the alignment allows (1 GiB at level 1, 2 MiB at
//! level 2, 4 KiB pages at level 3) and never replaces a valid entry: `map`
//! only takes entries from invalid to valid, which needs no break-before-make
//! sequence and no TLB maintenance (translation faults are not cached in
//! TLBs). The one way a valid entry changes is [`PageTable::unmap_leaf`],
//! which invalidates a leaf and returns the range it covered; its caller
//! invalidates the TLBs for that range before relying on the change.
//!
//! No walk follows a table descriptor blindly. Every walker takes the
//! caller's `is_table(pa)`, which says whether `pa` is one of this tree's
//! own table pages (for a stage 2, [`crate::ownership::OwnershipTable::holds_table`]:
//! `KCore` pages for KServ's, `VmTable` pages of the VM for a VM's), and
//! asks it about each next-level table before reading a word of it. A
//! descriptor that names any other page — a corrupted or forged one, which
//! could point at a guest's page, at KServ's or past RAM — stops the walk
//! with a [`CorruptTable`], which the caller reports (a broken invariant, a
//! refusal, an audit finding); nothing behind it is read or written. The
//! single-address walks (`map`, `walk`, `tables_needed`, `unmap_leaf`)
//! share one descent, the whole-tree visits (`for_each_leaf`,
//! `for_each_table`) one recursion.

use crate::addr::{PAGE_SIZE, Pa};
use crate::hw::{PageAllocator, TableMemory};
use core::marker::PhantomData;

/// Entries in one table.
pub const ENTRIES: usize = 512;

bitflags::bitflags! {
    /// The bits of a VMSAv8-64 descriptor with the 4 KiB granule that mean
    /// the same in both regimes (Arm ARM D8.3): its type and the attributes
    /// stage 1 and stage 2 share. The output address is not a flag: see
    /// [`Descriptor`].
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Desc: u64 {
        /// Valid.
        const VALID = 1 << 0;
        /// At levels 0-2 a table descriptor (clear: a block); at level 3 a
        /// page (which must have it set).
        const TABLE_OR_PAGE = 1 << 1;
        /// `SH` = `0b11`: inner shareable.
        const INNER_SHAREABLE = 0b11 << 8;
        /// `AF`, the access flag: set, so a first access does not fault.
        const ACCESS_FLAG = 1 << 10;
        /// Execute-never: stage 1's `XN` (EL2) and stage 2's `XN[1]` (`XN`
        /// = `0b10`: not executable at EL1 or EL0).
        const EXECUTE_NEVER = 1 << 54;
    }
}

bitflags::bitflags! {
    /// The attribute bits of an EL2 stage-1 block or page descriptor (Arm
    /// ARM D8.3.2), with `MAIR_EL2` as [`El2Stage1::MAIR`].
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct El2Attributes: u64 {
        /// `AttrIndx`, the whole field: the `MAIR_EL2` index.
        const ATTR_INDEX = 0b111 << 2;
        /// `AttrIndx` = 1: `MAIR_EL2` index 1, Device-nGnRE (index 0,
        /// Normal write-back, is all bits clear).
        const ATTR_INDEX_DEVICE = 1 << 2;
        /// `AP[1]`, RES1 in a single-range regime such as EL2's.
        const AP_RES1 = 1 << 6;
        /// `AP[2]`: read-only.
        const READ_ONLY = 1 << 7;
    }
}

bitflags::bitflags! {
    /// The attribute bits of a stage-2 block or page descriptor (Arm ARM
    /// D8.3.2), with `HCR_EL2.FWB` = 0.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Stage2Attributes: u64 {
        /// `MemAttr[3:0]`, the whole field: the memory type.
        const MEM_ATTR = 0b1111 << 2;
        /// `MemAttr` = `0b1111`: Normal, outer and inner write-back.
        const NORMAL_WRITE_BACK = 0b1111 << 2;
        /// `MemAttr` = `0b0001`: Device-nGnRE.
        const DEVICE_NGNRE = 0b0001 << 2;
        /// `S2AP[0]`: readable.
        const READ = 1 << 6;
        /// `S2AP[1]`: writable.
        const WRITE = 1 << 7;
        /// Bit 55, one of the four bits stage 2 leaves to software: the
        /// page is read-only only because dirty logging write-protected it
        /// ([`Attrs::dirty_log`]), so a write to it is not a write to
        /// read-only memory.
        const DIRTY_LOG = 1 << 55;
    }
}

/// One descriptor as a table holds it: [`Desc`] bits, a regime's attribute
/// bits and, in a valid one, an output address (or the next table's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Descriptor(u64);

impl Descriptor {
    /// An invalid descriptor: no translation.
    const INVALID: Descriptor = Descriptor(0);
    /// The output address field, bits 47:12.
    const OA_MASK: u64 = 0x0000_FFFF_FFFF_F000;

    /// A table descriptor for the next-level table at `next`.
    const fn table(next: Pa) -> Descriptor {
        Descriptor((next.raw() & Self::OA_MASK) | Desc::VALID.bits() | Desc::TABLE_OR_PAGE.bits())
    }
    /// A block (levels 1 and 2) or page (level 3) descriptor for `pa` with
    /// a regime's `attrs` (from [`Regime::leaf_attrs`]).
    const fn leaf(level: usize, pa: Pa, attrs: u64) -> Descriptor {
        let ty = if level == 3 {
            Desc::VALID.union(Desc::TABLE_OR_PAGE)
        } else {
            Desc::VALID
        };
        Descriptor((pa.raw() & Self::OA_MASK) | attrs | ty.bits())
    }
    const fn flags(self) -> Desc {
        Desc::from_bits_truncate(self.0)
    }
    const fn is_valid(self) -> bool {
        self.flags().contains(Desc::VALID)
    }
    /// Whether it points to a next-level table (it is at `level`).
    const fn is_table(self, level: usize) -> bool {
        level < 3
            && self
                .flags()
                .contains(Desc::VALID.union(Desc::TABLE_OR_PAGE))
    }
    /// The output address (or the next table's), unaligned to any block.
    const fn output(self) -> Pa {
        Pa(self.0 & Self::OA_MASK)
    }
}

/// What a mapping maps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemKind {
    /// Normal memory, write-back cacheable, inner shareable.
    Normal,
    /// Device-nGnRE memory (MMIO).
    Device,
}

/// Access rights of a mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attrs {
    /// Normal memory or device.
    pub kind: MemKind,
    /// Writable (readability is implied).
    pub write: bool,
    /// Executable.
    pub exec: bool,
    /// Stage 2 only: not writable because dirty logging write-protected it
    /// (`write` is then false); recorded in a software bit of the
    /// descriptor, which the hardware ignores.
    pub dirty_log: bool,
}

impl Attrs {
    /// Normal memory, read-write, executable: KServ's RAM.
    pub const RAM_RWX: Attrs = Attrs {
        kind: MemKind::Normal,
        write: true,
        exec: true,
        dirty_log: false,
    };
    /// Normal memory, read-write, never executable.
    pub const RAM_RW: Attrs = Attrs {
        kind: MemKind::Normal,
        write: true,
        exec: false,
        dirty_log: false,
    };
    /// Normal memory, read-only, never executable.
    pub const RAM_RO: Attrs = Attrs {
        kind: MemKind::Normal,
        write: false,
        exec: false,
        dirty_log: false,
    };
    /// Normal memory, read-only, executable: code.
    pub const RAM_RX: Attrs = Attrs {
        kind: MemKind::Normal,
        write: false,
        exec: true,
        dirty_log: false,
    };
    /// Normal memory, read-only and executable because dirty logging
    /// write-protected it (stage 2).
    pub const RAM_RX_LOGGED: Attrs = Attrs {
        kind: MemKind::Normal,
        write: false,
        exec: true,
        dirty_log: true,
    };
    /// Device memory, read-write, never executable.
    pub const DEVICE: Attrs = Attrs {
        kind: MemKind::Device,
        write: true,
        exec: false,
        dirty_log: false,
    };
}

/// A translation regime's leaf descriptor format.
pub trait Regime {
    /// Encodes the attribute bits of a block or page descriptor (everything
    /// but the output address and the two type bits).
    fn leaf_attrs(attrs: Attrs) -> u64;
    /// Decodes what [`Regime::leaf_attrs`] encoded.
    fn decode_attrs(desc: u64) -> Attrs;
}

/// The EL2 stage-1 regime (non-VHE, `TTBR0_EL2`), with `MAIR_EL2` holding
/// [`El2Stage1::MAIR`].
#[derive(Clone, Copy, Debug)]
pub enum El2Stage1 {}

impl El2Stage1 {
    /// `MAIR_EL2`: index 0 Normal WB RA/WA, index 1 Device-nGnRE.
    pub const MAIR: u64 = 0xFF | (0x04 << 8);
}

impl Regime for El2Stage1 {
    fn leaf_attrs(a: Attrs) -> u64 {
        let mut common = Desc::ACCESS_FLAG;
        let mut d = El2Attributes::AP_RES1;
        match a.kind {
            MemKind::Normal => common |= Desc::INNER_SHAREABLE,
            MemKind::Device => d |= El2Attributes::ATTR_INDEX_DEVICE,
        }
        if !a.write {
            d |= El2Attributes::READ_ONLY;
        }
        if !a.exec {
            common |= Desc::EXECUTE_NEVER;
        }
        common.bits() | d.bits()
    }
    fn decode_attrs(desc: u64) -> Attrs {
        let d = El2Attributes::from_bits_truncate(desc);
        Attrs {
            kind: if d.intersection(El2Attributes::ATTR_INDEX) == El2Attributes::ATTR_INDEX_DEVICE {
                MemKind::Device
            } else {
                MemKind::Normal
            },
            write: !d.contains(El2Attributes::READ_ONLY),
            exec: !Desc::from_bits_truncate(desc).contains(Desc::EXECUTE_NEVER),
            dirty_log: false,
        }
    }
}

/// The stage-2 regime (`VTTBR_EL2`), attributes given directly in the
/// descriptor (`HCR_EL2.FWB` = 0: combined with stage 1's).
#[derive(Clone, Copy, Debug)]
pub enum Stage2 {}

impl Regime for Stage2 {
    fn leaf_attrs(a: Attrs) -> u64 {
        let mut common = Desc::ACCESS_FLAG;
        let mut d = Stage2Attributes::READ;
        match a.kind {
            MemKind::Normal => {
                d |= Stage2Attributes::NORMAL_WRITE_BACK;
                common |= Desc::INNER_SHAREABLE;
            }
            MemKind::Device => d |= Stage2Attributes::DEVICE_NGNRE,
        }
        if a.write {
            d |= Stage2Attributes::WRITE;
        } else if a.dirty_log {
            d |= Stage2Attributes::DIRTY_LOG;
        }
        if !a.exec {
            common |= Desc::EXECUTE_NEVER;
        }
        common.bits() | d.bits()
    }
    fn decode_attrs(desc: u64) -> Attrs {
        let d = Stage2Attributes::from_bits_truncate(desc);
        Attrs {
            kind: if d.intersection(Stage2Attributes::MEM_ATTR)
                == Stage2Attributes::NORMAL_WRITE_BACK
            {
                MemKind::Normal
            } else {
                MemKind::Device
            },
            write: d.contains(Stage2Attributes::WRITE),
            exec: !Desc::from_bits_truncate(desc).contains(Desc::EXECUTE_NEVER),
            dirty_log: d.contains(Stage2Attributes::DIRTY_LOG)
                && !d.contains(Stage2Attributes::WRITE),
        }
    }
}

/// Shape of a table tree: input size, start level and how many root tables
/// are concatenated (stage 2 only).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    input_bits: u32,
    start_level: usize,
    root_tables: usize,
}

/// Bits of input address resolved from `level` down: 48 at level 0, 39 at
/// level 1, 30 at level 2, 21 at level 3.
const fn coverage_bits(level: usize) -> u32 {
    12 + 9 * (4 - level as u32)
}

/// Size of a block or page mapped by one entry at `level`.
pub const fn block_size(level: usize) -> u64 {
    1 << (12 + 9 * (3 - level as u32))
}

impl Geometry {
    /// A stage-2 geometry for an IPA space of `ipa_bits` (32..=48), using
    /// root-table concatenation (up to 16 tables) to save a level where the
    /// architecture allows it (Arm ARM D8.2.7).
    pub const fn stage2(ipa_bits: u32) -> Option<Geometry> {
        if ipa_bits < 32 || ipa_bits > 48 {
            return None;
        }
        let mut level = 2;
        loop {
            let cov = coverage_bits(level);
            if ipa_bits <= cov + 4 {
                let root_tables = if ipa_bits > cov {
                    1 << (ipa_bits - cov)
                } else {
                    1
                };
                return Some(Geometry {
                    input_bits: ipa_bits,
                    start_level: level,
                    root_tables,
                });
            }
            if level == 0 {
                return None;
            }
            level -= 1;
        }
    }

    /// The smallest stage-2 geometry (32-bit IPAs, four concatenated
    /// level-2 root tables): a placeholder where some geometry is needed.
    pub const SMALLEST_STAGE2: Geometry = Geometry {
        input_bits: 32,
        start_level: 2,
        root_tables: 4,
    };

    /// A stage-1 geometry for a `va_bits` (32..=48) input space; no
    /// concatenation exists at stage 1.
    pub const fn stage1(va_bits: u32) -> Option<Geometry> {
        if va_bits < 32 || va_bits > 48 {
            return None;
        }
        let start_level = if va_bits <= 39 { 1 } else { 0 };
        Some(Geometry {
            input_bits: va_bits,
            start_level,
            root_tables: 1,
        })
    }

    /// Input address size in bits (`64 - T0SZ`).
    pub const fn input_bits(&self) -> u32 {
        self.input_bits
    }
    /// The level the walk starts at.
    pub const fn start_level(&self) -> usize {
        self.start_level
    }
    /// Number of concatenated root tables (contiguous, aligned to their total size).
    pub const fn root_tables(&self) -> usize {
        self.root_tables
    }
    /// Entries in the (possibly concatenated) root.
    const fn root_entries(&self) -> usize {
        let bits = self.input_bits - (coverage_bits(self.start_level) - 9);
        1 << bits
    }
    /// One past the largest input address.
    pub const fn input_limit(&self) -> u64 {
        1 << self.input_bits
    }
}

/// Why a mapping could not be made. The tables may hold part of the
/// requested mapping when this is returned (only invalid entries were
/// filled); callers that need all-or-nothing reserve pages up front.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapError {
    /// Addresses or size not page aligned, or the range leaves the input space.
    BadRange,
    /// Part of the range is already mapped.
    AlreadyMapped,
    /// The page-table pool ran dry.
    NoMemory,
    /// A table descriptor on the way names a page that is not one of the
    /// tree's tables; nothing was written below it.
    CorruptTable(CorruptTable),
}

/// A table descriptor a walk would not follow: it names a page that is not
/// one of the tree's own table pages (the caller's `is_table` said no), so
/// the tree is corrupt. The walk stopped there and read nothing behind it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CorruptTable {
    /// First input address the descriptor covers.
    pub va: u64,
    /// Level of the table that holds the descriptor.
    pub level: usize,
    /// The page it names.
    pub next: Pa,
}

/// A leaf found by [`PageTable::walk`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Leaf {
    /// Output address for the looked-up input address.
    pub pa: Pa,
    /// Level of the leaf (1, 2 or 3).
    pub level: usize,
    /// Attributes of the mapping.
    pub attrs: Attrs,
}

/// A table tree rooted at `root`, in regime `R`.
#[derive(Clone, Debug)]
pub struct PageTable<R: Regime> {
    root: Pa,
    geometry: Geometry,
    _regime: PhantomData<R>,
}

impl<R: Regime> PageTable<R> {
    /// Takes over a zeroed root of `geometry.root_tables()` contiguous pages,
    /// aligned to their total size.
    pub fn new(root: Pa, geometry: Geometry) -> Self {
        PageTable {
            root,
            geometry,
            _regime: PhantomData,
        }
    }

    /// The root's physical address (for `TTBR0_EL2`/`VTTBR_EL2`).
    pub fn root(&self) -> Pa {
        self.root
    }

    /// The geometry.
    pub fn geometry(&self) -> Geometry {
        self.geometry
    }

    fn index(&self, level: usize, va: u64) -> usize {
        let shift = 12 + 9 * (3 - level as u32);
        let mask = if level == self.geometry.start_level {
            self.geometry.root_entries() - 1
        } else {
            ENTRIES - 1
        };
        ((va >> shift) as usize) & mask
    }

    /// Maps `[va, va + size)` to `[pa, pa + size)` with the largest blocks
    /// alignment allows, allocating intermediate tables from `alloc`.
    /// Refuses to replace any valid entry. `is_table` says which pages hold
    /// this tree's tables (see the module documentation).
    #[allow(
        clippy::too_many_arguments,
        reason = "the tree's memory, page source and table check, then the mapping"
    )]
    pub fn map(
        &mut self,
        mem: &mut impl TableMemory,
        alloc: &mut impl PageAllocator,
        is_table: &impl Fn(Pa) -> bool,
        va: u64,
        pa: Pa,
        size: u64,
        attrs: Attrs,
    ) -> Result<(), MapError> {
        let aligned = va.is_multiple_of(PAGE_SIZE)
            && pa.is_aligned(PAGE_SIZE)
            && size.is_multiple_of(PAGE_SIZE)
            && size > 0;
        let end = va.checked_add(size).ok_or(MapError::BadRange)?;
        if !aligned || end > self.geometry.input_limit() || pa.checked_add(size).is_none() {
            return Err(MapError::BadRange);
        }
        let mut cur = va;
        while cur < end {
            let out = Pa(pa.raw() + (cur - va));
            cur += self.map_one(mem, alloc, is_table, cur, out, end - cur, attrs)?;
        }
        Ok(())
    }

    /// The descent every single-address walker shares: from `va`'s entry in
    /// the table at `table` (at `level`), follows table descriptors down to
    /// the first entry that is not one (an invalid entry, a block, or any
    /// level-3 entry) and returns where it is. Each next-level table is
    /// checked with `is_table` before its page is read; a descriptor that
    /// names any other page stops the descent.
    fn descend<M: TableMemory + ?Sized>(
        &self,
        mem: &M,
        is_table: &impl Fn(Pa) -> bool,
        va: u64,
        mut table: Pa,
        mut level: usize,
    ) -> Result<Slot, CorruptTable> {
        loop {
            let idx = self.index(level, va);
            let entry = Descriptor(mem.read_entry(table, idx));
            if !entry.is_table(level) {
                return Ok(Slot {
                    table,
                    level,
                    idx,
                    entry,
                });
            }
            let next = entry.output();
            if !is_table(next) {
                return Err(CorruptTable {
                    va: va & !(block_size(level) - 1),
                    level,
                    next,
                });
            }
            table = next;
            level += 1;
        }
    }

    /// Maps the largest block possible at `va` (at most `remaining` bytes)
    /// and returns its size.
    #[allow(
        clippy::too_many_arguments,
        reason = "`map`'s arguments, one block at a time"
    )]
    fn map_one(
        &mut self,
        mem: &mut impl TableMemory,
        alloc: &mut impl PageAllocator,
        is_table: &impl Fn(Pa) -> bool,
        va: u64,
        pa: Pa,
        remaining: u64,
        attrs: Attrs,
    ) -> Result<u64, MapError> {
        let mut table = self.root;
        let mut level = self.geometry.start_level;
        loop {
            let s = self
                .descend(&*mem, is_table, va, table, level)
                .map_err(MapError::CorruptTable)?;
            if s.entry.is_valid() {
                return Err(MapError::AlreadyMapped);
            }
            let size = block_size(s.level);
            let block_ok =
                s.level >= 1 && va.is_multiple_of(size) && pa.is_aligned(size) && remaining >= size;
            if block_ok || s.level == 3 {
                let leaf = Descriptor::leaf(s.level, pa, R::leaf_attrs(attrs));
                mem.write_entry(s.table, s.idx, leaf.0);
                return Ok(size);
            }
            // A new table, taken from `alloc` (the caller's own pool): the
            // descent continues in it without asking `is_table`.
            let next = alloc.alloc_page().ok_or(MapError::NoMemory)?;
            mem.zero_page(next);
            mem.write_entry(s.table, s.idx, Descriptor::table(next).0);
            table = next;
            level = s.level + 1;
        }
    }

    /// Looks up `va`: the leaf that maps it, `None` if nothing does, or the
    /// descriptor on the way that names a page `is_table` refused.
    pub fn walk(
        &self,
        mem: &impl TableMemory,
        is_table: &impl Fn(Pa) -> bool,
        va: u64,
    ) -> Result<Option<Leaf>, CorruptTable> {
        if va >= self.geometry.input_limit() {
            return Ok(None);
        }
        let s = self.descend(mem, is_table, va, self.root, self.geometry.start_level)?;
        if !s.entry.is_valid() {
            return Ok(None);
        }
        let size = block_size(s.level);
        Ok(Some(Leaf {
            pa: Pa((s.entry.output().raw() & !(size - 1)) | (va & (size - 1))),
            level: s.level,
            attrs: R::decode_attrs(s.entry.0),
        }))
    }

    /// Number of table pages [`PageTable::map`] would allocate to map the
    /// single page at `va` (0 to 3).
    pub fn tables_needed(
        &self,
        mem: &impl TableMemory,
        is_table: &impl Fn(Pa) -> bool,
        va: u64,
    ) -> Result<usize, CorruptTable> {
        let s = self.descend(mem, is_table, va, self.root, self.geometry.start_level)?;
        // A valid entry (a block, or a page at level 3): `map` will refuse
        // and allocate nothing.
        Ok(if !s.entry.is_valid() { 3 - s.level } else { 0 })
    }

    /// Invalidates the leaf (block or page) that translates `va`, if any, and
    /// returns the input range it covered. The caller must then invalidate
    /// the TLBs for that range before relying on the change.
    pub fn unmap_leaf(
        &mut self,
        mem: &mut impl TableMemory,
        is_table: &impl Fn(Pa) -> bool,
        va: u64,
    ) -> Result<Option<(u64, u64)>, CorruptTable> {
        if va >= self.geometry.input_limit() {
            return Ok(None);
        }
        let s = self.descend(&*mem, is_table, va, self.root, self.geometry.start_level)?;
        if !s.entry.is_valid() {
            return Ok(None);
        }
        mem.write_entry(s.table, s.idx, Descriptor::INVALID.0);
        let size = block_size(s.level);
        Ok(Some((va & !(size - 1), size)))
    }

    /// Calls `f(va, leaf, size)` for every valid leaf of the tree, in input
    /// address order, up to the first table descriptor that names a page
    /// `is_table` refused (which it returns, having read nothing there).
    pub fn for_each_leaf(
        &self,
        mem: &impl TableMemory,
        is_table: &impl Fn(Pa) -> bool,
        f: &mut impl FnMut(u64, Leaf, u64),
    ) -> Result<(), CorruptTable> {
        self.visit(
            mem,
            is_table,
            (self.root, self.geometry.start_level, 0),
            self.geometry.root_entries(),
            true,
            &mut |node| {
                if let Node::Leaf(va, leaf, size) = node {
                    f(va, leaf, size);
                }
            },
        )
    }

    /// Calls `f(table_page)` for every table page of the tree, root pages
    /// first (for the invariant "table pages are KCore-owned"), up to the
    /// first table descriptor that names a page `is_table` refused (which
    /// it returns, without calling `f` on it or reading it).
    pub fn for_each_table(
        &self,
        mem: &impl TableMemory,
        is_table: &impl Fn(Pa) -> bool,
        f: &mut impl FnMut(Pa),
    ) -> Result<(), CorruptTable> {
        for i in 0..self.geometry.root_tables {
            f(Pa(self.root.raw() + i as u64 * PAGE_SIZE));
        }
        self.visit(
            mem,
            is_table,
            (self.root, self.geometry.start_level, 0),
            self.geometry.root_entries(),
            false,
            &mut |node| {
                if let Node::Table(t) = node {
                    f(t);
                }
            },
        )
    }

    /// Visits the first `entries` entries of the table at `at = (table,
    /// level, first input address)` and everything below them, depth first:
    /// each next-level table (checked with `is_table` before it is read),
    /// and with `leaves` each leaf (without, level-3 tables are not read).
    fn visit(
        &self,
        mem: &impl TableMemory,
        is_table: &impl Fn(Pa) -> bool,
        (table, level, base): (Pa, usize, u64),
        entries: usize,
        leaves: bool,
        f: &mut impl FnMut(Node),
    ) -> Result<(), CorruptTable> {
        if level == 3 && !leaves {
            return Ok(());
        }
        let size = block_size(level);
        for i in 0..entries {
            let e = Descriptor(mem.read_entry(table, i));
            if !e.is_valid() {
                continue;
            }
            let va = base + i as u64 * size;
            if e.is_table(level) {
                let next = e.output();
                if !is_table(next) {
                    return Err(CorruptTable { va, level, next });
                }
                f(Node::Table(next));
                self.visit(mem, is_table, (next, level + 1, va), ENTRIES, leaves, f)?;
            } else if leaves {
                let leaf = Leaf {
                    pa: Pa(e.output().raw() & !(size - 1)),
                    level,
                    attrs: R::decode_attrs(e.0),
                };
                f(Node::Leaf(va, leaf, size));
            }
        }
        Ok(())
    }
}

/// Where [`PageTable::descend`] stopped: entry `idx` of the table at
/// `table`, at `level`, holding `entry`.
#[derive(Clone, Copy, Debug)]
struct Slot {
    table: Pa,
    level: usize,
    idx: usize,
    entry: Descriptor,
}

/// What [`PageTable::visit`] found.
#[derive(Clone, Copy, Debug)]
enum Node {
    /// A table page below the root.
    Table(Pa),
    /// A leaf: its first input address, the leaf, its size.
    Leaf(u64, Leaf, u64),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage2_geometry_uses_concatenation() {
        let g = Geometry::stage2(40).unwrap();
        assert_eq!((g.start_level(), g.root_tables()), (1, 2));
        assert_eq!(g.root_entries(), 1024);
        let g = Geometry::stage2(32).unwrap();
        assert_eq!((g.start_level(), g.root_tables()), (2, 4));
        assert_eq!(g, Geometry::SMALLEST_STAGE2);
        let g = Geometry::stage2(36).unwrap();
        assert_eq!((g.start_level(), g.root_tables()), (1, 1));
        let g = Geometry::stage2(44).unwrap();
        assert_eq!((g.start_level(), g.root_tables()), (0, 1));
        let g = Geometry::stage2(48).unwrap();
        assert_eq!(
            (g.start_level(), g.root_tables(), g.root_entries()),
            (0, 1, 512)
        );
        assert!(Geometry::stage2(31).is_none() && Geometry::stage2(49).is_none());
    }

    #[test]
    fn descriptor_attribute_encodings() {
        const XN: u64 = Desc::EXECUTE_NEVER.bits();
        const AF: u64 = Desc::ACCESS_FLAG.bits();
        let d = Stage2::leaf_attrs(Attrs::RAM_RWX);
        assert_eq!(d & (0xF << 2), 0xF << 2, "Normal WB");
        assert_eq!(d & (3 << 6), 3 << 6, "S2AP RW");
        assert_eq!(d & XN, 0);
        assert_eq!(d & AF, AF);
        let d = Stage2::leaf_attrs(Attrs::DEVICE);
        assert_eq!(d & (0xF << 2), 1 << 2, "Device-nGnRE");
        assert_ne!(d & XN, 0);
        for a in [
            Attrs::RAM_RWX,
            Attrs::RAM_RW,
            Attrs::RAM_RO,
            Attrs::RAM_RX,
            Attrs::DEVICE,
        ] {
            assert_eq!(Stage2::decode_attrs(Stage2::leaf_attrs(a)), a);
            assert_eq!(El2Stage1::decode_attrs(El2Stage1::leaf_attrs(a)), a);
        }
        // Dirty logging's mark is stage 2's alone, and only on a page that
        // is not writable.
        let d = Stage2::leaf_attrs(Attrs::RAM_RX_LOGGED);
        assert_eq!(d, Stage2::leaf_attrs(Attrs::RAM_RX) | 1 << 55);
        assert_eq!(Stage2::decode_attrs(d), Attrs::RAM_RX_LOGGED);
        let rwx_marked = Attrs {
            dirty_log: true,
            ..Attrs::RAM_RWX
        };
        assert_eq!(
            Stage2::leaf_attrs(rwx_marked),
            Stage2::leaf_attrs(Attrs::RAM_RWX)
        );
        assert!(!Stage2::decode_attrs(Stage2::leaf_attrs(Attrs::RAM_RWX) | 1 << 55).dirty_log);
        let d = El2Stage1::leaf_attrs(Attrs::RAM_RO);
        assert_eq!((d >> 6) & 3, 0b11, "AP = RO");
        assert_eq!(d & (0b111 << 2), 0, "AttrIndx 0");
    }

    #[test]
    fn descriptor_encodings_are_pinned() {
        // The exact attribute bits each regime writes, as literal numbers.
        for (a, s2, s1) in [
            (Attrs::RAM_RWX, 0x7FC, 0x740),
            (Attrs::RAM_RW, 0x0040_0000_0000_07FC, 0x0040_0000_0000_0740),
            (Attrs::RAM_RO, 0x0040_0000_0000_077C, 0x0040_0000_0000_07C0),
            (Attrs::RAM_RX, 0x77C, 0x7C0),
            (Attrs::DEVICE, 0x0040_0000_0000_04C4, 0x0040_0000_0000_0444),
        ] {
            assert_eq!(Stage2::leaf_attrs(a), s2, "stage 2 {a:?}");
            assert_eq!(El2Stage1::leaf_attrs(a), s1, "EL2 stage 1 {a:?}");
        }
    }
}
