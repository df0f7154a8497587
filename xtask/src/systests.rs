//! The QEMU system tests (`kcore-systests`), each in a process of its own and
//! as many at once as the machine has QEMU slots, the slowest first.
//!
//! `cargo test` runs a package's test binaries one after the other, so a
//! binary with one long test (`kvm_life`, `kserv_612`) left the second slot
//! idle for minutes. Here every test of every binary is a job: cargo builds
//! the binaries (`--no-run`, their paths from its JSON messages), each binary
//! lists its tests (`--list`), and [`JOBS`] workers take the jobs in
//! [`SLOW_FIRST`] order (longest-processing-time first packs the two slots
//! best) and run `<binary> --exact <test>`. The QEMUs themselves are still
//! limited by the tests' own slot files (`kcore_systests::QemuSlot`), which
//! hold across processes, so a test that runs two QEMUs side by side simply
//! waits for both. Each job's output goes to
//! `build/logs/systests/<binary>.<test>.txt` and is shown when it fails;
//! one line is printed as each job ends, and every job runs even after a
//! failure (as `--no-fail-fast`).

use std::collections::{BTreeMap, VecDeque};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::paths;

/// The package.
const PACKAGE: &str = "kcore-systests";

/// Jobs at once by default: the tests' own QEMU limit (`MAX_QEMUS`); more
/// would only queue for a slot. `$KCORE_QEMU_JOBS` changes both.
const JOBS: usize = 2;

/// Tests (`binary::test`) and whole binaries by their measured wall time,
/// longest first (two QEMUs on a two-core machine; `cargo xtask test`
/// prints each job's time): a job takes the place of the first entry
/// naming it or its binary; within one place jobs keep their binary's
/// order. Jobs named nowhere run after these, in binary order.
const SLOW_FIRST: &[&str] = &[
    "efi::efi_acpi_4_cpus_at_el1",
    "kvm_life",
    "debqemu",
    "attacks",
    "efi",
    "raspi4b::raspi4b_linux_guests_on_the_gic_400",
    "kserv_612",
    "kvm_guest",
    "kvm_direct",
    "kvm_bench",
    "residue",
    "raspi4b",
    "server",
];

/// One test of one binary.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Job {
    /// The binary's target name (`kvm_life`).
    binary: String,
    path: PathBuf,
    /// The test's full name in its binary.
    test: String,
}

/// How a job ended.
struct Done {
    job: Job,
    passed: bool,
    took: Duration,
}

fn jobs_at_once() -> usize {
    std::env::var("KCORE_QEMU_JOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(JOBS)
}

/// Builds, lists and runs every system test; returns one `test result:`
/// line per binary for `cargo xtask test`'s summary, or an error naming the
/// tests that failed.
pub fn run() -> anyhow::Result<Vec<String>> {
    let binaries = build()?;
    let mut jobs = Vec::new();
    let mut ignored: BTreeMap<String, u64> = BTreeMap::new();
    for (name, path) in &binaries {
        let listed = list(path, false)?;
        let skipped = list(path, true)?;
        *ignored.entry(name.clone()).or_default() += skipped.len() as u64;
        jobs.extend(
            listed
                .into_iter()
                .filter(|t| !skipped.contains(t))
                .map(|test| Job {
                    binary: name.clone(),
                    path: path.clone(),
                    test,
                }),
        );
    }
    order(&mut jobs);
    let out_dir = paths::build_dir().join("logs").join("systests");
    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let workers = jobs_at_once();
    eprintln!(
        "systests: {} tests in {} binaries, {workers} at a time",
        jobs.len(),
        binaries.len()
    );
    let started = Instant::now();
    let queue = Mutex::new(jobs.into_iter().collect::<VecDeque<_>>());
    let done = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| worker(&queue, &done, &out_dir, started));
        }
    });
    let done = done.into_inner().unwrap_or_else(|e| e.into_inner());
    report(&done, &ignored, started.elapsed())
}

/// `cargo test -p kcore-systests --no-run`: the test binaries by name.
fn build() -> anyhow::Result<Vec<(String, PathBuf)>> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(&cargo)
        .args([
            "test",
            "-p",
            PACKAGE,
            "--no-run",
            "--message-format=json-render-diagnostics",
        ])
        .current_dir(paths::root())
        .stderr(Stdio::inherit())
        .output()
        .context("running cargo test --no-run")?;
    if !out.status.success() {
        bail!("building the system tests failed ({})", out.status);
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let binaries = test_binaries(&text);
    if binaries.is_empty() {
        bail!("cargo built no test binary of {PACKAGE}");
    }
    Ok(binaries)
}

/// The test executables in cargo's JSON messages: `(target name, path)`,
/// integration tests and the library's unit tests alike.
fn test_binaries(messages: &str) -> Vec<(String, PathBuf)> {
    let mut found: Vec<(String, PathBuf)> = messages
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["profile"]["test"] == true)
        .filter_map(|m| {
            let name = m["target"]["name"].as_str()?.replace('-', "_");
            let path = m["executable"].as_str()?;
            Some((name, PathBuf::from(path)))
        })
        .collect();
    found.sort();
    found.dedup();
    found
}

/// The tests a binary lists (`--list --format terse`); with `ignored`, only
/// its ignored ones.
fn list(binary: &Path, ignored: bool) -> anyhow::Result<Vec<String>> {
    let mut cmd = Command::new(binary);
    cmd.args(["--list", "--format", "terse"]);
    if ignored {
        cmd.arg("--ignored");
    }
    let out = cmd
        .output()
        .with_context(|| format!("listing the tests of {}", binary.display()))?;
    if !out.status.success() {
        bail!("{} --list failed ({})", binary.display(), out.status);
    }
    Ok(terse_tests(&String::from_utf8_lossy(&out.stdout)))
}

/// The test names of a `--list --format terse` output (`name: test`).
fn terse_tests(listing: &str) -> Vec<String> {
    listing
        .lines()
        .filter_map(|l| l.strip_suffix(": test"))
        .map(str::to_string)
        .collect()
}

/// [`SLOW_FIRST`] order; a stable sort keeps each binary's own order.
fn order(jobs: &mut [Job]) {
    let rank = |j: &Job| {
        SLOW_FIRST
            .iter()
            .position(|e| match e.split_once("::") {
                Some((binary, test)) => binary == j.binary && test == j.test,
                None => *e == j.binary,
            })
            .unwrap_or(SLOW_FIRST.len())
    };
    jobs.sort_by(|a, b| rank(a).cmp(&rank(b)).then_with(|| a.binary.cmp(&b.binary)));
}

fn worker(queue: &Mutex<VecDeque<Job>>, done: &Mutex<Vec<Done>>, out_dir: &Path, t0: Instant) {
    loop {
        let Some(job) = queue.lock().unwrap_or_else(|e| e.into_inner()).pop_front() else {
            return;
        };
        let out = out_dir.join(format!(
            "{}.{}.txt",
            job.binary,
            job.test.replace("::", ".")
        ));
        let t = Instant::now();
        let passed = run_one(&job, &out);
        let took = t.elapsed();
        let mut stderr = std::io::stderr().lock();
        let _ = writeln!(
            stderr,
            "systests: {} {}::{} in {:.1} s (at {:.0} s)",
            if passed { "ok    " } else { "FAILED" },
            job.binary,
            job.test,
            took.as_secs_f64(),
            t0.elapsed().as_secs_f64()
        );
        if !passed {
            let _ = writeln!(stderr, "---- output of {} ----", out.display());
            if let Ok(f) = std::fs::File::open(&out) {
                for line in BufReader::new(f).lines().map_while(Result::ok) {
                    let _ = writeln!(stderr, "{line}");
                }
            }
            let _ = writeln!(stderr, "---- end of {} ----", out.display());
        }
        drop(stderr);
        done.lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Done { job, passed, took });
    }
}

/// Runs one job with its output in `out`; whether it passed.
fn run_one(job: &Job, out: &Path) -> bool {
    let Ok(file) = std::fs::File::create(out) else {
        return false;
    };
    let Ok(err) = file.try_clone() else {
        return false;
    };
    Command::new(&job.path)
        .args(["--exact", &job.test, "--test-threads=1"])
        .current_dir(paths::root().join("tests"))
        .stdout(file)
        .stderr(err)
        .status()
        .is_ok_and(|s| s.success())
}

/// One `test result:` line per binary, the slowest jobs, and an error if
/// any job failed.
fn report(
    done: &[Done],
    ignored: &BTreeMap<String, u64>,
    took: Duration,
) -> anyhow::Result<Vec<String>> {
    let mut lines = Vec::new();
    for (binary, skipped) in ignored {
        let mine: Vec<&Done> = done.iter().filter(|d| &d.job.binary == binary).collect();
        let passed = mine.iter().filter(|d| d.passed).count();
        let failed = mine.len() - passed;
        let secs: f64 = mine.iter().map(|d| d.took.as_secs_f64()).sum();
        lines.push(format!(
            "test result: {}. {passed} passed; {failed} failed; {skipped} ignored; \
             0 measured; 0 filtered out; finished in {secs:.2}s ({binary})",
            if failed == 0 { "ok" } else { "FAILED" }
        ));
    }
    let mut slowest: Vec<&Done> = done.iter().collect();
    slowest.sort_by_key(|d| std::cmp::Reverse(d.took));
    eprintln!(
        "systests: {} tests in {:.1} s; the slowest:",
        done.len(),
        took.as_secs_f64()
    );
    for d in slowest.iter().take(10) {
        eprintln!(
            "  {:>7.1} s  {}::{}",
            d.took.as_secs_f64(),
            d.job.binary,
            d.job.test
        );
    }
    let failed: Vec<String> = done
        .iter()
        .filter(|d| !d.passed)
        .map(|d| format!("{}::{}", d.job.binary, d.job.test))
        .collect();
    if !failed.is_empty() {
        bail!("system tests failed: {}", failed.join(", "));
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(binary: &str, test: &str) -> Job {
        Job {
            binary: binary.into(),
            path: PathBuf::from(format!("/t/{binary}")),
            test: test.into(),
        }
    }

    #[test]
    fn slow_binaries_first_and_each_binarys_order_kept() {
        let mut jobs = vec![
            job("boot", "b1"),
            job("wrong_el", "w"),
            job("kvm_guest", "g2"),
            job("raspi4b", "raspi4b_spin_table"),
            job("boot", "a0"),
            job("kvm_life", "l"),
            job("raspi4b", "raspi4b_linux_guests_on_the_gic_400"),
            job("kvm_guest", "g1"),
        ];
        order(&mut jobs);
        let names: Vec<&str> = jobs.iter().map(|j| j.test.as_str()).collect();
        assert_eq!(
            names,
            [
                "l",
                "raspi4b_linux_guests_on_the_gic_400",
                "g2",
                "g1",
                "raspi4b_spin_table",
                "b1",
                "a0",
                "w"
            ]
        );
    }

    #[test]
    fn terse_listing() {
        let listing = "linux_guests: test\nmod_a::inner: test\nsomething: bench\n\n";
        assert_eq!(terse_tests(listing), ["linux_guests", "mod_a::inner"]);
        assert!(terse_tests("").is_empty());
    }

    #[test]
    fn test_executables_from_cargo_messages() {
        let messages = concat!(
            r#"{"reason":"compiler-artifact","target":{"name":"kvm_life","kind":["test"]},"profile":{"test":true},"executable":"/x/kvm_life-1"}"#,
            "\n",
            r#"{"reason":"compiler-artifact","target":{"name":"kcore-systests","kind":["lib"]},"profile":{"test":true},"executable":"/x/kcore_systests-2"}"#,
            "\n",
            r#"{"reason":"compiler-artifact","target":{"name":"kcore-systests","kind":["lib"]},"profile":{"test":false},"executable":null}"#,
            "\n",
            r#"{"reason":"build-finished","success":true}"#,
            "\nnot json\n"
        );
        assert_eq!(
            test_binaries(messages),
            [
                (
                    "kcore_systests".to_string(),
                    PathBuf::from("/x/kcore_systests-2")
                ),
                ("kvm_life".to_string(), PathBuf::from("/x/kvm_life-1")),
            ]
        );
    }

    #[test]
    fn one_result_line_per_binary_and_failures_named() {
        let done = vec![
            Done {
                job: job("boot", "a"),
                passed: true,
                took: Duration::from_secs(2),
            },
            Done {
                job: job("boot", "b"),
                passed: false,
                took: Duration::from_secs(3),
            },
        ];
        let ignored = BTreeMap::from([("boot".to_string(), 1)]);
        let err = report(&done, &ignored, Duration::from_secs(5)).expect_err("one failed");
        assert!(format!("{err}").contains("boot::b"));
        let lines = report(&done[..1], &ignored, Duration::from_secs(2)).expect("passed");
        assert_eq!(
            lines,
            [
                "test result: ok. 1 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; \
              finished in 2.00s (boot)"
            ]
        );
    }
}
