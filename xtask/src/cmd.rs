//! Running host tools and writing outputs, for every build step.
//!
//! Each external command runs with its output captured; when it fails, the
//! error names the command line and carries what it printed, so a failed step
//! explains itself. Outputs are written only when their bytes change, which
//! keeps timestamps (and so `make` and QEMU runners) quiet on a no-op rebuild.

use anyhow::{Context, Result, bail};
use std::ffi::OsStr;
use std::fs;
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// The command line of `cmd`, for messages.
pub fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&quote(a));
    }
    s
}

fn quote(a: &OsStr) -> String {
    let a = a.to_string_lossy();
    if !a.is_empty()
        && a.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+%@".contains(c))
    {
        a.into_owned()
    } else {
        format!("'{}'", a.replace('\'', r"'\''"))
    }
}

fn check(cmd: &Command, out: Output) -> Result<Output> {
    if out.status.success() {
        return Ok(out);
    }
    let mut msg = format!("`{}` failed ({})", describe(cmd), out.status);
    for (name, bytes) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
        let text = String::from_utf8_lossy(bytes);
        let text = text.trim_end();
        if !text.is_empty() {
            msg.push_str(&format!("\n--- {name} ---\n{text}"));
        }
    }
    bail!(msg)
}

/// Runs `cmd` to completion with its output captured; fails with that output
/// if it exits unsuccessfully.
pub fn run(cmd: &mut Command) -> Result<()> {
    output(cmd).map(|_| ())
}

/// Runs `cmd` and returns its standard output as text.
pub fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot start `{}`", describe(cmd)))?;
    let out = check(cmd, out)?;
    String::from_utf8(out.stdout)
        .with_context(|| format!("`{}` printed non-UTF-8 output", describe(cmd)))
}

/// Runs `cmd` with its output going straight to ours (for long steps whose
/// progress the user wants to see, such as package installation).
pub fn run_visible(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("cannot start `{}`", describe(cmd)))?;
    if !status.success() {
        bail!("`{}` failed ({status})", describe(cmd));
    }
    Ok(())
}

/// Writes `bytes` to `path` unless it already holds exactly them (creating
/// the parent directory). Returns whether the file changed.
pub fn write_if_changed(path: &Path, bytes: &[u8]) -> Result<bool> {
    if fs::read(path).is_ok_and(|old| old == bytes) {
        return Ok(false);
    }
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    // Write beside and rename, so a reader never sees half a file.
    let tmp = path.with_extension("tmp~");
    fs::write(&tmp, bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    fs::rename(&tmp, path)
        .with_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()))?;
    Ok(true)
}

/// Copies `from` to `to` unless `to` already holds the same bytes.
pub fn copy_if_changed(from: &Path, to: &Path) -> Result<bool> {
    let bytes = fs::read(from).with_context(|| format!("cannot read {}", from.display()))?;
    write_if_changed(to, &bytes)
}

/// Prints one line for a finished build step: `"<step> <what>"`, aligned like
/// cargo's status lines.
pub fn step(name: &str, what: impl std::fmt::Display) {
    println!("{name:>10} {what}");
}

/// `path` relative to the workspace root when it is inside it, for messages.
pub fn show(path: &Path) -> String {
    let root = crate::paths::root();
    path.strip_prefix(&root)
        .unwrap_or(path)
        .display()
        .to_string()
}

/// "`(unchanged)`" or "" for step lines.
pub fn changed_note(changed: bool) -> &'static str {
    if changed { "" } else { " (unchanged)" }
}
