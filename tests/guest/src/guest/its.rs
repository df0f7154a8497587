//! The VM's ITS ([`kcore_test_guest::gic::ITS`]) and vCPU 0's LPIs, set up
//! the way Linux's GICv3 ITS driver does it (GICv3 architecture, IHI 0069:
//! the redistributor's LPI registers, the ITS's registers and commands):
//!
//! - vCPU 0's redistributor (the first, at
//!   [`GICR`](kcore_test_guest::eventfd::GICR)): `GICR_PROPBASER` (the LPI
//!   property table, [`ID_BITS`] of INTIDs), `GICR_PENDBASER` (its pending
//!   table), then `GICR_CTLR.EnableLPIs`;
//! - the ITS: `GITS_BASER0` (the device table) and `GITS_BASER1` (the
//!   collection table), both flat, one 64 KiB page; `GITS_CBASER` (a
//!   64 KiB command queue) and `GITS_CWRITER`; then `GITS_CTLR.Enabled`;
//! - commands ([`Command`], encoded by [`mapc`] and the like): written to
//!   the queue, then `GITS_CWRITER` moves past them and [`send`] waits,
//!   bounded, until `GITS_CREADR` has caught up.
//!
//! Every table and the queue is a static buffer here (zeroed bss, aligned
//! as its register needs), identity-mapped normal write-back memory, which
//! the registers describe as inner shareable and write-back (Linux's
//! `InnerShareable | RaWaWb`): the host's ITS reads it coherently once
//! [`cpu::publish_stores`] has made the stores visible.

use super::{cpu, timer};
use core::arch::asm;
use core::sync::atomic::{AtomicU8, AtomicU64, Ordering::Relaxed};
use kcore_test_guest::eventfd::GICR;
use kcore_test_guest::gic::ITS;

// ---- registers ---------------------------------------------------------------------

/// Offsets in a redistributor's `RD_base` frame.
pub mod rd {
    /// `GICR_CTLR` (32-bit).
    pub const CTLR: u64 = 0x0;
    /// `GICR_CTLR.EnableLPIs`.
    pub const CTLR_ENABLE_LPIS: u32 = 1 << 0;
    /// `GICR_TYPER` (64-bit).
    pub const TYPER: u64 = 0x8;
    /// `GICR_TYPER.PLPIS`: physical LPIs supported.
    pub const TYPER_PLPIS: u64 = 1 << 0;
    /// `GICR_PROPBASER` (64-bit).
    pub const PROPBASER: u64 = 0x70;
    /// `GICR_PENDBASER` (64-bit).
    pub const PENDBASER: u64 = 0x78;
    /// `GICR_PROPBASER.Physical_Address` (bits 51:12).
    pub const PROPBASER_ADDRESS: u64 = 0x000F_FFFF_FFFF_F000;
    /// `GICR_PROPBASER.IDbits` (bits 4:0): ID bits minus one.
    pub const PROPBASER_IDBITS: u64 = 0x1F;
    /// `GICR_PENDBASER.Physical_Address` (bits 51:16).
    pub const PENDBASER_ADDRESS: u64 = 0x000F_FFFF_FFFF_0000;
    /// Shareability (bits 11:10) inner shareable, InnerCache (bits 9:7)
    /// normal write-back, read- and write-allocate: both registers' memory.
    pub const ATTRS: u64 = 1 << 10 | 7 << 7;
}

/// Offsets in the ITS's control frame.
pub mod gits {
    /// `GITS_CTLR` (32-bit).
    pub const CTLR: u64 = 0x0;
    /// `GITS_CTLR.Enabled`.
    pub const CTLR_ENABLED: u32 = 1 << 0;
    /// `GITS_TYPER` (64-bit).
    pub const TYPER: u64 = 0x8;
    /// `GITS_TYPER.Physical`: physical LPIs supported.
    pub const TYPER_PHYSICAL: u64 = 1 << 0;
    /// `GITS_TYPER.PTA`: targets are redistributor addresses (not
    /// processor numbers).
    pub const TYPER_PTA: u64 = 1 << 19;
    /// `GITS_CBASER` (64-bit).
    pub const CBASER: u64 = 0x80;
    /// `GITS_CWRITER` (64-bit).
    pub const CWRITER: u64 = 0x88;
    /// `GITS_CREADR` (64-bit).
    pub const CREADR: u64 = 0x90;
    /// `GITS_BASER<n>` (64-bit).
    pub const fn baser(n: u64) -> u64 {
        0x100 + 8 * n
    }
    /// `GITS_BASER.Valid`, `GITS_CBASER.Valid`.
    pub const VALID: u64 = 1 << 63;
    /// `GITS_BASER.Type` (bits 58:56) of the device table.
    pub const TYPE_DEVICE: u64 = 1;
    /// `GITS_BASER.Type` of the collection table.
    pub const TYPE_COLLECTION: u64 = 4;
    /// `GITS_BASER.Page_Size` (bits 9:8) for 64 KiB pages.
    pub const PAGE_64K: u64 = 2;
    /// `GITS_BASER.Physical_Address` with 64 KiB pages (bits 47:16; bits
    /// 51:48 of the address go in bits 15:12, always zero here).
    pub const BASER_ADDRESS: u64 = 0x0000_FFFF_FFFF_0000;
    /// `GITS_CBASER.Physical_Address` (bits 51:12).
    pub const CBASER_ADDRESS: u64 = 0x000F_FFFF_FFFF_F000;
    /// Shareability (bits 11:10) inner shareable, InnerCache (bits 61:59)
    /// normal write-back, read- and write-allocate: the tables' and the
    /// queue's memory.
    pub const ATTRS: u64 = 1 << 10 | 7 << 59;
    /// `GITS_BASER`'s fields: `(type, entry bytes, page size code)`.
    pub const fn baser_fields(reg: u64) -> (u64, u64, u64) {
        ((reg >> 56) & 7, ((reg >> 48) & 0x1F) + 1, (reg >> 8) & 3)
    }
    /// `GITS_TYPER`'s sizes: `(device id bits, event id bits, ITT entry
    /// bytes)`.
    pub const fn typer_sizes(typer: u64) -> (u32, u32, u64) {
        (
            ((typer >> 13) & 0x1F) as u32 + 1,
            ((typer >> 8) & 0x1F) as u32 + 1,
            ((typer >> 4) & 0xF) + 1,
        )
    }
}

// The register accessors are single loads and stores with a plain base
// register (`[xN]`), as the test device's: a compiler's choice of a
// writeback form (`ldr x3, [x1, #128]!`) would leave the hypervisor no
// syndrome (ESR_EL2.ISV = 0) to emulate the access from.

/// A 64-bit load from a device register at `addr`.
fn read64(addr: u64) -> u64 {
    let v: u64;
    // SAFETY: one load from the ITS's or a redistributor's frame, in the
    // identity map's device range, which holds no Rust object.
    unsafe {
        asm!("ldr {v:x}, [{a}]", a = in(reg) addr, v = out(reg) v, options(nostack, preserves_flags))
    };
    v
}

/// A 64-bit store to a device register at `addr`.
fn write64(addr: u64, value: u64) {
    // SAFETY: one store to the ITS's or a redistributor's frame, as in
    // `read64`.
    unsafe {
        asm!("str {v:x}, [{a}]", a = in(reg) addr, v = in(reg) value, options(nostack, preserves_flags))
    };
}

/// A 32-bit load from a device register at `addr`.
fn read32(addr: u64) -> u32 {
    let v: u32;
    // SAFETY: as in `read64`.
    unsafe {
        asm!("ldr {v:w}, [{a}]", a = in(reg) addr, v = out(reg) v, options(nostack, preserves_flags))
    };
    v
}

/// A 32-bit store to a device register at `addr`.
fn write32(addr: u64, value: u32) {
    // SAFETY: as in `write64`.
    unsafe {
        asm!("str {v:w}, [{a}]", a = in(reg) addr, v = in(reg) value, options(nostack, preserves_flags))
    };
}

/// A 64-bit register of vCPU 0's redistributor (offset in `RD_base`).
pub fn rd_read(offset: u64) -> u64 {
    read64(GICR + offset)
}

/// Writes a 64-bit register of vCPU 0's redistributor.
pub fn rd_write(offset: u64, value: u64) {
    write64(GICR + offset, value);
}

/// A 32-bit register of vCPU 0's redistributor.
pub fn rd_read32(offset: u64) -> u32 {
    read32(GICR + offset)
}

/// Writes a 32-bit register of vCPU 0's redistributor.
pub fn rd_write32(offset: u64, value: u32) {
    write32(GICR + offset, value);
}

/// A 64-bit register of the ITS.
pub fn its_read(offset: u64) -> u64 {
    read64(ITS + offset)
}

/// Writes a 64-bit register of the ITS.
pub fn its_write(offset: u64, value: u64) {
    write64(ITS + offset, value);
}

/// A 32-bit register of the ITS.
pub fn its_read32(offset: u64) -> u32 {
    read32(ITS + offset)
}

/// Writes a 32-bit register of the ITS.
pub fn its_write32(offset: u64, value: u32) {
    write32(ITS + offset, value);
}

// ---- tables ------------------------------------------------------------------------

/// ID bits of INTIDs with LPIs (`GICR_PROPBASER.IDbits` + 1).
pub const ID_BITS: u32 = 16;
/// The first LPI.
pub const LPI_BASE: u32 = 8192;
/// Bytes of the property table: one per LPI.
const PROP_BYTES: usize = (1 << ID_BITS) - LPI_BASE as usize;
/// Bytes of each 64 KiB table, and of the command queue.
pub const TABLE_BYTES: u64 = 0x1_0000;
const TABLE_WORDS: usize = TABLE_BYTES as usize / 8;
/// Event id bits of the one device mapped (`MAPD`'s Size + 1).
pub const EVENT_BITS: u32 = 5;
/// Bytes of that device's interrupt translation table (ITT): room for
/// 2^[`EVENT_BITS`] entries of up to 8 bytes.
pub const ITT_BYTES: u64 = 8 << EVENT_BITS;
/// An LPI property byte's enable bit.
pub const PROP_ENABLE: u8 = 1 << 0;

/// The LPI property table (4 KiB aligned).
#[repr(C, align(4096))]
struct PropTable([AtomicU8; PROP_BYTES]);

/// A 64 KiB-aligned table of 64 KiB.
#[repr(C, align(65536))]
struct Table([AtomicU64; TABLE_WORDS]);

impl Table {
    /// All zero.
    const fn zero() -> Self {
        Self([const { AtomicU64::new(0) }; TABLE_WORDS])
    }
}

/// The device's ITT (256-byte aligned).
#[repr(C, align(256))]
struct Itt([AtomicU64; ITT_BYTES as usize / 8]);

static PROPERTIES: PropTable = PropTable([const { AtomicU8::new(0) }; PROP_BYTES]);
static PENDING: Table = Table::zero();
static DEVICES: Table = Table::zero();
static COLLECTIONS: Table = Table::zero();
static QUEUE: Table = Table::zero();
static ITT: Itt = Itt([const { AtomicU64::new(0) }; ITT_BYTES as usize / 8]);

/// The (identity-mapped, so physical) address of `t`.
fn address<T>(t: &T) -> u64 {
    t as *const T as u64
}

/// The property table's address.
pub fn property_table() -> u64 {
    address(&PROPERTIES)
}

/// vCPU 0's pending table's address.
pub fn pending_table() -> u64 {
    address(&PENDING)
}

/// The device table's address.
pub fn device_table() -> u64 {
    address(&DEVICES)
}

/// The collection table's address.
pub fn collection_table() -> u64 {
    address(&COLLECTIONS)
}

/// The command queue's address.
pub fn queue() -> u64 {
    address(&QUEUE)
}

/// The device's ITT's address.
pub fn itt() -> u64 {
    address(&ITT)
}

/// Sets every LPI's property byte to 0 (disabled, priority 0).
pub fn clear_properties() {
    for b in &PROPERTIES.0 {
        b.store(0, Relaxed);
    }
}

/// Sets LPI `intid`'s property byte: priority (bits 7:2) and enable.
pub fn set_property(intid: u32, prop: u8) {
    if let Some(b) = PROPERTIES.0.get(intid.wrapping_sub(LPI_BASE) as usize) {
        b.store(prop, Relaxed);
    }
}

// ---- commands ----------------------------------------------------------------------

/// One ITS command: four little-endian doublewords.
pub type Command = [u64; 4];

/// Bytes per command.
const COMMAND_BYTES: u64 = 32;
/// `MAPD`'s and `MAPC`'s Valid bit (doubleword 2).
const VALID: u64 = 1 << 63;
/// `MAPD`'s ITT address field: bits 51:8 of doubleword 2.
const ITT_ADDRESS: u64 = 0x000F_FFFF_FFFF_FF00;

/// Command codes (doubleword 0, bits 7:0).
mod code {
    pub const INT: u64 = 0x03;
    pub const SYNC: u64 = 0x05;
    pub const MAPD: u64 = 0x08;
    pub const MAPC: u64 = 0x09;
    pub const MAPTI: u64 = 0x0A;
    pub const INV: u64 = 0x0C;
    pub const INVALL: u64 = 0x0D;
    pub const DISCARD: u64 = 0x0F;
}

/// Doubleword 0 of a command for `device` (DeviceID in bits 63:32).
const fn for_device(code: u64, device: u32) -> u64 {
    code | (device as u64) << 32
}

/// `MAPC`: collection `collection` to the redistributor of processor
/// number `target` (`RDbase` in bits 51:16 of doubleword 2, as
/// `GITS_TYPER.PTA` is 0), valid.
pub const fn mapc(collection: u16, target: u64) -> Command {
    [code::MAPC, 0, VALID | target << 16 | collection as u64, 0]
}

/// `MAPD`: `device` with an ITT at `itt` (256-byte aligned) for events of
/// `event_bits` bits (Size = bits - 1), valid.
pub const fn mapd(device: u32, itt: u64, event_bits: u32) -> Command {
    [
        for_device(code::MAPD, device),
        (event_bits as u64 - 1) & 0x1F,
        VALID | itt & ITT_ADDRESS,
        0,
    ]
}

/// `MAPTI`: `device`'s `event` to LPI `lpi` in collection `collection`.
pub const fn mapti(device: u32, event: u32, lpi: u32, collection: u16) -> Command {
    [
        for_device(code::MAPTI, device),
        event as u64 | (lpi as u64) << 32,
        collection as u64,
        0,
    ]
}

/// `INV`: the LPI of `device`'s `event` reads its property byte again.
pub const fn inv(device: u32, event: u32) -> Command {
    [for_device(code::INV, device), event as u64, 0, 0]
}

/// `INVALL`: every LPI of `collection` reads its property byte again.
pub const fn invall(collection: u16) -> Command {
    [code::INVALL, 0, collection as u64, 0]
}

/// `INT`: the LPI of `device`'s `event` becomes pending.
pub const fn int(device: u32, event: u32) -> Command {
    [for_device(code::INT, device), event as u64, 0, 0]
}

/// `DISCARD`: `device`'s `event` is unmapped (its LPI's pending state
/// dropped).
pub const fn discard(device: u32, event: u32) -> Command {
    [for_device(code::DISCARD, device), event as u64, 0, 0]
}

/// `SYNC`: the earlier commands' effects reach the redistributor of
/// processor number `target`.
pub const fn sync(target: u64) -> Command {
    [code::SYNC, 0, target << 16, 0]
}

/// Where the next command goes in the queue (what `GITS_CWRITER` says).
static NEXT: AtomicU64 = AtomicU64::new(0);

/// The queue starts empty (`GITS_CBASER` was just written, which set
/// `GITS_CREADR` and `GITS_CWRITER` to 0).
pub fn reset_queue() {
    NEXT.store(0, Relaxed);
}

/// The ITS did not process every command within the time [`send`] gave it.
pub struct Stuck {
    /// `GITS_CREADR` at the end.
    pub creadr: u64,
    /// The `GITS_CWRITER` it did not reach.
    pub cwriter: u64,
}

/// Writes `commands` to the queue, moves `GITS_CWRITER` past them and
/// waits up to `timeout_ms` for `GITS_CREADR` to get there.
pub fn send(commands: &[Command], timeout_ms: u64) -> Result<(), Stuck> {
    let mut at = NEXT.load(Relaxed);
    for c in commands {
        let first = (at / 8) as usize;
        for (word, &value) in QUEUE.0[first..first + 4].iter().zip(c) {
            word.store(value, Relaxed);
        }
        at = (at + COMMAND_BYTES) % TABLE_BYTES;
    }
    NEXT.store(at, Relaxed);
    cpu::publish_stores();
    its_write(gits::CWRITER, at);
    let done = timer::spin_until(
        || its_read(gits::CREADR) == at,
        timer::deadline_after_ms(timeout_ms),
    );
    if done {
        Ok(())
    } else {
        Err(Stuck {
            creadr: its_read(gits::CREADR),
            cwriter: at,
        })
    }
}
