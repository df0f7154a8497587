//! `cargo xtask build`: everything the stack boots from, in one pass.
//!
//! Steps, each printing one line: host prerequisites ([`crate::deps`]), Debian's
//! kernel, headers and busybox ([`crate::fetch`]), KCore (`build/kcore.bin`),
//! the key pair for VM images (`build/keys/`, made once), KServ's tools, the
//! signed test VM image, the signed test guest, the KVM selftests; then for
//! Debian's 6.1 the modules, the VMM's guest, KServ's initramfs, the kernel
//! `Image` and command line next to them in `build/kserv/`, and the packed
//! boot image `build/kcore.img` (`docs/boot-image.md`); then the same for
//! Debian's 6.12 from bookworm-backports in `build/kserv-6.12/` and
//! `build/kcore-6.12.img` (`cargo xtask run --kernel 6.12`), and the
//! Raspberry Pi 4 tree QEMU's `raspi4b` boots with
//! (`build/raspi4b/`, [`raspi4b`]), and the Raspberry Pi 4 SD-card image
//! `build/rpi4-sd.img` ([`rpi4_sd`]), and `build/kcore.efi` with its EFI
//! system partition `build/esp/` ([`efi`]). The second
//! image costs only a Kbuild run, an initramfs and a pack: everything else
//! is shared. Every step is incremental: cargo
//! and Kbuild rebuild what changed, and outputs are rewritten only when their
//! bytes change.

mod abi_header;
pub mod cargo;
mod cpio;
mod debqemu;
mod efi;
mod initramfs;
mod kcore;
pub mod keys;
mod kvm_selftests;
mod module;
mod pack;
mod raspi4b;
mod rpi4_sd;
mod test_guest;
mod tools;
mod vm_image;
mod vmm;

use crate::fetch::{self, Fetched, Series};
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
    /// The boot image whose KServ is Debian's 6.12 (`build/kcore-6.12.img`).
    pub boot_image_6_12: PathBuf,
    /// The Raspberry Pi 4 SD-card image (`build/rpi4-sd.img`).
    pub rpi4_sd: PathBuf,
    /// The UEFI application embedding the boot image (`build/kcore.efi`).
    pub kcore_efi: PathBuf,
}

/// Builds everything and packs `build/kcore.img` and `build/kcore-6.12.img`.
pub fn all() -> Result<Built> {
    deps::ensure()?;
    let fetched = fetch::ensure()?;
    let kcore_bin = kcore::build()?;
    raspi4b::build(&fetched.dtb_dir)?;
    // Before KServ's initramfs: it carries a test image signed with the key.
    let vm_verify_key = keys::ensure()?;
    let shared = Shared::build(&fetched, &kcore_bin, &vm_verify_key)?;
    let kserv_6_1 = kserv(&fetched, &shared)?;
    let kserv_6_12 = kserv(&fetch::ensure_series(Series::Linux6_12)?, &shared)?;
    // The boot image of the `debqemu` test: the 6.1 one with Debian's QEMU
    // appended to KServ's initramfs (`debqemu.rs`).
    let rpi4_sd = rpi4(&fetched, &kcore_bin, &kserv_6_1, &vm_verify_key)?;
    let kcore_efi = efi::build(&kserv_6_1.boot_image)?;
    let debqemu = debqemu::build(&kserv_6_1.initramfs)?;
    pack(
        &kcore_bin,
        &kserv_6_1.kernel,
        &debqemu.initramfs,
        KSERV_CMDLINE,
        Some(&vm_verify_key),
        &paths::build_dir().join("kcore-debqemu.img"),
    )?;
    Ok(Built {
        fetched,
        kcore_bin,
        kernel: kserv_6_1.kernel,
        initramfs: kserv_6_1.initramfs,
        module: kserv_6_1.module,
        cmdline: KSERV_CMDLINE.to_string(),
        boot_image: kserv_6_1.boot_image,
        boot_image_6_12: kserv_6_12.boot_image,
        rpi4_sd,
        kcore_efi,
    })
}

/// The Raspberry Pi 4's boot image (`build/rpi4/kcore.img`: KCore and the
/// 6.1 KServ of `kserv` with the Pi's command line) and the SD-card image
/// holding it (`build/rpi4-sd.img`, [`rpi4_sd`]).
fn rpi4(
    fetched: &Fetched,
    kcore_bin: &Path,
    kserv: &Kserv,
    vm_verify_key: &[u8; 32],
) -> Result<PathBuf> {
    let firmware = fetch::raspi_firmware()?;
    let kcore_img = pack(
        kcore_bin,
        &kserv.kernel,
        &kserv.initramfs,
        rpi4_sd::RPI4_CMDLINE,
        Some(vm_verify_key),
        &paths::rpi4_dir().join("kcore.img"),
    )?;
    rpi4_sd::build(&rpi4_sd::Inputs {
        dtb_dir: &fetched.dtb_dir,
        firmware: &firmware,
        kcore_img: &kcore_img,
    })
}

/// What the boot images of every series share: KCore, the key VM images
/// are verified against, and what KServ's initramfs carries that does not
/// depend on its kernel.
struct Shared<'a> {
    kcore_bin: &'a Path,
    vm_verify_key: &'a [u8; 32],
    tools: PathBuf,
    vm_image: vm_image::VmImage,
    test_guest: test_guest::TestGuest,
    selftests: kvm_selftests::Selftests,
}

impl<'a> Shared<'a> {
    /// Builds the tools, the signed test VM image and test guest, and the KVM
    /// selftests (of `fetched`'s `linux-source`: userspace programs, which
    /// run on every later kernel). The signing key must exist
    /// ([`keys::ensure`]).
    fn build(
        fetched: &Fetched,
        kcore_bin: &'a Path,
        vm_verify_key: &'a [u8; 32],
    ) -> Result<Shared<'a>> {
        Ok(Shared {
            kcore_bin,
            vm_verify_key,
            tools: tools::build()?,
            vm_image: vm_image::build()?,
            test_guest: test_guest::build()?,
            selftests: kvm_selftests::ensure(fetched)?,
        })
    }
}

/// KServ's files for one kernel series, in `build/kserv/` (6.1) or
/// `build/kserv-6.12/`, and its boot image.
struct Kserv {
    kernel: PathBuf,
    initramfs: PathBuf,
    module: PathBuf,
    boot_image: PathBuf,
}

/// Builds the modules and the VMM's guest for the `fetched` kernel and
/// KServ's initramfs with them and `shared`, puts the kernel and its
/// command line beside them, and packs them with KCore into the series'
/// boot image (`build/kcore.img`, `build/kcore-6.12.img`). The signing key
/// must exist ([`keys::ensure`]).
fn kserv(fetched: &Fetched, shared: &Shared<'_>) -> Result<Kserv> {
    let module = module::build(fetched)?;
    let guest = vmm::build(fetched)?;
    // efivarfs, for KServ's `efi` test (Debian builds it as a module).
    let efivarfs = vmm::kernel_module(
        fetched,
        "kernel/fs/efivarfs/efivarfs.ko",
        "CONFIG_EFIVAR_FS",
    )?;
    let initramfs = initramfs::build(
        fetched.series,
        &initramfs::Inputs {
            busybox: &fetched.busybox,
            module: &module.shim,
            selftest_module: &module.selftest,
            attack_module: &module.attack,
            efivarfs: efivarfs.as_deref(),
            tools: &shared.tools,
            vm_image: &shared.vm_image.image,
            vm_image_sig: &shared.vm_image.signature,
            test_guest: &shared.test_guest.image,
            test_guest_sig: &shared.test_guest.signature,
            test_guest_touch_sig: &shared.test_guest.touch_signature,
            test_guest_tests: &shared.test_guest.tests,
            guest: &guest,
            selftests: &shared.selftests,
        },
    )?;
    let kernel = paths::kserv_kernel(fetched.series);
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
    let cmdline = paths::kserv_cmdline(fetched.series);
    let changed = cmd::write_if_changed(&cmdline, format!("{KSERV_CMDLINE}\n").as_bytes())?;
    cmd::step(
        "cmdline",
        format!(
            "{}: {KSERV_CMDLINE}{}",
            cmd::show(&cmdline),
            cmd::changed_note(changed)
        ),
    );
    let boot_image = pack(
        shared.kcore_bin,
        &kernel,
        &initramfs,
        KSERV_CMDLINE,
        Some(shared.vm_verify_key),
        &paths::boot_image(fetched.series),
    )?;
    Ok(Kserv {
        kernel,
        initramfs,
        module: module.shim,
        boot_image,
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
