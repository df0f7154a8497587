//! What to boot and the exact QEMU command line for it.
//!
//! Two ways to boot KServ, both on the same [`Machine`]:
//! [`Boot::Kcore`] hands the boot image (KCore + payload, `docs/boot-image.md`)
//! to QEMU's `-kernel` loader; KCore appends `-append` to the payload's own
//! command line. [`Boot::Efi`] boots `kcore.efi` from an EFI system
//! partition through UEFI firmware (a [`Machine`] with [`Machine::uefi`]):
//! the partition is a directory QEMU shows as a read-only FAT disk
//! (`fat:`), holding `kcore.efi` and a `startup.nsh` that the UEFI Shell
//! runs, with the kernel arguments as the application's load options
//! ([`QemuCommand::prepare`] writes it). [`Boot::Direct`] boots Debian's kernel straight at EL2 without
//! KCore (the stock-KVM baseline), with its initramfs and full command line.
//! Console and monitor are on stdio (`-nographic`) and a reset or a reboot
//! request ends QEMU (`-no-reboot`), so a guest that dies never loops.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Command;

use crate::Machine;
use crate::version::qemu_binary;

/// What QEMU loads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Boot {
    /// A KCore boot image (normally `build/kcore.img`).
    Kcore {
        /// The image file.
        image: PathBuf,
    },
    /// `kcore.efi` (normally `build/kcore.efi`) from an EFI system
    /// partition made in the directory `esp`.
    Efi {
        /// The application.
        efi: PathBuf,
        /// The partition's directory; [`QemuCommand::prepare`] fills it.
        esp: PathBuf,
    },
    /// A Linux Image booted directly at EL2, without KCore.
    Direct {
        /// The kernel Image.
        kernel: PathBuf,
        /// Its initramfs, if any.
        initrd: Option<PathBuf>,
        /// Its command line (the extra arguments of [`QemuCommand`] follow it).
        cmdline: String,
    },
}

/// A full QEMU invocation: machine, what to boot, extra kernel arguments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QemuCommand {
    /// The machine.
    pub machine: Machine,
    /// What to boot on it.
    pub boot: Boot,
    /// Extra kernel command-line arguments, in order (e.g. `kserv.mode=batch`).
    pub append: Vec<String>,
    /// Whether a reset restarts the machine (RAM kept, the images loaded
    /// again) instead of ending QEMU (`-no-reboot`, the default).
    pub reboot: bool,
    /// For [`Boot::Efi`]: starts of `kcore.efi` that must fail before the
    /// one that boots, each given as the arguments it adds to the kernel
    /// command line. The first is the removable-media boot's (its
    /// `kcore.args`); when it returns, EDK2 goes on to its next boot option,
    /// the UEFI Shell, whose `startup.nsh` makes the others and then the
    /// start that boots, with the command line alone.
    pub efi_failing_starts: Vec<String>,
}

impl QemuCommand {
    /// Boots `boot` on `machine` with no extra arguments.
    pub fn new(machine: Machine, boot: Boot) -> Self {
        QemuCommand {
            machine,
            boot,
            append: Vec::new(),
            reboot: false,
            efi_failing_starts: Vec::new(),
        }
    }

    /// Sets [`Self::efi_failing_starts`].
    pub fn efi_failing_first(mut self, starts: &[&str]) -> Self {
        self.efi_failing_starts = starts.iter().map(|s| s.to_string()).collect();
        self
    }

    /// Lets a reset restart the machine, as a board's warm reset does: RAM
    /// keeps what it held, QEMU loads the boot image again and the same
    /// command line boots.
    pub fn allow_reboot(mut self) -> Self {
        self.reboot = true;
        self
    }

    /// Adds kernel command-line arguments; `args` is split on whitespace, and
    /// empty input adds nothing.
    pub fn append(mut self, args: &str) -> Self {
        self.append
            .extend(args.split_whitespace().map(str::to_string));
        self
    }

    /// The string given to `-append`, or `None` when there is nothing to pass.
    pub fn kernel_cmdline(&self) -> Option<String> {
        let base = match &self.boot {
            Boot::Kcore { .. } | Boot::Efi { .. } => "",
            Boot::Direct { cmdline, .. } => cmdline.trim(),
        };
        let words: Vec<&str> = base
            .split_whitespace()
            .chain(self.machine.kernel_args().split_whitespace())
            .chain(self.append.iter().map(String::as_str))
            .collect();
        (!words.is_empty()).then(|| words.join(" "))
    }

    /// QEMU's arguments, without the program name.
    pub fn args(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = self
            .machine
            .args()
            .into_iter()
            .map(OsString::from)
            .collect();
        args.push("-nographic".into());
        if !self.reboot {
            args.push("-no-reboot".into());
        }
        match &self.boot {
            Boot::Kcore { image } => {
                args.push("-kernel".into());
                args.push(image.into());
            }
            Boot::Efi { esp, .. } => {
                args.push("-drive".into());
                let mut drive = OsString::from("if=virtio,format=raw,readonly=on,file=fat:");
                drive.push(esp);
                args.push(drive);
            }
            Boot::Direct { kernel, initrd, .. } => {
                args.push("-kernel".into());
                args.push(kernel.into());
                if let Some(initrd) = initrd {
                    args.push("-initrd".into());
                    args.push(initrd.into());
                }
            }
        }
        if let Some(cmdline) = self.kernel_cmdline()
            && !matches!(self.boot, Boot::Efi { .. })
        {
            args.push("-append".into());
            args.push(cmdline.into());
        }
        args
    }

    /// Checks that the boot method suits the machine, and for [`Boot::Efi`]
    /// fills the partition's directory: the application (a hard link to
    /// `efi`, or a copy across file systems) as `EFI/BOOT/BOOTAA64.EFI`,
    /// which EDK2's removable-media boot option starts directly, with the
    /// kernel arguments in `kcore.args` (read by `kcore.efi` when it has no
    /// load options); and as `kcore.efi` with `startup.nsh`, which selects
    /// the partition (`fs0:`, the only disk) and starts it with the kernel
    /// arguments, should the firmware fall back to the UEFI Shell.
    pub fn prepare(&self) -> std::io::Result<()> {
        let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidInput, m.to_string());
        let Boot::Efi { efi, esp } = &self.boot else {
            if self.machine.uefi.is_some() {
                return Err(bad(
                    "a machine with UEFI firmware boots kcore.efi (Boot::Efi)",
                ));
            }
            return Ok(());
        };
        if self.machine.uefi.is_none() {
            return Err(bad("kcore.efi needs a machine with UEFI firmware"));
        }
        let boot_dir = esp.join("EFI").join("BOOT");
        std::fs::create_dir_all(&boot_dir)?;
        for app in [esp.join("kcore.efi"), boot_dir.join("BOOTAA64.EFI")] {
            let _ = std::fs::remove_file(&app);
            if std::fs::hard_link(efi, &app).is_err() {
                std::fs::copy(efi, &app)?;
            }
        }
        let first = self.efi_failing_starts.first().map_or("", String::as_str);
        std::fs::write(esp.join("kcore.args"), self.efi_args(first))?;
        std::fs::write(esp.join("startup.nsh"), self.startup_nsh())
    }

    /// The kernel command line with `extra` after it.
    fn efi_args(&self, extra: &str) -> String {
        let args = self.kernel_cmdline().unwrap_or_default();
        let words: Vec<&str> = args
            .split_whitespace()
            .chain(extra.split_whitespace())
            .collect();
        words.join(" ")
    }

    /// The UEFI Shell script that boots [`Boot::Efi`]: the failing starts
    /// after the first ([`Self::efi_failing_starts`]), then the one that
    /// boots.
    pub fn startup_nsh(&self) -> String {
        let extras = self.efi_failing_starts.iter().skip(1).map(String::as_str);
        let mut script = String::from("fs0:\r\n");
        for extra in extras.chain([""]) {
            script.push_str(&format!("\\kcore.efi {}\r\n", self.efi_args(extra)));
        }
        script
    }

    /// A [`Command`] running QEMU (the binary from [`qemu_binary`]) with
    /// [`Self::args`]; stdio is left for the caller to set.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(qemu_binary());
        cmd.args(self.args());
        cmd
    }

    /// The command as one shell-pasteable line, for logs and error messages.
    pub fn display(&self) -> String {
        let mut words = vec![shell_quote(&qemu_binary().to_string_lossy())];
        words.extend(
            self.args()
                .iter()
                .map(|a| shell_quote(&a.to_string_lossy())),
        );
        words.join(" ")
    }
}

/// Quotes `word` for a POSIX shell when it needs quoting.
pub(crate) fn shell_quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_=,./:+@%".contains(c));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Cpu;

    fn strings(cmd: &QemuCommand) -> Vec<String> {
        cmd.args()
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn efi_boot_from_a_prepared_partition() {
        let dir = std::env::temp_dir().join(format!("kcore-qemu-esp-{}", std::process::id()));
        let efi = dir.join("app.efi");
        let esp = dir.join("esp");
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(&efi, b"MZ-not-really").expect("efi");
        let cmd = QemuCommand::new(
            Machine::virt_efi_dt(),
            Boot::Efi {
                efi: efi.clone(),
                esp: esp.clone(),
            },
        )
        .append("kserv.mode=batch kserv.tests=hvc");
        let args = strings(&cmd);
        assert!(!args.iter().any(|a| a == "-append" || a == "-kernel"));
        let drive = format!(
            "if=virtio,format=raw,readonly=on,file=fat:{}",
            esp.display()
        );
        assert!(args.windows(2).any(|w| w[0] == "-drive" && w[1] == drive));
        cmd.prepare().expect("prepare");
        // Twice: a second run replaces the link and the script.
        cmd.prepare().expect("prepare again");
        // The application for the Shell and for the removable-media path,
        // the Shell's script and the arguments file.
        let expected: [(&str, &[u8]); 4] = [
            ("kcore.efi", b"MZ-not-really"),
            ("EFI/BOOT/BOOTAA64.EFI", b"MZ-not-really"),
            (
                "startup.nsh",
                b"fs0:\r\n\\kcore.efi kserv.mode=batch kserv.tests=hvc\r\n",
            ),
            ("kcore.args", b"kserv.mode=batch kserv.tests=hvc"),
        ];
        for (file, content) in expected {
            assert_eq!(
                std::fs::read(esp.join(file)).expect(file),
                content,
                "{file}"
            );
        }
        // Starts that fail first: the removable-media boot's arguments,
        // then the Shell's, then the boot.
        let failing = cmd.clone().efi_failing_first(&["f=1", "f=2"]);
        failing.prepare().expect("prepare with failing starts");
        assert_eq!(
            std::fs::read_to_string(esp.join("kcore.args")).expect("args"),
            "kserv.mode=batch kserv.tests=hvc f=1"
        );
        assert_eq!(
            std::fs::read_to_string(esp.join("startup.nsh")).expect("nsh"),
            "fs0:\r\n\\kcore.efi kserv.mode=batch kserv.tests=hvc f=2\r\n\\kcore.efi kserv.mode=batch kserv.tests=hvc\r\n"
        );
        let mismatched = QemuCommand::new(Machine::virt_gicv3(), cmd.boot.clone());
        assert!(mismatched.prepare().is_err());
        let mismatched = QemuCommand::new(
            Machine::virt_efi_dt(),
            Boot::Kcore {
                image: "build/kcore.img".into(),
            },
        );
        assert!(mismatched.prepare().is_err());
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn kcore_boot_with_extra_arguments() {
        let cmd = QemuCommand::new(
            Machine::virt_gicv3(),
            Boot::Kcore {
                image: "build/kcore.img".into(),
            },
        )
        .append("kserv.mode=batch  kserv.cpus=4")
        .append("kserv.tests=boot,version");
        assert_eq!(
            strings(&cmd),
            [
                "-M",
                "virt,virtualization=on,gic-version=3",
                "-cpu",
                "cortex-a72",
                "-smp",
                "4",
                "-m",
                "1024",
                "-nographic",
                "-no-reboot",
                "-kernel",
                "build/kcore.img",
                "-append",
                "kserv.mode=batch kserv.cpus=4 kserv.tests=boot,version"
            ]
        );
    }

    #[test]
    fn kcore_boot_without_arguments_has_no_append() {
        let cmd = QemuCommand::new(
            Machine::virt_gicv2().with_cpu(Cpu::Max),
            Boot::Kcore {
                image: "/x/kcore.img".into(),
            },
        )
        .append("   ");
        let args = strings(&cmd);
        assert!(!args.iter().any(|a| a == "-append"), "{args:?}");
        assert!(!args.iter().any(|a| a == "-initrd"), "{args:?}");
        assert_eq!(
            &args[..4],
            ["-M", "virt,virtualization=on,gic-version=2", "-cpu", "max"]
        );
        assert_eq!(cmd.kernel_cmdline(), None);
    }

    #[test]
    fn direct_boot_puts_the_cmdline_first() {
        let cmd = QemuCommand::new(
            Machine::virt_gicv3().with_smp(2).with_icount(true),
            Boot::Direct {
                kernel: "build/kserv/Image".into(),
                initrd: Some("build/kserv/initramfs.cpio".into()),
                cmdline: "console=ttyAMA0 quiet\n".into(),
            },
        )
        .append("kserv.mode=batch kserv.tests=nokcore");
        assert_eq!(
            strings(&cmd)[1..2],
            ["virt,virtualization=on,gic-version=3,dtb-randomness=off"]
        );
        assert_eq!(
            strings(&cmd)[8..],
            [
                "-icount",
                "shift=0,sleep=off",
                "-nographic",
                "-no-reboot",
                "-kernel",
                "build/kserv/Image",
                "-initrd",
                "build/kserv/initramfs.cpio",
                "-append",
                "console=ttyAMA0 quiet kserv.mode=batch kserv.tests=nokcore"
            ]
        );
    }

    #[test]
    fn direct_boot_without_initrd() {
        let cmd = QemuCommand::new(
            Machine::default(),
            Boot::Direct {
                kernel: "Image".into(),
                initrd: None,
                cmdline: String::new(),
            },
        );
        let args = strings(&cmd);
        assert_eq!(args[args.len() - 2..], ["-kernel", "Image"]);
    }

    #[test]
    fn display_quotes_what_the_shell_would_split() {
        let cmd = QemuCommand::new(
            Machine::default(),
            Boot::Kcore {
                image: "my dir/k.img".into(),
            },
        )
        .append("a=1 b=2");
        let line = cmd.display();
        assert!(
            line.ends_with("-kernel 'my dir/k.img' -append 'a=1 b=2'"),
            "{line}"
        );
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }
}
