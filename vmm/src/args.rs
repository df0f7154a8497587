//! The command line of `kcore-vmm`.

use crate::fdt::Console;
use crate::layout::{self, MEM_MIB_RANGE};
use std::fmt;
use std::path::PathBuf;

/// The usage text.
pub const USAGE: &str = "\
usage: kcore-vmm --kernel IMAGE [options]

Boots an arm64 Linux guest through the KVM API (/dev/kvm).

  --kernel PATH       arm64 Linux `Image` (uncompressed)
  --initrd PATH       initramfs for the guest
  --cmdline STR       kernel command line
                      [default: console=ttyAMA0 earlycon panic=-1, or
                       console=hvc0 panic=-1 with --console virtio]
  --mem MiB           guest RAM [default: 128]
  --vcpus N           vCPUs [default: 2]
  --console pl011|virtio
                      the guest's console device [default: pl011]
  --block PATH        a virtio-blk disk backed by PATH (read-write)
  --protected         a protected VM (KServ's KVM_VM_TYPE_ARM_PROTECTED; stock
                      KVM has no protected VMs): KCore verifies the kernel
                      before it runs; PL011 console only, no virtio
  --kernel-sig PATH   the kernel's 64-byte Ed25519 signature for --protected
                      [default: IMAGE.sig]
  --timestamps        prefix each line of the guest's console with `@TICKS `:
                      the host's CNTVCT_EL0 since the VMM started
  -v, --verbose       report the VM's setup and exit counts on stderr
  -h, --help          this text

Exit status: 0 the guest powered off, 1 error, 2 the guest asked for a reset
(not supported), 3 the guest crashed. On a terminal, Ctrl-A x quits.";

/// Default RAM in MiB.
pub const DEFAULT_MEM_MIB: u64 = 128;
/// Default vCPUs.
pub const DEFAULT_VCPUS: u32 = 2;

/// Parsed options.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// The kernel `Image`.
    pub kernel: PathBuf,
    /// The initrd.
    pub initrd: Option<PathBuf>,
    /// The command line (defaulted per console).
    pub cmdline: String,
    /// RAM in MiB.
    pub mem_mib: u64,
    /// vCPUs.
    pub vcpus: u32,
    /// A protected VM.
    pub protected: bool,
    /// The kernel's signature (protected VMs).
    pub kernel_sig: Option<PathBuf>,
    /// The console device.
    pub console: Console,
    /// Disk image for virtio-blk.
    pub block: Option<PathBuf>,
    /// Report the setup and exit counts.
    pub verbose: bool,
    /// Stamp the guest's console lines ([`crate::timestamp`]).
    pub timestamps: bool,
}

impl Options {
    /// Guest RAM in bytes.
    pub fn mem_bytes(&self) -> u64 {
        self.mem_mib * layout::MIB
    }

    /// The signature file of a protected VM: `--kernel-sig` or the kernel's
    /// path with `.sig` appended.
    pub fn signature_path(&self) -> PathBuf {
        self.kernel_sig.clone().unwrap_or_else(|| {
            let mut p = self.kernel.clone().into_os_string();
            p.push(".sig");
            PathBuf::from(p)
        })
    }
}

/// What the command line asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Run a VM.
    Run(Options),
    /// Print [`USAGE`].
    Help,
}

/// A bad command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (kcore-vmm --help shows the options)", self.0)
    }
}

impl std::error::Error for UsageError {}

fn bad(msg: impl Into<String>) -> UsageError {
    UsageError(msg.into())
}

/// The default command line for `console`.
pub fn default_cmdline(console: Console) -> &'static str {
    match console {
        Console::Pl011 => "console=ttyAMA0 earlycon panic=-1",
        Console::Virtio => "console=hvc0 panic=-1",
    }
}

/// Parses the arguments after the program name. `--opt=value` and
/// `--opt value` both work.
pub fn parse<I, S>(args: I) -> Result<Command, UsageError>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let mut args = args.into_iter().map(Into::into);
    let mut kernel = None;
    let mut initrd = None;
    let mut cmdline = None;
    let mut mem_mib = DEFAULT_MEM_MIB;
    let mut vcpus = DEFAULT_VCPUS;
    let mut protected = false;
    let mut kernel_sig = None;
    let mut console = Console::Pl011;
    let mut block = None;
    let mut verbose = false;
    let mut timestamps = false;

    while let Some(arg) = args.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = || -> Result<String, UsageError> {
            match inline.clone() {
                Some(v) => Ok(v),
                None => args
                    .next()
                    .ok_or_else(|| bad(format!("{name} needs a value"))),
            }
        };
        match name.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "-v" | "--verbose" => verbose = true,
            "--timestamps" => timestamps = true,
            "--protected" => protected = true,
            "--kernel" => kernel = Some(PathBuf::from(value()?)),
            "--initrd" => initrd = Some(PathBuf::from(value()?)),
            "--cmdline" => cmdline = Some(value()?),
            "--kernel-sig" => kernel_sig = Some(PathBuf::from(value()?)),
            "--block" => block = Some(PathBuf::from(value()?)),
            "--mem" => {
                let v = value()?;
                mem_mib = v
                    .parse()
                    .ok()
                    .filter(|m| MEM_MIB_RANGE.contains(m))
                    .ok_or_else(|| {
                        bad(format!(
                            "--mem {v}: expected MiB in {}..={}",
                            MEM_MIB_RANGE.start(),
                            MEM_MIB_RANGE.end()
                        ))
                    })?;
            }
            "--vcpus" => {
                let v = value()?;
                vcpus = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=layout::MAX_VCPUS).contains(n))
                    .ok_or_else(|| {
                        bad(format!("--vcpus {v}: expected 1..={}", layout::MAX_VCPUS))
                    })?;
            }
            "--console" => {
                console = match value()?.as_str() {
                    "pl011" => Console::Pl011,
                    "virtio" => Console::Virtio,
                    other => {
                        return Err(bad(format!("--console {other}: expected pl011 or virtio")));
                    }
                }
            }
            other => return Err(bad(format!("unknown argument `{other}`"))),
        }
    }

    let kernel = kernel.ok_or_else(|| bad("--kernel is required"))?;
    if protected && console == Console::Virtio {
        return Err(bad(
            "--console virtio needs a non-protected VM: a protected guest's memory is not \
             the VMM's to read (use the PL011)",
        ));
    }
    if protected && block.is_some() {
        return Err(bad(
            "--block needs a non-protected VM: a protected guest's memory is not the VMM's \
             to read",
        ));
    }
    if kernel_sig.is_some() && !protected {
        return Err(bad("--kernel-sig is for --protected VMs"));
    }
    let cmdline = cmdline.unwrap_or_else(|| default_cmdline(console).to_string());
    Ok(Command::Run(Options {
        kernel,
        initrd,
        cmdline,
        mem_mib,
        vcpus,
        protected,
        kernel_sig,
        console,
        block,
        verbose,
        timestamps,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Options, UsageError> {
        match parse(args.iter().copied())? {
            Command::Run(o) => Ok(o),
            Command::Help => Err(bad("help")),
        }
    }

    #[test]
    fn defaults() {
        let o = run(&["--kernel", "/lib/Image"]).unwrap();
        assert_eq!(o.kernel, PathBuf::from("/lib/Image"));
        assert_eq!((o.mem_mib, o.vcpus), (128, 2));
        assert_eq!(o.console, Console::Pl011);
        assert_eq!(o.cmdline, "console=ttyAMA0 earlycon panic=-1");
        assert!(!o.protected && !o.verbose && !o.timestamps);
        assert_eq!(o.mem_bytes(), 128 << 20);
        assert_eq!(o.signature_path(), PathBuf::from("/lib/Image.sig"));
    }

    #[test]
    fn everything() {
        let o = run(&[
            "--kernel=k",
            "--initrd",
            "i.cpio",
            "--cmdline",
            "console=hvc0 quiet",
            "--mem",
            "256",
            "--vcpus=4",
            "--console",
            "virtio",
            "--block",
            "d.img",
            "-v",
            "--timestamps",
        ])
        .unwrap();
        assert_eq!(o.initrd, Some(PathBuf::from("i.cpio")));
        assert_eq!(o.cmdline, "console=hvc0 quiet");
        assert_eq!((o.mem_mib, o.vcpus), (256, 4));
        assert_eq!(o.console, Console::Virtio);
        assert_eq!(o.block, Some(PathBuf::from("d.img")));
        assert!(o.verbose && o.timestamps);
        // The virtio console's default command line.
        let o = run(&["--kernel", "k", "--console", "virtio"]).unwrap();
        assert_eq!(o.cmdline, "console=hvc0 panic=-1");
        // A command line with '=' inside, given separately.
        let o = run(&["--kernel", "k", "--cmdline", "a=b c=d"]).unwrap();
        assert_eq!(o.cmdline, "a=b c=d");
    }

    #[test]
    fn protected() {
        let o = run(&["--kernel", "k", "--protected", "--kernel-sig", "s"]).unwrap();
        assert!(o.protected);
        assert_eq!(o.signature_path(), PathBuf::from("s"));
        assert!(run(&["--kernel", "k", "--protected", "--console", "virtio"]).is_err());
        assert!(run(&["--kernel", "k", "--protected", "--block", "d"]).is_err());
        assert!(run(&["--kernel", "k", "--kernel-sig", "s"]).is_err());
    }

    #[test]
    fn mistakes() {
        for args in [
            &[][..],
            &["--initrd", "i"],
            &["--kernel"],
            &["--kernel", "k", "--mem", "0"],
            &["--kernel", "k", "--mem", "lots"],
            &["--kernel", "k", "--vcpus", "0"],
            &["--kernel", "k", "--vcpus", "124"],
            &["--kernel", "k", "--console", "vga"],
            &["--kernel", "k", "--frobnicate"],
        ] {
            assert!(run(args).is_err(), "{args:?} accepted");
        }
        assert_eq!(parse(["-h"]), Ok(Command::Help));
        assert_eq!(parse(["--kernel", "k", "--help"]), Ok(Command::Help));
    }
}
