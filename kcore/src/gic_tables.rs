//! A protected VM's LPI tables: where its guest put the ITS's command queue
//! and tables and its redistributors' LPI property and pending tables, as
//! KCore saw the guest program them, and KServ's reads of exactly those
//! (`host_read_gic_table`, [`crate::gic_reads`]).
//!
//! KServ emulates the ITS (in the shim, as KVM does). The emulation reads
//! guest memory: each command from the queue `GITS_CBASER` names, a
//! two-level device table's first-level entries (`GITS_BASER0`), the LPI
//! property byte of each mapped LPI (`GICR_PROPBASER`) and its pending bit
//! (`GICR_PENDBASER`). A protected VM's memory is not KServ's to read, so
//! KCore reads for it, only inside those windows, and only as the guest
//! itself programmed them: KCore records the guest's own writes to those
//! registers (from its MMIO exits, KCore's record of the exit, never the run
//! page) at the put of the vCPU that made them, under KCore's lock, before
//! KServ learns of the write. What KServ says about the registers counts for
//! nothing; it only names, before any vCPU ran, where the ITS frame and the
//! redistributor frames are (`host_set_gic_frames`), and only inside the
//! VM's MMIO ranges, which lie inside the manifest its image's signer
//! allowed.
//!
//! The recording mirrors the shim's emulation (KVM's): `GITS_CBASER` and
//! `GITS_BASER<n>` are fixed while the ITS is enabled, which needs both
//! tables and the queue valid; `GICR_PROPBASER` (one per VM, as KVM keeps
//! it) and a redistributor's `GICR_PENDBASER` are fixed while that
//! redistributor's `EnableLPIs` is set; only 32- and 64-bit accesses,
//! naturally aligned, count. The windows: the queue while `CBASER` is
//! valid; the device and collection tables while their `BASER` is valid
//! (64 KiB pages, as the emulation fixes them); the property table
//! (`IDbits` capped at 16) while some redistributor has LPIs enabled; a
//! redistributor's pending table (8 KiB: 2^16 bits) while its LPIs are
//! enabled. A guest that wrote an address there handed that memory to its
//! interrupt controller, as it would to a hardware GIC.
//!
//! Two vCPUs' writes are recorded in the order of their puts, which the
//! shim may apply in another order. Only a guest that races its own writes
//! (say `GITS_CBASER` on one vCPU against enabling the ITS on another, which
//! the architecture leaves unpredictable) can tell: the shim may then read
//! where KCore recorded nothing, is refused, and the guest's ITS stalls.
//! Nothing is read outside what the guest wrote.

use crate::addr::{Gfn, PAGE_SHIFT};

/// Redistributor frames a VM may have: one per vCPU
/// ([`crate::vm::MAX_VCPUS`]).
pub const MAX_FRAMES: usize = 64;

/// Most redistributor regions KServ may place for one VM.
pub const MAX_RD_REGIONS: usize = 8;
/// Pages of a GICv3 redistributor (`RD_base` and `SGI_base`, 128 KiB).
pub const RD_PAGES: u64 = 32;
/// Pages of the ITS frame (control and translation pages, 128 KiB).
pub const ITS_PAGES: u64 = 32;
/// Frames are 64 KiB aligned.
pub const FRAME_ALIGN_PAGES: u64 = 16;

/// `GITS_CBASER.Valid`, `GITS_BASER<n>.Valid`.
const VALID: u64 = 1 << 63;
/// `GITS_BASER<n>.Indirect`.
const INDIRECT: u64 = 1 << 62;
/// A 4 KiB-aligned physical address in a 64-bit register (bits 51:12).
const ADDR_4K: u64 = 0x000F_FFFF_FFFF_F000;
/// A 64 KiB-aligned one (bits 51:16).
const ADDR_64K: u64 = 0x000F_FFFF_FFFF_0000;
/// LPI ID bits the shim's ITS offers (`INTERRUPT_ID_BITS_ITS`).
const ID_BITS: u32 = 16;
/// The first LPI.
const LPI_START: u64 = 8192;
/// A pending table's bytes for [`ID_BITS`].
const PEND_BYTES: u64 = (1 << ID_BITS) / 8;

/// Which frame KServ places with `host_set_gic_frames` (its `kind`).
pub use kcore_abi::gic_frame as frame_kind;

/// `len` bytes of `reg` from byte `offset & 7` replaced by `val`'s low
/// bytes (a 32- or 64-bit access to a 64-bit register).
fn update(reg: u64, offset: u64, len: u64, val: u64) -> u64 {
    let shift = 8 * (offset & 7);
    let mask = if len >= 8 {
        u64::MAX
    } else {
        ((1u64 << (8 * len)) - 1) << shift
    };
    (reg & !mask) | ((val << shift) & mask)
}

/// A guest address range `[start, end)`.
type Window = (u64, u64);

/// What KCore knows of one protected VM's ITS and redistributors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GicTables {
    /// The ITS frame's first gfn.
    its: Option<Gfn>,
    /// Redistributor regions: first gfn and frame count, in frame order.
    regions: [(u64, u64); MAX_RD_REGIONS],
    n_regions: usize,
    /// Frames over all regions.
    frames: u64,
    /// `GITS_CTLR.Enabled`.
    its_enabled: bool,
    cbaser: u64,
    /// `GITS_BASER0` (devices), `GITS_BASER1` (collections).
    baser: [u64; 2],
    propbaser: u64,
    /// Each redistributor frame's `GICR_PENDBASER`, by frame index.
    pendbaser: [u64; MAX_FRAMES],
    /// Each frame's `GICR_CTLR.EnableLPIs` (bit `k` for frame `k`).
    lpis_on: u64,
}

impl Default for GicTables {
    fn default() -> Self {
        Self::new()
    }
}

/// Why KServ's placement of a frame is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlaceError {
    /// Malformed: kind, alignment, count, overlap, too many.
    Invalid,
    /// The ITS was placed already.
    Again,
}

impl GicTables {
    /// Nothing placed, nothing programmed.
    pub const fn new() -> Self {
        GicTables {
            its: None,
            regions: [(0, 0); MAX_RD_REGIONS],
            n_regions: 0,
            frames: 0,
            its_enabled: false,
            cbaser: 0,
            baser: [0; 2],
            propbaser: 0,
            pendbaser: [0; MAX_FRAMES],
            lpis_on: 0,
        }
    }

    /// Whether an ITS was placed.
    pub fn has_its(&self) -> bool {
        self.its.is_some()
    }

    /// The pages `[first, end)` a frame of `kind` and `frames` at `gfn`
    /// covers, if well formed and free of the frames placed so far.
    pub fn check_place(&self, kind: u64, gfn: u64, frames: u64) -> Result<(u64, u64), PlaceError> {
        let pages = match kind {
            frame_kind::ITS if frames == 1 => ITS_PAGES,
            frame_kind::REDIST
                if frames >= 1
                    && frames <= MAX_FRAMES as u64 - self.frames
                    && self.n_regions < MAX_RD_REGIONS =>
            {
                RD_PAGES * frames
            }
            _ => return Err(PlaceError::Invalid),
        };
        if kind == frame_kind::ITS && self.its.is_some() {
            return Err(PlaceError::Again);
        }
        if !gfn.is_multiple_of(FRAME_ALIGN_PAGES) {
            return Err(PlaceError::Invalid);
        }
        let end = gfn.checked_add(pages).ok_or(PlaceError::Invalid)?;
        let overlaps = |a: u64, b: u64| gfn < b && a < end;
        let its_hit = self.its.is_some_and(|g| overlaps(g.0, g.0 + ITS_PAGES));
        let rd_hit = self.regions[..self.n_regions]
            .iter()
            .any(|&(g, n)| overlaps(g, g + n * RD_PAGES));
        if its_hit || rd_hit {
            return Err(PlaceError::Invalid);
        }
        Ok((gfn, end))
    }

    /// Places what [`Self::check_place`] accepted.
    pub fn place(&mut self, kind: u64, gfn: u64, frames: u64) {
        if kind == frame_kind::ITS {
            self.its = Some(Gfn(gfn));
        } else if let Some(r) = self.regions.get_mut(self.n_regions) {
            *r = (gfn, frames);
            self.n_regions += 1;
            self.frames += frames;
        }
    }

    /// The first page of every placed frame (the registers KCore records
    /// are all there): the ITS's, then each redistributor's.
    pub fn register_pages(&self) -> impl Iterator<Item = u64> + '_ {
        self.its.map(|g| g.0).into_iter().chain(
            self.regions[..self.n_regions]
                .iter()
                .flat_map(|&(g, n)| (0..n).map(move |k| g + k * RD_PAGES)),
        )
    }

    /// The redistributor frame index whose register page holds `gfn`.
    fn rd_frame(&self, gfn: u64) -> Option<usize> {
        let mut before = 0;
        for &(g, n) in &self.regions[..self.n_regions] {
            if let Some(d) = gfn.checked_sub(g).filter(|&d| d < n * RD_PAGES) {
                return (d % RD_PAGES == 0).then_some((before + d / RD_PAGES) as usize);
            }
            before += n;
        }
        None
    }

    /// A guest's MMIO write of `width` bytes of `data` at `ipa`, as KCore
    /// reported it to KServ: recorded if it programs one of the registers
    /// above. Nothing without an ITS.
    pub fn record_write(&mut self, ipa: u64, width: u64, data: u64) {
        if !(width == 4 || width == 8) || !ipa.is_multiple_of(width) {
            return;
        }
        let Some(its) = self.its else {
            return;
        };
        let gfn = ipa >> PAGE_SHIFT;
        let off = ipa & ((1 << PAGE_SHIFT) - 1);
        if gfn == its.0 {
            self.its_write(off, width, data);
        } else if let Some(k) = self.rd_frame(gfn) {
            self.rd_write(k, off, width, data);
        }
    }

    fn its_write(&mut self, off: u64, width: u64, data: u64) {
        match off & !7 {
            0x0 if off == 0 && width == 4 => {
                let on = data & 1 != 0;
                let ready = self.baser[0] & VALID != 0
                    && self.baser[1] & VALID != 0
                    && self.cbaser & VALID != 0;
                if self.its_enabled || !on || ready {
                    self.its_enabled = on;
                }
            }
            0x80 if !self.its_enabled => {
                self.cbaser = update(self.cbaser, off, width, data) & !0xF000;
            }
            0x100 | 0x108 if !self.its_enabled => {
                let n = ((off - 0x100) / 8) as usize;
                let mut reg = update(self.baser[n], off, width, data);
                if n == 1 {
                    // The collection table is flat.
                    reg &= !INDIRECT;
                }
                self.baser[n] = reg;
            }
            _ => {}
        }
    }

    fn rd_write(&mut self, k: usize, off: u64, width: u64, data: u64) {
        let bit = 1u64 << k;
        let on = self.lpis_on & bit != 0;
        match off & !7 {
            0x0 if off == 0 && width == 4 => {
                if data & 1 != 0 {
                    self.lpis_on |= bit;
                } else {
                    self.lpis_on &= !bit;
                }
            }
            0x70 if !on => self.propbaser = update(self.propbaser, off, width, data),
            0x78 if !on => {
                if let Some(p) = self.pendbaser.get_mut(k) {
                    *p = update(*p, off, width, data);
                }
            }
            _ => {}
        }
    }

    /// The windows the guest opened, as now programmed.
    fn windows(&self) -> impl Iterator<Item = Window> + '_ {
        let queue = (self.cbaser & VALID != 0).then(|| {
            let base = self.cbaser & ADDR_4K;
            (base, base + (((self.cbaser & 0xFF) + 1) << PAGE_SHIFT))
        });
        let tables = self.baser.into_iter().filter(|b| b & VALID != 0).map(|b| {
            let base = (b & 0x0000_FFFF_FFFF_0000) | ((b >> 12) & 0xF) << 48;
            (base, base + (((b & 0xFF) + 1) << 16))
        });
        let prop = (self.lpis_on != 0).then(|| {
            let bits = ((self.propbaser & 0x1F) as u32 + 1).min(ID_BITS);
            let base = self.propbaser & ADDR_4K;
            (base, base + (1u64 << bits).saturating_sub(LPI_START))
        });
        let pend = (0..self.frames as usize)
            .filter(|k| self.lpis_on & (1 << k) != 0)
            .map(|k| {
                let base = self.pendbaser[k] & ADDR_64K;
                (base, base + PEND_BYTES)
            });
        queue.into_iter().chain(tables).chain(prop).chain(pend)
    }

    /// Whether `[ipa, ipa + len)` lies inside one window the guest opened.
    pub fn allows(&self, ipa: u64, len: u64) -> bool {
        let Some(end) = ipa.checked_add(len) else {
            return false;
        };
        len > 0 && self.windows().any(|(a, b)| a <= ipa && end <= b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ITS: u64 = 0x0808_0000 >> 12;
    const RD: u64 = 0x080A_0000 >> 12;

    fn placed() -> GicTables {
        let mut g = GicTables::new();
        assert!(g.check_place(frame_kind::ITS, ITS, 1).is_ok());
        g.place(frame_kind::ITS, ITS, 1);
        assert!(g.check_place(frame_kind::REDIST, RD, 2).is_ok());
        g.place(frame_kind::REDIST, RD, 2);
        g
    }

    fn its_reg(off: u64) -> u64 {
        (ITS << 12) + off
    }

    fn rd_reg(k: u64, off: u64) -> u64 {
        ((RD + k * RD_PAGES) << 12) + off
    }

    #[test]
    fn placement_is_checked() {
        let mut g = placed();
        assert_eq!(
            g.check_place(frame_kind::ITS, 0x9000, 1),
            Err(PlaceError::Again)
        );
        assert_eq!(
            g.check_place(frame_kind::REDIST, RD + RD_PAGES, 1),
            Err(PlaceError::Invalid),
            "overlaps the second frame"
        );
        assert_eq!(
            g.check_place(frame_kind::REDIST, ITS + 16, 1),
            Err(PlaceError::Invalid),
            "overlaps the ITS's translation page"
        );
        assert_eq!(
            g.check_place(frame_kind::REDIST, 0x9001, 1),
            Err(PlaceError::Invalid)
        );
        assert_eq!(
            g.check_place(frame_kind::REDIST, 0x9000, 0),
            Err(PlaceError::Invalid)
        );
        assert_eq!(
            g.check_place(frame_kind::REDIST, 0x9000, 63),
            Err(PlaceError::Invalid),
            "65 frames"
        );
        assert_eq!(
            g.check_place(frame_kind::REDIST, 0x9000, u64::MAX),
            Err(PlaceError::Invalid),
            "a count that would wrap the total"
        );
        assert_eq!(
            g.check_place(frame_kind::ITS, 0x9000, 2),
            Err(PlaceError::Invalid)
        );
        assert_eq!(g.check_place(7, 0x9000, 1), Err(PlaceError::Invalid));
        assert_eq!(
            g.check_place(frame_kind::REDIST, !15, 1),
            Err(PlaceError::Invalid)
        );
        for i in 0..7 {
            let at = 0x10_0000 + i * 0x100;
            assert!(g.check_place(frame_kind::REDIST, at, 1).is_ok());
            g.place(frame_kind::REDIST, at, 1);
        }
        assert_eq!(
            g.check_place(frame_kind::REDIST, 0x20_0000, 1),
            Err(PlaceError::Invalid),
            "a ninth region"
        );
        let mut pages = [0u64; 12];
        let mut n = 0;
        for (slot, p) in pages.iter_mut().zip(g.register_pages()) {
            *slot = p;
            n += 1;
        }
        assert_eq!(&pages[..3], &[ITS, RD, RD + RD_PAGES]);
        assert_eq!(n, 10);
    }

    #[test]
    fn nothing_opens_without_the_guests_writes() {
        let g = placed();
        assert!(!g.allows(0, 1));
        assert!(!g.allows(0x4000_0000, 8));
        // Without an ITS nothing is recorded.
        let mut none = GicTables::new();
        none.record_write(its_reg(0x80), 8, VALID | 0x4000_0000);
        assert!(!none.allows(0x4000_0000, 8));
    }

    #[test]
    fn the_queue_and_tables_open_as_the_guest_programs_them() {
        let mut g = placed();
        // CBASER in two halves: 2 pages at 0x4001_0000, valid.
        g.record_write(its_reg(0x80), 4, 0x4001_0001);
        assert!(!g.allows(0x4001_0000, 8), "not valid yet");
        g.record_write(its_reg(0x84), 4, VALID >> 32);
        assert!(g.allows(0x4001_0000, 24));
        assert!(g.allows(0x4001_1FF8, 8));
        assert!(!g.allows(0x4001_1FF8, 9), "past the queue");
        assert!(!g.allows(0x4000_FFF8, 8), "before it");
        // BASER0: one 64 KiB page at 0x4010_0000, valid; BASER1 likewise.
        g.record_write(its_reg(0x100), 8, VALID | INDIRECT | 0x4010_0000);
        g.record_write(its_reg(0x108), 8, VALID | 0x4020_0000 | 1);
        assert!(g.allows(0x4010_FFF8, 8));
        assert!(!g.allows(0x4011_0000, 8));
        assert!(g.allows(0x4021_FFF8, 8), "two pages");
        // Enabled: the registers are fixed.
        g.record_write(its_reg(0x0), 4, 1);
        g.record_write(its_reg(0x80), 8, VALID | 0x5000_0000);
        g.record_write(its_reg(0x100), 8, 0);
        assert!(g.allows(0x4001_0000, 8) && g.allows(0x4010_0000, 8));
        assert!(!g.allows(0x5000_0000, 8));
        // Disabled again: a cleared Valid closes the window.
        g.record_write(its_reg(0x0), 4, 0);
        g.record_write(its_reg(0x80), 8, 0x4001_0000);
        assert!(!g.allows(0x4001_0000, 8));
    }

    #[test]
    fn enabling_needs_valid_tables_and_queue() {
        let mut g = placed();
        g.record_write(its_reg(0x0), 4, 1);
        // Not enabled (no valid tables), so CBASER still takes writes.
        g.record_write(its_reg(0x80), 8, VALID | 0x4001_0000);
        assert!(g.allows(0x4001_0000, 8));
    }

    #[test]
    fn odd_accesses_and_other_registers_are_ignored() {
        let mut g = placed();
        g.record_write(its_reg(0x80), 2, 0x1);
        g.record_write(its_reg(0x82), 4, 0x1);
        g.record_write(its_reg(0x80), 1, 0x1);
        g.record_write(its_reg(0x88), 8, VALID | 0x4001_0000);
        g.record_write(its_reg(0x110), 8, VALID | 0x4001_0000);
        g.record_write(its_reg(0x1_0080), 8, VALID | 0x4001_0000);
        g.record_write(rd_reg(0, 0x1_0070), 8, 0x4001_000F);
        assert!(!g.allows(0x4001_0000, 8));
        assert_eq!(g, placed());
    }

    #[test]
    fn lpi_tables_open_with_enable_lpis() {
        let mut g = placed();
        g.record_write(rd_reg(0, 0x70), 8, 0x4030_0000 | 15);
        g.record_write(rd_reg(1, 0x78), 8, 0x4040_0000);
        g.record_write(rd_reg(0, 0x78), 4, 0x4050_0000);
        assert!(!g.allows(0x4030_0000, 1), "LPIs still off");
        g.record_write(rd_reg(1, 0x0), 4, 1);
        // The property table: 2^16 - 8192 bytes.
        assert!(g.allows(0x4030_0000 + 0xDFFF, 1));
        assert!(!g.allows(0x4030_0000 + 0xE000, 1));
        // Frame 1's pending table, 8 KiB; frame 0's not (its LPIs are off).
        assert!(g.allows(0x4040_1FFF, 1));
        assert!(!g.allows(0x4040_2000, 1));
        assert!(!g.allows(0x4050_0000, 1));
        // Fixed while LPIs are on.
        g.record_write(rd_reg(1, 0x78), 8, 0x4060_0000);
        g.record_write(rd_reg(1, 0x70), 8, 0x4070_0000 | 15);
        assert!(g.allows(0x4040_0000, 1) && !g.allows(0x4060_0000, 1));
        assert!(g.allows(0x4030_0000, 1) && !g.allows(0x4070_0000, 1));
        // Frame 0 may still move the VM's property table.
        g.record_write(rd_reg(0, 0x70), 8, 0x4070_0000 | 13);
        assert!(g.allows(0x4070_0000 + 0x1FFF, 1));
        assert!(
            !g.allows(0x4070_0000 + 0x2000, 1),
            "14 ID bits: 2^14 - 8192 bytes"
        );
        g.record_write(rd_reg(1, 0x0), 4, 0);
        assert!(!g.allows(0x4070_0000, 1) && !g.allows(0x4040_0000, 1));
        // An IDbits below 13 covers no LPI.
        g.record_write(rd_reg(0, 0x70), 8, 0x4070_0000 | 5);
        g.record_write(rd_reg(0, 0x0), 4, 1);
        assert!(!g.allows(0x4070_0000, 1));
    }

    #[test]
    fn ranges_that_wrap_or_are_empty_are_refused() {
        let mut g = placed();
        g.record_write(its_reg(0x80), 8, VALID | 0x4001_0000);
        assert!(!g.allows(0x4001_0000, 0));
        assert!(!g.allows(u64::MAX, 2));
    }
}
