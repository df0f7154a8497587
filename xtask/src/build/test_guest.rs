//! The test guest of KServ's `kvmapi` test: `kcore-test-guest` (`tests/guest`)
//! built for `aarch64-unknown-none`, flattened with `objcopy -O binary` into
//! the image a vCPU enters at its first byte (`RAM_BASE`), and signed with the
//! build's key (`build/keys/vm-signing.key`, whose public half the boot image
//! carries). Beside them goes the list of the guest's tests, one name per
//! line in the order it reports them (`kcore_test_guest::TESTS`), which the
//! KServ test checks its console lines against. All three land in
//! `build/kserv/` and in KServ's initramfs as `/lib/kserv/test-guest.img`,
//! `test-guest.img.sig` and `test-guest.tests`; `kserv-tools kvmapi` runs
//! the image through `/dev/kvm`, in a non-protected and a protected VM.

use super::{cargo, keys};
use crate::cmd;
use crate::{paths, sign};
use anyhow::{Context, Result, bail};
use kcore_abi::manifest::{self, Manifest};
use std::fs;
use std::process::Command;

/// The guest's target: bare metal, FP/SIMD allowed (the guest checks that
/// its FP/SIMD registers survive exits).
pub const TARGET: &str = "aarch64-unknown-none";
/// The package and its binary.
const PACKAGE: &str = "kcore-test-guest";
/// Longest image the build accepts: the guest is a few pages, and a flat
/// image past this would mean its link went wrong.
pub const MAX_LEN: usize = 64 * 1024;

/// The signed guest image and its test list.
pub struct TestGuest {
    /// The flat image.
    pub image: Vec<u8>,
    /// Its signature block: the 64-byte signature and the signed MMIO manifest.
    pub signature: Vec<u8>,
    /// The signature block of the `kvmbench-vm` benchmark's protected VM:
    /// its manifest also offers the page past the VM's RAM as MMIO, where
    /// the touch program's last store ends the run.
    pub touch_signature: Vec<u8>,
    /// The names of its tests, one per line.
    pub tests: String,
}

/// `kcore_test_guest::TESTS`, one name per line.
pub fn test_list() -> String {
    kcore_test_guest::TESTS
        .iter()
        .map(|t| format!("{t}\n"))
        .collect()
}

/// Builds, flattens and signs the guest and writes it to `build/kserv/`;
/// prints one step line.
pub fn build() -> Result<TestGuest> {
    let elf = cargo::build(PACKAGE, &["--bin", PACKAGE], TARGET, PACKAGE, "bin")?
        .into_iter()
        .next()
        .context("no kcore-test-guest executable")?;
    let dir = paths::build_dir().join("kserv");
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let image_path = dir.join("test-guest.img");
    let tmp = image_path.with_extension("img.objcopy~");
    cmd::run(
        Command::new("aarch64-linux-gnu-objcopy")
            .args(["-O", "binary"])
            .arg(&elf)
            .arg(&tmp),
    )?;
    let image = fs::read(&tmp).with_context(|| format!("cannot read {}", tmp.display()))?;
    fs::remove_file(&tmp).ok();
    if image.is_empty() || image.len() > MAX_LEN {
        bail!(
            "{} flattens to {} bytes; the build takes 1..={MAX_LEN}",
            elf.display(),
            image.len()
        );
    }
    let pair = keys::load_secret(&keys::secret_path())?;
    let signature = sign::sign(&pair, &image, &sign::default_manifest())?;
    let end = kcore_test_guest::touch::end_of_ram(kcore_test_guest::touch::BENCH_MIB) >> 12;
    let touch_manifest = Manifest::new(&[manifest::LOW_DEVICE_SPACE, (end, 1)])
        .map_err(|e| anyhow::anyhow!("the touch benchmark's manifest: {e:?}"))?;
    let touch_signature = sign::sign(&pair, &image, &touch_manifest)?;
    let tests = test_list();
    let sig_path = dir.join("test-guest.img.sig");
    let tests_path = dir.join("test-guest.tests");
    let changed = cmd::write_if_changed(&image_path, &image)?;
    let sig_changed = cmd::write_if_changed(&sig_path, &signature)?
        | cmd::write_if_changed(&dir.join("test-guest.touch.sig"), &touch_signature)?;
    let tests_changed = cmd::write_if_changed(&tests_path, tests.as_bytes())?;
    cmd::step(
        "test guest",
        format!(
            "{} ({} bytes, {} tests) signed with {}{}",
            cmd::show(&image_path),
            image.len(),
            kcore_test_guest::TESTS.len(),
            cmd::show(&keys::secret_path()),
            cmd::changed_note(changed || sig_changed || tests_changed)
        ),
    );
    Ok(TestGuest {
        image,
        signature,
        touch_signature,
        tests,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_test_list_is_the_guests_in_order() {
        let list = test_list();
        let names: Vec<&str> = list.lines().collect();
        assert_eq!(names, kcore_test_guest::TESTS);
        assert!(list.ends_with('\n'));
        assert!(names.iter().all(|n| !n.is_empty() && !n.contains(' ')));
    }
}
