//! The device tree KServ boots with.
//!
//! This module owns the edits of `docs/boot-image.md` ("The device tree KServ
//! sees") and the serializer that writes the result. [`build`] re-emits the
//! loader's tree node by node and property by property, values byte for byte
//! (phandles included, `/memreserve/` entries and `boot_cpuid_phys` kept),
//! changing only what the document lists: `/reserved-memory/kcore@...`
//! children covering KCore's memory, the initramfs and bootargs in `/chosen`,
//! PSCI through SMC (which KCore traps and proxies) for every CPU, every
//! device KCore keeps `status = "disabled"` (a GICv3 ITS and the DMA masters
//! of `platform::DMA_MASTER_COMPATIBLES`: they write memory by physical
//! address, `kcore::gic_guard`), and the `/hypervisor` node announcing
//! KCore's ABI version. Booted by `kcore.efi`, `/chosen` keeps the UEFI
//! hand-off (`linux,uefi-*`, with `linux,uefi-mmap-size` the length of the
//! map KCore reserved its memory in) and loses the loader's own
//! `kcore,uefi-mmap-capacity` and `kcore,acpi`.
//!
//! The tree is written with [`crate::dtb_writer::DtbWriter`].

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use kcore_abi::dt;

use crate::dtb_writer::DtbWriter;
use crate::platform::dtb::Dtb;
use crate::platform::tree::{ROOT, Tree};
use crate::platform::{ACPI_MARKER, DtError, MMAP_CAPACITY_PROP};
use kcore::addr::MemRange;

/// What KCore changes in the loader's device tree before KServ sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KservDtEdits<'a> {
    /// KCore's image and pool; each becomes a `no-map` reservation.
    pub kcore_regions: &'a [MemRange],
    /// Where the initramfs lies, if there is one.
    pub initrd: Option<MemRange>,
    /// The payload's command line, placed before the loader's bootargs.
    pub payload_cmdline: Option<&'a str>,
    /// `major << 16 | minor` of the hypercall ABI.
    pub abi_version: u32,
    /// The length of the EFI memory map the loader handed on, after KCore
    /// reserved its memory in it (`crate::efi_map`): `linux,uefi-mmap-size`
    /// becomes it. `None` without UEFI.
    pub uefi_mmap_size: Option<u32>,
}

/// `compatible` of the PSCI node KServ sees (a string list).
pub const PSCI_COMPATIBLE: &[u8] = b"arm,psci-1.0\0arm,psci-0.2\0arm,psci\0";
/// The PSCI 0.1 function-id properties, dropped because KCore offers PSCI 1.0.
pub const PSCI_0_1_PROPERTIES: [&str; 4] = ["cpu_on", "cpu_off", "migrate", "cpu_suspend"];

/// Builds KServ's device tree from the loader's tree `orig` and `edits`.
pub fn build(orig: &[u8], edits: &KservDtEdits<'_>) -> Result<Vec<u8>, DtError> {
    check_edits(edits)?;
    let dtb = Dtb::check(orig)?;
    let fdt = dtb.fdt()?;
    let tree = Tree::new(&fdt)?;
    let plan = Plan::new(&tree, edits)?;
    let mut w = DtbWriter::default();
    plan.emit(&mut w, ROOT)?;
    w.finish(&dtb.reservations, dtb.boot_cpuid_phys)
}

/// KServ's bootargs, NUL-terminated: the payload's command line, then the
/// loader's `/chosen/bootargs` (`None` when both are empty).
fn bootargs(
    tree: &Tree<'_, '_>,
    chosen: Option<usize>,
    edits: &KservDtEdits<'_>,
) -> Option<Vec<u8>> {
    let loader_args = chosen
        .and_then(|c| tree.prop(c, "bootargs"))
        .and_then(|v| v.split(|&b| b == 0).next())
        .filter(|v| !v.is_empty());
    let payload_args = edits
        .payload_cmdline
        .map(str::as_bytes)
        .filter(|c| !c.is_empty());
    match (payload_args, loader_args) {
        (Some(p), Some(l)) => Some([p, b" ", l, b"\0"].concat()),
        (Some(a), None) | (None, Some(a)) => Some([a, b"\0"].concat()),
        (None, None) => None,
    }
}

/// The prefix of the `/chosen` properties by which a UEFI loader hands
/// Linux the system table and the memory map
/// (`drivers/firmware/efi/fdtparams.c`).
pub const UEFI_PROP_PREFIX: &str = "linux,uefi-";
/// The memory map's length in bytes (a `u32`).
pub const MMAP_SIZE_PROP: &str = "linux,uefi-mmap-size";

/// KServ's tree on an ACPI machine (the loader's `/chosen` has
/// [`crate::platform::ACPI_MARKER`]): only `/chosen`, so that Linux's
/// `dt_is_stub()` (`arch/arm64/kernel/acpi.c`) leaves ACPI on, holding the
/// bootargs, the initramfs, every `linux,uefi-*` property of the loader's
/// `/chosen` (system table, memory map) and `kcore,abi-version`, by which
/// the shim finds KCore (there is no `/hypervisor` node: Linux would turn
/// ACPI off for it). KCore's memory is reserved in the EFI memory map
/// instead (`crate::efi_map`), and `mmap_size` replaces
/// `linux,uefi-mmap-size` (the map grows when KCore splits descriptors);
/// the tree has no `/memreserve/` entries.
pub fn stub(orig: &[u8], edits: &KservDtEdits<'_>, mmap_size: u32) -> Result<Vec<u8>, DtError> {
    check_edits(edits)?;
    let dtb = Dtb::check(orig)?;
    let fdt = dtb.fdt()?;
    let tree = Tree::new(&fdt)?;
    let chosen = tree
        .child(ROOT, "chosen")
        .filter(|&c| tree.name(c) == "chosen");
    let mut w = DtbWriter::default();
    w.begin_node("");
    w.prop("#address-cells", &2u32.to_be_bytes())?;
    w.prop("#size-cells", &2u32.to_be_bytes())?;
    w.begin_node("chosen");
    if let Some(args) = bootargs(&tree, chosen, edits) {
        w.prop("bootargs", &args)?;
    }
    if let Some(r) = edits.initrd {
        w.prop("linux,initrd-start", &r.base().to_be_bytes())?;
        w.prop("linux,initrd-end", &r.end().to_be_bytes())?;
    }
    for (name, value) in chosen
        .into_iter()
        .flat_map(|c| tree.props(c))
        .filter(|(n, _)| n.starts_with(UEFI_PROP_PREFIX))
    {
        if name == MMAP_SIZE_PROP {
            w.prop(name, &mmap_size.to_be_bytes())?;
        } else {
            w.prop(name, value)?;
        }
    }
    w.prop(dt::ABI_VERSION_PROP, &edits.abi_version.to_be_bytes())?;
    w.end_node();
    w.end_node();
    w.finish(&[], dtb.boot_cpuid_phys)
}

/// Refuses edits that would produce a contradictory tree.
fn check_edits(edits: &KservDtEdits<'_>) -> Result<(), DtError> {
    // Regions are never empty and never wrap (`MemRange`); they may still
    // overlap.
    for (k, r) in edits.kcore_regions.iter().enumerate() {
        if edits
            .kcore_regions
            .iter()
            .skip(k + 1)
            .any(|o| o.overlaps(r))
        {
            return Err(DtError::BadEdit("KCore regions overlap"));
        }
    }
    if edits.payload_cmdline.is_some_and(|c| c.contains('\0')) {
        return Err(DtError::BadEdit(
            "the payload command line contains a NUL byte",
        ));
    }
    Ok(())
}

/// What happens to one property of an edited node.
#[derive(Clone, Debug)]
struct PropEdit {
    name: &'static str,
    /// The new value; `None` removes the property.
    value: Option<Vec<u8>>,
}

impl PropEdit {
    fn set(name: &'static str, value: &[u8]) -> Self {
        PropEdit {
            name,
            value: Some(value.to_vec()),
        }
    }
    fn string(name: &'static str, value: &str) -> Self {
        let mut v = value.as_bytes().to_vec();
        v.push(0);
        PropEdit {
            name,
            value: Some(v),
        }
    }
    fn remove(name: &'static str) -> Self {
        PropEdit { name, value: None }
    }
}

/// The edits, resolved against one tree.
struct Plan<'t, 'b, 'a> {
    tree: &'t Tree<'b, 'a>,
    chosen_edits: Vec<PropEdit>,
    psci_edits: Vec<PropEdit>,
    cpu_edits: Vec<PropEdit>,
    hypervisor_edits: Vec<PropEdit>,
    /// What a node KCore keeps becomes: unavailable to KServ.
    kept_edits: Vec<PropEdit>,
    /// `/reserved-memory/kcore@...` children: `(name, reg value)`.
    kcore_nodes: Vec<(String, Vec<u8>)>,
    /// `(#address-cells, #size-cells)` of a `/reserved-memory` this plan
    /// creates, `None` if the tree has one.
    new_reserved_memory: Option<(u32, u32)>,
    /// Whether `/chosen`, a PSCI node and `/hypervisor` exist.
    has_chosen: bool,
    has_psci: bool,
    has_hypervisor: bool,
    /// `/cpus`, whose `cpu` children get PSCI.
    cpus: Option<usize>,
}

/// The roles a node of the loader's tree can have in the edits.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Root,
    Chosen,
    ReservedMemory,
    Psci,
    Cpu,
    Hypervisor,
    /// A device KCore keeps (a GICv3 ITS, a DMA master): disabled for
    /// KServ.
    Kept,
    /// A `/reserved-memory` child a previous KCore left: replaced.
    StaleKcore,
    Plain,
}

impl<'t, 'b, 'a> Plan<'t, 'b, 'a> {
    fn new(tree: &'t Tree<'b, 'a>, edits: &KservDtEdits<'_>) -> Result<Self, DtError> {
        let chosen = tree
            .child(ROOT, "chosen")
            .filter(|&c| tree.name(c) == "chosen");
        let reserved = tree
            .child(ROOT, "reserved-memory")
            .filter(|&c| tree.name(c) == "reserved-memory");
        let hypervisor = tree
            .child(ROOT, "hypervisor")
            .filter(|&c| tree.name(c) == "hypervisor");
        let cpus = tree.child(ROOT, "cpus").filter(|&c| tree.name(c) == "cpus");

        let bootargs = match edits.payload_cmdline.filter(|c| !c.is_empty()) {
            Some(_) => bootargs(tree, chosen, edits),
            // Without a payload command line, the loader's stays as it is.
            None => None,
        };
        let mut chosen_edits = Vec::new();
        if let Some(v) = bootargs {
            chosen_edits.push(PropEdit {
                name: "bootargs",
                value: Some(v),
            });
        }
        if let Some(len) = edits.uefi_mmap_size {
            chosen_edits.push(PropEdit::set(MMAP_SIZE_PROP, &len.to_be_bytes()));
        }
        // KCore's loader ABI, not KServ's.
        chosen_edits.push(PropEdit::remove(MMAP_CAPACITY_PROP));
        chosen_edits.push(PropEdit::remove(ACPI_MARKER));
        match edits.initrd {
            Some(r) => {
                chosen_edits.push(PropEdit::set("linux,initrd-start", &r.base().to_be_bytes()));
                chosen_edits.push(PropEdit::set("linux,initrd-end", &r.end().to_be_bytes()));
            }
            None => {
                chosen_edits.push(PropEdit::remove("linux,initrd-start"));
                chosen_edits.push(PropEdit::remove("linux,initrd-end"));
            }
        }

        let mut psci_edits = alloc::vec![
            PropEdit::set("compatible", PSCI_COMPATIBLE),
            PropEdit::string("method", "smc")
        ];
        psci_edits.extend(PSCI_0_1_PROPERTIES.iter().map(|p| PropEdit::remove(p)));
        let cpu_edits = alloc::vec![
            PropEdit::string("enable-method", "psci"),
            PropEdit::remove("cpu-release-addr")
        ];
        let hypervisor_edits = alloc::vec![
            PropEdit::string("compatible", dt::HYPERVISOR_COMPATIBLE),
            PropEdit::set(dt::ABI_VERSION_PROP, &edits.abi_version.to_be_bytes()),
        ];

        // The cells the kcore@ children's `reg` uses.
        let (ac, sc) = match reserved {
            Some(rm) => {
                if tree.prop(rm, "ranges").is_some_and(|r| !r.is_empty()) {
                    return Err(DtError::BadEdit(
                        "/reserved-memory translates addresses (non-empty ranges)",
                    ));
                }
                tree.cells(rm)
            }
            None => tree.cells(ROOT),
        };
        if !(1..=2).contains(&ac) || !(1..=2).contains(&sc) {
            return Err(DtError::BadEdit(
                "/reserved-memory has unsupported #address-cells or #size-cells",
            ));
        }
        let mut kcore_nodes = Vec::new();
        for r in edits.kcore_regions {
            let mut reg = Vec::new();
            push_cells(&mut reg, r.base(), ac).ok_or(DtError::BadEdit(
                "a KCore region does not fit /reserved-memory's #address-cells",
            ))?;
            push_cells(&mut reg, r.size(), sc).ok_or(DtError::BadEdit(
                "a KCore region does not fit /reserved-memory's #size-cells",
            ))?;
            kcore_nodes.push((format!("kcore@{:x}", r.base()), reg));
        }

        let mut plan = Plan {
            tree,
            chosen_edits,
            psci_edits,
            cpu_edits,
            hypervisor_edits,
            kept_edits: alloc::vec![PropEdit::string("status", "disabled")],
            kcore_nodes,
            new_reserved_memory: if reserved.is_some() {
                None
            } else {
                Some((ac, sc))
            },
            has_chosen: chosen.is_some(),
            has_psci: false,
            has_hypervisor: hypervisor.is_some(),
            cpus,
        };
        plan.has_psci = (0..tree.nodes.len()).any(|i| plan.role(i) == Role::Psci);
        Ok(plan)
    }

    /// What node `i` is to the edits.
    fn role(&self, i: usize) -> Role {
        let tree = self.tree;
        let Some(parent) = tree.parent(i) else {
            return Role::Root;
        };
        let name = tree.name(i);
        if crate::platform::kept_from_kserv(tree, i) {
            return Role::Kept;
        }
        if tree.compatible_with(i, |c| c.starts_with(b"arm,psci"))
            || (parent == ROOT && name == "psci")
        {
            return Role::Psci;
        }
        if parent == ROOT {
            return match name {
                "chosen" => Role::Chosen,
                "reserved-memory" => Role::ReservedMemory,
                "hypervisor" => Role::Hypervisor,
                _ => Role::Plain,
            };
        }
        if Some(parent) == self.cpus && tree.prop_is(i, "device_type", "cpu") {
            return Role::Cpu;
        }
        if tree.parent(parent) == Some(ROOT)
            && tree.name(parent) == "reserved-memory"
            && tree.is_compatible(i, dt::RESERVED_COMPATIBLE)
        {
            return Role::StaleKcore;
        }
        Role::Plain
    }

    fn edits_for(&self, role: Role) -> &[PropEdit] {
        match role {
            Role::Chosen => &self.chosen_edits,
            Role::Psci => &self.psci_edits,
            Role::Cpu => &self.cpu_edits,
            Role::Hypervisor => &self.hypervisor_edits,
            Role::Kept => &self.kept_edits,
            Role::Root | Role::ReservedMemory | Role::StaleKcore | Role::Plain => &[],
        }
    }

    /// Writes node `i`, its properties with the edits applied, its children,
    /// and the nodes the edits add under it.
    fn emit(&self, w: &mut DtbWriter, i: usize) -> Result<(), DtError> {
        let role = self.role(i);
        w.begin_node(self.tree.name(i));
        emit_props(w, self.tree.props(i), self.edits_for(role))?;
        for &c in self.tree.children(i) {
            if self.role(c) != Role::StaleKcore {
                self.emit(w, c)?;
            }
        }
        match role {
            Role::ReservedMemory => self.emit_kcore_nodes(w)?,
            Role::Root => self.emit_new_root_children(w)?,
            _ => {}
        }
        w.end_node();
        Ok(())
    }

    fn emit_kcore_nodes(&self, w: &mut DtbWriter) -> Result<(), DtError> {
        for (name, reg) in &self.kcore_nodes {
            w.begin_node(name);
            w.prop(
                "compatible",
                &[dt::RESERVED_COMPATIBLE.as_bytes(), b"\0"].concat(),
            )?;
            w.prop("reg", reg)?;
            w.prop("no-map", &[])?;
            w.end_node();
        }
        Ok(())
    }

    /// The nodes the edits need that the loader's tree lacks.
    fn emit_new_root_children(&self, w: &mut DtbWriter) -> Result<(), DtError> {
        if let Some((ac, sc)) = self.new_reserved_memory {
            w.begin_node("reserved-memory");
            w.prop("#address-cells", &ac.to_be_bytes())?;
            w.prop("#size-cells", &sc.to_be_bytes())?;
            w.prop("ranges", &[])?;
            self.emit_kcore_nodes(w)?;
            w.end_node();
        }
        let new_nodes = [
            (!self.has_chosen, "chosen", &self.chosen_edits),
            (!self.has_psci, "psci", &self.psci_edits),
            (!self.has_hypervisor, "hypervisor", &self.hypervisor_edits),
        ];
        for (_, name, edits) in new_nodes.iter().filter(|(missing, _, _)| *missing) {
            w.begin_node(name);
            emit_props(w, core::iter::empty(), edits)?;
            w.end_node();
        }
        Ok(())
    }
}

/// Writes `props` with `edits` applied: an edited property keeps its place,
/// a removed one disappears, new ones follow the original properties.
fn emit_props<'a>(
    w: &mut DtbWriter,
    props: impl Iterator<Item = (&'a str, &'a [u8])>,
    edits: &[PropEdit],
) -> Result<(), DtError> {
    let mut done = alloc::vec![false; edits.len()];
    for (name, value) in props {
        match edits.iter().position(|e| e.name == name) {
            None => w.prop(name, value)?,
            Some(k) => {
                let (Some(edit), Some(flag)) = (edits.get(k), done.get_mut(k)) else {
                    continue;
                };
                if let (Some(v), false) = (&edit.value, *flag) {
                    w.prop(name, v)?;
                }
                *flag = true;
            }
        }
    }
    for (edit, flag) in edits.iter().zip(done) {
        if let (Some(v), false) = (&edit.value, flag) {
            w.prop(edit.name, v)?;
        }
    }
    Ok(())
}

/// Appends `value` as `cells` big-endian cells; `None` if it does not fit.
fn push_cells(out: &mut Vec<u8>, value: u64, cells: u32) -> Option<()> {
    match cells {
        1 => out.extend_from_slice(&u32::try_from(value).ok()?.to_be_bytes()),
        2 => out.extend_from_slice(&value.to_be_bytes()),
        _ => return None,
    }
    Some(())
}
