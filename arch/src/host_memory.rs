//! Host doubles of KCore's memory, for tests and model checks: everything
//! its ownership transitions touch (`kcore::hw::Hardware`) as one sparse
//! physical memory that holds both table descriptors and page contents,
//! and a TLB model ([`FakeMachine`]); and a page allocator for table pages
//! ([`FakeAllocator`]). The EL2 counterparts are `el2::phys_memory`.
//!
//! The TLB model counts stage-2 descriptors that went from valid to anything
//! else and have not been followed by a flush yet; tests assert the count is
//! zero after every call, which catches a transition that forgets its TLB
//! invalidation. It also records every flush, every scrubbed page and every
//! page synchronised for a guest.

extern crate std;

use kcore::addr::{Ipa, PAGE_SIZE, Pa};
use kcore::hw::{DeviceMemory, PageAllocator, PhysMemory, TableMemory, Tlb, Vmid};
use std::boxed::Box;
use std::collections::BTreeMap;
use std::vec::Vec;

const PAGE: usize = PAGE_SIZE as usize;

/// One TLB maintenance operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flush {
    /// `flush_ipa(vmid, ipa)`.
    Ipa(Vmid, u64),
    /// `flush_vmid(vmid)`.
    Vmid(Vmid),
}

/// Sparse RAM plus a TLB model.
#[derive(Debug, Default, Clone)]
pub struct FakeMachine {
    pages: BTreeMap<u64, Box<[u8; PAGE]>>,
    unflushed: usize,
    flushes: Vec<Flush>,
    scrubbed: Vec<Pa>,
    synced: Vec<Pa>,
    store_barriers: usize,
    /// Device registers by address, as KCore last wrote them (or a test
    /// set them); unset ones read as zero.
    pub registers: BTreeMap<u64, u64>,
    /// Every device access KCore made: address, width, the value written
    /// (`None` for a read).
    pub mmio_log: Vec<(u64, u8, Option<u64>)>,
}

impl FakeMachine {
    /// All-zero memory, nothing to flush.
    pub fn new() -> Self {
        Self::default()
    }

    /// Writes `bytes` at `pa` (may cross pages): a test playing KServ or a VM.
    pub fn write(&mut self, pa: impl Into<u64>, bytes: &[u8]) {
        let pa = pa.into();
        for (i, b) in bytes.iter().enumerate() {
            let a = pa + i as u64;
            let page = self
                .pages
                .entry(a & !(PAGE_SIZE - 1))
                .or_insert_with(|| Box::new([0; PAGE]));
            page[(a % PAGE_SIZE) as usize] = *b;
        }
    }

    /// Reads `len` bytes at `pa`.
    pub fn bytes(&self, pa: u64, len: usize) -> Vec<u8> {
        (0..len as u64)
            .map(|i| {
                let a = pa + i;
                self.pages
                    .get(&(a & !(PAGE_SIZE - 1)))
                    .map_or(0, |p| p[(a % PAGE_SIZE) as usize])
            })
            .collect()
    }

    /// Whether the page at `pa` is all zero.
    pub fn is_zero(&self, pa: u64) -> bool {
        self.pages
            .get(&(pa & !(PAGE_SIZE - 1)))
            .is_none_or(|p| p.iter().all(|b| *b == 0))
    }

    /// Descriptors invalidated since the last flush.
    pub fn unflushed(&self) -> usize {
        self.unflushed
    }

    /// Every flush so far.
    pub fn flushes(&self) -> &[Flush] {
        &self.flushes
    }

    /// Pages made visible to guests with [`PhysMemory::sync_for_guest`], in order.
    pub fn synced(&self) -> &[Pa] {
        &self.synced
    }
    /// Pages scrubbed so far, in order.
    pub fn scrubbed(&self) -> &[Pa] {
        &self.scrubbed
    }
    /// Store barriers so far ([`PhysMemory::store_barrier`]).
    pub fn store_barriers(&self) -> usize {
        self.store_barriers
    }

    /// The pages whose contents differ from `before`'s (a page never
    /// written reads as zeros), in address order.
    pub fn pages_changed_since(&self, before: &FakeMachine) -> Vec<u64> {
        let zero = [0u8; PAGE];
        let mut all: Vec<u64> = self
            .pages
            .keys()
            .chain(before.pages.keys())
            .copied()
            .collect();
        all.sort_unstable();
        all.dedup();
        all.retain(|p| {
            let a = self.pages.get(p).map_or(&zero, |b| &**b);
            let b = before.pages.get(p).map_or(&zero, |b| &**b);
            a != b
        });
        all
    }

    fn word(&self, addr: u64) -> u64 {
        let off = (addr % PAGE_SIZE) as usize;
        match self.pages.get(&(addr & !(PAGE_SIZE - 1))) {
            // Table entries are 8-byte aligned, so they never cross a page.
            Some(p) if off + 8 <= PAGE => {
                let mut w = [0u8; 8];
                w.copy_from_slice(&p[off..off + 8]);
                u64::from_le_bytes(w)
            }
            Some(_) => {
                let mut w = [0u8; 8];
                w.copy_from_slice(&self.bytes(addr, 8));
                u64::from_le_bytes(w)
            }
            None => 0,
        }
    }
}

impl TableMemory for FakeMachine {
    fn read_entry(&self, table: Pa, index: usize) -> u64 {
        self.word(table.raw() + index as u64 * 8)
    }
    fn write_entry(&mut self, table: Pa, index: usize, value: u64) {
        let addr = table.raw() + index as u64 * 8;
        let old = self.word(addr);
        if old & 1 != 0 && old != value {
            self.unflushed += 1;
        }
        self.write(addr, &value.to_le_bytes());
    }
    fn zero_page(&mut self, page: Pa) {
        self.pages.remove(&page.raw());
    }
}

impl PhysMemory for FakeMachine {
    fn read(&self, pa: Pa, buf: &mut [u8]) {
        let offset = (pa.raw() % PAGE_SIZE) as usize;
        assert!(
            offset + buf.len() <= PAGE,
            "read of {} bytes at {pa} crosses a page boundary",
            buf.len()
        );
        let b = self.bytes(pa.raw(), buf.len());
        buf.copy_from_slice(&b);
    }
    fn read_words(&self, pa: Pa, buf: &mut [u64]) {
        assert!(pa.is_aligned(8), "word read at unaligned {pa}");
        let mut bytes = std::vec![0u8; buf.len() * 8];
        self.read(pa, &mut bytes);
        for (w, b) in buf.iter_mut().zip(bytes.chunks_exact(8)) {
            let mut a = [0u8; 8];
            a.copy_from_slice(b);
            *w = u64::from_le_bytes(a);
        }
    }
    fn write_words(&mut self, pa: Pa, words: &[u64]) {
        assert!(pa.is_aligned(8), "word write at unaligned {pa}");
        let offset = (pa.raw() % PAGE_SIZE) as usize;
        assert!(
            offset + words.len() * 8 <= PAGE,
            "write of {} words at {pa} crosses a page boundary",
            words.len()
        );
        for (i, w) in words.iter().enumerate() {
            self.write(pa.raw() + 8 * i as u64, &w.to_le_bytes());
        }
    }
    fn store_barrier(&mut self) {
        self.store_barriers += 1;
    }
    fn sync_for_guest(&mut self, page: Pa) {
        assert!(
            page.is_aligned(PAGE_SIZE),
            "cache maintenance of unaligned {page}"
        );
        self.synced.push(page);
    }
    fn scrub_page(&mut self, page: Pa) {
        assert!(page.is_aligned(PAGE_SIZE), "scrub of unaligned {page}");
        self.pages.remove(&page.raw());
        self.scrubbed.push(page);
    }
}

impl DeviceMemory for FakeMachine {
    fn mmio_read(&mut self, pa: Pa, width: u8) -> u64 {
        assert!(
            matches!(width, 1 | 2 | 4 | 8) && pa.is_aligned(u64::from(width)),
            "device read of {width} bytes at {pa}"
        );
        self.mmio_log.push((pa.raw(), width, None));
        self.registers.get(&pa.raw()).copied().unwrap_or(0)
    }
    fn mmio_write(&mut self, pa: Pa, width: u8, value: u64) {
        assert!(
            matches!(width, 1 | 2 | 4 | 8) && pa.is_aligned(u64::from(width)),
            "device write of {width} bytes at {pa}"
        );
        self.mmio_log.push((pa.raw(), width, Some(value)));
        self.registers.insert(pa.raw(), value);
    }
}

impl Tlb for FakeMachine {
    fn flush_ipa(&mut self, vmid: Vmid, ipa: Ipa) {
        self.unflushed = 0;
        self.flushes.push(Flush::Ipa(vmid, ipa.raw()));
    }
    fn flush_vmid(&mut self, vmid: Vmid) {
        self.unflushed = 0;
        self.flushes.push(Flush::Vmid(vmid));
    }
}

/// A bump allocator over `[base, base + pages * 4 KiB)`.
#[derive(Clone, Debug)]
pub struct FakeAllocator {
    next: u64,
    end: u64,
    handed_out: Vec<Pa>,
}

impl FakeAllocator {
    /// A pool of `pages` pages starting at `base`.
    pub fn new(base: u64, pages: u64) -> Self {
        FakeAllocator {
            next: base,
            end: base + pages * PAGE_SIZE,
            handed_out: Vec::new(),
        }
    }
    /// Every page handed out so far.
    pub fn handed_out(&self) -> &[Pa] {
        &self.handed_out
    }
}

impl PageAllocator for FakeAllocator {
    fn alloc_page(&mut self) -> Option<Pa> {
        if self.next >= self.end {
            return None;
        }
        let p = Pa(self.next);
        self.next += PAGE_SIZE;
        self.handed_out.push(p);
        Some(p)
    }
    fn free_pages(&self) -> usize {
        ((self.end - self.next) / PAGE_SIZE) as usize
    }
}
