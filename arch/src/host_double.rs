//! A host double of KCore's hardware traits, for tests and model checks.
//!
//! Physical memory is a sparse map of 4 KiB pages; the page allocator hands
//! out pages from a fixed window and counts them; the firmware records the
//! calls it receives and answers from a script.

extern crate std;

use kcore::addr::{PAGE_SIZE, Pa};
use kcore::hw::{Firmware, PageAllocator};
use std::vec::Vec;

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
