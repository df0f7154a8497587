//! The ITS of a VM (`KVM_DEV_TYPE_ARM_VGIC_ITS`) and the LPIs
//! it maps, as Linux 6.1's `vgic-its.c` offers them: the ITS frame's
//! registers (`GITS_CTLR`, `IIDR`, `TYPER`, `CBASER`, `CWRITER`, `CREADR`,
//! `BASER0` for devices and `BASER1` for collections, the ID registers;
//! `GITS_TRANSLATER` is write-ignored, as in KVM: MSIs come from the VMM),
//! the command queue (`MAPD`, `MAPC`, `MAPTI`, `MAPI`, `MOVI`, `DISCARD`,
//! `CLEAR`, `INT`, `INV`, `INVALL`, `MOVALL`, `SYNC`) read from guest memory
//! and applied with KVM's checks (a bad command is skipped, as KVM drops
//! its error), and the translation of an MSI (device id, event id) into a
//! pending LPI (`KVM_SIGNAL_MSI`, MSI routes of irqfds, `INT`).
//!
//! The device, translation and collection tables live here, in the vGIC,
//! as KVM keeps them in kernel lists; the guest's tables are only checked
//! (an id must fall inside the table its `BASER` describes, in memory a
//! slot backs; a two-level table's first level is read) and only written
//! by `KVM_DEV_ARM_ITS_SAVE_TABLES` (read back by `RESTORE_TABLES`), in
//! KVM's ABI revision 0. The state is under the vGIC's
//! lock, so an irqfd's injection translates without the VM's mutex; guest
//! memory is read outside that spinlock, under the VM's mutex, which also
//! serialises command processing ([`process`]). An LPI's configuration
//! (priority, enable) is read from the guest's property table
//! (`GICR_PROPBASER`) when KVM reads it: when it is mapped, on `INV` and on
//! `INVALL`. Pending state is kept here; a newly mapped LPI takes its bit
//! from its target's pending table, and the saves write them.
//!
//! A protected VM's memory is not KServ's: its guest memory is read through
//! KCore (`HostReadGicTable`), only inside the queue and tables the guest
//! itself programmed (`kcore::gic_tables`), and never written (its saves and
//! restores are `EPERM`; a pending bit found at a mapping stays set in the
//! guest's table, where only a save could have put it).
//!
//! Everything is bounded, whatever the guest does: [`MAX_DEVICES`] mapped
//! devices, [`MAX_ITES`] mapped events, [`MAX_COLLECTIONS`] collections and
//! [`MAX_LPIS`] distinct LPIs per VM (a command that would need more is
//! dropped, as KVM drops one whose allocation fails), event ids of at most
//! 16 bits, device and collection ids of 16, LPIs below 2^16, and one pass
//! over the command queue reads at most the queue's size in commands.

use super::{EBUSY, EINVAL, Errno, Irq, MAX_VCPUS, Vgic, f};
use crate::kvm::env::KvmEnv;
use crate::kvm::vm::{Vm, VmCfg};

/// Devices mapped at once.
pub const MAX_DEVICES: usize = 64;
/// Events (interrupt translation entries) mapped at once, over all devices.
pub const MAX_ITES: usize = 1024;
/// Collections.
pub const MAX_COLLECTIONS: usize = 64;
/// Distinct LPIs mapped at once.
pub const MAX_LPIS: usize = 1024;
/// First LPI.
pub const LPI_START: u32 = 8192;
/// ID bits of LPIs, event ids and device ids (KVM's `INTERRUPT_ID_BITS_ITS`,
/// `VITS_TYPER_IDBITS`, `VITS_TYPER_DEVBITS`).
pub const ID_BITS: u32 = 16;
/// The ITS frame: control page and translation page (`KVM_VGIC_V3_ITS_SIZE`).
pub const ITS_SIZE: u64 = 0x2_0000;
/// Bytes per command.
const CMD_SIZE: u64 = 32;
/// A collection not mapped to a redistributor; an LPI with no target.
const NO_TARGET: u32 = u32::MAX;
/// `BASER` table types.
const TYPE_DEVICE: u64 = 1;
const TYPE_COLLECTION: u64 = 4;
/// `BASER.Valid`, `.Indirect`; `CBASER.Valid`.
const VALID: u64 = 1 << 63;
const INDIRECT: u64 = 1 << 62;
/// Entry size of a device table and of a collection table entry (KVM's ABI
/// revision 0: 8 bytes each), of an ITT entry too.
const ENTRY_SIZE: u64 = 8;

/// `GITS_IIDR`: KVM's product id, Arm as implementer, ABI revision 0.
const IIDR: u64 = 0x4B << 24 | 0x43B;
/// `GITS_TYPER`: physical LPIs, 16 device id bits and event id bits, 8-byte
/// ITT entries.
const TYPER: u64 = 1 | ((ID_BITS - 1) as u64) << 13 | ((ID_BITS - 1) as u64) << 8 | 7 << 4;
/// A `BASER`'s value at creation: write-back cacheable, inner shareable,
/// 64 KiB pages (KVM's `INITIAL_BASER_VALUE`), its type and entry size.
const fn initial_baser(ty: u64) -> u64 {
    7 << 59 | 1 << 10 | 2 << 8 | ty << 56 | (ENTRY_SIZE - 1) << 48
}

/// ITS commands.
mod cmd {
    pub const MOVI: u64 = 0x01;
    pub const INT: u64 = 0x03;
    pub const CLEAR: u64 = 0x04;
    pub const MAPD: u64 = 0x08;
    pub const MAPC: u64 = 0x09;
    pub const MAPTI: u64 = 0x0A;
    pub const MAPI: u64 = 0x0B;
    pub const INV: u64 = 0x0C;
    pub const INVALL: u64 = 0x0D;
    pub const MOVALL: u64 = 0x0E;
    pub const DISCARD: u64 = 0x0F;
}

#[derive(Clone, Copy, Debug, Default)]
struct Device {
    used: bool,
    id: u32,
    itt: u64,
    event_bits: u8,
}

#[derive(Clone, Copy, Debug, Default)]
struct Ite {
    used: bool,
    /// The collection is still there (freed by `MAPC` with V=0 else).
    has_coll: bool,
    coll: u16,
    device: u32,
    event: u32,
    /// Its LPI's slot in [`Its::lpis`].
    lpi: u16,
}

#[derive(Clone, Copy, Debug, Default)]
struct Collection {
    used: bool,
    id: u16,
    /// The vCPU (redistributor processor number), or [`NO_TARGET`].
    target: u32,
}

/// One mapped LPI: its INTID (0: the slot is free), how many translation
/// entries map it, and its state as any interrupt's (`route`: the target
/// vCPU, or [`NO_TARGET`]).
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Lpi {
    pub(super) intid: u32,
    refs: u16,
    pub(super) irq: Irq,
}

/// A VM's ITS and its LPIs. All zero: none created.
pub struct Its {
    /// `KVM_CREATE_DEVICE` made it.
    pub created: bool,
    /// The frame's base plus one (0: unset).
    base: u64,
    enabled: bool,
    cbaser: u64,
    creadr: u64,
    cwriter: u64,
    baser: [u64; 2],
    devices: [Device; MAX_DEVICES],
    ites: [Ite; MAX_ITES],
    colls: [Collection; MAX_COLLECTIONS],
    pub(super) lpis: [Lpi; MAX_LPIS],
    /// LPI slots that may be candidates for a list register (as
    /// `Vgic::maybe_spi`).
    pub(super) maybe: [u64; MAX_LPIS / 64],
}

/// A command's fields (KVM's `its_cmd_get_*`).
#[derive(Clone, Copy, Debug, Default)]
pub struct Command([u64; 4]);

impl Command {
    fn code(&self) -> u64 {
        self.0[0] & 0xFF
    }
    fn device(&self) -> u32 {
        (self.0[0] >> 32) as u32
    }
    fn event(&self) -> u32 {
        self.0[1] as u32
    }
    fn event_bits(&self) -> u32 {
        (self.0[1] & 0x1F) as u32 + 1
    }
    fn physical(&self) -> u32 {
        (self.0[1] >> 32) as u32
    }
    fn coll(&self) -> u16 {
        self.0[2] as u16
    }
    fn itt(&self) -> u64 {
        ((self.0[2] >> 8) & ((1 << 44) - 1)) << 8
    }
    fn target(&self) -> u32 {
        (self.0[2] >> 16) as u32
    }
    fn valid(&self) -> bool {
        self.0[2] >> 63 != 0
    }
    fn target2(&self) -> u32 {
        (self.0[3] >> 16) as u32
    }
}

/// What applying a command needs from guest memory, found under the lock
/// ([`Vgic::its_prepare`]) and checked outside it ([`check`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct Prep {
    /// An id that must fit the table of a `BASER` (`vgic_its_check_id`).
    pub table_id: Option<(u64, u32)>,
    /// A guest address that must be in a memory slot (an ITT entry).
    pub visible: Option<u64>,
}

/// The answers to a [`Prep`].
#[derive(Clone, Copy, Debug, Default)]
pub struct Checked {
    /// The id fits its table.
    pub table_ok: bool,
    /// The address is backed.
    pub visible: bool,
}

/// What a command left to do outside the lock: LPI slots whose
/// configuration must be read again from the property table.
pub type Refresh = [u64; MAX_LPIS / 64];

/// `extract_bytes`: `len` bytes of `reg` from byte `offset`.
fn bytes_of(reg: u64, offset: u64, len: u64) -> u64 {
    let v = reg >> (8 * (offset & 7));
    if len >= 8 {
        v
    } else {
        v & ((1 << (8 * len)) - 1)
    }
}

/// `update_64bit_reg`: `len` bytes of `reg` from byte `offset` replaced.
fn update(reg: u64, offset: u64, len: u64, val: u64) -> u64 {
    let shift = 8 * (offset & 7);
    let mask = if len >= 8 {
        u64::MAX
    } else {
        ((1u64 << (8 * len)) - 1) << shift
    };
    (reg & !mask) | ((val << shift) & mask)
}

/// A table's base address (`GITS_BASER_ADDR_48_to_52` for 64 KiB pages).
fn table_base(baser: u64) -> u64 {
    (baser & 0x0000_FFFF_FFFF_0000) | ((baser >> 12) & 0xF) << 48
}

/// The property table's address and how many LPIs it covers
/// (`max_lpis_propbaser`).
fn prop_table(propbaser: u64) -> (u64, u32) {
    let bits = ((propbaser & 0x1F) as u32 + 1).min(ID_BITS);
    (propbaser & 0x000F_FFFF_FFFF_F000, 1 << bits)
}

/// Where the 32-bit registers are (others are 64-bit); `None`: no register.
fn reg_width(offset: u64) -> Option<u64> {
    match offset {
        0x0 | 0x4 => Some(4),
        0x8 | 0x80 | 0x88 | 0x90 => Some(8),
        0x100..=0x13F => Some(8),
        0xFFD0..=0xFFFF => Some(4),
        _ => None,
    }
}

impl Its {
    /// The frame's base (`None` while unset).
    pub fn base(&self) -> Option<u64> {
        self.base.checked_sub(1)
    }

    /// `KVM_CREATE_DEVICE`: a fresh ITS (KVM's `vgic_its_create`).
    pub fn create(&mut self) {
        self.created = true;
        self.base = 0;
        self.baser = [initial_baser(TYPE_DEVICE), initial_baser(TYPE_COLLECTION)];
        self.reset();
    }

    /// `KVM_DEV_ARM_ITS_CTRL_RESET` (`vgic_its_reset`): disabled, no queue,
    /// the tables invalid and every mapping gone. The caller frees the
    /// LPIs ([`Vgic::its_reset`]).
    fn reset(&mut self) {
        self.baser[0] &= !VALID;
        self.baser[1] &= !VALID;
        self.cbaser = 0;
        self.creadr = 0;
        self.cwriter = 0;
        self.enabled = false;
        self.devices = [Device::default(); MAX_DEVICES];
        self.ites = [Ite::default(); MAX_ITES];
        self.colls = [Collection::default(); MAX_COLLECTIONS];
    }

    /// `KVM_VGIC_ITS_ADDR_TYPE`: `EEXIST` once set, `EINVAL` unaligned,
    /// `E2BIG` outside the IPA space (`vgic_check_iorange`).
    pub fn set_base(&mut self, addr: u64, ipa_bits: u32) -> Result<(), Errno> {
        use crate::kvm::errno::{E2BIG, EEXIST};
        if self.base().is_some() {
            return Err(EEXIST);
        }
        if !addr.is_multiple_of(0x1_0000) {
            return Err(EINVAL);
        }
        let limit = 1u64 << ipa_bits;
        if addr >= limit || addr.checked_add(ITS_SIZE).is_none_or(|e| e > limit) {
            return Err(E2BIG);
        }
        self.base = addr + 1;
        Ok(())
    }

    /// Whether `addr` is in the frame.
    pub fn claims(&self, addr: u64) -> bool {
        self.base().is_some_and(|b| addr.wrapping_sub(b) < ITS_SIZE)
    }

    /// The command queue's size in bytes.
    fn queue_size(&self) -> u64 {
        ((self.cbaser & 0xFF) + 1) << 12
    }

    /// The guest address of the next command to process, if any.
    fn next_command(&self) -> Option<u64> {
        (self.enabled && self.creadr != self.cwriter && self.cbaser & VALID != 0)
            .then(|| (self.cbaser & 0x000F_FFFF_FFFF_F000) + self.creadr)
    }

    fn advance(&mut self) {
        self.creadr += CMD_SIZE;
        if self.creadr >= self.queue_size() {
            self.creadr = 0;
        }
    }

    fn device(&self, id: u32) -> Option<usize> {
        self.devices.iter().position(|d| d.used && d.id == id)
    }

    fn coll(&self, id: u16) -> Option<usize> {
        self.colls.iter().position(|c| c.used && c.id == id)
    }

    fn ite(&self, device: u32, event: u32) -> Option<usize> {
        self.device(device)?;
        self.ites
            .iter()
            .position(|i| i.used && i.device == device && i.event == event)
    }

    /// The vCPU an entry's collection is mapped to (`None`: no collection,
    /// or one not mapped).
    fn ite_target(&self, i: usize) -> Option<u32> {
        let ite = self.ites.get(i)?;
        if !ite.has_coll {
            return None;
        }
        let c = self.coll(ite.coll)?;
        let t = self.colls[c].target;
        (t != NO_TARGET).then_some(t)
    }

    /// The slot of LPI `intid`.
    pub(super) fn lpi_slot(&self, intid: u32) -> Option<usize> {
        if intid < LPI_START {
            return None;
        }
        self.lpis.iter().position(|l| l.intid == intid)
    }

    fn new_coll(&mut self, id: u16, target: u32) -> Option<usize> {
        let c = self.colls.iter().position(|c| !c.used)?;
        self.colls[c] = Collection {
            used: true,
            id,
            target,
        };
        Some(c)
    }
}

impl Vgic {
    /// Marks LPI slot `s` as possibly a candidate.
    fn mark_lpi(&mut self, s: usize) {
        if let Some(w) = self.its.maybe.get_mut(s / 64) {
            *w |= 1 << (s % 64);
        }
    }

    /// The vCPUs to kick for LPI slot `s`.
    fn kick_lpi(&self, s: usize) -> u64 {
        match self.its.lpis.get(s) {
            Some(l) if l.intid != 0 => self.kick_for(0, l.intid),
            _ => 0,
        }
    }

    /// A reference to the LPI `intid` targeting `target`: the existing one
    /// (its target updated, as `vgic_add_lpi`) or a new, disabled one.
    fn lpi_get(&mut self, intid: u32, target: u32) -> Option<usize> {
        let s = match self.its.lpi_slot(intid) {
            Some(s) => s,
            None => {
                let s = self.its.lpis.iter().position(|l| l.intid == 0)?;
                self.its.lpis[s] = Lpi {
                    intid,
                    refs: 0,
                    irq: Irq {
                        flags: f::EDGE | f::GROUP1,
                        ..Irq::default()
                    },
                };
                s
            }
        };
        let l = &mut self.its.lpis[s];
        l.refs = l.refs.saturating_add(1);
        l.irq.route = target;
        self.mark_lpi(s);
        Some(s)
    }

    /// Drops a reference to LPI slot `s`; the last frees it (a list
    /// register may still hold it: the exit's fold then finds nothing).
    fn lpi_put(&mut self, s: usize) {
        let Some(l) = self.its.lpis.get_mut(s) else {
            return;
        };
        l.refs = l.refs.saturating_sub(1);
        if l.refs == 0 {
            *l = Lpi::default();
        }
    }

    fn free_ite(&mut self, i: usize) {
        let lpi = usize::from(self.its.ites[i].lpi);
        self.its.ites[i] = Ite::default();
        self.lpi_put(lpi);
    }

    fn free_device(&mut self, d: usize) {
        let id = self.its.devices[d].id;
        for i in 0..MAX_ITES {
            if self.its.ites[i].used && self.its.ites[i].device == id {
                self.free_ite(i);
            }
        }
        self.its.devices[d] = Device::default();
    }

    fn free_coll(&mut self, id: u16) {
        let Some(c) = self.its.coll(id) else {
            return;
        };
        for ite in self.its.ites.iter_mut() {
            if ite.used && ite.has_coll && ite.coll == id {
                ite.has_coll = false;
            }
        }
        self.its.colls[c] = Collection::default();
    }

    /// Every entry of collection `id` takes its (new) target.
    fn retarget_coll(&mut self, id: u16) -> u64 {
        let mut kick = 0;
        for i in 0..MAX_ITES {
            let ite = self.its.ites[i];
            if ite.used && ite.has_coll && ite.coll == id {
                let t = self.its.ite_target(i).unwrap_or(NO_TARGET);
                let s = usize::from(ite.lpi);
                self.its.lpis[s].irq.route = t;
                self.mark_lpi(s);
                kick |= self.kick_lpi(s);
            }
        }
        kick
    }

    /// `KVM_CREATE_DEVICE` of an ITS: `EEXIST` for a second one (one ITS
    /// per VM here; KVM takes several).
    pub fn its_create(&mut self) -> Result<(), Errno> {
        if self.its.created {
            return Err(crate::kvm::errno::EEXIST);
        }
        self.its.create();
        self.its_free_lpis();
        Ok(())
    }

    fn its_free_lpis(&mut self) {
        self.its.lpis = [Lpi::default(); MAX_LPIS];
        self.its.maybe = [0; MAX_LPIS / 64];
    }

    /// `KVM_DEV_ARM_ITS_CTRL_RESET`.
    pub fn its_reset(&mut self) {
        self.its.reset();
        self.its_free_lpis();
    }

    /// Whether vCPU `v` enabled LPIs (`GICR_CTLR.EnableLPIs`).
    pub(super) fn lpis_enabled(&self, v: usize) -> bool {
        v < MAX_VCPUS && self.lpis_on & (1 << v) != 0
    }

    /// `GICR_CTLR` written by (or for) vCPU `v`: LPIs are enabled or
    /// disabled, only with an ITS (`vgic_mmio_write_v3r_ctlr`). Disabling
    /// drops the pending state of the LPIs targeting `v`
    /// (`vgic_flush_pending_lpis`).
    pub(super) fn write_rd_ctlr(&mut self, v: usize, val: u64) {
        if !self.its.created || v >= MAX_VCPUS {
            return;
        }
        if val & 1 != 0 {
            self.lpis_on |= 1 << v;
        } else if self.lpis_on & (1 << v) != 0 {
            self.lpis_on &= !(1 << v);
            for l in self.its.lpis.iter_mut() {
                if l.intid != 0 && l.irq.route == v as u32 {
                    l.irq.set(f::LATCH, false);
                }
            }
        }
    }

    /// The ITS's registers (`offset` in its frame, `width` bytes; `uaccess`:
    /// through `KVM_DEV_ARM_VGIC_GRP_ITS_REGS`, whose writes of `IIDR` and
    /// `CREADR` restore them). Returns the value read and whether the
    /// command queue must be processed ([`process`]).
    pub fn its_access(
        &mut self,
        offset: u64,
        width: u64,
        write: bool,
        data: u64,
        uaccess: bool,
    ) -> Result<(u64, bool), Errno> {
        let Some(reg_w) = reg_width(offset & !7).or(reg_width(offset)) else {
            return Ok((0, false));
        };
        // 32-bit registers take 32-bit accesses; 64-bit ones both, aligned.
        if !(width == 4 || width == 8 && reg_w == 8) || !offset.is_multiple_of(width) {
            return Ok((0, false));
        }
        let its = &mut self.its;
        let sub = if reg_w == 8 { offset & 7 } else { 0 };
        let read = |reg: u64| Ok((bytes_of(reg, sub, width), false));
        match offset & !7 {
            0x0 if offset == 0x0 => {
                if !write {
                    let quiescent = u64::from(its.creadr == its.cwriter) << 31;
                    return read(quiescent | u64::from(its.enabled));
                }
                let on = data & 1 != 0;
                if !its.enabled
                    && on
                    && (its.baser[0] & VALID == 0
                        || its.baser[1] & VALID == 0
                        || its.cbaser & VALID == 0)
                {
                    return Ok((0, false));
                }
                its.enabled = on;
                Ok((0, on))
            }
            0x0 => {
                // GITS_IIDR.
                if write && uaccess && (data >> 12) & 0xF != 0 {
                    return Err(EINVAL);
                }
                if write { Ok((0, false)) } else { read(IIDR) }
            }
            0x8 => {
                if write {
                    Ok((0, false))
                } else {
                    read(TYPER)
                }
            }
            0x80 => {
                if !write {
                    return read(its.cbaser);
                }
                if !its.enabled {
                    its.cbaser = update(its.cbaser, offset, width, data) & !0xF000;
                    its.creadr = 0;
                    its.cwriter = 0;
                }
                Ok((0, false))
            }
            0x88 => {
                if !write {
                    return read(its.cwriter);
                }
                let reg = update(its.cwriter, offset, width, data) & 0xF_FFE0;
                if reg >= its.queue_size() {
                    return Ok((0, false));
                }
                its.cwriter = reg;
                Ok((0, true))
            }
            0x90 => {
                if !write {
                    return read(its.creadr);
                }
                if uaccess {
                    if its.enabled {
                        return Err(EBUSY);
                    }
                    let reg = data & 0xF_FFE0;
                    if reg >= its.queue_size() {
                        return Err(EINVAL);
                    }
                    its.creadr = reg;
                }
                Ok((0, false))
            }
            0x100..=0x138 => {
                let n = ((offset - 0x100) / 8) as usize;
                if !write {
                    return read(its.baser.get(n).copied().unwrap_or(0));
                }
                if its.enabled || n > 1 {
                    return Ok((0, false));
                }
                let (ty, clear) = if n == 0 {
                    (TYPE_DEVICE, 0)
                } else {
                    (TYPE_COLLECTION, INDIRECT)
                };
                let mut reg = update(its.baser[n], offset, width, data);
                // Entry size and type are read-only; 64 KiB pages.
                reg &= !(0x1F << 48 | 0x7 << 56 | clear | 3 << 8);
                reg |= (ENTRY_SIZE - 1) << 48 | ty << 56 | 2 << 8;
                its.baser[n] = reg;
                if reg & VALID == 0 {
                    if n == 0 {
                        for d in 0..MAX_DEVICES {
                            if self.its.devices[d].used {
                                self.free_device(d);
                            }
                        }
                    } else {
                        for c in 0..MAX_COLLECTIONS {
                            if self.its.colls[c].used {
                                let id = self.its.colls[c].id;
                                self.free_coll(id);
                            }
                        }
                    }
                }
                Ok((0, false))
            }
            _ => {
                let v = match offset {
                    0xFFD0 => 0x40,
                    0xFFE0 => 0x92,
                    0xFFE4 => 0xB4,
                    0xFFE8 => 0x3B,
                    0xFFF0 => 0x0D,
                    0xFFF4 => 0xF0,
                    0xFFF8 => 0x05,
                    0xFFFC => 0xB1,
                    _ => 0,
                };
                if write { Ok((0, false)) } else { read(v) }
            }
        }
    }

    /// The next command's guest address, if the queue has one.
    pub fn its_next(&self) -> Option<u64> {
        self.its.next_command()
    }

    /// What `c` needs checked in guest memory before it is applied.
    pub fn its_prepare(&self, c: &Command) -> Prep {
        let its = &self.its;
        let mut p = Prep::default();
        match c.code() {
            cmd::MAPD => p.table_id = Some((its.baser[0], c.device())),
            cmd::MAPC if c.valid() && its.coll(c.coll()).is_none() => {
                p.table_id = Some((its.baser[1], u32::from(c.coll())));
            }
            cmd::MAPTI | cmd::MAPI => {
                if let Some(d) = its.device(c.device()) {
                    let itt = its.devices[d].itt;
                    p.visible = Some(itt.wrapping_add(u64::from(c.event()) * ENTRY_SIZE));
                }
                if its.coll(c.coll()).is_none() {
                    p.table_id = Some((its.baser[1], u32::from(c.coll())));
                }
            }
            _ => {}
        }
        p
    }

    /// Applies command `c` (checked as `chk` says) and moves past it:
    /// KVM's handlers, errors dropped. Returns the LPIs whose configuration
    /// is to be read again and the vCPUs to kick.
    pub fn its_apply(&mut self, c: &Command, chk: &Checked) -> (Refresh, u64) {
        let mut refresh = [0u64; MAX_LPIS / 64];
        let kick = self.its_command(c, chk, &mut refresh);
        self.its.advance();
        (refresh, kick)
    }

    fn its_command(&mut self, c: &Command, chk: &Checked, refresh: &mut Refresh) -> u64 {
        let mark = |r: &mut Refresh, s: usize| r[s / 64] |= 1 << (s % 64);
        // An `if` chain against opaque constants, not a `match`: LLVM turns
        // a dense `match` (or `if` chain) on the command codes into a jump
        // table, an indirect branch BTI would fault on.
        let code = c.code();
        let is = |k: u64| code == core::hint::black_box(k);
        if is(cmd::MAPD) {
            if !chk.table_ok || c.valid() && c.event_bits() > ID_BITS {
                return 0;
            }
            if let Some(d) = self.its.device(c.device()) {
                self.free_device(d);
            }
            if c.valid()
                && let Some(d) = self.its.devices.iter().position(|d| !d.used)
            {
                self.its.devices[d] = Device {
                    used: true,
                    id: c.device(),
                    itt: c.itt(),
                    event_bits: c.event_bits() as u8,
                };
            }
            0
        } else if is(cmd::MAPC) {
            let t = c.target();
            if !self.exists(t as usize) {
                return 0;
            }
            if !c.valid() {
                self.free_coll(c.coll());
                return 0;
            }
            match self.its.coll(c.coll()) {
                Some(k) => {
                    self.its.colls[k].target = t;
                    self.retarget_coll(c.coll())
                }
                None => {
                    if chk.table_ok {
                        self.its.new_coll(c.coll(), t);
                    }
                    0
                }
            }
        } else if is(cmd::MAPTI) || is(cmd::MAPI) {
            let Some(d) = self.its.device(c.device()) else {
                return 0;
            };
            let dev = self.its.devices[d];
            if u64::from(c.event()) >= 1u64 << dev.event_bits || !chk.visible {
                return 0;
            }
            let intid = if is(cmd::MAPTI) {
                c.physical()
            } else {
                c.event()
            };
            let (_, max) = prop_table(self.propbaser);
            if intid < LPI_START || intid >= max {
                return 0;
            }
            if self.its.ite(c.device(), c.event()).is_some() {
                return 0;
            }
            let mut new_coll = false;
            if self.its.coll(c.coll()).is_none() {
                if !chk.table_ok || self.its.new_coll(c.coll(), NO_TARGET).is_none() {
                    return 0;
                }
                new_coll = true;
            }
            let slot = self.its.ites.iter().position(|i| !i.used);
            let target = self
                .its
                .coll(c.coll())
                .map_or(NO_TARGET, |k| self.its.colls[k].target);
            let lpi = slot.and_then(|_| self.lpi_get(intid, target));
            let (Some(i), Some(s)) = (slot, lpi) else {
                if new_coll {
                    self.free_coll(c.coll());
                }
                return 0;
            };
            self.its.ites[i] = Ite {
                used: true,
                has_coll: true,
                coll: c.coll(),
                device: c.device(),
                event: c.event(),
                lpi: s as u16,
            };
            mark(refresh, s);
            self.kick_lpi(s)
        } else if is(cmd::MOVI) {
            let Some(i) = self.its.ite(c.device(), c.event()) else {
                return 0;
            };
            if self.its.ite_target(i).is_none() {
                return 0;
            }
            let Some(k) = self.its.coll(c.coll()) else {
                return 0;
            };
            let t = self.its.colls[k].target;
            if t == NO_TARGET {
                return 0;
            }
            self.its.ites[i].coll = c.coll();
            let s = usize::from(self.its.ites[i].lpi);
            self.its.lpis[s].irq.route = t;
            self.mark_lpi(s);
            self.kick_lpi(s)
        } else if is(cmd::DISCARD) {
            if let Some(i) = self.its.ite(c.device(), c.event())
                && self.its.ite_target(i).is_some()
            {
                self.free_ite(i);
            }
            0
        } else if is(cmd::CLEAR) {
            if let Some(i) = self.its.ite(c.device(), c.event()) {
                let s = usize::from(self.its.ites[i].lpi);
                self.its.lpis[s].irq.set(f::LATCH, false);
            }
            0
        } else if is(cmd::INT) {
            self.its_trigger(c.device(), c.event()).unwrap_or(0)
        } else if is(cmd::INV) {
            if let Some(i) = self.its.ite(c.device(), c.event()) {
                mark(refresh, usize::from(self.its.ites[i].lpi));
            }
            0
        } else if is(cmd::INVALL) {
            if let Some(k) = self.its.coll(c.coll())
                && self.its.colls[k].target != NO_TARGET
            {
                let t = self.its.colls[k].target;
                for (s, l) in self.its.lpis.iter().enumerate() {
                    if l.intid != 0 && l.irq.route == t {
                        mark(refresh, s);
                    }
                }
            }
            0
        } else if is(cmd::MOVALL) {
            let (t1, t2) = (c.target(), c.target2());
            if !self.exists(t1 as usize) || !self.exists(t2 as usize) || t1 == t2 {
                return 0;
            }
            let mut kick = 0;
            for s in 0..MAX_LPIS {
                if self.its.lpis[s].intid != 0 && self.its.lpis[s].irq.route == t1 {
                    self.its.lpis[s].irq.route = t2;
                    self.mark_lpi(s);
                    kick |= self.kick_lpi(s);
                }
            }
            kick
        } else {
            // SYNC (0x05), and what KVM does not handle.
            0
        }
    }

    /// The property-table byte to read for LPI slot `s`: `(gpa, intid)`.
    pub fn its_prop_of(&self, s: usize) -> Option<(u64, u32)> {
        let l = self.its.lpis.get(s)?;
        if l.intid == 0 {
            return None;
        }
        let (base, _) = prop_table(self.propbaser);
        Some((base + u64::from(l.intid - LPI_START), l.intid))
    }

    /// LPI `intid` (slot `s`) configured from its property byte `prop`
    /// (`update_lpi_config`): priority and enable. The vCPUs to kick.
    pub fn its_set_prop(&mut self, s: usize, intid: u32, prop: u8) -> u64 {
        let Some(l) = self.its.lpis.get_mut(s) else {
            return 0;
        };
        if l.intid != intid {
            return 0;
        }
        l.irq.priority = prop & 0xFC;
        l.irq.set(f::ENABLED, prop & 1 != 0);
        self.mark_lpi(s);
        self.kick_lpi(s)
    }

    /// An MSI (device id, event id) through the ITS
    /// (`vgic_its_trigger_msi`): its LPI becomes pending. `EBUSY` while
    /// the ITS or the target's LPIs are disabled; `EINVAL` when nothing
    /// maps it (KVM's ITS error). Returns the vCPUs to kick.
    pub fn its_trigger(&mut self, device: u32, event: u32) -> Result<u64, Errno> {
        if !self.its.enabled {
            return Err(EBUSY);
        }
        let Some(i) = self.its.ite(device, event) else {
            return Err(EINVAL);
        };
        let Some(t) = self.its.ite_target(i).filter(|&t| self.exists(t as usize)) else {
            return Err(EINVAL);
        };
        if !self.lpis_enabled(t as usize) {
            return Err(EBUSY);
        }
        let s = usize::from(self.its.ites[i].lpi);
        self.its.lpis[s].irq.set(f::LATCH, true);
        self.mark_lpi(s);
        Ok(self.kick_lpi(s))
    }

    /// `KVM_SIGNAL_MSI` or an MSI route (`vgic_its_inject_msi`): 1 when
    /// delivered, 0 when the ITS maps nothing for it; `ENODEV` without an
    /// ITS, `EINVAL` without a device id or with an address outside the
    /// ITS frame, `EBUSY` while the ITS or the target's LPIs are disabled.
    pub fn its_msi(
        &mut self,
        addr: u64,
        data: u32,
        devid: Option<u32>,
    ) -> Result<(i64, u64), Errno> {
        if !self.its.created {
            return Err(crate::kvm::errno::ENODEV);
        }
        let Some(devid) = devid else {
            return Err(EINVAL);
        };
        if !self.its.claims(addr) {
            return Err(EINVAL);
        }
        match self.its_trigger(devid, data) {
            Ok(k) => Ok((1, k)),
            Err(EBUSY) => Err(EBUSY),
            Err(_) => Ok((0, 0)),
        }
    }
}

/// The smallest of `ids` above `after` (the first with `None`).
fn next_id(ids: impl Iterator<Item = u32>, after: Option<u32>) -> Option<u32> {
    ids.filter(|&i| after.is_none_or(|a| i > a)).min()
}

/// `KVM_ITS_DTE_*`, `KVM_ITS_ITE_*`, `KVM_ITS_CTE_*`: the entries of KVM's
/// ABI revision 0 that table save and restore write and read.
mod abi {
    pub const DTE_NEXT_SHIFT: u32 = 49;
    pub const DTE_NEXT_MAX: u64 = (1 << 14) - 1;
    pub const DTE_ITT_MASK: u64 = ((1 << 44) - 1) << 5;
    pub const ITE_NEXT_SHIFT: u32 = 48;
    pub const ITE_NEXT_MAX: u64 = (1 << 16) - 1;
    pub const CTE_RDBASE_SHIFT: u32 = 16;
}

impl Vgic {
    /// Table save: the mapped device with the lowest id above `after`, and
    /// the id of the one after it.
    fn its_device_after(&self, after: Option<u32>) -> Option<(Device, Option<u32>)> {
        let used = || self.its.devices.iter().filter(|d| d.used).map(|d| d.id);
        let id = next_id(used(), after)?;
        let d = self.its.devices[self.its.device(id)?];
        Some((d, next_id(used(), Some(id))))
    }

    /// Table save: the event of device `dev` with the lowest id above
    /// `after` and its translation table entry (0 without a collection).
    fn its_ite_after(&self, dev: u32, after: Option<u32>) -> Option<(u32, u64)> {
        let events = || {
            self.its
                .ites
                .iter()
                .filter(move |i| i.used && i.device == dev)
                .map(|i| i.event)
        };
        let event = next_id(events(), after)?;
        let ite = self.its.ites[self.its.ite(dev, event)?];
        if !ite.has_coll {
            return Some((event, 0));
        }
        let next = next_id(events(), Some(event))
            .map_or(0, |n| u64::from(n - event).min(abi::ITE_NEXT_MAX));
        let intid = self.its.lpis[usize::from(ite.lpi)].intid;
        let value = next << abi::ITE_NEXT_SHIFT | u64::from(intid) << 16 | u64::from(ite.coll);
        Some((event, value))
    }

    /// Table save: collection slot `k`'s entry, if it is in use.
    fn its_coll_entry(&self, k: usize) -> Option<u64> {
        let c = self.its.colls.get(k).filter(|c| c.used)?;
        Some(VALID | u64::from(c.target) << abi::CTE_RDBASE_SHIFT | u64::from(c.id))
    }

    /// Table restore: a collection entry (`vgic_its_restore_cte`).
    fn its_restore_coll(&mut self, id: u16, target: u32) -> Result<(), Errno> {
        if target != NO_TARGET && !self.exists(target as usize) {
            return Err(EINVAL);
        }
        if self.its.coll(id).is_some() {
            return Err(crate::kvm::errno::EEXIST);
        }
        self.its
            .new_coll(id, target)
            .map(|_| ())
            .ok_or(crate::kvm::errno::ENOMEM)
    }

    /// Table restore: a device entry (`vgic_its_restore_dte`).
    fn its_restore_device(&mut self, id: u32, itt: u64, event_bits: u8) -> Result<(), Errno> {
        let d = self
            .its
            .devices
            .iter()
            .position(|d| !d.used)
            .ok_or(crate::kvm::errno::ENOMEM)?;
        self.its.devices[d] = Device {
            used: true,
            id,
            itt,
            event_bits,
        };
        Ok(())
    }

    /// Table restore: a translation entry (`vgic_its_restore_ite`): the LPI
    /// slot whose configuration is then read.
    fn its_restore_ite(
        &mut self,
        dev: u32,
        event: u32,
        intid: u32,
        coll: u16,
    ) -> Result<usize, Errno> {
        use crate::kvm::errno::ENOMEM;
        let k = self.its.coll(coll).ok_or(EINVAL)?;
        let target = self.its.colls[k].target;
        let i = self.its.ites.iter().position(|i| !i.used).ok_or(ENOMEM)?;
        let s = self.lpi_get(intid, target).ok_or(ENOMEM)?;
        self.its.ites[i] = Ite {
            used: true,
            has_coll: true,
            coll,
            device: dev,
            event,
            lpi: s as u16,
        };
        Ok(s)
    }

    /// The LPI slot a `MAPTI`/`MAPI` command maps (once applied).
    fn its_mapped_slot(&self, c: &Command) -> Option<usize> {
        let code = c.code();
        if code != cmd::MAPTI && code != cmd::MAPI {
            return None;
        }
        let i = self.its.ite(c.device(), c.event())?;
        Some(usize::from(self.its.ites[i].lpi))
    }

    /// LPI slot `s`'s bit in its target's pending table (`GICR_PENDBASER`):
    /// `(byte address, bit, pending now, INTID)`; `None` without a target.
    fn its_pending_of(&self, s: usize) -> Option<(u64, u8, bool, u32)> {
        let l = self.its.lpis.get(s).filter(|l| l.intid != 0)?;
        let t = l.irq.route as usize;
        if !self.exists(t) {
            return None;
        }
        let base = self.pendbaser[t] & 0x000F_FFFF_FFFF_0000;
        let byte = base + u64::from(l.intid / 8);
        Some((byte, (l.intid % 8) as u8, l.irq.has(f::LATCH), l.intid))
    }

    /// LPI `intid` (slot `s`) pending or not, as its pending table says.
    fn its_set_pending(&mut self, s: usize, intid: u32, on: bool) -> u64 {
        match self.its.lpis.get_mut(s) {
            Some(l) if l.intid == intid => l.irq.set(f::LATCH, on),
            _ => return 0,
        }
        self.mark_lpi(s);
        self.kick_lpi(s)
    }

    /// A failed restore: every device (and collection) goes.
    fn its_free_tables(&mut self, collections: bool) {
        for d in 0..MAX_DEVICES {
            if self.its.devices[d].used {
                self.free_device(d);
            }
        }
        if collections {
            for c in 0..MAX_COLLECTIONS {
                if self.its.colls[c].used {
                    let id = self.its.colls[c].id;
                    self.free_coll(id);
                }
            }
        }
    }
}

// ---- guest memory, outside the vGIC's lock ---------------------------------------------

/// Reads guest memory at `gpa` through the VM's memory slots (the VMM's
/// memory: a non-protected VM's), `EFAULT` where no slot is. A protected
/// VM's memory is not KServ's: KCore reads it, only inside the tables the
/// guest programmed into its ITS and redistributors (`HostReadGicTable`,
/// up to 24 bytes a call), `EFAULT` elsewhere.
fn read_guest<E: KvmEnv>(env: &mut E, c: &VmCfg, gpa: u64, buf: &mut [u8]) -> Result<(), Errno> {
    use crate::kvm::errno::EFAULT;
    if let Some(h) = c.kcore_reads() {
        let mut done = 0;
        while done < buf.len() {
            let a = gpa.checked_add(done as u64).ok_or(EFAULT)?;
            let in_page = (0x1000 - (a & 0xFFF)) as usize;
            let n = in_page
                .min(buf.len() - done)
                .min(kcore_abi::gic_frame::MAX_READ as usize);
            let words =
                crate::hypercall::read_gic_table(env, h, a, n as u64).map_err(|_| EFAULT)?;
            for (k, b) in buf[done..done + n].iter_mut().enumerate() {
                *b = (words[k / 8] >> (8 * (k % 8))) as u8;
            }
            done += n;
        }
        return Ok(());
    }
    let mut done = 0;
    while done < buf.len() {
        let a = gpa.checked_add(done as u64).ok_or(EFAULT)?;
        let s = c.slot_of(a >> 12).ok_or(EFAULT)?;
        let in_page = (0x1000 - (a & 0xFFF)) as usize;
        let n = in_page.min(buf.len() - done);
        let uaddr = s.uaddr + (a - s.gfn * 4096);
        env.copy_from_user(uaddr, &mut buf[done..done + n])?;
        done += n;
    }
    Ok(())
}

/// `vgic_its_check_id`: whether `id` has an entry in the table `baser`
/// describes, in memory a slot backs (a two-level table's first-level entry
/// read and its valid bit checked).
fn table_has<E: KvmEnv>(env: &mut E, c: &VmCfg, baser: u64, id: u32) -> bool {
    table_entry(env, c, baser, id).is_some()
}

/// [`table_has`], with the entry's guest address.
fn table_entry<E: KvmEnv>(env: &mut E, c: &VmCfg, baser: u64, id: u32) -> Option<u64> {
    let ty = (baser >> 56) & 7;
    if !(ty == TYPE_DEVICE || ty == TYPE_COLLECTION) || id >= 1 << ID_BITS || baser & VALID == 0 {
        return None;
    }
    let size = ((baser & 0xFF) + 1) * 0x1_0000;
    let esz = ((baser >> 48) & 0x1F) + 1;
    let base = table_base(baser);
    let id = u64::from(id);
    let addr = if baser & INDIRECT == 0 {
        if id >= size / esz {
            return None;
        }
        base + id * esz
    } else {
        let per_page = 0x1_0000 / esz;
        let index = id / per_page;
        if index >= size / 8 {
            return None;
        }
        let l1 = read_u64(env, c, base + index * 8).ok()?;
        if l1 & VALID == 0 {
            return None;
        }
        (l1 & 0x000F_FFFF_FFFF_0000) + (id % per_page) * esz
    };
    c.slot_of(addr >> 12).map(|_| addr)
}

/// Writes one byte of guest memory through a writable slot (`EFAULT`),
/// and marks its page dirty (as KVM's `vgic_write_guest_lock`): the write
/// goes through the VMM's mapping, not the guest's stage 2, so no dirty-log
/// fault records it, and a migration would carry the page stale.
fn write_u8<E: KvmEnv>(env: &mut E, c: &mut VmCfg, gpa: u64, value: u8) -> Result<(), Errno> {
    if c.kcore_reads().is_some() {
        return Err(crate::kvm::errno::EFAULT);
    }
    let s = c
        .slot_of(gpa >> 12)
        .filter(|s| !s.readonly())
        .ok_or(crate::kvm::errno::EFAULT)?;
    env.copy_to_user(s.uaddr + (gpa - s.gfn * 4096), &[value])?;
    c.written(gpa >> 12);
    Ok(())
}

/// A little-endian u64 of guest memory.
fn read_u64<E: KvmEnv>(env: &mut E, c: &VmCfg, gpa: u64) -> Result<u64, Errno> {
    let mut b = [0u8; 8];
    read_guest(env, c, gpa, &mut b)?;
    Ok(u64::from_le_bytes(b))
}

/// Writes a little-endian u64 into guest memory at `gpa` (8-aligned: one
/// page) through a writable slot (`EFAULT` where none is), and marks its
/// page dirty ([`write_u8`]).
fn write_u64<E: KvmEnv>(env: &mut E, c: &mut VmCfg, gpa: u64, value: u64) -> Result<(), Errno> {
    use crate::kvm::errno::EFAULT;
    if c.kcore_reads().is_some() {
        return Err(EFAULT);
    }
    let s = c
        .slot_of(gpa >> 12)
        .filter(|s| !s.readonly() && gpa.is_multiple_of(8))
        .ok_or(EFAULT)?;
    env.copy_to_user(s.uaddr + (gpa - s.gfn * 4096), &value.to_le_bytes())?;
    c.written(gpa >> 12);
    Ok(())
}

/// Runs the ITS's command queue until it is empty (or once round it: a
/// queue is at most 1 MiB, 32768 commands), under the VM's mutex: each
/// command is read from guest memory, checked there, then applied under
/// the vGIC's lock; the LPIs it mapped or invalidated then read their
/// configuration from the property table. Kicks whom the commands make
/// pending.
pub fn process<E: KvmEnv>(env: &mut E, vm: &Vm) {
    vm.with_cfg(env, |env, c| {
        for _ in 0..(1 << 20) / CMD_SIZE {
            let Some(gpa) = vm.with_gic(env, |g| (g.its_next(), 0)) else {
                break;
            };
            let mut b = [0u8; 32];
            let cmd = match read_guest(env, c, gpa, &mut b) {
                Ok(()) => {
                    let w = |i: usize| {
                        let mut x = [0u8; 8];
                        x.copy_from_slice(&b[i * 8..i * 8 + 8]);
                        u64::from_le_bytes(x)
                    };
                    Some(Command([w(0), w(1), w(2), w(3)]))
                }
                Err(_) => None,
            };
            let Some(cmd) = cmd else {
                // Unreadable: skipped, as KVM does.
                vm.with_gic(env, |g| {
                    g.its.advance();
                    ((), 0)
                });
                continue;
            };
            let prep = vm.with_gic(env, |g| (g.its_prepare(&cmd), 0));
            let chk = Checked {
                table_ok: prep
                    .table_id
                    .is_some_and(|(b, id)| table_has(env, c, b, id)),
                visible: prep.visible.is_some_and(|a| c.slot_of(a >> 12).is_some()),
            };
            let refresh = vm.with_gic(env, |g| g.its_apply(&cmd, &chk));
            refresh_lpis(env, vm, c, &refresh);
            if let Some(s) = vm.with_gic(env, |g| (g.its_mapped_slot(&cmd), 0)) {
                sync_pending(env, vm, c, s);
            }
        }
    });
}

/// `KVM_DEV_ARM_ITS_SAVE_TABLES` (ABI revision 0, as `vgic_its_save_tables_v0`):
/// each device's translation entries into its ITT and its entry into the
/// device table (by id, each with the offset to the next), then the
/// collections into the collection table, ended by an invalid entry if
/// there is room. `EINVAL` for a device the guest's table has no entry
/// for, `EFAULT` for a table no writable slot backs.
fn save_tables<E: KvmEnv>(env: &mut E, vm: &Vm) -> Result<(), Errno> {
    vm.with_cfg(env, |env, c| {
        let baser = vm.with_gic(env, |g| (g.its.baser, 0));
        if baser[0] & VALID != 0 {
            let mut last = None;
            while let Some((d, next)) = vm.with_gic(env, |g| (g.its_device_after(last), 0)) {
                let entry = table_entry(env, c, baser[0], d.id).ok_or(EINVAL)?;
                let mut event = None;
                while let Some((e, value)) = vm.with_gic(env, |g| (g.its_ite_after(d.id, event), 0))
                {
                    write_u64(env, c, d.itt + u64::from(e) * ENTRY_SIZE, value)?;
                    event = Some(e);
                }
                let next = next.map_or(0, |n| u64::from(n - d.id).min(abi::DTE_NEXT_MAX));
                let value = VALID
                    | next << abi::DTE_NEXT_SHIFT
                    | ((d.itt >> 8) << 5 & abi::DTE_ITT_MASK)
                    | u64::from(d.event_bits - 1);
                write_u64(env, c, entry, value)?;
                last = Some(d.id);
            }
        }
        if baser[1] & VALID != 0 {
            let size = ((baser[1] & 0xFF) + 1) * 0x1_0000;
            let mut gpa = table_base(baser[1]);
            let mut filled = 0;
            for k in 0..MAX_COLLECTIONS {
                if let Some(value) = vm.with_gic(env, |g| (g.its_coll_entry(k), 0)) {
                    write_u64(env, c, gpa, value)?;
                    gpa += ENTRY_SIZE;
                    filled += ENTRY_SIZE;
                }
            }
            if filled < size {
                write_u64(env, c, gpa, 0)?;
            }
        }
        Ok(())
    })
}

/// `KVM_DEV_ARM_ITS_RESTORE_TABLES` (`vgic_its_restore_tables_v0`): the
/// collections from the collection table (up to the first invalid entry),
/// then the devices from the device table (flat, or through its valid
/// first-level entries), each with the entries of its ITT, following the
/// entries' offsets to the next; the LPIs' configuration is read from the
/// property table. KVM's errors (`EINVAL` for a malformed entry, `EEXIST`
/// for a collection already there); `ENOMEM` past the caps. A failure drops
/// what was restored.
fn restore_tables<E: KvmEnv>(env: &mut E, vm: &Vm) -> Result<(), Errno> {
    vm.with_cfg(env, |env, c| {
        let baser = vm.with_gic(env, |g| (g.its.baser, 0));
        let r = restore_collections(env, vm, c, baser[1]).and_then(|()| {
            if baser[0] & VALID == 0 {
                return Ok(());
            }
            restore_devices(env, vm, c, baser[0])
        });
        if r.is_err() {
            vm.with_gic(env, |g| (g.its_free_tables(true), 0));
        }
        r
    })
}

/// The collection table of `baser`, up to its first invalid entry.
fn restore_collections<E: KvmEnv>(
    env: &mut E,
    vm: &Vm,
    c: &VmCfg,
    baser: u64,
) -> Result<(), Errno> {
    if baser & VALID == 0 {
        return Ok(());
    }
    let size = ((baser & 0xFF) + 1) * 0x1_0000;
    let base = table_base(baser);
    for k in 0..size / ENTRY_SIZE {
        let v = read_u64(env, c, base + k * ENTRY_SIZE)?;
        if v & VALID == 0 {
            break;
        }
        let (id, target) = (v as u16, (v >> abi::CTE_RDBASE_SHIFT) as u32);
        if !table_has(env, c, baser, u32::from(id)) {
            return Err(EINVAL);
        }
        vm.with_gic(env, |g| (g.its_restore_coll(id, target), 0))?;
    }
    Ok(())
}

/// The device table of `baser`, flat or two-level.
fn restore_devices<E: KvmEnv>(
    env: &mut E,
    vm: &Vm,
    c: &mut VmCfg,
    baser: u64,
) -> Result<(), Errno> {
    let size = ((baser & 0xFF) + 1) * 0x1_0000;
    let base = table_base(baser);
    if baser & INDIRECT == 0 {
        return scan_devices(env, vm, c, baser, (base, size), 0);
    }
    let per_page = 0x1_0000 / ENTRY_SIZE;
    for k in 0..size / 8 {
        let l1 = read_u64(env, c, base + k * 8)?;
        if l1 & VALID != 0 {
            let l2 = l1 & 0x000F_FFFF_FFFF_0000;
            scan_devices(env, vm, c, baser, (l2, 0x1_0000), k * per_page)?;
        }
    }
    Ok(())
}

/// `scan_its_table` over device entries: `size` bytes at `base` (`table`),
/// the first one device `first`; an invalid entry moves to the next, a
/// valid one by its offset (0: the last).
fn scan_devices<E: KvmEnv>(
    env: &mut E,
    vm: &Vm,
    c: &mut VmCfg,
    baser: u64,
    table: (u64, u64),
    first: u64,
) -> Result<(), Errno> {
    let (base, size) = table;
    let mut k = 0;
    while k < size / ENTRY_SIZE {
        let v = read_u64(env, c, base + k * ENTRY_SIZE)?;
        if v & VALID == 0 {
            k += 1;
            continue;
        }
        let id = u32::try_from(first + k).map_err(|_| EINVAL)?;
        let bits = (v & 0x1F) as u32 + 1;
        let itt = ((v & abi::DTE_ITT_MASK) >> 5) << 8;
        let next = (v >> abi::DTE_NEXT_SHIFT) & abi::DTE_NEXT_MAX;
        if bits > ID_BITS || !table_has(env, c, baser, id) {
            return Err(EINVAL);
        }
        vm.with_gic(env, |g| (g.its_restore_device(id, itt, bits as u8), 0))?;
        restore_itt(env, vm, c, (id, itt, bits))?;
        if next == 0 {
            return Ok(());
        }
        k += next;
    }
    Ok(())
}

/// The translation entries of device `(id, itt, event bits)` from its ITT.
fn restore_itt<E: KvmEnv>(
    env: &mut E,
    vm: &Vm,
    c: &mut VmCfg,
    dev: (u32, u64, u32),
) -> Result<(), Errno> {
    let (id, itt, bits) = dev;
    let events = 1u64 << bits;
    let mut event = 0;
    while event < events {
        let v = read_u64(env, c, itt + event * ENTRY_SIZE)?;
        let intid = ((v >> 16) & 0xFFFF_FFFF) as u32;
        if intid == 0 {
            event += 1;
            continue;
        }
        let next = v >> abi::ITE_NEXT_SHIFT;
        // LPIs stop at the 16 ID bits advertised (KVM takes any INTID here;
        // KCore's list registers take no more).
        if !(LPI_START..1 << ID_BITS).contains(&intid) || event + next >= events {
            return Err(EINVAL);
        }
        let s = vm.with_gic(env, |g| {
            (g.its_restore_ite(id, event as u32, intid, v as u16), 0)
        })?;
        let mut one = [0u64; MAX_LPIS / 64];
        one[s / 64] |= 1 << (s % 64);
        refresh_lpis(env, vm, c, &one);
        sync_pending(env, vm, c, s);
        if next == 0 {
            return Ok(());
        }
        event += next;
    }
    Ok(())
}

/// `KVM_DEV_ARM_VGIC_SAVE_PENDING_TABLES` (`vgic_v3_save_pending_tables`):
/// each mapped LPI's pending state into its target's pending table (a
/// byte read and written back only where the bit differs). `ENXIO` before
/// the vGIC's init, `EFAULT` for a table no writable slot backs.
pub fn save_pending<E: KvmEnv>(env: &mut E, vm: &Vm) -> Result<(), Errno> {
    if !vm.with_gic(env, |g| (g.ready, 0)) {
        return Err(crate::kvm::errno::ENXIO);
    }
    if vm.protected() {
        return Err(crate::kvm::errno::EPERM);
    }
    vm.with_cfg(env, |env, c| {
        for s in 0..MAX_LPIS {
            let Some((gpa, bit, pending, _)) = vm.with_gic(env, |g| (g.its_pending_of(s), 0))
            else {
                continue;
            };
            let mut b = [0u8; 1];
            read_guest(env, c, gpa, &mut b)?;
            if (b[0] >> bit) & 1 != u8::from(pending) {
                write_u8(env, c, gpa, b[0] ^ (1 << bit))?;
            }
        }
        Ok(())
    })
}

/// A newly mapped LPI takes its pending state from its target's pending
/// table, whose bit is then cleared (`vgic_v3_lpi_sync_pending_status`).
fn sync_pending<E: KvmEnv>(env: &mut E, vm: &Vm, c: &mut VmCfg, s: usize) {
    let Some((gpa, bit, _, intid)) = vm.with_gic(env, |g| (g.its_pending_of(s), 0)) else {
        return;
    };
    let mut b = [0u8; 1];
    if read_guest(env, c, gpa, &mut b).is_err() {
        return;
    }
    let on = (b[0] >> bit) & 1 != 0;
    vm.with_gic(env, |g| ((), g.its_set_pending(s, intid, on)));
    if on {
        let _ = write_u8(env, c, gpa, b[0] & !(1 << bit));
    }
}

/// Reads the property byte of each LPI slot in `slots` and applies it.
fn refresh_lpis<E: KvmEnv>(env: &mut E, vm: &Vm, c: &VmCfg, slots: &Refresh) {
    for (w, &word) in slots.iter().enumerate() {
        let mut rest = word;
        while rest != 0 {
            let s = w * 64 + rest.trailing_zeros() as usize;
            rest &= rest - 1;
            let Some((gpa, intid)) = vm.with_gic(env, |g| (g.its_prop_of(s), 0)) else {
                continue;
            };
            let mut b = [0u8; 1];
            if read_guest(env, c, gpa, &mut b).is_ok() {
                vm.with_gic(env, |g| ((), g.its_set_prop(s, intid, b[0])));
            }
        }
    }
}

/// A guest's access to the ITS frame: `None` if `addr` is not in it, else
/// the value read. The translation page (`GITS_TRANSLATER`) reads as zero
/// and ignores writes, as KVM's; a write that moves `CWRITER` or enables
/// the ITS runs the queue ([`process`]).
pub fn mmio<E: KvmEnv>(
    env: &mut E,
    vm: &Vm,
    addr: u64,
    width: u64,
    write: bool,
    data: u64,
) -> Option<u64> {
    let (value, run) = vm.with_gic(env, |g| {
        let Some(base) = g.its.base().filter(|_| g.its.created && g.its.claims(addr)) else {
            return (None, 0);
        };
        let off = addr - base;
        if off >= 0x1_0000 {
            return (Some((0, false)), 0);
        }
        let r = g.its_access(off, width, write, data, false);
        (Some(r.unwrap_or((0, false))), 0)
    })?;
    if run {
        process(env, vm);
    }
    Some(value)
}

/// `KVM_SIGNAL_MSI` (`kvm_send_userspace_msi`): `EINVAL` without a vGIC or
/// with flags other than `KVM_MSI_VALID_DEVID`, then [`Vgic::its_msi`]'s
/// answer: 1 delivered, 0 blocked by the guest's mappings.
pub fn signal_msi<E: KvmEnv>(env: &mut E, vm: &Vm, arg: u64) -> Result<i64, Errno> {
    use crate::kvm::uapi::routing::MSI_VALID_DEVID;
    let mut b = [0u8; 32];
    env.copy_from_user(arg, &mut b)?;
    let word = |k: usize| u32::from_le_bytes([b[k], b[k + 1], b[k + 2], b[k + 3]]);
    let addr = u64::from(word(0)) | u64::from(word(4)) << 32;
    let (data, flags, devid) = (word(8), word(12), word(16));
    vm.with_gic(env, |g| {
        if !g.created || flags & !MSI_VALID_DEVID != 0 {
            return (Err(EINVAL), 0);
        }
        let devid = (flags & MSI_VALID_DEVID != 0).then_some(devid);
        match g.its_msi(addr, data, devid) {
            Ok((r, kick)) => (Ok(r), kick),
            Err(e) => (Err(e), 0),
        }
    })
}

/// The ITS device fd's ioctls (`vgic_its_{set,get,has}_attr`):
/// `GRP_ADDR`/`KVM_VGIC_ITS_ADDR_TYPE` (another type `ENODEV`),
/// `GRP_CTRL` (`CTRL_INIT`, `KVM_DEV_ARM_ITS_CTRL_RESET`,
/// `KVM_DEV_ARM_ITS_SAVE_TABLES`, `KVM_DEV_ARM_ITS_RESTORE_TABLES`), `GRP_ITS_REGS` (a register by
/// offset: misaligned `EINVAL`, none there or no base yet `ENXIO`); other
/// groups `ENXIO`, other ioctls `ENOTTY`.
pub fn device_ioctl<E: KvmEnv>(env: &mut E, vm: &Vm, cmd: u32, arg: u64) -> Result<i64, Errno> {
    use crate::kvm::errno::{ENODEV, ENOTTY, ENXIO};
    use crate::kvm::uapi::{self, vgic_attr as va};
    let op = match cmd {
        uapi::SET_DEVICE_ATTR => 0,
        uapi::GET_DEVICE_ATTR => 1,
        uapi::HAS_DEVICE_ATTR => 2,
        _ => return Err(ENOTTY),
    };
    let mut b = [0u8; uapi::size::DEVICE_ATTR];
    env.copy_from_user(arg, &mut b)?;
    let w = |i: usize| {
        let mut x = [0u8; 8];
        x.copy_from_slice(&b[i..i + 8]);
        u64::from_le_bytes(x)
    };
    let group = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
    let (attr, addr) = (w(8), w(16));
    match group {
        va::GRP_ADDR => {
            if attr != va::ITS_ADDR_TYPE {
                return Err(if op == 2 { ENXIO } else { ENODEV });
            }
            match op {
                0 => {
                    let mut v = [0u8; 8];
                    env.copy_from_user(addr, &mut v)?;
                    let base = u64::from_le_bytes(v);
                    let bits = vm.ipa_bits();
                    vm.with_gic(env, |g| (g.its.set_base(base, bits), 0))?;
                }
                1 => {
                    let base = vm.with_gic(env, |g| (g.its.base(), 0));
                    let v = base.unwrap_or(va::ADDR_UNDEF);
                    env.copy_to_user(addr, &v.to_le_bytes())?;
                }
                _ => {}
            }
            Ok(0)
        }
        va::GRP_CTRL => match (op, attr) {
            (1, _) => Err(ENXIO),
            (_, va::CTRL_INIT) => Ok(0),
            (_, va::ITS_CTRL_RESET) => {
                if op == 0 {
                    vm.with_gic(env, |g| {
                        g.its_reset();
                        ((), 0)
                    });
                }
                Ok(0)
            }
            (2, va::ITS_SAVE_TABLES | va::ITS_RESTORE_TABLES) => Ok(0),
            // A protected VM's memory is not KServ's to write: no saving
            // or restoring its ITS (nor any of its state).
            (_, va::ITS_SAVE_TABLES | va::ITS_RESTORE_TABLES) if vm.protected() => {
                Err(crate::kvm::errno::EPERM)
            }
            (_, va::ITS_SAVE_TABLES) => save_tables(env, vm).map(|()| 0),
            (_, va::ITS_RESTORE_TABLES) => restore_tables(env, vm).map(|()| 0),
            (2, _) => Err(ENXIO),
            // KVM's `vgic_its_ctrl` does nothing for other values.
            _ => Ok(0),
        },
        va::GRP_ITS_REGS => {
            let offset = attr;
            let align = if !(0x8..0xFFD0).contains(&offset) {
                3
            } else {
                7
            };
            if offset & align != 0 {
                return Err(EINVAL);
            }
            let width = reg_width(offset).ok_or(ENXIO)?;
            if op == 2 {
                return Ok(0);
            }
            let mut v = [0u8; 8];
            if op == 0 {
                env.copy_from_user(addr, &mut v)?;
            }
            let value = u64::from_le_bytes(v);
            let (read, run) = vm.with_gic(env, |g| {
                if g.its.base().is_none() {
                    return (Err(ENXIO), 0);
                }
                (g.its_access(offset, width, op == 0, value, true), 0)
            })?;
            if run {
                process(env, vm);
            }
            if op == 1 {
                env.copy_to_user(addr, &read.to_le_bytes())?;
            }
            Ok(0)
        }
        _ => Err(ENXIO),
    }
}

#[cfg(test)]
mod tests;
