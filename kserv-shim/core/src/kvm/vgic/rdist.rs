//! Where the redistributors lie: the regions of `KVM_VGIC_V3_ADDR_TYPE_REDIST`
//! (one region of one redistributor per vCPU) and
//! `KVM_VGIC_V3_ADDR_TYPE_REDIST_REGION` (regions of `count` redistributors,
//! index by index), as Linux 6.1's `vgic_v3_alloc_redist_region` and
//! `vgic-kvm-device.c` take them, with their errors.
//!
//! The vCPUs' redistributors fill the regions in index order, in the
//! vCPUs' creation order (KVM's `vgic_v3_rdist_free_slot`); a legacy
//! region holds every vCPU. Region indexes are 8 bits, as KVM 6.1 reads
//! them (`u8 index`), so there are at most 256 regions.

use super::super::errno::{EEXIST, EINVAL, ENOENT, ENXIO, Errno};
use super::super::uapi::vgic_attr::{DIST_SIZE, REDIST_SIZE};

/// Regions a VM may have: KVM 6.1's indexes are a `u8`.
pub const MAX_REGIONS: usize = 256;

/// One region: `count` redistributors from `base` (0: a legacy region,
/// one per vCPU).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Region {
    base: u64,
    count: u64,
}

/// A VM's redistributor regions, by index. All zero: none.
pub struct Regions {
    regions: [Region; MAX_REGIONS],
    n: usize,
}

/// `(count, base, flags, index)` of an `ADDR_TYPE_REDIST_REGION` value
/// (the index as KVM 6.1's `u8`).
fn fields(value: u64) -> (u64, u64, u64, usize) {
    (
        value >> 52,
        value & 0x000F_FFFF_FFFF_0000,
        (value >> 12) & 0xF,
        (value & 0xFF) as usize,
    )
}

impl Regions {
    /// None set.
    pub fn reset(&mut self) {
        self.n = 0;
    }

    fn used(&self) -> &[Region] {
        &self.regions[..self.n]
    }

    /// Region 0's base (`ADDR_TYPE_REDIST` reads it, whichever type set
    /// it), if any.
    pub fn first_base(&self) -> Option<u64> {
        self.used().first().map(|r| r.base)
    }

    /// Bytes of region `r` with `vcpus` vCPUs (a legacy region's grows).
    fn size(r: &Region, vcpus: usize) -> u64 {
        let count = if r.count == 0 { vcpus as u64 } else { r.count };
        count * REDIST_SIZE
    }

    /// `vgic_v3_alloc_redist_region`: region `index` (`count` 0: legacy)
    /// at `base` with `vcpus` vCPUs, `dist` the distributor's base.
    fn add(
        &mut self,
        index: usize,
        base: u64,
        count: u64,
        ipa_bits: u32,
        vcpus: usize,
        dist: Option<u64>,
    ) -> Result<(), Errno> {
        let new = Region { base, count };
        let size = Self::size(&new, vcpus);
        let end = base.checked_add(size).ok_or(EINVAL)?;
        match self.used().last() {
            None if index != 0 => return Err(EINVAL),
            None => {}
            // No mix of a legacy region after regions, nor two legacy ones.
            Some(last) if count == 0 => return Err(if last.count != 0 { EINVAL } else { EEXIST }),
            Some(_) if index != self.n => return Err(EINVAL),
            Some(_) => {}
        }
        if count == 0 && dist.is_some_and(|d| d < end && base < d + DIST_SIZE) {
            return Err(EINVAL);
        }
        if self
            .used()
            .iter()
            .any(|r| base < r.base + Self::size(r, vcpus) && r.base < end)
        {
            return Err(EINVAL);
        }
        super::check_iorange(base, size, ipa_bits)?;
        *self.regions.get_mut(index).ok_or(EINVAL)? = new;
        self.n = index + 1;
        Ok(())
    }

    /// Whether one more vCPU than `vcpus` gets a redistributor: a legacy
    /// region holds every vCPU, counted regions their counts
    /// (`vgic_v3_rdist_free_slot`).
    pub fn has_room(&self, vcpus: usize) -> bool {
        let used = self.used();
        used.iter().any(|r| r.count == 0)
            || used.iter().map(|r| r.count).sum::<u64>() > vcpus as u64
    }

    /// Whether the regions fit with `vcpus` vCPUs (`vgic_v3_check_base`,
    /// run whenever a vCPU gets a redistributor): each inside the IPA space
    /// of `ipa_bits`, off the distributor at `dist` (a legacy one grows
    /// with the vCPUs) and off each other.
    pub fn fits(&self, vcpus: usize, ipa_bits: u32, dist: Option<u64>) -> bool {
        let used = self.used();
        used.iter().enumerate().all(|(i, r)| {
            let size = Self::size(r, vcpus);
            let Some(end) = r.base.checked_add(size) else {
                return false;
            };
            super::check_iorange(r.base, size, ipa_bits).is_ok()
                && dist.is_none_or(|d| end <= d || r.base >= d + DIST_SIZE)
                && used[..i]
                    .iter()
                    .all(|o| end <= o.base || o.base + Self::size(o, vcpus) <= r.base)
        })
    }

    /// Takes back the last region added (`vgic_v3_set_redist_base` frees
    /// a region its vCPUs' redistributors do not fit with).
    pub fn pop(&mut self) {
        self.n = self.n.saturating_sub(1);
    }

    /// `KVM_VGIC_V3_ADDR_TYPE_REDIST`: a legacy region 0 at `base`.
    pub fn set_legacy(
        &mut self,
        base: u64,
        ipa_bits: u32,
        vcpus: usize,
        dist: Option<u64>,
    ) -> Result<(), Errno> {
        self.add(0, base, 0, ipa_bits, vcpus, dist)
    }

    /// `KVM_VGIC_V3_ADDR_TYPE_REDIST_REGION`'s write: no count or flags
    /// `EINVAL`, then [`Regions::add`]'s rules: the first index must be 0
    /// and each next one the next (`EINVAL`), no overlap with another
    /// region (`EINVAL`), 64 KiB alignment (`EINVAL`), inside the IPA
    /// space (`E2BIG`).
    pub fn set_region(&mut self, value: u64, ipa_bits: u32, vcpus: usize) -> Result<(), Errno> {
        let (count, base, flags, index) = fields(value);
        if count == 0 || flags != 0 {
            return Err(EINVAL);
        }
        self.add(index, base, count, ipa_bits, vcpus, None)
    }

    /// `KVM_VGIC_V3_ADDR_TYPE_REDIST_REGION`'s read of the index `value`
    /// names: index, base and count (`ENOENT` if there is none).
    pub fn region(&self, value: u64) -> Result<u64, Errno> {
        let (_, _, _, index) = fields(value);
        let r = self.used().get(index).ok_or(ENOENT)?;
        Ok(r.count << 52 | r.base | index as u64)
    }

    /// Redistributor `i` (in the vCPUs' creation order) of `vcpus`: its
    /// region and index in it.
    fn place(&self, i: usize) -> Option<(usize, u64)> {
        let mut left = i as u64;
        for (k, r) in self.used().iter().enumerate() {
            if r.count == 0 || left < r.count {
                return Some((k, left));
            }
            left -= r.count;
        }
        None
    }

    /// Redistributors the regions before `k` hold (after a legacy region,
    /// which holds every vCPU: more than any VM has).
    fn before(&self, k: usize) -> u64 {
        self.used()[..k].iter().fold(0u64, |n, r| {
            if r.count == 0 {
                u64::MAX
            } else {
                n.saturating_add(r.count)
            }
        })
    }

    /// Which of `vcpus` redistributors `addr` falls in, and the offset in
    /// its 128 KiB.
    pub fn locate(&self, addr: u64, vcpus: usize) -> Option<(usize, u64)> {
        for (k, r) in self.used().iter().enumerate() {
            let off = addr.wrapping_sub(r.base);
            if off < Self::size(r, vcpus) {
                let i = self.before(k).saturating_add(off / REDIST_SIZE);
                return (i < vcpus as u64).then_some((i as usize, off % REDIST_SIZE));
            }
        }
        None
    }

    /// Each region that holds some of `vcpus` redistributors, in index
    /// (frame) order: its base and how many it holds.
    pub fn filled_regions(&self, vcpus: usize) -> impl Iterator<Item = (u64, u64)> + '_ {
        (0..self.n)
            .map(move |k| (self.regions[k].base, self.filled(k, vcpus)))
            .filter(|&(_, n)| n > 0)
    }

    /// Redistributors region `k` holds of `vcpus`.
    fn filled(&self, k: usize, vcpus: usize) -> u64 {
        let r = self.used()[k];
        let left = (vcpus as u64).saturating_sub(self.before(k));
        if r.count == 0 {
            left
        } else {
            left.min(r.count)
        }
    }

    /// `GICR_TYPER.Last` of redistributor `i` of `vcpus`, as KVM's
    /// `vgic_mmio_vcpu_rdist_is_last`: the last used one of its region,
    /// unless it ends a full region that another used region continues.
    pub fn is_last(&self, i: usize, vcpus: usize) -> bool {
        let Some((k, j)) = self.place(i) else {
            return false;
        };
        if j + 1 < self.filled(k, vcpus) {
            return false;
        }
        let r = self.used()[k];
        if r.count != 0 && j + 1 == r.count {
            let end = r.base + r.count * REDIST_SIZE;
            let continued =
                (0..self.n).any(|m| self.regions[m].base == end && self.filled(m, vcpus) > 0);
            return !continued;
        }
        true
    }

    /// The first run's checks (`vgic_v3_map_resources`): every one of
    /// `vcpus` vCPUs has a redistributor (`ENXIO`) and no region overlaps
    /// the distributor at `dist` (`EINVAL`).
    pub fn check_run(&self, vcpus: usize, dist: u64) -> Result<(), Errno> {
        if vcpus > 0 && self.place(vcpus - 1).is_none() {
            return Err(ENXIO);
        }
        let hit = self
            .used()
            .iter()
            .any(|r| dist < r.base + Self::size(r, vcpus) && r.base < dist + DIST_SIZE);
        if hit { Err(EINVAL) } else { Ok(()) }
    }
}

#[cfg(test)]
mod tests {
    use super::super::super::errno::E2BIG;
    use super::*;
    extern crate std;
    use std::boxed::Box;

    const R: u64 = 0x080A_0000;
    const D: u64 = 0x0800_0000;
    const RS: u64 = REDIST_SIZE;

    fn regions() -> Box<Regions> {
        // SAFETY: all zero is no region.
        unsafe { Box::new_zeroed().assume_init() }
    }

    fn value(count: u64, base: u64, flags: u64, index: u64) -> u64 {
        count << 52 | base | flags << 12 | index
    }

    #[test]
    fn regions_come_in_index_order_with_kvms_errors() {
        let mut g = regions();
        assert_eq!(g.region(0), Err(ENOENT));
        assert_eq!(g.first_base(), None);
        assert_eq!(
            g.set_region(value(0, R, 0, 0), 40, 2),
            Err(EINVAL),
            "no count"
        );
        assert_eq!(g.set_region(value(1, R, 1, 0), 40, 2), Err(EINVAL), "flags");
        assert_eq!(
            g.set_region(value(1, R, 0, 1), 40, 2),
            Err(EINVAL),
            "index 1 first"
        );
        assert_eq!(g.set_region(value(1, R + 0x1000, 0, 0), 40, 2), Err(EINVAL));
        let top = (1 << 40) - 0x2_0000;
        assert_eq!(g.set_region(value(2, top, 0, 0), 40, 2), Err(E2BIG));
        assert_eq!(
            g.set_region(value(1, top, 0, 0), 40, 2),
            Ok(()),
            "ends at the top"
        );
        g.reset();
        assert_eq!(g.set_region(value(2, R, 0, 0), 40, 8), Ok(()));
        assert_eq!(
            g.set_region(value(2, R, 0, 0), 40, 8),
            Err(EINVAL),
            "index 0 again"
        );
        assert_eq!(
            g.set_region(value(1, R + 0x10_0000, 0, 2), 40, 8),
            Err(EINVAL),
            "a gap"
        );
        assert_eq!(
            g.set_region(value(1, R + RS, 0, 1), 40, 8),
            Err(EINVAL),
            "an overlap"
        );
        assert_eq!(
            g.set_region(value(1, R - RS, 0, 1), 40, 8),
            Ok(()),
            "just below"
        );
        assert_eq!(g.set_region(value(3, R + 2 * RS, 0, 2), 40, 8), Ok(()));
        assert_eq!(
            g.set_legacy(0x1000_0000, 40, 8, None),
            Err(EINVAL),
            "no mix"
        );
        assert_eq!(g.region(1), Ok(value(1, R - RS, 0, 1)));
        assert_eq!(g.region(2), Ok(value(3, R + 2 * RS, 0, 2)));
        assert_eq!(
            g.region(0x102),
            Ok(value(3, R + 2 * RS, 0, 2)),
            "a u8 index"
        );
        assert_eq!(g.region(3), Err(ENOENT));
        assert_eq!(g.first_base(), Some(R));
        // 256 regions at most: index 256 reads as 0, never the next.
        g.reset();
        for k in 0..256 {
            let v = value(1, 0x1000_0000 + k * RS, 0, k);
            assert_eq!(g.set_region(v, 40, 1), Ok(()), "{k}");
        }
        assert_eq!(
            g.set_region(value(1, 0x4000_0000, 0, 0x100), 40, 1),
            Err(EINVAL)
        );
    }

    #[test]
    fn a_legacy_region_holds_every_vcpu() {
        let mut g = regions();
        assert_eq!(
            g.set_legacy(D + 0x1_0000 - RS, 40, 2, Some(D)),
            Err(EINVAL),
            "on the distributor"
        );
        assert_eq!(g.set_legacy(R + 0x1000, 40, 2, Some(D)), Err(EINVAL));
        assert_eq!(g.set_legacy((1 << 40) - RS, 40, 2, Some(D)), Err(E2BIG));
        assert_eq!(
            g.set_legacy(1 << 40, 40, 0, None),
            Err(E2BIG),
            "no vCPU yet"
        );
        assert_eq!(g.set_legacy(R, 40, 2, Some(D)), Ok(()));
        assert_eq!(g.set_legacy(R, 40, 2, Some(D)), Err(EEXIST));
        assert_eq!(g.region(0), Ok(R), "index 0, count 0");
        // As in KVM, a region may follow it (and stays unused).
        assert_eq!(g.set_region(value(1, R + 4 * RS, 0, 1), 40, 2), Ok(()));
        assert_eq!(g.locate(R + 2 * RS + 8, 3), Some((2, 8)));
        assert_eq!(g.locate(R + 4 * RS, 3), None, "region 1 holds none");
        assert!(g.is_last(2, 3) && !g.is_last(1, 3));
        assert_eq!(g.check_run(3, D), Ok(()));
    }

    #[test]
    fn redistributors_fill_the_regions_in_order() {
        let mut g = regions();
        // Regions 0 (2 at R), 1 (1 just below R: contiguous with 0's
        // start, not its end), 2 (4 right after region 0).
        assert_eq!(g.set_region(value(2, R, 0, 0), 40, 0), Ok(()));
        assert_eq!(g.set_region(value(1, R - RS, 0, 1), 40, 0), Ok(()));
        assert_eq!(g.set_region(value(4, R + 2 * RS, 0, 2), 40, 0), Ok(()));
        assert_eq!(g.check_run(8, D), Err(ENXIO), "7 redistributors for 8");
        assert_eq!(g.check_run(5, R + RS), Err(EINVAL), "on the distributor");
        assert_eq!(g.check_run(5, D), Ok(()));
        let at = |i: u64| g.locate(R - RS + i, 5);
        assert_eq!(at(0), Some((2, 0)), "region 1");
        assert_eq!(
            at(RS + 0x1_0004),
            Some((0, 0x1_0004)),
            "region 0's SGI frame"
        );
        assert_eq!(at(2 * RS), Some((1, 0)));
        assert_eq!(at(3 * RS), Some((3, 0)), "region 2");
        assert_eq!(at(4 * RS), Some((4, 0)));
        assert_eq!(at(5 * RS), None, "unused: 5 vCPUs");
        // Last: region 0 is full and region 2 continues it; region 1 is
        // full and nothing starts at its end (R... region 0 does!).
        let last: std::vec::Vec<bool> = (0..5).map(|i| g.is_last(i, 5)).collect();
        assert_eq!(last, [false, false, false, false, true]);
        // With 2 vCPUs region 2 is empty: region 0's end is the last.
        assert!(g.is_last(1, 2));
        assert!(!g.is_last(0, 2));
    }
}
