//! The device tree the guest boots with, made with `vm-fdt`: CPUs started
//! through PSCI, RAM, `/chosen`, the architected timer, the GIC (a GICv3,
//! or on a GICv2 host an `arm,cortex-a15-gic`), the UART,
//! the RTC and the virtio-mmio devices of `layout.rs`.

use crate::layout::{
    self, BootLayout, GIC_CPU_BASE, GIC_CPU_SIZE, GIC_DIST_BASE, GIC_DIST_SIZE, GIC_REDIST_BASE,
    GICV2_DIST_SIZE, Gpa, PRIMECELL_SIZE, RTC_BASE, RTC_SPI, Spi, UART_BASE, UART_SPI, VIRTIO_SIZE,
};
use vm_fdt::FdtWriter;

/// `#interrupt-cells` type of an SPI.
const GIC_SPI: u32 = 0;
/// `#interrupt-cells` type of a PPI.
const GIC_PPI: u32 = 1;
/// Trigger flags `IRQ_TYPE_LEVEL_HIGH`. QEMU's `virt` describes the timer
/// PPIs with this (`GIC_FDT_IRQ_FLAGS_LEVEL_HI` in `fdt_add_timer_nodes`);
/// our device interrupts are level-triggered too.
const IRQ_LEVEL_HIGH: u32 = 4;

/// The timer's PPIs in the binding's order: secure physical, non-secure
/// physical, virtual, hypervisor (INTIDs 29, 30, 27, 26).
pub const TIMER_PPIS: [u32; 4] = [13, 14, 11, 10];

const PHANDLE_GIC: u32 = 1;
const PHANDLE_CLOCK: u32 = 2;
/// The PrimeCells' `apb_pclk` (and the UART's reference clock): 24 MHz,
/// as on QEMU's `virt`.
const APB_CLOCK_HZ: u32 = 24_000_000;

/// Which device is the console.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Console {
    /// The PL011 UART (`ttyAMA0`, with earlycon through `stdout-path`).
    Pl011,
    /// A virtio console (`hvc0`); no UART in the tree.
    Virtio,
}

/// The interrupt controller's architecture.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GicVersion {
    /// `arm,gic-v3`: distributor and redistributors.
    V3,
    /// `arm,cortex-a15-gic`: distributor and CPU interface (a GICv2 host).
    V2,
}

/// What the tree describes.
#[derive(Clone, Debug)]
pub struct FdtConfig<'a> {
    /// vCPUs.
    pub vcpus: u32,
    /// Where RAM and the initrd are.
    pub layout: &'a BootLayout,
    /// Kernel command line.
    pub cmdline: &'a str,
    /// The console device.
    pub console: Console,
    /// virtio-mmio windows and their interrupts.
    pub virtio: &'a [(Gpa, Spi)],
    /// The GIC.
    pub gic: GicVersion,
}

/// The path of the UART node (`stdout-path`).
pub fn uart_path() -> String {
    format!("/pl011@{:x}", UART_BASE.0)
}

fn reg(base: Gpa, size: u64) -> [u64; 2] {
    [base.0, size]
}

/// Builds the flattened device tree.
pub fn build(cfg: &FdtConfig<'_>) -> Result<Vec<u8>, vm_fdt::Error> {
    let mut f = FdtWriter::new()?;
    let root = f.begin_node("")?;
    f.property_string("compatible", "linux,dummy-virt")?;
    f.property_string("model", "kcore-vmm")?;
    f.property_u32("#address-cells", 2)?;
    f.property_u32("#size-cells", 2)?;
    f.property_u32("interrupt-parent", PHANDLE_GIC)?;

    let chosen = f.begin_node("chosen")?;
    f.property_string("bootargs", cfg.cmdline)?;
    if let Some((start, len)) = cfg.layout.initrd {
        f.property_u64("linux,initrd-start", start.0)?;
        f.property_u64("linux,initrd-end", start.0 + len)?;
    }
    if cfg.console == Console::Pl011 {
        f.property_string("stdout-path", &uart_path())?;
    }
    f.end_node(chosen)?;

    let (ram_base, ram_size) = cfg.layout.ram;
    let memory = f.begin_node(&format!("memory@{:x}", ram_base.0))?;
    f.property_string("device_type", "memory")?;
    f.property_array_u64("reg", &reg(ram_base, ram_size))?;
    f.end_node(memory)?;

    let cpus = f.begin_node("cpus")?;
    f.property_u32("#address-cells", 1)?;
    f.property_u32("#size-cells", 0)?;
    for i in 0..cfg.vcpus {
        let mpidr = layout::mpidr(i);
        let cpu = f.begin_node(&format!("cpu@{mpidr:x}"))?;
        f.property_string("device_type", "cpu")?;
        f.property_string("compatible", "arm,arm-v8")?;
        f.property_string("enable-method", "psci")?;
        f.property_u32("reg", mpidr as u32)?;
        f.end_node(cpu)?;
    }
    f.end_node(cpus)?;

    let psci = f.begin_node("psci")?;
    f.property_string_list(
        "compatible",
        vec!["arm,psci-1.0".into(), "arm,psci-0.2".into()],
    )?;
    f.property_string("method", "hvc")?;
    f.end_node(psci)?;

    let gic = f.begin_node(&format!("intc@{:x}", GIC_DIST_BASE.0))?;
    let (compatible, second) = match cfg.gic {
        GicVersion::V3 => (
            "arm,gic-v3",
            [GIC_REDIST_BASE.0, layout::redist_size(cfg.vcpus)],
        ),
        GicVersion::V2 => ("arm,cortex-a15-gic", [GIC_CPU_BASE.0, GIC_CPU_SIZE]),
    };
    let dist_size = match cfg.gic {
        GicVersion::V3 => GIC_DIST_SIZE,
        GicVersion::V2 => GICV2_DIST_SIZE,
    };
    f.property_string("compatible", compatible)?;
    f.property_u32("#interrupt-cells", 3)?;
    f.property_null("interrupt-controller")?;
    f.property_u32("#address-cells", 2)?;
    f.property_u32("#size-cells", 2)?;
    f.property_null("ranges")?;
    f.property_array_u64("reg", &[GIC_DIST_BASE.0, dist_size, second[0], second[1]])?;
    f.property_phandle(PHANDLE_GIC)?;
    f.end_node(gic)?;

    let timer = f.begin_node("timer")?;
    f.property_string_list(
        "compatible",
        vec!["arm,armv8-timer".into(), "arm,armv7-timer".into()],
    )?;
    // A GICv2's PPI cells also name the CPUs that have it (bits 15:8), as
    // QEMU's `virt` writes them (`GIC_FDT_IRQ_PPI_CPU_START`).
    let cpu_mask = match cfg.gic {
        GicVersion::V3 => 0,
        GicVersion::V2 => ((1u32 << cfg.vcpus.min(8)) - 1) << 8,
    };
    let cells: Vec<u32> = TIMER_PPIS
        .iter()
        .flat_map(|&ppi| [GIC_PPI, ppi, IRQ_LEVEL_HIGH | cpu_mask])
        .collect();
    f.property_array_u32("interrupts", &cells)?;
    f.property_null("always-on")?;
    f.end_node(timer)?;

    let clock = f.begin_node("apb-pclk")?;
    f.property_string("compatible", "fixed-clock")?;
    f.property_u32("#clock-cells", 0)?;
    f.property_u32("clock-frequency", APB_CLOCK_HZ)?;
    f.property_string("clock-output-names", "clk24mhz")?;
    f.property_phandle(PHANDLE_CLOCK)?;
    f.end_node(clock)?;

    if cfg.console == Console::Pl011 {
        let uart = f.begin_node(&uart_path()[1..])?;
        f.property_string_list(
            "compatible",
            vec!["arm,pl011".into(), "arm,primecell".into()],
        )?;
        f.property_array_u64("reg", &reg(UART_BASE, PRIMECELL_SIZE))?;
        f.property_array_u32("interrupts", &[GIC_SPI, UART_SPI.0, IRQ_LEVEL_HIGH])?;
        f.property_array_u32("clocks", &[PHANDLE_CLOCK, PHANDLE_CLOCK])?;
        f.property_string_list("clock-names", vec!["uartclk".into(), "apb_pclk".into()])?;
        f.end_node(uart)?;
    }

    let rtc = f.begin_node(&format!("pl031@{:x}", RTC_BASE.0))?;
    f.property_string_list(
        "compatible",
        vec!["arm,pl031".into(), "arm,primecell".into()],
    )?;
    f.property_array_u64("reg", &reg(RTC_BASE, PRIMECELL_SIZE))?;
    f.property_array_u32("interrupts", &[GIC_SPI, RTC_SPI.0, IRQ_LEVEL_HIGH])?;
    f.property_u32("clocks", PHANDLE_CLOCK)?;
    f.property_string("clock-names", "apb_pclk")?;
    f.end_node(rtc)?;

    for &(base, spi) in cfg.virtio {
        let node = f.begin_node(&format!("virtio_mmio@{:x}", base.0))?;
        f.property_string("compatible", "virtio,mmio")?;
        f.property_array_u64("reg", &reg(base, VIRTIO_SIZE))?;
        f.property_array_u32("interrupts", &[GIC_SPI, spi.0, IRQ_LEVEL_HIGH])?;
        f.property_null("dma-coherent")?;
        f.end_node(node)?;
    }

    f.end_node(root)?;
    f.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::{MIB, virtio_base, virtio_spi};
    use fdt::Fdt;

    fn layout() -> BootLayout {
        BootLayout::new(128 * MIB, 0, 0x0201_0000, Some(1 << 20)).unwrap()
    }

    fn cells(bytes: &[u8]) -> Vec<u32> {
        bytes
            .chunks(4)
            .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    }

    #[test]
    fn gicv2_guest_tree() {
        let l = layout();
        let dtb = build(&FdtConfig {
            vcpus: 2,
            layout: &l,
            cmdline: "console=ttyAMA0",
            console: Console::Pl011,
            virtio: &[],
            gic: GicVersion::V2,
        })
        .unwrap();
        let fdt = Fdt::new(&dtb).unwrap();
        assert!(fdt.find_compatible(&["arm,gic-v3"]).is_none());
        let gic = fdt.find_compatible(&["arm,cortex-a15-gic"]).unwrap();
        let regs: Vec<_> = gic.reg().unwrap().collect();
        assert_eq!(regs[0].starting_address as u64, GIC_DIST_BASE.0);
        assert_eq!(regs[0].size, Some(0x1000));
        assert_eq!(regs[1].starting_address as u64, GIC_CPU_BASE.0);
        assert_eq!(regs[1].size, Some(0x2000));
        assert_eq!(gic.interrupt_cells(), Some(3));
        // The timer's PPIs name both CPUs (bits 15:8).
        let timer = fdt.find_compatible(&["arm,armv8-timer"]).unwrap();
        let t = cells(timer.property("interrupts").unwrap().value);
        assert_eq!(t, [1, 13, 0x304, 1, 14, 0x304, 1, 11, 0x304, 1, 10, 0x304]);
    }

    #[test]
    fn pl011_guest_tree() {
        let l = layout();
        let dtb = build(&FdtConfig {
            vcpus: 2,
            layout: &l,
            cmdline: "console=ttyAMA0 earlycon",
            console: Console::Pl011,
            virtio: &[],
            gic: GicVersion::V3,
        })
        .unwrap();
        assert!(dtb.len() as u64 <= layout::DTB_MAX);
        let fdt = Fdt::new(&dtb).unwrap();

        let chosen = fdt.chosen();
        assert_eq!(chosen.bootargs(), Some("console=ttyAMA0 earlycon"));
        assert_eq!(chosen.stdout().map(|s| s.name), Some("pl011@9000000"));
        let c = fdt.find_node("/chosen").unwrap();
        let (initrd, len) = l.initrd.unwrap();
        let prop = |name: &str| c.property(name).and_then(|p| p.as_usize());
        assert_eq!(prop("linux,initrd-start"), Some(initrd.0 as usize));
        assert_eq!(prop("linux,initrd-end"), Some((initrd.0 + len) as usize));

        let mem: Vec<_> = fdt.memory().regions().collect();
        assert_eq!(mem.len(), 1);
        assert_eq!(mem[0].starting_address as u64, layout::RAM_BASE.0);
        assert_eq!(mem[0].size, Some(128 << 20));

        let cpus: Vec<_> = fdt.cpus().collect();
        assert_eq!(cpus.len(), 2);
        for (i, cpu) in cpus.iter().enumerate() {
            assert_eq!(cpu.ids().first(), i);
            assert_eq!(
                cpu.property("enable-method").and_then(|p| p.as_str()),
                Some("psci")
            );
        }
        let psci = fdt.find_node("/psci").unwrap();
        assert!(
            psci.compatible()
                .unwrap()
                .all()
                .any(|c| c == "arm,psci-0.2")
        );
        assert_eq!(
            psci.property("method").and_then(|p| p.as_str()),
            Some("hvc")
        );

        let gic = fdt.find_compatible(&["arm,gic-v3"]).unwrap();
        let regs: Vec<_> = gic.reg().unwrap().collect();
        assert_eq!(regs[0].starting_address as u64, GIC_DIST_BASE.0);
        assert_eq!(regs[1].starting_address as u64, GIC_REDIST_BASE.0);
        assert_eq!(regs[1].size, Some(2 * 0x2_0000));
        assert_eq!(gic.interrupt_cells(), Some(3));
        assert!(gic.property("interrupt-controller").is_some());

        let timer = fdt.find_compatible(&["arm,armv8-timer"]).unwrap();
        let t = cells(timer.property("interrupts").unwrap().value);
        assert_eq!(t, [1, 13, 4, 1, 14, 4, 1, 11, 4, 1, 10, 4]);

        let uart = fdt.find_compatible(&["arm,pl011"]).unwrap();
        assert!(
            uart.compatible()
                .unwrap()
                .all()
                .any(|c| c == "arm,primecell")
        );
        assert_eq!(
            uart.reg()
                .unwrap()
                .next()
                .map(|r| r.starting_address as u64),
            Some(UART_BASE.0)
        );
        assert_eq!(cells(uart.property("interrupts").unwrap().value), [0, 1, 4]);
        let names: Vec<&str> = uart
            .property("clock-names")
            .unwrap()
            .value
            .split(|b| *b == 0)
            .filter(|s| !s.is_empty())
            .map(|s| std::str::from_utf8(s).unwrap())
            .collect();
        assert_eq!(names, ["uartclk", "apb_pclk"]);
        let clk = fdt.find_node("/apb-pclk").unwrap();
        assert_eq!(
            clk.property("phandle").and_then(|p| p.as_usize()),
            Some(PHANDLE_CLOCK as usize)
        );
        assert!(fdt.find_compatible(&["virtio,mmio"]).is_none());
    }

    #[test]
    fn virtio_console_tree() {
        let l = layout();
        let virtio = [
            (virtio_base(0), virtio_spi(0)),
            (virtio_base(1), virtio_spi(1)),
        ];
        let dtb = build(&FdtConfig {
            vcpus: 4,
            layout: &l,
            cmdline: "console=hvc0",
            console: Console::Virtio,
            virtio: &virtio,
            gic: GicVersion::V3,
        })
        .unwrap();
        let fdt = Fdt::new(&dtb).unwrap();
        assert!(fdt.find_compatible(&["arm,pl011"]).is_none());
        assert!(fdt.chosen().stdout().is_none());
        assert_eq!(fdt.cpus().count(), 4);
        let devs: Vec<_> = fdt
            .all_nodes()
            .filter(|n| n.name.starts_with("virtio_mmio@"))
            .collect();
        assert_eq!(devs.len(), 2);
        assert_eq!(devs[1].name, "virtio_mmio@a000200");
        assert_eq!(
            cells(devs[1].property("interrupts").unwrap().value),
            [0, 17, 4]
        );
    }
}
