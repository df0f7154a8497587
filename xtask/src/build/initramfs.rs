//! KServ's initramfs, `build/kserv/initramfs.cpio` (and for Debian's 6.12,
//! `build/kserv-6.12/initramfs.cpio`, the same but for the modules and the
//! guest kernel, which are 6.12's): Debian's static busybox,
//! the `/init` script and test scripts of `kserv-shim/initramfs`, the shim
//! module and `kserv-tools`. Busybox's applet links are made by `/init`
//! (`busybox --install -s`), so this recipe needs no arm64 machine to list
//! them.
//!
//! Layout:
//!
//! ```text
//! /init                        kserv-shim/initramfs/init
//! /bin/busybox, /bin/sh        busybox-static
//! /bin/kserv-tools             kserv-shim/tools
//! /lib/modules/kserv_shim.ko   kserv-shim/module
//! /lib/modules/kserv_selftest.ko kserv-shim/module (the self-tests')
//! /lib/modules/kserv_attack.ko kserv-shim/module (the attack suite's)
//! /lib/modules/efivarfs.ko     the kernel package's (the `efi` test's)
//! /lib/kserv/lib.sh            kserv-shim/initramfs/lib.sh
//! /lib/kserv/tests/<name>      kserv-shim/initramfs/tests/<name>
//! /lib/kserv/vm-test.img       the test VM image (`vm_image.rs`)
//! /lib/kserv/vm-test.img.sig   its signature, made with build/keys/
//! /lib/kserv/test-guest.img    the flat test guest image (`test_guest.rs`)
//! /lib/kserv/test-guest.img.sig  its signature
//! /lib/kserv/test-guest.touch.sig  its signature for `kvmbench-vm`'s
//!                              protected VM (the page past its RAM MMIO)
//! /lib/kserv/test-guest.tests  the names of the guest's tests, in order
//! /usr/bin/kcore-vmm           the VMM (`vmm/`, `vmm.rs`)
//! /lib/kserv/guest/Image       the Linux guest it boots: KServ's own kernel
//! /lib/kserv/guest/Image.sig   its signature, made with build/keys/
//! /lib/kserv/guest/initrd.cpio the guest's initramfs (`vmm/guest/init`)
//! /lib/kserv/guest/expected    the checksum line the guest must print
//! /lib/kserv/kvm-selftests/…   Debian's KVM selftests (`kvm_selftests.rs`)
//! /lib/kserv/kvm-selftests.list  their names, and why any did not build
//! /dev/console                 character device 5:1
//! ```

use super::cpio::{Entry, archive};
use crate::cmd;
use crate::fetch::Series;
use crate::paths;
use anyhow::{Context, Result, bail};
use std::fs;
use std::path::{Path, PathBuf};

/// The inputs that are built rather than kept in `kserv-shim/initramfs`.
pub struct Inputs<'a> {
    /// Static arm64 busybox.
    pub busybox: &'a Path,
    /// The shim module.
    pub module: &'a Path,
    /// The self-tests' module.
    pub selftest_module: &'a Path,
    /// The attack suite's module.
    pub attack_module: &'a Path,
    /// The kernel's `efivarfs.ko`, unless the kernel has it built in.
    pub efivarfs: Option<&'a [u8]>,
    /// The static `kserv-tools` binary.
    pub tools: &'a Path,
    /// The test VM image of the `vmisolation` test.
    pub vm_image: &'a [u8],
    /// Its signature.
    pub vm_image_sig: &'a [u8],
    /// The flat test guest of the `kvmapi` test.
    pub test_guest: &'a [u8],
    /// Its signature.
    pub test_guest_sig: &'a [u8],
    /// Its signature for the `kvmbench-vm` benchmark.
    pub test_guest_touch_sig: &'a [u8],
    /// The names of its tests, one per line.
    pub test_guest_tests: &'a str,
    /// `kcore-vmm` and the Linux guest of the `kvmguest` test.
    pub guest: &'a super::vmm::Guest,
    /// The KVM selftests of the `kvmselftests` test.
    pub selftests: &'a super::kvm_selftests::Selftests,
}

/// Writes the initramfs for KServ's kernel `series` (`build/kserv/initramfs.cpio`
/// for 6.1, `build/kserv-6.12/initramfs.cpio` for 6.12), only if its bytes
/// change; returns its path. The modules and the guest in `inputs` must be
/// those of that kernel.
pub fn build(series: Series, inputs: &Inputs<'_>) -> Result<PathBuf> {
    let recipe = paths::root().join("kserv-shim").join("initramfs");
    let entries = entries(&recipe, inputs)?;
    let bytes = archive(&entries);
    let out = paths::kserv_initramfs(series);
    let changed = cmd::write_if_changed(&out, &bytes)?;
    cmd::step(
        "initramfs",
        format!(
            "{} ({} entries, {} KiB){}",
            cmd::show(&out),
            entries.len(),
            bytes.len() / 1024,
            cmd::changed_note(changed)
        ),
    );
    Ok(out)
}

fn read(path: &Path) -> Result<Vec<u8>> {
    fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

fn dir(path: &str) -> Entry {
    Entry::Dir {
        path: path.into(),
        mode: 0o755,
    }
}

fn file(path: &str, mode: u32, data: Vec<u8>) -> Entry {
    Entry::File {
        path: path.into(),
        mode,
        data,
    }
}

fn entries(recipe: &Path, inputs: &Inputs<'_>) -> Result<Vec<Entry>> {
    let mut e: Vec<Entry> = [
        "bin",
        "sbin",
        "usr",
        "usr/bin",
        "usr/sbin",
        "dev",
        "proc",
        "sys",
        "tmp",
        "run",
        "root",
        "etc",
        "lib",
        "lib/modules",
        "lib/kserv",
        "lib/kserv/tests",
        "lib/kserv/guest",
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
    e.push(Entry::CharDev {
        path: "dev/null".into(),
        mode: 0o666,
        major: 1,
        minor: 3,
    });
    e.push(file("bin/busybox", 0o755, read(inputs.busybox)?));
    e.push(Entry::Symlink {
        path: "bin/sh".into(),
        target: "busybox".into(),
    });
    e.push(file("bin/kserv-tools", 0o755, read(inputs.tools)?));
    e.push(file(
        "lib/modules/kserv_shim.ko",
        0o644,
        read(inputs.module)?,
    ));
    e.push(file(
        "lib/modules/kserv_selftest.ko",
        0o644,
        read(inputs.selftest_module)?,
    ));
    e.push(file(
        "lib/modules/kserv_attack.ko",
        0o644,
        read(inputs.attack_module)?,
    ));
    if let Some(m) = inputs.efivarfs {
        e.push(file("lib/modules/efivarfs.ko", 0o644, m.to_vec()));
    }
    e.push(file("init", 0o755, read(&recipe.join("init"))?));
    e.push(file(
        "lib/kserv/lib.sh",
        0o644,
        read(&recipe.join("lib.sh"))?,
    ));
    e.push(file(
        "etc/passwd",
        0o644,
        b"root:x:0:0:root:/root:/bin/sh\n".to_vec(),
    ));
    e.push(file("etc/group", 0o644, b"root:x:0:\n".to_vec()));
    e.push(file(
        "lib/kserv/vm-test.img",
        0o644,
        inputs.vm_image.to_vec(),
    ));
    e.push(file(
        "lib/kserv/vm-test.img.sig",
        0o644,
        inputs.vm_image_sig.to_vec(),
    ));
    e.push(file(
        "lib/kserv/test-guest.img",
        0o644,
        inputs.test_guest.to_vec(),
    ));
    e.push(file(
        "lib/kserv/test-guest.img.sig",
        0o644,
        inputs.test_guest_sig.to_vec(),
    ));
    e.push(file(
        "lib/kserv/test-guest.touch.sig",
        0o644,
        inputs.test_guest_touch_sig.to_vec(),
    ));
    e.push(file(
        "lib/kserv/test-guest.tests",
        0o644,
        inputs.test_guest_tests.as_bytes().to_vec(),
    ));

    e.push(file("usr/bin/kcore-vmm", 0o755, read(&inputs.guest.vmm)?));
    e.push(file(
        "lib/kserv/guest/Image",
        0o644,
        read(&inputs.guest.kernel)?,
    ));
    e.push(file(
        "lib/kserv/guest/Image.sig",
        0o644,
        inputs.guest.kernel_sig.to_vec(),
    ));
    e.push(file(
        "lib/kserv/guest/initrd.cpio",
        0o644,
        inputs.guest.initrd.clone(),
    ));
    e.push(file(
        "lib/kserv/guest/expected",
        0o644,
        inputs.guest.expected.as_bytes().to_vec(),
    ));

    e.push(dir("lib/kserv/kvm-selftests"));
    let mut subdirs: Vec<&str> = inputs
        .selftests
        .tests
        .iter()
        .filter_map(|t| t.name.rsplit_once('/').map(|(d, _)| d))
        .collect();
    subdirs.sort();
    subdirs.dedup();
    for d in subdirs {
        e.push(dir(&format!("lib/kserv/kvm-selftests/{d}")));
    }
    for t in inputs
        .selftests
        .tests
        .iter()
        .filter(|t| t.unbuilt.is_none())
    {
        e.push(file(
            &format!("lib/kserv/kvm-selftests/{}", t.name),
            0o755,
            read(&inputs.selftests.dir.join(&t.name))?,
        ));
    }
    e.push(file(
        "lib/kserv/kvm-selftests.list",
        0o644,
        inputs.selftests.list_text().into_bytes(),
    ));

    let tests = recipe.join("tests");
    let mut names: Vec<String> = fs::read_dir(&tests)
        .with_context(|| format!("cannot list {}", tests.display()))?
        .map(|d| d.map(|d| d.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_, _>>()
        .with_context(|| format!("cannot list {}", tests.display()))?;
    names.retain(|n| !n.starts_with('.'));
    names.sort();
    if names.is_empty() {
        bail!("{} holds no tests", tests.display());
    }
    for n in names {
        e.push(file(
            &format!("lib/kserv/tests/{n}"),
            0o755,
            read(&tests.join(&n))?,
        ));
    }
    Ok(e)
}
