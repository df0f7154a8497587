//! KCore's boot heap: a fixed area in bss behind `buddy_system_allocator`.
//!
//! Used at boot for the platform description and KServ's device tree; never by the trap path, whose memory
//! comes from bounded pools.

use buddy_system_allocator::LockedHeap;

const HEAP_SIZE: usize = 2 << 20;

#[repr(C, align(4096))]
struct HeapArea([u8; HEAP_SIZE]);
static mut HEAP_AREA: HeapArea = HeapArea([0; HEAP_SIZE]);

#[global_allocator]
static HEAP: LockedHeap<32> = LockedHeap::empty();

/// Hands the heap area to the allocator. Call once, on the primary CPU,
/// before the first allocation: [`super::early::discover`] does, with the
/// MMU still off (the area is KCore's bss, which the EL2 map keeps at the
/// same address).
pub fn init() {
    let start = core::ptr::addr_of_mut!(HEAP_AREA) as usize;
    // SAFETY: the area is KCore's bss, mapped read-write, used by nothing
    // else, and handed over exactly once (only the primary CPU calls this,
    // before any secondary CPU runs).
    unsafe { HEAP.lock().init(start, HEAP_SIZE) };
}
