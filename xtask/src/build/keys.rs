//! The Ed25519 key pair that signs protected VMs' images.
//!
//! On its first run `cargo xtask build` generates the pair in `build/keys/`
//! (ignored by git, like all of `build/`): `vm-signing.key`, the 32-byte
//! RFC 8032 secret seed drawn from the operating system's random source
//! (`getrandom`), created with mode 0600 in a 0700 directory, and
//! `vm-signing.pub`, the 32-byte public key. Both files hold raw bytes. The
//! packer puts the public key into the boot image (payload kind
//! `VmVerifyKey`, `docs/boot-image.md`); `cargo xtask sign-image` signs with
//! the secret one. An existing key is never replaced: a public key that does
//! not match the secret one, or a public key whose secret is gone, stops the
//! build rather than silently re-keying (images signed before would no longer
//! boot).

use std::fs;
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use ed25519_compact::{KeyPair, Seed};

use crate::cmd;
use crate::paths;

/// File name of the secret key (the seed).
pub const SECRET_FILE: &str = "vm-signing.key";
/// File name of the public key.
pub const PUBLIC_FILE: &str = "vm-signing.pub";
/// Length of the seed and of the public key.
const KEY_LEN: usize = 32;

/// `build/keys/`.
pub fn dir() -> PathBuf {
    paths::build_dir().join("keys")
}

/// `build/keys/vm-signing.key`.
pub fn secret_path() -> PathBuf {
    dir().join(SECRET_FILE)
}

/// The public key of `build/keys/`, generating the pair first if there is
/// none; prints one step line.
pub fn ensure() -> Result<[u8; KEY_LEN]> {
    let dir = dir();
    let (public, made) = ensure_in(&dir)?;
    let note = match made {
        Made::Nothing => " (unchanged)",
        Made::Pair => " (new key pair)",
        Made::Public => " (public key rewritten from the secret key)",
    };
    cmd::step(
        "keys",
        format!(
            "{} {}{note}",
            cmd::show(&dir.join(PUBLIC_FILE)),
            hex(&public)
        ),
    );
    Ok(public)
}

/// What [`ensure_in`] had to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Made {
    /// Both files were there and agree.
    Nothing,
    /// A new key pair.
    Pair,
    /// The public key, derived again from the secret one.
    Public,
}

/// [`ensure`] for the key files in `dir`.
pub fn ensure_in(dir: &Path) -> Result<([u8; KEY_LEN], Made)> {
    let secret = dir.join(SECRET_FILE);
    let public = dir.join(PUBLIC_FILE);
    let exists = |p: &Path| {
        p.try_exists()
            .with_context(|| format!("cannot look for {}", p.display()))
    };
    match (exists(&secret)?, exists(&public)?) {
        (true, true) => {
            let pair = load_secret(&secret)?;
            let stored = read_key(&public)?;
            if stored != *pair.pk {
                bail!(
                    "{} ({}) is not the public key of {} ({}): restore the matching files, \
                     or delete both to generate a new pair",
                    public.display(),
                    hex(&stored),
                    secret.display(),
                    hex(&pair.pk[..])
                );
            }
            Ok((stored, Made::Nothing))
        }
        (true, false) => {
            let pair = load_secret(&secret)?;
            cmd::write_if_changed(&public, &pair.pk[..])?;
            Ok((*pair.pk, Made::Public))
        }
        (false, false) => {
            let (pair, made) = match generate(dir)? {
                Some(pair) => (pair, Made::Pair),
                // Another build made the secret key first: use theirs.
                None => (load_secret(&secret)?, Made::Public),
            };
            cmd::write_if_changed(&public, &pair.pk[..])?;
            Ok((*pair.pk, made))
        }
        (false, true) => bail!(
            "{} exists but its secret key {} does not: nothing can be signed for it any more; \
             restore the secret key, or delete {} to generate a new pair",
            public.display(),
            secret.display(),
            public.display()
        ),
    }
}

/// Draws a seed from the OS and writes it to `dir/vm-signing.key` (mode
/// 0600); `None` if that file has appeared meanwhile (it is never replaced).
fn generate(dir: &Path) -> Result<Option<KeyPair>> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let mut seed = [0u8; KEY_LEN];
    getrandom::fill(&mut seed)
        .map_err(|e| anyhow!("cannot draw a key seed from the operating system: {e}"))?;
    // An all-zero seed (probability 2^-256) means the random source is broken.
    let pair = KeyPair::try_from_seed(Seed::new(seed))
        .map_err(|e| anyhow!("the random source gave an unusable seed: {e}"))?;
    let path = dir.join(SECRET_FILE);
    let mut file = match fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
    {
        Ok(file) => file,
        Err(e) if e.kind() == ErrorKind::AlreadyExists => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot create {}", path.display())),
    };
    file.write_all(&seed)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(Some(pair))
}

/// Reads a secret key file: exactly 32 bytes (the seed), readable by its
/// owner only.
pub fn load_secret(path: &Path) -> Result<KeyPair> {
    let mode = fs::metadata(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        bail!(
            "{} is accessible to other users (mode {:o}): a signing key must be private \
             (chmod 600 {})",
            path.display(),
            mode & 0o777,
            path.display()
        );
    }
    let seed = read_key(path)?;
    KeyPair::try_from_seed(Seed::new(seed))
        .map_err(|e| anyhow!("{} is not a usable Ed25519 seed: {e}", path.display()))
}

/// Reads a file of exactly 32 bytes.
fn read_key(path: &Path) -> Result<[u8; KEY_LEN]> {
    let bytes = fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    <[u8; KEY_LEN]>::try_from(bytes.as_slice()).map_err(|_| {
        anyhow!(
            "{} holds {} bytes, not the {KEY_LEN} of a raw Ed25519 key",
            path.display(),
            bytes.len()
        )
    })
}

/// Lower-case hex of `bytes`, for messages.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A fresh, empty directory under the system's temporary directory.
    pub(crate) fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("xtask-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn first_run_generates_later_runs_reuse() {
        let d = scratch("keys-gen").join("keys");
        let (public, made) = ensure_in(&d).unwrap();
        assert_eq!(made, Made::Pair);
        assert_eq!(mode(&d.join(SECRET_FILE)), 0o600);
        assert_eq!(mode(&d), 0o700);
        assert_eq!(fs::read(d.join(SECRET_FILE)).unwrap().len(), 32);
        assert_eq!(fs::read(d.join(PUBLIC_FILE)).unwrap(), public);
        let pair = load_secret(&d.join(SECRET_FILE)).unwrap();
        assert_eq!(*pair.pk, public);
        assert_eq!(ensure_in(&d).unwrap(), (public, Made::Nothing));
        // A lost public key is derived again from the secret one.
        fs::remove_file(d.join(PUBLIC_FILE)).unwrap();
        assert_eq!(ensure_in(&d).unwrap(), (public, Made::Public));
        // Two directories get two different keys.
        let other = scratch("keys-gen2");
        assert_ne!(ensure_in(&other).unwrap().0, public);
        fs::remove_dir_all(d.parent().unwrap()).unwrap();
        fs::remove_dir_all(other).unwrap();
    }

    #[test]
    fn inconsistent_or_damaged_keys_stop_the_build() {
        let d = scratch("keys-bad");
        let (public, _) = ensure_in(&d).unwrap();
        let secret = d.join(SECRET_FILE);
        let pub_path = d.join(PUBLIC_FILE);

        let mut other = public;
        other[0] ^= 1;
        fs::write(&pub_path, other).unwrap();
        let e = ensure_in(&d).unwrap_err().to_string();
        assert!(e.contains("is not the public key"), "{e}");
        assert_eq!(fs::read(&pub_path).unwrap(), other, "nothing overwritten");

        fs::write(&pub_path, public).unwrap();
        fs::set_permissions(&secret, fs::Permissions::from_mode(0o644)).unwrap();
        let e = ensure_in(&d).unwrap_err().to_string();
        assert!(e.contains("accessible to other users"), "{e}");

        fs::set_permissions(&secret, fs::Permissions::from_mode(0o600)).unwrap();
        fs::write(&secret, [7u8; 31]).unwrap();
        let e = ensure_in(&d).unwrap_err().to_string();
        assert!(e.contains("31 bytes"), "{e}");

        fs::remove_file(&secret).unwrap();
        let e = ensure_in(&d).unwrap_err().to_string();
        assert!(e.contains("does not"), "{e}");
        assert_eq!(fs::read(&pub_path).unwrap(), public, "nothing overwritten");
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn hex_is_lower_case() {
        assert_eq!(hex(&[0x00, 0xab, 0x7f]), "00ab7f");
    }
}
