//! Where KCore's pool lies and how it is cut up: the arithmetic of
//! `boot_kserv`, kept apart from the hardware so that it is tested on the host.
//!
//! The pool is the top of a free stretch of a RAM bank, cut down to a 2 MiB boundary and sized in whole 2 MiB blocks. It holds, in order, the space for
//! KServ's stage-2 root ([`S2_ROOT_SPACE`]), the ownership table (8 bytes a
//! page of RAM, in whole pages), the pages KServ's stage-2 tables come from,
//! and the secondary CPUs' EL2 stacks ([`SECONDARY_STACK`] each). [`place`]
//! computes that layout and the space kept for KServ's device tree. It
//! steers the pool below whatever is in use at the bank's top: the pool is
//! the highest 2 MiB-aligned gap of the bank that holds it and overlaps
//! neither KCore and KServ's kernel, nor KServ's device tree, nor a reserved
//! region (EDK2 keeps its runtime regions at the top of RAM); with no such
//! gap, or on overflow, it refuses.
//! [`pool_banks`] says which banks to try: the highest bank that starts at or
//! above 1 GiB first, when there is one, since on the Raspberry Pi 4 the
//! memory below 1 GiB is what its 30-bit DMA masters, the kernel's CMA pool
//! and the firmware need (Xen keeps dom0's low bank for the same reason);
//! then the bank KCore runs in.

use core::fmt;

use kcore::addr::{MemRange, PAGE_SIZE};

/// Space at the start of the pool for a stage-2 root (up to 16 concatenated
/// tables).
pub const S2_ROOT_SPACE: u64 = 16 * PAGE_SIZE;
/// KServ's stage-2 tables beyond one per 2 MiB of RAM (upper levels, device
/// mappings).
pub const HOST_S2_HEADROOM: u64 = 256 * PAGE_SIZE;
/// EL2 stack per secondary CPU.
pub const SECONDARY_STACK: u64 = 16 * 1024;
/// Room kept for KServ's device tree beyond the loader's: KCore's edits add
/// nodes and properties.
pub const DT_SLACK: u64 = 64 * 1024;
/// The pool's alignment and size granule.
const BLOCK: u64 = 2 << 20;

/// What [`place`] needs to know.
#[derive(Clone, Copy, Debug)]
pub struct PoolRequest<'a> {
    /// The RAM bank the pool is cut from (its top): one of [`pool_banks`].
    pub bank: MemRange,
    /// Entries of the ownership table: one per page of RAM.
    pub owner_entries: usize,
    /// CPUs that get a secondary stack.
    pub cpus: usize,
    /// Where KCore's image starts; KServ's kernel follows it.
    pub kcore_start: u64,
    /// The end of KServ's kernel footprint.
    pub kernel_end: u64,
    /// Where KServ's device tree goes.
    pub dt_base: u64,
    /// Size of the loader's device tree.
    pub dt_len: u64,
    /// Reserved memory of the device tree.
    pub reserved: &'a [MemRange],
}

/// KCore's pool and its parts, all inside [`PoolLayout::pool`] except
/// [`PoolLayout::dt`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolLayout {
    /// The whole pool, 2 MiB aligned at the top of the bank.
    pub pool: MemRange,
    /// Space for KServ's stage-2 root, at the pool's start.
    pub s2_root: MemRange,
    /// The ownership table's storage, right after the root space.
    pub owners: MemRange,
    /// The pages KServ's stage-2 tables beyond the root come from.
    pub tables: MemRange,
    /// Where the secondary CPUs' stacks start: `cpus` stacks of
    /// [`SECONDARY_STACK`] up to the pool's end.
    pub stacks: u64,
    /// The space KServ's device tree may fill (outside the pool).
    pub dt: MemRange,
}

/// Why [`place`] refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolError {
    /// A size or an end address does not fit in a `u64`.
    Overflow,
    /// The pool does not fit between the bank's start and its last 2 MiB
    /// boundary.
    TooLittleRam {
        /// The bank.
        bank: MemRange,
        /// Bytes the pool needs.
        needed: u64,
    },
    /// No gap of the bank below its highest obstacle holds the pool.
    NoGap {
        /// The bank.
        bank: MemRange,
        /// Bytes the pool needs.
        needed: u64,
        /// The first region in use (KCore and KServ's kernel, KServ's device
        /// tree or a reserved region) the pool had to avoid at the bank's
        /// top.
        with: MemRange,
    },
}

impl fmt::Display for PoolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PoolError::Overflow => f.write_str("KCore's pool: a size overflows"),
            PoolError::TooLittleRam { bank, needed } => write!(
                f,
                "RAM bank {bank:?} too small for KCore's pool ({needed:#x} bytes)"
            ),
            PoolError::NoGap { bank, needed, with } => write!(
                f,
                "not enough RAM: no gap of {needed:#x} bytes for KCore's pool in RAM bank {bank:?} \
                 clear of KCore, KServ's kernel and device tree and reserved memory (the first \
                 in the way: {with:?})"
            ),
        }
    }
}

/// `v` rounded up to a multiple of the power of two `a`, `None` on overflow.
const fn align_up(v: u64, a: u64) -> Option<u64> {
    match v.checked_add(a - 1) {
        Some(x) => Some(x & !(a - 1)),
        None => None,
    }
}

/// Where DMA-limited devices of the Raspberry Pi 4 reach: KCore's pool
/// goes above it when the machine has RAM there.
pub const LOW_DMA_LIMIT: u64 = 1 << 30;

/// The banks to try for KCore's pool, in order: the highest bank of `banks`
/// that starts at or above [`LOW_DMA_LIMIT`], if any, then `kcore_bank` (the
/// bank KCore runs in), without repeating it.
pub fn pool_banks(banks: &[MemRange], kcore_bank: MemRange) -> [Option<MemRange>; 2] {
    let high = banks
        .iter()
        .filter(|b| b.base() >= LOW_DMA_LIMIT)
        .max_by_key(|b| b.base())
        .copied()
        .filter(|&b| b != kcore_bank);
    match high {
        Some(h) => [Some(h), Some(kcore_bank)],
        None => [Some(kcore_bank), None],
    }
}

/// The highest `needed`-byte range of `req.bank` that ends on a 2 MiB
/// boundary and overlaps neither KCore and KServ's kernel, nor KServ's
/// device tree `dt`, nor a reserved region: tried from the bank's last 2 MiB
/// boundary down, each obstacle moving the pool's end below it (EDK2 puts
/// its runtime regions at the top of RAM).
fn highest_gap(req: &PoolRequest<'_>, needed: u64, dt: MemRange) -> Result<MemRange, PoolError> {
    let kernel = MemRange::from_bounds(req.kcore_start, req.kernel_end);
    let obstacles = || {
        kernel
            .into_iter()
            .chain(core::iter::once(dt))
            .chain(req.reserved.iter().copied())
    };
    let mut end = req.bank.end() & !(BLOCK - 1);
    let mut first_obstacle = None;
    loop {
        let Some(pool) = end
            .checked_sub(needed)
            .and_then(|base| MemRange::from_bounds(base, end))
            .filter(|p| req.bank.contains_range(p))
        else {
            return Err(match first_obstacle {
                None => PoolError::TooLittleRam {
                    bank: req.bank,
                    needed,
                },
                Some(with) => PoolError::NoGap {
                    bank: req.bank,
                    needed,
                    with,
                },
            });
        };
        // The lowest obstacle in the way: everything above it is too
        // little room (or the pool would have fit there).
        match obstacles()
            .filter(|o| o.overlaps(&pool))
            .min_by_key(|o| o.base())
        {
            None => return Ok(pool),
            Some(o) => {
                first_obstacle.get_or_insert(o);
                end = o.base() & !(BLOCK - 1);
            }
        }
    }
}

/// Places KCore's pool at the top of `req.bank` and cuts it up (see the
/// module documentation).
pub fn place(req: &PoolRequest<'_>) -> Result<PoolLayout, PoolError> {
    let entries = req.owner_entries as u64;
    let owner_bytes = entries
        .checked_mul(8)
        .and_then(|b| align_up(b, PAGE_SIZE))
        .ok_or(PoolError::Overflow)?;
    let stacks_bytes = (req.cpus as u64)
        .checked_mul(SECONDARY_STACK)
        .ok_or(PoolError::Overflow)?;
    // KServ's stage 2 needs at most one last-level table per 2 MiB of RAM
    // (once donations split every block into pages), plus the upper levels.
    let host_s2_bytes = (entries / 512)
        .checked_mul(PAGE_SIZE)
        .and_then(|b| b.checked_add(HOST_S2_HEADROOM))
        .ok_or(PoolError::Overflow)?;
    let needed = S2_ROOT_SPACE
        .checked_add(owner_bytes)
        .and_then(|s| s.checked_add(host_s2_bytes))
        .and_then(|s| s.checked_add(stacks_bytes))
        .and_then(|s| align_up(s, BLOCK))
        .ok_or(PoolError::Overflow)?;
    let dt_end = req
        .dt_base
        .checked_add(req.dt_len)
        .and_then(|e| e.checked_add(DT_SLACK))
        .ok_or(PoolError::Overflow)?;
    let dt = MemRange::from_bounds(req.dt_base, dt_end).ok_or(PoolError::Overflow)?;
    if owner_bytes == 0 {
        return Err(PoolError::TooLittleRam {
            bank: req.bank,
            needed,
        });
    }
    let pool = highest_gap(req, needed, dt)?;
    // The pool is at least the sum of the parts, so every cut below lies in
    // it and the table pages are never empty (HOST_S2_HEADROOM).
    let owners_base = pool.base() + S2_ROOT_SPACE;
    let tables_base = owners_base + owner_bytes;
    let stacks_base = pool.end() - stacks_bytes;
    let (Some(s2_root), Some(owners), Some(tables)) = (
        MemRange::new(pool.base(), S2_ROOT_SPACE),
        MemRange::new(owners_base, owner_bytes),
        MemRange::from_bounds(tables_base, stacks_base),
    ) else {
        return Err(PoolError::Overflow);
    };
    Ok(PoolLayout {
        pool,
        s2_root,
        owners,
        tables,
        stacks: stacks_base,
        dt,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;

    const GIB: u64 = 1 << 30;
    const MIB: u64 = 1 << 20;

    fn range(base: u64, size: u64) -> MemRange {
        MemRange::new(base, size).unwrap()
    }

    /// 1 GiB of RAM at 1 GiB, KCore and the kernel in its first 64 MiB, the
    /// device tree after them, 64 CPUs: QEMU's `virt` shape.
    fn request(reserved: &[MemRange]) -> PoolRequest<'_> {
        PoolRequest {
            bank: range(GIB, GIB),
            owner_entries: (GIB / PAGE_SIZE) as usize,
            cpus: 64,
            kcore_start: GIB,
            kernel_end: GIB + 60 * MIB,
            dt_base: GIB + 64 * MIB,
            dt_len: 0x10_0000,
            reserved,
        }
    }

    #[test]
    fn pool_prefers_the_highest_bank_above_1_gib() {
        // Pi 4 with 4 GB: KCore in the low bank, RAM with holes above.
        let low = range(0, 0x3b40_0000);
        let mid = range(GIB, 0xbc00_0000);
        let top = range(0x1_0000_0000, GIB);
        assert_eq!(pool_banks(&[low, mid, top], low), [Some(top), Some(low)]);
        assert_eq!(pool_banks(&[top, low, mid], low), [Some(top), Some(low)]);
        // Only RAM below 1 GiB (QEMU raspi4b): KCore's bank.
        assert_eq!(pool_banks(&[low], low), [Some(low), None]);
        // QEMU virt: KCore's bank is the highest one, tried once.
        let virt = range(GIB, GIB);
        assert_eq!(pool_banks(&[virt], virt), [Some(virt), None]);
        // A bank straddling 1 GiB does not count as high.
        let straddle = range(GIB / 2, GIB);
        assert_eq!(pool_banks(&[straddle], low), [Some(low), None]);
        // The pool lands in the high bank, away from KCore and the kernel.
        let mut req = request(&[]);
        req.bank = top;
        req.kcore_start = 0x20_0000;
        req.kernel_end = 0x400_0000;
        req.dt_base = 0x400_0000;
        let l = place(&req).unwrap();
        assert!(top.contains_range(&l.pool) && l.pool.end() == top.end());
    }

    #[test]
    fn pool_sits_at_the_top_of_the_bank_in_order() {
        let l = place(&request(&[])).unwrap();
        // 64 KiB root + 2 MiB ownership table + 3 MiB of tables + 1 MiB of
        // stacks, rounded up to 8 MiB.
        assert_eq!(l.pool, range(2 * GIB - 8 * MIB, 8 * MIB));
        assert_eq!(l.s2_root, range(l.pool.base(), S2_ROOT_SPACE));
        assert_eq!(l.owners, range(l.s2_root.end(), 2 * MIB));
        assert_eq!(l.tables.base(), l.owners.end());
        assert_eq!(l.tables.end(), l.stacks);
        assert_eq!(l.stacks, l.pool.end() - 64 * SECONDARY_STACK);
        assert!(l.tables.size() >= 512 * PAGE_SIZE + HOST_S2_HEADROOM);
        assert_eq!(l.dt, range(GIB + 64 * MIB, 0x10_0000 + DT_SLACK));
        for part in [l.s2_root, l.owners, l.tables] {
            assert!(l.pool.contains_range(&part));
        }
    }

    #[test]
    fn pool_ends_on_the_last_2_mib_boundary_of_the_bank() {
        let mut req = request(&[]);
        req.bank = range(GIB, GIB - 0x1000);
        let l = place(&req).unwrap();
        assert_eq!(l.pool.end(), 2 * GIB - 2 * MIB);
        assert!(l.pool.is_aligned(2 * MIB));
        // A small bank needs a small pool.
        req.bank = range(GIB, 64 * MIB);
        req.owner_entries = (64 * MIB / PAGE_SIZE) as usize;
        req.kernel_end = GIB + 20 * MIB;
        req.dt_base = GIB + 22 * MIB;
        let l = place(&req).unwrap();
        assert_eq!(l.pool, range(GIB + 60 * MIB, 4 * MIB));
        assert_eq!(l.owners.size(), 128 * 1024);
    }

    #[test]
    fn refuses_too_little_ram() {
        let mut req = request(&[]);
        // The pool would start below the bank.
        req.bank = range(GIB, 4 * MIB);
        req.kernel_end = GIB + MIB;
        req.dt_base = GIB + 2 * MIB;
        req.dt_len = 0;
        assert_eq!(
            place(&req),
            Err(PoolError::TooLittleRam {
                bank: req.bank,
                needed: 8 * MIB
            })
        );
        // The pool would start below address 0.
        req.bank = range(0, 4 * MIB);
        assert!(matches!(place(&req), Err(PoolError::TooLittleRam { .. })));
        // The bank reaches no 2 MiB boundary.
        req.owner_entries = 1;
        req.bank = range(GIB + 0x1000, MIB);
        assert!(matches!(place(&req), Err(PoolError::TooLittleRam { .. })));
        // No RAM to own.
        req.bank = range(GIB, GIB);
        req.owner_entries = 0;
        assert!(matches!(place(&req), Err(PoolError::TooLittleRam { .. })));
    }

    #[test]
    fn steers_below_the_kernel_the_device_tree_and_reserved_memory() {
        // EDK2's runtime regions at the top of RAM: the pool ends on the
        // 2 MiB boundary below the lowest of them that is in the way.
        let reserved = [
            range(2 * GIB - MIB, 0x1000),
            range(2 * GIB - 5 * MIB - 0x3000, 0x2000),
            range(GIB + 100 * MIB, MIB),
        ];
        let l = place(&request(&reserved)).unwrap();
        assert_eq!(l.pool, range(2 * GIB - 14 * MIB, 8 * MIB));
        // Reserved memory elsewhere is no obstacle; one right below the
        // pool neither.
        let below = [range(2 * GIB - 8 * MIB - 0x1000, 0x1000)];
        assert_eq!(
            place(&request(&below)).unwrap().pool,
            range(2 * GIB - 8 * MIB, 8 * MIB)
        );
        // The kernel or the device tree high in the bank: the pool goes
        // below them, or clear of the bank's top (one byte is enough).
        let mut req = request(&[]);
        req.kcore_start = 2 * GIB - 40 * MIB;
        req.kernel_end = 2 * GIB - 30 * MIB;
        req.dt_base = 2 * GIB - 30 * MIB;
        assert_eq!(place(&req).unwrap().pool, range(2 * GIB - 8 * MIB, 8 * MIB));
        req.dt_base = 2 * GIB - 8 * MIB - DT_SLACK;
        req.dt_len = 1;
        assert_eq!(
            place(&req).unwrap().pool,
            range(2 * GIB - 18 * MIB, 8 * MIB)
        );
        req.dt_len = 0;
        assert_eq!(place(&req).unwrap().pool, range(2 * GIB - 8 * MIB, 8 * MIB));
        // Every gap the pool finds overlaps nothing.
        let l = place(&request(&reserved)).unwrap();
        assert!(reserved.iter().all(|r| !r.overlaps(&l.pool)));
    }

    #[test]
    fn refuses_when_no_gap_holds_the_pool() {
        // Reserved memory every 6 MiB: no 8 MiB gap above the kernel.
        let reserved: alloc::vec::Vec<MemRange> = (0..160)
            .map(|i| range(2 * GIB - (i * 6 + 1) * MIB, 0x1000))
            .collect();
        let mut req = request(&reserved);
        assert_eq!(
            place(&req),
            Err(PoolError::NoGap {
                bank: req.bank,
                needed: 8 * MIB,
                with: range(2 * GIB - 7 * MIB, 0x1000),
            })
        );
        // The kernel at the top of the bank, nothing free below it.
        req.reserved = &[];
        req.kcore_start = GIB;
        req.kernel_end = 2 * GIB - MIB;
        req.dt_base = 2 * GIB - MIB;
        req.dt_len = 0;
        let e = place(&req).unwrap_err();
        assert!(matches!(e, PoolError::NoGap { with, .. } if with.base() == GIB));
        assert!(format!("{e}").contains("no gap"));
    }

    #[test]
    fn refuses_arithmetic_overflow() {
        let mut req = request(&[]);
        req.owner_entries = usize::MAX;
        assert_eq!(place(&req), Err(PoolError::Overflow));
        let mut req = request(&[]);
        req.cpus = usize::MAX;
        assert_eq!(place(&req), Err(PoolError::Overflow));
        let mut req = request(&[]);
        req.owner_entries = (u64::MAX / 8 - 0x100) as usize;
        assert_eq!(place(&req), Err(PoolError::Overflow));
        let mut req = request(&[]);
        req.dt_base = u64::MAX - 0x1000;
        assert_eq!(place(&req), Err(PoolError::Overflow));
    }

    #[test]
    fn every_error_has_a_message() {
        let r = range(GIB, MIB);
        for e in [
            PoolError::Overflow,
            PoolError::TooLittleRam {
                bank: r,
                needed: MIB,
            },
            PoolError::NoGap {
                bank: r,
                needed: MIB,
                with: r,
            },
        ] {
            assert!(format!("{e}").len() > 20, "{e:?}");
        }
    }
}
