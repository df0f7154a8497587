//! This vCPU: its identity, waiting for interrupts and the IRQ mask.

use core::arch::asm;

/// `MPIDR_EL1`.
pub fn mpidr() -> u64 {
    let v: u64;
    // SAFETY: reads an ID register; no side effects.
    unsafe { asm!("mrs {}, mpidr_el1", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

/// This vCPU's index: `MPIDR_EL1.Aff0`.
pub fn index() -> usize {
    (mpidr() & 0xff) as usize
}

/// Waits for an interrupt. Execution resumes when one is pending, even with
/// IRQs masked (the usual idle loop: mask, check, WFI, take the interrupt),
/// or earlier for no reason.
pub fn wfi() {
    // SAFETY: waits; touches no memory or registers.
    unsafe { asm!("dsb sy", "wfi", options(nomem, nostack, preserves_flags)) };
}

/// Makes this vCPU's earlier stores to memory visible to every observer
/// in the inner shareable domain before any later access (`dsb ish`), a
/// device register's included: what a device that reads the memory (the
/// ITS, its tables and queue) needs before the write that tells it to.
pub fn publish_stores() {
    // SAFETY: a barrier; no memory or register changes. Not `nomem`: it
    // orders the memory accesses around it.
    unsafe { asm!("dsb ish", options(nostack, preserves_flags)) };
}

/// Unmasks IRQs for a moment so that any pending interrupt is taken now,
/// then masks them again.
pub fn take_pending_irqs() {
    // SAFETY: the handlers save and restore every register they touch; the
    // `isb` makes the unmasking take effect before masking again. Not
    // `nomem`: handlers update shared state the caller then reads.
    unsafe {
        asm!(
            "msr daifclr, #2",
            "isb",
            "msr daifset, #2",
            options(nostack, preserves_flags)
        )
    };
}

/// Stops this vCPU for good: IRQs masked, WFI forever.
pub fn park() -> ! {
    loop {
        // SAFETY: masks interrupts; no memory access.
        unsafe {
            asm!(
                "msr daifset, #0xf",
                options(nomem, nostack, preserves_flags)
            )
        };
        wfi();
    }
}
