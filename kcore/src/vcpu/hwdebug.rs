//! KServ's own breakpoints and watchpoints for a non-protected vCPU (KVM's
//! `KVM_GUESTDBG_USE_HW`), made safe to load: KServ writes any values
//! (`reg::HOST_DEBUG_REG`), and [`sanitise`] turns them into what the
//! hardware may hold while the guest runs. An entry that could match at
//! EL2, in another security state, on a VMID or `CONTEXTIDR_EL2`, link to a
//! breakpoint the CPU does not have or is reserved is disabled (`E` clear);
//! the others keep only their architected fields. Breakpoints and
//! watchpoints past the CPU's counts are zero.

use kcore_abi::reg::sys::DEBUG_REGS;

/// The breakpoints and watchpoints a CPU has (`ID_AA64DFR0_EL1`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DebugCounts {
    /// Breakpoints (`BRPs + 1`).
    pub brps: usize,
    /// Watchpoints (`WRPs + 1`).
    pub wrps: usize,
    /// Context-aware breakpoints, the highest-numbered ones
    /// (`CTX_CMPs + 1`).
    pub ctx_cmps: usize,
}

impl DebugCounts {
    /// The counts `ID_AA64DFR0_EL1` (`dfr0`) gives, at most 16 each.
    pub const fn from_dfr0(dfr0: u64) -> DebugCounts {
        let brps = field(dfr0, 12);
        let ctx = field(dfr0, 28);
        DebugCounts {
            brps,
            wrps: field(dfr0, 20),
            ctx_cmps: if ctx < brps { ctx } else { brps },
        }
    }

    /// Whether breakpoint `n` exists and can compare a context.
    const fn context_aware(&self, n: usize) -> bool {
        n < self.brps && n + self.ctx_cmps >= self.brps
    }
}

/// A count field of `ID_AA64DFR0_EL1` (the count less one).
const fn field(dfr0: u64, shift: u32) -> usize {
    ((dfr0 >> shift) & 0xF) as usize + 1
}

/// `E`: enabled.
const E: u64 = 1;
/// `PMC` (both): the privilege levels (EL1 `01`, EL0 `10`, both `11`).
const PMC: u64 = 3 << 1;
/// `HMC` (both): match at EL2 too.
const HMC: u64 = 1 << 13;
/// `SSC` (both): security state control; `00` both, `01` Non-secure.
const SSC_SHIFT: u32 = 14;
/// `LBN` (both): the linked breakpoint.
const LBN_SHIFT: u32 = 16;
/// `DBGBCR.BAS`.
const BCR_BAS: u64 = 0xF << 5;
/// `DBGBCR.BT`: `0000` unlinked address, `0001` linked address, `0010`
/// unlinked and `0011` linked `CONTEXTIDR_EL1` match; the other types
/// compare VMIDs or `CONTEXTIDR_EL2`, or are reserved in AArch64.
const BCR_BT_SHIFT: u32 = 20;
/// `DBGWCR.LSC`: loads, stores (`00` reserved).
const WCR_LSC: u64 = 3 << 3;
/// `DBGWCR.BAS`.
const WCR_BAS: u64 = 0xFF << 5;
/// `DBGWCR.WT`: linked to a context breakpoint.
const WCR_WT: u64 = 1 << 20;
/// `DBGWCR.MASK`: address mask (`1`, `2` reserved).
const WCR_MASK_SHIFT: u32 = 24;

/// The fields both control registers share, checked: `HMC` clear, `SSC`
/// `00` or `01`, `PMC` not `00`.
const fn common_ok(c: u64) -> bool {
    c & HMC == 0 && (c >> SSC_SHIFT) & 3 <= 1 && c & PMC != 0
}

/// `LBN`, when the register links.
const fn lbn(c: u64) -> usize {
    ((c >> LBN_SHIFT) & 0xF) as usize
}

/// `DBGBCR<n>_EL1` as loadable: disabled unless safe.
pub const fn sanitise_bcr(n: usize, c: u64, k: &DebugCounts) -> u64 {
    let bt = (c >> BCR_BT_SHIFT) & 0xF;
    let ok = common_ok(c)
        && match bt {
            0 => true,
            1 => k.context_aware(lbn(c)),
            2 => k.context_aware(n),
            3 => k.context_aware(n) && lbn(c) < k.brps,
            _ => false,
        };
    let keep = E | PMC | BCR_BAS | 3 << SSC_SHIFT | 0xF << LBN_SHIFT | 0xF << BCR_BT_SHIFT;
    if ok { c & keep } else { c & keep & !E }
}

/// `DBGWCR<n>_EL1` as loadable: disabled unless safe.
pub const fn sanitise_wcr(c: u64, k: &DebugCounts) -> u64 {
    let mask = (c >> WCR_MASK_SHIFT) & 0x1F;
    let ok = common_ok(c)
        && c & WCR_LSC != 0
        && mask != 1
        && mask != 2
        && (c & WCR_WT == 0 || k.context_aware(lbn(c)));
    let keep = E
        | PMC
        | WCR_LSC
        | WCR_BAS
        | 3 << SSC_SHIFT
        | 0xF << LBN_SHIFT
        | WCR_WT
        | 0x1F << WCR_MASK_SHIFT;
    if ok { c & keep } else { c & keep & !E }
}

/// A `DBGBVR`/`DBGWVR` value: bits `[1:0]` clear (RES0), the top bits the
/// sign extension of bit 52, as the architecture requires of them.
pub const fn sanitise_vr(v: u64) -> u64 {
    (((v << 11) as i64 >> 11) as u64) & !3
}

/// KServ's registers `regs` (in `reg::sys::debug`'s order) as the hardware
/// may hold them while the guest runs on a CPU with counts `k`.
pub fn sanitise(regs: &[u64; DEBUG_REGS], k: &DebugCounts) -> [u64; DEBUG_REGS] {
    let mut out = [0; DEBUG_REGS];
    for n in 0..DEBUG_REGS / 4 {
        if n < k.brps {
            out[4 * n] = sanitise_vr(regs[4 * n]);
            out[4 * n + 1] = sanitise_bcr(n, regs[4 * n + 1], k);
        }
        if n < k.wrps {
            out[4 * n + 2] = sanitise_vr(regs[4 * n + 2]);
            out[4 * n + 3] = sanitise_wcr(regs[4 * n + 3], k);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// QEMU's cortex-a72: 6 breakpoints (2 context-aware), 4 watchpoints.
    const A72: DebugCounts = DebugCounts::from_dfr0(0x1030_5106);

    #[test]
    fn counts_come_from_id_aa64dfr0() {
        assert_eq!(
            A72,
            DebugCounts {
                brps: 6,
                wrps: 4,
                ctx_cmps: 2
            }
        );
        assert!(!A72.context_aware(3));
        assert!(A72.context_aware(4) && A72.context_aware(5));
        assert!(!A72.context_aware(6), "past the count");
        // CTX_CMPs above BRPs (not allowed) is clamped.
        assert_eq!(DebugCounts::from_dfr0(0xF000_0000).ctx_cmps, 1);
    }

    #[test]
    fn an_el1_address_breakpoint_loads_as_written() {
        // What QEMU's gdbstub writes: E, PMC=EL1|EL0, BAS=0xF, unlinked.
        let bcr = E | PMC | BCR_BAS;
        assert_eq!(sanitise_bcr(0, bcr, &A72), bcr);
        assert_eq!(sanitise_bcr(0, bcr | 1 << SSC_SHIFT, &A72) & E, E);
        // Unknown bits are dropped, the breakpoint stays.
        assert_eq!(sanitise_bcr(0, bcr | 1 << 3 | 1 << 30, &A72), bcr);
    }

    #[test]
    fn breakpoints_that_could_reach_el2_or_another_state_are_disabled() {
        let bcr = E | PMC | BCR_BAS;
        assert_eq!(sanitise_bcr(0, bcr | HMC, &A72) & E, 0, "HMC");
        for ssc in [2, 3] {
            let c = bcr | ssc << SSC_SHIFT;
            assert_eq!(sanitise_bcr(0, c, &A72) & E, 0, "SSC {ssc}");
        }
        assert_eq!(sanitise_bcr(0, bcr & !PMC, &A72) & E, 0, "PMC 00");
        // VMID and CONTEXTIDR_EL2 types, AArch32 mismatch: never.
        for bt in 4..16 {
            let c = bcr | bt << BCR_BT_SHIFT;
            assert_eq!(sanitise_bcr(5, c, &A72) & E, 0, "BT {bt}");
        }
        // A CONTEXTIDR_EL1 match only on a context-aware breakpoint.
        let ctx = bcr | 2 << BCR_BT_SHIFT;
        assert_eq!(sanitise_bcr(5, ctx, &A72) & E, E);
        assert_eq!(sanitise_bcr(3, ctx, &A72) & E, 0);
        // Linked address match: LBN must name a context-aware breakpoint.
        let linked = |lbn: u64| bcr | 1 << BCR_BT_SHIFT | lbn << LBN_SHIFT;
        assert_eq!(sanitise_bcr(0, linked(4), &A72) & E, E);
        assert_eq!(sanitise_bcr(0, linked(3), &A72) & E, 0);
        assert_eq!(sanitise_bcr(0, linked(9), &A72) & E, 0, "past BRPs");
        // Linked context match: LBN must exist.
        let lctx = |lbn: u64| bcr | 3 << BCR_BT_SHIFT | lbn << LBN_SHIFT;
        assert_eq!(sanitise_bcr(5, lctx(0), &A72) & E, E);
        assert_eq!(sanitise_bcr(5, lctx(6), &A72) & E, 0);
    }

    #[test]
    fn watchpoints_are_checked_like_breakpoints() {
        // A 8-byte write watchpoint at EL1/EL0.
        let wcr = E | PMC | 2 << 3 | 0xFF << 5;
        assert_eq!(sanitise_wcr(wcr, &A72), wcr);
        assert_eq!(sanitise_wcr(wcr | HMC, &A72) & E, 0, "HMC");
        assert_eq!(sanitise_wcr(wcr | 2 << SSC_SHIFT, &A72) & E, 0, "secure");
        assert_eq!(sanitise_wcr(wcr & !PMC, &A72) & E, 0, "PMC 00");
        assert_eq!(sanitise_wcr(wcr & !WCR_LSC, &A72) & E, 0, "LSC 00");
        for (mask, on) in [(0, true), (1, false), (2, false), (3, true), (31, true)] {
            let c = wcr | mask << WCR_MASK_SHIFT;
            assert_eq!(sanitise_wcr(c, &A72) & E != 0, on, "MASK {mask}");
        }
        let linked = |lbn: u64| wcr | WCR_WT | lbn << LBN_SHIFT;
        assert_eq!(sanitise_wcr(linked(5), &A72) & E, E);
        assert_eq!(sanitise_wcr(linked(0), &A72) & E, 0, "not context-aware");
        assert_eq!(sanitise_wcr(linked(6), &A72) & E, 0, "past BRPs");
    }

    #[test]
    fn values_and_counts() {
        assert_eq!(sanitise_vr(0xffff_8000_1234_5677), 0xffff_8000_1234_5674);
        assert_eq!(sanitise_vr(0x0010_0000_0000_0000), 0xfff0_0000_0000_0000);
        assert_eq!(sanitise_vr(0x0fef_0000_0000_1000), 0x000f_0000_0000_1000);
        let mut regs = [0; DEBUG_REGS];
        let bcr = E | PMC | BCR_BAS;
        let wcr = E | PMC | WCR_LSC | WCR_BAS;
        for n in 0..16 {
            regs[4 * n] = 0x1000 * n as u64;
            regs[4 * n + 1] = bcr;
            regs[4 * n + 2] = 0x2000 * n as u64;
            regs[4 * n + 3] = wcr;
        }
        let out = sanitise(&regs, &A72);
        for n in 0..16 {
            let b = if n < 6 {
                (0x1000 * n as u64, bcr)
            } else {
                (0, 0)
            };
            let w = if n < 4 {
                (0x2000 * n as u64, wcr)
            } else {
                (0, 0)
            };
            assert_eq!((out[4 * n], out[4 * n + 1]), b, "breakpoint {n}");
            assert_eq!((out[4 * n + 2], out[4 * n + 3]), w, "watchpoint {n}");
        }
    }
}
