//! KServ's `SMC`s that are not PSCI: a deliberate allow-list that KCore
//! forwards to the firmware below it, and a refusal for everything else.
//!
//! KServ's `SMC`s trap to KCore (`HCR_EL2.TSC`); PSCI is KCore's own
//! ([`crate::psci`]). Of the rest, only calls that change no state KCore or
//! a VM depends on and name no memory reach the firmware, each with its
//! arguments rebuilt by KCore (never KServ's other registers):
//!
//! | call | forwarded as |
//! |---|---|
//! | `SMCCC_VERSION` | is |
//! | `SMCCC_ARCH_FEATURES` | only for `ARCH_WORKAROUND_1/2/3`; any other id `NOT_SUPPORTED` |
//! | `SMCCC_ARCH_WORKAROUND_1`, `_3` | is (no arguments) |
//! | `SMCCC_ARCH_WORKAROUND_2` | only `x1` ≠ 0 (mitigation on); turning it off is `NOT_SUPPORTED`, since the same CPU runs guests |
//! | `TRNG_VERSION`, `TRNG_GET_UUID` | is |
//! | `TRNG_FEATURES` | only for a TRNG function id |
//! | `TRNG_RND` (32 and 64) | `x1` (bits wanted) only; the firmware checks its range |
//!
//! SDEI (`0x8400_0020..=0x8400_003F`, `0xC400_0020..=0xC400_003F`) is never
//! forwarded: TF-A delivers SDEI events to the non-secure EL2 when
//! `SCR_EL3.HCE` is set, so a forwarded `SDEI_EVENT_REGISTER` would have the
//! firmware enter a KServ-chosen address at EL2. Everything else, and every
//! call on a platform with no firmware ([`crate::psci::Backend::SpinTable`]),
//! is `NOT_SUPPORTED`. Only `TRNG_GET_UUID` and `TRNG_RND` return more than
//! `x0`; for the others KServ's `x1..x3` are left as they were, so nothing
//! the firmware leaves in them reaches KServ.
//!
//! None of it reads or changes KCore's state, so the EL2 entry code answers
//! these `SMC`s ([`stateless`], then [`handle`]) before it takes KCore's
//! lock: a slow firmware call (a TRNG draw) stalls no other CPU's
//! hypercalls. The firmware serialises what it must itself, as it does for
//! any OS calling it from several CPUs.

use crate::exception::{Esr, TrapState, ec};
use crate::hw::Firmware;
use kcore_abi::smccc;

/// The function id of KServ's trap `trap` (its `x0` being `x0`) when it
/// is an `SMC` KCore answers without its state: an `SMC #0` whose id is a
/// 32-bit SMCCC id and not PSCI's (`SMC`s with another immediate or a
/// wider id are refused by [`crate::host`], PSCI is KCore's own).
pub fn stateless(trap: &TrapState, x0: u64) -> Option<u32> {
    let esr = Esr(trap.esr);
    let fid = u32::try_from(x0).ok()?;
    (esr.ec() == ec::SMC64 && esr.imm16() == 0 && !kcore_abi::psci::is_psci(fid)).then_some(fid)
}

/// What KCore does with one of KServ's non-PSCI `SMC`s.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Call the firmware with these arguments; `results` registers of its
    /// answer (1: `x0` only, 4: `x0..x3`) go back to KServ.
    Forward {
        /// `x1..x3` as KCore passes them.
        args: [u64; 3],
        /// How many result registers KServ receives.
        results: usize,
    },
    /// Answer `NOT_SUPPORTED` without calling the firmware.
    Refuse,
}

/// Whether `fid` is one of the TRNG interface's calls.
const fn is_trng(fid: u32) -> bool {
    matches!(
        fid,
        smccc::TRNG_VERSION
            | smccc::TRNG_FEATURES
            | smccc::TRNG_GET_UUID
            | smccc::TRNG_RND32
            | smccc::TRNG_RND64
    )
}

/// The policy for `SMC` `fid` with KServ's `x1..x3`.
pub fn decide(fid: u32, args: [u64; 3]) -> Decision {
    use Decision::{Forward, Refuse};
    let x1 = smccc::arg(fid, args[0]);
    let just = |results| Forward {
        args: [0; 3],
        results,
    };
    if smccc::is_sdei(fid) {
        return Refuse;
    }
    match fid {
        smccc::SMCCC_VERSION | smccc::ARCH_WORKAROUND_1 | smccc::ARCH_WORKAROUND_3 => just(1),
        smccc::SMCCC_ARCH_FEATURES => match x1 as u32 {
            q
            @ (smccc::ARCH_WORKAROUND_1 | smccc::ARCH_WORKAROUND_2 | smccc::ARCH_WORKAROUND_3) => {
                Forward {
                    args: [u64::from(q), 0, 0],
                    results: 1,
                }
            }
            _ => Refuse,
        },
        smccc::ARCH_WORKAROUND_2 if x1 != 0 => Forward {
            args: [1, 0, 0],
            results: 1,
        },
        smccc::TRNG_VERSION => just(1),
        smccc::TRNG_GET_UUID => just(4),
        smccc::TRNG_FEATURES if is_trng(x1 as u32) => Forward {
            args: [x1, 0, 0],
            results: 1,
        },
        smccc::TRNG_RND32 | smccc::TRNG_RND64 => Forward {
            args: [x1, 0, 0],
            results: 4,
        },
        _ => Refuse,
    }
}

/// Handles KServ's non-PSCI `SMC` `fid` on a platform with firmware
/// (`with_firmware`): the answer written into `regs[0..4]` as the policy
/// says.
pub fn handle(fid: u32, regs: &mut [u64], with_firmware: bool, fw: &mut impl Firmware) {
    let args = [
        regs.get(1).copied().unwrap_or(0),
        regs.get(2).copied().unwrap_or(0),
        regs.get(3).copied().unwrap_or(0),
    ];
    match decide(fid, args) {
        Decision::Forward { args, results } if with_firmware => {
            let out = fw.smc_regs(fid, args);
            for (r, v) in regs.iter_mut().zip(out).take(results) {
                *r = v;
            }
        }
        _ => {
            if let Some(x0) = regs.first_mut() {
                *x0 = smccc::RET_NOT_SUPPORTED;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Firmware that records each call and answers `x0..x3` = 1..4.
    #[derive(Default)]
    struct Fw(Vec<(u32, [u64; 3])>);
    impl Firmware for Fw {
        fn smc(&mut self, fid: u32, args: [u64; 3]) -> u64 {
            self.smc_regs(fid, args)[0]
        }
        fn smc_regs(&mut self, fid: u32, args: [u64; 3]) -> [u64; 4] {
            self.0.push((fid, args));
            [1, 2, 3, 4]
        }
    }

    extern crate std;
    use std::vec::Vec;

    fn run(fid: u32, x: [u64; 3], firmware: bool) -> ([u64; 4], Vec<(u32, [u64; 3])>) {
        let mut fw = Fw::default();
        let mut regs = [u64::from(fid), x[0], x[1], x[2]];
        handle(fid, &mut regs, firmware, &mut fw);
        (regs, fw.0)
    }

    const NS: u64 = smccc::RET_NOT_SUPPORTED;

    #[test]
    fn the_allow_list_reaches_the_firmware_with_kcores_arguments() {
        let junk = [0xdead, 0xbeef, 0xf00d];
        for fid in [
            smccc::SMCCC_VERSION,
            smccc::ARCH_WORKAROUND_1,
            smccc::ARCH_WORKAROUND_3,
            smccc::TRNG_VERSION,
        ] {
            let (regs, calls) = run(fid, junk, true);
            assert_eq!(calls, [(fid, [0; 3])], "{fid:#x}");
            assert_eq!(regs, [1, 0xdead, 0xbeef, 0xf00d], "x0 only: {fid:#x}");
        }
        let (regs, calls) = run(smccc::TRNG_GET_UUID, junk, true);
        assert_eq!(calls, [(smccc::TRNG_GET_UUID, [0; 3])]);
        assert_eq!(regs, [1, 2, 3, 4]);
        // TRNG_RND: the bit count only, narrowed for SMC32.
        let (regs, calls) = run(smccc::TRNG_RND32, [1 << 32 | 96, 7, 7], true);
        assert_eq!(calls, [(smccc::TRNG_RND32, [96, 0, 0])]);
        assert_eq!(regs, [1, 2, 3, 4]);
        let (_, calls) = run(smccc::TRNG_RND64, [192, 7, 7], true);
        assert_eq!(calls, [(smccc::TRNG_RND64, [192, 0, 0])]);
        for q in [
            smccc::ARCH_WORKAROUND_1,
            smccc::ARCH_WORKAROUND_2,
            smccc::ARCH_WORKAROUND_3,
        ] {
            let (_, calls) = run(smccc::SMCCC_ARCH_FEATURES, [u64::from(q), 9, 9], true);
            assert_eq!(calls, [(smccc::SMCCC_ARCH_FEATURES, [u64::from(q), 0, 0])]);
        }
        // SMC32 calls see only the low half of their arguments.
        let (_, calls) = run(smccc::TRNG_FEATURES, [1 << 32 | 0xC400_0053, 0, 0], true);
        assert_eq!(calls, [(smccc::TRNG_FEATURES, [0xC400_0053, 0, 0])]);
        // The mitigation on, whatever non-zero value KServ passed.
        let (_, calls) = run(smccc::ARCH_WORKAROUND_2, [5, 0, 0], true);
        assert_eq!(calls, [(smccc::ARCH_WORKAROUND_2, [1, 0, 0])]);
    }

    #[test]
    fn sdei_and_everything_else_never_reach_the_firmware() {
        let mut refused: Vec<u32> = (0x20..=0x3F)
            .flat_map(|n| [0x8400_0000 | n, 0xC400_0000 | n])
            .collect();
        refused.extend([
            0x8000_0002, // SMCCC_ARCH_SOC_ID
            0x8200_0000, // SiP
            0xC200_0001,
            0x8300_0000, // OEM
            0xB200_0000, // Trusted OS
            0xBF00_FF01,
            0x8600_FF01, // vendor hypervisor
            0xC400_0054, // past TRNG
            0,
            u32::MAX,
        ]);
        for fid in refused {
            let (regs, calls) = run(fid, [1, 2, 3], true);
            assert!(calls.is_empty(), "{fid:#x} was forwarded");
            assert_eq!(regs, [NS, 1, 2, 3], "{fid:#x}");
        }
        // Turning the Spectre v4 mitigation off; feature queries of calls
        // not on the list.
        for (fid, x1) in [
            (smccc::ARCH_WORKAROUND_2, 0),
            (smccc::SMCCC_ARCH_FEATURES, 0x8400_0020),
            (smccc::SMCCC_ARCH_FEATURES, u64::from(smccc::SMCCC_VERSION)),
            (smccc::TRNG_FEATURES, 0x8400_0021),
        ] {
            let (regs, calls) = run(fid, [x1, 0, 0], true);
            assert!(calls.is_empty(), "{fid:#x}({x1:#x}) was forwarded");
            assert_eq!(regs[0], NS);
        }
    }

    #[test]
    fn no_firmware_means_no_call() {
        for fid in [
            smccc::SMCCC_VERSION,
            smccc::TRNG_RND64,
            smccc::ARCH_WORKAROUND_1,
        ] {
            let (regs, calls) = run(fid, [64, 0, 0], false);
            assert!(calls.is_empty());
            assert_eq!(regs[0], NS);
        }
    }
}
