//! The devices the DSDT and SSDTs describe in AML, and which of them KCore
//! keeps from KServ (`docs/security.md`, "Devices that write memory").
//!
//! The AML is read by the `acpi` crate's interpreter (rust-osdev, 6.1.1;
//! the `aml` crate, 0.16, has no `VarPackage` and refuses QEMU's DSDT):
//! [`devices`] loads the DSDT and every SSDT into one namespace, walks its
//! `Device`s and evaluates each one's `_HID`, `_CID` and `_CRS` (a name or
//! a method; `_STA` is not used: a device that is absent costs nothing to
//! keep). The `_CRS` buffer is decoded here ([`memory_ranges`]; the crate's
//! decoder panics on descriptors it does not implement): Memory24, Memory32,
//! Memory32Fixed, Word/DWord/QWord/Extended address space of memory type
//! (and of I/O type with a translation offset, which on Arm is memory), and
//! Generic Register in system memory, each bounds-checked; other descriptors
//! (interrupts, GPIO, serial buses, vendor data) name no memory.
//!
//! Policy, deny by default ([`kept_by_kcore`]): every device whose `_CRS`
//! names memory is KCore's, out of KServ's stage 2 (KCore's tree lists it
//! as `kcore,acpi-device`, one of `kcore_boot`'s DMA-master compatibles),
//! unless its `_HID` is in [`KSERV_DEVICES`], devices known not to master
//! memory. The PCI host bridge is not in the list: its ECAM is KCore's
//! (MCFG), and its `_CRS` windows, where firmware placed the BARs of the
//! functions it set up (and may have left bus masters, as EDK2 leaves the
//! disk it booted from), are KCore's too: KServ drives no PCI device on an
//! ACPI machine.
//!
//! Fail closed: AML the crate cannot load, or a device whose `_HID`, `_CID`
//! or `_CRS` cannot be evaluated or decoded, or whose evaluation touches
//! hardware (an operation region: the handler given to the crate refuses
//! every access), is an [`Error::Aml`], and `kcore.efi` refuses to boot
//! with it: KCore could not tell which memory is safe to give KServ.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::ptr::NonNull;
use core::str::FromStr;
use core::sync::atomic::{AtomicBool, Ordering};

use acpi6::address::{AddressSpace, GenericAddress, MappedGas};
use acpi6::aml::namespace::{AmlName, NamespaceLevelKind};
use acpi6::aml::object::Object;
use acpi6::aml::{AmlError, Interpreter};
use acpi6::registers::{FixedRegisters, Pm1ControlRegisterBlock, Pm1EventRegisterBlock};
use acpi6::{Handle, PciAddress, PhysicalMapping};

use crate::Error;
use crate::tables::{HEADER_LEN, le16, le32, le64};

/// `_HID`s of devices that do not master memory, which KServ keeps: CPUs
/// (`ACPI0007`), the power button (`PNP0C0C`), the generic event device
/// (`ACPI0013`: an event register and an interrupt; QEMU's power-down
/// button), the PL011 (`ARMH0011`) and SBSA (`ARMHB000`) UARTs (KServ's
/// console; they reach memory only through a separate DMA controller,
/// which is not listed), and the PL061 GPIO controller (`ARMH0061`).
pub const KSERV_DEVICES: [&str; 6] = [
    "ACPI0007", "PNP0C0C", "ACPI0013", "ARMH0011", "ARMHB000", "ARMH0061",
];

/// The device-tree `compatible` KCore's tree gives an ACPI device it keeps
/// before `kcore,acpi-device`, for the `_HID`s that have one.
pub const DT_COMPATIBLES: [(&str, &str); 2] = [
    ("QEMU0002", "qemu,fw-cfg-mmio"),
    ("LNRO0005", "virtio,mmio"),
];

/// One `Device` of the namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AcpiDevice {
    /// Its absolute path, such as `\_SB_.FWCF`.
    pub path: String,
    /// `_HID`, as a string (an EISA ID decoded), if it has one.
    pub hid: Option<String>,
    /// `_CID`s, as strings.
    pub cids: Vec<String>,
    /// The memory its `_CRS` names, `(base, size)`, in `_CRS` order.
    pub ranges: Vec<(u64, u64)>,
}

impl AcpiDevice {
    /// `_HID` and `_CID`s.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.hid.iter().chain(&self.cids).map(String::as_str)
    }
}

/// Whether KCore keeps `d` from KServ: it names memory and its `_HID` is
/// not in [`KSERV_DEVICES`].
pub fn kept_by_kcore(d: &AcpiDevice) -> bool {
    let allowed = d.hid.as_deref().is_some_and(|h| KSERV_DEVICES.contains(&h));
    !d.ranges.is_empty() && !allowed
}

/// The hardware the AML may not touch: every access is refused (reads give
/// zero, a mapping is a page of zeroes) and noted, and the evaluation that
/// made it fails.
#[derive(Clone)]
struct NoHardware(Arc<AtomicBool>);

/// What [`NoHardware`] maps.
static ZEROES: [u64; 512] = [0; 512];

impl NoHardware {
    fn touch<T: Default>(&self) -> T {
        self.0.store(true, Ordering::Relaxed);
        T::default()
    }
}

impl acpi6::Handler for NoHardware {
    unsafe fn map_physical_region<T>(
        &self,
        physical_address: usize,
        size: usize,
    ) -> PhysicalMapping<Self, T> {
        self.0.store(true, Ordering::Relaxed);
        PhysicalMapping {
            physical_start: physical_address,
            virtual_start: NonNull::from(&ZEROES).cast(),
            region_length: size.min(size_of_val(&ZEROES)),
            mapped_length: size_of_val(&ZEROES),
            handler: self.clone(),
        }
    }
    fn unmap_physical_region<T>(_: &PhysicalMapping<Self, T>) {}
    fn read_u8(&self, _: usize) -> u8 {
        self.touch()
    }
    fn read_u16(&self, _: usize) -> u16 {
        self.touch()
    }
    fn read_u32(&self, _: usize) -> u32 {
        self.touch()
    }
    fn read_u64(&self, _: usize) -> u64 {
        self.touch()
    }
    fn write_u8(&self, _: usize, _: u8) {
        self.touch()
    }
    fn write_u16(&self, _: usize, _: u16) {
        self.touch()
    }
    fn write_u32(&self, _: usize, _: u32) {
        self.touch()
    }
    fn write_u64(&self, _: usize, _: u64) {
        self.touch()
    }
    fn read_io_u8(&self, _: u16) -> u8 {
        self.touch()
    }
    fn read_io_u16(&self, _: u16) -> u16 {
        self.touch()
    }
    fn read_io_u32(&self, _: u16) -> u32 {
        self.touch()
    }
    fn write_io_u8(&self, _: u16, _: u8) {
        self.touch()
    }
    fn write_io_u16(&self, _: u16, _: u16) {
        self.touch()
    }
    fn write_io_u32(&self, _: u16, _: u32) {
        self.touch()
    }
    fn read_pci_u8(&self, _: PciAddress, _: u16) -> u8 {
        self.touch()
    }
    fn read_pci_u16(&self, _: PciAddress, _: u16) -> u16 {
        self.touch()
    }
    fn read_pci_u32(&self, _: PciAddress, _: u16) -> u32 {
        self.touch()
    }
    fn write_pci_u8(&self, _: PciAddress, _: u16, _: u8) {
        self.touch()
    }
    fn write_pci_u16(&self, _: PciAddress, _: u16, _: u16) {
        self.touch()
    }
    fn write_pci_u32(&self, _: PciAddress, _: u16, _: u32) {
        self.touch()
    }
    fn nanos_since_boot(&self) -> u64 {
        0
    }
    fn stall(&self, _: u64) {}
    fn sleep(&self, _: u64) {}
    fn create_mutex(&self) -> Handle {
        Handle(0)
    }
    fn acquire(&self, _: Handle, _: u16) -> Result<(), AmlError> {
        Ok(())
    }
    fn release(&self, _: Handle) {}
    fn handle_fatal_error(&self, _: u8, _: u32, _: u64) {
        self.touch()
    }
}

fn aml_error(what: String) -> Error {
    Error::Aml(what)
}

/// An interpreter with no hardware: the PM1 registers (which a
/// hardware-reduced Arm machine does not have) are I/O port 0, which
/// [`NoHardware`] refuses, and there is no FACS (no global lock).
fn interpreter(hw: &NoHardware, dsdt_revision: u8) -> Result<Interpreter<NoHardware>, Error> {
    let none = GenericAddress {
        address_space: AddressSpace::SystemIo,
        bit_width: 0,
        bit_offset: 0,
        access_size: 0,
        address: 0,
    };
    let gas = || {
        // SAFETY: an I/O-space GAS is not mapped; its accesses go to
        // `NoHardware`, which refuses them.
        unsafe { MappedGas::map_gas(none, hw) }
            .map_err(|e| aml_error(format!("no PM1 registers: {e:?}")))
    };
    let registers = FixedRegisters {
        pm1_event_registers: Pm1EventRegisterBlock {
            pm1_event_length: 0,
            pm1a: gas()?,
            pm1b: None,
        },
        pm1_control_registers: Pm1ControlRegisterBlock {
            pm1a: gas()?,
            pm1b: None,
        },
    };
    // The crate's API takes an `Arc`; the interpreter runs on one thread.
    #[allow(clippy::arc_with_non_send_sync)]
    let registers = Arc::new(registers);
    Ok(Interpreter::new(hw.clone(), dsdt_revision, registers, None))
}

/// Every `Device` of the namespace the AML tables `aml_tables` (whole SDTs:
/// the DSDT, then the SSDTs) build, in path order, with its IDs and the
/// memory of its `_CRS`.
pub fn devices(aml_tables: &[&[u8]]) -> Result<Vec<AcpiDevice>, Error> {
    let Some(first) = aml_tables.first() else {
        return Ok(Vec::new());
    };
    let hw = NoHardware(Arc::new(AtomicBool::new(false)));
    let revision = first.get(8).copied().unwrap_or_default();
    let aml = interpreter(&hw, revision)?;
    for t in aml_tables {
        let sig = crate::Sig(&crate::tables::signature(t)).to_string();
        let body = t
            .get(HEADER_LEN..)
            .filter(|b| !b.is_empty())
            .ok_or_else(|| aml_error(format!("{sig} has no AML")))?;
        aml.load_table(body)
            .map_err(|e| aml_error(format!("{sig} cannot be loaded: {e:?}")))?;
    }
    if hw.0.load(Ordering::Relaxed) {
        return Err(aml_error(
            "loading the AML touched hardware (an operation region)".into(),
        ));
    }
    let mut paths = Vec::new();
    aml.namespace
        .lock()
        .traverse(|name, level| {
            if level.kind == NamespaceLevelKind::Device {
                paths.push(name.clone());
            }
            Ok(true)
        })
        .map_err(|e| aml_error(format!("the namespace cannot be walked: {e:?}")))?;
    paths.iter().map(|p| device(&aml, &hw, p)).collect()
}

/// Evaluates `name` under `device`, if it exists.
fn evaluate(
    aml: &Interpreter<NoHardware>,
    hw: &NoHardware,
    device: &AmlName,
    name: &str,
) -> Result<Option<Object>, Error> {
    let at = |e| aml_error(format!("{device}.{name}: {e:?}"));
    let path = AmlName::from_str(name)
        .and_then(|n| n.resolve(device))
        .map_err(at)?;
    let value = aml.evaluate_if_present(path, Vec::new()).map_err(at)?;
    if hw.0.swap(false, Ordering::Relaxed) {
        return Err(aml_error(format!(
            "{device}.{name} touches hardware (an operation region)"
        )));
    }
    Ok(value.map(|v| (*v).clone()))
}

/// A PNP ID from its EISA encoding (the integer AML's `EisaId` gives).
pub fn eisa_id(v: u64) -> Option<String> {
    let v = u32::try_from(v).ok()?;
    let [b0, b1, b2, b3] = v.to_le_bytes();
    let vendor = u16::from_be_bytes([b0, b1]);
    let letter = |shift: u16| {
        let c = ((vendor >> shift) & 0x1f) as u8;
        (1..=26).contains(&c).then_some(char::from(b'@' + c))
    };
    Some(format!(
        "{}{}{}{b2:02X}{b3:02X}",
        letter(10)?,
        letter(5)?,
        letter(0)?
    ))
}

/// An ID object's value as a string.
fn id(value: &Object, what: &str) -> Result<String, Error> {
    match value {
        Object::String(s) => Ok(s.clone()),
        Object::Integer(v) => {
            eisa_id(*v).ok_or_else(|| aml_error(format!("{what} is not an EISA ID: {v:#x}")))
        }
        other => Err(aml_error(format!(
            "{what} is neither a string nor an integer: {:?}",
            other.typ()
        ))),
    }
}

fn device(
    aml: &Interpreter<NoHardware>,
    hw: &NoHardware,
    path: &AmlName,
) -> Result<AcpiDevice, Error> {
    let p = path.to_string();
    let hid = evaluate(aml, hw, path, "_HID")?
        .map(|v| id(&v, &format!("{p}._HID")))
        .transpose()?;
    let cids = match evaluate(aml, hw, path, "_CID")? {
        None => Vec::new(),
        Some(Object::Package(list)) => list
            .iter()
            .map(|v| id(v, &format!("{p}._CID")))
            .collect::<Result<_, _>>()?,
        Some(v) => alloc::vec![id(&v, &format!("{p}._CID"))?],
    };
    let ranges = match evaluate(aml, hw, path, "_CRS")? {
        None => Vec::new(),
        Some(Object::Buffer(b)) => {
            memory_ranges(&b).map_err(|why| aml_error(format!("{p}._CRS: {why}")))?
        }
        Some(other) => {
            return Err(aml_error(format!(
                "{p}._CRS is not a buffer: {:?}",
                other.typ()
            )));
        }
    };
    Ok(AcpiDevice {
        path: p,
        hid,
        cids,
        ranges,
    })
}

/// `[min, max]` with length `len` (0: up to `max`) at `offset`, as `(base,
/// size)`; `None` for an empty range.
fn span(min: u64, max: u64, len: u64, offset: u64) -> Result<Option<(u64, u64)>, &'static str> {
    let size = if len != 0 {
        len
    } else if max >= min {
        max - min + 1
    } else {
        return Ok(None);
    };
    let base = min
        .checked_add(offset)
        .filter(|b| b.checked_add(size - 1).is_some())
        .ok_or("a range wraps past the end of the address space")?;
    Ok(Some((base, size)))
}

/// The memory a resource template (a `_CRS` buffer) names, `(base, size)`.
/// Ranges whose base may move (Memory24/Memory32's `[min, max]`) are taken
/// whole; an address space's range is its `[min, max]` (or `min` and
/// `_LEN`) plus its translation offset, the CPU's view behind a bridge.
pub fn memory_ranges(crs: &[u8]) -> Result<Vec<(u64, u64)>, &'static str> {
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(&tag) = crs.get(at) {
        if tag & 0x80 == 0 {
            // Small item: type in bits 6:3, length in bits 2:0.
            if (tag >> 3) & 0xf == 0xf {
                return Ok(out);
            }
            at += 1 + usize::from(tag & 7);
            if at > crs.len() {
                return Err("a small descriptor runs past the buffer");
            }
            continue;
        }
        let len = usize::from(le16(crs, at + 1).ok_or("a large descriptor's header is cut")?);
        let body = crs
            .get(at + 3..at + 3 + len)
            .ok_or("a large descriptor runs past the buffer")?;
        if let Some(r) = large(tag & 0x7f, body)? {
            out.push(r);
        }
        at += 3 + len;
    }
    Ok(out)
}

/// The memory of one large descriptor (`kind`, its `body` after the
/// 3-byte header).
fn large(kind: u8, body: &[u8]) -> Result<Option<(u64, u64)>, &'static str> {
    const SHORT: &str = "a memory descriptor is shorter than its fields";
    let u16_at = |k| le16(body, k).map(u64::from).ok_or(SHORT);
    let u32_at = |k| le32(body, k).map(u64::from).ok_or(SHORT);
    let u64_at = |k| le64(body, k).ok_or(SHORT);
    match kind {
        // Memory24: info, min, max, alignment, length; addresses and length
        // in 256-byte units.
        0x01 => {
            let (min, max, len) = (u16_at(1)? << 8, u16_at(3)? << 8, u16_at(7)? << 8);
            span(min, max + len.max(1) - 1, 0, 0)
        }
        // Memory32: info, min, max, alignment, length.
        0x05 => {
            let (min, max, len) = (u32_at(1)?, u32_at(5)?, u32_at(13)?);
            span(min, max + len.max(1) - 1, 0, 0)
        }
        // Memory32Fixed: info, base, length.
        0x06 => {
            let (base, len) = (u32_at(1)?, u32_at(5)?);
            if len == 0 {
                Ok(None)
            } else {
                span(base, 0, len, 0)
            }
        }
        // Generic Register: address space id, bit width, bit offset, access
        // size, address.
        0x02 => {
            let space = *body.first().ok_or(SHORT)?;
            let bytes = u64::from(*body.get(1).ok_or(SHORT)?).div_ceil(8).max(1);
            if space == 0 {
                span(u64_at(4)?, 0, bytes, 0)
            } else {
                Ok(None)
            }
        }
        // DWord, Word, QWord address space: type, flags, type flags, then
        // granularity, min, max, translation, length of 4, 2, 8 bytes.
        0x07 | 0x08 | 0x0a => {
            let width = match kind {
                0x07 => 4,
                0x08 => 2,
                _ => 8,
            };
            let field = |k: usize| {
                let at = 3 + k * width;
                match width {
                    2 => u16_at(at),
                    4 => u32_at(at),
                    _ => u64_at(at),
                }
            };
            let ty = *body.first().ok_or(SHORT)?;
            address_space(ty, field(1)?, field(2)?, field(3)?, field(4)?)
        }
        // Extended address space: type, flags, type flags, revision,
        // reserved, then 8-byte granularity, min, max, translation, length.
        0x0b => {
            let ty = *body.first().ok_or(SHORT)?;
            address_space(ty, u64_at(13)?, u64_at(21)?, u64_at(29)?, u64_at(37)?)
        }
        _ => Ok(None),
    }
}

/// An address-space descriptor's memory: memory ranges, and I/O ranges a
/// bridge translates into memory (Arm has no I/O ports).
fn address_space(
    ty: u8,
    min: u64,
    max: u64,
    translation: u64,
    len: u64,
) -> Result<Option<(u64, u64)>, &'static str> {
    match ty {
        0 => span(min, max, len, translation),
        1 if translation != 0 => span(min, max, len, translation),
        _ => Ok(None),
    }
}

/// The devices KCore keeps (module documentation): each with its memory.
pub fn kept(aml_tables: &[&[u8]]) -> Result<Vec<AcpiDevice>, Error> {
    let mut all = devices(aml_tables)?;
    all.retain(kept_by_kcore);
    Ok(all)
}

/// The IDs (`_HID`, `_CID`) `kserv_aml` renames in KServ's DSDT and SSDTs: those of
/// the devices KCore keeps, but for IDs a device KServ keeps also has (the
/// rename is by ID, and must not hide KServ's own devices from its
/// drivers).
pub fn ids_to_hide(all: &[AcpiDevice]) -> Vec<String> {
    let (kept, kservs): (Vec<&AcpiDevice>, Vec<&AcpiDevice>) =
        all.iter().partition(|d| kept_by_kcore(d));
    let mut out: Vec<String> = kept
        .iter()
        .flat_map(|d| d.ids())
        .filter(|id| !kservs.iter().any(|k| k.ids().any(|x| x == *id)))
        .map(String::from)
        .collect();
    out.sort();
    out.dedup();
    out
}
