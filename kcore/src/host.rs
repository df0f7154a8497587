//! KServ's traps into KCore: decode, check, act.
//!
//! Every exception KServ takes to EL2 arrives here as a [`TrapState`] plus its
//! general registers. `HVC` is the hypercall ABI of `kcore-abi`; `SMC` is PSCI
//! (KCore is KServ's firmware); stage-2 aborts are KServ touching memory it
//! has no mapping for. Anything else is an instruction KServ may not use and
//! becomes an UNDEFINED exception in KServ. Every outcome is a value: nothing
//! KServ passes can make this code panic.

use crate::addr::{Ipa, Pfn};
use crate::exception::{
    Esr, Injection, TrapState, ec, fault_ipa, inject_external_abort, inject_undef,
};
use crate::gic_guard::{self, Guarded};
use crate::host_stage2::HostAbort;
use crate::hw::{Firmware, Hardware, PageAllocator};
use crate::mem_protect::{CreateVm, MemCore};
use crate::ownership::PageState;
use crate::psci::{PsciOutcome, PsciRelay};
use crate::vcpu::{Loaded, RunArgs, Step, VcpuHost, WriteFault};
use kcore_abi::call::Hypercall;
use kcore_abi::{Error, HypercallId, PageOwner, psci, smccc};

/// The host's general registers `x0..=x30` at the trap.
pub type Regs = [u64; 31];

/// What the EL2 code must do to return to KServ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resume {
    /// Return to where KServ trapped (`ELR_EL2` unchanged): HVC (whose
    /// preferred return is already the next instruction) and retried aborts.
    Retry,
    /// Skip the trapped instruction (`ELR_EL2 += 4`): a trapped `SMC`, or an
    /// access KCore emulated.
    Skip,
    /// Make KServ take this exception at EL1.
    Inject(Injection),
    /// Start CPU `cpu` (`mpidr`) at KCore's secondary entry through the
    /// firmware, report with [`Host::finish_cpu_on`], then [`Resume::Skip`].
    StartCpu {
        /// Target MPIDR.
        mpidr: u64,
        /// Target CPU index.
        cpu: usize,
    },
    /// Power this CPU off through the firmware; if that returns, report with
    /// [`Host::cpu_off_failed`] and [`Resume::Skip`].
    CpuOff,
    /// No firmware ([`crate::psci::Backend::SpinTable`]): park every CPU.
    /// KServ's VMs were wiped already, and KServ's stage 2 is revoked
    /// ([`MemCore::revoke_host`]): every other CPU still running KServ
    /// faults into KCore and gets [`Resume::Park`].
    SystemOff,
    /// The system is off ([`Resume::SystemOff`]): park this CPU without
    /// returning to KServ. Every trap from KServ gets this from then on.
    Park,
    /// No firmware: reset through the board's reset device, with KCore's
    /// lock still held; if that returns, report with
    /// [`Host::system_reset_failed`] and [`Resume::Skip`]. KServ's VMs were
    /// wiped already.
    SystemReset,
    /// `host_vcpu_run`: run the vCPU with [`crate::vcpu::run_vcpu_in`] in the
    /// CPU's kept slot (the EL2 code drops the state lock while the guest
    /// runs), put the status in
    /// `x0` and the exit reason in `x1`, then [`Resume::Retry`].
    RunVcpu(RunArgs),
}

/// Counters for diagnostics; reported rate-limited, never per event.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HostStats {
    /// Stage-2 aborts that mapped device memory or RAM.
    pub mapped: u64,
    /// Accesses to KCore memory refused.
    pub denied: u64,
    /// UNDEFINED exceptions injected.
    pub undef: u64,
    /// Accesses to trapped device pages KCore performed (or dropped) for
    /// KServ after checking them.
    pub emulated: u64,
}

/// KCore's host-facing state: memory (ownership, VMs, KServ's stage 2) and
/// PSCI.
#[derive(Clone, Debug)]
pub struct Host<S, const BANKS: usize, const CPUS: usize, const VMS: usize> {
    mem: MemCore<S, BANKS, VMS>,
    psci: PsciRelay<CPUS>,
    stats: HostStats,
    /// KServ's `SYSTEM_OFF` on the spin-table backend went through: KServ
    /// never runs again.
    off: bool,
}

/// Features KCore reports in the version call.
const FEATURES: u64 = kcore_abi::features::PSCI_PROXY
    | kcore_abi::features::HOST_STAGE2
    | kcore_abi::features::VMS
    | kcore_abi::features::VCPUS
    | if cfg!(feature = "self-check") {
        kcore_abi::features::SELF_CHECK
    } else {
        0
    };

/// Whether this build implements `id`.
fn implemented(id: HypercallId) -> bool {
    id != HypercallId::HostSelfCheck || cfg!(feature = "self-check")
}

impl<S: AsRef<[u64]> + AsMut<[u64]>, const BANKS: usize, const CPUS: usize, const VMS: usize>
    Host<S, BANKS, CPUS, VMS>
{
    /// Builds the host state from the memory side (KServ's stage 2 already
    /// populated) and the PSCI relay.
    pub fn new(mem: MemCore<S, BANKS, VMS>, psci: PsciRelay<CPUS>) -> Self {
        Host {
            mem,
            psci,
            stats: HostStats::default(),
            off: false,
        }
    }

    /// Whether KServ powered the system off with no firmware to do it
    /// ([`Resume::SystemOff`]): no CPU may return to KServ.
    pub fn is_off(&self) -> bool {
        self.off
    }

    /// The memory side.
    pub fn mem(&self) -> &MemCore<S, BANKS, VMS> {
        &self.mem
    }

    /// The memory side, mutably: the guest-initiated transitions arrive
    /// through vCPU exits, not through `handle_trap`.
    pub fn mem_mut(&mut self) -> &mut MemCore<S, BANKS, VMS> {
        &mut self.mem
    }

    /// The PSCI relay.
    pub fn psci(&self) -> &PsciRelay<CPUS> {
        &self.psci
    }

    /// Counters.
    pub fn stats(&self) -> HostStats {
        self.stats
    }

    /// KServ's access to a trapped GIC page ([`crate::gic_guard`]): one
    /// load or store of one register (the syndrome must say which), checked,
    /// performed by KCore, and the instruction skipped. Anything else
    /// (an instruction fetch, a load pair, an odd size) is an external abort.
    fn emulate_trapped(
        &mut self,
        trap: &TrapState,
        ipa: Ipa,
        regs: &mut Regs,
        hw: &mut impl Hardware,
    ) -> Resume {
        let esr = Esr(trap.esr);
        let offset = self.mem.host().map().frame_offset(ipa.raw());
        let (Some(offset), ec::DABT_LOW, true) = (offset, esr.ec(), esr.isv()) else {
            self.stats.denied += 1;
            return Resume::Inject(inject_external_abort(trap));
        };
        let (width, srt, write) = (esr.access_bytes(), esr.srt(), esr.is_write());
        let bits = 8 * u32::from(width);
        let mask = if bits == 64 {
            u64::MAX
        } else {
            (1 << bits) - 1
        };
        let value = regs.get(srt).copied().unwrap_or(0) & mask;
        let pa = crate::addr::Pa(ipa.raw());
        let read = match gic_guard::check(offset, write, width, value) {
            Guarded::Deny => {
                self.stats.denied += 1;
                return Resume::Inject(inject_external_abort(trap));
            }
            Guarded::Write(v) => {
                hw.mmio_write(pa, width, v);
                None
            }
            Guarded::Ignore => None,
            Guarded::Read => Some(hw.mmio_read(pa, width) & mask),
            Guarded::ReadAs(v) => Some(v & mask),
        };
        if let Some(mut v) = read {
            if esr.sign_extend() && bits < 64 {
                let shift = 64 - bits;
                v = (((v << shift) as i64) >> shift) as u64;
            }
            if !esr.sixty_four() {
                v &= 0xFFFF_FFFF;
            }
            if let Some(r) = regs.get_mut(srt) {
                *r = v;
            }
        }
        self.stats.emulated += 1;
        Resume::Skip
    }

    /// Handles one synchronous exception from KServ on CPU `cpu`. `alloc` is
    /// KCore's pool for KServ's own stage-2 tables.
    pub fn handle_trap(
        &mut self,
        cpu: usize,
        trap: &TrapState,
        regs: &mut Regs,
        hw: &mut impl Hardware,
        alloc: &mut impl PageAllocator,
        fw: &mut impl Firmware,
    ) -> Resume {
        if self.off {
            return Resume::Park;
        }
        let esr = Esr(trap.esr);
        match esr.ec() {
            ec::HVC64 => match self.handle_hvc(esr.imm16(), regs, hw) {
                Some(run) => Resume::RunVcpu(run),
                None => Resume::Retry,
            },
            ec::SMC64 => self.handle_smc(cpu, esr.imm16(), regs, hw, fw),
            ec::DABT_LOW | ec::IABT_LOW if esr.is_s2_mapping_fault() => {
                let ipa = Ipa(fault_ipa(trap.hpfar, trap.far));
                let (stage2, owners) = self.mem.host_mut();
                let pages = stage2.table_pages();
                let abort =
                    stage2.handle_abort(hw, alloc, ipa, |r| owners.host_may_map_range(r), &|t| {
                        pages.holds(owners, t)
                    });
                match abort {
                    HostAbort::Mapped => {
                        self.stats.mapped += 1;
                        Resume::Retry
                    }
                    HostAbort::Denied | HostAbort::NoMemory => {
                        self.stats.denied += 1;
                        Resume::Inject(inject_external_abort(trap))
                    }
                    HostAbort::CorruptTable => {
                        self.mem.broke();
                        self.stats.denied += 1;
                        Resume::Inject(inject_external_abort(trap))
                    }
                    HostAbort::Emulate => self.emulate_trapped(trap, ipa, regs, hw),
                }
            }
            // External aborts and anything stage 2 did not cause are KServ's.
            ec::DABT_LOW | ec::IABT_LOW => {
                self.stats.denied += 1;
                Resume::Inject(inject_external_abort(trap))
            }
            _ => {
                self.stats.undef += 1;
                Resume::Inject(inject_undef(trap))
            }
        }
    }

    /// KServ's hypercalls: decode (once, into the call's argument struct of
    /// [`kcore_abi::call`]), then each call's check and commit.
    /// Results go to `x0..x3`; `x4..x30` are left as they were. A
    /// `host_vcpu_run` is not done here: its decoded arguments come back
    /// for the caller to run (registers untouched).
    pub fn handle_hvc(
        &mut self,
        imm: u16,
        regs: &mut Regs,
        hw: &mut impl Hardware,
    ) -> Option<RunArgs> {
        let id = if imm == 0 {
            HypercallId::from_raw(regs[0])
        } else {
            None
        };
        let Some(id) = id else {
            abi_query(imm, regs);
            return None;
        };
        let args = [regs[1], regs[2], regs[3], regs[4], regs[5], regs[6]];
        let m = &mut self.mem;
        let result: Result<[u64; 3], Error> = match Hypercall::decode(id, &args) {
            Hypercall::Version(_) | Hypercall::Features(_) => {
                abi_query(imm, regs);
                if id == HypercallId::Version && m.gicv.is_some() {
                    regs[2] |= kcore_abi::features::GICV2;
                }
                return None;
            }
            Hypercall::HostVcpuRun(a) => return Some(a),
            Hypercall::HostDeclareMmio(a) => m
                .host_declare_mmio(a.handle, a.gfn, a.pages)
                .map(|()| [0; 3]),
            Hypercall::HostVcpuGetReg(a) => m
                .host_vcpu_get_reg(a.handle, a.vcpu, a.reg, hw)
                .map(|v| [v, 0, 0]),
            Hypercall::HostVcpuSetReg(a) => m
                .host_vcpu_set_reg(a.handle, a.vcpu, a.reg, a.value, hw)
                .map(|()| [0; 3]),
            Hypercall::HostCreateVm(a) => CreateVm::from_call(&a)
                .and_then(|args| m.check_create_vm(&args))
                .map(|t| [m.commit_create_vm(t, hw).0, 0, 0]),
            Hypercall::HostCreateVcpu(a) => {
                m.host_create_vcpu(a.handle, a.vcpu, hw).map(|()| [0; 3])
            }
            Hypercall::HostDonateVmPool(a) => m
                .check_donate_vm_pool(a.handle, a.pfn)
                .map(|t| m.commit_donate_vm_pool(t, hw))
                .map(|()| [0; 3]),
            Hypercall::HostDonateGuest(a) => m
                .check_host_donate_guest(a.handle, a.pfn, a.gfn, hw)
                .map(|t| m.commit_host_donate_guest(t, hw))
                .map(|()| [0; 3]),
            Hypercall::HostShareGuest(a) => m
                .check_host_share_guest(a.handle, a.pfn, a.gfn, a.flags, hw)
                .map(|t| m.commit_host_share_guest(t, hw))
                .map(|()| [0; 3]),
            Hypercall::HostUnshareGuest(a) => m
                .check_host_unshare_guest(a.handle, a.gfn, hw)
                .map(|t| m.commit_host_unshare_guest(t, hw))
                .map(|()| [0; 3]),
            Hypercall::HostTeardownVm(a) => m.host_teardown_vm(a.handle, hw).map(|()| [0; 3]),
            Hypercall::HostReclaimPage(a) => m
                .check_host_reclaim_page(a.handle, a.pfn)
                .map(|t| m.commit_host_reclaim_page(t, hw))
                .map(|()| [0; 3]),
            Hypercall::HostPageOwner(a) => m.host_page_owner(a.pfn).map(|s| owner_report(m, s)),
            Hypercall::HostVerifyImage(a) => m
                .host_verify_image(a.handle, a.gfn, a.len, a.sig_pfn, hw)
                .map(|()| [0; 3]),
            Hypercall::HostSelfCheck(_) if implemented(HypercallId::HostSelfCheck) => {
                match crate::audit::audit(m, hw) {
                    Ok(r) => Ok([r.host_pages, r.vm_pages, r.table_pages]),
                    Err(e) => {
                        log::error!("self-check failed: {e:?}");
                        Err(Error::SelfCheckFailed)
                    }
                }
            }
            Hypercall::HostSelfCheck(_) => Err(Error::NotSupported),
            Hypercall::HostProtectGuest(a) => m
                .host_protect_guest(a.handle, a.gfn, a.pages, hw)
                .map(|n| [n, 0, 0]),
            Hypercall::HostUnprotectGuest(a) => m
                .host_unprotect_guest(a.handle, a.gfn, hw)
                .map(|n| [n, 0, 0]),
            Hypercall::HostSetVgicCpu(a) => {
                m.host_set_vgic_cpu(a.handle, a.gfn, hw).map(|()| [0; 3])
            }
            Hypercall::HostSetGicFrames(a) => m
                .host_set_gic_frames(a.handle, a.kind, a.gfn, a.frames)
                .map(|()| [0; 3]),
            Hypercall::HostReadGicTable(a) => m.host_read_gic_table(a.handle, a.ipa, a.len, hw),
            Hypercall::HostGuestIdReg(a) => a
                .reg
                .checked_sub(kcore_abi::reg::SYSREG)
                .and_then(|enc| m.guest_id_regs().get(enc))
                .map(|v| [v, 0, 0])
                .ok_or(Error::NotFound),
        };
        let (r0, [r1, r2, r3]) = match result {
            Ok(r) => (kcore_abi::SUCCESS as u64, r),
            Err(e) => (e.to_x0(), [0; 3]),
        };
        regs[0] = r0;
        regs[1] = r1;
        regs[2] = r2;
        regs[3] = r3;
        None
    }

    fn handle_smc(
        &mut self,
        cpu: usize,
        imm: u16,
        regs: &mut Regs,
        hw: &mut impl Hardware,
        fw: &mut impl Firmware,
    ) -> Resume {
        let id = regs[0];
        if imm != 0 || id > u32::MAX as u64 {
            regs[0] = smccc::RET_NOT_SUPPORTED;
            return Resume::Skip;
        }
        if !psci::is_psci(id as u32) {
            // The EL2 entry code answers these before taking KCore's lock
            // (`smc_forward::stateless`); this is the same answer for a
            // caller that comes here with the trap.
            let with_firmware = self.psci.backend() == crate::psci::Backend::Firmware;
            crate::smc_forward::handle(id as u32, regs, with_firmware, fw);
            return Resume::Skip;
        }
        if matches!(id as u32, psci::SYSTEM_OFF | psci::SYSTEM_RESET) {
            // No residue across the firmware hand-off (DESIGN.md §2,
            // invariant 6): RAM survives a reset. The caller holds KCore's
            // lock across the firmware call, so no CPU changes anything
            // between the wipe and the reset.
            self.mem.wipe_vms(hw);
        }
        let owners = self.mem.owners();
        let out = self
            .psci
            .handle(cpu, id as u32, [regs[1], regs[2], regs[3]], fw, |a| {
                owners
                    .get(Pfn::of(crate::addr::Pa(a)))
                    .is_some_and(PageState::host_may_map)
            });
        match out {
            PsciOutcome::Return(v) => {
                regs[0] = v;
                Resume::Skip
            }
            PsciOutcome::StartCpu { mpidr, cpu } => Resume::StartCpu { mpidr, cpu },
            PsciOutcome::CpuOff { .. } => Resume::CpuOff,
            PsciOutcome::SystemOff => {
                // The board cannot power off: KServ loses its memory on
                // every CPU at once instead.
                self.off = true;
                self.mem.revoke_host(hw);
                Resume::SystemOff
            }
            PsciOutcome::SystemReset => Resume::SystemReset,
        }
    }

    /// The board's reset returned (or there is none): KServ's `SYSTEM_RESET`
    /// fails.
    pub fn system_reset_failed(&mut self, regs: &mut Regs) {
        regs[0] = crate::psci::PsciError::InternalFailure.to_x0();
    }

    /// Reports the firmware's answer to [`Resume::StartCpu`] into KServ's `x0`.
    pub fn finish_cpu_on(&mut self, cpu: usize, firmware_ret: u64, regs: &mut Regs) {
        regs[0] = self.psci.finish_cpu_on(cpu, firmware_ret);
    }

    /// The firmware's CPU_OFF returned.
    pub fn cpu_off_failed(&mut self, cpu: usize, regs: &mut Regs) {
        regs[0] = self.psci.cpu_off_failed(cpu);
    }

    /// A secondary CPU arrived at KCore's entry: KServ's entry point and
    /// context, once.
    /// Nothing once the system is off ([`Self::is_off`]).
    pub fn take_boot_args(&mut self, cpu: usize) -> Option<(u64, u64)> {
        if self.off {
            return None;
        }
        self.psci.take_boot_args(cpu)
    }
}

/// A [`VcpuHost`] over a [`Host`] the caller already holds exclusively
/// (host tests, and anything that needs no lock).
pub struct Direct<'a, S, W, const BANKS: usize, const CPUS: usize, const VMS: usize> {
    /// KCore's state.
    pub host: &'a mut Host<S, BANKS, CPUS, VMS>,
    /// The machine.
    pub hw: &'a mut W,
}

impl<
    S: AsRef<[u64]> + AsMut<[u64]>,
    W: Hardware,
    const BANKS: usize,
    const CPUS: usize,
    const VMS: usize,
> VcpuHost for Direct<'_, S, W, BANKS, CPUS, VMS>
{
    fn load(&mut self, a: RunArgs, lr_count: usize, out: &mut Loaded) -> Result<(), Error> {
        self.host.mem.vcpu_load_into(a, lr_count, self.hw, out)
    }
    fn cpu_on(&mut self, l: &mut Loaded, target: usize, entry: u64, context: u64) -> Step {
        self.host
            .mem
            .vcpu_cpu_on(l, target, entry, context, self.hw)
    }
    fn guest_mem(&mut self, l: &mut Loaded, share: bool, gfn: u64) {
        self.host.mem.vcpu_guest_mem(l, share, gfn, self.hw)
    }
    fn put(&mut self, l: &mut Loaded) {
        self.host.mem.vcpu_put(l, self.hw)
    }
    fn write_fault(&mut self, l: &Loaded, ipa: u64) -> WriteFault {
        self.host.mem.vcpu_write_fault(l, ipa, &mut *self.hw)
    }
}

/// The registers `host_vcpu_run` returns to KServ: the status in `x0`, the
/// exit reason in `x1`.
pub fn run_result(r: Result<u64, Error>, regs: &mut Regs) {
    let (x0, x1) = match r {
        Ok(reason) => (kcore_abi::SUCCESS as u64, reason),
        Err(e) => (e.to_x0(), 0),
    };
    regs[0] = x0;
    regs[1] = x1;
    regs[2] = 0;
    regs[3] = 0;
}

/// `x1..x3` of `host_page_owner`: the owner code, the VM's handle, the gfn.
fn owner_report<S: AsRef<[u64]> + AsMut<[u64]>, const B: usize, const V: usize>(
    m: &MemCore<S, B, V>,
    s: PageState,
) -> [u64; 3] {
    let code = match s {
        PageState::KCore => PageOwner::KCore,
        PageState::VmTable { .. } => PageOwner::VmTable,
        PageState::Host => PageOwner::Host,
        PageState::HostPinned { .. } => PageOwner::HostPinned,
        PageState::HostSharedWithGuest { .. } => PageOwner::HostSharedWithGuest,
        PageState::Guest { .. } => PageOwner::Guest,
        PageState::GuestSharedWithHost { .. } => PageOwner::GuestSharedWithHost,
    };
    let handle = s
        .vm()
        .and_then(|v| m.vms().get(v))
        .map_or(0, |v| v.handle.0);
    let third = match s {
        PageState::HostPinned { pins } => pins as u64,
        _ => s.gfn().map_or(0, |g| g.0),
    };
    [code as u64, handle, third]
}

/// The stateless part of the hypercall ABI: version, features, the SMCCC
/// UID query, and `NOT_SUPPORTED` for everything unknown. Results go to
/// `x0..x3`; `x4..x30` are left as they were (SMCCC 1.1 lets callees clobber
/// `x4..x17`; KCore does not).
pub fn abi_query(imm: u16, regs: &mut Regs) {
    let x0 = regs[0];
    let (r0, r1, r2, r3) = if imm != 0 {
        (Error::NotSupported.to_x0(), 0, 0, 0)
    } else if x0 == smccc::VENDOR_HYP_CALL_UID as u64 {
        let u = smccc::KCORE_UID;
        (u[0] as u64, u[1] as u64, u[2] as u64, u[3] as u64)
    } else {
        match HypercallId::from_raw(x0) {
            Some(HypercallId::Version) => (
                kcore_abi::SUCCESS as u64,
                kcore_abi::abi_version(),
                FEATURES,
                0,
            ),
            Some(HypercallId::Features) => {
                let known = HypercallId::from_raw(regs[1]).is_some_and(implemented);
                let r = if known {
                    kcore_abi::SUCCESS as u64
                } else {
                    Error::NotSupported.to_x0()
                };
                (r, 0, 0, 0)
            }
            _ => (Error::NotSupported.to_x0(), 0, 0, 0),
        }
    };
    regs[0] = r0;
    regs[1] = r1;
    regs[2] = r2;
    regs[3] = r3;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(x0: u64, x1: u64) -> Regs {
        let mut r = [0xAAu64; 31];
        r[0] = x0;
        r[1] = x1;
        abi_query(0, &mut r);
        r
    }

    #[test]
    fn version_and_features() {
        let r = call(HypercallId::Version.function_id() as u64, 0);
        assert_eq!((r[0], r[1], r[2]), (0, kcore_abi::abi_version(), FEATURES));
        assert_eq!(r[4], 0xAA, "x4.. untouched");
        let r = call(
            HypercallId::Features.function_id() as u64,
            HypercallId::Version.function_id() as u64,
        );
        assert_eq!(r[0], 0);
        let r = call(HypercallId::Features.function_id() as u64, 0xC600_00FF);
        assert_eq!(r[0], Error::NotSupported.to_x0());
    }

    #[test]
    fn everything_else_is_not_supported() {
        // Linux's hyp-stub calls (set/reset vectors, soft restart, VHE restart)
        // and any other id, in or out of KCore's range.
        for id in [
            0,
            1,
            2,
            3,
            4,
            0xC600_0002,
            0xC600_FFFF,
            0x8600_0000,
            0x8400_0000,
            0xC400_0003,
            u64::MAX,
            1 << 32 | 0xC600_0000,
        ] {
            let r = call(id, 0);
            assert_eq!(r[0], Error::NotSupported.to_x0(), "{id:#x}");
            assert_eq!((r[1], r[2], r[3]), (0, 0, 0), "{id:#x} leaks nothing");
        }
        let mut r = [0u64; 31];
        r[0] = HypercallId::Version.function_id() as u64;
        abi_query(1, &mut r);
        assert_eq!(r[0], Error::NotSupported.to_x0(), "HVC #imm != 0");
    }

    #[test]
    fn uid_query() {
        let r = call(smccc::VENDOR_HYP_CALL_UID as u64, 0);
        assert_eq!([r[0], r[1], r[2], r[3]], smccc::KCORE_UID.map(u64::from));
    }
}
