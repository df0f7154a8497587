//! The KVM selftests of Debian's kernel source, for KServ's `kvmselftests`
//! test: the same programs KVM's developers run, on the shim and on stock KVM.
//!
//! They come from `linux-source-6.1` at the version of KServ's kernel, built
//! static and unmodified with the cross compiler: `make headers` at the top
//! of the tree, then `make -k` in `tools/testing/selftests/kvm` with
//! `ARCH=arm64 CROSS_COMPILE=aarch64-linux-gnu- EXTRA_CFLAGS=-static`. The
//! list of tests is the Makefile's own `TEST_GEN_PROGS_aarch64`; a test that
//! does not build stays in the list with the compiler's first error as its
//! reason, so the system test reports it instead of losing it. The stripped
//! programs and the list are kept in `.cache/debian/kvm-selftests-<version>/`
//! and the source is dropped (building takes a few minutes; it happens once
//! per kernel version).
//!
//! In the initramfs: `/lib/kserv/kvm-selftests/<name>` (`<name>` as the
//! Makefile spells it, e.g. `aarch64/arch_timer`) and
//! `/lib/kserv/kvm-selftests.list`, one line per test: `<name> built` or
//! `<name> unbuilt <reason>`.

use crate::cmd;
use crate::fetch::{self, Fetched};
use crate::paths;
use anyhow::{Context, Result, bail};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// How the tests are built; part of the cache stamp, so a change rebuilds.
const RECIPE: &str = "make headers; make -k -C tools/testing/selftests/kvm ARCH=arm64 \
                      CROSS_COMPILE=aarch64-linux-gnu- EXTRA_CFLAGS=-static; strip";

/// Marks a complete cache directory; holds the version and [`RECIPE`].
const STAMP: &str = ".kcore-selftests";

/// The list's name inside the cache and the initramfs directory.
const LIST: &str = "list";

/// One selftest of the Makefile's aarch64 list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selftest {
    /// As the Makefile names it (`aarch64/arch_timer`, `demand_paging_test`).
    pub name: String,
    /// Why it did not build; `None` when it did.
    pub unbuilt: Option<String>,
}

/// The built selftests.
#[derive(Clone, Debug)]
pub struct Selftests {
    /// The cache directory holding `<name>` programs and the list.
    pub dir: PathBuf,
    /// Every test of the list, in the Makefile's order.
    pub tests: Vec<Selftest>,
}

impl Selftests {
    /// The list file's text (see the module's documentation).
    pub fn list_text(&self) -> String {
        list_text(&self.tests)
    }
}

/// The selftests for `fetched`'s kernel version, built if the cache does not
/// hold them yet.
pub fn ensure(fetched: &Fetched) -> Result<Selftests> {
    let dir = paths::cache_dir().join("debian").join(format!(
        "kvm-selftests-{}",
        fetched.version.replace(':', "%3a")
    ));
    let stamp = format!("{}\n{RECIPE}\n", fetched.version);
    let cached = fs::read_to_string(dir.join(STAMP)).is_ok_and(|s| s == stamp);
    if !cached {
        build(fetched, &dir, &stamp)?;
    }
    let text = fs::read_to_string(dir.join(LIST))
        .with_context(|| format!("cannot read {}", dir.join(LIST).display()))?;
    let tests = parse_list(&text).with_context(|| format!("{} is malformed", dir.display()))?;
    for t in tests.iter().filter(|t| t.unbuilt.is_none()) {
        if !dir.join(&t.name).is_file() {
            bail!("{} lacks the program {}", dir.display(), t.name);
        }
    }
    let built = tests.iter().filter(|t| t.unbuilt.is_none()).count();
    cmd::step(
        "kvm-selftests",
        format!(
            "{} of {} built from linux-source-{} {}{}",
            built,
            tests.len(),
            fetched.series.name(),
            fetched.version,
            if cached { " (cached)" } else { "" }
        ),
    );
    Ok(Selftests { dir, tests })
}

fn build(fetched: &Fetched, dir: &Path, stamp: &str) -> Result<()> {
    let tarball = fetch::linux_source(fetched)?;
    let work = paths::cache_dir()
        .join("debian")
        .join("kvm-selftests.partial");
    for d in [&work, &dir.to_path_buf()] {
        if d.exists() {
            fs::remove_dir_all(d).with_context(|| format!("cannot remove {}", d.display()))?;
        }
    }
    fs::create_dir_all(&work).with_context(|| format!("cannot create {}", work.display()))?;
    cmd::step(
        "kvm-selftests",
        format!("unpacking {}", cmd::show(&tarball)),
    );
    cmd::run(
        Command::new("tar")
            .arg("-xJf")
            .arg(&tarball)
            .arg("-C")
            .arg(&work),
    )?;
    let src = work.join(format!("linux-source-{}", fetched.series.name()));
    let kvm = src.join("tools/testing/selftests/kvm");
    let makefile = fs::read_to_string(kvm.join("Makefile"))
        .with_context(|| format!("cannot read {}", kvm.join("Makefile").display()))?;
    let names = aarch64_tests(&makefile);
    if names.is_empty() {
        bail!("{} lists no aarch64 tests", kvm.join("Makefile").display());
    }
    let jobs = std::thread::available_parallelism().map_or(1, |n| n.get());
    let cross = ["ARCH=arm64", "CROSS_COMPILE=aarch64-linux-gnu-"];
    cmd::step("kvm-selftests", "make headers");
    cmd::run(
        Command::new("make")
            .arg("-s")
            .arg(format!("-j{jobs}"))
            .args(cross)
            .arg("headers")
            .current_dir(&src),
    )?;
    cmd::step(
        "kvm-selftests",
        format!("building {} tests (static)", names.len()),
    );
    // `-k`: a test that does not compile must not stop the others; its
    // error is what the list records.
    let out = Command::new("make")
        .arg("-k")
        .arg(format!("-j{jobs}"))
        .args(cross)
        .arg("EXTRA_CFLAGS=-static")
        .current_dir(&kvm)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run make in {}", kvm.display()))?;
    let log =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);

    let staging = dir.with_extension("partial");
    if staging.exists() {
        fs::remove_dir_all(&staging)
            .with_context(|| format!("cannot remove {}", staging.display()))?;
    }
    let mut tests = Vec::new();
    for name in names {
        let program = kvm.join(&name);
        let unbuilt = if program.is_file() {
            let to = staging.join(&name);
            if let Some(parent) = to.parent() {
                fs::create_dir_all(parent)
                    .with_context(|| format!("cannot create {}", parent.display()))?;
            }
            cmd::run(
                Command::new("aarch64-linux-gnu-strip")
                    .arg("-o")
                    .arg(&to)
                    .arg(&program),
            )?;
            None
        } else {
            Some(first_error(&log, &name))
        };
        tests.push(Selftest { name, unbuilt });
    }
    if tests.iter().all(|t| t.unbuilt.is_some()) {
        bail!("no KVM selftest built:\n{log}");
    }
    fs::create_dir_all(&staging).with_context(|| format!("cannot create {}", staging.display()))?;
    fs::write(staging.join(LIST), list_text(&tests))
        .with_context(|| format!("cannot write the list in {}", staging.display()))?;
    fs::write(staging.join(STAMP), stamp)
        .with_context(|| format!("cannot write the stamp in {}", staging.display()))?;
    fs::rename(&staging, dir)
        .with_context(|| format!("cannot move {} to {}", staging.display(), dir.display()))?;
    fs::remove_dir_all(&work).with_context(|| format!("cannot remove {}", work.display()))?;
    fetch::forget_source(fetched)
}

/// The `TEST_GEN_PROGS_aarch64 += <name>` entries of the selftests' Makefile.
fn aarch64_tests(makefile: &str) -> Vec<String> {
    makefile
        .lines()
        .filter_map(|l| {
            let rest = l.trim().strip_prefix("TEST_GEN_PROGS_aarch64")?;
            let rest = rest.trim_start();
            let value = rest
                .strip_prefix("+=")
                .or_else(|| rest.strip_prefix(":="))
                .or_else(|| rest.strip_prefix('='))?;
            Some(
                value
                    .split_whitespace()
                    .map(str::to_string)
                    .collect::<Vec<_>>(),
            )
        })
        .flatten()
        .collect()
}

/// The first compiler or linker error the build log shows for `name`'s
/// source, on one line; a generic reason if the log names none.
fn first_error(log: &str, name: &str) -> String {
    let source = format!("{name}.c");
    let lines: Vec<&str> = log.lines().collect();
    let mentions = |l: &str| l.contains(&source) || l.contains(&format!("/{name}:"));
    let found = lines
        .iter()
        .find(|l| mentions(l) && (l.contains("error:") || l.contains("undefined reference")))
        .map(|l| {
            // `path/to/x.c:9:10: fatal error: ...` -> `x.c:9:10: fatal error: ...`
            let l = l.trim();
            let start = l.rfind(&source).unwrap_or(0);
            let tail = &l[start..];
            tail.strip_prefix(&source)
                .map(|rest| format!("{}{rest}", source.rsplit('/').next().unwrap_or(&source)))
                .unwrap_or_else(|| tail.to_string())
        });
    found.unwrap_or_else(|| "did not build (no error line names it)".to_string())
}

fn list_text(tests: &[Selftest]) -> String {
    tests
        .iter()
        .map(|t| match &t.unbuilt {
            None => format!("{} built\n", t.name),
            Some(why) => format!("{} unbuilt {}\n", t.name, why.replace('\n', " ")),
        })
        .collect()
}

fn parse_list(text: &str) -> Option<Vec<Selftest>> {
    text.lines()
        .map(|l| {
            let (name, rest) = l.split_once(' ')?;
            let unbuilt = match rest.split_once(' ') {
                None if rest == "built" => None,
                Some(("unbuilt", why)) => Some(why.to_string()),
                _ => return None,
            };
            Some(Selftest {
                name: name.to_string(),
                unbuilt,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_makefiles_aarch64_list() {
        let mk = "TEST_GEN_PROGS_x86_64 += x86_64/cpuid_test\n\
                  TEST_GEN_PROGS_aarch64 += aarch64/arch_timer\n\
                  TEST_GEN_PROGS_aarch64 += demand_paging_test\n\
                  TEST_GEN_PROGS_s390x += demand_paging_test\n\
                  TEST_GEN_PROGS += $(TEST_GEN_PROGS_$(UNAME_M))\n";
        assert_eq!(
            aarch64_tests(mk),
            ["aarch64/arch_timer", "demand_paging_test"]
        );
    }

    #[test]
    fn names_the_error_of_a_test_that_did_not_build() {
        let log = "gcc -c lib/x.c\n\
                   aarch64/vgic_init.c:9:10: fatal error: linux/bitfield.h: No such file\n\
                   /usr/bin/ld: /src/kvm/dirty_log_test.c:775: undefined reference to `TEST_ASSERT_EQ'\n";
        assert_eq!(
            first_error(log, "aarch64/vgic_init"),
            "vgic_init.c:9:10: fatal error: linux/bitfield.h: No such file"
        );
        assert_eq!(
            first_error(log, "dirty_log_test"),
            "dirty_log_test.c:775: undefined reference to `TEST_ASSERT_EQ'"
        );
        assert!(first_error(log, "rseq_test").starts_with("did not build"));
    }

    #[test]
    fn list_round_trips() {
        let tests = vec![
            Selftest {
                name: "aarch64/arch_timer".into(),
                unbuilt: None,
            },
            Selftest {
                name: "dirty_log_test".into(),
                unbuilt: Some("x.c:1: error: y".into()),
            },
        ];
        let text = list_text(&tests);
        assert_eq!(
            text,
            "aarch64/arch_timer built\ndirty_log_test unbuilt x.c:1: error: y\n"
        );
        assert_eq!(parse_list(&text), Some(tests));
        assert_eq!(parse_list("x maybe\n"), None);
    }
}
