//! Verification of a protected VM's boot image: pure Ed25519 (RFC 8032, not
//! Ed25519ph) over exactly the image's bytes, read page by page from the
//! physical pages that hold it.
//!
//! KCore calls [`verify`] once the pages are owned by the VM, so KServ can no
//! longer write them; the bytes checked are the bytes the VM will run. The
//! public key ([`VerifyKey`]) comes from the boot image (payload kind
//! `VmVerifyKey`, `docs/boot-image.md`) and is validated once, when KCore
//! copies it at boot. Nothing here allocates: the image (tens of MiB) is
//! streamed through a 512-byte stack buffer into the hash, one page at a time,
//! with [`PhysMemory::read`], whose reads never cross a page.
//!
//! The arithmetic comes from `ed25519-compact` (without default features). It
//! was chosen over `ed25519-dalek` because it has no dependencies at all (all
//! of the code added to KCore's trusted base is in one small crate), its field
//! and SHA-512 code are plain 64-bit integer Rust (no SIMD, no CPU feature
//! detection, no assembly; its one `unsafe` is a volatile write that wipes
//! secrets), so it builds unchanged for `aarch64-unknown-none-softfloat`, and
//! it verifies pure Ed25519 in a stream without allocating
//! (`PublicKey::verify_incremental`): `R` and `A` are absorbed first, so
//! `SHA-512(R || A || M)` takes `M` in pieces. `ed25519-dalek` 3 has a stream
//! verifier too, but pulls in `curve25519-dalek`, `sha2` (whose aarch64 back
//! end looks for the SHA-512 instructions at run time), `subtle` and
//! `ed25519`. The check is strict: `S` must be canonical (`S < L`), `R` and
//! `A` must be canonical encodings of points of large order, and the equation
//! is RFC 8032's cofactored one (`[S]B - [k]A - R` has small order).
//!
//! Cost: SHA-512 dominates; the curve arithmetic at the end is a fixed cost
//! of roughly half a million instructions. Built for
//! `aarch64-unknown-none-softfloat` at `opt-level = "s"`, the compression
//! function is straight-line integer code of about 2,950 instructions per
//! 128-byte block (counted in its disassembly), i.e. about 23 instructions
//! per byte (0.043 bytes per instruction), so a 32 MiB image costs about
//! 0.8 * 10^9 instructions; copying through the stack buffer adds well
//! under one instruction per byte.

use core::fmt;

use ed25519_compact as ed;

use crate::addr::{PAGE_SIZE, Pa};
use crate::hw::PhysMemory;

/// Length of an Ed25519 public key.
pub const KEY_LEN: usize = 32;
/// Length of an Ed25519 signature (`R || S`).
pub const SIGNATURE_LEN: usize = 64;
/// The largest image [`verify`] accepts: 1 GiB, far above any kernel or
/// firmware a VM boots from, and small enough that the page count of an
/// image and the hash's bit length can never overflow.
pub const MAX_IMAGE_LEN: u64 = 1 << 30;
/// Bytes read from memory per [`PhysMemory::read`]: a page is hashed in
/// `PAGE_SIZE / CHUNK` pieces through a buffer on KCore's stack.
const CHUNK: usize = 512;

/// The buffer the image passes through.
#[repr(align(8))]
struct Chunk([u8; CHUNK]);

/// A validated Ed25519 public key: the canonical encoding of a curve point
/// that does not have small order. Only [`VerifyKey::new`] makes one.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct VerifyKey([u8; KEY_LEN]);

impl VerifyKey {
    /// Validates `bytes` as a public key: refuses encodings that are not
    /// canonical, that are not on the curve, and points of small order
    /// (including the identity), for which any signature would be forgeable.
    pub fn new(bytes: [u8; KEY_LEN]) -> Result<VerifyKey, ImageError> {
        ed::PublicKey::new(bytes)
            .validate()
            .map_err(|_| ImageError::BadKey)?;
        Ok(VerifyKey(bytes))
    }

    /// The 32 bytes of the key.
    pub const fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

impl fmt::Debug for VerifyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("VerifyKey(")?;
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        f.write_str(")")
    }
}

/// A detached Ed25519 signature, `R || S`, as KServ hands it over. Nothing
/// about it is trusted: [`verify`] checks its form before using it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Signature(pub [u8; SIGNATURE_LEN]);

/// Why an image, its signature or a key was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageError {
    /// The public key is not a canonical point of large order.
    BadKey,
    /// The signature is malformed: `S` is not below the group order, or `R`
    /// is not a canonical point of large order.
    BadSignature,
    /// The signature is well formed but does not match the image and key.
    Mismatch,
    /// An image of zero bytes.
    Empty,
    /// An image longer than [`MAX_IMAGE_LEN`].
    TooLarge {
        /// The length given.
        len: u64,
    },
    /// The page list ended before `len` bytes were read.
    ShortPageList {
        /// Pages `len` needs.
        needed: u64,
        /// Pages the list held.
        given: u64,
    },
    /// A page address that is not 4 KiB aligned.
    MisalignedPage {
        /// Its index in the page list.
        index: u64,
        /// The address.
        pa: Pa,
    },
}

impl fmt::Display for ImageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ImageError::BadKey => f.write_str(
                "the image verification key is not a canonical Ed25519 point of large order",
            ),
            ImageError::BadSignature => f.write_str(
                "the image signature is malformed (non-canonical S, or R not a valid point)",
            ),
            ImageError::Mismatch => {
                f.write_str("the image signature does not match the image and the key")
            }
            ImageError::Empty => f.write_str("the image is empty"),
            ImageError::TooLarge { len } => write!(
                f,
                "the image is {len:#x} bytes (at most {MAX_IMAGE_LEN:#x} allowed)"
            ),
            ImageError::ShortPageList { needed, given } => write!(
                f,
                "the image needs {needed} pages but only {given} were given"
            ),
            ImageError::MisalignedPage { index, pa } => {
                write!(f, "image page {index} at {pa} is not 4 KiB aligned")
            }
        }
    }
}

/// Pages an image of `len` bytes occupies.
pub const fn pages_needed(len: u64) -> u64 {
    len.div_ceil(PAGE_SIZE)
}

/// Checks `sig` against the first `len` bytes held by `pages`, in order, under
/// `key`: pure Ed25519 over exactly those bytes.
///
/// Page `i` holds bytes `[i * 4096, (i + 1) * 4096)` of the image; the bytes
/// of the last page past `len` are not covered (and not read). Pages past
/// the ones `len` needs are not taken from the iterator. Fails, without
/// reading memory, on `len == 0`, `len > MAX_IMAGE_LEN` and a malformed
/// signature; fails on a misaligned page address or a list that ends early.
///
/// The caller owns the policy: the pages must belong to the VM (KServ has
/// lost write access), be distinct, and be mapped in this order.
pub fn verify<M: PhysMemory + ?Sized>(
    key: &VerifyKey,
    sig: &Signature,
    pages: impl IntoIterator<Item = Pa>,
    len: u64,
    mem: &M,
) -> Result<(), ImageError> {
    verify_with_tail(key, sig, pages, len, &[], mem)
}

/// [`verify`] of the image's bytes followed by `tail` (KCore's own copy of
/// the signed MMIO manifest, `kcore_abi::manifest`): one signature over
/// both, so neither can be swapped.
pub fn verify_with_tail<M: PhysMemory + ?Sized>(
    key: &VerifyKey,
    sig: &Signature,
    pages: impl IntoIterator<Item = Pa>,
    len: u64,
    tail: &[u8],
    mem: &M,
) -> Result<(), ImageError> {
    if len == 0 {
        return Err(ImageError::Empty);
    }
    if len > MAX_IMAGE_LEN {
        return Err(ImageError::TooLarge { len });
    }
    let needed = pages_needed(len);
    let mut state = ed::PublicKey::new(key.0)
        .verify_incremental(&ed::Signature::new(sig.0))
        .map_err(from_ed)?;
    let mut pages = pages.into_iter();
    // Word-aligned, so the platform can copy the image a word at a time.
    let mut buf = Chunk([0u8; CHUNK]);
    let buf = &mut buf.0;
    let mut remaining = len;
    let mut index = 0;
    while remaining > 0 {
        let Some(page) = pages.next() else {
            return Err(ImageError::ShortPageList {
                needed,
                given: index,
            });
        };
        if !page.is_aligned(PAGE_SIZE) {
            return Err(ImageError::MisalignedPage { index, pa: page });
        }
        let in_page = remaining.min(PAGE_SIZE);
        let mut offset = 0;
        while offset < in_page {
            let n = (in_page - offset).min(CHUNK as u64);
            let chunk = &mut buf[..n as usize];
            // `page` is aligned and `offset < PAGE_SIZE`: OR cannot overflow,
            // and the read stays inside the page.
            mem.read(Pa(page.raw() | offset), chunk);
            state.absorb(&*chunk);
            offset += n;
        }
        remaining -= in_page;
        index += 1;
    }
    state.absorb(tail);
    state.verify().map_err(from_ed)
}

/// Maps the crate's errors onto ours.
fn from_ed(e: ed::Error) -> ImageError {
    match e {
        ed::Error::SignatureMismatch => ImageError::Mismatch,
        ed::Error::InvalidPublicKey | ed::Error::WeakPublicKey => ImageError::BadKey,
        _ => ImageError::BadSignature,
    }
}
