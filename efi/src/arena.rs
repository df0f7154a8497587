//! The application's global allocator: the firmware's pool (the `uefi`
//! crate's allocator) while boot services run; after `ExitBootServices`,
//! when the pool is gone, a bump allocator over pages set aside before
//! ([`arm`]), so that the ACPI path can build KCore's tree from the final
//! memory map with `kcore-acpi` (which allocates). Nothing is freed after
//! the switch: the application never returns from there.

use core::alloc::{GlobalAlloc, Layout};
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use uefi::allocator::Allocator as Firmware;

/// The arena, `[START, END)`, and its next free byte.
static START: AtomicUsize = AtomicUsize::new(0);
static NEXT: AtomicUsize = AtomicUsize::new(0);
static END: AtomicUsize = AtomicUsize::new(0);
/// Set once boot services have exited: allocations come from the arena.
static ARMED: AtomicBool = AtomicBool::new(false);

struct Allocator;

#[global_allocator]
static GLOBAL: Allocator = Allocator;

/// Gives the allocator `[base, base + len)`, pages nothing else uses, for
/// after `ExitBootServices`.
pub fn set_arena(base: usize, len: usize) {
    START.store(base, Ordering::Relaxed);
    NEXT.store(base, Ordering::Relaxed);
    END.store(base.saturating_add(len), Ordering::Relaxed);
}

/// Switches to the arena: to be called right after `ExitBootServices`.
pub fn arm() {
    ARMED.store(true, Ordering::Release);
}

// SAFETY: before `arm`, every call goes to the `uefi` crate's allocator;
// after it, allocations are disjoint pieces of the arena handed out once
// (one CPU, no interrupts: the application runs alone then), suitably
// aligned, and frees do nothing.
unsafe impl GlobalAlloc for Allocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !ARMED.load(Ordering::Acquire) {
            // SAFETY: the caller's contract, passed on.
            return unsafe { Firmware.alloc(layout) };
        }
        let next = NEXT.load(Ordering::Relaxed);
        let Some(end) = next
            .checked_next_multiple_of(layout.align())
            .and_then(|b| b.checked_add(layout.size()).map(|e| (b, e)))
            .filter(|&(_, e)| e <= END.load(Ordering::Relaxed))
        else {
            return core::ptr::null_mut();
        };
        NEXT.store(end.1, Ordering::Relaxed);
        end.0 as *mut u8
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let p = ptr as usize;
        let in_arena = (START.load(Ordering::Relaxed)..END.load(Ordering::Relaxed)).contains(&p);
        if ARMED.load(Ordering::Acquire) || in_arena {
            return;
        }
        // SAFETY: the caller's contract; `ptr` came from the firmware's pool.
        unsafe { Firmware.dealloc(ptr, layout) }
    }
}
