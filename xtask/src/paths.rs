//! Where the build puts things. Everything generated lives under `build/`
//! (rebuilt freely) or `.cache/` (downloads, kept across builds); both are
//! ignored by git.
//!
//! KServ's files for the default kernel (Debian's 6.1) are in `build/kserv/`
//! and its boot image is `build/kcore.img`; those of another series are in
//! `build/kserv-<series>/` and `build/kcore-<series>.img` (6.12:
//! `build/kserv-6.12/`, `build/kcore-6.12.img`). Files that do not depend on
//! the kernel (the tools, the VMM, the test images) are built once, in
//! `build/kserv/`.

use crate::fetch::Series;
use std::path::PathBuf;

/// The workspace root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .expect("workspace root exists")
}

/// `build/`.
pub fn build_dir() -> PathBuf {
    root().join("build")
}

/// `.cache/`: Debian downloads, extracted once.
pub fn cache_dir() -> PathBuf {
    root().join(".cache")
}

/// The boot image whose KServ runs `series`: KCore with the KServ payload
/// (`docs/boot-image.md`).
pub fn boot_image(series: Series) -> PathBuf {
    build_dir().join(format!("kcore{}.img", series.suffix()))
}

/// KServ's files for `series`: `build/kserv/` or `build/kserv-<series>/`.
pub fn kserv_dir(series: Series) -> PathBuf {
    build_dir().join(format!("kserv{}", series.suffix()))
}

/// The files that do not depend on KServ's kernel: `build/kserv/`.
pub fn shared_kserv_dir() -> PathBuf {
    kserv_dir(Series::Linux6_1)
}

/// KCore alone as a flat binary (no payload).
pub fn kcore_bin() -> PathBuf {
    build_dir().join("kcore.bin")
}

/// Debian's arm64 kernel Image used as KServ (and, booted straight at EL2, as the
/// stock-KVM baseline).
pub fn kserv_kernel(series: Series) -> PathBuf {
    kserv_dir(series).join("Image")
}

/// KServ's initramfs (newc cpio).
pub fn kserv_initramfs(series: Series) -> PathBuf {
    kserv_dir(series).join("initramfs.cpio")
}

/// The kernel command line packed into the payload.
pub fn kserv_cmdline(series: Series) -> PathBuf {
    kserv_dir(series).join("cmdline")
}

/// The UEFI application booting KCore and the 6.1 KServ
/// (`build/kcore.efi`, `efi/`).
pub fn kcore_efi() -> PathBuf {
    build_dir().join("kcore.efi")
}

/// The EFI system partition (a directory) holding `kcore.efi`
/// (`build/esp/`).
pub fn esp_dir() -> PathBuf {
    build_dir().join("esp")
}

/// The Raspberry Pi 4 device tree edited for QEMU's `raspi4b`
/// (`build/raspi4b/bcm2711-rpi-4-b-qemu.dtb`).
pub fn raspi4b_dtb() -> PathBuf {
    build_dir().join("raspi4b").join("bcm2711-rpi-4-b-qemu.dtb")
}

/// The Raspberry Pi 4 SD card's parts: its `kcore.img`, `config.txt`,
/// `cmdline.txt` (`build/rpi4/`).
pub fn rpi4_dir() -> PathBuf {
    build_dir().join("rpi4")
}

/// The Raspberry Pi 4 SD-card image (`build/rpi4-sd.img`).
pub fn rpi4_sd_image() -> PathBuf {
    build_dir().join("rpi4-sd.img")
}
