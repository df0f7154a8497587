//! KServ's stage 2: an identity map of everything KServ may touch.
//!
//! At boot all RAM that KCore does not keep is mapped with the largest blocks
//! alignment allows. Device memory is mapped on first touch (as pKVM does):
//! an abort at an address that is neither RAM nor KCore's gets the largest
//! device block around it that contains no RAM and nothing of KCore's. An
//! abort on KCore's memory is refused, and KServ sees an external abort.
//! So invariant 1 of DESIGN.md section 2 ("a KCore page is mapped in no
//! stage-2 table") holds by construction: no path maps an address inside
//! [`HostMemoryMap::kcore`].
//!
//! A third kind of address is neither KServ's nor refused: a *trapped*
//! device page ([`TrapFrames`]), whose registers give the device power over
//! memory (a GIC redistributor's LPI table bases). It is never mapped either;
//! an access to it is emulated by KCore after a check
//! ([`HostAbort::Emulate`], [`crate::gic_guard`]).

use crate::addr::{Ipa, MemRange, Pa, RangeSet, RangeSetError};
use crate::hw::{PageAllocator, TableMemory};
use crate::pgtable::{Attrs, MapError, PageTable, Stage2, block_size};

/// Pages KServ reaches only through KCore: in `region`, the page at each
/// of `offsets` (page aligned, below `stride`) of every `stride`-sized
/// frame. A GIC's redistributors are such a region: one frame per CPU, and
/// in each the control page with the LPI table bases.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrapFrames {
    /// The whole region (page aligned).
    pub region: MemRange,
    /// The frame size (a power of two, at least a page).
    pub stride: u64,
    /// Offsets of the trapped pages in each frame.
    pub offsets: [Option<u64>; 2],
}

impl TrapFrames {
    /// `self` and `next` as one region, when `next` starts where `self`
    /// ends, has the same frames and `self` holds whole frames (so every
    /// frame keeps its place): one region per CPU, as an ACPI MADT gives a
    /// server's redistributors, becomes one region per contiguous run.
    pub fn joined(&self, next: &TrapFrames) -> Option<TrapFrames> {
        let whole = self.stride != 0 && self.region.size().is_multiple_of(self.stride);
        if !whole
            || self.stride != next.stride
            || self.offsets != next.offsets
            || self.region.end() != next.region.base()
        {
            return None;
        }
        let region = MemRange::new(
            self.region.base(),
            self.region.size().checked_add(next.region.size())?,
        )?;
        Some(TrapFrames { region, ..*self })
    }

    /// Whether `addr` lies in a trapped page.
    pub fn contains(&self, addr: u64) -> bool {
        if !self.region.contains(addr) || !self.stride.is_power_of_two() {
            return false;
        }
        let page = ((addr - self.region.base()) % self.stride) & !(crate::addr::PAGE_SIZE - 1);
        self.offsets.iter().flatten().any(|&o| o == page)
    }

    /// Whether `range` contains a trapped page (conservatively: any range
    /// of a frame or more that meets the region does).
    pub fn overlaps(&self, range: &MemRange) -> bool {
        if !self.region.overlaps(range) {
            return false;
        }
        if range.size() >= self.stride {
            return true;
        }
        let page = crate::addr::PAGE_SIZE;
        let first = range.base().max(self.region.base()) & !(page - 1);
        let end = range.end().min(self.region.end());
        (first..end)
            .step_by(page as usize)
            .any(|a| self.contains(a))
    }
}

/// Most [`TrapFrames`] regions (a GIC's redistributor regions, after
/// contiguous ones are [`TrapFrames::joined`]: one per socket or per gap).
pub const MAX_TRAP_FRAMES: usize = 16;

/// The platform's memory as far as KServ's stage 2 is concerned.
#[derive(Clone, Debug, Default)]
pub struct HostMemoryMap<const N: usize> {
    ram: RangeSet<N>,
    kcore: RangeSet<N>,
    trapped: [Option<TrapFrames>; MAX_TRAP_FRAMES],
}

impl<const N: usize> HostMemoryMap<N> {
    /// An empty map.
    pub const fn new() -> Self {
        HostMemoryMap {
            ram: RangeSet::new(),
            kcore: RangeSet::new(),
            trapped: [None; MAX_TRAP_FRAMES],
        }
    }

    /// Adds pages KServ may use only through KCore ([`TrapFrames`]). Fails
    /// when the region is not page aligned, the stride is no power of two of
    /// at least a page, an offset lies outside a frame, or every slot is
    /// taken.
    pub fn add_trapped(&mut self, t: TrapFrames) -> Result<(), RangeSetError> {
        let page = crate::addr::PAGE_SIZE;
        let ok = t.region.is_aligned(page)
            && t.stride.is_power_of_two()
            && t.stride >= page
            && t.offsets
                .iter()
                .flatten()
                .all(|&o| o.is_multiple_of(page) && o < t.stride);
        if !ok {
            return Err(RangeSetError::Malformed);
        }
        let slot = self
            .trapped
            .iter_mut()
            .find(|s| s.is_none())
            .ok_or(RangeSetError::Full)?;
        *slot = Some(t);
        Ok(())
    }

    /// How many [`TrapFrames`] regions were added.
    pub fn trapped_regions(&self) -> usize {
        self.trapped.iter().flatten().count()
    }

    /// Whether `addr` lies in a page KServ reaches only through KCore.
    pub fn is_trapped(&self, addr: u64) -> bool {
        self.trapped.iter().flatten().any(|t| t.contains(addr))
    }

    /// For an address in a trapped page: its offset in its frame.
    pub fn frame_offset(&self, addr: u64) -> Option<u64> {
        let t = self.trapped.iter().flatten().find(|t| t.contains(addr))?;
        Some((addr - t.region.base()) % t.stride)
    }

    fn trapped_overlaps(&self, range: &MemRange) -> bool {
        self.trapped.iter().flatten().any(|t| t.overlaps(range))
    }
    /// Adds a RAM bank.
    pub fn add_ram(&mut self, r: MemRange) -> Result<(), RangeSetError> {
        self.ram.insert(r)
    }
    /// Adds a region KCore keeps (its image, its pool, device regions it owns).
    /// Page granular: the region is widened to whole pages.
    pub fn add_kcore(&mut self, r: MemRange) -> Result<(), RangeSetError> {
        let r = r
            .align_out(crate::addr::PAGE_SIZE)
            .ok_or(RangeSetError::Overlap)?;
        self.kcore.insert(r)
    }
    /// RAM banks.
    pub fn ram(&self) -> &RangeSet<N> {
        &self.ram
    }

    /// KCore's regions.
    pub fn kcore(&self) -> &RangeSet<N> {
        &self.kcore
    }
}

/// Outcome of a KServ stage-2 abort.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostAbort {
    /// The address is now mapped (or already was): retry the access.
    Mapped,
    /// The address is KCore's: inject an external abort into KServ.
    Denied,
    /// No table memory left to map it: inject an external abort.
    NoMemory,
    /// A trapped device page: KCore performs the access for KServ, checked
    /// ([`crate::gic_guard`]), and skips the instruction.
    Emulate,
    /// KServ's stage 2 holds a table descriptor that names a page that is
    /// not one of its tables (a KCore bug): nothing was read or mapped
    /// through it. Inject an external abort and count a broken invariant.
    CorruptTable,
}

/// KServ's stage-2 table and the map that decides what goes in it.
#[derive(Clone, Debug)]
pub struct HostStage2<const N: usize> {
    table: PageTable<Stage2>,
    map: HostMemoryMap<N>,
    denied: u64,
    tables: TablePages,
}

/// Where KServ's stage-2 table pages may lie: its root and the pool its
/// tables are allocated from. A descriptor naming any other page — even
/// another of KCore's, such as the ownership table — is corrupt. Empty means
/// not narrowed (any `KCore` page; host tests that do not say).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TablePages([Option<MemRange>; 2]);

impl TablePages {
    /// The root's pages and the pool's.
    pub const fn new(root: MemRange, pool: MemRange) -> Self {
        TablePages([Some(root), Some(pool)])
    }
    /// Whether a table page of KServ's stage 2 may lie at `pa` (besides
    /// being KCore's).
    pub fn allows(&self, pa: Pa) -> bool {
        self.0.iter().all(Option::is_none) || self.0.iter().flatten().any(|r| r.contains(pa.raw()))
    }

    /// Whether `pa` holds one of KServ's stage-2 tables: a `KCore` page in
    /// these regions. The one test every walk of KServ's stage 2 uses.
    pub fn holds<S: AsRef<[u64]> + AsMut<[u64]>, const B: usize>(
        &self,
        owners: &crate::ownership::OwnershipTable<S, B>,
        pa: Pa,
    ) -> bool {
        owners.holds_table(pa, None) && self.allows(pa)
    }
}

impl<const N: usize> HostStage2<N> {
    /// Wraps an empty table.
    pub fn new(table: PageTable<Stage2>, map: HostMemoryMap<N>) -> Self {
        HostStage2 {
            table,
            map,
            denied: 0,
            tables: TablePages::default(),
        }
    }

    /// The table (for `VTTBR_EL2` and the invariant checks).
    pub fn table(&self) -> &PageTable<Stage2> {
        &self.table
    }

    /// The table, for the ownership transitions that unmap from it.
    pub(crate) fn table_mut(&mut self) -> &mut PageTable<Stage2> {
        &mut self.table
    }

    /// Narrows where the table's pages may lie ([`TablePages`]).
    pub fn set_table_pages(&mut self, pages: TablePages) {
        self.tables = pages;
    }

    /// Where the table's pages may lie.
    pub fn table_pages(&self) -> TablePages {
        self.tables
    }

    /// The memory map.
    pub fn map(&self) -> &HostMemoryMap<N> {
        &self.map
    }

    /// Accesses refused so far.
    pub fn denied_count(&self) -> u64 {
        self.denied
    }

    /// Maps every RAM bank, minus KCore's regions, identity, read-write-execute.
    /// `is_table` says which pages hold the table's tables ([`crate::pgtable`]).
    pub fn map_ram(
        &mut self,
        mem: &mut impl TableMemory,
        alloc: &mut impl PageAllocator,
        is_table: &impl Fn(Pa) -> bool,
    ) -> Result<(), MapError> {
        let limit = self.table.geometry().input_limit();
        for bank in self.map.ram.iter() {
            let mut start = bank.base();
            let end = bank.end().min(limit);
            for k in self.map.kcore.iter() {
                if k.end() <= start || k.base() >= end {
                    continue;
                }
                if k.base() > start {
                    self.table.map(
                        mem,
                        alloc,
                        is_table,
                        start,
                        Pa(start),
                        k.base() - start,
                        Attrs::RAM_RWX,
                    )?;
                }
                start = k.end();
            }
            if start < end {
                self.table.map(
                    mem,
                    alloc,
                    is_table,
                    start,
                    Pa(start),
                    end - start,
                    Attrs::RAM_RWX,
                )?;
            }
        }
        Ok(())
    }

    /// Handles a stage-2 abort by KServ at `ipa`. `ram_ok(range)` says
    /// whether KServ may map every page of a RAM range now (the ownership
    /// table's answer). RAM gets the largest block up to 2 MiB for which that
    /// holds, device memory up to 1 GiB. `is_table` says which pages hold
    /// the table's tables ([`crate::pgtable`]).
    pub fn handle_abort(
        &mut self,
        mem: &mut impl TableMemory,
        alloc: &mut impl PageAllocator,
        ipa: Ipa,
        ram_ok: impl Fn(MemRange) -> bool,
        is_table: &impl Fn(Pa) -> bool,
    ) -> HostAbort {
        let addr = ipa.raw();
        if self.map.kcore.find(addr).is_some() || addr >= self.table.geometry().input_limit() {
            self.denied += 1;
            return HostAbort::Denied;
        }
        if self.map.is_trapped(addr) {
            return HostAbort::Emulate;
        }
        match self.table.walk(mem, is_table, addr) {
            // Another CPU mapped it first, or a stale TLB entry: retry.
            Ok(Some(_)) => return HostAbort::Mapped,
            Ok(None) => {}
            Err(_) => return HostAbort::CorruptTable,
        }
        let is_ram = self.map.ram.find(addr).is_some();
        let (attrs, first_level) = if is_ram {
            (Attrs::RAM_RWX, 2)
        } else {
            (Attrs::DEVICE, 1)
        };
        for level in first_level..=3 {
            let size = block_size(level);
            let base = addr & !(size - 1);
            let Some(block) = MemRange::new(base, size) else {
                continue;
            };
            if self.map.kcore.overlaps(&block)
                || self.map.trapped_overlaps(&block)
                || (!is_ram && self.map.ram.overlaps(&block))
            {
                continue;
            }
            if is_ram && !(self.map.ram.iter().any(|r| r.contains_range(&block)) && ram_ok(block)) {
                if level == 3 {
                    // The page itself is not one KServ may use.
                    self.denied += 1;
                    return HostAbort::Denied;
                }
                continue;
            }
            match self
                .table
                .map(mem, alloc, is_table, base, Pa(base), size, attrs)
            {
                Ok(()) => return HostAbort::Mapped,
                Err(MapError::NoMemory) => return HostAbort::NoMemory,
                Err(MapError::CorruptTable(_)) => return HostAbort::CorruptTable,
                // Part of this block is mapped already. `map` fills the
                // block's free entries in order until it meets a mapped one,
                // so the faulting address may be mapped now (every page of
                // the block was checked above); otherwise try smaller.
                Err(MapError::AlreadyMapped) | Err(MapError::BadRange) => {
                    match self.table.walk(mem, is_table, addr) {
                        Ok(Some(_)) => return HostAbort::Mapped,
                        Ok(None) => continue,
                        Err(_) => return HostAbort::CorruptTable,
                    }
                }
            }
        }
        // Only reached if even the 4 KiB page is mapped, which the walk above
        // ruled out, or overlaps KCore, which was refused first.
        HostAbort::Denied
    }
}
