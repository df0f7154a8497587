//! Many memory slots through `KVM_SET_USER_MEMORY_REGION` against the real
//! KCore: the table grows past the old 32 and keeps KVM's rules, a guest
//! touch finds its slot among thousands, moves and deletes keep the
//! order, and teardown frees every array.

use super::*;
use kcore_abi::run::exit_flags::WRITE;
use uapi::mem::LOG_DIRTY_PAGES;

/// Slots of 2 pages each, every other 2 pages, at `RAM`.
fn region(f: &mut Fake, vm: &Vm, id: u64, flags: u64, gfn: u64) -> Result<i64, Errno> {
    let uaddr = UADDR + id * 0x2000;
    let a = user(f, 0x8000, &[id | flags << 32, gfn << 12, 0x2000, uaddr]);
    vm::ioctl(f, vm, &HOST, uapi::SET_USER_MEMORY_REGION, a)
}

#[test]
fn thousands_of_slots_keep_kvms_rules() {
    let mut f = Fake::new();
    let vm = new_vm(&mut f, 0);
    assert_eq!(
        vm::check_extension(&HOST, uapi::cap::NR_MEMSLOTS),
        32767,
        "KVM_USER_MEM_SLOTS on arm64"
    );
    let arrays = f.arrays.len();
    let base = RAM >> 12;
    // Ids ascending, addresses descending: every slot goes in front.
    let n = 3000;
    for id in 0..n {
        let gfn = base + 4 * (n - 1 - id);
        assert_eq!(region(&mut f, &vm, id, 0, gfn), Ok(0), "slot {id}");
    }
    assert_eq!(
        f.arrays.len() - arrays,
        n as usize + 2,
        "a page array per slot, one table and one index"
    );
    // KVM's errors: an overlap, an id past the limit, a new size.
    assert_eq!(region(&mut f, &vm, n, 0, base + 1), Err(EEXIST));
    assert_eq!(region(&mut f, &vm, 32767, 0, base + 2), Err(EINVAL));
    assert_eq!(region(&mut f, &vm, 32766, 0, base + 2), Ok(0));
    let a = user(
        &mut f,
        0x8000,
        &[7, (base + 4 * (n - 8)) << 12, 0x1000, UADDR + 7 * 0x2000],
    );
    assert_eq!(
        vm::ioctl(&mut f, &vm, &HOST, uapi::SET_USER_MEMORY_REGION, a),
        Err(EINVAL)
    );
    // A guest write into slot 2000 reaches its page; dirty logging by id.
    let gfn = base + 4 * (n - 1 - 2000) + 1;
    assert_eq!(
        region(&mut f, &vm, 2000, LOG_DIRTY_PAGES.into(), gfn - 1),
        Ok(0)
    );
    assert_eq!(vm::mem_fault(&mut f, &vm, gfn, WRITE), Ok(()));
    assert_eq!(
        f.pinned.values().copied().collect::<Vec<_>>(),
        [UADDR + 2000 * 0x2000 + 0x1000]
    );
    let log = user(&mut f, 0x8100, &[2000, 0xD000]);
    assert_eq!(
        vm::ioctl(&mut f, &vm, &HOST, uapi::GET_DIRTY_LOG, log),
        Ok(0)
    );
    let mut b = [0u8; 8];
    f.copy_from_user(0xD000, &mut b).ok();
    assert_eq!(u64::from_le_bytes(b), 0b10);
    let log = user(&mut f, 0x8100, &[2001, 0xD000]);
    assert_eq!(
        vm::ioctl(&mut f, &vm, &HOST, uapi::GET_DIRTY_LOG, log),
        Err(ENOENT),
        "a slot that does not log"
    );
    // Moved into the hole after it, the slot unshares its page and its
    // frames are found at the new place only.
    assert_eq!(region(&mut f, &vm, 2000, 0, gfn + 1), Ok(0));
    assert!(f.pinned.is_empty());
    assert_eq!(
        vm::mem_fault(&mut f, &vm, gfn, WRITE),
        Err(EFAULT),
        "a hole"
    );
    assert_eq!(vm::mem_fault(&mut f, &vm, gfn + 1, 0), Ok(()));
    // Deleted, its id is free and its place takes another id.
    let del = user(&mut f, 0x8000, &[2000, 0, 0, 0]);
    assert_eq!(
        vm::ioctl(&mut f, &vm, &HOST, uapi::SET_USER_MEMORY_REGION, del),
        Ok(0)
    );
    assert_eq!(region(&mut f, &vm, 5000, 0, gfn), Ok(0));
    let t = vm::destroy(&mut f, &vm);
    assert_eq!(t.kept, 0);
    assert!(f.pinned.is_empty());
    assert_eq!(
        f.arrays.len(),
        arrays - 1,
        "every slot array freed, and the pool's"
    );
}
