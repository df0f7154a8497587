//! Every page state against every page transition, as a table (in the manner
//! of pKVM's ownership self-test): each cell gives the expected return code
//! and the page's state afterwards. A refused call must leave the whole
//! ownership table and every VM unchanged, and every call must leave the
//! invariants of DESIGN.md section 2 intact.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on an unexpected error"
)]

mod common;

use common::{FIRST_HOST_PFN, RAM, World, check_invariants, hvc, world};
use kcore::addr::{Gfn, Pfn};
use kcore::ownership::PageState;
use kcore::vcpu::RunArgs;
use kcore::vm::VmId;
use kcore_abi::{Error, HypercallId as H, vm_flags};

/// The page states a row starts from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Start {
    Host,
    KCore,
    VmTable,
    Guest,
    GuestShared,
    HostShared,
    /// The run page of B's vCPU 0, which is running (loaded, not put).
    HostPinned,
    NotRam,
}

const STARTS: [Start; 8] = [
    Start::Host,
    Start::KCore,
    Start::VmTable,
    Start::Guest,
    Start::GuestShared,
    Start::HostShared,
    Start::HostPinned,
    Start::NotRam,
];

/// VM A is protected (slot 0), VM B non-protected (slot 1).
const A: VmId = VmId(0);
const B: VmId = VmId(1);
const G: u64 = 0x10;
const G2: u64 = 0x20;

struct Cell {
    w: World,
    a: u64,
    b: u64,
    pfn: u64,
}

fn create(w: &mut World, flags: u64, pool: u64) -> u64 {
    let r = hvc(w, H::HostCreateVm, &[flags, 0, 2, pool, 4]);
    assert_eq!(r[0], 0, "create VM");
    r[1]
}

fn setup(start: Start) -> Cell {
    let mut w = world();
    let a = create(&mut w, vm_flags::PROTECTED, FIRST_HOST_PFN);
    let b = create(&mut w, 0, FIRST_HOST_PFN + 4);
    let page = FIRST_HOST_PFN + 64;
    let pfn = match start {
        Start::Host => page,
        Start::KCore => RAM >> 12,
        Start::VmTable => FIRST_HOST_PFN + 3,
        Start::Guest => {
            assert_eq!(hvc(&mut w, H::HostDonateGuest, &[a, page, G])[0], 0);
            page
        }
        Start::GuestShared => {
            assert_eq!(hvc(&mut w, H::HostDonateGuest, &[a, page, G])[0], 0);
            let t = w.host.mem().check_guest_share_host(A, G, &w.hw).unwrap();
            w.host.mem_mut().commit_guest_share_host(t);
            page
        }
        Start::HostShared => {
            assert_eq!(hvc(&mut w, H::HostShareGuest, &[b, page, G])[0], 0);
            page
        }
        Start::HostPinned => {
            assert_eq!(hvc(&mut w, H::HostCreateVcpu, &[b, 0])[0], 0);
            let a = RunArgs {
                handle: b,
                vcpu: 0,
                run_pfn: page,
            };
            w.host.mem_mut().vcpu_load(a, 4, &mut w.hw).unwrap();
            page
        }
        Start::NotRam => 0x9000,
    };
    check_invariants(&w).unwrap();
    Cell { w, a, b, pfn }
}

/// One transition, applied to a cell.
type Call = fn(&mut Cell) -> u64;

fn guest_share(c: &mut Cell) -> u64 {
    match c.w.host.mem().check_guest_share_host(A, G, &c.w.hw) {
        Ok(t) => {
            c.w.host.mem_mut().commit_guest_share_host(t);
            0
        }
        Err(e) => e.to_x0(),
    }
}

fn guest_unshare(c: &mut Cell) -> u64 {
    match c.w.host.mem().check_guest_unshare_host(A, G, &c.w.hw) {
        Ok(t) => {
            let (mem, hw) = (c.w.host.mem_mut(), &mut c.w.hw);
            mem.commit_guest_unshare_host(t, hw);
            0
        }
        Err(e) => e.to_x0(),
    }
}

const CALLS: [(&str, Call); 10] = [
    ("host_donate_guest(A)", |c| {
        hvc(&mut c.w, H::HostDonateGuest, &[c.a, c.pfn, G2])[0]
    }),
    ("host_donate_guest(B)", |c| {
        hvc(&mut c.w, H::HostDonateGuest, &[c.b, c.pfn, G2])[0]
    }),
    ("host_share_guest(B)", |c| {
        hvc(&mut c.w, H::HostShareGuest, &[c.b, c.pfn, G2])[0]
    }),
    ("host_share_guest(A)", |c| {
        hvc(&mut c.w, H::HostShareGuest, &[c.a, c.pfn, G2])[0]
    }),
    ("host_unshare_guest(B)", |c| {
        hvc(&mut c.w, H::HostUnshareGuest, &[c.b, G])[0]
    }),
    ("host_donate_vm_pool(A)", |c| {
        hvc(&mut c.w, H::HostDonateVmPool, &[c.a, c.pfn])[0]
    }),
    ("host_reclaim_page(A)", |c| {
        hvc(&mut c.w, H::HostReclaimPage, &[c.a, c.pfn])[0]
    }),
    ("guest_share_host(A)", guest_share),
    ("guest_unshare_host(A)", guest_unshare),
    ("host_page_owner", |c| {
        hvc(&mut c.w, H::HostPageOwner, &[c.pfn])[0]
    }),
];

/// The expected outcome: `Ok(new state)` or the error (state unchanged).
type Expect = Result<Option<PageState>, Error>;

fn expected(call: &str, start: Start) -> Expect {
    use Start::*;
    let guest = |vm, gfn| Ok(Some(PageState::Guest { vm, gfn: Gfn(gfn) }));
    let unchanged = || Ok(None);
    match (call, start) {
        // Addressed by gfn, not pfn: nothing of B's is at G unless shared.
        ("host_unshare_guest(B)", HostShared) => Ok(Some(PageState::Host)),
        ("host_unshare_guest(B)", _) => Err(Error::NotFound),
        // A live VM's pages are never reclaimed (checked before the page).
        ("host_reclaim_page(A)", _) => Err(Error::Busy),
        (_, NotRam) if call.starts_with("host_") => Err(Error::InvalidParameter),
        // A running vCPU's run page cannot leave KServ until the put.
        (
            "host_donate_guest(A)"
            | "host_donate_guest(B)"
            | "host_share_guest(B)"
            | "host_share_guest(A)"
            | "host_donate_vm_pool(A)",
            HostPinned,
        ) => Err(Error::Busy),
        ("host_donate_guest(A)", Host) => guest(A, G2),
        ("host_donate_guest(B)", Host) => guest(B, G2),
        ("host_share_guest(B)", Host) => Ok(Some(PageState::HostSharedWithGuest {
            vm: B,
            gfn: Gfn(G2),
        })),
        (
            "host_donate_guest(A)"
            | "host_donate_guest(B)"
            | "host_share_guest(B)"
            | "host_share_guest(A)",
            _,
        ) => Err(Error::Denied),
        ("host_donate_vm_pool(A)", Host) => Ok(Some(PageState::VmTable { vm: A })),
        ("host_donate_vm_pool(A)", _) => Err(Error::Denied),
        ("guest_share_host(A)", Guest) => {
            Ok(Some(PageState::GuestSharedWithHost { vm: A, gfn: Gfn(G) }))
        }
        ("guest_share_host(A)", GuestShared) => Err(Error::Denied),
        ("guest_unshare_host(A)", GuestShared) => guest(A, G),
        ("guest_unshare_host(A)", Guest) => Err(Error::Denied),
        // Nothing of A's is at gfn G.
        ("guest_share_host(A)" | "guest_unshare_host(A)", _) => Err(Error::NotFound),
        ("host_page_owner", _) => unchanged(),
        _ => unreachable!("no expectation for {call} on {start:?}"),
    }
}

/// Every page's state, and every VM's counters and free pool pages.
type Snapshot = (Vec<(Pfn, PageState)>, Vec<(u64, u64, u64, u64)>);

fn snapshot(w: &World) -> Snapshot {
    let mem = w.host.mem();
    let pages = mem.owners().iter().collect();
    let vms = mem
        .vms()
        .iter()
        .map(|(_, v)| (v.owned_pages, v.table_pages, v.borrowed_pages, v.pool.len()))
        .collect();
    (pages, vms)
}

#[test]
fn every_state_against_every_transition() {
    let mut cells = 0;
    for start in STARTS {
        for (name, call) in CALLS {
            let mut c = setup(start);
            let before = snapshot(&c.w);
            let state_before = c.w.host.mem().owners().get(Pfn(c.pfn));
            let r = call(&mut c);
            let after_state = c.w.host.mem().owners().get(Pfn(c.pfn));
            let want = expected(name, start);
            let ctx = format!("{name} on a {start:?} page");
            match want {
                Ok(new) => {
                    assert_eq!(r, 0, "{ctx}: returned {}", r as i64);
                    assert_eq!(after_state, new.or(state_before), "{ctx}: resulting state");
                }
                Err(e) => {
                    assert_eq!(r, e.to_x0(), "{ctx}: expected {e:?}, got {}", r as i64);
                    assert!(
                        snapshot(&c.w) == before,
                        "{ctx}: a refused call changed state"
                    );
                }
            }
            check_invariants(&c.w).unwrap_or_else(|e| panic!("{ctx}: {e}"));
            cells += 1;
        }
    }
    assert_eq!(cells, STARTS.len() * CALLS.len());
}

#[test]
fn dying_vm_pages_are_scrubbed_then_returned() {
    for start in STARTS {
        let mut c = setup(start);
        let secret = [0x5Au8; 64];
        c.w.hw.write(c.pfn << 12, &secret);
        assert_eq!(hvc(&mut c.w, H::HostTeardownVm, &[c.a])[0], 0);
        check_invariants(&c.w).unwrap();
        // A dying VM takes nothing new.
        assert_eq!(
            hvc(
                &mut c.w,
                H::HostDonateGuest,
                &[c.a, FIRST_HOST_PFN + 100, G2]
            )[0],
            Error::Denied.to_x0()
        );
        assert_eq!(
            hvc(&mut c.w, H::HostTeardownVm, &[c.a])[0],
            Error::Denied.to_x0()
        );
        let r = hvc(&mut c.w, H::HostReclaimPage, &[c.a, c.pfn])[0];
        let state = c.w.host.mem().owners().get(Pfn(c.pfn));
        match start {
            Start::Guest | Start::GuestShared | Start::VmTable => {
                assert_eq!(r, 0, "{start:?}");
                assert_eq!(state, Some(PageState::Host), "{start:?}");
                assert!(
                    c.w.hw.is_zero(c.pfn << 12),
                    "{start:?}: returned unscrubbed"
                );
            }
            Start::NotRam => assert_eq!(r, Error::InvalidParameter.to_x0()),
            _ => {
                assert_eq!(r, Error::Denied.to_x0(), "{start:?}");
                assert_eq!(
                    c.w.hw.bytes(c.pfn << 12, 64),
                    secret,
                    "{start:?}: a refused reclaim scrubbed"
                );
            }
        }
        check_invariants(&c.w).unwrap_or_else(|e| panic!("{start:?}: {e}"));
        // B's shared page went back to KServ alone when... B still lives.
        if start == Start::HostShared {
            assert!(matches!(
                state,
                Some(PageState::HostSharedWithGuest { vm: B, .. })
            ));
        }
    }
}

#[test]
fn teardown_returns_shared_pages_and_reclaiming_everything_frees_the_slot() {
    let mut c = setup(Start::HostShared);
    // Tear down B: the page it borrowed is KServ's alone again.
    assert_eq!(hvc(&mut c.w, H::HostTeardownVm, &[c.b])[0], 0);
    assert_eq!(
        c.w.host.mem().owners().get(Pfn(c.pfn)),
        Some(PageState::Host)
    );
    check_invariants(&c.w).unwrap();
    // Reclaim B's four table pages: the slot is freed, the handle goes stale.
    for p in FIRST_HOST_PFN + 4..FIRST_HOST_PFN + 8 {
        assert_eq!(hvc(&mut c.w, H::HostReclaimPage, &[c.b, p])[0], 0);
        check_invariants(&c.w).unwrap();
    }
    assert!(c.w.host.mem().vms().get(B).is_none());
    assert_eq!(
        hvc(&mut c.w, H::HostReclaimPage, &[c.b, FIRST_HOST_PFN + 4])[0],
        Error::NotFound.to_x0()
    );
    // The slot is reused under a new handle; the old one stays dead.
    let again = create(&mut c.w, 0, FIRST_HOST_PFN + 200);
    assert_ne!(again, c.b);
    assert_eq!(
        hvc(&mut c.w, H::HostTeardownVm, &[c.b])[0],
        Error::NotFound.to_x0()
    );
    check_invariants(&c.w).unwrap();
}
