//! The test VM image of KServ's `vmisolation` test: a few pages of
//! deterministic bytes (not a whole number of pages, so KCore's hashing of
//! a partial last page is exercised) and its Ed25519 signature made with
//! the build's signing key (`build/keys/vm-signing.key`, the key whose public
//! half the boot image carries). Both land in `build/kserv/` and in KServ's
//! initramfs as `/lib/kserv/vm-test.img` and `/lib/kserv/vm-test.img.sig`;
//! `kserv_selftest.ko`'s `vm_selftest` loads the image into a protected VM
//! and has KCore verify it (and a copy with one flipped byte, which must
//! fail).

use super::keys;
use crate::cmd;
use crate::{paths, sign};
use anyhow::Result;

/// Length of the test image: three pages and a bit. At most the 64 KiB the
/// self-test takes (`kserv-selftest`'s `vm_selftest::MAX_IMAGE_LEN`).
pub const LEN: usize = 3 * 4096 + 1234;

/// The start of the image, so it is recognisable in a dump.
const MAGIC: &[u8] = b"KCORE-VM-TEST-IMAGE v1\n";

/// The test image and its signature.
pub struct VmImage {
    /// The image.
    pub image: Vec<u8>,
    /// Its signature block: the 64-byte signature and the signed MMIO manifest.
    pub signature: Vec<u8>,
}

/// The image's bytes: [`MAGIC`], then a xorshift64 stream from a fixed seed.
pub fn bytes() -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    let mut x: u64 = 0x4b43_6f72_6556_4d31;
    while out.len() < LEN {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(LEN);
    out
}

/// Signs the image with the build's secret key and writes both to
/// `build/kserv/`; prints one step line.
pub fn build() -> Result<VmImage> {
    let pair = keys::load_secret(&keys::secret_path())?;
    let image = bytes();
    let signature = sign::sign(&pair, &image, &sign::default_manifest())?;
    let dir = paths::build_dir().join("kserv");
    let image_path = dir.join("vm-test.img");
    let sig_path = dir.join("vm-test.img.sig");
    let changed = cmd::write_if_changed(&image_path, &image)?;
    let sig_changed = cmd::write_if_changed(&sig_path, &signature)?;
    cmd::step(
        "vm image",
        format!(
            "{} ({} bytes) signed with {}{}",
            cmd::show(&image_path),
            image.len(),
            cmd::show(&keys::secret_path()),
            cmd::changed_note(changed || sig_changed)
        ),
    );
    Ok(VmImage { image, signature })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_compact::{KeyPair, Seed};

    #[test]
    fn deterministic_and_not_whole_pages() {
        let a = bytes();
        assert_eq!(a, bytes());
        assert_eq!(a.len(), LEN);
        assert_ne!(a.len() % 4096, 0);
        assert!(a.len() <= 64 * 1024);
        assert!(a.starts_with(MAGIC));
        // Not a constant fill: the flipped-byte check means something.
        assert!(a[4096..].windows(2).filter(|w| w[0] == w[1]).count() < 200);
    }

    #[test]
    fn signature_verifies_and_a_flipped_last_byte_does_not() {
        let pair = KeyPair::from_seed(Seed::new([3; 32]));
        let image = bytes();
        let block = sign::sign(&pair, &image, &sign::default_manifest()).unwrap();
        let sig = ed25519_compact::Signature::new(block[..64].try_into().unwrap());
        let message = [&image[..], &block[64..]].concat();
        assert!(pair.pk.verify(&message, &sig).is_ok());
        let mut tampered = message.clone();
        tampered[image.len() - 1] ^= 1;
        assert!(pair.pk.verify(&tampered, &sig).is_err());
    }
}
