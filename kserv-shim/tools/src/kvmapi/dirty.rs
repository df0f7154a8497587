//! The test guest's dirty program ([`guest::dirty`]) under
//! `KVM_MEM_LOG_DIRTY_PAGES`: at each round the guest reports (an MMIO
//! write, taken on vCPU 0's thread while vCPU 1 keeps running in the
//! guest), `KVM_GET_DIRTY_LOG` must show exactly the region's pages that
//! round wrote, and none past it; it clears the log and write-protects
//! those pages again, so the next round's writes are seen anew. Also the
//! dirty-log ioctls' errors that need no guest.

use super::{Checks, Device, drive};
use crate::kvm::*;
use guest::dirty::{BASE, PAGES, ROUNDS, writes};
use kcore_test_guest::{self as guest, Status};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::Ordering::SeqCst;

/// Pages of guest RAM (one slot, slot 0).
const RAM_PAGES: u64 = guest::RAM_SIZE / 4096;

/// `KVM_GET_DIRTY_LOG` of `slot` on the VM fd `vm` (raw): its bitmap.
pub fn get_log(vm: i32, slot: u64) -> Result<Vec<u64>, i32> {
    let mut bitmap = vec![0u64; RAM_PAGES.div_ceil(64) as usize];
    let arg = [slot, bitmap.as_mut_ptr() as u64];
    sys::ioctl(vm, GET_DIRTY_LOG, ptr(&arg))?;
    Ok(bitmap)
}

/// What the dirty log of round `round` must be and is not: the first pages
/// (numbered from [`BASE`]) where it differs.
pub fn check_round(vm: i32, round: u64) -> Result<(), String> {
    let bitmap = get_log(vm, 0).map_err(|e| format!("KVM_GET_DIRTY_LOG: errno {e}"))?;
    let first = (BASE - guest::RAM_BASE) / 4096;
    let wrong: Vec<u64> = (first..RAM_PAGES)
        .filter(|&p| {
            let k = p - first;
            let want = k < PAGES && (writes(round, 0, k) || writes(round, 1, k));
            let dirty = bitmap[(p / 64) as usize] >> (p % 64) & 1 == 1;
            dirty != want
        })
        .map(|p| p - first)
        .take(8)
        .collect();
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "round {round}: pages {wrong:?} of the region logged wrongly"
        ))
    }
}

/// Runs the dirty program in a non-protected VM with two vCPUs.
pub fn dirty_guest(c: &mut Checks, kvm: &File, target: u32, image: &[u8]) -> Result<(), String> {
    let vm = owned(ioctl(kvm, CREATE_VM, 0).map_err(|e| format!("KVM_CREATE_VM: errno {e}"))?);
    let ram = anon(guest::RAM_SIZE as usize).map_err(|e| format!("mmap: errno {e}"))?;
    load_guest(&vm, ram, image)?;
    let fd = vm.as_raw_fd();
    c.ok(
        "dirty-cap-manual-protect",
        ioctl(&vm, CHECK_EXTENSION, CAP_MANUAL_DIRTY_LOG_PROTECT2),
        3,
    );
    c.ok(
        "dirty-cap-ring",
        ioctl(&vm, CHECK_EXTENSION, CAP_DIRTY_LOG_RING),
        0,
    );
    c.check(
        "dirty-log-not-logging",
        get_log(fd, 0) == Err(ENOENT),
        || "expected ENOENT".into(),
    );
    // Address space 1 (arm64 has one), and `KVM_USER_MEM_SLOTS` (32767).
    c.check(
        "dirty-log-bad-slot",
        get_log(fd, 1 << 16) == Err(EINVAL) && get_log(fd, 0x7FFF) == Err(EINVAL),
        || "expected EINVAL".into(),
    );
    // Slot 32: past KServ's 32 slots, an unused slot of KVM's.
    c.check(
        "dirty-log-unused-slot",
        get_log(fd, 32) == Err(ENOENT),
        || "expected ENOENT".into(),
    );
    // Logging on for the slot (a flags-only change).
    let slot = region(
        0,
        MEM_LOG_DIRTY_PAGES,
        guest::RAM_BASE,
        guest::RAM_SIZE,
        ram.as_ptr() as u64,
    );
    c.ok("dirty-log-on", set_region(&vm, slot), 0);
    let clear = |first: u64, num: u64| {
        let mask = [u64::MAX; 2];
        let arg = [num << 32, first, mask.as_ptr() as u64];
        ioctl(&vm, CLEAR_DIRTY_LOG, ptr(&arg))
    };
    c.errno("dirty-clear-unaligned", clear(1, 64), EINVAL);
    c.errno("dirty-clear-short", clear(0, 65), EINVAL);
    c.errno("dirty-clear-past-end", clear(RAM_PAGES - 64, 128), EINVAL);
    let v0 = make_vcpu(&vm, 0, target, 1 << 2)?;
    let v1 = make_vcpu(&vm, 1, target, 1 << 2 | 1)?;
    let v2 = host_gic_v2(&vm);
    let _gic = make_vgic(&vm, Some(64))?;
    set_reg(&v0.fd, REG_PC, guest::RAM_BASE).map_err(|e| format!("PC: errno {e}"))?;
    set_reg(&v0.fd, REG_X0, guest::DIRTY_X0).map_err(|e| format!("x0: errno {e}"))?;
    let dev = Arc::new(Device::default());
    dev.gic_v2.store(v2, SeqCst);
    dev.dirty_vm.store(fd + 1, SeqCst);
    let d1 = Arc::clone(&dev);
    std::thread::spawn(move || {
        if let Err(e) = drive(&v1, &d1, 1) {
            println!("kvmapi: {e}");
        }
    });
    drive(&v0, &dev, 0)?;
    let rounds = dev.rounds.lock().map(|r| r.clone()).unwrap_or_default();
    for r in 0..ROUNDS {
        let got = rounds.get(r as usize);
        c.check(&format!("dirty-round-{r}"), got == Some(&Ok(())), || {
            format!("{got:?}")
        });
    }
    let status = Status::from_word(dev.status.load(SeqCst));
    c.check(
        "dirty",
        status.passed == ROUNDS as u32 && status.failed == 0 && rounds.len() == ROUNDS as usize,
        || {
            format!(
                "{} rounds passed, {} failed, {} logs read",
                status.passed,
                status.failed,
                rounds.len()
            )
        },
    );
    // The last round's pages were cleared by its read, and nothing wrote
    // the region since.
    let after = check_round_empty(fd);
    c.check("dirty-log-cleared", after.is_ok(), || format!("{after:?}"));
    Ok(())
}

/// The region is clean in the dirty log now.
fn check_round_empty(vm: i32) -> Result<(), String> {
    let bitmap = get_log(vm, 0).map_err(|e| format!("KVM_GET_DIRTY_LOG: errno {e}"))?;
    let first = (BASE - guest::RAM_BASE) / 4096;
    match (first..RAM_PAGES).find(|&p| bitmap[(p / 64) as usize] >> (p % 64) & 1 == 1) {
        None => Ok(()),
        Some(p) => Err(format!("page {} of the region still dirty", p - first)),
    }
}
