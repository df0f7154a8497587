//! `host_verify_image`: a protected VM runs only from an image whose bytes,
//! in pages the VM owns, carry a good signature by the boot image's key. A
//! malformed request changes nothing; a bad signature poisons the VM; the
//! image pages cannot change hands afterwards.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on an unexpected error"
)]

mod common;

use common::{FIRST_HOST_PFN, World, check_invariants, hvc, world};
use ed25519_compact::{KeyPair, Seed};
use kcore::image::VerifyKey;
use kcore::vm::{VmId, VmState};
use kcore_abi::{Error, HypercallId as H, vm_flags};

const IMAGE_LEN: usize = 3 * 4096 + 100;
const IMAGE_PFN: u64 = FIRST_HOST_PFN + 32;
const SIG_PFN: u64 = FIRST_HOST_PFN + 60;
const GFN: u64 = 0x80;

fn image() -> Vec<u8> {
    (0..IMAGE_LEN).map(|i| (i * 7 + i / 4096) as u8).collect()
}

struct Setup {
    w: World,
    vm: u64,
}

/// A protected VM whose image KServ wrote into its own pages, donated them
/// at GFN.., and put `sig` (signed over `signed`) into a page of its own.
fn setup(flags: u64, signed: &[u8]) -> Setup {
    let mut w = world();
    let kp = KeyPair::from_seed(Seed::new([9; 32]));
    w.host
        .mem_mut()
        .set_verify_key(VerifyKey::new(*kp.pk).unwrap());
    let vm = hvc(&mut w, H::HostCreateVm, &[flags, 0, 1, FIRST_HOST_PFN, 8]);
    assert_eq!(vm[0], 0);
    let img = image();
    w.hw.write(IMAGE_PFN << 12, &img);
    for i in 0..4 {
        assert_eq!(
            hvc(&mut w, H::HostDonateGuest, &[vm[1], IMAGE_PFN + i, GFN + i])[0],
            0
        );
    }
    let sig = kp.sk.sign(signed, None);
    w.hw.write(SIG_PFN << 12, sig.as_ref());
    Setup { w, vm: vm[1] }
}

fn verify(s: &mut Setup, gfn: u64, len: usize) -> u64 {
    hvc(
        &mut s.w,
        H::HostVerifyImage,
        &[s.vm, gfn, len as u64, SIG_PFN],
    )[0]
}

fn state(s: &Setup) -> VmState {
    s.w.host.mem().vms().get(VmId(0)).unwrap().state
}

#[test]
fn a_good_signature_makes_the_vm_runnable() {
    let mut s = setup(vm_flags::PROTECTED, &image());
    assert_eq!(verify(&mut s, GFN, IMAGE_LEN), 0);
    assert_eq!(state(&s), VmState::Verified);
    assert_eq!(
        s.w.host
            .mem()
            .vms()
            .get(VmId(0))
            .unwrap()
            .image
            .map(|(g, l)| (g.0, l)),
        Some((GFN, IMAGE_LEN as u64))
    );
    // Verified once: never again, and its pages stay the VM's.
    assert_eq!(verify(&mut s, GFN, IMAGE_LEN), Error::Denied.to_x0());
    assert_eq!(
        hvc(&mut s.w, H::HostReclaimPage, &[s.vm, IMAGE_PFN])[0],
        Error::Busy.to_x0()
    );
    assert_eq!(
        hvc(&mut s.w, H::HostDonateGuest, &[s.vm, IMAGE_PFN, GFN + 10])[0],
        Error::Denied.to_x0()
    );
    check_invariants(&s.w).unwrap();
}

#[test]
fn one_flipped_byte_poisons_the_vm() {
    let mut img = image();
    img[4096] ^= 1; // KServ signed (or tampered with) other bytes than it donated
    let mut s = setup(vm_flags::PROTECTED, &img);
    assert_eq!(
        verify(&mut s, GFN, IMAGE_LEN),
        Error::VerificationFailed.to_x0()
    );
    assert_eq!(state(&s), VmState::Poisoned);
    // A poisoned VM takes nothing more and is never verified; teardown works.
    assert_eq!(verify(&mut s, GFN, IMAGE_LEN), Error::Denied.to_x0());
    assert_eq!(
        hvc(
            &mut s.w,
            H::HostDonateGuest,
            &[s.vm, FIRST_HOST_PFN + 40, 1]
        )[0],
        Error::Denied.to_x0()
    );
    assert_eq!(hvc(&mut s.w, H::HostTeardownVm, &[s.vm])[0], 0);
    check_invariants(&s.w).unwrap();
}

#[test]
fn malformed_requests_change_nothing() {
    let mut s = setup(vm_flags::PROTECTED, &image());
    let before: Vec<_> = s.w.host.mem().owners().iter().collect();
    // Zero or huge length; a range running past the donated pages; a range
    // starting elsewhere; beyond the IPA space.
    assert_eq!(verify(&mut s, GFN, 0), Error::InvalidParameter.to_x0());
    assert_eq!(
        verify(&mut s, GFN, 2 << 30),
        Error::InvalidParameter.to_x0()
    );
    assert_eq!(verify(&mut s, GFN, 4 * 4096 + 1), Error::Denied.to_x0());
    assert_eq!(verify(&mut s, GFN + 10, 4096), Error::Denied.to_x0());
    assert_eq!(
        verify(&mut s, u64::MAX, 4096),
        Error::InvalidParameter.to_x0()
    );
    // The signature must come from a page of KServ's own.
    assert_eq!(
        hvc(
            &mut s.w,
            H::HostVerifyImage,
            &[s.vm, GFN, IMAGE_LEN as u64, IMAGE_PFN]
        )[0],
        Error::Denied.to_x0()
    );
    assert_eq!(
        hvc(
            &mut s.w,
            H::HostVerifyImage,
            &[s.vm, GFN, IMAGE_LEN as u64, 0x9000]
        )[0],
        Error::InvalidParameter.to_x0()
    );
    assert_eq!(
        hvc(
            &mut s.w,
            H::HostVerifyImage,
            &[s.vm + 1, GFN, IMAGE_LEN as u64, SIG_PFN]
        )[0],
        Error::NotFound.to_x0()
    );
    assert_eq!(state(&s), VmState::Created);
    assert_eq!(s.w.host.mem().owners().iter().collect::<Vec<_>>(), before);
    // Still verifiable afterwards.
    assert_eq!(verify(&mut s, GFN, IMAGE_LEN), 0);
}

#[test]
fn image_pages_shared_back_with_kserv_are_refused() {
    let mut s = setup(vm_flags::PROTECTED, &image());
    let t =
        s.w.host
            .mem()
            .check_guest_share_host(VmId(0), GFN + 2, &s.w.hw)
            .unwrap();
    s.w.host.mem_mut().commit_guest_share_host(t);
    // KServ could write that page: it cannot be part of a verified image.
    assert_eq!(verify(&mut s, GFN, IMAGE_LEN), Error::Denied.to_x0());
    assert_eq!(state(&s), VmState::Created);
}

#[test]
fn non_protected_vms_and_missing_keys_are_refused() {
    let mut s = setup(0, &image());
    assert_eq!(verify(&mut s, GFN, IMAGE_LEN), Error::Denied.to_x0());
    let mut w = world();
    let vm = hvc(
        &mut w,
        H::HostCreateVm,
        &[vm_flags::PROTECTED, 0, 1, FIRST_HOST_PFN, 4],
    )[1];
    assert_eq!(
        hvc(&mut w, H::HostVerifyImage, &[vm, 0, 4096, SIG_PFN])[0],
        Error::NotSupported.to_x0()
    );
}
