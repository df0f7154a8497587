//! `cargo xtask test`: every check, in the order a failure is cheapest to find.
//!
//! First the install step (`cargo xtask deps`: Debian packages, then the
//! Rust targets and components of `rust-toolchain.toml`) and a check that
//! this install path really restores a Rust target a fresh machine lacks
//! (`deps::reinstall_check`); then formatting, clippy for the host and for
//! the EL2 target, the host tests, the build (`build/kcore.img`,
//! `build/kcore-6.12.img` and KServ's artefacts), then the QEMU system
//! tests (`kcore-systests`, each test in its own process, the slowest first,
//! at most two QEMUs at a time: [`crate::systests`]). Each step is printed
//! with its wall time, cargo's own output (including its `test result:`
//! summaries) is shown as is, and the first failing step stops the run with a
//! non-zero exit.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::paths;

/// Arguments of `cargo xtask test`.
#[derive(clap::Args, Debug)]
pub struct TestArgs {
    /// Only what runs on the host: no build, no QEMU system tests.
    #[arg(long)]
    host_only: bool,
    /// Skip `cargo fmt --check` and clippy.
    #[arg(long)]
    skip_lint: bool,
    /// Only the QEMU system tests, on what `cargo xtask build` left in
    /// `build/`, as the full run schedules them.
    #[arg(long, conflicts_with_all = ["host_only", "skip_lint"])]
    systests_only: bool,
}

/// The crates built for the EL2 target and linted there.
const EL2_CRATES: &[&str] = &[
    "kcore",
    "kcore-abi",
    "kcore-arch",
    "kcore-boot",
    "kcore-payload",
    "kserv-base",
    "kserv-core",
    "kserv-selftest",
];

/// KServ's userspace tools and the VMM, and their target.
const MUSL_CRATES: &[&str] = &["kserv-tools", "kcore-vmm"];
/// Crates built for guests: the bare-metal test guest (hard-float, FP/SIMD
/// allowed, unlike KCore).
const GUEST_CRATES: &[&str] = &["kcore-test-guest"];
const GUEST_TARGET: &str = "aarch64-unknown-none";
/// The UEFI application (`efi/`), linted for its own target. It embeds the
/// boot image named by `KCORE_EFI_IMAGE`; the lint gets an empty stand-in
/// ([`lint_boot_image`]), since a host-only run has built no image.
const UEFI_CRATE: &str = "kcore-efi";
const UEFI_TARGET: &str = "aarch64-unknown-uefi";
const MUSL_TARGET: &str = "aarch64-unknown-linux-musl";

/// The target of KCore.
const EL2_TARGET: &str = "aarch64-unknown-none-softfloat";

/// The QEMU system-test package.
const SYSTESTS: &str = "kcore-systests";

/// What a step does.
enum Action {
    /// `crate::deps::ensure()`: the Debian packages, Rust targets and
    /// components the later steps need.
    Deps,
    /// `crate::deps::reinstall_check()`: a removed Rust target comes back
    /// through the README commands' install path.
    DepsCheck,
    /// `cargo <args>` in the workspace root.
    Cargo(Vec<String>),
    /// `crate::build::all()`.
    Build,
    /// `crate::systests::run()`: the QEMU system tests.
    SysTests,
}

struct Step {
    name: String,
    action: Action,
}

fn cargo(args: &[&str]) -> Step {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    Step {
        name: format!("cargo {}", args.join(" ")),
        action: Action::Cargo(args),
    }
}

fn steps(args: &TestArgs) -> Vec<Step> {
    let systests = Step {
        name: format!("system tests ({SYSTESTS}, each test in its own process)"),
        action: Action::SysTests,
    };
    if args.systests_only {
        return vec![systests];
    }
    // Before anything that compiles for a cross target: a fresh machine has
    // only the host's standard library.
    let mut steps = vec![
        Step {
            name: "install what is missing (cargo xtask deps)".into(),
            action: Action::Deps,
        },
        Step {
            name: "check: the install path restores a removed Rust target".into(),
            action: Action::DepsCheck,
        },
    ];
    if !args.skip_lint {
        steps.push(cargo(&["fmt", "--all", "--check"]));
        steps.push(cargo(&[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]));
        let mut el2 = vec!["clippy"];
        for krate in EL2_CRATES {
            el2.extend(["-p", krate]);
        }
        el2.extend(["--target", EL2_TARGET, "--", "-D", "warnings"]);
        steps.push(cargo(&el2));
        let mut musl = vec!["clippy"];
        for krate in MUSL_CRATES {
            musl.extend(["-p", krate]);
        }
        musl.extend(["--target", MUSL_TARGET, "--", "-D", "warnings"]);
        steps.push(cargo(&musl));
        let mut guest = vec!["clippy"];
        for krate in GUEST_CRATES {
            guest.extend(["-p", krate]);
        }
        guest.extend(["--target", GUEST_TARGET, "--", "-D", "warnings"]);
        steps.push(cargo(&guest));
        steps.push(cargo(&[
            "clippy",
            "-p",
            UEFI_CRATE,
            "--target",
            UEFI_TARGET,
            "--",
            "-D",
            "warnings",
        ]));
    }
    // The system tests are a workspace member (so clippy sees them) but need
    // build artefacts and QEMU: they run last, after the build.
    steps.push(cargo(&["test", "--workspace", "--exclude", SYSTESTS]));
    if !args.host_only {
        steps.push(Step {
            name: "build (cargo xtask build)".into(),
            action: Action::Build,
        });
        // Every test runs, whatever fails: one failing case should not hide
        // the others' results.
        steps.push(systests);
    }
    steps
}

/// Runs `cargo xtask test`.
pub fn main(args: TestArgs) -> anyhow::Result<()> {
    let steps = steps(&args);
    let total = steps.len();
    let started = Instant::now();
    let mut done: Vec<Outcome> = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        eprintln!("\n==> xtask test [{}/{total}] {}", i + 1, step.name);
        let t = Instant::now();
        let result = run(step);
        let took = t.elapsed();
        let results = match result {
            Ok(results) => results,
            Err(e) => {
                eprintln!(
                    "<== xtask test [{}/{total}] {}: FAILED after {:.1} s",
                    i + 1,
                    step.name,
                    took.as_secs_f64()
                );
                summary(&done, started.elapsed());
                return Err(e.context(format!("xtask test: step `{}` failed", step.name)));
            }
        };
        eprintln!(
            "<== xtask test [{}/{total}] {}: ok in {:.1} s",
            i + 1,
            step.name,
            took.as_secs_f64()
        );
        done.push(Outcome {
            name: step.name.clone(),
            took,
            results,
        });
    }
    summary(&done, started.elapsed());
    eprintln!("xtask test: all {total} steps passed");
    Ok(())
}

/// What a finished step leaves for the summary.
struct Outcome {
    name: String,
    took: Duration,
    /// cargo test's `test result:` lines, in order.
    results: Vec<String>,
}

/// An empty file standing in for the boot image when `kcore-efi` is
/// linted (`build/kcore-efi-lint.img`).
fn lint_boot_image() -> anyhow::Result<std::path::PathBuf> {
    let path = paths::build_dir().join("kcore-efi-lint.img");
    std::fs::create_dir_all(paths::build_dir())?;
    std::fs::write(&path, b"").with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

/// Runs one step; returns cargo test's `test result:` lines (echoed live as
/// well).
fn run(step: &Step) -> anyhow::Result<Vec<String>> {
    match &step.action {
        Action::Deps => crate::deps::ensure().map(|_| Vec::new()),
        Action::DepsCheck => crate::deps::reinstall_check().map(|_| Vec::new()),
        Action::Build => crate::build::all().map(|_| Vec::new()),
        Action::SysTests => crate::systests::run(),
        Action::Cargo(args) => {
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
            let mut cmd = Command::new(&cargo);
            cmd.args(args).current_dir(paths::root());
            if args.iter().any(|a| a == UEFI_TARGET) {
                cmd.env("KCORE_EFI_IMAGE", lint_boot_image()?);
            }
            let is_test = args.first().is_some_and(|a| a == "test");
            if is_test {
                cmd.stdout(Stdio::piped());
            }
            let mut child = cmd
                .spawn()
                .with_context(|| format!("starting {}", cargo.to_string_lossy()))?;
            let mut results = Vec::new();
            if let Some(out) = child.stdout.take() {
                let mut stdout = std::io::stdout();
                for line in BufReader::new(out).lines() {
                    let line = line.context("reading cargo test's output")?;
                    let _ = writeln!(stdout, "{line}");
                    if line.trim_start().starts_with("test result:") {
                        results.push(line.trim().to_string());
                    }
                }
            }
            let status = child.wait().context("waiting for cargo")?;
            if !status.success() {
                bail!("`{}` exited with {status}", step.name);
            }
            Ok(results)
        }
    }
}

fn summary(done: &[Outcome], total: Duration) {
    eprintln!("\nxtask test: steps passed (wall time):");
    for o in done {
        eprintln!("  {:>7.1} s  {}", o.took.as_secs_f64(), o.name);
        // cargo's own summary lines, but not those of the many empty
        // doc-test and test binaries.
        for r in o
            .results
            .iter()
            .filter(|r| count(r, "passed") + count(r, "failed") + count(r, "ignored") > 0)
        {
            eprintln!("               {r}");
        }
        if !o.results.is_empty() {
            let sum = |what| o.results.iter().map(|r| count(r, what)).sum::<u64>();
            eprintln!(
                "               total: {} passed; {} failed; {} ignored ({} test binaries)",
                sum("passed"),
                sum("failed"),
                sum("ignored"),
                o.results.len()
            );
        }
    }
    eprintln!("  {:>7.1} s  total", total.as_secs_f64());
}

/// The number before `what` in a `test result:` line (`12 passed;`).
fn count(result: &str, what: &str) -> u64 {
    let words: Vec<&str> = result.split_whitespace().collect();
    words
        .windows(2)
        .find(|w| w[1].trim_end_matches([';', ',']) == what)
        .and_then(|w| w[0].parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(args: TestArgs) -> Vec<String> {
        steps(&args).into_iter().map(|s| s.name).collect()
    }

    #[test]
    fn full_run_order() {
        assert_eq!(
            names(TestArgs {
                host_only: false,
                skip_lint: false,
                systests_only: false,
            }),
            [
                "install what is missing (cargo xtask deps)",
                "check: the install path restores a removed Rust target",
                "cargo fmt --all --check",
                "cargo clippy --workspace --all-targets -- -D warnings",
                "cargo clippy -p kcore -p kcore-abi -p kcore-arch -p kcore-boot -p kcore-payload \
                 -p kserv-base -p kserv-core -p kserv-selftest --target aarch64-unknown-none-softfloat \
                 -- -D warnings",
                "cargo clippy -p kserv-tools -p kcore-vmm --target aarch64-unknown-linux-musl -- -D warnings",
                "cargo clippy -p kcore-test-guest --target aarch64-unknown-none -- -D warnings",
                "cargo clippy -p kcore-efi --target aarch64-unknown-uefi -- -D warnings",
                "cargo test --workspace --exclude kcore-systests",
                "build (cargo xtask build)",
                "system tests (kcore-systests, each test in its own process)",
            ]
        );
    }

    #[test]
    fn counts_in_result_lines() {
        let r = "test result: ok. 12 passed; 1 failed; 3 ignored; 0 measured; 0 filtered out; finished in 0.01s";
        assert_eq!(
            (count(r, "passed"), count(r, "failed"), count(r, "ignored")),
            (12, 1, 3)
        );
        assert_eq!(count(r, "bogus"), 0);
    }

    #[test]
    fn host_only_without_lint() {
        assert_eq!(
            names(TestArgs {
                host_only: true,
                skip_lint: true,
                systests_only: false,
            }),
            [
                "install what is missing (cargo xtask deps)",
                "check: the install path restores a removed Rust target",
                "cargo test --workspace --exclude kcore-systests"
            ]
        );
    }

    #[test]
    fn systests_only() {
        assert_eq!(
            names(TestArgs {
                host_only: false,
                skip_lint: false,
                systests_only: true,
            }),
            ["system tests (kcore-systests, each test in its own process)"]
        );
    }
}
