//! Dirty page logging through the KVM API against the real KCore: the
//! slot flag, `KVM_GET_DIRTY_LOG`, `KVM_CLEAR_DIRTY_LOG` and manual
//! protect with KVM 6.1's errors, the guest's writes to write-protected
//! pages reported as dirty, and a protected VM refused (its slots have no
//! log).

use super::*;
use core::sync::atomic::Ordering::SeqCst;
use kcore_abi::run;
use kcore_abi::run::exit_flags::WRITE;
use uapi::dirty_log::{INITIALLY_SET, MANUAL_PROTECT_ENABLE};
use uapi::mem::LOG_DIRTY_PAGES;

/// A 256-page slot 0 at `RAM` with `flags`.
fn region(f: &mut Fake, vm: &Vm, flags: u32) -> Result<i64, Errno> {
    let a = user(f, 0x8000, &[u64::from(flags) << 32, RAM, 0x10_0000, UADDR]);
    vm::ioctl(f, vm, &HOST, uapi::SET_USER_MEMORY_REGION, a)
}

/// `KVM_GET_DIRTY_LOG` of `slot` into user memory at `0xD000`: the
/// bitmap's four words.
fn get_log(f: &mut Fake, vm: &Vm, slot: u64) -> Result<[u64; 4], Errno> {
    let a = user(f, 0x8100, &[slot, 0xD000]);
    vm::ioctl(f, vm, &HOST, uapi::GET_DIRTY_LOG, a)?;
    let mut out = [0u64; 4];
    for (i, w) in out.iter_mut().enumerate() {
        let mut b = [0u8; 8];
        f.copy_from_user(0xD000 + 8 * i as u64, &mut b).ok();
        *w = u64::from_le_bytes(b);
    }
    Ok(out)
}

/// `KVM_CLEAR_DIRTY_LOG` of `num` pages from `first` with `mask` words.
fn clear_log(f: &mut Fake, vm: &Vm, num: u64, first: u64, mask: &[u64]) -> Result<i64, Errno> {
    user(f, 0xE000, mask);
    let a = user(f, 0x8200, &[num << 32, first, 0xE000]);
    vm::ioctl(f, vm, &HOST, uapi::CLEAR_DIRTY_LOG, a)
}

/// Runs the vCPU through guest accesses to the pages `(page, write,
/// write-protected)` of the slot, then an MMIO read that ends `KVM_RUN`.
fn touch(f: &mut Fake, vm: &Vm, v: &mut Vcpu, pages: &[(u64, bool, bool)]) {
    let mut s: Vec<Script> = pages
        .iter()
        .map(|&(p, write, wp)| {
            let flags = if write { WRITE } else { 0 } | if wp { READ_ONLY_PAGE } else { 0 };
            (exit::MEM_FAULT, flags, RAM + p * 0x1000 + 8, 0, 8, [0; 3])
        })
        .collect();
    s.push((exit::MMIO, 0, 0x0900_0008, 0, 4, [0; 3]));
    f.script(s);
    assert_eq!(ioctl(f, vm, v, uapi::RUN, 0), Ok(0));
    assert_eq!(f.run_u32(krun::EXIT_REASON), kexit::MMIO);
}

/// vCPU `id`'s dirty ring counts: head, tail.
fn ring(f: &mut Fake, vm: &Vm, id: usize) -> (u64, u64) {
    let pfn = vm.vcpus[id].run_pfn.load(SeqCst);
    let mut w = [0u64; 2];
    f.read_words(pfn, run::DIRTY_HEAD, &mut w);
    (w[0], w[1])
}

/// Appends `gfns` to vCPU `id`'s dirty ring as KCore does while the vCPU
/// runs on another CPU (from `head` on, the tail as it is).
fn append(f: &mut Fake, vm: &Vm, id: usize, head: u64, gfns: &[u64]) {
    let pfn = vm.vcpus[id].run_pfn.load(SeqCst);
    for (i, g) in gfns.iter().enumerate() {
        f.write_words(pfn, run::dirty_slot(head + i as u64), &[*g]);
    }
    f.write_words(pfn, run::DIRTY_HEAD, &[head + gfns.len() as u64]);
}

/// The `(gfn, pages)` of the `HostProtectGuest` calls KCore accepted after
/// the first `before`.
fn protected_since(f: &mut Fake, before: usize) -> Vec<(u64, u64)> {
    f.accepted(HypercallId::HostProtectGuest)[before..]
        .iter()
        .map(|a| (a[1], a[2]))
        .collect()
}

fn enable_cap(f: &mut Fake, vm: &Vm, flags: u64, options: u64) -> Result<i64, Errno> {
    super::enable_cap(f, vm, uapi::cap::MANUAL_DIRTY_LOG_PROTECT2, flags, options)
}

#[test]
fn written_pages_are_logged_and_write_protected_again() {
    let mut f = Fake::new();
    assert_eq!(
        vm::check_extension(&HOST, uapi::cap::MANUAL_DIRTY_LOG_PROTECT2),
        3
    );
    assert_eq!(vm::check_extension(&HOST, uapi::cap::DIRTY_LOG_RING), 0);
    let vm = new_vm(&mut f, 0);
    assert_eq!(region(&mut f, &vm, LOG_DIRTY_PAGES), Ok(0));
    let mut v = new_vcpu(&mut f, &vm, 0);
    init(&mut f, &vm, &mut v, 1 << 2);
    // Page 1 read first (shared write-protected), then written; page 2
    // first touched by a write (writable, dirty); page 3 only read.
    touch(
        &mut f,
        &vm,
        &mut v,
        &[
            (1, false, false),
            (1, true, true),
            (2, true, false),
            (3, false, false),
        ],
    );
    // KCore made page 1 writable itself and appended it to the run page's
    // dirty ring, which the next exit drained: no unprotect, no exit.
    assert_eq!(f.accepted(HypercallId::HostUnprotectGuest).len(), 0);
    assert_eq!(ring(&mut f, &vm, 0), (1, 1));
    let pages = f.guest_pages();
    for p in 1..4 {
        let pfn = pages[&((RAM >> 12) + p)];
        assert_eq!(
            f.owner(pfn),
            (Some(PageOwner::HostSharedWithGuest), (RAM >> 12) + p),
            "logging never changes an owner"
        );
    }
    assert_eq!(get_log(&mut f, &vm, 0), Ok([0b110, 0, 0, 0]));
    // Cleared, and both pages write-protected again: their next writes
    // are logged again; a repeated GET is empty.
    let protected = f.accepted(HypercallId::HostProtectGuest);
    assert_eq!(
        protected.last().map(|a| (a[1], a[2])),
        Some(((RAM >> 12) + 1, 2))
    );
    assert_eq!(get_log(&mut f, &vm, 0), Ok([0; 4]));
    // Page 3, first read while logging, was shared write-protected: its
    // first write is logged too.
    touch(&mut f, &vm, &mut v, &[(2, true, true), (3, true, true)]);
    assert_eq!(get_log(&mut f, &vm, 0), Ok([0b1100, 0, 0, 0]));
    // KVM's errors.
    assert_eq!(get_log(&mut f, &vm, 1), Err(ENOENT), "an unused slot");
    assert_eq!(get_log(&mut f, &vm, 32766), Err(ENOENT), "unused, as KVM");
    assert_eq!(get_log(&mut f, &vm, 32767), Err(EINVAL), "past KVM's ids");
    assert_eq!(get_log(&mut f, &vm, 1 << 16), Err(EINVAL));
    let a = user(&mut f, 0x8100, &[0, 0x10]);
    assert_eq!(
        vm::ioctl(&mut f, &vm, &HOST, uapi::GET_DIRTY_LOG, a),
        Err(EFAULT)
    );
    // Logging off (a flags-only change): no log; on again: every shared
    // page write-protected at once.
    assert_eq!(region(&mut f, &vm, 0), Ok(0));
    assert_eq!(get_log(&mut f, &vm, 0), Err(ENOENT));
    let before = f.accepted(HypercallId::HostProtectGuest).len();
    assert_eq!(region(&mut f, &vm, LOG_DIRTY_PAGES), Ok(0));
    assert_eq!(protected_since(&mut f, before), [((RAM >> 12) + 1, 3)]);
    touch(&mut f, &vm, &mut v, &[(3, true, true)]);
    assert_eq!(get_log(&mut f, &vm, 0), Ok([0b1000, 0, 0, 0]));
    // Read-only and logging together are allowed; its writes are MMIO.
    let a = user(
        &mut f,
        0x8000,
        &[
            1 | u64::from(LOG_DIRTY_PAGES | uapi::mem::READONLY) << 32,
            RAM + 0x10_0000,
            0x1000,
            UADDR + 0x10_0000,
        ],
    );
    assert_eq!(
        vm::ioctl(&mut f, &vm, &HOST, uapi::SET_USER_MEMORY_REGION, a),
        Ok(0)
    );
    assert_eq!(get_log(&mut f, &vm, 1), Ok([0; 4]));
    let t = vm::destroy(&mut f, &vm);
    assert_eq!(t.kept, 0);
    vcpu::destroy(&mut f, &mut v);
    assert!(f.arrays.is_empty(), "every bitmap freed");
}

#[test]
fn manual_protect_clears_only_what_the_vmm_asks() {
    let mut f = Fake::new();
    let vm = new_vm(&mut f, 0);
    assert_eq!(
        enable_cap(&mut f, &vm, 1, MANUAL_PROTECT_ENABLE),
        Err(EINVAL),
        "flags"
    );
    assert_eq!(enable_cap(&mut f, &vm, 0, INITIALLY_SET), Err(EINVAL));
    assert_eq!(
        enable_cap(&mut f, &vm, 0, 4 | MANUAL_PROTECT_ENABLE),
        Err(EINVAL)
    );
    assert_eq!(
        enable_cap(&mut f, &vm, 0, MANUAL_PROTECT_ENABLE | INITIALLY_SET),
        Ok(0)
    );
    assert_eq!(region(&mut f, &vm, LOG_DIRTY_PAGES), Ok(0));
    let mut v = new_vcpu(&mut f, &vm, 0);
    init(&mut f, &vm, &mut v, 1 << 2);
    // Initially set: every page dirty, and GET does not clear.
    assert_eq!(get_log(&mut f, &vm, 0), Ok([u64::MAX; 4]));
    assert_eq!(get_log(&mut f, &vm, 0), Ok([u64::MAX; 4]));
    touch(&mut f, &vm, &mut v, &[(1, true, false), (70, false, false)]);
    assert_eq!(
        f.calls_of(HypercallId::HostProtectGuest),
        0,
        "nothing protected yet"
    );
    // KVM's rules for the range.
    assert_eq!(
        clear_log(&mut f, &vm, 64, 1, &[u64::MAX]),
        Err(EINVAL),
        "first page"
    );
    assert_eq!(
        clear_log(&mut f, &vm, 65, 0, &[u64::MAX; 2]),
        Err(EINVAL),
        "short of the end, not 64s"
    );
    assert_eq!(
        clear_log(&mut f, &vm, 257, 0, &[u64::MAX; 5]),
        Err(EINVAL),
        "past the end"
    );
    assert_eq!(clear_log(&mut f, &vm, 64, 320, &[u64::MAX]), Err(EINVAL));
    let a = user(&mut f, 0x8200, &[1 | 64 << 32, 0, 0xE000]);
    assert_eq!(
        vm::ioctl(&mut f, &vm, &HOST, uapi::CLEAR_DIRTY_LOG, a),
        Err(ENOENT)
    );
    let a = user(&mut f, 0x8200, &[64 << 32, 0, 0x10]);
    assert_eq!(
        vm::ioctl(&mut f, &vm, &HOST, uapi::CLEAR_DIRTY_LOG, a),
        Err(EFAULT)
    );
    assert_eq!(
        get_log(&mut f, &vm, 0),
        Ok([u64::MAX; 4]),
        "nothing cleared"
    );
    // Clear pages 0..64 but 5, and 64..128: pages 1 and 70 (shared) are
    // write-protected.
    assert_eq!(
        clear_log(&mut f, &vm, 128, 0, &[!(1 << 5), u64::MAX]),
        Ok(0)
    );
    assert_eq!(get_log(&mut f, &vm, 0), Ok([1 << 5, 0, u64::MAX, u64::MAX]));
    let protected = f.accepted(HypercallId::HostProtectGuest);
    assert_eq!(
        protected.iter().map(|a| (a[1], a[2])).collect::<Vec<_>>(),
        [((RAM >> 12) + 1, 1), ((RAM >> 12) + 70, 1)]
    );
    // The tail of a slot may be cleared with any count.
    assert_eq!(
        clear_log(&mut f, &vm, 56, 192 + 8, &[u64::MAX]),
        Err(EINVAL),
        "unaligned first page"
    );
    assert_eq!(clear_log(&mut f, &vm, 64, 192, &[u64::MAX]), Ok(0));
    touch(&mut f, &vm, &mut v, &[(70, true, true)]);
    assert_eq!(get_log(&mut f, &vm, 0), Ok([1 << 5, 1 << 6, u64::MAX, 0]));
}

#[test]
fn a_protected_vm_has_no_dirty_log() {
    let mut f = Fake::new();
    let vm = new_vm(&mut f, 1 << 31);
    assert_eq!(region(&mut f, &vm, LOG_DIRTY_PAGES), Err(EINVAL));
    assert_eq!(region(&mut f, &vm, 0), Ok(0));
    assert_eq!(
        region(&mut f, &vm, LOG_DIRTY_PAGES),
        Err(EINVAL),
        "nor later"
    );
    // Its slots have no log: KVM's answer for such a slot.
    assert_eq!(get_log(&mut f, &vm, 0), Err(ENOENT));
    assert_eq!(clear_log(&mut f, &vm, 64, 0, &[1]), Err(ENOENT));
    assert_eq!(f.calls_of(HypercallId::HostProtectGuest), 0);
}

/// A VM whose slot 0 logs, with vCPU 0 initialised.
fn logging_vm(f: &mut Fake) -> (Box<Vm>, Box<Vcpu>) {
    let vm = new_vm(f, 0);
    assert_eq!(region(f, &vm, LOG_DIRTY_PAGES), Ok(0));
    let mut v = new_vcpu(f, &vm, 0);
    init(f, &vm, &mut v, 1 << 2);
    (vm, v)
}

#[test]
fn the_dirty_log_ioctls_drain_every_vcpus_ring() {
    let mut f = Fake::new();
    let (vm, mut v0) = logging_vm(&mut f);
    let _v1 = new_vcpu(&mut f, &vm, 1);
    let g = RAM >> 12;
    // vCPU 1 runs on another CPU and KCore logs its writes there: pages 3
    // and 200, a gfn no slot covers, and page 3 again, across the ring's
    // wrap.
    let near_wrap = run::DIRTY_ENTRIES as u64 * 5 - 2;
    let pfn = vm.vcpus[1].run_pfn.load(SeqCst);
    f.write_words(pfn, run::DIRTY_HEAD, &[near_wrap, near_wrap]);
    append(
        &mut f,
        &vm,
        1,
        near_wrap,
        &[g + 3, g + 200, 0x7_0000, g + 3],
    );
    assert_eq!(get_log(&mut f, &vm, 0), Ok([1 << 3, 0, 0, 1 << 8]));
    assert_eq!(
        ring(&mut f, &vm, 1),
        (near_wrap + 4, near_wrap + 4),
        "taken"
    );
    assert_eq!(get_log(&mut f, &vm, 0), Ok([0; 4]), "taken once");
    // An entry KCore appends after a drain stays for the next one.
    append(&mut f, &vm, 1, near_wrap + 4, &[g + 9]);
    assert_eq!(get_log(&mut f, &vm, 0), Ok([1 << 9, 0, 0, 0]));
    // With manual protect the clear drains too: an entry appended after
    // the GET is not cleared by a mask that did not include it.
    assert_eq!(enable_cap(&mut f, &vm, 0, MANUAL_PROTECT_ENABLE), Ok(0));
    append(&mut f, &vm, 1, near_wrap + 5, &[g + 10]);
    assert_eq!(get_log(&mut f, &vm, 0), Ok([1 << 10, 0, 0, 0]));
    append(&mut f, &vm, 1, near_wrap + 6, &[g + 11]);
    assert_eq!(clear_log(&mut f, &vm, 256, 0, &[1 << 10, 0, 0, 0]), Ok(0));
    assert_eq!(get_log(&mut f, &vm, 0), Ok([1 << 11, 0, 0, 0]));
    // Manual protect off again: each GET clears.
    assert_eq!(enable_cap(&mut f, &vm, 0, 0), Ok(0));
    assert_eq!(get_log(&mut f, &vm, 0), Ok([1 << 11, 0, 0, 0]));
    assert_eq!(get_log(&mut f, &vm, 0), Ok([0; 4]));
    // Logging off: an entry drained meanwhile (vCPU 0's, at its exit) is
    // dropped.
    assert_eq!(region(&mut f, &vm, 0), Ok(0));
    append(&mut f, &vm, 0, 0, &[g + 12]);
    touch(&mut f, &vm, &mut v0, &[]);
    assert_eq!(ring(&mut f, &vm, 0), (1, 1), "drained at the exit");
    assert_eq!(region(&mut f, &vm, LOG_DIRTY_PAGES), Ok(0));
    assert_eq!(get_log(&mut f, &vm, 0), Ok([0; 4]));
    // Counts the ring cannot hold (KServ's own memory gone bad): dropped,
    // and the ring usable again.
    f.write_words(pfn, run::DIRTY_HEAD, &[7, 1000]);
    assert_eq!(get_log(&mut f, &vm, 0), Ok([0; 4]));
    assert_eq!(ring(&mut f, &vm, 1), (7, 7));
    append(&mut f, &vm, 1, 7, &[g + 13]);
    assert_eq!(get_log(&mut f, &vm, 0), Ok([1 << 13, 0, 0, 0]));
}

#[test]
fn a_full_ring_makes_the_write_exit_as_before() {
    let mut f = Fake::new();
    let (vm, mut v) = logging_vm(&mut f);
    touch(&mut f, &vm, &mut v, &[(1, false, false)]);
    // A ring full of gfns no slot covers, not drained yet.
    let n = run::DIRTY_ENTRIES as u64;
    append(&mut f, &vm, 0, 0, &vec![0x7_0000; n as usize]);
    touch(&mut f, &vm, &mut v, &[(1, true, true)]);
    assert_eq!(
        f.accepted(HypercallId::HostUnprotectGuest).len(),
        1,
        "KCore had no room: the exit, and the shim made it writable"
    );
    assert_eq!(ring(&mut f, &vm, 0), (n, n), "drained at the exit");
    assert_eq!(get_log(&mut f, &vm, 0), Ok([1 << 1, 0, 0, 0]));
    // Room again: the next logged write takes the fast path.
    touch(&mut f, &vm, &mut v, &[(1, true, true)]);
    assert_eq!(f.accepted(HypercallId::HostUnprotectGuest).len(), 1);
    assert_eq!(ring(&mut f, &vm, 0), (n + 1, n + 1));
    assert_eq!(get_log(&mut f, &vm, 0), Ok([1 << 1, 0, 0, 0]));
}

/// Dirty pages that run on from one word of the bitmap into the next are
/// write-protected again in one call, not one a word.
#[test]
fn a_run_across_bitmap_words_is_one_call() {
    let mut f = Fake::new();
    let vm = new_vm(&mut f, 0);
    assert_eq!(region(&mut f, &vm, LOG_DIRTY_PAGES), Ok(0));
    let mut v = new_vcpu(&mut f, &vm, 0);
    init(&mut f, &vm, &mut v, 1 << 2);
    // First writes while logging: shared writable, and dirty.
    let pages: Vec<(u64, bool, bool)> = (60..68).map(|p| (p, true, false)).collect();
    touch(&mut f, &vm, &mut v, &pages);
    let before = f.accepted(HypercallId::HostProtectGuest).len();
    assert_eq!(get_log(&mut f, &vm, 0), Ok([0xF << 60, 0xF, 0, 0]));
    assert_eq!(protected_since(&mut f, before), [((RAM >> 12) + 60, 8)]);
    // And each is logged at its next write.
    touch(&mut f, &vm, &mut v, &[(63, true, true), (64, true, true)]);
    assert_eq!(get_log(&mut f, &vm, 0), Ok([1 << 63, 1, 0, 0]));
}
