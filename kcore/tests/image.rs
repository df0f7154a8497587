//! VM image verification over the host double's physical memory: a signature
//! made by the crate's signing side over random multi-page data verifies when
//! read back from scattered pages, and fails for every class of damage (a
//! flipped first byte, a byte on each side of a page boundary, the last byte,
//! any signature byte, a key byte), for a short page list, zero length, a
//! huge length, misaligned pages and malformed signatures, all without
//! panicking.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on an unexpected error"
)]

use ed25519_compact::{KeyPair, Seed};
use kcore::addr::{PAGE_SIZE, Pa};
use kcore::hw::PhysMemory;
use kcore::image::{ImageError, MAX_IMAGE_LEN, Signature, VerifyKey, pages_needed, verify};
use kcore_arch::host_memory::FakeMachine;

/// A small deterministic generator (xorshift64*), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

fn keypair(seed: u8) -> KeyPair {
    KeyPair::from_seed(Seed::new([seed; 32]))
}

/// An image laid out in memory as a VM's pages would be: deliberately not
/// contiguous and not in address order.
struct Placed {
    mem: FakeMachine,
    pages: Vec<Pa>,
    image: Vec<u8>,
}

fn place(image: Vec<u8>) -> Placed {
    let n = pages_needed(image.len() as u64);
    // Page i goes to a scattered frame; the map i -> 7i+3 mod 97 is
    // injective for n <= 97.
    let pages: Vec<Pa> = (0..n)
        .map(|i| Pa(0x8000_0000 + ((i * 7 + 3) % 97) * PAGE_SIZE))
        .collect();
    let mut mem = FakeMachine::new();
    for (i, chunk) in image.chunks(PAGE_SIZE as usize).enumerate() {
        mem.write(pages[i], chunk);
    }
    Placed { mem, pages, image }
}

fn sign(kp: &KeyPair, image: &[u8]) -> Signature {
    Signature(*kp.sk.sign(image, None))
}

fn key(kp: &KeyPair) -> VerifyKey {
    VerifyKey::new(*kp.pk).unwrap()
}

fn check(p: &Placed, key: &VerifyKey, sig: &Signature) -> Result<(), ImageError> {
    verify(
        key,
        sig,
        p.pages.iter().copied(),
        p.image.len() as u64,
        &p.mem,
    )
}

/// Flips one bit of image byte `at` in memory.
fn flip(p: &mut Placed, at: usize) {
    let page = p.pages[at / PAGE_SIZE as usize];
    let pa = Pa(page.raw() + (at as u64 % PAGE_SIZE));
    let mut b = [0u8];
    p.mem.read(pa, &mut b);
    p.mem.write(pa, &[b[0] ^ 0x10]);
}

#[test]
fn a_signed_multi_page_image_verifies() {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let kp = keypair(1);
    // Whole pages, a partial last page, one byte, exactly one page.
    for len in [5 * 4096, 3 * 4096 + 1234, 1, 4096, 4095, 4097, 40_000] {
        let p = place(rng.bytes(len));
        let sig = sign(&kp, &p.image);
        assert_eq!(check(&p, &key(&kp), &sig), Ok(()), "len {len}");
        // The signature is the standard one: the crate's one-shot verifier
        // agrees.
        assert!(
            kp.pk
                .verify(&p.image, &ed25519_compact::Signature::new(sig.0))
                .is_ok()
        );
    }
}

#[test]
fn bytes_past_the_end_are_not_covered_and_extra_pages_are_not_used() {
    let mut rng = Rng(7);
    let kp = keypair(2);
    let mut p = place(rng.bytes(2 * 4096 + 100));
    let sig = sign(&kp, &p.image);
    // Junk after the image in its last page, and more pages in the list.
    let last = *p.pages.last().unwrap();
    p.mem.write(Pa(last.raw() + 100), &[0xAA; 200]);
    p.pages.push(Pa(0x1000));
    p.pages.push(Pa(0x1001));
    assert_eq!(check(&p, &key(&kp), &sig), Ok(()));
}

#[test]
fn every_class_of_flipped_byte_fails() {
    let mut rng = Rng(0xfeed);
    let kp = keypair(3);
    let image = rng.bytes(4 * 4096 + 777);
    let len = image.len();
    let sig = sign(&kp, &image);
    let k = key(&kp);
    let page = PAGE_SIZE as usize;
    for at in [0, page - 1, page, 2 * page - 1, 2 * page, len / 2, len - 1] {
        let mut p = place(image.clone());
        flip(&mut p, at);
        assert_eq!(
            check(&p, &k, &sig),
            Err(ImageError::Mismatch),
            "image byte {at}"
        );
    }
    let p = place(image.clone());
    assert_eq!(check(&p, &k, &sig), Ok(()));
    for at in 0..64 {
        let mut bad = sig;
        bad.0[at] ^= 0x01;
        let r = check(&p, &k, &bad);
        // A flipped R byte can make R undecodable (malformed), a flipped S
        // byte can make S non-canonical; either way it must not verify.
        assert!(
            matches!(r, Err(ImageError::Mismatch | ImageError::BadSignature)),
            "signature byte {at}: {r:?}"
        );
    }
    for at in [0, 13, 31] {
        let mut bytes = *kp.pk;
        bytes[at] ^= 0x01;
        // Not every 32-byte string is a point; when it is, it is the wrong key.
        match VerifyKey::new(bytes) {
            Ok(other) => assert_eq!(
                check(&p, &other, &sig),
                Err(ImageError::Mismatch),
                "key byte {at}"
            ),
            Err(e) => assert_eq!(e, ImageError::BadKey),
        }
    }
    // Another key pair's valid key.
    assert_eq!(
        check(&p, &key(&keypair(4)), &sig),
        Err(ImageError::Mismatch)
    );
}

#[test]
fn a_wrong_length_fails() {
    let mut rng = Rng(99);
    let kp = keypair(5);
    let p = place(rng.bytes(3 * 4096));
    let sig = sign(&kp, &p.image);
    let k = key(&kp);
    for len in [3 * 4096 - 1, 2 * 4096, 1] {
        assert_eq!(
            verify(&k, &sig, p.pages.iter().copied(), len, &p.mem),
            Err(ImageError::Mismatch),
            "len {len}"
        );
    }
}

#[test]
fn a_short_page_list_fails() {
    let mut rng = Rng(3);
    let kp = keypair(6);
    let p = place(rng.bytes(3 * 4096 + 1));
    let sig = sign(&kp, &p.image);
    let k = key(&kp);
    let len = p.image.len() as u64;
    for given in 0..4 {
        assert_eq!(
            verify(&k, &sig, p.pages[..given].iter().copied(), len, &p.mem),
            Err(ImageError::ShortPageList {
                needed: 4,
                given: given as u64
            })
        );
    }
}

#[test]
fn zero_and_huge_lengths_fail_cleanly() {
    let kp = keypair(7);
    let k = key(&kp);
    let mem = FakeMachine::new();
    let sig = sign(&kp, b"");
    // Even a valid signature of the empty message is refused.
    assert_eq!(
        verify(&k, &sig, [Pa(0x1000)], 0, &mem),
        Err(ImageError::Empty)
    );
    for len in [MAX_IMAGE_LEN + 1, u64::MAX - 4095, u64::MAX] {
        assert_eq!(
            verify(&k, &sig, core::iter::repeat(Pa(0x1000)), len, &mem),
            Err(ImageError::TooLarge { len })
        );
    }
    // The largest length passes the size check and fails on the pages.
    assert_eq!(
        verify(&k, &sig, [Pa(0x1000)], MAX_IMAGE_LEN, &mem),
        Err(ImageError::ShortPageList {
            needed: MAX_IMAGE_LEN / PAGE_SIZE,
            given: 1
        })
    );
}

#[test]
fn misaligned_pages_fail() {
    let mut rng = Rng(11);
    let kp = keypair(8);
    let mut p = place(rng.bytes(2 * 4096));
    let sig = sign(&kp, &p.image);
    p.pages[1] = Pa(p.pages[1].raw() + 8);
    assert_eq!(
        check(&p, &key(&kp), &sig),
        Err(ImageError::MisalignedPage {
            index: 1,
            pa: p.pages[1]
        })
    );
    // An address at the top of the address space is refused, not wrapped.
    assert_eq!(
        verify(&key(&kp), &sig, [Pa(u64::MAX)], 10, &p.mem),
        Err(ImageError::MisalignedPage {
            index: 0,
            pa: Pa(u64::MAX)
        })
    );
}

/// The group order L, little-endian.
const L: [u8; 32] = [
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
];

/// `a + b` for 256-bit little-endian numbers (no overflow in these tests).
fn add(a: &[u8; 32], b: &[u8; 32]) -> [u8; 32] {
    let mut out = [0u8; 32];
    let mut carry = 0u16;
    for i in 0..32 {
        let s = u16::from(a[i]) + u16::from(b[i]) + carry;
        out[i] = s as u8;
        carry = s >> 8;
    }
    out
}

#[test]
fn malformed_signatures_fail() {
    let mut rng = Rng(17);
    let kp = keypair(9);
    let p = place(rng.bytes(4096 + 5));
    let sig = sign(&kp, &p.image);
    let k = key(&kp);
    assert_eq!(check(&p, &k, &sig), Ok(()));
    // S + L is the same scalar mod L, so only the canonicity check can refuse
    // it: the malleability RFC 8032 forbids.
    let mut s = [0u8; 32];
    s.copy_from_slice(&sig.0[32..]);
    let mut malleated = sig;
    malleated.0[32..].copy_from_slice(&add(&s, &L));
    assert_eq!(check(&p, &k, &malleated), Err(ImageError::BadSignature));
    // S = L, S all ones.
    for bad_s in [L, [0xff; 32]] {
        let mut bad = sig;
        bad.0[32..].copy_from_slice(&bad_s);
        assert_eq!(check(&p, &k, &bad), Err(ImageError::BadSignature));
    }
    // R that is not a canonical point: y = p = 2^255 - 19, and the identity
    // (small order).
    let mut not_canonical = [0xff; 32];
    not_canonical[0] = 0xed;
    not_canonical[31] = 0x7f;
    let mut identity = [0u8; 32];
    identity[0] = 1;
    for bad_r in [not_canonical, identity] {
        let mut bad = sig;
        bad.0[..32].copy_from_slice(&bad_r);
        assert_eq!(check(&p, &k, &bad), Err(ImageError::BadSignature));
    }
    assert_eq!(
        check(&p, &k, &Signature([0; 64])),
        Err(ImageError::BadSignature)
    );
}

#[test]
fn weak_and_invalid_keys_are_refused() {
    // The identity, the all-zero string (a point of order 4), a
    // non-canonical y, and y = 2 (not on the curve).
    let mut identity = [0u8; 32];
    identity[0] = 1;
    let mut not_canonical = [0xff; 32];
    not_canonical[31] = 0x7f;
    let mut off_curve = [0u8; 32];
    off_curve[0] = 2;
    for bytes in [identity, [0; 32], not_canonical, off_curve] {
        assert_eq!(
            VerifyKey::new(bytes),
            Err(ImageError::BadKey),
            "{bytes:02x?}"
        );
    }
    let kp = keypair(10);
    assert_eq!(key(&kp).as_bytes(), &*kp.pk);
}

#[test]
fn rfc8032_test_vector_2() {
    // RFC 8032, section 7.1, TEST 2: a one-byte message.
    let pk = hex("3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c");
    let sig = hex(concat!(
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da",
        "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"
    ));
    let p = place(vec![0x72]);
    let k = VerifyKey::new(pk.try_into().unwrap()).unwrap();
    let sig = Signature(sig.try_into().unwrap());
    assert_eq!(check(&p, &k, &sig), Ok(()));
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn every_error_has_a_message() {
    let errors = [
        ImageError::BadKey,
        ImageError::BadSignature,
        ImageError::Mismatch,
        ImageError::Empty,
        ImageError::TooLarge { len: 1 << 40 },
        ImageError::ShortPageList {
            needed: 3,
            given: 1,
        },
        ImageError::MisalignedPage {
            index: 2,
            pa: Pa(0x1008),
        },
    ];
    for e in errors {
        let msg = format!("{e}");
        assert!(msg.len() > 10 && !msg.ends_with('\n'), "{e:?}: {msg:?}");
    }
    let k = key(&keypair(11));
    assert!(format!("{k:?}").starts_with("VerifyKey("));
}

#[test]
fn the_fake_memory_reads_what_was_written_and_scrubs() {
    let mut mem = FakeMachine::new();
    mem.write(Pa(0x1ffe), &[1, 2, 3, 4]);
    let mut b = [0u8; 2];
    mem.read(Pa(0x1ffe), &mut b);
    assert_eq!(b, [1, 2]);
    mem.read(Pa(0x2000), &mut b);
    assert_eq!(b, [3, 4]);
    mem.read(Pa(0x9000), &mut b);
    assert_eq!(b, [0, 0], "unwritten memory reads as zero");
    mem.scrub_page(Pa(0x2000));
    mem.read(Pa(0x2000), &mut b);
    assert_eq!(b, [0, 0]);
    assert_eq!(mem.scrubbed(), &[Pa(0x2000)]);
}
