//! KCore itself: the `kcore` binary of `kcore-boot`, built for
//! `aarch64-unknown-none-softfloat` and flattened to `build/kcore.bin`, whose
//! first bytes are its arm64 `Image` header.

use super::cargo;
use crate::cmd;
use crate::paths;
use anyhow::{Context, Result};
use std::fs;
use std::path::PathBuf;
use std::process::Command;

/// The target KCore (and everything at EL2) is built for.
pub const TARGET: &str = "aarch64-unknown-none-softfloat";

/// Builds KCore and writes `build/kcore.bin`; returns its path.
pub fn build() -> Result<PathBuf> {
    // Every image this build makes is a test image: it carries KCore's
    // self-check hypercall, which the attack tests use.
    let elf = cargo::build(
        "kcore-boot",
        &["--bin", "kcore", "--features", "self-check"],
        TARGET,
        "kcore",
        "bin",
    )?
    .into_iter()
    .next()
    .context("no kcore executable")?;
    let bin = paths::kcore_bin();
    let tmp = bin.with_extension("bin.objcopy~");
    fs::create_dir_all(paths::build_dir())?;
    cmd::run(
        Command::new("aarch64-linux-gnu-objcopy")
            .args(["-O", "binary"])
            .arg(&elf)
            .arg(&tmp),
    )?;
    let bytes = fs::read(&tmp).with_context(|| format!("cannot read {}", tmp.display()))?;
    fs::remove_file(&tmp).ok();
    let changed = cmd::write_if_changed(&bin, &bytes)?;
    cmd::step(
        "kcore",
        format!(
            "{} ({} bytes){}",
            cmd::show(&bin),
            bytes.len(),
            cmd::changed_note(changed)
        ),
    );
    Ok(bin)
}
