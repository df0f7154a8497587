//! `cargo xtask sign-image`: the detached signature block of a VM image.
//!
//! Signs the exact bytes of `IMAGE` followed by the VM's MMIO manifest
//! (`kcore_abi::manifest`: where KServ may emulate devices; `--mmio`, by
//! default the low 1 GiB this project's VMMs use) with a secret key made by
//! `cargo xtask build` (`build/keys/vm-signing.key` unless `--key` names
//! another), using pure Ed25519 as RFC 8032 defines it (deterministic: the
//! same image, manifest and key always give the same signature; not
//! Ed25519ph), checks the signature against the key's public half, and
//! writes the block — the signature's 64 bytes (`R || S`), then the encoded
//! manifest — to `IMAGE.sig` or to `-o`. KCore checks it with
//! `kcore::image::verify_with_tail` once the image's pages belong to the VM.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use ed25519_compact::KeyPair;
use kcore::image::{MAX_IMAGE_LEN, SIGNATURE_LEN};
use kcore_abi::manifest::{self, Manifest};

use crate::build::keys;
use crate::cmd;

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
    /// Where to write the signature block [default: IMAGE.sig].
    #[arg(short, long, value_name = "SIG")]
    output: Option<PathBuf>,
    /// A guest-physical range KServ may emulate as MMIO, `GPA:SIZE` (hex,
    /// page aligned); repeat for more, in ascending order [default: the low
    /// 1 GiB, `0x0:0x40000000`, where this project's VMMs put devices].
    /// `--mmio none` signs an empty manifest: the VM gets no MMIO.
    #[arg(long, value_name = "GPA:SIZE")]
    mmio: Vec<String>,
}

/// The manifest `--mmio` describes.
fn parse_mmio(args: &[String]) -> Result<Manifest> {
    if args.is_empty() {
        return Manifest::new(&[manifest::LOW_DEVICE_SPACE])
            .map_err(|e| anyhow!("the default manifest: {e:?}"));
    }
    if args == ["none"] {
        return Ok(Manifest::default());
    }
    let hex = |s: &str| u64::from_str_radix(s.trim_start_matches("0x"), 16);
    let mut ranges = Vec::new();
    for a in args {
        let (gpa, size) = a
            .split_once(':')
            .ok_or_else(|| anyhow!("--mmio {a}: not GPA:SIZE"))?;
        let (gpa, size) = (
            hex(gpa).with_context(|| format!("--mmio {a}: bad GPA"))?,
            hex(size).with_context(|| format!("--mmio {a}: bad size"))?,
        );
        if gpa % 4096 != 0 || size % 4096 != 0 {
            bail!("--mmio {a}: not page aligned");
        }
        ranges.push((gpa >> 12, size >> 12));
    }
    Manifest::new(&ranges).map_err(|e| anyhow!("--mmio {}: {e:?}", args.join(" ")))
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
    let mmio = parse_mmio(&args.mmio)?;
    let image =
        fs::read(&args.image).with_context(|| format!("cannot read {}", args.image.display()))?;
    let signature = sign(&pair, &image, &mmio)
        .with_context(|| format!("cannot sign {}", args.image.display()))?;
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

/// The signature block of `image` with `mmio`: the pure Ed25519 signature
/// of the image's bytes followed by the encoded manifest, checked before it
/// is returned, then the encoded manifest. Refuses what KCore would refuse
/// to verify: an empty image or one larger than [`MAX_IMAGE_LEN`].
pub fn sign(pair: &KeyPair, image: &[u8], mmio: &Manifest) -> Result<Vec<u8>> {
    if image.is_empty() {
        bail!("the image is empty (KCore verifies no empty image)");
    }
    if image.len() as u64 > MAX_IMAGE_LEN {
        bail!(
            "the image is {} bytes, more than the {MAX_IMAGE_LEN} KCore verifies",
            image.len()
        );
    }
    let mut tail = [0u8; manifest::MAX_LEN];
    let n = mmio
        .encode(&mut tail)
        .ok_or_else(|| anyhow!("the manifest does not encode"))?;
    let message = [image, &tail[..n]].concat();
    let signature = pair.sk.sign(&message, None);
    pair.pk
        .verify(&message, &signature)
        .map_err(|e| anyhow!("the new signature does not verify: {e}"))?;
    let mut block = Vec::with_capacity(SIGNATURE_LEN + n);
    block.extend_from_slice(&signature[..]);
    block.extend_from_slice(&tail[..n]);
    Ok(block)
}

/// What the build signs its images with: the low 1 GiB of device space.
pub fn default_manifest() -> Manifest {
    parse_mmio(&[]).unwrap_or_default()
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
    use kcore::image::{ImageError, Signature, VerifyKey, pages_needed, verify_with_tail};
    use kcore_arch::host_memory::FakeMachine;

    /// Places `image` in pages at descending addresses, as a VM's pages might
    /// be, and runs KCore's verification over them and the block's manifest
    /// (decoded as KCore decodes it).
    fn kcore_verify(public: [u8; 32], block: &[u8], image: &[u8]) -> Result<(), ImageError> {
        let key = VerifyKey::new(public)?;
        let sig: [u8; 64] = block[..64].try_into().unwrap();
        let (_, n_tail) = Manifest::decode(&block[64..]).unwrap();
        let n = pages_needed(image.len() as u64);
        let pages: Vec<Pa> = (0..n).map(|i| Pa(0x9000_0000 - i * PAGE_SIZE)).collect();
        let mut mem = FakeMachine::new();
        for (page, chunk) in pages.iter().zip(image.chunks(PAGE_SIZE as usize)) {
            mem.write(*page, chunk);
        }
        let tail = &block[64..64 + n_tail];
        verify_with_tail(&key, &Signature(sig), pages, image.len() as u64, tail, &mem)
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
            mmio: vec![],
        })
        .unwrap();
        let sig = fs::read(d.join("guest.img.sig")).unwrap();
        assert_eq!(
            sig.len(),
            64 + 16 + 16,
            "signature and a one-range manifest"
        );
        assert_eq!(
            Manifest::decode(&sig[64..]).unwrap().0.ranges(),
            [manifest::LOW_DEVICE_SPACE]
        );
        assert_eq!(kcore_verify(public, &sig, &image), Ok(()));
        // The manifest is signed: another one in its place does not verify.
        let mut widened = sig.clone();
        widened[64 + 16 + 8..].copy_from_slice(&0x8_0000u64.to_le_bytes());
        assert_eq!(
            kcore_verify(public, &widened, &image),
            Err(ImageError::Mismatch)
        );

        // Deterministic: signing again, to another file, gives the same bytes.
        let other = d.join("other.sig");
        main(SignArgs {
            key: Some(keys_dir.join(keys::SECRET_FILE)),
            image: image_path.clone(),
            output: Some(other.clone()),
            mmio: vec![],
        })
        .unwrap();
        assert_eq!(fs::read(&other).unwrap(), sig);
        // Explicit ranges, and none at all.
        main(SignArgs {
            key: Some(keys_dir.join(keys::SECRET_FILE)),
            image: image_path.clone(),
            output: Some(other.clone()),
            mmio: vec!["0x9000000:0x1000".into(), "0xa000000:0x4000".into()],
        })
        .unwrap();
        let two = fs::read(&other).unwrap();
        assert_eq!(
            Manifest::decode(&two[64..]).unwrap().0.ranges(),
            [(0x9000, 1), (0xa000, 4)]
        );
        assert_eq!(kcore_verify(public, &two, &image), Ok(()));
        main(SignArgs {
            key: Some(keys_dir.join(keys::SECRET_FILE)),
            image: image_path,
            output: Some(other.clone()),
            mmio: vec!["none".into()],
        })
        .unwrap();
        assert_eq!(fs::read(&other).unwrap().len(), 64 + 16);

        // A changed image or another key does not verify.
        let mut tampered = image.clone();
        tampered[4096] ^= 0x80;
        assert_eq!(
            kcore_verify(public, &sig, &tampered),
            Err(ImageError::Mismatch)
        );
        let (stranger, _) = keys::ensure_in(&d.join("other-keys")).unwrap();
        assert_eq!(
            kcore_verify(stranger, &sig, &image),
            Err(ImageError::Mismatch)
        );
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn refuses_what_kcore_would_refuse() {
        let pair = KeyPair::from_seed(ed25519_compact::Seed::new([9; 32]));
        let m = default_manifest();
        assert!(sign(&pair, &[], &m).is_err());
        assert!(sign(&pair, b"x", &m).is_ok());
        for bad in [
            "0x1000",
            "0x1001:0x1000",
            "0x0:0x1001",
            "0x2000:0x1000 0x0:0x1000",
        ] {
            let args: Vec<String> = bad.split(' ').map(String::from).collect();
            assert!(parse_mmio(&args).is_err(), "{bad}");
        }
        let d = scratch("sign-missing");
        let e = main(SignArgs {
            key: Some(d.join("no-such.key")),
            image: d.join("no-such.img"),
            output: None,
            mmio: vec![],
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
