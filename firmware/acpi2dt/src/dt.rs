//! Writing [`Description`] and the memory banks as KCore's device tree,
//! with `kcore_boot`'s [`DtbWriter`].

use alloc::format;
use alloc::vec::Vec;

use kcore::addr::MemRange;
use kcore_boot::dtb_writer::DtbWriter;
use kcore_boot::platform::{ACPI_DEVICE_COMPATIBLE, normalize_regions};

use crate::describe::{
    Description, GIC_CPU_FRAME_SIZE, GICD_SIZE, ITS_SIZE, SMMU_V3_SIZE, UART_SIZE, UartType,
};
use crate::memory::Banks;
use crate::namespace::DT_COMPATIBLES;
use crate::{Chosen, Error};

/// The GIC's phandle, the only one in the tree.
const GIC_PHANDLE: u32 = 1;

/// Big-endian cells.
fn cells(values: &[u32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_be_bytes()).collect()
}

/// `(base, size)` pairs as 2+2 cells.
fn reg(regions: &[(u64, u64)]) -> Vec<u8> {
    regions
        .iter()
        .flat_map(|&(b, s)| [b.to_be_bytes(), s.to_be_bytes()])
        .flatten()
        .collect()
}

/// A NUL-terminated string list.
fn strings(list: &[&str]) -> Vec<u8> {
    list.iter()
        .flat_map(|s| s.bytes().chain(core::iter::once(0)))
        .collect()
}

/// DT interrupt flags for GTDT timer flags (bit 0 edge, bit 1 active low).
fn ppi_flags(gtdt_flags: u32) -> u32 {
    match gtdt_flags & 3 {
        0 => 4, // level, active high
        1 => 1, // edge, rising
        2 => 8, // level, active low
        _ => 2, // edge, falling
    }
}

/// Writes the whole tree.
pub(crate) fn write(d: &Description, banks: &Banks, chosen: &Chosen<'_>) -> Result<Vec<u8>, Error> {
    let mut w = DtbWriter::default();
    w.begin_node("");
    w.prop("#address-cells", &cells(&[2]))?;
    w.prop("#size-cells", &cells(&[2]))?;
    w.prop("compatible", &strings(&["kcore,acpi-platform"]))?;
    // Every `interrupts` (the timer's, the GIC's own) resolves through the
    // GIC.
    w.prop("interrupt-parent", &cells(&[GIC_PHANDLE]))?;

    let uart_path = d.uart.map(|(base, _)| format!("/serial@{base:x}"));
    w.begin_node("chosen");
    if let Some(args) = chosen.bootargs {
        if args.contains('\0') {
            return Err(Error::BadBootargs);
        }
        w.prop("bootargs", &strings(&[args]))?;
    }
    if let Some(p) = &uart_path {
        w.prop("stdout-path", &strings(&[p]))?;
    }
    for (name, value) in chosen.extra {
        w.prop(name, value)?;
    }
    w.end_node();

    for bank in &banks.memory {
        w.begin_node(&format!("memory@{:x}", bank.base()));
        w.prop("device_type", &strings(&["memory"]))?;
        w.prop("reg", &reg(&[(bank.base(), bank.size())]))?;
        w.end_node();
    }

    w.begin_node("cpus");
    w.prop("#address-cells", &cells(&[2]))?;
    w.prop("#size-cells", &cells(&[0]))?;
    for &mpidr in &d.cpus {
        w.begin_node(&format!("cpu@{mpidr:x}"));
        w.prop("device_type", &strings(&["cpu"]))?;
        w.prop("compatible", &strings(&["arm,armv8"]))?;
        w.prop("reg", &mpidr.to_be_bytes())?;
        if d.psci_hvc.is_some() {
            w.prop("enable-method", &strings(&["psci"]))?;
        }
        w.end_node();
    }
    w.end_node();

    if let Some(hvc) = d.psci_hvc {
        w.begin_node("psci");
        w.prop("compatible", &strings(&["arm,psci-1.0", "arm,psci-0.2"]))?;
        w.prop("method", &strings(&[if hvc { "hvc" } else { "smc" }]))?;
        w.end_node();
    }

    write_gic(&mut w, d)?;

    if let Some(t) = d.timer {
        w.begin_node("timer");
        w.prop("compatible", &strings(&["arm,armv8-timer"]))?;
        let ints: Vec<u32> = t
            .iter()
            .flat_map(|&(intid, flags)| [1, intid - 16, ppi_flags(flags)])
            .collect();
        w.prop("interrupts", &cells(&ints))?;
        w.end_node();
    }

    if let Some((base, kind)) = d.uart {
        w.begin_node(&format!("serial@{base:x}"));
        let compatible: &[&str] = match kind {
            UartType::Pl011 => &["arm,pl011", "arm,primecell"],
            // KCore's PL011 output (DR and FR) works on an SBSA UART.
            UartType::SbsaGeneric => &["arm,sbsa-uart", "arm,pl011"],
            UartType::Bcm2835 => &[kcore_boot::platform::MINI_UART_COMPATIBLE],
        };
        w.prop("compatible", &strings(compatible))?;
        w.prop("reg", &reg(&[(base, UART_SIZE)]))?;
        w.end_node();
    }

    for &base in &d.smmu_v3 {
        w.begin_node(&format!("iommu@{base:x}"));
        w.prop("compatible", &strings(&["arm,smmu-v3"]))?;
        w.prop("reg", &reg(&[(base, SMMU_V3_SIZE)]))?;
        w.prop("#iommu-cells", &cells(&[1]))?;
        w.end_node();
    }

    for e in &d.ecam {
        w.begin_node(&format!("pcie@{:x}", e.base));
        w.prop("compatible", &strings(&["pci-host-ecam-generic"]))?;
        w.prop("device_type", &strings(&["pci"]))?;
        w.prop("reg", &reg(&[(e.base, e.size)]))?;
        w.prop("bus-range", &cells(&[e.bus_start.into(), e.bus_end.into()]))?;
        w.prop("linux,pci-domain", &cells(&[e.segment.into()]))?;
        w.prop("#address-cells", &cells(&[3]))?;
        w.prop("#size-cells", &cells(&[2]))?;
        w.end_node();
    }
    write_acpi_devices(&mut w, d)?;
    w.end_node();

    let mut reserved: Vec<MemRange> = banks.reserved.clone();
    reserved.extend_from_slice(chosen.reserved);
    normalize_regions(&mut reserved);
    let reservations: Vec<(u64, u64)> = reserved.iter().map(|r| (r.base(), r.size())).collect();
    // `boot_cpuid_phys`: the first enabled GICC's MPIDR, truncated to
    // 32 bits; KCore finds its boot CPU by reading MPIDR_EL1, not this.
    let boot_cpu = d.cpus.first().copied().unwrap_or_default();
    Ok(w.finish(&reservations, boot_cpu as u32)?)
}

/// One `acpi-device@<base>` node per DSDT/SSDT device KCore keeps:
/// `compatible` = its DT equivalent if it has one, then
/// [`ACPI_DEVICE_COMPATIBLE`] (both DMA masters to `kcore_boot`, which
/// keeps their `reg` out of KServ's stage 2), `reg` = its `_CRS` memory,
/// and its ACPI path and `_HID` for the reader.
fn write_acpi_devices(w: &mut DtbWriter, d: &Description) -> Result<(), Error> {
    let mut names = alloc::collections::BTreeSet::new();
    for dev in &d.acpi_devices {
        let base = dev.ranges.first().map_or(0, |r| r.0);
        let mut name = format!("acpi-device@{base:x}");
        let mut n = 1;
        while !names.insert(name.clone()) {
            name = format!("acpi-device-{n}@{base:x}");
            n += 1;
        }
        w.begin_node(&name);
        let mut compatible: Vec<&str> = dev
            .ids()
            .filter_map(|id| DT_COMPATIBLES.iter().find(|(h, _)| *h == id))
            .map(|(_, c)| *c)
            .take(1)
            .collect();
        compatible.push(ACPI_DEVICE_COMPATIBLE);
        w.prop("compatible", &strings(&compatible))?;
        w.prop("reg", &reg(&dev.ranges))?;
        w.prop("kcore,acpi-path", &strings(&[&dev.path]))?;
        if let Some(hid) = &dev.hid {
            w.prop("kcore,acpi-hid", &strings(&[hid]))?;
        }
        w.end_node();
    }
    Ok(())
}

/// The `arm,gic-v3` node: `reg` = GICD, the redistributor regions, then
/// GICC, GICH and GICV when the MADT gives all three (GICC alone when only
/// it is given); the maintenance PPI; one `arm,gic-v3-its` child per ITS.
fn write_gic(w: &mut DtbWriter, d: &Description) -> Result<(), Error> {
    let g = &d.gic;
    w.begin_node(&format!("interrupt-controller@{:x}", g.dist));
    w.prop("compatible", &strings(&["arm,gic-v3"]))?;
    w.prop("interrupt-controller", &[])?;
    w.prop("#interrupt-cells", &cells(&[3]))?;
    w.prop("phandle", &cells(&[GIC_PHANDLE]))?;
    w.prop("#address-cells", &cells(&[2]))?;
    w.prop("#size-cells", &cells(&[2]))?;
    w.prop("ranges", &[])?;
    let n = u32::try_from(g.redist.len()).map_err(|_| Error::TooManyCpus {
        limit: crate::MAX_CPUS,
    })?;
    w.prop("#redistributor-regions", &cells(&[n]))?;
    let mut regs = alloc::vec![(g.dist, GICD_SIZE)];
    regs.extend_from_slice(&g.redist);
    if g.cpu_if != 0 {
        regs.push((g.cpu_if, GIC_CPU_FRAME_SIZE));
        if g.hyp_if != 0 && g.vcpu_if != 0 {
            regs.push((g.hyp_if, GIC_CPU_FRAME_SIZE));
            regs.push((g.vcpu_if, GIC_CPU_FRAME_SIZE));
        }
    }
    w.prop("reg", &reg(&regs))?;
    if g.maintenance != 0 {
        w.prop("interrupts", &cells(&[1, g.maintenance - 16, 4]))?;
    }
    for &base in &g.its {
        w.begin_node(&format!("msi-controller@{base:x}"));
        w.prop(
            "compatible",
            &strings(&[kcore_boot::platform::ITS_COMPATIBLE]),
        )?;
        w.prop("msi-controller", &[])?;
        w.prop("#msi-cells", &cells(&[1]))?;
        w.prop("reg", &reg(&[(base, ITS_SIZE)]))?;
        w.end_node();
    }
    w.end_node();
    Ok(())
}
