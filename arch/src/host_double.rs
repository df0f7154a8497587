//! A host double of KCore's hardware traits, for tests and model checks.
//!
//! Physical memory is a sparse map of 4 KiB pages; the page allocator hands
//! out pages from a fixed window and counts them; the firmware records the
//! calls it receives and answers from a script.

extern crate std;

use kcore::addr::{PAGE_SIZE, Pa};
use kcore::hw::{Firmware, PageAllocator, TableMemory};
use std::collections::BTreeMap;
use std::vec::Vec;

/// Sparse physical memory holding table pages.
#[derive(Default, Debug)]
pub struct FakeMemory {
    pages: BTreeMap<u64, Vec<u64>>,
}

impl FakeMemory {
    /// Empty memory (every word reads as zero).
    pub fn new() -> Self {
        Self::default()
    }
    /// Number of pages ever written.
    pub fn pages_touched(&self) -> usize {
        self.pages.len()
    }
}

impl TableMemory for FakeMemory {
    fn read_entry(&self, table: Pa, index: usize) -> u64 {
        let addr = table.raw() + index as u64 * 8;
        self.pages
            .get(&(addr & !(PAGE_SIZE - 1)))
            .map_or(0, |p| p[((addr % PAGE_SIZE) / 8) as usize])
    }
    fn write_entry(&mut self, table: Pa, index: usize, value: u64) {
        let addr = table.raw() + index as u64 * 8;
        let page = self
            .pages
            .entry(addr & !(PAGE_SIZE - 1))
            .or_insert_with(|| std::vec![0; 512]);
        page[((addr % PAGE_SIZE) / 8) as usize] = value;
    }
    fn zero_page(&mut self, page: Pa) {
        self.pages.insert(page.raw(), std::vec![0; 512]);
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

/// Firmware that records calls and returns `answer`.
#[derive(Debug, Default)]
pub struct FakeFirmware {
    /// Value returned in `x0` for every call.
    pub answer: u64,
    /// Calls received, in order.
    pub calls: Vec<(u32, [u64; 3])>,
}

impl Firmware for FakeFirmware {
    fn smc(&mut self, fid: u32, args: [u64; 3]) -> u64 {
        self.calls.push((fid, args));
        self.answer
    }
}

/// Sparse RAM seen byte by byte, for [`kcore::hw::PhysMemory`]: pages never
/// written read as zero. Tests fill it with [`FakePhysMemory::write`]; reads
/// that cross a page boundary fail the test, as the trait forbids them.
#[derive(Default, Debug)]
pub struct FakePhysMemory {
    pages: BTreeMap<u64, Vec<u8>>,
    scrubbed: Vec<Pa>,
}

impl FakePhysMemory {
    /// Empty memory (every byte reads as zero).
    pub fn new() -> Self {
        Self::default()
    }

    /// Copies `bytes` to `pa`; the range may span any number of pages.
    pub fn write(&mut self, pa: Pa, bytes: &[u8]) {
        let mut addr = pa.raw();
        let mut rest = bytes;
        while !rest.is_empty() {
            let offset = (addr % PAGE_SIZE) as usize;
            let n = rest.len().min(PAGE_SIZE as usize - offset);
            let page = self
                .pages
                .entry(addr - offset as u64)
                .or_insert_with(|| std::vec![0; PAGE_SIZE as usize]);
            page[offset..offset + n].copy_from_slice(&rest[..n]);
            rest = &rest[n..];
            addr += n as u64;
        }
    }

    /// Pages scrubbed so far, in order.
    pub fn scrubbed(&self) -> &[Pa] {
        &self.scrubbed
    }
}

impl kcore::hw::PhysMemory for FakePhysMemory {
    fn read(&self, pa: Pa, buf: &mut [u8]) {
        let offset = (pa.raw() % PAGE_SIZE) as usize;
        assert!(
            offset + buf.len() <= PAGE_SIZE as usize,
            "read of {} bytes at {pa} crosses a page boundary",
            buf.len()
        );
        match self.pages.get(&(pa.raw() - offset as u64)) {
            Some(page) => buf.copy_from_slice(&page[offset..offset + buf.len()]),
            None => buf.fill(0),
        }
    }

    fn scrub_page(&mut self, page: Pa) {
        assert!(page.is_aligned(PAGE_SIZE), "scrub of unaligned {page}");
        self.pages.remove(&page.raw());
        self.scrubbed.push(page);
    }
}
