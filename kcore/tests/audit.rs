//! KCore's self-check (`kcore::audit`) finds what it is there to find: a
//! world built through checked hypercalls passes; the same world with one
//! stage-2 descriptor written behind the ownership table's back fails, with
//! the right finding.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on an unexpected error"
)]

mod common;

use common::{FIRST_HOST_PFN, World, hvc, world};
use kcore::addr::Pa;
use kcore::audit::{Finding, audit};
use kcore::pgtable::Attrs;
use kcore::vm::VmId;
use kcore_abi::{HypercallId as H, vm_flags};

const GUEST_PFN: u64 = FIRST_HOST_PFN + 32;
const GFN: u64 = 0x80;

/// A protected VM with two donated pages at `GFN`, `GFN + 1`.
fn setup() -> (World, u64) {
    let mut w = world();
    let r = hvc(
        &mut w,
        H::HostCreateVm,
        &[vm_flags::PROTECTED, 0, 1, FIRST_HOST_PFN, 8],
    );
    assert_eq!(r[0], 0);
    for i in 0..2 {
        assert_eq!(
            hvc(&mut w, H::HostDonateGuest, &[r[1], GUEST_PFN + i, GFN + i])[0],
            0
        );
    }
    (w, r[1])
}

#[test]
fn a_consistent_world_passes() {
    let (w, _) = setup();
    let r = audit(w.host.mem(), &w.hw).unwrap();
    assert_eq!(r.vms, 1);
    assert_eq!(r.vm_pages, 2);
    assert!(r.host_pages > 0 && r.table_pages > 0);
}

#[test]
fn kserv_mapping_a_guest_page_is_found() {
    let (mut w, _) = setup();
    let pa = GUEST_PFN << 12;
    let mut t = w.host.mem().host().table().clone();
    let owners = w.host.mem().owners();
    t.map(
        &mut w.hw,
        &mut w.alloc,
        &|t| owners.holds_table(t, None),
        pa,
        Pa(pa),
        4096,
        Attrs::RAM_RW,
    )
    .unwrap();
    let e = audit(w.host.mem(), &w.hw).unwrap_err();
    assert_eq!(
        (e.finding, e.at, e.vm),
        (Finding::HostMapsForeign, pa, Some(VmId(0)))
    );
}

#[test]
fn a_vm_mapping_a_kserv_page_is_found() {
    let (mut w, _) = setup();
    // Next to the donated pages: the level-3 table exists, no page needed.
    let ipa = (GFN + 2) << 12;
    let host_page = (FIRST_HOST_PFN + 40) << 12;
    let vm = w.host.mem().vms().get(VmId(0)).unwrap();
    let mut t = vm.stage2.clone();
    let owners = w.host.mem().owners();
    t.map(
        &mut w.hw,
        &mut w.alloc,
        &|t| owners.holds_table(t, Some(VmId(0))),
        ipa,
        Pa(host_page),
        4096,
        Attrs::RAM_RW,
    )
    .unwrap();
    let e = audit(w.host.mem(), &w.hw).unwrap_err();
    assert_eq!(
        (e.finding, e.at, e.vm),
        (Finding::VmMapsForeign, ipa, Some(VmId(0)))
    );
}

#[test]
fn a_guest_page_at_the_wrong_gfn_is_found() {
    let (mut w, _) = setup();
    // The VM's own page, mapped a second time at another gfn.
    let ipa = (GFN + 3) << 12;
    let vm = w.host.mem().vms().get(VmId(0)).unwrap();
    let mut t = vm.stage2.clone();
    let owners = w.host.mem().owners();
    t.map(
        &mut w.hw,
        &mut w.alloc,
        &|t| owners.holds_table(t, Some(VmId(0))),
        ipa,
        Pa(GUEST_PFN << 12),
        4096,
        Attrs::RAM_RW,
    )
    .unwrap();
    let e = audit(w.host.mem(), &w.hw).unwrap_err();
    assert_eq!(e.finding, Finding::VmMapsForeign);
    assert_eq!(e.at, ipa);
}

#[test]
fn kserv_can_ask_for_the_self_check() {
    let (mut w, _) = setup();
    let r = hvc(&mut w, H::HostSelfCheck, &[]);
    assert_eq!(r[0], 0);
    assert!(r[1] > 0, "KServ's pages");
    assert_eq!(r[2], 2, "the VM's pages");
    assert!(r[3] > 0, "table pages");
    let pa = GUEST_PFN << 12;
    let mut t = w.host.mem().host().table().clone();
    let owners = w.host.mem().owners();
    t.map(
        &mut w.hw,
        &mut w.alloc,
        &|t| owners.holds_table(t, None),
        pa,
        Pa(pa),
        4096,
        Attrs::RAM_RW,
    )
    .unwrap();
    let r = hvc(&mut w, H::HostSelfCheck, &[]);
    assert_eq!(r, [kcore_abi::Error::SelfCheckFailed.to_x0(), 0, 0, 0]);
}
