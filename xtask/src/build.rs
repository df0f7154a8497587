//! `cargo xtask build`: everything the stack boots from, in one pass.
//!
//! Steps, each printing one line: host prerequisites ([`crate::deps`]), Debian's
//! kernel, headers and busybox ([`crate::fetch`]), KCore (`build/kcore.bin`),
//! the key pair for VM images (`build/keys/`, made once), the shim module,
//! KServ's tools, the signed test VM image, the signed test guest, KServ's
//! initramfs, the kernel `Image` and command line next to them in
//! `build/kserv/`, and the packed
//! boot image `build/kcore.img` (`docs/boot-image.md`). Every step is incremental: cargo
//! and Kbuild rebuild what changed, and outputs are rewritten only when their
//! bytes change.

mod abi_header;
pub mod cargo;
mod cpio;
mod debqemu;
mod initramfs;
mod kcore;
pub mod keys;
mod kvm_selftests;
mod module;
mod pack;
mod test_guest;
mod tools;
mod vm_image;
mod vmm;

use crate::fetch::{self, Fetched};
use crate::{cmd, deps, paths};
use anyhow::{Context, Result};
use std::fs;
use std::path::{Path, PathBuf};

/// KServ's kernel command line as packed into the boot image: PL011 console
/// (with early output through the device tree's `stdout-path`), the initramfs'
/// `/init`, and an immediate reboot on panic so a QEMU run with `-no-reboot`
/// ends instead of hanging. Without `kserv.mode=batch` init ends in a shell.
pub const KSERV_CMDLINE: &str = "console=ttyAMA0 earlycon rdinit=/init panic=-1";

/// What [`all`] produced.
#[derive(Clone, Debug)]
#[allow(
    dead_code,
    reason = "part of the interface for run/test/bench; not every field has a user yet"
)]
pub struct Built {
    /// The Debian artefacts used.
    pub fetched: Fetched,
    /// KCore alone, flat (`build/kcore.bin`).
    pub kcore_bin: PathBuf,
    /// KServ's kernel `Image` (`build/kserv/Image`).
    pub kernel: PathBuf,
    /// KServ's initramfs (`build/kserv/initramfs.cpio`).
    pub initramfs: PathBuf,
    /// The shim module (`build/kserv/kserv_shim.ko`).
    pub module: PathBuf,
    /// The command line packed into the image.
    pub cmdline: String,
    /// The boot image (`build/kcore.img`).
    pub boot_image: PathBuf,
}

/// Builds everything and packs `build/kcore.img`.
pub fn all() -> Result<Built> {
    deps::ensure()?;
    let fetched = fetch::ensure()?;
    let kcore_bin = kcore::build()?;
    // Before KServ's initramfs: it carries a test image signed with the key.
    let vm_verify_key = keys::ensure()?;
    let kserv = kserv(&fetched)?;
    let boot_image = pack(
        &kcore_bin,
        &kserv.kernel,
        &kserv.initramfs,
        KSERV_CMDLINE,
        Some(&vm_verify_key),
        &paths::boot_image(),
    )?;
    // The boot image of the `debqemu` test: the same with Debian's QEMU
    // appended to KServ's initramfs (`debqemu.rs`).
    let debqemu = debqemu::build(&kserv.initramfs)?;
    pack(
        &kcore_bin,
        &kserv.kernel,
        &debqemu.initramfs,
        KSERV_CMDLINE,
        Some(&vm_verify_key),
        &paths::build_dir().join("kcore-debqemu.img"),
    )?;
    Ok(Built {
        fetched,
        kcore_bin,
        kernel: kserv.kernel,
        initramfs: kserv.initramfs,
        module: kserv.module,
        cmdline: KSERV_CMDLINE.to_string(),
        boot_image,
    })
}

/// KServ's files in `build/kserv/`.
struct Kserv {
    kernel: PathBuf,
    initramfs: PathBuf,
    module: PathBuf,
}

/// Builds the module, the tools, the signed test VM image, the signed test
/// guest and the initramfs, and puts the kernel and its command line beside them. The
/// signing key must exist ([`keys::ensure`]).
fn kserv(fetched: &Fetched) -> Result<Kserv> {
    let module = module::build(fetched)?;
    // The module must keep compiling for Debian's 6.12 too (not loaded yet).
    module::build_other(&fetch::ensure_series(fetch::Series::Linux6_12)?)?;
    let tools = tools::build()?;
    let vm_image = vm_image::build()?;
    let test_guest = test_guest::build()?;
    let guest = vmm::build(fetched)?;
    let selftests = kvm_selftests::ensure(fetched)?;
    let initramfs = initramfs::build(&initramfs::Inputs {
        busybox: &fetched.busybox,
        module: &module.shim,
        selftest_module: &module.selftest,
        attack_module: &module.attack,
        tools: &tools,
        vm_image: &vm_image.image,
        vm_image_sig: &vm_image.signature,
        test_guest: &test_guest.image,
        test_guest_sig: &test_guest.signature,
        test_guest_tests: &test_guest.tests,
        guest: &guest,
        selftests: &selftests,
    })?;
    let kernel = paths::kserv_kernel();
    let changed = cmd::copy_if_changed(&fetched.image, &kernel)?;
    cmd::step(
        "kernel",
        format!(
            "{} (Debian {}){}",
            cmd::show(&kernel),
            fetched.release,
            cmd::changed_note(changed)
        ),
    );
    let cmdline = paths::kserv_cmdline();
    let changed = cmd::write_if_changed(&cmdline, format!("{KSERV_CMDLINE}\n").as_bytes())?;
    cmd::step(
        "cmdline",
        format!(
            "{}: {KSERV_CMDLINE}{}",
            cmd::show(&cmdline),
            cmd::changed_note(changed)
        ),
    );
    Ok(Kserv {
        kernel,
        initramfs,
        module: module.shim,
    })
}

/// Packs KCore (`kcore_bin`) with KServ's `kernel`, `initramfs` and `cmdline`
/// and the public key VM images are verified against into the boot image `out`. Public so that tests can pack variants (another
/// command line, say `KSERV_CMDLINE` plus `kserv.mode=batch`) beside the
/// default image.
pub fn pack(
    kcore_bin: &Path,
    kernel: &Path,
    initramfs: &Path,
    cmdline: &str,
    vm_verify_key: Option<&[u8; 32]>,
    out: &Path,
) -> Result<PathBuf> {
    let read = |p: &Path| fs::read(p).with_context(|| format!("cannot read {}", p.display()));
    let (image, layout) = pack::boot_image(
        &read(kcore_bin)?,
        &read(kernel)?,
        Some(&read(initramfs)?),
        Some(cmdline),
        vm_verify_key,
    )?;
    let changed = cmd::write_if_changed(out, &image)?;
    cmd::step(
        "image",
        format!(
            "{} ({} MiB; KCore footprint {:#x}, kernel at {:#x}, image_size {:#x}){}",
            cmd::show(out),
            image.len() >> 20,
            layout.kcore_footprint,
            layout.kernel_offset,
            layout.image_size,
            cmd::changed_note(changed)
        ),
    );
    Ok(out.to_path_buf())
}
