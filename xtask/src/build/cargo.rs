//! Nested `cargo build` runs for the artefacts that are not host code (KCore,
//! the module's Rust core, KServ's tools), with the artefact paths read from
//! cargo's JSON messages, so any target directory works (the default
//! `target/`, `CARGO_TARGET_DIR`, or a configured one).

use crate::cmd;
use crate::paths;
use anyhow::{Context, Result, bail};
use std::path::PathBuf;
use std::process::Command;

/// Builds `package` in release mode for `triple` and returns the files cargo
/// reports for its target `target_name` of kind `kind` (`"bin"`,
/// `"staticlib"`, ...): the executable of a bin, the library files of a lib.
/// (Names alone are ambiguous: the `kcore` bin of `kcore-boot` shares its name
/// with the `kcore` library it depends on.)
pub fn build(
    package: &str,
    extra: &[&str],
    triple: &str,
    target_name: &str,
    kind: &str,
) -> Result<Vec<PathBuf>> {
    build_with_env(package, extra, triple, target_name, kind, &[])
}

/// [`build`] with environment variables set for the compiler (the crate
/// reads them with `env!`; cargo rebuilds when they change).
pub fn build_with_env(
    package: &str,
    extra: &[&str],
    triple: &str,
    target_name: &str,
    kind: &str,
    env: &[(&str, &std::ffi::OsStr)],
) -> Result<Vec<PathBuf>> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut c = Command::new(cargo);
    c.current_dir(paths::root())
        .envs(env.iter().copied())
        .args([
            "build",
            "--quiet",
            "--release",
            "--message-format=json-render-diagnostics",
            "-p",
            package,
        ])
        .args(extra)
        .args(["--target", triple]);
    let out =
        cmd::output(&mut c).with_context(|| format!("building {package} for {triple} failed"))?;
    let mut files = Vec::new();
    for line in out.lines().filter(|l| l.starts_with('{')) {
        let msg: serde_json::Value = serde_json::from_str(line)
            .with_context(|| format!("cargo printed a malformed message: {line}"))?;
        let target = &msg["target"];
        let has_kind = target["kind"]
            .as_array()
            .is_some_and(|k| k.iter().any(|k| k == kind));
        if msg["reason"] != "compiler-artifact" || target["name"] != target_name || !has_kind {
            continue;
        }
        if let Some(exe) = msg["executable"].as_str() {
            files.push(PathBuf::from(exe));
        } else if let Some(list) = msg["filenames"].as_array() {
            files.extend(list.iter().filter_map(|f| f.as_str()).map(PathBuf::from));
        }
    }
    if files.is_empty() {
        bail!(
            "`{}` reported no artefact for the {kind} {target_name}",
            cmd::describe(&c)
        );
    }
    Ok(files)
}
