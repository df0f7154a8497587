//! Dirty page logging for non-protected VMs, as KVM 6.1 offers it
//! (`KVM_MEM_LOG_DIRTY_PAGES`, `KVM_GET_DIRTY_LOG`, `KVM_CLEAR_DIRTY_LOG`,
//! `KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2`), on KCore's `HostProtectGuest` and
//! `HostUnprotectGuest`.
//!
//! A logging slot has a bitmap (one bit a page, [`memslot::bitmap_words`]
//! words from the glue, under [`super::Lock::Vm`]). Its shared pages are
//! write-protected in KCore when logging starts (unless the VMM enabled
//! `KVM_DIRTY_LOG_INITIALLY_SET`: then every bit starts set and nothing is
//! protected), and again when `KVM_GET_DIRTY_LOG` (or, with manual protect,
//! `KVM_CLEAR_DIRTY_LOG`) clears their bits. A guest write to a
//! write-protected page is made writable by KCore itself, which appends
//! the gfn to the dirty ring of the vCPU's run page (ABI 0.14); the shim
//! drains a vCPU's ring at its exits ([`drain_ring`]) and every vCPU's in
//! the dirty-log ioctls ([`VmCfg::drain_rings`]; `docs/kvm.md` argues why
//! no write is lost while vCPUs run meanwhile). Only with the ring full
//! does the write exit as a memory fault marked `WRITE_PROTECTED`: the
//! page is marked dirty and made writable ([`mem_fault`]). A page the
//! guest first touches while its slot logs is shared write-protected on a
//! read and writable (and dirty) on a write, as KVM maps it. Errors follow
//! `kvm_get_dirty_log_protect` and `kvm_clear_dirty_log_protect`; a
//! protected VM has no dirty log (`KVM_MEM_LOG_DIRTY_PAGES` on its slots is
//! `EINVAL`, and its slots answer the dirty-log ioctls as slots without a
//! log do: `ENOENT`).

use super::super::env::{KvmEnv, array};
use super::super::errno::{EFAULT, EINVAL, ENOENT, ENOMEM, Errno};
use super::super::memslot::{self, Slot, page};
use super::super::uapi::{dirty_log, size};
use super::{Vm, VmCfg, errno_of};
use crate::hypercall::{self, CallError, VmHandle};
use core::sync::atomic::Ordering::SeqCst;
use kcore_abi::Error;
use kcore_abi::run::{self, exit_flags};

/// Pages to write-protect, gathered into runs across the bitmap's words:
/// one `HostProtectGuest` covers a run of up to
/// [`kcore_abi::MAX_PROTECT_PAGES`], where a call a word made one for
/// every 64 pages of a fully dirty slot. The pages protected are the same;
/// only the calls are fewer (each a world switch, and KCore's TLB flushes
/// go by call batch). [`ProtectRun::flush`] makes the last call.
struct ProtectRun {
    vm: VmHandle,
    gfn: u64,
    pages: u64,
}

impl ProtectRun {
    fn new(vm: VmHandle) -> Self {
        ProtectRun {
            vm,
            gfn: 0,
            pages: 0,
        }
    }

    /// `pages` pages from `gfn`: they continue the run, or the run is
    /// protected and they start the next.
    fn add<E: KvmEnv>(&mut self, env: &mut E, gfn: u64, pages: u64) -> Result<(), Errno> {
        let continues = self.pages != 0 && gfn == self.gfn + self.pages;
        if continues && self.pages + pages <= kcore_abi::MAX_PROTECT_PAGES {
            self.pages += pages;
            return Ok(());
        }
        self.flush(env)?;
        self.gfn = gfn;
        self.pages = pages;
        Ok(())
    }

    /// Protects the run gathered so far, if any.
    fn flush<E: KvmEnv>(&mut self, env: &mut E) -> Result<(), Errno> {
        if self.pages != 0 {
            hypercall::protect_guest(env, self.vm, self.gfn, self.pages).map_err(errno_of)?;
            self.pages = 0;
        }
        Ok(())
    }
}

impl VmCfg {
    /// Slot `i`'s dirty bitmap (empty when it does not log).
    fn bitmap(&mut self, i: usize) -> &mut [u64] {
        let s = self.slots[i];
        // SAFETY: a logging slot's bitmap has `bitmap_words(pages)` words
        // (allocated in `set_logging`), used only under the VM lock.
        unsafe { array(s.dirty, memslot::bitmap_words(s.pages)) }
    }

    /// Marks page `k` of slot `i` dirty, if the slot logs.
    fn mark_dirty(&mut self, i: usize, k: u64) {
        if let Some(w) = self.bitmap(i).get_mut((k / 64) as usize) {
            *w |= 1 << (k % 64);
        }
    }

    /// Takes the entries of the dirty ring of run page `pfn` (KCore's
    /// record of the guest's writes to write-protected pages it made
    /// writable without an exit, `kcore_abi::run::DIRTY_RING`) into the
    /// bitmaps: each gfn is dirty if a slot that logs covers it, else
    /// dropped. KCore may append meanwhile on another CPU: the head is
    /// read first, then (after a barrier) the entries below it, then
    /// (after another) the tail written, so no entry is read before KCore
    /// wrote it nor overwritten before it was read; an entry appended
    /// after the head was read stays for the next drain. A head the ring
    /// cannot hold (never KCore's) drops the ring. Under the VM lock, which
    /// makes the drains of one ring one at a time. Returns how many.
    pub fn drain_ring<E: KvmEnv>(&mut self, env: &mut E, pfn: u64) -> u64 {
        /// Entries read at a time.
        const CHUNK: usize = 32;
        let mut counts = [0u64; 2];
        env.read_words(pfn, run::DIRTY_HEAD, &mut counts);
        let [head, tail] = counts;
        if head == tail {
            return 0;
        }
        let n = head.wrapping_sub(tail);
        if n > run::DIRTY_ENTRIES as u64 {
            env.log(b"kvm: a dirty ring's counts were corrupt; its entries are lost");
        } else {
            env.fence();
            let mut k = tail;
            while k != head {
                let slot = run::dirty_slot(k);
                let len = head
                    .wrapping_sub(k)
                    .min((run::PAGE_WORDS - slot) as u64)
                    .min(CHUNK as u64) as usize;
                let mut buf = [0u64; CHUNK];
                env.read_words(pfn, slot, &mut buf[..len]);
                for &gfn in &buf[..len] {
                    self.written(gfn);
                }
                k = k.wrapping_add(len as u64);
            }
            env.fence();
        }
        env.write_words(pfn, run::DIRTY_TAIL, &[head]);
        n
    }

    /// [`Self::drain_ring`] of every vCPU of `vm` (running or not).
    pub fn drain_rings<E: KvmEnv>(&mut self, env: &mut E, vm: &Vm) {
        for i in 0..self.n_vcpus {
            let id = usize::from(self.order[i]);
            let pfn = vm.vcpus.get(id).map_or(0, |v| v.run_pfn.load(SeqCst));
            if pfn != 0 {
                self.drain_ring(env, pfn);
            }
        }
    }

    /// The guest's memory at `gfn` was written other than through its
    /// stage 2 (the shim emulated the access): dirty, if its slot logs.
    pub fn written(&mut self, gfn: u64) {
        if let Some(i) = self.slots.find(gfn) {
            let k = gfn - self.slots[i].gfn;
            self.mark_dirty(i, k);
        }
    }

    /// Of the 64 pages from page `64 * w` of slot `i`, those shared with
    /// the VM (KCore maps them), as a mask.
    fn shared_mask(&mut self, i: usize, w: usize) -> u64 {
        let pages = self.slot_pages(i);
        (0..64)
            .filter(|b| pages.get(64 * w + b).is_some_and(|p| p & page::SHARED != 0))
            .fold(0, |m, b| m | 1 << b)
    }

    /// Write-protects in KCore the shared pages of slot `i` among the 64
    /// from page `64 * w` whose bits `mask` sets: each run of them joins
    /// `run`, which makes the call when a run does not continue it.
    fn protect<E: KvmEnv>(
        &mut self,
        env: &mut E,
        run: &mut ProtectRun,
        i: usize,
        w: usize,
        mask: u64,
    ) -> Result<(), Errno> {
        let mut m = mask & self.shared_mask(i, w);
        let first = self.slots[i].gfn + 64 * w as u64;
        while m != 0 {
            let start = m.trailing_zeros();
            let len = (m >> start).trailing_ones();
            run.add(env, first + u64::from(start), u64::from(len))?;
            m &= !(((1u128 << len) - 1) << start) as u64;
        }
        Ok(())
    }

    /// Starts or stops slot `i`'s dirty log as its flags now say: a new
    /// bitmap (every bit set with `KVM_DIRTY_LOG_INITIALLY_SET` in
    /// `manual`; otherwise the slot's shared pages write-protected), or
    /// the bitmap freed (pages still write-protected become writable at
    /// their next write, unlogged).
    pub fn set_logging<E: KvmEnv>(
        &mut self,
        env: &mut E,
        h: VmHandle,
        i: usize,
        manual: u64,
    ) -> Result<(), Errno> {
        let s = self.slots[i];
        let words = memslot::bitmap_words(s.pages);
        if !s.logging() {
            if s.dirty != 0 {
                env.free_array(s.dirty);
                self.slots[i].dirty = 0;
            }
            return Ok(());
        }
        if s.dirty != 0 {
            return Ok(());
        }
        self.slots[i].dirty = env.alloc_array(words).ok_or(ENOMEM)?;
        if manual & dirty_log::INITIALLY_SET != 0 {
            let pages = s.pages;
            for (w, bits) in self.bitmap(i).iter_mut().enumerate() {
                let left = pages - 64 * w as u64;
                *bits = if left >= 64 {
                    u64::MAX
                } else {
                    (1 << left) - 1
                };
            }
            return Ok(());
        }
        let mut run = ProtectRun::new(h);
        for w in 0..words {
            self.protect(env, &mut run, i, w, u64::MAX)?;
        }
        run.flush(env)
    }

    /// A write-protected page was written: dirty (if its slot still logs)
    /// and writable again. Nothing to do for a page no longer shared (its
    /// slot went meanwhile: the guest faults again).
    fn unprotect<E: KvmEnv>(&mut self, env: &mut E, vm: &Vm, gfn: u64) -> Result<(), Errno> {
        let Some(i) = self.slots.find(gfn) else {
            return Ok(());
        };
        let k = gfn - self.slots[i].gfn;
        if self.slot_pages(i)[k as usize] & page::SHARED == 0 {
            return Ok(());
        }
        self.mark_dirty(i, k);
        match hypercall::unprotect_guest(env, vm.handle(), gfn) {
            Ok(_) | Err(CallError::Kcore(Error::NotFound)) => Ok(()),
            Err(_) => {
                env.log(b"kvm: a dirty-logged page could not be made writable");
                Err(EFAULT)
            }
        }
    }
}

/// After an exit of a vCPU with run page `pfn`: its dirty ring drained
/// into the bitmaps ([`VmCfg::drain_ring`]), if KCore appended anything
/// (looked at without the VM lock first: most exits find it empty).
pub fn drain_ring<E: KvmEnv>(env: &mut E, vm: &Vm, pfn: u64) {
    let mut counts = [0u64; 2];
    env.read_words(pfn, run::DIRTY_HEAD, &mut counts);
    if counts[0] != counts[1] {
        vm.with_cfg(env, |env, c| c.drain_ring(env, pfn));
    }
}

/// A `MEM_FAULT` exit at `gfn` with KCore's exit flags: a write to a page
/// write-protected for dirty logging (marked dirty, made writable), or a
/// first touch (backed: [`VmCfg::back`]).
pub fn mem_fault<E: KvmEnv>(env: &mut E, vm: &Vm, gfn: u64, flags: u64) -> Result<(), Errno> {
    let write = flags & exit_flags::WRITE != 0;
    vm.with_cfg(env, |env, c| {
        if flags & exit_flags::WRITE_PROTECTED != 0 {
            c.unprotect(env, vm, gfn)
        } else {
            c.back(env, vm, gfn, write)
        }
    })
}

/// `KVM_ENABLE_CAP(KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2)` with `args[0]`:
/// `KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE`, with or without
/// `KVM_DIRTY_LOG_INITIALLY_SET`, or 0 (off); anything else `EINVAL`.
pub fn enable_manual(vm: &Vm, options: u64) -> Result<(), Errno> {
    let allowed = if options & dirty_log::MANUAL_PROTECT_ENABLE != 0 {
        dirty_log::MANUAL_CAPS
    } else {
        dirty_log::MANUAL_PROTECT_ENABLE
    };
    if options & !allowed != 0 {
        return Err(EINVAL);
    }
    vm.manual_dirty.store(options, SeqCst);
    Ok(())
}

/// `KVM_USER_MEM_SLOTS` of Linux 6.1: the slot ids KVM's dirty-log ioctls
/// take (`SHRT_MAX`); those at or past [`memslot::MAX_SLOTS`] are never used here.
const KVM_USER_MEM_SLOTS: usize = 0x7FFF;

/// A dirty-log request's `N` bytes at `arg` and the slot id its first
/// word names: `EINVAL` for a slot outside address space 0 and
/// `KVM_USER_MEM_SLOTS`, as `kvm_get_dirty_log_protect` and
/// `kvm_clear_dirty_log_protect` check.
fn request<E: KvmEnv, const N: usize>(env: &mut E, arg: u64) -> Result<([u8; N], usize), Errno> {
    let mut b = [0u8; N];
    env.copy_from_user(arg, &mut b)?;
    let slot = u32_at(&b, 0);
    let (as_id, id) = (slot >> 16, (slot & 0xFFFF) as usize);
    if as_id != 0 || id >= KVM_USER_MEM_SLOTS {
        return Err(EINVAL);
    }
    Ok((b, id))
}

/// Slot `id` of a dirty-log request, if it logs, and its index in the
/// VM's table: `ENOENT` for an unused
/// id (past [`memslot::MAX_SLOTS`] too), a slot without a log and any slot of a
/// protected VM (which has no dirty log), as KVM answers for a slot
/// without a bitmap.
fn logging_slot(vm: &Vm, c: &VmCfg, id: usize) -> Result<(usize, Slot), Errno> {
    match c.slots.index_of(id as u32).map(|i| (i, c.slots[i])) {
        Some((i, s)) if s.dirty != 0 && !vm.protected() => Ok((i, s)),
        _ => Err(ENOENT),
    }
}

fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

fn u64_at(b: &[u8], i: usize) -> u64 {
    u64::from(u32_at(b, i)) | u64::from(u32_at(b, i + 4)) << 32
}

/// Runs `f` with a zeroed scratch array of `words` words (`ENOMEM`).
fn with_scratch<E: KvmEnv, R>(
    env: &mut E,
    words: usize,
    f: impl FnOnce(&mut E, &mut [u64]) -> Result<R, Errno>,
) -> Result<R, Errno> {
    let addr = env.alloc_array(words.max(1)).ok_or(ENOMEM)?;
    // SAFETY: just allocated with at least `words` words, freed below,
    // referenced nowhere else.
    let r = f(env, unsafe { array(addr, words) });
    env.free_array(addr);
    r
}

/// `KVM_GET_DIRTY_LOG` (`struct kvm_dirty_log` at `arg`): copies slot's
/// bitmap to the VMM; without manual protect it clears it and
/// write-protects the pages that were dirty first. `EINVAL` for a bad
/// slot id, `ENOENT` for a slot that does not log (any of a protected VM),
/// `EFAULT` if the bitmap cannot be written (its bits are cleared then,
/// as in KVM).
pub fn get_dirty_log<E: KvmEnv>(env: &mut E, vm: &Vm, arg: u64) -> Result<(), Errno> {
    let (b, id) = request::<_, { size::DIRTY_LOG }>(env, arg)?;
    let to = u64_at(&b, 8);
    let manual = vm.manual_dirty.load(SeqCst) & dirty_log::MANUAL_PROTECT_ENABLE != 0;
    let h = vm.handle();
    vm.with_cfg(env, |env, c| {
        let (id, s) = logging_slot(vm, c, id)?;
        c.drain_rings(env, vm);
        let words = memslot::bitmap_words(s.pages);
        with_scratch(env, words, |env, out| {
            let mut run = ProtectRun::new(h);
            for (w, o) in out.iter_mut().enumerate() {
                let bits = &mut c.bitmap(id)[w];
                *o = *bits;
                if !manual && *o != 0 {
                    *bits = 0;
                    c.protect(env, &mut run, id, w, *o)?;
                }
            }
            run.flush(env)?;
            for (w, o) in out.iter().enumerate() {
                env.copy_to_user(to + 8 * w as u64, &o.to_le_bytes())?;
            }
            Ok(())
        })
    })
}

/// `KVM_CLEAR_DIRTY_LOG` (`struct kvm_clear_dirty_log` at `arg`): clears
/// the bits the VMM's bitmap sets for `num_pages` pages from `first_page`
/// (a multiple of 64) and write-protects those that were set. `EINVAL` for
/// a bad slot id, an unaligned first page or a range
/// outside the slot (or, short of its end, not a multiple of 64 pages);
/// `ENOENT` for a slot that does not log (any of a protected VM); `EFAULT`
/// if the bitmap cannot be
/// read (nothing cleared).
pub fn clear_dirty_log<E: KvmEnv>(env: &mut E, vm: &Vm, arg: u64) -> Result<(), Errno> {
    let (b, id) = request::<_, { size::CLEAR_DIRTY_LOG }>(env, arg)?;
    let num = u64::from(u32_at(&b, 4));
    let first = u64_at(&b, 8);
    let from = u64_at(&b, 16);
    if !first.is_multiple_of(64) {
        return Err(EINVAL);
    }
    let h = vm.handle();
    vm.with_cfg(env, |env, c| {
        let (id, s) = logging_slot(vm, c, id)?;
        if first > s.pages
            || num > s.pages - first
            || (num < s.pages - first && !num.is_multiple_of(64))
        {
            return Err(EINVAL);
        }
        c.drain_rings(env, vm);
        let words = memslot::bitmap_words(num);
        with_scratch(env, words, |env, mask| {
            for (j, m) in mask.iter_mut().enumerate() {
                let mut x = [0u8; 8];
                env.copy_from_user(from + 8 * j as u64, &mut x)?;
                *m = u64::from_le_bytes(x);
            }
            let base = (first / 64) as usize;
            let mut run = ProtectRun::new(h);
            for (j, m) in mask.iter().enumerate() {
                let bits = &mut c.bitmap(id)[base + j];
                let cleared = *m & *bits;
                *bits &= !cleared;
                if cleared != 0 {
                    c.protect(env, &mut run, id, base + j, cleared)?;
                }
            }
            run.flush(env)
        })
    })
}
