//! Property tests: random sequences of KServ's memory hypercalls (and the
//! guest-initiated sharing calls), with arbitrary and hostile arguments, on
//! two CPUs: `host_vcpu_run` is split into its load and its put, with any
//! other steps between them, as KCore drops its lock while a guest runs. After
//! every step the invariants of DESIGN.md section 2 hold; a refused call
//! changed nothing; a page KServ gets back from a VM is zero; KCore never
//! panics.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on an unexpected error"
)]

mod common;

use common::{FIRST_HOST_PFN, RAM, RAM_SIZE, World, check_invariants, hvc, world};
use kcore::addr::Pfn;
use kcore::ownership::PageState;
use kcore::vcpu::{Loaded, RunArgs};
use kcore::vm::VmId;
use kcore_abi::HypercallId as H;
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Create {
        protected: bool,
        pool: u64,
        pages: u64,
        ipa: u32,
    },
    DonateGuest {
        vm: usize,
        page: u64,
        gfn: u64,
    },
    ShareGuest {
        vm: usize,
        page: u64,
        gfn: u64,
    },
    UnshareGuest {
        vm: usize,
        gfn: u64,
    },
    DonatePool {
        vm: usize,
        page: u64,
    },
    GuestShare {
        slot: u16,
        gfn: u64,
    },
    GuestUnshare {
        slot: u16,
        gfn: u64,
    },
    Teardown {
        vm: usize,
    },
    Reclaim {
        vm: usize,
        page: u64,
    },
    Owner {
        page: u64,
    },
    /// A VM (or KServ, on its own pages) writes a marker into a page.
    Scribble {
        page: u64,
    },
    CreateVcpu {
        vm: usize,
        idx: u64,
    },
    /// The first half of `host_vcpu_run` on CPU `cpu` (if it runs no vCPU).
    Load {
        cpu: usize,
        vm: usize,
        idx: u64,
        page: u64,
    },
    /// The guest on CPU `cpu` exits: the last half.
    Put {
        cpu: usize,
    },
}

/// Pages: mostly KServ's first 48, sometimes KCore's, the end of RAM or
/// beyond, or anything at all.
/// Pages the tests use as run pages most of the time, so that a running
/// vCPU's run page is often offered to the other calls too.
fn run_page() -> impl Strategy<Value = u64> {
    (44..48u64).prop_map(|i| FIRST_HOST_PFN + i)
}

fn page() -> impl Strategy<Value = u64> {
    prop_oneof![
        8 => (0..48u64).prop_map(|i| FIRST_HOST_PFN + i),
        4 => run_page(),
        1 => (0..4u64).prop_map(|i| (RAM >> 12) + i),
        1 => Just((RAM + RAM_SIZE) >> 12),
        1 => any::<u64>(),
    ]
}

fn gfn() -> impl Strategy<Value = u64> {
    prop_oneof![8 => 0..8u64, 1 => Just(1 << 28), 1 => any::<u64>()]
}

/// VM handles by index into those created so far; high indices give junk.
fn vcpu_idx() -> impl Strategy<Value = u64> {
    prop_oneof![4 => Just(0u64), 1 => 0..3u64]
}

fn vm() -> impl Strategy<Value = usize> {
    0..6usize
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => (prop_oneof![2 => Just(false), 1 => Just(true)], (0..24u64).prop_map(|i| FIRST_HOST_PFN + 2 * i), prop_oneof![3 => 2..6u64, 1 => any::<u64>()],
              prop_oneof![3 => Just(0u32), 1 => 28..50u32])
            .prop_map(|(protected, pool, pages, ipa)| Op::Create { protected, pool, pages, ipa }),
        4 => (vm(), page(), gfn()).prop_map(|(vm, page, gfn)| Op::DonateGuest { vm, page, gfn }),
        3 => (vm(), page(), gfn()).prop_map(|(vm, page, gfn)| Op::ShareGuest { vm, page, gfn }),
        2 => (vm(), gfn()).prop_map(|(vm, gfn)| Op::UnshareGuest { vm, gfn }),
        1 => (vm(), page()).prop_map(|(vm, page)| Op::DonatePool { vm, page }),
        2 => (0..4u16, gfn()).prop_map(|(slot, gfn)| Op::GuestShare { slot, gfn }),
        2 => (0..4u16, gfn()).prop_map(|(slot, gfn)| Op::GuestUnshare { slot, gfn }),
        1 => vm().prop_map(|vm| Op::Teardown { vm }),
        4 => (vm(), page()).prop_map(|(vm, page)| Op::Reclaim { vm, page }),
        1 => page().prop_map(|page| Op::Owner { page }),
        2 => page().prop_map(|page| Op::Scribble { page }),
        // Biased towards the first VMs' vCPU 0, so that loads succeed.
        3 => (0..2usize, vcpu_idx()).prop_map(|(vm, idx)| Op::CreateVcpu { vm, idx }),
        5 => (0..2usize, prop_oneof![4 => 0..2usize, 1 => vm()], vcpu_idx(), prop_oneof![4 => run_page(), 1 => page()])
            .prop_map(|(cpu, vm, idx, page)| Op::Load { cpu, vm, idx, page }),
        3 => (0..2usize).prop_map(|cpu| Op::Put { cpu }),
    ]
}

fn snapshot(w: &World) -> Vec<(Pfn, PageState)> {
    w.host.mem().owners().iter().collect()
}

fn guest_call(w: &mut World, share: bool, slot: u16, gfn: u64) -> u64 {
    let (mem, hw) = (w.host.mem(), &w.hw);
    let check = if share {
        mem.check_guest_share_host(VmId(slot), gfn, hw)
    } else {
        mem.check_guest_unshare_host(VmId(slot), gfn, hw)
    };
    match check {
        Ok(t) if share => {
            w.host.mem_mut().commit_guest_share_host(t);
            0
        }
        Ok(t) => {
            let (mem, hw) = (w.host.mem_mut(), &mut w.hw);
            mem.commit_guest_unshare_host(t, hw);
            0
        }
        Err(e) => e.to_x0(),
    }
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut w = world();
    let mut handles: Vec<u64> = Vec::new();
    let handle = |h: &Vec<u64>, i: usize| h.get(i).copied().unwrap_or(0xdead_0001 + i as u64);
    let mut cpus: [Option<Box<Loaded>>; 2] = [None, None];
    // VM 0 is a non-protected VM with two vCPUs, its pool outside the pages
    // the steps pick (so its vCPUs can run whatever the steps do).
    let r = hvc(&mut w, H::HostCreateVm, &[0, 0, 2, FIRST_HOST_PFN + 64, 8]);
    prop_assert_eq!(r[0], 0);
    handles.push(r[1]);
    for idx in 0..2 {
        prop_assert_eq!(hvc(&mut w, H::HostCreateVcpu, &[r[1], idx])[0], 0);
    }
    for (step, op) in ops.into_iter().enumerate() {
        let before = snapshot(&w);
        let r =
            match op.clone() {
                Op::Create {
                    protected,
                    pool,
                    pages,
                    ipa,
                } => {
                    let flags = if protected {
                        kcore_abi::vm_flags::PROTECTED
                    } else {
                        0
                    };
                    let r = hvc(
                        &mut w,
                        H::HostCreateVm,
                        &[flags, ipa as u64, 2, pool, pages],
                    );
                    if r[0] == 0 {
                        handles.push(r[1]);
                    }
                    r[0]
                }
                Op::DonateGuest { vm, page, gfn } => hvc(
                    &mut w,
                    H::HostDonateGuest,
                    &[handle(&handles, vm), page, gfn],
                )[0],
                Op::ShareGuest { vm, page, gfn } => hvc(
                    &mut w,
                    H::HostShareGuest,
                    &[handle(&handles, vm), page, gfn],
                )[0],
                Op::UnshareGuest { vm, gfn } => {
                    hvc(&mut w, H::HostUnshareGuest, &[handle(&handles, vm), gfn])[0]
                }
                Op::DonatePool { vm, page } => {
                    hvc(&mut w, H::HostDonateVmPool, &[handle(&handles, vm), page])[0]
                }
                Op::GuestShare { slot, gfn } => guest_call(&mut w, true, slot, gfn),
                Op::GuestUnshare { slot, gfn } => guest_call(&mut w, false, slot, gfn),
                Op::Teardown { vm } => hvc(&mut w, H::HostTeardownVm, &[handle(&handles, vm)])[0],
                Op::Reclaim { vm, page } => {
                    let r = hvc(&mut w, H::HostReclaimPage, &[handle(&handles, vm), page])[0];
                    if r == 0 {
                        // Invariant 6: what KServ gets back from a VM is zero.
                        prop_assert!(
                            w.hw.is_zero(page << 12),
                            "step {step}: reclaimed page {page:#x} not scrubbed"
                        );
                    }
                    r
                }
                Op::Owner { page } => {
                    let r = hvc(&mut w, H::HostPageOwner, &[page])[0];
                    prop_assert!(
                        snapshot(&w) == before,
                        "step {step}: host_page_owner changed state"
                    );
                    r
                }
                Op::Scribble { page } => {
                    // Only KServ (its own and shared pages) or a VM (its own)
                    // can write: never KCore's or a VM's table pages.
                    let writable =
                        w.host.mem().owners().get(Pfn(page)).is_some_and(|s| {
                            s.host_may_map() || matches!(s, PageState::Guest { .. })
                        });
                    if writable {
                        w.hw.write(page << 12, &[0xC3; 32]);
                    }
                    0
                }
                Op::CreateVcpu { vm, idx } => {
                    hvc(&mut w, H::HostCreateVcpu, &[handle(&handles, vm), idx])[0]
                }
                Op::Load { cpu, vm, idx, page } => {
                    if cpus[cpu].is_some() {
                        continue;
                    }
                    let a = RunArgs {
                        handle: handle(&handles, vm),
                        vcpu: idx,
                        run_pfn: page,
                    };
                    let mut l = Box::new(Loaded::empty());
                    match w.host.mem_mut().vcpu_load_into(a, 4, &mut w.hw, &mut l) {
                        Ok(()) => {
                            cpus[cpu] = Some(l);
                            0
                        }
                        Err(e) => e.to_x0(),
                    }
                }
                Op::Put { cpu } => {
                    let Some(mut l) = cpus[cpu].take() else {
                        continue;
                    };
                    // Whatever ran on the other CPU meanwhile, the page the
                    // exit goes into is still KServ's and pinned.
                    let run = w.host.mem().owners().get(Pfn::of(l.run_page));
                    prop_assert!(
                        run.is_some_and(PageState::is_pinned),
                        "step {step}: the put would write into {:#x}, which is {run:?}",
                        l.run_page.raw()
                    );
                    w.host.mem_mut().vcpu_put(&mut l, &mut w.hw);
                    0
                }
            };
        if r != 0 {
            prop_assert!(
                snapshot(&w) == before,
                "step {step}: refused {op:?} ({}) changed the ownership table",
                r as i64
            );
        }
        if let Err(e) = check_invariants(&w) {
            return Err(TestCaseError::fail(format!(
                "step {step}, after {op:?} -> {}: {e}",
                r as i64
            )));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, failure_persistence: None, .. ProptestConfig::default() })]

    #[test]
    fn random_hypercall_sequences_keep_the_invariants(ops in proptest::collection::vec(op(), 1..40)) {
        run(ops)?;
    }
}
