//! The hardware traits: the only way KCore reaches the machine.
//!
//! `kcore-arch` implements them at EL2 with real instructions and, for host
//! tests and model checks, as a host double backed by ordinary memory. Nothing
//! in KCore knows which one it runs on.

use crate::addr::Pa;

/// Physical memory that holds translation tables, seen 64 bits at a time.
///
/// Implementations must only be handed table pages that KCore owns; the
/// table code never forms an address outside the pages it allocated itself,
/// and never reads a page a descriptor names before the caller's
/// `is_table` accepted it as one of the tree's tables ([`crate::pgtable`]).
pub trait TableMemory {
    /// Reads entry `index` of the table at `table`.
    fn read_entry(&self, table: Pa, index: usize) -> u64;
    /// Writes entry `index` of the table at `table`. On hardware the write is
    /// ordered before any later table walk (a `dsb ishst` before it is used).
    fn write_entry(&mut self, table: Pa, index: usize, value: u64);
    /// Fills the 4 KiB page at `page` with zeros.
    fn zero_page(&mut self, page: Pa);
}

/// A bounded source of 4 KiB pages for translation tables.
pub trait PageAllocator {
    /// One page-aligned page, or `None` when the pool is exhausted.
    fn alloc_page(&mut self) -> Option<Pa>;
    /// Pages left in the pool.
    fn free_pages(&self) -> usize;
}

/// The firmware below KCore (EL3, or the machine model on QEMU), reached with
/// `SMC #0`.
pub trait Firmware {
    /// Issues an SMCCC call with `x0 = fid` and the given arguments and returns
    /// `x0`.
    fn smc(&mut self, fid: u32, args: [u64; 3]) -> u64;
    /// The same call, returning `x0..x3` (SMCCC calls with more than one
    /// result: `TRNG_RND`, `TRNG_GET_UUID`).
    fn smc_regs(&mut self, fid: u32, args: [u64; 3]) -> [u64; 4];
}

/// RAM as KCore reads and writes it on behalf of ownership changes: hashing a
/// VM's image, scrubbing a page before it returns to KServ. At EL2 this is
/// KCore's identity map of RAM.
pub trait PhysMemory {
    /// Copies `buf.len()` bytes starting at `pa` into `buf`. The range never
    /// crosses a page boundary.
    fn read(&self, pa: Pa, buf: &mut [u8]);
    /// Reads `buf.len()` 64-bit words starting at the 8-byte aligned `pa`,
    /// within one page: a vCPU's context page, KServ's run page.
    fn read_words(&self, pa: Pa, buf: &mut [u64]);
    /// Writes words to the 8-byte aligned `pa`, within one page. KCore
    /// writes only its own pages and the exit half and dirty ring of a run
    /// page.
    fn write_words(&mut self, pa: Pa, words: &[u64]);
    /// A store barrier for memory another CPU reads without KCore's lock
    /// (a run page's dirty ring): every write before it is visible to the
    /// other CPUs of the inner shareable domain before any write after it
    /// (`DMB ISHST`).
    fn store_barrier(&mut self);
    /// Fills the 4 KiB page at `page` with zeros.
    fn scrub_page(&mut self, page: Pa);
    /// Makes the 4 KiB page at `page` as KServ wrote it visible to a guest
    /// that runs with its MMU or caches off: cleaned to the point of
    /// coherency, and no stale instructions in any instruction cache.
    fn sync_for_guest(&mut self, page: Pa);
}

/// A VMID: 0 is KServ's stage 2, `1..` are VMs'.
pub type Vmid = u16;

/// TLB maintenance for stage-2 changes. Every valid-to-invalid change of a
/// stage-2 entry is followed by one of these before the change is relied on
/// (break-before-make, Arm ARM D8.16).
pub trait Tlb {
    /// Drops every TLB entry of `vmid` (stage 2 and combined stage 1+2) that
    /// translates `ipa`, on all CPUs, and waits for completion.
    fn flush_ipa(&mut self, vmid: Vmid, ipa: crate::addr::Ipa);
    /// Drops every TLB entry of `vmid` on all CPUs, and waits for completion.
    fn flush_vmid(&mut self, vmid: Vmid);
}

/// Device registers KCore accesses on KServ's behalf: the GIC frames KServ
/// may use only through KCore's checks ([`crate::gic_guard`]). An access is
/// one load or store of `width` bytes (1, 2, 4 or 8), aligned, at `pa`.
pub trait DeviceMemory {
    /// Reads the register at `pa`.
    fn mmio_read(&mut self, pa: Pa, width: u8) -> u64;
    /// Writes `value` (its low `width` bytes) to the register at `pa`.
    fn mmio_write(&mut self, pa: Pa, width: u8, value: u64);
}

/// Everything KCore's ownership transitions and KServ's traps touch: table
/// memory, RAM contents, the TLBs and trapped device registers. At EL2 one
/// object implements all four.
pub trait Hardware: TableMemory + PhysMemory + Tlb + DeviceMemory {}

impl<T: TableMemory + PhysMemory + Tlb + DeviceMemory> Hardware for T {}
