//! What the KVM API needs from the kernel besides hypercalls: user memory,
//! pages, locks, sleeping and waking vCPU threads, time. The module's glue
//! implements [`KvmEnv`] for the calling thread (the VMM's thread in an
//! ioctl); host tests fake it.

use super::errno::Errno;
use crate::conduit::Conduit;
use crate::runpage::PageIo;

/// The glue's locks. Order: [`Lock::Vm`] before [`Lock::Gic`]; neither is
/// held across a guest entry, and [`Lock::Gic`] (a spinlock) never across
/// a sleep. [`Lock::Vm`] is held while pinning pages and while an irqfd is
/// detached (waiting for its injection, which takes only [`Lock::Gic`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Lock {
    /// The VM's mutex: its configuration, memory slots and page lists.
    Vm = 0,
    /// The VM's spinlock: its virtual GIC.
    Gic = 1,
}

/// The kernel, as seen by one thread working on one VM (and, in a vCPU
/// ioctl, one vCPU).
pub trait KvmEnv: Conduit + PageIo {
    /// Copies `buf.len()` bytes from the caller's memory at `uaddr`
    /// (`EFAULT` if it cannot).
    fn copy_from_user(&mut self, uaddr: u64, buf: &mut [u8]) -> Result<(), Errno>;
    /// Copies `data` to the caller's memory at `uaddr` (`EFAULT`).
    fn copy_to_user(&mut self, uaddr: u64, data: &[u8]) -> Result<(), Errno>;
    /// Pins the caller's page at `uaddr` for good (`write`: for writing,
    /// breaking copy-on-write); its pfn. `EFAULT` if there is none.
    fn pin_user_page(&mut self, uaddr: u64, write: bool) -> Result<u64, Errno>;
    /// Unpins a page [`KvmEnv::pin_user_page`] pinned.
    fn unpin_page(&mut self, pfn: u64);
    /// A naturally aligned block of `2^order` zeroed kernel pages, each
    /// freeable alone; the first pfn.
    fn alloc_pages(&mut self, order: u32) -> Option<u64>;
    /// Frees one page of [`KvmEnv::alloc_pages`].
    fn free_page(&mut self, pfn: u64);
    /// A zeroed array of `words` u64, as an address.
    fn alloc_array(&mut self, words: usize) -> Option<u64>;
    /// Frees an array of [`KvmEnv::alloc_array`].
    fn free_array(&mut self, addr: u64);
    /// Reads the calling vCPU's `struct kvm_run` at `offset`.
    fn run_read(&mut self, offset: usize, buf: &mut [u8]);
    /// Writes the calling vCPU's `struct kvm_run` at `offset`.
    fn run_write(&mut self, offset: usize, data: &[u8]);
    /// Takes a lock of this VM.
    fn lock(&mut self, l: Lock);
    /// Releases it.
    fn unlock(&mut self, l: Lock);
    /// The physical counter.
    fn now(&mut self) -> u64;
    /// The CPU this thread runs on.
    fn cpu(&mut self) -> u32;
    /// Whether a signal waits for the calling thread.
    fn signal_pending(&mut self) -> bool;
    /// Sleeps (the calling vCPU's thread) until [`KvmEnv::kick`] for it
    /// (also one since its last wait), a signal, or the counter reaching
    /// `deadline`; it may return earlier. It polls for a kick first, for a
    /// window that adapts up to `max_poll_ns` ([`DEFAULT_POLL`]: the
    /// module's `halt_poll_ns`; 0: no polling).
    fn wait(&mut self, deadline: u64, max_poll_ns: u64);
    /// Wakes vCPU `id`'s thread from [`KvmEnv::wait`], and makes it leave
    /// the guest if it runs one (an interrupt to its CPU).
    fn kick(&mut self, id: usize);
    /// Before entering the guest: interrupts off, this vCPU marked as in
    /// the guest on this CPU (so [`KvmEnv::kick`] interrupts it).
    fn enter_guest(&mut self);
    /// After the guest: unmarked, interrupts on.
    fn leave_guest(&mut self);
    /// Lets the kernel schedule.
    fn relax(&mut self);
    /// A reference to the eventfd behind the caller's `fd` (its context,
    /// never 0; the same eventfd gives the same value): `EBADF` for no fd,
    /// `EINVAL` for one that is not an eventfd.
    fn eventfd_get(&mut self, fd: i32) -> Result<u64, Errno>;
    /// Drops a reference of [`KvmEnv::eventfd_get`].
    fn eventfd_put(&mut self, eventfd: u64);
    /// Adds 1 to the eventfd's counter (waking its readers).
    fn eventfd_signal(&mut self, eventfd: u64);
    /// Hooks `fd` (whose eventfd must be `eventfd`, else `EINVAL`) to this
    /// VM: from now on each signal makes a kernel worker call the core's
    /// irqfd injection for `gsi` (`resample`: level until completed), also
    /// for a signal already pending. Returns the hook.
    fn irqfd_attach(
        &mut self,
        fd: i32,
        eventfd: u64,
        gsi: u32,
        resample: bool,
    ) -> Result<u64, Errno>;
    /// Unhooks an irqfd; no injection of it runs once this returns.
    fn irqfd_detach(&mut self, hook: u64);
    /// Logs a line.
    fn log(&mut self, line: &[u8]);
    /// 64 random bits from the kernel's generator (the guest's TRNG).
    fn random_u64(&mut self) -> u64;
    /// The wall clock (ns since 1970) and the physical counter at one
    /// instant, if the kernel's clock source is the counter (KVM's PTP).
    fn ptp_snapshot(&mut self) -> Option<(u64, u64)>;
    /// The calling thread's time waiting on a run queue so far (ns; the
    /// kernel's `sched_info.run_delay`).
    fn run_delay(&mut self) -> u64;
    /// This CPU's `CCSIDR_EL1` for the cache `csselr` selects (written to
    /// `CSSELR_EL1` with interrupts off, as KVM 6.1's `get_ccsidr`).
    fn ccsidr(&mut self, csselr: u8) -> u32;
}

/// [`KvmEnv::wait`]'s longest polling window when the VM did not choose
/// one (`KVM_CAP_HALT_POLL`): the module parameter's.
pub const DEFAULT_POLL: u64 = u64::MAX;

/// A glue array as a slice.
///
/// # Safety
///
/// `addr` must come from [`KvmEnv::alloc_array`] with at least `words`
/// words, not freed, and not otherwise referenced while the slice lives
/// (the shim touches arrays only under [`Lock::Vm`]).
pub unsafe fn array<'a>(addr: u64, words: usize) -> &'a mut [u64] {
    if addr == 0 || words == 0 {
        return &mut [];
    }
    // SAFETY: the caller guarantees a live, exclusive, large enough
    // allocation; u64 arrays from the glue are 8-aligned.
    unsafe { core::slice::from_raw_parts_mut(addr as *mut u64, words) }
}
