//! The machines we boot: QEMU `virt` with EL2 enabled (`virtualization=on`), a
//! GICv2 or GICv3, a CPU model, a CPU count, an amount of RAM, or QEMU's
//! Raspberry Pi 4 (`raspi4b`: four Cortex-A72s started at EL2, a GIC-400, 1
//! GiB, booted with a device tree the harness edited), and, for
//! benchmarks, `-icount shift=0,sleep=off` (one instruction = one nanosecond of
//! virtual time, and an idle CPU skips ahead instead of sleeping, so every time
//! the guest reads is a deterministic function of the instructions executed).
//!
//! This module only describes a machine; [`crate::QemuCommand`] turns it into
//! QEMU arguments.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// The interrupt controller of the `virt` board (`-M virt,gic-version=..`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Gic {
    /// GICv2 (GIC-400 class): memory-mapped CPU interface, at most 8 CPUs.
    V2,
    /// GICv3 with system-register CPU interface and redistributors.
    V3,
}

impl Gic {
    /// The value of `gic-version=`.
    pub fn version(self) -> u8 {
        match self {
            Gic::V2 => 2,
            Gic::V3 => 3,
        }
    }
}

/// The CPU model (`-cpu`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Cpu {
    /// Arm Cortex-A72: Armv8.0, no VHE; Linux at EL2 runs KVM in nVHE mode.
    CortexA72,
    /// Every architectural feature QEMU implements (VHE, PAuth, MTE, ...).
    Max,
}

impl Cpu {
    /// The value of `-cpu`.
    pub fn qemu_name(self) -> &'static str {
        match self {
            Cpu::CortexA72 => "cortex-a72",
            Cpu::Max => "max",
        }
    }
}

impl fmt::Display for Cpu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.qemu_name())
    }
}

impl FromStr for Cpu {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "cortex-a72" => Ok(Cpu::CortexA72),
            "max" => Ok(Cpu::Max),
            _ => Err(format!(
                "unknown CPU model `{s}` (expected `cortex-a72` or `max`)"
            )),
        }
    }
}

/// The board QEMU emulates.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Board {
    /// `-M virt`: the other fields of [`Machine`] say how it is built.
    Virt,
    /// `-M raspi4b` with this device tree (`-dtb`). QEMU fixes the CPUs
    /// (four Cortex-A72s), the GIC (a GIC-400) and the RAM (1 GiB, of
    /// which its tree shows 960 MiB); it has no PSCI firmware and no
    /// power-off.
    Raspi4b {
        /// The device tree to boot with.
        dtb: PathBuf,
    },
}

/// A QEMU machine with EL2: `virt` (`virtualization=on`) or `raspi4b`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Machine {
    /// The board.
    pub board: Board,
    /// The interrupt controller.
    pub gic: Gic,
    /// The CPU model of every CPU.
    pub cpu: Cpu,
    /// The number of CPUs (`-smp`).
    pub smp: u32,
    /// RAM in MiB (`-m`).
    pub mem_mib: u32,
    /// Run under `-icount shift=0,sleep=off` (deterministic virtual time; QEMU
    /// then runs all CPUs on one host thread), with the random seeds QEMU
    /// writes into the device tree turned off (`dtb-randomness=off`).
    pub icount: bool,
    /// Whether the CPUs have EL2 (`virtualization=on`). Without it the loader
    /// enters KCore at EL1, which KCore must refuse.
    pub el2: bool,
    /// NUMA nodes on `virt` (0 or 1: none): the RAM and the CPUs split evenly
    /// between them, each node's RAM a memory node of its own in the tree.
    pub numa: u32,
    /// UEFI firmware (Debian's EDK2, `-bios`) instead of QEMU's own loader,
    /// and how it describes the machine; `None` boots with `-kernel`.
    pub uefi: Option<Uefi>,
}

/// How the UEFI firmware of `virt` describes the machine to what it boots.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Uefi {
    /// A device tree in the configuration table: QEMU's `acpi=off`.
    DeviceTree,
    /// ACPI tables only (QEMU's default with UEFI firmware), as on servers.
    Acpi,
}

/// Debian's EDK2 build for QEMU `virt` (package `qemu-efi-aarch64`).
pub const EDK2_FIRMWARE: &str = "/usr/share/qemu-efi-aarch64/QEMU_EFI.fd";

impl Machine {
    /// `virt` with a GICv3, 4 Cortex-A72 CPUs and 1 GiB of RAM: the default.
    pub fn virt_gicv3() -> Self {
        Machine {
            board: Board::Virt,
            gic: Gic::V3,
            cpu: Cpu::CortexA72,
            smp: 4,
            mem_mib: 1024,
            icount: false,
            el2: true,
            numa: 0,
            uefi: None,
        }
    }

    /// `virt` with a GICv3, booted by Debian's EDK2 with a device tree
    /// (`acpi=off`): the UEFI server path in its device-tree mode.
    pub fn virt_efi_dt() -> Self {
        Machine {
            uefi: Some(Uefi::DeviceTree),
            ..Self::virt_gicv3()
        }
    }

    /// `virt` with a GICv3, booted by Debian's EDK2 describing it with ACPI
    /// only, as a server's firmware does.
    pub fn virt_efi_acpi() -> Self {
        Machine {
            uefi: Some(Uefi::Acpi),
            ..Self::virt_gicv3()
        }
    }

    /// `virt` with a GICv2, 4 Cortex-A72 CPUs and 1 GiB of RAM.
    pub fn virt_gicv2() -> Self {
        Machine {
            gic: Gic::V2,
            ..Self::virt_gicv3()
        }
    }

    /// QEMU's Raspberry Pi 4 (`raspi4b`), booted with the device tree `dtb`:
    /// 4 Cortex-A72s, a GIC-400 (GICv2), 1 GiB.
    pub fn raspi4b(dtb: impl Into<PathBuf>) -> Self {
        Machine {
            board: Board::Raspi4b { dtb: dtb.into() },
            gic: Gic::V2,
            ..Self::virt_gicv3()
        }
    }

    /// Whether the machine can power itself off: `raspi4b` has neither PSCI
    /// firmware nor a power controller, so a harness ends QEMU itself once
    /// KCore parked every CPU.
    pub fn can_power_off(&self) -> bool {
        self.board == Board::Virt
    }

    /// Kernel command-line arguments the board needs: on `raspi4b`,
    /// `clk_ignore_unused` (QEMU models none of the clocks Linux would
    /// otherwise turn off as unused, and the console's among them).
    pub fn kernel_args(&self) -> &'static str {
        match self.board {
            Board::Virt => "",
            Board::Raspi4b { .. } => "clk_ignore_unused",
        }
    }

    /// The same machine with another CPU model.
    pub fn with_cpu(self, cpu: Cpu) -> Self {
        Machine { cpu, ..self }
    }

    /// The same machine with `smp` CPUs.
    pub fn with_smp(self, smp: u32) -> Self {
        Machine { smp, ..self }
    }

    /// The same machine with `mem_mib` MiB of RAM.
    pub fn with_mem_mib(self, mem_mib: u32) -> Self {
        Machine { mem_mib, ..self }
    }

    /// The same machine with or without `-icount shift=0,sleep=off`.
    pub fn with_icount(self, icount: bool) -> Self {
        Machine { icount, ..self }
    }

    /// The same machine with or without EL2.
    pub fn with_el2(self, el2: bool) -> Self {
        Machine { el2, ..self }
    }

    /// The same `virt` machine split into `nodes` NUMA nodes.
    pub fn with_numa(self, nodes: u32) -> Self {
        Machine {
            numa: nodes,
            ..self
        }
    }

    /// Checks what QEMU would otherwise reject with a less helpful message.
    pub fn validate(&self) -> Result<(), String> {
        if self.uefi.is_some() && !std::path::Path::new(EDK2_FIRMWARE).is_file() {
            return Err(format!(
                "{EDK2_FIRMWARE} is missing: install Debian's qemu-efi-aarch64 (scripts/host-deps.sh)"
            ));
        }
        if let Board::Raspi4b { dtb } = &self.board {
            if self.smp != 4 || self.mem_mib != 1024 || self.cpu != Cpu::CortexA72 || self.icount {
                return Err(
                    "raspi4b is fixed at 4 Cortex-A72s and 1 GiB (and runs without -icount)".into(),
                );
            }
            if !dtb.is_file() {
                return Err(format!(
                    "{} is missing: run `cargo xtask build` first",
                    dtb.display()
                ));
            }
            return Ok(());
        }
        if self.smp == 0 {
            return Err("a machine needs at least one CPU".into());
        }
        if self.gic == Gic::V2 && self.smp > 8 {
            return Err(format!("a GICv2 serves at most 8 CPUs, not {}", self.smp));
        }
        if self.numa > 1 && (self.numa > self.smp || !self.mem_mib.is_multiple_of(self.numa)) {
            return Err(format!(
                "{} NUMA nodes need at least as many CPUs (not {}) and RAM that divides evenly ({} MiB)",
                self.numa, self.smp, self.mem_mib
            ));
        }
        if self.mem_mib < 128 {
            return Err(format!(
                "{} MiB of RAM is too little to boot KServ (at least 128)",
                self.mem_mib
            ));
        }
        Ok(())
    }

    /// QEMU's arguments for this machine (everything but what to boot).
    pub fn args(&self) -> Vec<String> {
        if let Board::Raspi4b { dtb } = &self.board {
            return vec![
                "-M".to_string(),
                "raspi4b".to_string(),
                "-dtb".to_string(),
                dtb.display().to_string(),
            ];
        }
        let virtualization = if self.el2 { "on" } else { "off" };
        let mut board = format!(
            "virt,virtualization={virtualization},gic-version={}",
            self.gic.version()
        );
        if self.uefi == Some(Uefi::DeviceTree) {
            board.push_str(",acpi=off");
        }
        if self.icount {
            // QEMU puts fresh random `kaslr-seed` and `rng-seed` values in the
            // device tree on every boot; they move the kernel and change its
            // instruction count from run to run.
            board.push_str(",dtb-randomness=off");
        }
        let mut args = vec![
            "-M".to_string(),
            board,
            "-cpu".to_string(),
            self.cpu.qemu_name().to_string(),
            "-smp".to_string(),
            self.smp.to_string(),
            "-m".to_string(),
            self.mem_mib.to_string(),
        ];
        if self.icount {
            args.push("-icount".to_string());
            args.push("shift=0,sleep=off".to_string());
        }
        if self.numa > 1 {
            let (mib, cpus) = (self.mem_mib / self.numa, self.smp / self.numa);
            for i in 0..self.numa {
                let first = i * cpus;
                let last = if i + 1 == self.numa {
                    self.smp - 1
                } else {
                    first + cpus - 1
                };
                args.push("-object".to_string());
                args.push(format!("memory-backend-ram,id=ram{i},size={mib}M"));
                args.push("-numa".to_string());
                args.push(format!("node,nodeid={i},cpus={first}-{last},memdev=ram{i}"));
            }
        }
        if self.uefi.is_some() {
            // No network device: EDK2 would first spend minutes on PXE and
            // HTTP boot.
            args.extend(["-bios", EDK2_FIRMWARE, "-nic", "none"].map(String::from));
        }
        args
    }
}

impl Default for Machine {
    fn default() -> Self {
        Self::virt_gicv3()
    }
}

impl fmt::Display for Machine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Board::Raspi4b { dtb } = &self.board {
            return write!(
                f,
                "raspi4b, GIC-400, cortex-a72, 4 CPUs, 1024 MiB, {}",
                dtb.display()
            );
        }
        write!(
            f,
            "virt, GICv{}, {}, {} CPU{}, {} MiB",
            self.gic.version(),
            self.cpu,
            self.smp,
            if self.smp == 1 { "" } else { "s" },
            self.mem_mib
        )?;
        if self.icount {
            f.write_str(", -icount shift=0,sleep=off")?;
        }
        if self.numa > 1 {
            write!(f, ", {} NUMA nodes", self.numa)?;
        }
        match self.uefi {
            Some(Uefi::DeviceTree) => f.write_str(", EDK2 with a device tree")?,
            Some(Uefi::Acpi) => f.write_str(", EDK2 with ACPI")?,
            None => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numa_nodes_split_cpus_and_ram() {
        let m = Machine::virt_gicv3()
            .with_smp(8)
            .with_mem_mib(2048)
            .with_numa(2);
        let args = m.args();
        for want in [
            "memory-backend-ram,id=ram0,size=1024M",
            "node,nodeid=0,cpus=0-3,memdev=ram0",
            "memory-backend-ram,id=ram1,size=1024M",
            "node,nodeid=1,cpus=4-7,memdev=ram1",
        ] {
            assert!(args.iter().any(|a| a == want), "{want} in {args:?}");
        }
        assert!(m.validate().is_ok());
        assert!(m.clone().with_numa(3).validate().is_err(), "2048 MiB in 3");
        assert!(m.with_smp(1).validate().is_err(), "2 nodes, 1 CPU");
        assert!(!Machine::default().args().iter().any(|a| a == "-numa"));
    }

    #[test]
    fn uefi_with_a_device_tree() {
        let m = Machine::virt_efi_dt().with_smp(2);
        assert_eq!(
            m.args(),
            [
                "-M",
                "virt,virtualization=on,gic-version=3,acpi=off",
                "-cpu",
                "cortex-a72",
                "-smp",
                "2",
                "-m",
                "1024",
                "-bios",
                EDK2_FIRMWARE,
                "-nic",
                "none"
            ]
        );
        assert!(m.to_string().ends_with(", EDK2 with a device tree"));
        let acpi = Machine::virt_efi_acpi();
        assert_eq!(acpi.args()[1], "virt,virtualization=on,gic-version=3");
        assert!(acpi.args().iter().any(|a| a == EDK2_FIRMWARE));
        assert!(acpi.to_string().ends_with(", EDK2 with ACPI"));
    }

    #[test]
    fn default_machine_arguments() {
        assert_eq!(
            Machine::default().args(),
            [
                "-M",
                "virt,virtualization=on,gic-version=3",
                "-cpu",
                "cortex-a72",
                "-smp",
                "4",
                "-m",
                "1024"
            ]
        );
    }

    #[test]
    fn gicv2_max_icount_arguments() {
        let m = Machine::virt_gicv2()
            .with_cpu(Cpu::Max)
            .with_smp(2)
            .with_mem_mib(512)
            .with_icount(true);
        assert_eq!(
            m.args(),
            [
                "-M",
                "virt,virtualization=on,gic-version=2,dtb-randomness=off",
                "-cpu",
                "max",
                "-smp",
                "2",
                "-m",
                "512",
                "-icount",
                "shift=0,sleep=off"
            ]
        );
        assert_eq!(
            m.to_string(),
            "virt, GICv2, max, 2 CPUs, 512 MiB, -icount shift=0,sleep=off"
        );
    }

    #[test]
    fn validation() {
        assert!(Machine::default().validate().is_ok());
        assert!(Machine::default().with_smp(0).validate().is_err());
        assert!(Machine::virt_gicv2().with_smp(9).validate().is_err());
        assert!(Machine::virt_gicv3().with_smp(9).validate().is_ok());
        assert!(Machine::default().with_mem_mib(64).validate().is_err());
    }

    #[test]
    fn raspi4b_arguments_and_limits() {
        let dtb = std::env::temp_dir().join("kcore-qemu-raspi4b-test.dtb");
        std::fs::write(&dtb, b"x").unwrap();
        let m = Machine::raspi4b(&dtb);
        assert_eq!(
            m.args(),
            ["-M", "raspi4b", "-dtb", &dtb.display().to_string()]
        );
        assert!(m.validate().is_ok());
        assert!(!m.can_power_off() && Machine::default().can_power_off());
        assert_eq!(m.kernel_args(), "clk_ignore_unused");
        assert!(m.clone().with_smp(2).validate().is_err());
        assert!(m.clone().with_mem_mib(2048).validate().is_err());
        assert!(m.with_icount(true).validate().is_err());
        std::fs::remove_file(&dtb).unwrap();
        assert!(Machine::raspi4b(&dtb).validate().is_err(), "no tree");
    }

    #[test]
    fn cpu_names_round_trip() {
        for cpu in [Cpu::CortexA72, Cpu::Max] {
            assert_eq!(cpu.qemu_name().parse::<Cpu>(), Ok(cpu));
        }
        assert!("cortex-a53".parse::<Cpu>().is_err());
    }
}
