//! `cargo xtask sign-image`: the detached Ed25519 signature of a VM image.
//!
//! Signs the exact bytes of `IMAGE` with a secret key made by `cargo xtask
//! build` (`build/keys/vm-signing.key` unless `--key` names another), using
//! pure Ed25519 as RFC 8032 defines it (deterministic: the same image and key
//! always give the same signature; not Ed25519ph), checks the signature
//! against the key's public half, and writes its 64 bytes (`R || S`) to
//! `IMAGE.sig` or to `-o`. KCore checks it with `kcore::image::verify` once
//! the image's pages belong to the VM.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use ed25519_compact::KeyPair;
use kcore::image::{MAX_IMAGE_LEN, SIGNATURE_LEN};

use crate::build::{cmd, keys};

/// Arguments of `cargo xtask sign-image`.
#[derive(clap::Args, Debug)]
pub struct SignArgs {
    /// The secret key: a raw 32-byte Ed25519 seed, mode 0600
    /// [default: build/keys/vm-signing.key].
    #[arg(long, value_name = "KEY")]
    key: Option<PathBuf>,
    /// The image, exactly as the VM will load it.
    #[arg(value_name = "IMAGE")]
    image: PathBuf,
    /// Where to write the 64-byte signature [default: IMAGE.sig].
    #[arg(short, long, value_name = "SIG")]
    output: Option<PathBuf>,
}

/// Runs `cargo xtask sign-image`.
pub fn main(args: SignArgs) -> Result<()> {
    let key = match args.key {
        Some(key) => key,
        None => {
            let key = keys::secret_path();
            if !key.exists() {
                bail!(
                    "no signing key at {}: `cargo xtask build` makes one on its first run \
                     (or name one with --key)",
                    key.display()
                );
            }
            key
        }
    };
    let pair = keys::load_secret(&key)?;
    let image =
        fs::read(&args.image).with_context(|| format!("cannot read {}", args.image.display()))?;
    let signature =
        sign(&pair, &image).with_context(|| format!("cannot sign {}", args.image.display()))?;
    let out = args.output.unwrap_or_else(|| signature_path(&args.image));
    fs::write(&out, signature).with_context(|| format!("cannot write {}", out.display()))?;
    cmd::step(
        "signature",
        format!(
            "{} ({} bytes of {}, key {})",
            cmd::show(&out),
            image.len(),
            cmd::show(&args.image),
            keys::hex(&pair.pk[..])
        ),
    );
    Ok(())
}

/// The pure Ed25519 signature of `image`, checked before it is returned.
/// Refuses what KCore would refuse to verify: an empty image or one larger
/// than [`MAX_IMAGE_LEN`].
pub fn sign(pair: &KeyPair, image: &[u8]) -> Result<[u8; SIGNATURE_LEN]> {
    if image.is_empty() {
        bail!("the image is empty (KCore verifies no empty image)");
    }
    if image.len() as u64 > MAX_IMAGE_LEN {
        bail!(
            "the image is {} bytes, more than the {MAX_IMAGE_LEN} KCore verifies",
            image.len()
        );
    }
    let signature = pair.sk.sign(image, None);
    pair.pk
        .verify(image, &signature)
        .map_err(|e| anyhow!("the new signature does not verify: {e}"))?;
    Ok(*signature)
}

/// `IMAGE.sig`.
fn signature_path(image: &Path) -> PathBuf {
    let mut s = OsString::from(image.as_os_str());
    s.push(".sig");
    PathBuf::from(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::keys::tests::scratch;
    use kcore::addr::{PAGE_SIZE, Pa};
    use kcore::image::{ImageError, Signature, VerifyKey, pages_needed, verify};
    use kcore_arch::host_machine::FakeMachine;

    /// Places `image` in pages at descending addresses, as a VM's pages might
    /// be, and runs KCore's verification over them.
    fn kcore_verify(public: [u8; 32], sig: [u8; 64], image: &[u8]) -> Result<(), ImageError> {
        let key = VerifyKey::new(public)?;
        let n = pages_needed(image.len() as u64);
        let pages: Vec<Pa> = (0..n).map(|i| Pa(0x9000_0000 - i * PAGE_SIZE)).collect();
        let mut mem = FakeMachine::new();
        for (page, chunk) in pages.iter().zip(image.chunks(PAGE_SIZE as usize)) {
            mem.write(*page, chunk);
        }
        verify(&key, &Signature(sig), pages, image.len() as u64, &mem)
    }

    #[test]
    fn sign_image_then_kcore_verifies() {
        let d = scratch("sign");
        let keys_dir = d.join("keys");
        let (public, _) = keys::ensure_in(&keys_dir).unwrap();
        let image: Vec<u8> = (0..3 * 4096 + 321u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let image_path = d.join("guest.img");
        fs::write(&image_path, &image).unwrap();

        main(SignArgs {
            key: Some(keys_dir.join(keys::SECRET_FILE)),
            image: image_path.clone(),
            output: None,
        })
        .unwrap();
        let sig: [u8; 64] = fs::read(d.join("guest.img.sig"))
            .unwrap()
            .try_into()
            .unwrap();
        assert_eq!(kcore_verify(public, sig, &image), Ok(()));

        // Deterministic: signing again, to another file, gives the same bytes.
        let other = d.join("other.sig");
        main(SignArgs {
            key: Some(keys_dir.join(keys::SECRET_FILE)),
            image: image_path,
            output: Some(other.clone()),
        })
        .unwrap();
        assert_eq!(fs::read(other).unwrap(), sig);

        // A changed image or another key does not verify.
        let mut tampered = image.clone();
        tampered[4096] ^= 0x80;
        assert_eq!(
            kcore_verify(public, sig, &tampered),
            Err(ImageError::Mismatch)
        );
        let (stranger, _) = keys::ensure_in(&d.join("other-keys")).unwrap();
        assert_eq!(
            kcore_verify(stranger, sig, &image),
            Err(ImageError::Mismatch)
        );
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn refuses_what_kcore_would_refuse() {
        let pair = KeyPair::from_seed(ed25519_compact::Seed::new([9; 32]));
        assert!(sign(&pair, &[]).is_err());
        assert!(sign(&pair, b"x").is_ok());
        let d = scratch("sign-missing");
        let e = main(SignArgs {
            key: Some(d.join("no-such.key")),
            image: d.join("no-such.img"),
            output: None,
        })
        .unwrap_err();
        assert!(format!("{e:#}").contains("no-such.key"), "{e:#}");
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn signature_goes_beside_the_image() {
        assert_eq!(
            signature_path(Path::new("build/guest/Image")),
            PathBuf::from("build/guest/Image.sig")
        );
    }
}
