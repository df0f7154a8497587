//! Where the build puts things. Everything generated lives under `build/`
//! (rebuilt freely) or `.cache/` (downloads, kept across builds); both are
//! ignored by git.

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

/// The boot image: KCore with the KServ payload (`docs/boot-image.md`).
pub fn boot_image() -> PathBuf {
    build_dir().join("kcore.img")
}

/// KCore alone as a flat binary (no payload).
pub fn kcore_bin() -> PathBuf {
    build_dir().join("kcore.bin")
}

/// Debian's arm64 kernel Image used as KServ (and, booted straight at EL2, as the
/// stock-KVM baseline).
pub fn kserv_kernel() -> PathBuf {
    build_dir().join("kserv").join("Image")
}

/// KServ's initramfs (newc cpio).
pub fn kserv_initramfs() -> PathBuf {
    build_dir().join("kserv").join("initramfs.cpio")
}

/// The kernel command line packed into the payload.
pub fn kserv_cmdline() -> PathBuf {
    build_dir().join("kserv").join("cmdline")
}

/// The shim module.
pub fn shim_module() -> PathBuf {
    build_dir().join("kserv").join("kserv_shim.ko")
}
