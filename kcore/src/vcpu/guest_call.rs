//! The guest's `HVC #0` and `SMC #0` calls: the SMCCC queries and KVM's
//! vendor hypervisor service KCore answers itself, pKVM's guest
//! `MEM_SHARE`/`MEM_UNSHARE` (turned into [`Step::GuestMem`]), PSCI, which
//! goes to KServ with its function id and `x1..x3` only (`CPU_ON` first
//! recorded by KCore, [`Step::CpuOn`]), and `NOT_SUPPORTED` for anything
//! else; the function ids are in [`guest_fid`].

use super::context::{Pending, index_of_mpidr, status};
use super::loaded::{ExitReport, Loaded, Step};
use crate::addr::PAGE_SHIFT;
use kcore_abi::run::exit;

/// SMCCC and PSCI function ids KCore answers or forwards for guests.
pub mod guest_fid {
    /// `SMCCC_VERSION`.
    pub const SMCCC_VERSION: u32 = 0x8000_0000;
    /// `SMCCC_ARCH_FEATURES`.
    pub const SMCCC_ARCH_FEATURES: u32 = 0x8000_0001;
    /// SMCCC 1.1.
    pub const SMCCC_1_1: u64 = 0x1_0001;
    /// `CPU_OFF`.
    pub const CPU_OFF: u32 = 0x8400_0002;
    /// `CPU_ON` (SMC32).
    pub const CPU_ON_32: u32 = 0x8400_0003;
    /// `CPU_ON` (SMC64).
    pub const CPU_ON_64: u32 = 0xC400_0003;
    /// PSCI `INVALID_PARAMETERS`.
    pub const PSCI_INVALID_PARAMETERS: u64 = -2i64 as u64;
    /// PSCI `ALREADY_ON`.
    pub const PSCI_ALREADY_ON: u64 = -4i64 as u64;
    /// SMCCC `INVALID_PARAMETER`.
    pub const SMCCC_INVALID_PARAMETER: u64 = -3i64 as u64;
    /// The vendor hypervisor service's UID query.
    pub const VENDOR_HYP_CALL_UID: u32 = 0x8600_FF01;
    /// KVM's vendor hypervisor feature bitmap query.
    pub const KVM_FEATURES: u32 = 0x8600_0000;
    /// pKVM's guest ABI: the granule of `MEM_SHARE`/`MEM_UNSHARE`.
    pub const KVM_HYP_MEMINFO: u32 = 0xC600_0002;
    /// pKVM's guest ABI: share the page at IPA `x1` with the host.
    pub const KVM_MEM_SHARE: u32 = 0xC600_0003;
    /// pKVM's guest ABI: end a `MEM_SHARE`.
    pub const KVM_MEM_UNSHARE: u32 = 0xC600_0004;
    /// KVM's vendor hypervisor UID (`28b46fb6-2ec5-11e9-a9ca-4b564d003a74`)
    /// in `x0..x3`: guests built for pKVM look for it before using the
    /// calls above.
    pub const KVM_UID: [u64; 4] = [0xb66f_b428, 0xe911_c52e, 0x564b_caa9, 0x743a_004d];
    /// The feature bits KCore offers guests in `KVM_FEATURES`: the query
    /// itself (0), `HYP_MEMINFO` (2), `MEM_SHARE` (3), `MEM_UNSHARE` (4).
    pub const KVM_FEATURE_BITS: u64 = 1 << 0 | 1 << 2 | 1 << 3 | 1 << 4;

    /// Whether `fid` is in PSCI's SMC32 or SMC64 range.
    pub const fn is_psci(fid: u32) -> bool {
        matches!(fid, 0x8400_0000..=0x8400_001F | 0xC400_0000..=0xC400_001F)
    }
}

/// SMCCC `NOT_SUPPORTED` as a register value.
pub(super) const NOT_SUPPORTED: u64 = u64::MAX;

/// An `HVC #0` or `SMC #0` from the guest (PC already past it).
pub(super) fn guest_call(l: &mut Loaded) -> Step {
    let fid = l.ctx.x[0] as u32;
    match fid {
        guest_fid::SMCCC_VERSION => {
            l.ctx.x[0] = guest_fid::SMCCC_1_1;
            Step::Resume
        }
        guest_fid::SMCCC_ARCH_FEATURES => {
            l.ctx.x[0] = NOT_SUPPORTED;
            Step::Resume
        }
        guest_fid::VENDOR_HYP_CALL_UID => {
            l.ctx.x[..4].copy_from_slice(&guest_fid::KVM_UID);
            Step::Resume
        }
        guest_fid::KVM_FEATURES => {
            l.ctx.x[0] = guest_fid::KVM_FEATURE_BITS;
            l.ctx.x[1..4].fill(0);
            Step::Resume
        }
        guest_fid::KVM_HYP_MEMINFO => {
            l.ctx.x[0] = if l.ctx.x[1..4] == [0; 3] {
                crate::addr::PAGE_SIZE
            } else {
                guest_fid::SMCCC_INVALID_PARAMETER
            };
            Step::Resume
        }
        guest_fid::KVM_MEM_SHARE | guest_fid::KVM_MEM_UNSHARE => {
            let ipa = l.ctx.x[1];
            if !ipa.is_multiple_of(crate::addr::PAGE_SIZE)
                || l.ctx.x[2..4] != [0; 2]
                || ipa >= l.ipa_limit
            {
                l.ctx.x[0] = guest_fid::SMCCC_INVALID_PARAMETER;
                return Step::Resume;
            }
            Step::GuestMem {
                share: fid == guest_fid::KVM_MEM_SHARE,
                gfn: ipa >> PAGE_SHIFT,
            }
        }
        _ if guest_fid::is_psci(fid) && l.ctx.x[0] >> 32 == 0 => {
            let args = [l.ctx.x[1], l.ctx.x[2], l.ctx.x[3]];
            l.ctx.pending = Pending::Psci;
            l.report = ExitReport {
                reason: exit::PSCI,
                data: fid as u64,
                args,
                ..ExitReport::default()
            };
            match fid {
                guest_fid::CPU_ON_32 | guest_fid::CPU_ON_64 => {
                    let (entry, context) = if fid == guest_fid::CPU_ON_32 {
                        (args[1] & 0xFFFF_FFFF, args[2] & 0xFFFF_FFFF)
                    } else {
                        (args[1], args[2])
                    };
                    match index_of_mpidr(args[0]) {
                        Some(target) if target != l.idx => Step::CpuOn {
                            target,
                            entry,
                            context,
                        },
                        Some(_) => {
                            l.ctx.pending = Pending::None;
                            l.ctx.x[0] = guest_fid::PSCI_ALREADY_ON;
                            Step::Resume
                        }
                        None => {
                            l.ctx.pending = Pending::None;
                            l.ctx.x[0] = guest_fid::PSCI_INVALID_PARAMETERS;
                            Step::Resume
                        }
                    }
                }
                guest_fid::CPU_OFF => {
                    l.ctx.status |= status::OFF;
                    Step::Exit
                }
                _ => Step::Exit,
            }
        }
        _ => {
            l.ctx.x[0] = NOT_SUPPORTED;
            Step::Resume
        }
    }
}
