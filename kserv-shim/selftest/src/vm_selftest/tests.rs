//! The self-test against a fake KCore that follows `docs/ownership.md` (or,
//! with a [`Bugs`] knob, breaks one promise), and a fake kernel that refuses
//! (panics) when the test touches a page KServ does not hold.

extern crate std;

use super::*;
use kcore_abi::HypercallId;
use std::collections::BTreeMap;
use std::string::String;
use std::vec::Vec;
use std::{format, vec};

/// The fake machine's RAM, in pfns.
const RAM: core::ops::Range<u64> = 0x4_0000..0x4_0100;
/// The fake boot image's verification key.
const KEY: u64 = 0x5eed;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum St {
    Host,
    Table(usize),
    Guest(usize, u64),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum VmSt {
    Created,
    Verified,
    Poisoned,
    Dying,
}

#[derive(Clone, Debug)]
struct FakeVm {
    handle: u64,
    protected: bool,
    state: VmSt,
    pages: u64,
    max_vcpus: u64,
    vcpus: u64,
}

/// Ways the fake KCore can break its promises.
#[derive(Clone, Copy, Debug, Default)]
struct Bugs {
    /// Reclaimed pages keep their contents.
    no_scrub: bool,
    /// Every signature verifies.
    accept_any_signature: bool,
    /// KServ keeps access to pages it gave away.
    host_keeps_access: bool,
    /// Pages can be reclaimed from live VMs.
    reclaim_live: bool,
    /// Reclaiming this pfn is refused.
    refuse_reclaim: Option<u64>,
    /// The boot image carries another key.
    wrong_key: bool,
    /// Donating this pfn works but answers with an undefined status.
    odd_status_for: Option<u64>,
    /// `HostCreateVm` is refused.
    refuse_create: bool,
    /// KServ's first access to a reclaimed page faults (a second works).
    first_touch_faults: bool,
    /// Reclaimed pages cannot be read at all.
    reclaimed_unreadable: bool,
}

struct Fake {
    pages: BTreeMap<u64, (St, Vec<u8>)>,
    vms: Vec<Option<FakeVm>>,
    generation: Vec<u64>,
    bugs: Bugs,
    log: Vec<String>,
    released: Vec<u64>,
    probes: Vec<(u64, Access)>,
    expected_faults: u32,
    /// Every page reclaimed so far.
    reclaimed: Vec<u64>,
    /// Reclaimed pages KServ has not accessed since (`first_touch_faults`).
    untouched: std::collections::BTreeSet<u64>,
}

fn fake_signature(key: u64, image: &[u8]) -> [u8; SIGNATURE_LEN] {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ key;
    for &b in image {
        h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
    }
    // The signature, then (zero-padded) what would be the manifest: the
    // fake KCore checks the first 64 bytes only.
    let mut sig = [0u8; SIGNATURE_LEN];
    sig[..64].fill(0x5a);
    sig[..8].copy_from_slice(&h.to_le_bytes());
    sig
}

impl Fake {
    fn new(bugs: Bugs) -> Self {
        Fake {
            pages: RAM
                .map(|p| (p, (St::Host, vec![0xee; PAGE_SIZE])))
                .collect(),
            vms: vec![None, None, None],
            generation: vec![1, 1, 1],
            bugs,
            log: Vec::new(),
            released: Vec::new(),
            probes: Vec::new(),
            expected_faults: 0,
            reclaimed: Vec::new(),
            untouched: std::collections::BTreeSet::new(),
        }
    }

    fn slot(&self, handle: u64) -> Result<usize, Error> {
        self.vms
            .iter()
            .position(|v| v.as_ref().is_some_and(|v| v.handle == handle))
            .ok_or(Error::NotFound)
    }

    fn state(&self, pfn: u64) -> Result<St, Error> {
        self.pages
            .get(&pfn)
            .map(|p| p.0)
            .ok_or(Error::InvalidParameter)
    }

    fn set(&mut self, pfn: u64, st: St) {
        if let Some(p) = self.pages.get_mut(&pfn) {
            p.0 = st;
        }
    }

    fn vm(&mut self, slot: usize) -> &mut FakeVm {
        self.vms[slot].as_mut().expect("live slot")
    }

    fn host_may_access(&self, pfn: u64) -> bool {
        if self.bugs.reclaimed_unreadable && self.was_reclaimed(pfn) {
            return false;
        }
        self.bugs.host_keeps_access || self.state(pfn) == Ok(St::Host)
    }

    fn was_reclaimed(&self, pfn: u64) -> bool {
        self.reclaimed.contains(&pfn)
    }

    fn hvc(&mut self, id: HypercallId, a: [u64; 6]) -> Result<[u64; 3], Error> {
        match id {
            HypercallId::Version => Ok([kcore_abi::abi_version(), 0b111, 0]),
            HypercallId::Features => Ok([0; 3]),
            HypercallId::HostCreateVm => {
                if self.bugs.refuse_create {
                    return Err(Error::Denied);
                }
                let [flags, ipa, vcpus, pool, n, _] = a;
                if flags & !vm_flags::ALL != 0 || ipa != 0 || vcpus == 0 || n < 2 || pool % 2 != 0 {
                    return Err(Error::InvalidParameter);
                }
                for p in pool..pool + n {
                    if self.state(p)? != St::Host {
                        return Err(Error::Denied);
                    }
                }
                let slot = self
                    .vms
                    .iter()
                    .position(Option::is_none)
                    .ok_or(Error::NoMemory)?;
                let handle = self.generation[slot] << 16 | (slot as u64 + 1);
                for p in pool..pool + n {
                    self.set(p, St::Table(slot));
                }
                self.vms[slot] = Some(FakeVm {
                    handle,
                    protected: flags & vm_flags::PROTECTED != 0,
                    state: VmSt::Created,
                    pages: n,
                    max_vcpus: vcpus,
                    vcpus: 0,
                });
                Ok([handle, 0, 0])
            }
            HypercallId::HostCreateVcpu => {
                let s = self.slot(a[0])?;
                let vm = self.vm(s);
                if a[1] >= vm.max_vcpus {
                    return Err(Error::InvalidParameter);
                }
                if vm.vcpus & 1 << a[1] != 0 {
                    return Err(Error::Busy);
                }
                vm.vcpus |= 1 << a[1];
                Ok([0; 3])
            }
            HypercallId::HostDonateVmPool => {
                let s = self.slot(a[0])?;
                if self.vm(s).state == VmSt::Dying {
                    return Err(Error::Denied);
                }
                if self.state(a[1])? != St::Host {
                    return Err(Error::Denied);
                }
                self.set(a[1], St::Table(s));
                self.vm(s).pages += 1;
                Ok([0; 3])
            }
            HypercallId::HostDonateGuest => {
                let s = self.slot(a[0])?;
                if matches!(self.vm(s).state, VmSt::Dying | VmSt::Poisoned) {
                    return Err(Error::Denied);
                }
                if self.state(a[1])? != St::Host {
                    return Err(Error::Denied);
                }
                if self.pages.values().any(|p| p.0 == St::Guest(s, a[2])) {
                    return Err(Error::Busy);
                }
                self.set(a[1], St::Guest(s, a[2]));
                self.vm(s).pages += 1;
                Ok([0; 3])
            }
            HypercallId::HostTeardownVm => {
                let s = self.slot(a[0])?;
                if self.vm(s).state == VmSt::Dying {
                    return Err(Error::Denied);
                }
                self.vm(s).state = VmSt::Dying;
                Ok([0; 3])
            }
            HypercallId::HostReclaimPage => {
                let s = self.slot(a[0])?;
                if self.vm(s).state != VmSt::Dying && !self.bugs.reclaim_live {
                    return Err(Error::Busy);
                }
                match self.state(a[1])? {
                    St::Table(v) | St::Guest(v, _) if v == s => {}
                    _ => return Err(Error::Denied),
                }
                if self.bugs.refuse_reclaim == Some(a[1]) {
                    return Err(Error::Denied);
                }
                let no_scrub = self.bugs.no_scrub;
                if let Some(p) = self.pages.get_mut(&a[1]) {
                    p.0 = St::Host;
                    if !no_scrub {
                        p.1.fill(0);
                    }
                }
                self.reclaimed.push(a[1]);
                self.untouched.insert(a[1]);
                self.vm(s).pages -= 1;
                if self.vm(s).pages == 0 {
                    self.vms[s] = None;
                    self.generation[s] += 1;
                }
                Ok([0; 3])
            }
            HypercallId::HostPageOwner => Ok(match self.state(a[0])? {
                St::Host => [PageOwner::Host as u64, 0, 0],
                St::Table(s) => [PageOwner::VmTable as u64, self.vm(s).handle, 0],
                St::Guest(s, g) => [PageOwner::Guest as u64, self.vm(s).handle, g],
            }),
            HypercallId::HostVerifyImage => {
                let [handle, gfn, len, sig_pfn, _, _] = a;
                let s = self.slot(handle)?;
                if !self.vm(s).protected || self.vm(s).state != VmSt::Created {
                    return Err(Error::Denied);
                }
                if len == 0 || len > 1 << 30 {
                    return Err(Error::InvalidParameter);
                }
                let mut image = Vec::new();
                for i in 0..len.div_ceil(PAGE_SIZE as u64) {
                    let page = self
                        .pages
                        .values()
                        .find(|p| p.0 == St::Guest(s, gfn + i))
                        .ok_or(Error::Denied)?;
                    image.extend_from_slice(&page.1);
                }
                image.truncate(len as usize);
                if self.state(sig_pfn)? != St::Host {
                    return Err(Error::Denied);
                }
                let sig = &self.pages[&sig_pfn].1[..64];
                let key = if self.bugs.wrong_key { KEY + 1 } else { KEY };
                if self.bugs.accept_any_signature || sig == &fake_signature(key, &image)[..64] {
                    self.vm(s).state = VmSt::Verified;
                    Ok([0; 3])
                } else {
                    self.vm(s).state = VmSt::Poisoned;
                    Err(Error::VerificationFailed)
                }
            }
            HypercallId::HostShareGuest | HypercallId::HostUnshareGuest => Err(Error::Denied),
            // The self-test never runs a vCPU.
            HypercallId::HostDeclareMmio
            | HypercallId::HostVcpuRun
            | HypercallId::HostVcpuGetReg
            | HypercallId::HostVcpuSetReg
            | HypercallId::HostSelfCheck
            | HypercallId::HostGuestIdReg
            | HypercallId::HostProtectGuest
            | HypercallId::HostUnprotectGuest
            | HypercallId::HostSetVgicCpu
            | HypercallId::HostSetGicFrames
            | HypercallId::HostReadGicTable => Err(Error::NotSupported),
        }
    }
}

impl Conduit for Fake {
    fn call(&mut self, regs: &mut [u64; 8]) {
        let args = [regs[1], regs[2], regs[3], regs[4], regs[5], regs[6]];
        let (r0, r) = match HypercallId::from_raw(regs[0]) {
            None => (Error::NotSupported.to_x0(), [0; 3]),
            Some(HypercallId::HostDonateGuest) if self.bugs.odd_status_for == Some(regs[2]) => {
                let _ = self.hvc(HypercallId::HostDonateGuest, args);
                (-1000i64 as u64, [0; 3])
            }
            Some(id) => match self.hvc(id, args) {
                Ok(r) => (0, r),
                Err(e) => (e.to_x0(), [0; 3]),
            },
        };
        regs[0] = r0;
        regs[1..4].copy_from_slice(&r);
    }
}

impl Env for Fake {
    fn write(&mut self, pfn: u64, offset: usize, data: &[u8]) {
        assert!(
            self.state(pfn) == Ok(St::Host)
                && self.host_may_access(pfn)
                && !(self.bugs.first_touch_faults && self.untouched.contains(&pfn)),
            "KServ wrote pfn {pfn:#x}, which is {:?}: an Oops outside a sacrificial thread",
            self.state(pfn)
        );
        let page = &mut self.pages.get_mut(&pfn).expect("RAM").1;
        page[offset..offset + data.len()].copy_from_slice(data);
    }

    fn read(&mut self, pfn: u64, offset: usize, buf: &mut [u8]) {
        assert!(
            self.state(pfn) == Ok(St::Host)
                && self.host_may_access(pfn)
                && !(self.bugs.first_touch_faults && self.untouched.contains(&pfn)),
            "KServ read pfn {pfn:#x}, which is {:?}: an Oops outside a sacrificial thread",
            self.state(pfn)
        );
        buf.copy_from_slice(&self.pages[&pfn].1[offset..offset + buf.len()]);
    }

    fn probe(&mut self, pfn: u64, access: Access, expect_fault: bool) -> Probe {
        self.probes.push((pfn, access));
        if expect_fault {
            self.expected_faults += 1;
        }
        if self.bugs.first_touch_faults && self.untouched.remove(&pfn) {
            return Probe::Faulted;
        }
        if !self.host_may_access(pfn) {
            return Probe::Faulted;
        }
        let page = &mut self.pages.get_mut(&pfn).expect("RAM").1;
        match access {
            Access::Read => {
                Probe::Completed(u64::from_le_bytes(page[..8].try_into().expect("8 bytes")))
            }
            Access::Write => {
                page[..8].copy_from_slice(&0x4b53_4552_5657_5254u64.to_le_bytes());
                Probe::Completed(0)
            }
        }
    }

    fn release(&mut self, pfn: u64) {
        assert_eq!(
            self.state(pfn),
            Ok(St::Host),
            "pfn {pfn:#x} freed to the kernel while KCore owns it"
        );
        assert!(!self.released.contains(&pfn), "pfn {pfn:#x} freed twice");
        self.released.push(pfn);
    }

    fn log(&mut self, line: &[u8]) {
        self.log
            .push(String::from_utf8(line.to_vec()).expect("ASCII line"));
    }
}

/// The pages a kernel would have allocated, and the image.
struct Pages {
    image: Vec<u8>,
    sig: [u8; SIGNATURE_LEN],
    image_a: Vec<u64>,
    image_b: Vec<u64>,
    mem: [u64; MEM_PAGES],
}

impl Pages {
    fn new(len: usize) -> Self {
        let image: Vec<u8> = (0..len).map(|i| (i * 7 + i / 4096) as u8).collect();
        let n = len.div_ceil(PAGE_SIZE) as u64;
        Pages {
            sig: fake_signature(KEY, &image),
            image,
            image_a: (0..n).map(|i| 0x4_0010 + i).collect(),
            image_b: (0..n).map(|i| 0x4_0020 + i).collect(),
            mem: [0x4_0030, 0x4_0031, 0x4_0032, 0x4_0033],
        }
    }

    fn setup(&self) -> Setup<'_> {
        Setup {
            pool_pages: POOL_PAGES,
            image: &self.image,
            signature: &self.sig,
            vms: [
                VmPages {
                    pool: 0x4_0000,
                    extra_pool: 0x4_0008,
                    image: &self.image_a,
                },
                VmPages {
                    pool: 0x4_0004,
                    extra_pool: 0x4_0009,
                    image: &self.image_b,
                },
            ],
            mem: &self.mem,
            sig_pfn: 0x4_0040,
        }
    }

    fn all(&self) -> Vec<u64> {
        let mut v: Vec<u64> = (0x4_0000..0x4_000a).collect();
        v.extend(&self.image_a);
        v.extend(&self.image_b);
        v.extend(self.mem);
        v.push(0x4_0040);
        v.sort_unstable();
        v
    }
}

const LEN: usize = 3 * PAGE_SIZE + 123;

fn run_with(bugs: Bugs) -> (Fake, Outcome, Pages) {
    let pages = Pages::new(LEN);
    let mut fake = Fake::new(bugs);
    let outcome = run(&mut fake, &pages.setup());
    (fake, outcome, pages)
}

/// `(step, passed)` of each logged step line, the `result` line left out.
fn steps(fake: &Fake) -> Vec<(String, bool)> {
    fake.log
        .iter()
        .filter(|l| !l.starts_with("result: "))
        .map(|l| {
            let (name, rest) = l.split_once(": ").expect("step: verdict");
            assert!(
                rest.starts_with("PASS ") || rest.starts_with("FAIL "),
                "{l}"
            );
            (String::from(name), rest.starts_with("PASS "))
        })
        .collect()
}

fn failed(fake: &Fake) -> Vec<String> {
    steps(fake)
        .into_iter()
        .filter(|s| !s.1)
        .map(|s| s.0)
        .collect()
}

fn line<'a>(fake: &'a Fake, step: &str) -> &'a str {
    fake.log
        .iter()
        .find(|l| l.starts_with(&format!("{step}: ")))
        .map_or("", |l| l.as_str())
}

fn released_sorted(fake: &Fake) -> Vec<u64> {
    let mut r = fake.released.clone();
    r.sort_unstable();
    r
}

#[test]
fn every_step_passes_against_a_faithful_kcore() {
    let (fake, outcome, pages) = run_with(Bugs::default());
    let names: Vec<String> = Step::ALL.iter().map(|s| String::from(s.name())).collect();
    let logged: Vec<String> = steps(&fake).into_iter().map(|s| s.0).collect();
    assert_eq!(logged, names, "{:#?}", fake.log);
    assert!(failed(&fake).is_empty(), "{:#?}", fake.log);
    assert_eq!(
        fake.log.last().map(String::as_str),
        Some("result: PASS all 17 steps passed")
    );
    assert_eq!(
        outcome,
        Outcome {
            passed: 17,
            failed: 0,
            released: pages.all().len() as u32,
            kept: 0
        }
    );
    assert_eq!(released_sorted(&fake), pages.all());
    assert!(fake.pages.values().all(|p| p.0 == St::Host));
    assert!(fake.vms.iter().all(Option::is_none), "slots freed");
    // The two accesses that must fault, then KServ's first read of each
    // reclaimed page.
    assert_eq!(
        fake.probes[..2],
        [(0x4_0030, Access::Read), (0x4_0010, Access::Write)]
    );
    assert_eq!(fake.expected_faults, 2);
    assert_eq!(fake.probes.len(), 2 + 22);
    assert!(fake.probes[2..].iter().all(|p| p.1 == Access::Read));
    // Scrubbed by KCore, and the details say what happened.
    assert!(fake.pages[&0x4_0030].1.iter().all(|&b| b == 0));
    assert_eq!(
        line(&fake, "verify_tampered"),
        "verify_tampered: PASS tampered image rejected: VerificationFailed"
    );
    assert_eq!(
        line(&fake, "load_tampered"),
        "load_tampered: PASS byte 0x307a flipped (0x59 -> 0x58), VM 0x10002"
    );
    assert_eq!(
        line(&fake, "reclaim"),
        "reclaim: PASS 12 memory/image and 10 table pages back, VM slots freed"
    );
    assert_eq!(
        line(&fake, "scrubbed"),
        "scrubbed: PASS 22 reclaimed pages Host and all zero"
    );
    assert_eq!(
        line(&fake, "version"),
        format!(
            "version: PASS KCore still answers ({}.{})",
            kcore_abi::ABI_VERSION_MAJOR,
            kcore_abi::ABI_VERSION_MINOR
        )
    );
}

#[test]
fn image_sizes_at_the_edges() {
    for len in [1, PAGE_SIZE, PAGE_SIZE + 1, MAX_IMAGE_LEN] {
        let pages = Pages::new(len);
        let mut fake = Fake::new(Bugs::default());
        // Image pages of 16 each would overlap the other lists: move them.
        let image_b: Vec<u64> = (0..pages.image_a.len() as u64)
            .map(|i| 0x4_0050 + i)
            .collect();
        let mut setup = pages.setup();
        setup.vms[1].image = &image_b;
        let outcome = run(&mut fake, &setup);
        assert_eq!(outcome.failed, 0, "{len}: {:#?}", fake.log);
        assert_eq!(outcome.kept, 0);
    }
}

#[test]
fn a_kcore_that_does_not_scrub_is_caught() {
    let (fake, outcome, pages) = run_with(Bugs {
        no_scrub: true,
        ..Bugs::default()
    });
    assert_eq!(failed(&fake), ["scrubbed"], "{:#?}", fake.log);
    assert!(line(&fake, "scrubbed").contains("is 0x"), "{:#?}", fake.log);
    // The pages are KServ's all the same: they go back.
    assert_eq!(outcome.kept, 0);
    assert_eq!(released_sorted(&fake), pages.all());
    assert_eq!(
        fake.log.last().map(String::as_str),
        Some("result: FAIL 1 of 17 steps failed")
    );
}

#[test]
fn a_kcore_that_refuses_the_first_touch_of_a_reclaimed_page_is_caught() {
    let (fake, outcome, pages) = run_with(Bugs {
        first_touch_faults: true,
        ..Bugs::default()
    });
    assert_eq!(failed(&fake), ["scrubbed"], "{:#?}", fake.log);
    assert_eq!(
        line(&fake, "scrubbed"),
        "scrubbed: FAIL KServ's first read of reclaimed pfn 0x40000 faulted although KCore \
         reports it Host; a second read succeeded (22 of 22 pages)"
    );
    // Readable after all: they go back.
    assert_eq!(outcome.kept, 0);
    assert_eq!(released_sorted(&fake), pages.all());
}

#[test]
fn reclaimed_pages_kserv_cannot_read_are_kept() {
    let (fake, outcome, _) = run_with(Bugs {
        reclaimed_unreadable: true,
        ..Bugs::default()
    });
    assert_eq!(failed(&fake), ["scrubbed", "release"], "{:#?}", fake.log);
    assert!(
        line(&fake, "scrubbed").ends_with("KServ cannot read it: kept (22 of 22 pages)"),
        "{:#?}",
        fake.log
    );
    assert_eq!(outcome.kept, 22);
    assert!(fake.released.iter().all(|p| !fake.reclaimed.contains(p)));
}

#[test]
fn a_kcore_that_accepts_a_tampered_image_is_caught() {
    let (fake, _, _) = run_with(Bugs {
        accept_any_signature: true,
        ..Bugs::default()
    });
    assert_eq!(failed(&fake), ["verify_tampered"], "{:#?}", fake.log);
}

#[test]
fn a_signature_from_another_key_is_reported() {
    let (fake, outcome, _) = run_with(Bugs {
        wrong_key: true,
        ..Bugs::default()
    });
    assert_eq!(failed(&fake), ["verify_good"], "{:#?}", fake.log);
    assert!(line(&fake, "verify_good").contains("VerificationFailed (not signed"));
    assert_eq!(outcome.kept, 0);
}

#[test]
fn a_kcore_that_leaves_kserv_access_is_caught() {
    let (fake, _, _) = run_with(Bugs {
        host_keeps_access: true,
        ..Bugs::default()
    });
    assert_eq!(
        failed(&fake),
        ["read_donated", "write_verified"],
        "{:#?}",
        fake.log
    );
    assert!(line(&fake, "read_donated").contains("read 0x"));
}

#[test]
fn a_kcore_that_reclaims_from_a_live_vm_is_caught() {
    let (fake, outcome, pages) = run_with(Bugs {
        reclaim_live: true,
        ..Bugs::default()
    });
    assert_eq!(failed(&fake), ["reclaim_live"], "{:#?}", fake.log);
    // The page that came back early is neither reclaimed twice nor lost.
    assert_eq!(outcome.kept, 0);
    assert_eq!(released_sorted(&fake), pages.all());
}

#[test]
fn pages_kcore_keeps_are_never_freed() {
    let (fake, outcome, pages) = run_with(Bugs {
        refuse_reclaim: Some(0x4_0031),
        ..Bugs::default()
    });
    assert_eq!(failed(&fake), ["reclaim", "release"], "{:#?}", fake.log);
    assert_eq!(outcome.kept, 1);
    assert!(!fake.released.contains(&0x4_0031));
    assert_eq!(fake.released.len(), pages.all().len() - 1);
    assert!(
        line(&fake, "release").ends_with("1 kept (KCore may own them): 0x40031"),
        "{:#?}",
        fake.log
    );
    // VM A's slot lives on with that page, so it was not reported freed.
    assert!(line(&fake, "reclaim").contains("pfn 0x40031): Denied"));
}

#[test]
fn an_undefined_status_leaves_the_page_doubtful_but_not_lost() {
    let (fake, outcome, pages) = run_with(Bugs {
        odd_status_for: Some(0x4_0032),
        ..Bugs::default()
    });
    assert_eq!(failed(&fake), ["donate"], "{:#?}", fake.log);
    assert!(line(&fake, "donate").contains("unknown status 0xfffffffffffffc18"));
    // The page was donated after all: reclaimed with the rest, then freed.
    assert_eq!(outcome.kept, 0);
    assert_eq!(released_sorted(&fake), pages.all());
    assert!(fake.vms.iter().all(Option::is_none));
}

#[test]
fn a_refused_create_skips_what_depends_on_it() {
    let (fake, outcome, pages) = run_with(Bugs {
        refuse_create: true,
        ..Bugs::default()
    });
    let logged: Vec<(String, bool)> = steps(&fake);
    assert_eq!(
        logged,
        [
            (String::from("setup"), true),
            (String::from("create_vm"), false),
            (String::from("create_vm_b"), false),
            (String::from("release"), true),
            (String::from("version"), true),
        ]
    );
    assert!(line(&fake, "create_vm").ends_with("4 pages): Denied"));
    assert_eq!(outcome.kept, 0);
    assert_eq!(released_sorted(&fake), pages.all());
}

#[test]
fn a_bad_setup_changes_nothing_and_frees_everything() {
    let pages = Pages::new(LEN);
    let mut setup = pages.setup();
    setup.vms[1].pool = 0x4_0045; // not aligned to 4 pages
    let mut fake = Fake::new(Bugs::default());
    let outcome = run(&mut fake, &setup);
    assert_eq!(failed(&fake), ["setup"], "{:#?}", fake.log);
    assert!(line(&fake, "setup").contains("not aligned"));
    assert_eq!(outcome.released, pages.all().len() as u32);
    assert!(fake.pages.values().all(|p| p.0 == St::Host));

    // A page in two lists is refused, and freed once.
    let mut setup = pages.setup();
    let mem = [0x4_0030, 0x4_0031, 0x4_0032, 0x4_0010];
    setup.mem = &mem;
    let mut fake = Fake::new(Bugs::default());
    let outcome = run(&mut fake, &setup);
    assert_eq!(failed(&fake), ["setup"]);
    assert!(line(&fake, "setup").contains("listed twice"));
    assert_eq!(outcome.released, pages.all().len() as u32 - 1);

    let empty = Pages::new(0);
    let mut fake = Fake::new(Bugs::default());
    let outcome = run(&mut fake, &empty.setup());
    assert_eq!(failed(&fake), ["setup"]);
    assert!(line(&fake, "setup").contains("image of 0 bytes"));
    assert_eq!(outcome.kept, 0);

    // Another pool size: only the pages the kernel has are tracked.
    let mut setup = pages.setup();
    setup.pool_pages = 2;
    let mut fake = Fake::new(Bugs::default());
    let outcome = run(&mut fake, &setup);
    assert_eq!(failed(&fake), ["setup"]);
    assert!(line(&fake, "setup").contains("pools of 2 pages, the test needs 4"));
    assert_eq!(outcome.released, pages.all().len() as u32 - 4);
    assert!(!fake.released.contains(&0x4_0002) && !fake.released.contains(&0x4_0007));
}

#[test]
fn the_kserv_test_expects_every_step() {
    let script = include_str!("../../../initramfs/tests/vmisolation");
    let listed = script
        .lines()
        .find_map(|l| l.strip_prefix("steps=\""))
        .and_then(|l| l.strip_suffix('"'))
        .expect("a steps=\"...\" line in tests/vmisolation");
    let names: Vec<&str> = Step::ALL.iter().map(|s| s.name()).collect();
    assert_eq!(listed.split(' ').collect::<Vec<_>>(), names);
}
