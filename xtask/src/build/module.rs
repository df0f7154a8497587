//! The `kserv_shim.ko` module: the Rust core (`kserv-core`, a static library
//! for `aarch64-unknown-none-softfloat`) reduced to one relocatable object,
//! plus the C glue, built by Kbuild against the fetched Debian headers; and
//! beside it the test images' modules: `kserv_selftest.ko`, built the same
//! way from `kserv-selftest`, and `kserv_attack.ko`, the attack suite's
//! malicious-KServ module (plain C).
//!
//! They are built for each kernel series KServ boots (Debian's 6.1 and 6.12):
//! Kbuild runs in a copy of `kserv-shim/module` under `build/kserv/module`
//! (6.1) or `build/kserv-6.12/module`, so the source tree stays free of
//! build products. Each core arrives there as
//! `<name>.o_shipped` (Kbuild's name for a prebuilt object) with the
//! `.<name>.o.cmd` file modpost reads for every object of a module. Beside
//! the sources goes `kcore_abi.h`, KCore's ABI for C, generated from
//! `kcore-abi` ([`super::abi_header`]).

use super::{abi_header, cargo};
use crate::cmd;
use crate::fetch::Fetched;
use crate::paths;
use anyhow::{Context, Result, bail};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The target of the module's Rust core: no FP/SIMD register use.
const CORE_TARGET: &str = "aarch64-unknown-none-softfloat";
/// The sources Kbuild compiles, copied from `kserv-shim/module`.
const SOURCES: [&str; 7] = [
    "Kbuild",
    "kserv_shim_glue.c",
    "kserv_kvm.c",
    "kserv_core.h",
    "kserv_selftest_glue.c",
    "kserv_selftest.h",
    "kserv_attack.c",
];

/// A Rust core a module links: its package, the library it builds, the
/// prefix of every symbol its C glue calls in it, and the object Kbuild
/// takes it as.
struct Core {
    package: &'static str,
    lib: &'static str,
    export_prefix: &'static str,
    object: &'static str,
}

/// `kserv_shim.ko`'s core and `kserv_selftest.ko`'s (see `Kbuild`).
const CORES: [Core; 2] = [
    Core {
        package: "kserv-core",
        lib: "kserv_core",
        export_prefix: "kserv_core_",
        object: "core.o",
    },
    Core {
        package: "kserv-selftest",
        lib: "kserv_selftest",
        export_prefix: "kserv_selftest_",
        object: "selftest.o",
    },
];

/// The modules built for the kernel KServ runs.
pub struct Modules {
    /// `kserv_shim.ko`.
    pub shim: PathBuf,
    /// `kserv_selftest.ko` (test images only).
    pub selftest: PathBuf,
    /// `kserv_attack.ko` (test images only).
    pub attack: PathBuf,
}

/// Builds `kserv_shim.ko`, `kserv_selftest.ko` and `kserv_attack.ko` for the
/// fetched kernel into KServ's directory of its series (`build/kserv/` for
/// 6.1, `build/kserv-6.12/` for 6.12; Kbuild runs in its `module/`). The
/// Rust cores are the same objects for every series: only Kbuild runs again.
pub fn build(fetched: &Fetched) -> Result<Modules> {
    let out = paths::kserv_dir(fetched.series);
    let dir = out.join("module");
    kbuild(fetched, &dir)?;
    let suffix = fetched.series.suffix();
    let [shim, selftest, attack] = [
        ("kserv_shim.ko", "module"),
        ("kserv_selftest.ko", "selftest module"),
        ("kserv_attack.ko", "attack module"),
    ]
    .map(|(ko, step)| {
        let installed = out.join(ko);
        install(
            fetched,
            &dir.join(ko),
            &installed,
            &format!("{step}{suffix}"),
        )
        .map(|()| installed)
    });
    Ok(Modules {
        shim: shim?,
        selftest: selftest?,
        attack: attack?,
    })
}

/// Runs Kbuild for the three modules in `dir` against the fetched headers.
fn kbuild(fetched: &Fetched, dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;

    for core in &CORES {
        let lib = cargo::build(core.package, &[], CORE_TARGET, core.lib, "staticlib")?
            .into_iter()
            .find(|f| f.extension().is_some_and(|e| e == "a"))
            .with_context(|| format!("{} produced no static library", core.package))?;
        let object = core_object(&lib, dir, core)?;
        cmd::write_if_changed(&dir.join(format!("{}_shipped", core.object)), &object)?;
        let cmd_file = format!(
            "cmd_{0}/{1} := cat {0}/{1}_shipped > {0}/{1}\n",
            dir.display(),
            core.object
        );
        cmd::write_if_changed(
            &dir.join(format!(".{}.cmd", core.object)),
            cmd_file.as_bytes(),
        )?;
    }

    let src = paths::root().join("kserv-shim").join("module");
    for f in SOURCES {
        cmd::copy_if_changed(&src.join(f), &dir.join(f))?;
    }
    cmd::write_if_changed(&dir.join(abi_header::FILE), abi_header::header().as_bytes())?;

    cmd::run(
        Command::new("make")
            .arg("-C")
            .arg(&fetched.kdir)
            .arg(format!("M={}", dir.display()))
            .args(["ARCH=arm64", "CROSS_COMPILE=aarch64-linux-gnu-", "modules"]),
    )
    .with_context(|| {
        format!(
            "Kbuild failed to build the modules for Linux {}",
            fetched.release
        )
    })
}

/// Copies a built module to `ko` without its debug info (as Debian's own
/// modules are), after checking it is for the fetched kernel.
fn install(fetched: &Fetched, built: &Path, ko: &Path, step: &str) -> Result<()> {
    let stripped = built.with_extension("ko.stripped");
    cmd::run(
        Command::new("aarch64-linux-gnu-strip")
            .arg("--strip-debug")
            .arg("-o")
            .arg(&stripped)
            .arg(built),
    )?;
    let changed = cmd::copy_if_changed(&stripped, ko)?;

    let vermagic = cmd::output(Command::new("modinfo").args(["-F", "vermagic"]).arg(ko))?;
    let vermagic = vermagic.trim();
    if vermagic.split_whitespace().next() != Some(fetched.release.as_str()) {
        bail!(
            "{} has vermagic `{vermagic}`, not for kernel {}",
            ko.display(),
            fetched.release
        );
    }
    cmd::step(
        step,
        format!(
            "{} (vermagic {vermagic}){}",
            cmd::show(ko),
            cmd::changed_note(changed)
        ),
    );
    Ok(())
}

/// The C library functions the core calls that the kernel provides better.
const WRAPPED: [&str; 3] = ["memcpy", "memset", "memcmp"];

/// Reduces a core's static library to what the glue uses: `ld -r` with an
/// `-u` for every exported symbol of `core.export_prefix` (`kserv_core_*`,
/// `kserv_selftest_*`) pulls in exactly the archive
/// members needed, with the core's calls to [`WRAPPED`] sent to the glue's
/// `__wrap_*` (the kernel's routines). Then hidden symbols (the compiler's
/// own `memcpy` and friends, if anything still pulls them in) become local,
/// so the C glue keeps using the kernel's, and sections the kernel has no
/// use for go.
fn core_object(lib: &Path, dir: &Path, core: &Core) -> Result<Vec<u8>> {
    let nm = cmd::output(
        Command::new("aarch64-linux-gnu-nm")
            .args(["-g", "--defined-only"])
            .arg(lib),
    )?;
    let mut exports: Vec<&str> = nm
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_addr, kind, name) = (f.next()?, f.next()?, f.next()?);
            (name.starts_with(core.export_prefix) && "TDRB".contains(kind)).then_some(name)
        })
        .collect();
    exports.sort_unstable();
    exports.dedup();
    if exports.is_empty() {
        bail!(
            "{} exports no {}* symbols",
            lib.display(),
            core.export_prefix
        );
    }
    let linked = dir.join(format!("{}.ld~", core.object));
    let mut ld = Command::new("aarch64-linux-gnu-ld");
    ld.arg("-r");
    // The core's calls to these go to the glue's `__wrap_*`, which are the
    // kernel's optimised routines, not the compiler's generic ones.
    for f in WRAPPED {
        ld.arg(format!("--wrap={f}"));
    }
    for e in &exports {
        ld.args(["-u", e]);
    }
    cmd::run(ld.arg(lib).arg("-o").arg(&linked))?;
    let object = dir.join(format!("{}.objcopy~", core.object));
    cmd::run(
        Command::new("aarch64-linux-gnu-objcopy")
            .args([
                "--localize-hidden",
                "-R",
                ".llvmbc",
                "-R",
                ".llvmcmd",
                "-R",
                ".eh_frame",
            ])
            .arg(&linked)
            .arg(&object),
    )?;
    let disasm = cmd::output(
        Command::new("aarch64-linux-gnu-objdump")
            .arg("-d")
            .arg(&object),
    )?;
    let indirect = indirect_branches(&disasm);
    if !indirect.is_empty() {
        bail!(
            "the module's Rust core {} contains indirect branches ({}): on CPUs with BTI \
             the kernel maps module text guarded, and Rust code has no landing pads, so \
             these would fault. Avoid `dyn`, function pointers, `core::fmt` and large \
             `match` jump tables in it.",
            core.package,
            indirect.join("; ")
        );
    }
    let bytes = fs::read(&object).with_context(|| format!("cannot read {}", object.display()))?;
    fs::remove_file(&linked).ok();
    fs::remove_file(&object).ok();
    Ok(bytes)
}

/// The indirect branches (`br`, `blr` and their pointer-authenticated
/// forms) in `objdump -d` output, each with the function it is in. Direct
/// calls (`bl` to C, including the glue's callbacks) and `ret` are fine:
/// BTI checks only the targets of indirect branches, and C functions have
/// landing pads.
fn indirect_branches(disasm: &str) -> Vec<String> {
    let mut function = "";
    let mut found = Vec::new();
    for line in disasm.lines() {
        if let Some(name) = line.strip_suffix(">:") {
            function = name.rsplit('<').next().unwrap_or(name);
            continue;
        }
        // `  1c:\td61f0200 \tbr\tx16`
        let mnemonic = line.split('\t').nth(2).map(str::trim).unwrap_or("");
        if matches!(
            mnemonic,
            "br" | "blr"
                | "braa"
                | "brab"
                | "braaz"
                | "brabz"
                | "blraa"
                | "blrab"
                | "blraaz"
                | "blrabz"
        ) {
            found.push(format!("{mnemonic} in {function}"));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_indirect_branches() {
        let disasm = "\
core.o:     file format elf64-littleaarch64

Disassembly of section .text.f:

0000000000000000 <kserv_core_f>:
   0:\td503233f \tpaciasp
   4:\t94000000 \tbl\t0 <kserv_glue_vmst_log>
   8:\td61f0200 \tbr\tx16
   c:\td65f03c0 \tret

0000000000000010 <g>:
  10:\td63f0100 \tblr\tx8
  14:\td65f03c0 \tret
";
        assert_eq!(
            indirect_branches(disasm),
            ["br in kserv_core_f", "blr in g"]
        );
        assert!(indirect_branches("   0:\t94000000 \tbl\t0 <x>\n").is_empty());
    }
}
