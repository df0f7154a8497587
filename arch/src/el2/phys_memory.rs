//! Physical memory at EL2: table descriptors, page contents, device memory
//! and TLB maintenance through KCore's identity map ([`PhysTables`]), and the
//! pool that table pages come from ([`PagePool`]). The host doubles of the
//! same traits are in `host_memory`.
//!
//! KCore's EL2 stage 1 maps all RAM at its physical address, so a table
//! page's physical address is also the pointer KCore uses to write it.

use core::arch::asm;
use kcore::addr::{PAGE_SIZE, Pa};
use kcore::hw::{PageAllocator, TableMemory};

/// Physical memory seen through KCore's identity map (or with the MMU off).
#[derive(Debug)]
pub struct PhysTables {
    _private: (),
}

impl PhysTables {
    /// # Safety
    /// Only KCore-owned pages (those a [`PagePool`] or a static table area
    /// handed out) may then be passed to the [`TableMemory`] methods, and
    /// they must be mapped read-write at EL2 (or the MMU off).
    pub const unsafe fn new() -> Self {
        PhysTables { _private: () }
    }
}

impl TableMemory for PhysTables {
    fn read_entry(&self, table: Pa, index: usize) -> u64 {
        let p = (table.raw() as usize + index * 8) as *const u64;
        // SAFETY: `new`'s contract: `table` is a mapped KCore table page and
        // `index` is within it (the table code computes it from the geometry).
        unsafe { p.read_volatile() }
    }
    fn write_entry(&mut self, table: Pa, index: usize, value: u64) {
        let p = (table.raw() as usize + index * 8) as *mut u64;
        // SAFETY: as for `read_entry`; KCore is the only writer of its tables.
        unsafe { p.write_volatile(value) };
        // Make the descriptor visible to table walkers before it is used.
        // SAFETY: a barrier; no memory is accessed.
        unsafe { asm!("dsb ishst", options(nostack, preserves_flags)) };
    }
    fn zero_page(&mut self, page: Pa) {
        let start = page.raw();
        let end = start + PAGE_SIZE;
        if let Some(block) = zva_block() {
            // SAFETY: `page` is a whole, mapped, KCore-owned page of Normal
            // memory (the MMU is on); `block` divides a quarter page, so the
            // loop zeroes exactly its 4096 bytes, four blocks a turn.
            unsafe {
                asm!(
                    "2:",
                    "dc zva, {p}",
                    "add {p}, {p}, {b}",
                    "dc zva, {p}",
                    "add {p}, {p}, {b}",
                    "dc zva, {p}",
                    "add {p}, {p}, {b}",
                    "dc zva, {p}",
                    "add {p}, {p}, {b}",
                    "cmp {p}, {end}",
                    "b.ne 2b",
                    p = inout(reg) start => _,
                    b = in(reg) block,
                    end = in(reg) end,
                    options(nostack),
                )
            };
            return;
        }
        // SAFETY: `page` is a whole, mapped, KCore-owned page (page aligned,
        // so every 16-byte store is aligned, as Device memory with the MMU
        // off needs); the loop writes exactly its 4096 bytes, 64 a turn.
        unsafe {
            asm!(
                "2:",
                "stp xzr, xzr, [{p}]",
                "stp xzr, xzr, [{p}, #16]",
                "stp xzr, xzr, [{p}, #32]",
                "stp xzr, xzr, [{p}, #48]",
                "add {p}, {p}, #64",
                "cmp {p}, {end}",
                "b.ne 2b",
                p = inout(reg) start => _,
                end = in(reg) end,
                options(nostack),
            )
        };
    }
}

/// The bytes one `DC ZVA` zeroes, when KCore may use it to zero pages: the
/// MMU is on (with it off, data accesses are Device memory, where `DC ZVA`
/// faults), `DCZID_EL0` does not prohibit it and four blocks fit in a page.
/// A page then costs a sixteenth of the instructions of a store loop with
/// 64-byte blocks.
fn zva_block() -> Option<u64> {
    let (sctlr, dczid): (u64, u64);
    // SAFETY: reads two system registers; no memory is accessed.
    unsafe {
        asm!(
            "mrs {s}, sctlr_el2",
            "mrs {d}, dczid_el0",
            s = out(reg) sctlr,
            d = out(reg) dczid,
            options(nomem, nostack, preserves_flags),
        )
    };
    let mmu_on = sctlr & 1 != 0;
    let prohibited = dczid & (1 << 4) != 0;
    let block = 4u64 << (dczid & 0xF);
    (mmu_on && !prohibited && block <= PAGE_SIZE / 4).then_some(block)
}

/// A bump allocator over a KCore-owned physical range: pages are never
/// returned, which is right for tables that live as long as KCore.
#[derive(Debug)]
pub struct PagePool {
    next: u64,
    end: u64,
}

impl PagePool {
    /// A pool over `[base, end)`, both page aligned.
    ///
    /// # Safety
    /// The range must be RAM that KCore owns, mapped at EL2, and used for
    /// nothing else.
    pub const unsafe fn new(base: u64, end: u64) -> Self {
        PagePool { next: base, end }
    }
}

impl PageAllocator for PagePool {
    fn alloc_page(&mut self) -> Option<Pa> {
        if self.next.checked_add(PAGE_SIZE)? > self.end {
            return None;
        }
        let p = Pa(self.next);
        self.next += PAGE_SIZE;
        Some(p)
    }
    fn free_pages(&self) -> usize {
        ((self.end - self.next) / PAGE_SIZE) as usize
    }
}

impl kcore::hw::PhysMemory for PhysTables {
    fn read(&self, pa: Pa, buf: &mut [u8]) {
        // SAFETY: KCore maps all RAM at EL2 and the caller passes RAM
        // addresses within one page (the trait's contract); `buf` is
        // KCore's own. Each source byte is read once, a word at a time when
        // both sides are aligned (an image being verified is read this way).
        unsafe {
            super::memcpy::copy_bytes(buf.as_mut_ptr(), pa.raw() as usize as *const u8, buf.len())
        };
    }
    fn read_words(&self, pa: Pa, buf: &mut [u64]) {
        // SAFETY: as for `read`: RAM mapped at EL2, 8-byte aligned, within
        // one page (the trait's contract); `buf` is KCore's own, and each
        // word of the source is read once.
        unsafe {
            super::memcpy::copy_words(buf.as_mut_ptr(), pa.raw() as usize as *const u64, buf.len())
        };
    }
    fn write_words(&mut self, pa: Pa, words: &[u64]) {
        // SAFETY: KCore writes only its own context pages and the exit half
        // and dirty ring of a KServ run page it checked is KServ's (the trait's contract);
        // RAM is mapped read-write at EL2.
        unsafe {
            super::memcpy::copy_words(pa.raw() as usize as *mut u64, words.as_ptr(), words.len())
        };
    }
    fn store_barrier(&mut self) {
        // SAFETY: a barrier; no memory is accessed.
        unsafe { asm!("dmb ishst", options(nostack, preserves_flags)) };
    }
    fn sync_for_guest(&mut self, page: Pa) {
        crate::el2::cpu::clean_dcache_range(page.raw(), PAGE_SIZE);
        // SAFETY: instruction cache maintenance and barriers; no data access.
        unsafe {
            asm!(
                "ic ialluis",
                "dsb ish",
                "isb",
                options(nostack, preserves_flags)
            )
        };
    }
    fn scrub_page(&mut self, page: Pa) {
        // A scrubbed page is RAM like a table page: the same zeroing.
        TableMemory::zero_page(self, page);
        // Make the zeros visible before the page changes hands.
        // SAFETY: a barrier; no memory is accessed.
        unsafe { asm!("dsb ish", options(nostack, preserves_flags)) };
    }
}

impl kcore::hw::DeviceMemory for PhysTables {
    fn mmio_read(&mut self, pa: Pa, width: u8) -> u64 {
        let a = pa.raw() as usize;
        // SAFETY (each arm): KCore asks only for registers of the trapped
        // GIC pages (`kcore::gic_guard`), which lie in the redistributor
        // regions KCore maps at EL2 as device memory, at an address aligned
        // to `width` (checked by `gic_guard::check`): one single-copy-atomic
        // device load of that size.
        match width {
            // SAFETY: see above.
            8 => unsafe { (a as *const u64).read_volatile() },
            // SAFETY: see above.
            4 => u64::from(unsafe { (a as *const u32).read_volatile() }),
            // SAFETY: see above.
            2 => u64::from(unsafe { (a as *const u16).read_volatile() }),
            // SAFETY: see above.
            _ => u64::from(unsafe { (a as *const u8).read_volatile() }),
        }
    }
    fn mmio_write(&mut self, pa: Pa, width: u8, value: u64) {
        let a = pa.raw() as usize;
        // SAFETY (each arm): as for `mmio_read`: an aligned device store of
        // `width` bytes to a mapped, trapped GIC register that KCore checked.
        match width {
            // SAFETY: see above.
            8 => unsafe { (a as *mut u64).write_volatile(value) },
            // SAFETY: see above.
            4 => unsafe { (a as *mut u32).write_volatile(value as u32) },
            // SAFETY: see above.
            2 => unsafe { (a as *mut u16).write_volatile(value as u16) },
            // SAFETY: see above.
            _ => unsafe { (a as *mut u8).write_volatile(value as u8) },
        }
    }
}

impl kcore::hw::Tlb for PhysTables {
    fn flush_ipa(&mut self, vmid: kcore::hw::Vmid, ipa: kcore::addr::Ipa) {
        with_vmid(vmid, || {
            // SAFETY: TLB maintenance for the current VMID: stage-2 entries for
            // the IPA, then the combined stage-1+2 entries, broadcast to the
            // inner-shareable domain and completed before returning.
            unsafe {
                asm!(
                    "dsb ishst",
                    "tlbi ipas2e1is, {ipa}",
                    "dsb ish",
                    "tlbi vmalle1is",
                    "dsb ish",
                    "isb",
                    ipa = in(reg) ipa.raw() >> 12,
                    options(nostack, preserves_flags)
                )
            };
        });
    }
    fn flush_vmid(&mut self, vmid: kcore::hw::Vmid) {
        with_vmid(vmid, || {
            // SAFETY: TLB maintenance for every entry of the current VMID,
            // broadcast and completed before returning.
            unsafe {
                asm!(
                    "dsb ishst",
                    "tlbi vmalls12e1is",
                    "dsb ish",
                    "isb",
                    options(nostack, preserves_flags)
                )
            };
        });
    }
}

/// Runs `f` with `VTTBR_EL2.VMID` = `vmid` (TLB maintenance by VMID acts on
/// the current one), restoring the previous `VTTBR_EL2` after.
fn with_vmid(vmid: kcore::hw::Vmid, f: impl FnOnce()) {
    let saved: u64;
    // SAFETY: reads an EL2 register.
    unsafe { asm!("mrs {}, vttbr_el2", out(reg) saved, options(nomem, nostack, preserves_flags)) };
    let want = (saved & !(0xFFFF << 48)) | ((vmid as u64) << 48);
    if want == saved {
        f();
        return;
    }
    // SAFETY: only the VMID field changes, while KCore runs at EL2 (stage 2
    // does not apply to it); the previous value is restored below.
    unsafe { asm!("msr vttbr_el2, {}", "isb", in(reg) want, options(nostack, preserves_flags)) };
    f();
    // SAFETY: restores the value read above.
    unsafe { asm!("msr vttbr_el2, {}", "isb", in(reg) saved, options(nostack, preserves_flags)) };
}
