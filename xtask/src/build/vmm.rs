//! `kcore-vmm` and the Linux guest it boots in KServ's `kvmguest` test.
//!
//! - `kcore-vmm` (`vmm/`) built for `aarch64-unknown-linux-musl` and
//!   stripped to `build/kserv/kcore-vmm`;
//! - the guest's initramfs `guest/initrd.cpio` in KServ's directory
//!   (`build/kserv/`, `build/kserv-6.12/`): Debian's static busybox,
//!   `vmm/guest/init` and Debian's `virtio_mmio`, `virtio_console` and
//!   `virtio_blk` modules, and the virtio-pci and virtio-net ones Debian's
//!   QEMU's devices need (all of the same kernel: the guest kernel is the
//!   `Image` KServ runs, so 6.12's image boots a 6.12 guest), those the
//!   kernel has built in left out and xz-compressed ones (6.12's)
//!   decompressed, as busybox's `insmod` takes them only plain;
//! - `guest/Image.sig`, the guest kernel's Ed25519 signature made
//!   with the build's key (`build/keys/vm-signing.key`) for `--protected`;
//! - `guest/expected`: the line the guest's `/init` must print
//!   for its workload, `KCORE-GUEST: checksum <sha512 of seq 1 N>`, computed
//!   here from the same data.
//!
//! [`crate::build::initramfs`] puts them into KServ's initramfs as
//! `/usr/bin/kcore-vmm` and `/lib/kserv/guest/{Image,Image.sig,initrd.cpio,
//! expected}`.

use super::cpio::{Entry, archive};
use super::{cargo, keys};
use crate::cmd;
use crate::fetch::Fetched;
use crate::{paths, sign};
use anyhow::{Context, Result, bail};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The VMM's target.
const TARGET: &str = "aarch64-unknown-linux-musl";
/// The package and its binary.
const PACKAGE: &str = "kcore-vmm";
/// `seq 1 SEQ_COUNT` is the guest's workload (`COUNT` in `vmm/guest/init`).
pub const SEQ_COUNT: u32 = 100_000;
/// The modules the guest loads, under the kernel's `lib/modules/<release>/`,
/// each with the configuration symbol that builds it in instead.
const MODULES: &[(&str, &str)] = &[
    ("kernel/drivers/virtio/virtio_mmio.ko", "CONFIG_VIRTIO_MMIO"),
    (
        "kernel/drivers/char/virtio_console.ko",
        "CONFIG_VIRTIO_CONSOLE",
    ),
    ("kernel/drivers/block/virtio_blk.ko", "CONFIG_VIRTIO_BLK"),
    // virtio-pci and virtio-net, for Debian's QEMU's `virt` machine (the
    // `debqemu` test), in the order they depend on each other.
    (
        "kernel/drivers/virtio/virtio_pci_legacy_dev.ko",
        "CONFIG_VIRTIO_PCI_LIB_LEGACY",
    ),
    (
        "kernel/drivers/virtio/virtio_pci_modern_dev.ko",
        "CONFIG_VIRTIO_PCI_LIB",
    ),
    ("kernel/drivers/virtio/virtio_pci.ko", "CONFIG_VIRTIO_PCI"),
    ("kernel/net/core/failover.ko", "CONFIG_FAILOVER"),
    ("kernel/drivers/net/net_failover.ko", "CONFIG_NET_FAILOVER"),
    ("kernel/drivers/net/virtio_net.ko", "CONFIG_VIRTIO_NET"),
];

/// What KServ's initramfs gets.
pub struct Guest {
    /// The stripped static VMM.
    pub vmm: PathBuf,
    /// The guest kernel (KServ's own `Image`).
    pub kernel: PathBuf,
    /// Its signature block: the 64-byte signature and the signed MMIO manifest.
    pub kernel_sig: Vec<u8>,
    /// The guest's initramfs.
    pub initrd: Vec<u8>,
    /// The checksum line the guest must print, with a newline.
    pub expected: String,
}

/// What `seq 1 count` prints.
pub fn seq_output(count: u32) -> String {
    (1..=count).map(|i| format!("{i}\n")).collect()
}

/// The line the guest prints for its workload.
pub fn expected_line(count: u32) -> String {
    let digest = ed25519_compact::sha512::Hash::hash(seq_output(count).as_bytes());
    format!("KCORE-GUEST: checksum {}", keys::hex(&digest))
}

fn read(path: &Path) -> Result<Vec<u8>> {
    fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

/// The kernel package's `lib/modules/<release>/`.
fn modules_dir(fetched: &Fetched) -> Result<PathBuf> {
    // `config` is `<extracted package>/boot/config-<release>`.
    Ok(fetched
        .config
        .parent()
        .and_then(Path::parent)
        .context("the kernel package's config has no parent directory")?
        .join("lib")
        .join("modules")
        .join(&fetched.release))
}

/// The `fetched` kernel's module `path` (under `lib/modules/<release>/`),
/// or `None` if its `config` builds it in (`symbol=y`).
pub fn kernel_module(fetched: &Fetched, path: &str, symbol: &str) -> Result<Option<Vec<u8>>> {
    let config = fs::read_to_string(&fetched.config)
        .with_context(|| format!("cannot read {}", fetched.config.display()))?;
    module_bytes(&modules_dir(fetched)?.join(path), &config, symbol)
}

/// The guest's initramfs.
fn initrd(fetched: &Fetched) -> Result<Vec<u8>> {
    let modules = modules_dir(fetched)?;
    let dir = |path: &str| Entry::Dir {
        path: path.into(),
        mode: 0o755,
    };
    let mut e: Vec<Entry> = [
        "bin",
        "sbin",
        "usr",
        "usr/bin",
        "usr/sbin",
        "dev",
        "proc",
        "sys",
        "lib",
        "lib/modules",
    ]
    .into_iter()
    .map(dir)
    .collect();
    e.push(Entry::CharDev {
        path: "dev/console".into(),
        mode: 0o600,
        major: 5,
        minor: 1,
    });
    e.push(Entry::File {
        path: "bin/busybox".into(),
        mode: 0o755,
        data: read(&fetched.busybox)?,
    });
    e.push(Entry::Symlink {
        path: "bin/sh".into(),
        target: "busybox".into(),
    });
    e.push(Entry::File {
        path: "init".into(),
        mode: 0o755,
        data: read(&paths::root().join("vmm").join("guest").join("init"))?,
    });
    let config = fs::read_to_string(&fetched.config)
        .with_context(|| format!("cannot read {}", fetched.config.display()))?;
    for &(m, symbol) in MODULES {
        let name = Path::new(m)
            .file_name()
            .context("module path without a name")?
            .to_string_lossy();
        let Some(data) = module_bytes(&modules.join(m), &config, symbol)? else {
            continue;
        };
        e.push(Entry::File {
            path: format!("lib/modules/{name}"),
            mode: 0o644,
            data,
        });
    }
    Ok(archive(&e))
}

/// The module at `path` (`<name>.ko`, or `<name>.ko.xz` decompressed), or
/// `None` if the kernel's `config` builds it in (`<symbol>=y`).
fn module_bytes(path: &Path, config: &str, symbol: &str) -> Result<Option<Vec<u8>>> {
    if path.is_file() {
        return read(path).map(Some);
    }
    let xz = path.with_extension("ko.xz");
    if xz.is_file() {
        let out = Command::new("xz")
            .args(["--decompress", "--stdout"])
            .arg(&xz)
            .output()
            .with_context(|| format!("cannot run xz on {}", xz.display()))?;
        if !out.status.success() {
            bail!(
                "xz --decompress {} failed: {}",
                xz.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        return Ok(Some(out.stdout));
    }
    if config.lines().any(|l| l == format!("{symbol}=y")) {
        return Ok(None);
    }
    bail!("the kernel has neither {} nor {symbol}=y", path.display())
}

/// Builds the VMM into `build/kserv/` and the guest's files for the fetched
/// kernel into `guest/` of KServ's directory of its series; prints one step
/// line. The signing key must exist ([`keys::ensure`]).
pub fn build(fetched: &Fetched) -> Result<Guest> {
    let exe = cargo::build(PACKAGE, &["--bin", PACKAGE], TARGET, PACKAGE, "bin")?
        .into_iter()
        .next()
        .context("no kcore-vmm executable")?;
    let kserv = paths::shared_kserv_dir();
    let guest_dir = paths::kserv_dir(fetched.series).join("guest");
    fs::create_dir_all(&guest_dir)
        .with_context(|| format!("cannot create {}", guest_dir.display()))?;
    let vmm = kserv.join("kcore-vmm");
    let tmp = vmm.with_extension("strip~");
    cmd::run(
        Command::new("aarch64-linux-gnu-strip")
            .arg("-o")
            .arg(&tmp)
            .arg(&exe),
    )?;
    let vmm_bytes = read(&tmp)?;
    fs::remove_file(&tmp).ok();
    let mut changed = cmd::write_if_changed(&vmm, &vmm_bytes)?;

    let initrd = initrd(fetched)?;
    changed |= cmd::write_if_changed(&guest_dir.join("initrd.cpio"), &initrd)?;
    let pair = keys::load_secret(&keys::secret_path())?;
    let kernel_sig = sign::sign(&pair, &read(&fetched.image)?, &sign::default_manifest())?;
    changed |= cmd::write_if_changed(&guest_dir.join("Image.sig"), &kernel_sig)?;
    let expected = format!("{}\n", expected_line(SEQ_COUNT));
    changed |= cmd::write_if_changed(&guest_dir.join("expected"), expected.as_bytes())?;
    cmd::step(
        "vmm",
        format!(
            "{} ({} KiB), guest {} initrd {} KiB, kernel signed with {}{}",
            cmd::show(&vmm),
            vmm_bytes.len() / 1024,
            fetched.release,
            initrd.len() / 1024,
            cmd::show(&keys::secret_path()),
            cmd::changed_note(changed)
        ),
    );
    Ok(Guest {
        vmm,
        kernel: fetched.image.clone(),
        kernel_sig,
        initrd,
        expected,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seq_as_busybox_prints_it() {
        assert_eq!(seq_output(3), "1\n2\n3\n");
        assert!(seq_output(SEQ_COUNT).ends_with("\n99999\n100000\n"));
    }

    #[test]
    fn expected_line_is_sha512_hex() {
        // sha512 of "1\n2\n3\n" (sha512sum of `seq 1 3`).
        assert_eq!(
            expected_line(3),
            "KCORE-GUEST: checksum 6a8e8f13f75c3dead6c5b542d2282b182d94619292e7c31c551b719a65af7093\
             a621b008868d47d2e85973ae3fa1df5c8ca23f2bcb27919229ad0c5b9a59c8cc"
        );
    }

    #[test]
    fn the_guest_script_counts_as_far_as_we_do() {
        let init = fs::read_to_string(paths::root().join("vmm/guest/init")).unwrap();
        assert!(init.contains(&format!("COUNT={SEQ_COUNT}\n")));
    }
}
