//! `build/kcore.efi` (`docs/platforms.md`, "UEFI servers"): the `kcore-efi`
//! crate built for `aarch64-unknown-uefi` with `build/kcore.img` embedded
//! (the crate reads its path from `KCORE_EFI_IMAGE` at compile time, so
//! cargo rebuilds it whenever the image changes), and `build/esp/`, an EFI
//! system partition as a directory: `EFI/kcore/kcore.efi`, where a server's
//! boot entry points (`efibootmgr`), and `startup.nsh` for the UEFI Shell,
//! which boots it with no extra arguments. Test runs make their own
//! partition with their arguments (`kcore_qemu::QemuCommand::prepare`).

use super::cargo;
use crate::{cmd, paths};
use anyhow::{Context, Result};
use std::fs;
use std::path::{Path, PathBuf};

/// The target of UEFI applications on arm64.
pub const TARGET: &str = "aarch64-unknown-uefi";

/// What the UEFI Shell runs from `build/esp/`.
pub const STARTUP_NSH: &str = "fs0:\r\n\\EFI\\kcore\\kcore.efi\r\n";

/// Builds `build/kcore.efi` around `boot_image` and lays out `build/esp/`;
/// returns the application's path.
pub fn build(boot_image: &Path) -> Result<PathBuf> {
    let image = boot_image
        .canonicalize()
        .with_context(|| format!("{} is missing", boot_image.display()))?;
    let app = cargo::build_with_env(
        "kcore-efi",
        &["--bin", "kcore-efi"],
        TARGET,
        "kcore-efi",
        "bin",
        &[("KCORE_EFI_IMAGE", image.as_os_str())],
    )?
    .into_iter()
    .next()
    .context("no kcore-efi application")?;
    let efi = paths::kcore_efi();
    let changed = cmd::copy_if_changed(&app, &efi)?;
    let size = fs::metadata(&efi)?.len();
    cmd::step(
        "kcore.efi",
        format!(
            "{} ({} KiB, embeds {}){}",
            cmd::show(&efi),
            size / 1024,
            cmd::show(boot_image),
            cmd::changed_note(changed)
        ),
    );
    let esp = paths::esp_dir();
    let dir = esp.join("EFI").join("kcore");
    fs::create_dir_all(&dir)?;
    cmd::copy_if_changed(&efi, &dir.join("kcore.efi"))?;
    cmd::write_if_changed(&esp.join("startup.nsh"), STARTUP_NSH.as_bytes())?;
    cmd::step(
        "esp",
        format!("{} (EFI/kcore/kcore.efi, startup.nsh)", cmd::show(&esp)),
    );
    Ok(efi)
}
