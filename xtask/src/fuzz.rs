//! `cargo xtask fuzz`: libFuzzer on KCore's trap dispatcher.
//!
//! The target is `dispatcher` in `kcore/fuzz` (a crate outside the root
//! workspace): input bytes become raw KServ traps applied through
//! `Host::handle_trap`, with KCore's invariants checked after each
//! (`kcore/tests/fuzz_body`, shared with the host test `dispatcher_fuzz`).
//! This command installs `cargo-fuzz` from crates.io if it is missing, builds
//! the target, fuzzes for `--seconds`, and prints what the run reached.
//!
//! On the pinned stable toolchain: without a sanitizer (the default), every
//! flag `cargo fuzz` passes to rustc is stable (`-Cpasses=sancov-module`,
//! `-Cllvm-args=-sanitizer-coverage-*`), so no nightly is needed. KCore and
//! the harness contain no `unsafe`, which is what AddressSanitizer would
//! guard; `--asan` still builds with it, through `-Zsanitizer`, which a
//! stable rustc accepts only with `RUSTC_BOOTSTRAP=1` (set for that build
//! alone), at about a quarter of the speed.
//!
//! The committed seeds in `kcore/fuzz/corpus/dispatcher/` are read, never
//! written: the inputs libFuzzer finds go to `build/fuzz/corpus/dispatcher/`.
//! A failing input is written to `kcore/fuzz/artifacts/dispatcher/`; the
//! whole log is `build/fuzz/dispatcher.log`.

use std::fs::{self, File};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::cmd;
use crate::paths;

/// The fuzz target.
const TARGET: &str = "dispatcher";
/// The `cargo-fuzz` release this command installs when none is present.
const CARGO_FUZZ_VERSION: &str = "^0.13";

/// Arguments of `cargo xtask fuzz`.
#[derive(clap::Args, Debug)]
pub struct FuzzArgs {
    /// How long to fuzz, in seconds.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    seconds: u64,
    /// Fuzzing processes in parallel (libFuzzer's `-fork`).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    jobs: u32,
    /// Build with AddressSanitizer (needs `RUSTC_BOOTSTRAP=1`, set for it).
    #[arg(long)]
    asan: bool,
    /// Only install `cargo-fuzz` and build the target.
    #[arg(long)]
    build_only: bool,
}

/// Runs `cargo xtask fuzz`.
pub fn main(args: FuzzArgs) -> Result<()> {
    let root = paths::root();
    let fuzz_dir = root.join("kcore").join("fuzz");
    crate::deps::ensure_rust()?;
    ensure_cargo_fuzz()?;
    ensure_cxx()?;

    cmd::step("fuzz", format!("building `{TARGET}`"));
    let started = Instant::now();
    cmd::run_visible(&mut cargo_fuzz("build", &args, &fuzz_dir))
        .context("building the fuzz target failed")?;
    cmd::step(
        "fuzz",
        format!("built in {:.0} s", started.elapsed().as_secs_f64()),
    );
    if args.build_only {
        return Ok(());
    }

    let scratch = paths::build_dir().join("fuzz").join("corpus").join(TARGET);
    fs::create_dir_all(&scratch).with_context(|| format!("cannot create {}", scratch.display()))?;
    let log_path = paths::build_dir()
        .join("fuzz")
        .join(format!("{TARGET}.log"));
    let mut log =
        File::create(&log_path).with_context(|| format!("cannot create {}", log_path.display()))?;

    let mut run = cargo_fuzz("run", &args, &fuzz_dir);
    // libFuzzer adds what it finds to the first corpus directory.
    run.arg(&scratch)
        .arg(fuzz_dir.join("corpus").join(TARGET))
        .arg("--")
        .arg(format!("-max_total_time={}", args.seconds))
        .arg("-print_final_stats=1")
        // An input that runs this long is a hang: KCore looping on host input.
        .arg("-timeout=10")
        .stdin(Stdio::null())
        .stderr(Stdio::piped());
    cmd::step(
        "fuzz",
        format!(
            "fuzzing `{TARGET}` for {} s ({} job{}); log: {}",
            args.seconds,
            args.jobs,
            if args.jobs == 1 { "" } else { "s" },
            cmd::show(&log_path)
        ),
    );
    let started = Instant::now();
    let mut child = run
        .spawn()
        .with_context(|| format!("cannot start `{}`", cmd::describe(&run)))?;
    let mut stats = Stats::default();
    let mut tail: Vec<String> = Vec::new();
    let mut finding = Finding::default();
    if let Some(err) = child.stderr.take() {
        for line in BufReader::new(err).lines() {
            let line = line.context("reading the fuzzer's output")?;
            writeln!(log, "{line}").context("writing the fuzz log")?;
            stats.read(&line);
            finding.read(&line);
            if is_progress(&line) {
                eprintln!("{line}");
            }
            tail.push(line);
            if tail.len() > 40 {
                tail.remove(0);
            }
        }
    }
    let status = child.wait().context("waiting for cargo fuzz")?;
    let took = started.elapsed().as_secs_f64();
    if !status.success() {
        for line in &tail {
            eprintln!("{line}");
        }
        bail!(
            "the fuzzer stopped with {status} after {took:.0} s{}: {}\n  input: {}\n  \
             whole log: {}\n  keep the input as kcore/fuzz/corpus/{TARGET}/crash-<what>: \
             the committed-corpus host test then fails until KCore is fixed",
            stats
                .executions
                .or(stats.last_count)
                .map_or(String::new(), |n| format!(" ({n} executions)")),
            finding.panic.as_deref().unwrap_or("see the log above"),
            finding
                .input
                .as_deref()
                .unwrap_or("kcore/fuzz/artifacts/dispatcher/"),
            cmd::show(&log_path)
        );
    }
    cmd::step("fuzz", stats.summary(took, &scratch));
    Ok(())
}

/// `cargo fuzz <sub> dispatcher` with this command's build options.
fn cargo_fuzz(sub: &str, args: &FuzzArgs, fuzz_dir: &Path) -> Command {
    let mut c = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    c.args(["fuzz", sub, TARGET])
        .arg("--fuzz-dir")
        .arg(fuzz_dir)
        .arg("--target-dir")
        .arg(target_dir(args.asan))
        .args(["--sanitizer", if args.asan { "address" } else { "none" }])
        .current_dir(fuzz_dir);
    if args.asan {
        c.env("RUSTC_BOOTSTRAP", "1");
    }
    if sub == "run" && args.jobs > 1 {
        c.args(["--jobs", &args.jobs.to_string()]);
    }
    c
}

/// The fuzz build's own target directory (its flags differ from every other
/// build's): `fuzz/` (`fuzz-asan/` with AddressSanitizer) under
/// `CARGO_TARGET_DIR` or the workspace's `target/`.
fn target_dir(asan: bool) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| paths::root().join("target"))
        .join(if asan { "fuzz-asan" } else { "fuzz" })
}

/// Installs `cargo-fuzz` from crates.io unless `cargo fuzz` already works.
fn ensure_cargo_fuzz() -> Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let probe = Command::new(&cargo)
        .args(["fuzz", "--version"])
        .stdin(Stdio::null())
        .output();
    if let Ok(out) = &probe
        && out.status.success()
    {
        let version = String::from_utf8_lossy(&out.stdout);
        cmd::step("fuzz", format!("using {}", version.trim()));
        return Ok(());
    }
    cmd::step(
        "fuzz",
        format!("installing cargo-fuzz {CARGO_FUZZ_VERSION} from crates.io"),
    );
    let mut install = Command::new(&cargo);
    install.args([
        "install",
        "--locked",
        "cargo-fuzz",
        "--version",
        CARGO_FUZZ_VERSION,
    ]);
    if let Err(e) = cmd::run_visible(&mut install) {
        bail!(
            "cannot install cargo-fuzz ({e:#}); `cargo xtask fuzz` needs it. It comes from \
             crates.io: check that crates.io is reachable, or install it by hand with \
             `cargo install --locked cargo-fuzz` and run `cargo xtask fuzz` again"
        );
    }
    let ok = Command::new(&cargo)
        .args(["fuzz", "--version"])
        .stdin(Stdio::null())
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        bail!(
            "cargo-fuzz was installed but `cargo fuzz` does not run: is cargo's bin directory \
             (usually ~/.cargo/bin) on PATH?"
        );
    }
    Ok(())
}

/// libFuzzer itself is C++, compiled by `libfuzzer-sys`'s build script.
fn ensure_cxx() -> Result<()> {
    let cxx = std::env::var_os("CXX").unwrap_or_else(|| "c++".into());
    let ok = Command::new(&cxx)
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        bail!(
            "`{}` does not run: building libFuzzer needs a C++ compiler (Debian: `apt-get install g++`)",
            cxx.to_string_lossy()
        );
    }
    Ok(())
}

/// What a failing run left: the panic and the input that caused it.
#[derive(Debug, Default, PartialEq, Eq)]
struct Finding {
    /// `panicked at <where>: <message>`.
    panic: Option<String>,
    /// The file libFuzzer wrote the input to.
    input: Option<String>,
    /// The previous line was a panic's location: its message follows.
    expect_message: bool,
}

impl Finding {
    fn read(&mut self, line: &str) {
        if self.expect_message {
            self.expect_message = false;
            if let Some(p) = &mut self.panic {
                p.push(' ');
                p.push_str(line.trim());
            }
        }
        if let Some((_, at)) = line.split_once(" panicked at ")
            && self.panic.is_none()
        {
            self.panic = Some(format!("panicked at {}", at.trim()));
            self.expect_message = true;
        }
        if let Some((_, file)) = line.split_once("Test unit written to ") {
            self.input = Some(file.trim().to_string());
        }
    }
}

/// Lines worth showing live: libFuzzer's start, its periodic status (in
/// fork mode, one line per finished job), its end.
fn is_progress(line: &str) -> bool {
    ["INITED", "pulse", "DONE", "INFO: seed corpus", "Done "]
        .iter()
        .any(|k| line.contains(k))
        || (line.starts_with('#') && line.contains(" job: "))
        || line.starts_with("INFO: Running with entropic")
}

/// What the fuzzer reported.
#[derive(Debug, Default, PartialEq, Eq)]
struct Stats {
    /// `stat::number_of_executed_units`.
    executions: Option<u64>,
    /// `stat::average_exec_per_sec`.
    per_second: Option<u64>,
    /// `stat::new_units_added`.
    new_inputs: Option<u64>,
    /// `cov:` of the last status line: coverage points (edges) reached.
    coverage: Option<u64>,
    /// `ft:` of the last status line: features (edge and counter pairs).
    features: Option<u64>,
    /// `corp:` of the last status line: inputs in the corpus.
    corpus: Option<u64>,
    /// The execution count that starts the last status line (`#N`): all
    /// there is in fork mode, where no `stat::` lines are printed.
    last_count: Option<u64>,
}

impl Stats {
    /// Takes what a line of libFuzzer's output says.
    fn read(&mut self, line: &str) {
        let stat = |name: &str| {
            line.strip_prefix(name)
                .and_then(|rest| rest.trim_start_matches(':').trim().parse().ok())
        };
        if let Some(v) = stat("stat::number_of_executed_units") {
            self.executions = Some(v);
        }
        if let Some(v) = stat("stat::average_exec_per_sec") {
            self.per_second = Some(v);
        }
        if let Some(v) = stat("stat::new_units_added") {
            self.new_inputs = Some(v);
        }
        // "#4096  pulse  cov: 1199 ft: 3671 corp: 236/111Kb lim: 968 exec/s: 120 rss: 526Mb"
        if let Some(rest) = line.strip_prefix('#') {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            self.last_count = digits.parse().ok().or(self.last_count);
            let mut words = line.split_whitespace();
            while let Some(w) = words.next() {
                let value = || -> Option<u64> {
                    let v = words.clone().next()?;
                    v.split('/').next()?.parse().ok()
                };
                match w {
                    "cov:" => self.coverage = value().or(self.coverage),
                    "ft:" => self.features = value().or(self.features),
                    "corp:" => self.corpus = value().or(self.corpus),
                    _ => {}
                }
            }
        }
    }

    fn summary(&self, seconds: f64, scratch: &Path) -> String {
        let n = |v: Option<u64>| v.map_or("?".to_string(), |v| v.to_string());
        let executions = self.executions.or(self.last_count);
        let per_second = self
            .per_second
            .or_else(|| executions.map(|e| (e as f64 / seconds.max(1.0)) as u64));
        let added = self
            .new_inputs
            .map_or(String::new(), |a| format!("{a} added, "));
        format!(
            "no crash: {} executions in {seconds:.0} s ({}/s); coverage {} edges, {} features; \
             corpus {} inputs ({added}in {})",
            n(executions),
            n(per_second),
            n(self.coverage),
            n(self.features),
            n(self.corpus),
            cmd::show(scratch)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_libfuzzer_output() {
        let mut s = Stats::default();
        for line in [
            "#2\tINITED cov: 840 ft: 2743 corp: 293/133Kb exec/s: 0 rss: 28Mb",
            "#4096\tpulse  cov: 1199 ft: 3671 corp: 236/111Kb lim: 968 exec/s: 120 rss: 526Mb",
            "#9000\tDONE   cov: 1230 ft: 3918 corp: 300/152Kb lim: 968 exec/s: 125 rss: 530Mb",
            "Done 9000 runs in 31 second(s)",
            "stat::number_of_executed_units: 9000",
            "stat::average_exec_per_sec:     290",
            "stat::new_units_added:          41",
        ] {
            s.read(line);
        }
        assert_eq!(
            s,
            Stats {
                executions: Some(9000),
                per_second: Some(290),
                new_inputs: Some(41),
                coverage: Some(1230),
                features: Some(3918),
                corpus: Some(300),
                last_count: Some(9000),
            }
        );
        let mut fork = Stats::default();
        fork.read(
            "#3709480: cov: 1132 ft: 4699 corp: 1079 exec/s: 2772 oom/timeout/crash: 0/0/0 time: 602s job: 47 dft_time: 0",
        );
        assert_eq!(
            (fork.last_count, fork.coverage, fork.corpus),
            (Some(3709480), Some(1132), Some(1079))
        );
        let mut f = Finding::default();
        for line in [
            "thread '<unnamed>' (24859) panicked at kcore/src/mem_protect.rs:252:23:",
            "attempt to shift left with overflow",
            "stack backtrace:",
            "artifact_prefix='a/'; Test unit written to a/crash-30e6",
        ] {
            f.read(line);
        }
        assert_eq!(
            f.panic.as_deref(),
            Some(
                "panicked at kcore/src/mem_protect.rs:252:23: attempt to shift left with overflow"
            )
        );
        assert_eq!(f.input.as_deref(), Some("a/crash-30e6"));
        assert!(is_progress("#4096\tpulse  cov: 1"));
        assert!(is_progress(
            "#91234: cov: 901 ft: 4001 corp: 820 exec/s: 3000 oom/timeout/crash: 0/0/0 time: 33s job: 7 dft_time: 0"
        ));
        assert!(!is_progress("#17\tNEW    cov: 2"));
    }
}
