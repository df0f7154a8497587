//! The guest's `HVC #0` and `SMC #0` calls: `SMCCC_VERSION` and pKVM's
//! guest `HYP_MEMINFO`, `MEM_SHARE`/`MEM_UNSHARE` (turned into
//! [`Step::GuestMem`]) KCore answers itself for every VM; PSCI (and KVM's
//! PSCI 0.1 ids, [`kcore_abi::psci::v0_1`]) goes to KServ with its
//! function id and `x1..x3` only (`CPU_ON` first recorded by KCore,
//! [`Step::CpuOn`]). The other SMCCC queries and KVM's vendor service
//! (`SMCCC_ARCH_FEATURES`, the vendor UID, `KVM_FEATURES`) KCore answers
//! for a protected VM, with `NOT_SUPPORTED` for anything else; a
//! non-protected VM's go to KServ the way PSCI calls do, as KVM's host
//! answers them (the firmware feature bitmaps a VMM narrows, TRNG, stolen
//! time, PTP: `docs/kvm.md`). KVM's vendor ids are in [`guest_fid`],
//! SMCCC's and PSCI's in [`kcore_abi::smccc`] and [`kcore_abi::psci`].

use super::context::{Pending, index_of_mpidr, status};
use super::loaded::{ExitReport, Loaded, Step};
use crate::addr::PAGE_SHIFT;
use crate::vm::VmKind;
use kcore_abi::run::exit;
use kcore_abi::{psci, smccc};

/// KVM's vendor hypervisor service calls KCore answers for guests (the
/// SMCCC and PSCI ids are in [`kcore_abi::smccc`] and [`kcore_abi::psci`]).
pub mod guest_fid {
    /// KVM's vendor hypervisor feature bitmap query.
    pub const KVM_FEATURES: u32 = 0x8600_0000;
    /// pKVM's guest ABI: the granule of `MEM_SHARE`/`MEM_UNSHARE`.
    pub const KVM_HYP_MEMINFO: u32 = 0xC600_0002;
    /// pKVM's guest ABI: share the page at IPA `x1` with the host.
    pub const KVM_MEM_SHARE: u32 = 0xC600_0003;
    /// pKVM's guest ABI: end a `MEM_SHARE`.
    pub const KVM_MEM_UNSHARE: u32 = 0xC600_0004;
    /// KVM's vendor hypervisor UID: guests built for pKVM look for it
    /// before using the calls above.
    pub use kcore_abi::smccc::KVM_UID;
    /// The feature bits KCore offers guests in `KVM_FEATURES`: the query
    /// itself (0), `HYP_MEMINFO` (2), `MEM_SHARE` (3), `MEM_UNSHARE` (4).
    pub const KVM_FEATURE_BITS: u64 = 1 << 0 | 1 << 2 | 1 << 3 | 1 << 4;
}

/// An `HVC #0` or `SMC #0` from the guest (PC already past it).
pub(super) fn guest_call(l: &mut Loaded) -> Step {
    let fid = l.ctx.x[0] as u32;
    let to_kserv = |l: &Loaded| l.kind == VmKind::NonProtected && l.ctx.x[0] >> 32 == 0;
    match fid {
        smccc::SMCCC_VERSION => {
            l.ctx.x[0] = smccc::VERSION_1_1;
            Step::Resume
        }
        smccc::SMCCC_ARCH_FEATURES | smccc::VENDOR_HYP_CALL_UID | guest_fid::KVM_FEATURES
            if to_kserv(l) =>
        {
            report_call(l, fid);
            Step::Exit
        }
        smccc::SMCCC_ARCH_FEATURES => {
            l.ctx.x[0] = smccc::RET_NOT_SUPPORTED;
            Step::Resume
        }
        smccc::VENDOR_HYP_CALL_UID => {
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
                smccc::RET_INVALID_PARAMETER
            };
            Step::Resume
        }
        guest_fid::KVM_MEM_SHARE | guest_fid::KVM_MEM_UNSHARE => {
            let ipa = l.ctx.x[1];
            if !ipa.is_multiple_of(crate::addr::PAGE_SIZE)
                || l.ctx.x[2..4] != [0; 2]
                || ipa >= l.ipa_limit
            {
                l.ctx.x[0] = smccc::RET_INVALID_PARAMETER;
                return Step::Resume;
            }
            Step::GuestMem {
                share: fid == guest_fid::KVM_MEM_SHARE,
                gfn: ipa >> PAGE_SHIFT,
            }
        }
        _ if (psci::is_psci(fid) || psci::v0_1::is_psci(fid)) && l.ctx.x[0] >> 32 == 0 => {
            let args = [l.ctx.x[1], l.ctx.x[2], l.ctx.x[3]];
            report_call(l, fid);
            match fid {
                psci::CPU_ON_32 | psci::CPU_ON_64 | psci::v0_1::CPU_ON => {
                    let (entry, context) = if fid == psci::v0_1::CPU_ON {
                        (args[1], args[2])
                    } else {
                        (smccc::arg(fid, args[1]), smccc::arg(fid, args[2]))
                    };
                    match index_of_mpidr(args[0]) {
                        Some(target) if target != l.idx => Step::CpuOn {
                            target,
                            entry,
                            context,
                        },
                        Some(_) => {
                            l.ctx.pending = Pending::None;
                            l.ctx.x[0] = psci::ALREADY_ON;
                            Step::Resume
                        }
                        None => {
                            l.ctx.pending = Pending::None;
                            l.ctx.x[0] = psci::INVALID_PARAMETERS;
                            Step::Resume
                        }
                    }
                }
                psci::CPU_OFF | psci::v0_1::CPU_OFF => {
                    l.ctx.status |= status::OFF;
                    Step::Exit
                }
                _ => Step::Exit,
            }
        }
        _ if to_kserv(l) => {
            report_call(l, fid);
            Step::Exit
        }
        _ => {
            l.ctx.x[0] = smccc::RET_NOT_SUPPORTED;
            Step::Resume
        }
    }
}

/// Reports call `fid` to KServ: a `PSCI` exit with the function id and
/// `x1..x3`, whose completion becomes `x0` (KServ sets a non-protected
/// vCPU's `x1..x3` itself when a call returns more).
fn report_call(l: &mut Loaded, fid: u32) {
    l.ctx.pending = Pending::Psci;
    l.report = ExitReport {
        reason: exit::PSCI,
        data: fid as u64,
        args: [l.ctx.x[1], l.ctx.x[2], l.ctx.x[3]],
        ..ExitReport::default()
    };
}
