//! `host_verify_image`: a protected VM runs only from an image whose bytes,
//! in pages the VM owns, carry a good signature by the boot image's key. A
//! malformed request changes nothing; a bad signature poisons the VM; the
//! image pages cannot change hands afterwards. The signature also covers
//! the VM's MMIO manifest: KServ may declare MMIO only inside it, only after
//! verification, and may donate no memory there.

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
/// The manifest the image is signed with: a device page, a 16-page region.
const MMIO: [(u64, u64); 2] = [(0x10, 1), (0x9000, 16)];

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
    w.hw.write(SIG_PFN << 12, &common::signature_block(&kp, signed, &MMIO));
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

#[test]
fn mmio_only_where_the_signature_allows() {
    let mut s = setup(vm_flags::PROTECTED, &image());
    let declare = |s: &mut Setup, gfn: u64, pages: u64| {
        hvc(&mut s.w, H::HostDeclareMmio, &[s.vm, gfn, pages])[0]
    };
    // Before verification KServ declares nothing, even inside the manifest.
    assert_eq!(declare(&mut s, 0x9000, 1), Error::Denied.to_x0());
    assert_eq!(verify(&mut s, GFN, IMAGE_LEN), 0);
    // The guest's RAM (right after its image, or the image itself) never
    // becomes MMIO; nor does anything wider than the manifest.
    for (gfn, pages) in [(GFN + 4, 1), (GFN, 4), (0x9000, 17), (0x8fff, 2), (0x11, 1)] {
        assert_eq!(
            declare(&mut s, gfn, pages),
            Error::Denied.to_x0(),
            "{gfn:#x}+{pages}"
        );
    }
    // Narrowing is KServ's choice.
    assert_eq!(declare(&mut s, 0x9004, 4), 0);
    assert_eq!(declare(&mut s, 0x10, 1), 0);
    // No memory where devices are: declared or merely allowed.
    for gfn in [0x9005, 0x9000, 0x10] {
        assert_eq!(
            hvc(
                &mut s.w,
                H::HostDonateGuest,
                &[s.vm, FIRST_HOST_PFN + 40, gfn]
            )[0],
            Error::Denied.to_x0(),
            "{gfn:#x}"
        );
    }
    assert_eq!(
        hvc(
            &mut s.w,
            H::HostDonateGuest,
            &[s.vm, FIRST_HOST_PFN + 40, GFN + 4]
        )[0],
        0,
        "RAM takes memory"
    );
    check_invariants(&s.w).unwrap();
}

#[test]
fn the_manifest_is_signed_and_checked() {
    // Another manifest than the one signed: the signature fails.
    let mut s = setup(vm_flags::PROTECTED, &image());
    let mut block = s.w.hw.bytes(SIG_PFN << 12, 64 + 16 + 32);
    block[64 + 16 + 16 + 8] = 0xff; // the second range's page count
    s.w.hw.write(SIG_PFN << 12, &block);
    assert_eq!(
        verify(&mut s, GFN, IMAGE_LEN),
        Error::VerificationFailed.to_x0()
    );
    assert_eq!(state(&s), VmState::Poisoned);
    // A malformed manifest, or one over the image, changes nothing.
    for bad in [
        &b"XXXX"[..],                              // magic
        &[b'K', b'C', b'M', b'F', 2, 0, 0, 0][..], // version
    ] {
        let mut s = setup(vm_flags::PROTECTED, &image());
        s.w.hw.write((SIG_PFN << 12) + 64, bad);
        assert_eq!(
            verify(&mut s, GFN, IMAGE_LEN),
            Error::InvalidParameter.to_x0()
        );
        assert_eq!(state(&s), VmState::Created);
    }
    let mut s = setup(vm_flags::PROTECTED, &image());
    let kp = KeyPair::from_seed(Seed::new([9; 32]));
    let over_image = common::signature_block(&kp, &image(), &[(GFN + 2, 1)]);
    s.w.hw.write(SIG_PFN << 12, &over_image);
    assert_eq!(
        verify(&mut s, GFN, IMAGE_LEN),
        Error::InvalidParameter.to_x0()
    );
    assert_eq!(state(&s), VmState::Created);
    // An empty manifest: a VM with no MMIO at all.
    let none = common::signature_block(&kp, &image(), &[]);
    s.w.hw.write(SIG_PFN << 12, &none);
    assert_eq!(verify(&mut s, GFN, IMAGE_LEN), 0);
    assert_eq!(
        hvc(&mut s.w, H::HostDeclareMmio, &[s.vm, 0x9000, 1])[0],
        Error::Denied.to_x0()
    );
}
