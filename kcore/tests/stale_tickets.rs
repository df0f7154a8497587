//! A commit that finds the state other than its check promised is never
//! silent: it counts a broken invariant, which the self-check (so every
//! host test's `check_invariants`) reports.
//!
//! KServ cannot get there: each hypercall commits its ticket at once, under
//! KCore's lock, and a ticket is neither `Copy` nor `Clone`, so it is
//! committed once. A test can: it checks twice and commits both tickets,
//! or changes the world between a check and its commit.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on an unexpected error"
)]

mod common;

use common::{FIRST_HOST_PFN, World, check_invariants, hvc, world};
use kcore::addr::Pfn;
use kcore::audit::{Finding, audit};
use kcore::mem_protect::CreateVm;
use kcore::ownership::PageState;
use kcore::vm::{VmId, VmKind};
use kcore_abi::HypercallId as H;

const POOL: u64 = FIRST_HOST_PFN;
const PAGE: u64 = FIRST_HOST_PFN + 32;
const GFN: u64 = 0x80;

/// A non-protected VM with a pool of 8 pages.
fn vm(w: &mut World) -> u64 {
    let r = hvc(w, H::HostCreateVm, &[0, 0, 1, POOL, 8]);
    assert_eq!(r[0], 0);
    r[1]
}

fn broken(w: &World) -> u64 {
    w.host.mem().broken_invariants()
}

/// The invariant check fails (on the count, or on what the broken commit
/// left behind, which the audit finds first).
fn reported(w: &World) {
    let e = check_invariants(w).unwrap_err();
    assert!(e.contains("self-check"), "{e}");
}

#[test]
fn a_second_commit_of_one_reclaim_is_counted_not_an_underflow() {
    let mut w = world();
    let h = vm(&mut w);
    assert_eq!(hvc(&mut w, H::HostDonateGuest, &[h, PAGE, GFN])[0], 0);
    assert_eq!(hvc(&mut w, H::HostTeardownVm, &[h])[0], 0);
    let t1 = w.host.mem().check_host_reclaim_page(h, PAGE).unwrap();
    let t2 = w.host.mem().check_host_reclaim_page(h, PAGE).unwrap();
    w.host.mem_mut().commit_host_reclaim_page(t1, &mut w.hw);
    assert_eq!(broken(&w), 0);
    check_invariants(&w).unwrap();
    // The VM owned one page: counting it out again would underflow.
    w.host.mem_mut().commit_host_reclaim_page(t2, &mut w.hw);
    assert_eq!(broken(&w), 1);
    assert_eq!(
        w.host.mem().vms().get(VmId(0)).unwrap().owned_pages,
        0,
        "no wrap-around"
    );
    let e = audit(w.host.mem(), &w.hw).unwrap_err();
    assert_eq!((e.finding, e.at), (Finding::BrokenInvariant, 1));
}

#[test]
fn a_second_commit_of_one_unshare_is_counted() {
    let mut w = world();
    let h = vm(&mut w);
    assert_eq!(hvc(&mut w, H::HostShareGuest, &[h, PAGE, GFN, 0])[0], 0);
    let t1 = w
        .host
        .mem()
        .check_host_unshare_guest(h, GFN, &w.hw)
        .unwrap();
    let t2 = w
        .host
        .mem()
        .check_host_unshare_guest(h, GFN, &w.hw)
        .unwrap();
    w.host.mem_mut().commit_host_unshare_guest(t1, &mut w.hw);
    assert_eq!(broken(&w), 0);
    check_invariants(&w).unwrap();
    // Nothing left to unmap, nothing left to count out.
    w.host.mem_mut().commit_host_unshare_guest(t2, &mut w.hw);
    assert_eq!(broken(&w), 1);
    assert_eq!(w.host.mem().vms().get(VmId(0)).unwrap().borrowed_pages, 0);
    let e = audit(w.host.mem(), &w.hw).unwrap_err();
    assert_eq!((e.finding, e.at), (Finding::BrokenInvariant, 1));
}

#[test]
fn a_second_mapping_at_one_gfn_is_counted() {
    let mut w = world();
    let h = vm(&mut w);
    let t1 = w
        .host
        .mem()
        .check_host_donate_guest(h, PAGE, GFN, &w.hw)
        .unwrap();
    let t2 = w
        .host
        .mem()
        .check_host_donate_guest(h, PAGE + 1, GFN, &w.hw)
        .unwrap();
    w.host.mem_mut().commit_host_donate_guest(t1, &mut w.hw);
    assert_eq!(broken(&w), 0);
    // The gfn the check saw free is mapped now: the stage 2 refuses the
    // second mapping (it never replaces an entry), and that is counted.
    w.host.mem_mut().commit_host_donate_guest(t2, &mut w.hw);
    assert_eq!(broken(&w), 1);
    let leaf = common::vm_walk(&w, VmId(0), GFN << 12).unwrap();
    assert_eq!(leaf.pa.raw(), PAGE << 12, "the first mapping stands");
    reported(&w);
}

#[test]
fn a_commit_whose_vm_is_gone_is_counted() {
    let mut w = world();
    let h = vm(&mut w);
    let t = w
        .host
        .mem()
        .check_host_donate_guest(h, PAGE, GFN, &w.hw)
        .unwrap();
    let pool = w.host.mem().check_donate_vm_pool(h, PAGE + 1).unwrap();
    // The VM goes away entirely: torn down, every page reclaimed.
    assert_eq!(hvc(&mut w, H::HostTeardownVm, &[h])[0], 0);
    for p in POOL..POOL + 8 {
        assert_eq!(hvc(&mut w, H::HostReclaimPage, &[h, p])[0], 0);
    }
    assert!(w.host.mem().vms().get(VmId(0)).is_none());
    w.host.mem_mut().commit_host_donate_guest(t, &mut w.hw);
    assert_eq!(broken(&w), 1);
    w.host.mem_mut().commit_donate_vm_pool(pool, &mut w.hw);
    assert_eq!(broken(&w), 2);
    assert_eq!(
        w.host.mem().owners().get(Pfn(PAGE)),
        Some(PageState::Guest {
            vm: VmId(0),
            gfn: kcore::addr::Gfn(GFN)
        }),
        "the commit did what it still could"
    );
    reported(&w);
}

#[test]
fn two_vms_committed_into_one_slot_are_counted() {
    let mut w = world();
    let args = |pool| CreateVm {
        kind: VmKind::NonProtected,
        ipa_bits: 0,
        max_vcpus: 1,
        pool: Pfn(pool),
        pool_pages: 2,
    };
    let t1 = w.host.mem().check_create_vm(&args(POOL)).unwrap();
    let t2 = w.host.mem().check_create_vm(&args(POOL + 2)).unwrap();
    w.host.mem_mut().commit_create_vm(t1, &mut w.hw);
    assert_eq!(broken(&w), 0);
    w.host.mem_mut().commit_create_vm(t2, &mut w.hw);
    assert_eq!(broken(&w), 1);
    reported(&w);
}
