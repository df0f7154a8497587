//! What each exit means ([`step`]) and what of it KServ may learn. An
//! exit, as `kcore-arch` read its syndrome ([`GuestExit`], [`ExitKind`]),
//! is either handled inside KCore — the guest's own timers, a guest call
//! KCore answers, a debug or PMU register, a fault the guest made itself
//! (injected back into it) — or becomes a report with exactly what
//! emulation needs: for MMIO the address, width, direction and the one
//! data register; for a memory fault only the page; for an SGI the SGI
//! register's value; for WFI/WFE and interrupts only the reason.

use super::context::{Pending, Sys, mask, status};
use super::guest_call::guest_call;
use super::loaded::{ExitReport, Loaded, Step, WriteFault};
use crate::addr::{Gfn, PAGE_SHIFT};
use crate::exception::{Esr, SysRegTrap, ec, fault_ipa};
use crate::vm::VmKind;
use kcore_abi::reg;
use kcore_abi::run::{exit, exit_flags};
use kcore_abi::smccc::RET_NOT_SUPPORTED as NOT_SUPPORTED;

/// How the guest left.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ExitKind {
    /// A synchronous exception (`ESR_EL2` says which).
    Sync,
    /// A physical IRQ.
    Irq,
    /// A physical IRQ that is one of the guest's own timers, virtual or
    /// EL1 physical (its PPI is the highest pending and that timer
    /// asserts): KCore delivers it at the next entry without involving
    /// KServ.
    GuestTimer,
    /// A physical FIQ.
    Fiq,
    /// A physical SError.
    SError,
}

/// The syndrome of one exit, as `kcore-arch` read it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestExit {
    /// The kind.
    pub kind: ExitKind,
    /// `ESR_EL2`.
    pub esr: u64,
    /// `FAR_EL2`.
    pub far: u64,
    /// `HPFAR_EL2`.
    pub hpfar: u64,
    /// The guest's FP/SIMD registers were live in this run, so `ctx.v`,
    /// `fpsr` and `fpcr` may have changed. When false the run left them as
    /// they were (KCore's trap of the guest's first FP/SIMD access never
    /// fired).
    pub fp: bool,
}

/// Decides what exit `e` means for the loaded vCPU `l`, updating its
/// registers (PC, injected exceptions, emulated registers) and, for exits
/// KServ must see, [`Loaded::report`].
pub fn step(l: &mut Loaded, e: &GuestExit) -> Step {
    match e.kind {
        // Delivered (or held quiet) by the next entry's `prepare_timer`.
        ExitKind::GuestTimer => return Step::Resume,
        ExitKind::Irq | ExitKind::Fiq => return report(l, exit::IRQ, ExitReport::default()),
        ExitKind::SError => {
            // A physical SError while the guest ran is the guest's: deliver
            // it as a virtual SError; KServ gets the CPU back meanwhile.
            if l.ctx.status & status::VSERROR == 0 {
                l.ctx.vsesr = reg::serror::IDS;
            }
            l.ctx.status |= status::VSERROR;
            return report(l, exit::IRQ, ExitReport::default());
        }
        ExitKind::Sync => {}
    }
    let esr = Esr(e.esr);
    match esr.ec() {
        ec::WFX => {
            l.ctx.skip_instr();
            let flags = if esr.is_wfe() { exit_flags::WFE } else { 0 };
            report(
                l,
                exit::WFI,
                ExitReport {
                    flags,
                    ..ExitReport::default()
                },
            )
        }
        ec::HVC64 if esr.imm16() == 0 => guest_call(l),
        ec::SMC64 if esr.imm16() == 0 => {
            l.ctx.skip_instr();
            guest_call(l)
        }
        ec::HVC64 => {
            l.ctx.x[0] = NOT_SUPPORTED;
            Step::Resume
        }
        ec::SMC64 => {
            l.ctx.skip_instr();
            l.ctx.x[0] = NOT_SUPPORTED;
            Step::Resume
        }
        ec::SYS64 => sysreg(l, esr),
        // Only KServ's debugging (MDCR_EL2.TDE) routes these to EL2.
        ec::SOFTSTP_LOW | ec::BKPT_LOW | ec::WATCHPT_LOW | ec::BRK64 if l.ctx.host_debug() => {
            if esr.ec() == ec::SOFTSTP_LOW {
                l.ctx.step_taken();
            }
            let far = if esr.ec() == ec::WATCHPT_LOW {
                e.far
            } else {
                0
            };
            report(
                l,
                exit::DEBUG,
                ExitReport {
                    data: e.esr,
                    addr: far,
                    ..ExitReport::default()
                },
            )
        }
        ec::DABT_LOW | ec::IABT_LOW => {
            l.ctx.fault_far = e.far;
            abort(l, e)
        }
        _ => {
            l.ctx.inject_undef();
            Step::Resume
        }
    }
}

fn report(l: &mut Loaded, reason: u64, r: ExitReport) -> Step {
    l.report = ExitReport { reason, ..r };
    Step::Exit
}

/// A trapped `MSR`/`MRS`.
fn sysreg(l: &mut Loaded, esr: Esr) -> Step {
    let SysRegTrap {
        op0,
        op1,
        crn,
        crm,
        op2,
        rt,
        read,
    } = esr.sys_reg();
    let value = l.ctx.xr(rt);
    let enc = reg::sysreg(op0, op1, crn, crm, op2);
    const SGI1R: u64 = reg::sysreg(3, 0, 12, 11, 5);
    const ASGI1R: u64 = reg::sysreg(3, 0, 12, 11, 6);
    const SGI0R: u64 = reg::sysreg(3, 0, 12, 11, 7);
    const MDSCR: u64 = reg::sysreg(2, 0, 0, 2, 2);
    const OSLAR: u64 = reg::sysreg(2, 0, 1, 0, 4);
    const OSLSR: u64 = reg::sysreg(2, 0, 1, 1, 4);
    const ACTLR: u64 = reg::sysreg(3, 0, 1, 0, 1);
    let result: Option<u64> = match enc {
        // The feature ID space (`HCR_EL2.TID3`): the guest's sanitised view.
        _ if read && crate::idregs::feature_index(enc).is_some() => l.ids.get(enc),
        SGI1R | ASGI1R | SGI0R if !read => {
            l.ctx.skip_instr();
            let flags = match enc {
                ASGI1R => exit_flags::SGI_ASGI1R,
                SGI0R => exit_flags::SGI_SGI0R,
                _ => 0,
            };
            return report(
                l,
                exit::SGI,
                ExitReport {
                    flags,
                    data: value,
                    ..ExitReport::default()
                },
            );
        }
        MDSCR => {
            if !read {
                l.ctx.set_sys(Sys::Mdscr, value);
            }
            Some(l.ctx.sys(Sys::Mdscr))
        }
        OSLAR if !read => {
            l.ctx.set_os_lock(value & 1 == 1);
            Some(0)
        }
        OSLSR if read => Some(l.ctx.oslsr()),
        // ACTLR_EL1 (`HCR_EL2.TACR`): IMPLEMENTATION DEFINED; reads as zero,
        // writes ignored, as KServ sees it too.
        ACTLR => Some(0),
        // Breakpoints and watchpoints: the vCPU's, loaded into the hardware
        // while it runs with debug exceptions enabled.
        _ if reg::sys::debug_index(reg::SYSREG | enc).is_some() => {
            let i = reg::sys::debug_index(reg::SYSREG | enc).unwrap_or(0);
            if !read {
                l.ctx.dbg[i] = value;
            }
            Some(l.ctx.dbg[i])
        }
        // The rest of the debug registers (`MDCCINT_EL1`, the claim tags,
        // the DCC): reads as zero, writes ignored.
        _ if op0 == 2 => Some(0),
        // The PMU: not offered; reads as zero, writes ignored, so a guest
        // that resets PMU registers on a CPU with PMUv3 keeps running.
        _ if is_pmu(op0, op1, crn, crm) => Some(0),
        _ => None,
    };
    match result {
        Some(v) => {
            if read {
                l.ctx.set_xr(rt, v);
            }
            l.ctx.skip_instr();
        }
        None => l.ctx.inject_undef(),
    }
    Step::Resume
}

fn is_pmu(op0: u64, op1: u64, crn: u64, crm: u64) -> bool {
    op0 == 3 && ((op1 == 0 || op1 == 3) && crn == 9 && (12..=14).contains(&crm))
        || (op0 == 3 && op1 == 3 && crn == 14 && (8..=15).contains(&crm))
}

/// A data or instruction abort taken to EL2.
fn abort(l: &mut Loaded, e: &GuestExit) -> Step {
    let esr = Esr(e.esr);
    let is_data = esr.ec() == ec::DABT_LOW;
    // Only stage-2 translation and access-flag faults mean "no memory here
    // yet"; permission faults, external aborts and faults on the guest's
    // own stage-1 walk into MMIO are the guest's problem.
    let translation = esr.is_translation_or_access_fault();
    let permission = esr.is_permission_fault();
    let ipa = fault_ipa(e.hpfar, e.far);
    // A write to a page a non-protected VM's stage 2 maps read-only: a
    // read-only memory slot (emulated by KServ, as KVM does) or a page
    // write-protected for dirty logging; which, the run loop asks under
    // KCore's lock ([`write_fault`]).
    if permission && is_data && esr.is_write() && l.kind == VmKind::NonProtected {
        return Step::WriteFault { ipa };
    }
    if !translation || ipa >= l.ipa_limit {
        l.ctx.inject_abort(e.esr, e.far);
        return Step::Resume;
    }
    let gfn = Gfn(ipa >> PAGE_SHIFT);
    let s1ptw = esr.s1ptw();
    if !l.mmio.contains(gfn) {
        let mut flags = 0;
        if is_data && esr.is_write() && !s1ptw {
            flags |= exit_flags::WRITE;
        }
        if !is_data {
            flags |= exit_flags::EXEC;
        }
        return report(
            l,
            exit::MEM_FAULT,
            ExitReport {
                flags,
                addr: gfn.0 << PAGE_SHIFT,
                ..ExitReport::default()
            },
        );
    }
    if !is_data {
        l.ctx.inject_abort(e.esr, e.far);
        return Step::Resume;
    }
    mmio(l, e, ipa)
}

/// Finishes a [`Step::WriteFault`] at `ipa` once KCore's stage 2 said what
/// the page is: a memory fault for a write-protected page the dirty ring
/// had no room for (the page only; the write is repeated once KServ made
/// it writable), an MMIO write for a read-only share, or nothing (the
/// guest repeats the write: the page is writable by now, or KCore made it
/// so and logged it in the ring).
pub fn write_fault(l: &mut Loaded, e: &GuestExit, ipa: u64, what: WriteFault) -> Step {
    match what {
        WriteFault::Logged => report(
            l,
            exit::MEM_FAULT,
            ExitReport {
                flags: exit_flags::WRITE | exit_flags::WRITE_PROTECTED,
                addr: ipa & !((1 << PAGE_SHIFT) - 1),
                ..ExitReport::default()
            },
        ),
        WriteFault::ReadOnly => mmio(l, e, ipa),
        WriteFault::Retry | WriteFault::Recorded => Step::Resume,
    }
}

/// An MMIO access KServ emulates: only a data access the hardware
/// described (ISV, not on a stage-1 walk) can be.
fn mmio(l: &mut Loaded, e: &GuestExit, ipa: u64) -> Step {
    let esr = Esr(e.esr);
    if !esr.isv() || esr.s1ptw() {
        l.ctx.inject_abort(e.esr, e.far);
        return Step::Resume;
    }
    let width = u64::from(esr.access_bytes());
    let sign = esr.sign_extend();
    let rt = esr.srt() as u8;
    let sf = esr.sixty_four();
    let write = esr.is_write();
    l.ctx.skip_instr();
    l.ctx.status |= status::MMIO_EXIT;
    let mut r = ExitReport {
        addr: ipa,
        width,
        ..ExitReport::default()
    };
    if write {
        r.flags = exit_flags::WRITE;
        r.data = l.ctx.xr(rt as usize) & mask(8 * width as u32);
    } else {
        l.ctx.pending = Pending::MmioRead {
            rt,
            width: width as u8,
            sign,
            sf,
        };
    }
    report(l, exit::MMIO, r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vcpu::context::{VcpuContext, mpidr_of};
    use crate::vcpu::hwdebug::DebugCounts;
    use crate::vcpu::test_util::loaded;
    use kcore_abi::{psci, smccc};

    fn sync(esr: u64, ipa: u64) -> GuestExit {
        GuestExit {
            kind: ExitKind::Sync,
            esr,
            far: 0xffff_0000_0000_0000 | (ipa & 0xFFF),
            hpfar: (ipa >> 12) << 4,
            fp: false,
        }
    }

    /// A data abort, translation fault level 3, with ISV.
    fn dabt(write: bool, sas: u64, sse: bool, rt: u64, sf: bool) -> u64 {
        ec::DABT_LOW << 26
            | 1 << 25
            | 1 << 24
            | sas << 22
            | (sse as u64) << 21
            | rt << 16
            | (sf as u64) << 15
            | (write as u64) << 6
            | 0x07
    }

    #[test]
    fn mmio_write_exposes_only_the_data_register_clamped() {
        let mut l = loaded();
        l.ctx.pc = 0x4000_1000;
        l.ctx.x[5] = 0x1122_3344_5566_7788;
        let s = step(&mut l, &sync(dabt(true, 1, false, 5, false), 0x900_0104));
        assert_eq!(s, Step::Exit);
        assert_eq!(l.report.reason, exit::MMIO);
        assert_eq!(l.report.addr, 0x900_0104);
        assert_eq!(l.report.width, 2);
        assert_eq!(l.report.data, 0x7788, "clamped to 16 bits");
        assert_eq!(l.report.flags, exit_flags::WRITE);
        assert_eq!(l.report.args, [0; 3]);
        assert_eq!(l.ctx.pc, 0x4000_1004);
        // The zero register stores zero.
        let s = step(&mut l, &sync(dabt(true, 3, false, 31, true), 0x900_0100));
        assert_eq!((s, l.report.data), (Step::Exit, 0));
    }

    #[test]
    fn mmio_reads_complete_into_one_register() {
        let mut l = loaded();
        l.ctx.x[3] = 0xFFFF_FFFF_FFFF_FFFF;
        step(&mut l, &sync(dabt(false, 0, false, 3, true), 0x900_0100));
        assert_eq!(l.report.data, 0, "a read exposes no register");
        l.ctx.complete(0xABCD_EF80);
        assert_eq!(l.ctx.x[3], 0x80, "ldrb zero-extends");
        step(&mut l, &sync(dabt(false, 0, true, 3, true), 0x900_0100));
        l.ctx.complete(0x80);
        assert_eq!(l.ctx.x[3], 0xFFFF_FFFF_FFFF_FF80, "ldrsb x");
        step(&mut l, &sync(dabt(false, 1, true, 3, false), 0x900_0100));
        l.ctx.complete(0x8000);
        assert_eq!(l.ctx.x[3], 0xFFFF_8000, "ldrsh w");
        step(&mut l, &sync(dabt(false, 2, true, 3, true), 0x900_0100));
        l.ctx.complete(0x8000_0000);
        assert_eq!(l.ctx.x[3], 0xFFFF_FFFF_8000_0000, "ldrsw");
        step(&mut l, &sync(dabt(false, 3, false, 31, true), 0x900_0100));
        let before = l.ctx.x;
        l.ctx.complete(7);
        assert_eq!(l.ctx.x, before, "xzr discards");
        l.ctx.complete(9);
        assert_eq!(
            l.ctx.x, before,
            "a completion without a pending read does nothing"
        );
    }

    #[test]
    fn memory_faults_expose_only_the_page() {
        let mut l = loaded();
        l.ctx.x[2] = 0x5EC2E7;
        let s = step(&mut l, &sync(dabt(true, 3, false, 2, true), 0x4010_2345));
        assert_eq!(s, Step::Exit);
        assert_eq!(l.report.reason, exit::MEM_FAULT);
        assert_eq!(l.report.addr, 0x4010_2000);
        assert_eq!(l.report.data, 0, "no register for RAM faults");
        assert_eq!(l.report.flags, exit_flags::WRITE);
        assert_eq!(l.ctx.pc, 0, "retried, not skipped");
        let ia = ec::IABT_LOW << 26 | 1 << 25 | 0x06;
        step(&mut l, &sync(ia, 0x4020_0000));
        assert_eq!(
            (l.report.reason, l.report.flags),
            (exit::MEM_FAULT, exit_flags::EXEC)
        );
    }

    #[test]
    fn unemulatable_faults_are_injected() {
        let mut l = loaded();
        l.ctx.set_sys(Sys::Vbar, 0x4000_8000);
        l.ctx.pc = 0x4000_0100;
        // MMIO without ISV (e.g. a load pair).
        let esr = ec::DABT_LOW << 26 | 1 << 25 | 0x07;
        assert_eq!(step(&mut l, &sync(esr, 0x900_0000)), Step::Resume);
        assert_eq!(l.ctx.pc, 0x4000_8200, "current EL, SPx, sync");
        assert_eq!(Esr(l.ctx.sys(Sys::Esr)).ec(), ec::DABT_CUR);
        assert_eq!(l.ctx.sys(Sys::ElrEl1), 0x4000_0100);
        // A permission fault.
        let mut l = loaded();
        let esr = ec::DABT_LOW << 26 | 1 << 25 | 0x0F;
        assert_eq!(step(&mut l, &sync(esr, 0x4000_0000)), Step::Resume);
        assert_eq!(Esr(l.ctx.sys(Sys::Esr)).fsc(), 0x10);
        // Beyond the IPA space.
        let mut l = loaded();
        l.ipa_limit = 1 << 32;
        let esr = ec::DABT_LOW << 26 | 1 << 25 | 0x04;
        assert_eq!(step(&mut l, &sync(esr, 1 << 33)), Step::Resume);
    }

    #[test]
    fn hypercalls_kcore_answers_itself() {
        let mut l = loaded();
        for fid in [
            0xC600_1234u64,
            0x8600_0042,
            0x8400_0000 | 1 << 32,
            0x8000_0001,
        ] {
            l.ctx.x[0] = fid;
            l.ctx.x[1] = 11;
            assert_eq!(
                step(&mut l, &sync(ec::HVC64 << 26, 0)),
                Step::Resume,
                "{fid:#x}"
            );
            assert_eq!(l.ctx.x[0], NOT_SUPPORTED);
            assert_eq!(l.ctx.x[1], 11);
        }
        l.ctx.x[0] = 0x8000_0000;
        l.ctx.pc = 0x100;
        assert_eq!(step(&mut l, &sync(ec::SMC64 << 26, 0)), Step::Resume);
        assert_eq!((l.ctx.x[0], l.ctx.pc), (smccc::VERSION_1_1, 0x104));
        l.ctx.x[0] = 0x8400_0000;
        assert_eq!(step(&mut l, &sync(ec::HVC64 << 26 | 1, 0)), Step::Resume);
        assert_eq!(l.ctx.x[0], NOT_SUPPORTED, "HVC #1");
    }

    #[test]
    fn a_non_protected_vms_other_calls_go_to_kserv() {
        let mut l = loaded();
        l.kind = VmKind::NonProtected;
        for fid in [
            0xC600_1234u64,
            0x8600_0042,
            0x8000_0001,
            0x8600_FF01,
            0x8600_0000,
        ] {
            l.ctx.x[..4].copy_from_slice(&[fid, 1, 2, 3]);
            let r = step(&mut l, &sync(ec::HVC64 << 26, 0));
            assert_eq!(r, Step::Exit, "{fid:#x}");
            assert_eq!(l.report.reason, exit::PSCI);
            assert_eq!((l.report.data, l.report.args), (fid, [1, 2, 3]));
            l.ctx.complete(7);
            assert_eq!(l.ctx.x[..4], [7, 1, 2, 3]);
        }
        // Still KCore's: SMCCC_VERSION, pKVM's calls, 64-bit ids.
        l.ctx.x[0] = 0x8000_0000;
        assert_eq!(step(&mut l, &sync(ec::HVC64 << 26, 0)), Step::Resume);
        assert_eq!(l.ctx.x[0], smccc::VERSION_1_1);
        l.ctx.x[..4].copy_from_slice(&[0xC600_0002, 0, 0, 0]);
        assert_eq!(step(&mut l, &sync(ec::HVC64 << 26, 0)), Step::Resume);
        assert_eq!(l.ctx.x[0], 4096);
        l.ctx.x[0] = 0xC500_0020 | 1 << 32;
        assert_eq!(step(&mut l, &sync(ec::HVC64 << 26, 0)), Step::Resume);
        assert_eq!(l.ctx.x[0], NOT_SUPPORTED);
    }

    #[test]
    fn psci_goes_to_kserv_with_its_arguments_only() {
        let mut l = loaded();
        l.ctx.x = [0x77; 31];
        l.ctx.x[0] = 0x8400_0000;
        l.ctx.x[1] = 1;
        l.ctx.x[2] = 2;
        l.ctx.x[3] = 3;
        assert_eq!(step(&mut l, &sync(ec::HVC64 << 26, 0)), Step::Exit);
        assert_eq!(l.report.reason, exit::PSCI);
        assert_eq!((l.report.data, l.report.args), (0x8400_0000, [1, 2, 3]));
        l.ctx.complete(0x1_0000);
        assert_eq!(l.ctx.x[0], 0x1_0000);
        assert_eq!(l.ctx.x[4], 0x77);
        // CPU_ON: recorded by KCore, then KServ.
        l.ctx.x[0] = psci::CPU_ON_64 as u64;
        l.ctx.x[1] = mpidr_of(1);
        l.ctx.x[2] = 0x4000_2000;
        l.ctx.x[3] = 42;
        assert_eq!(
            step(&mut l, &sync(ec::HVC64 << 26, 0)),
            Step::CpuOn {
                target: 1,
                entry: 0x4000_2000,
                context: 42
            }
        );
        l.ctx.x[0] = psci::CPU_ON_64 as u64;
        l.ctx.x[1] = 0x10;
        assert_eq!(step(&mut l, &sync(ec::HVC64 << 26, 0)), Step::Resume);
        assert_eq!(l.ctx.x[0], psci::INVALID_PARAMETERS);
        l.ctx.x[0] = psci::CPU_OFF as u64;
        assert_eq!(step(&mut l, &sync(ec::HVC64 << 26, 0)), Step::Exit);
        assert_ne!(l.ctx.status & status::OFF, 0);
        // KVM's PSCI 0.1 ids: forwarded too; CPU_ON's arguments whole,
        // though the id looks like an SMC32 one.
        l.ctx.x[0] = psci::v0_1::CPU_ON as u64;
        l.ctx.x[1] = mpidr_of(1);
        l.ctx.x[2] = 0x1_4000_2000;
        l.ctx.x[3] = 1 << 40;
        assert_eq!(
            step(&mut l, &sync(ec::HVC64 << 26, 0)),
            Step::CpuOn {
                target: 1,
                entry: 0x1_4000_2000,
                context: 1 << 40
            }
        );
        l.ctx.status &= !status::OFF;
        l.ctx.x[0] = psci::v0_1::CPU_OFF as u64;
        assert_eq!(step(&mut l, &sync(ec::HVC64 << 26, 0)), Step::Exit);
        assert_ne!(l.ctx.status & status::OFF, 0);
        assert_eq!(l.report.data, u64::from(psci::v0_1::CPU_OFF));
        l.ctx.x[0] = psci::v0_1::MIGRATE as u64 + 1;
        assert_eq!(
            step(&mut l, &sync(ec::HVC64 << 26, 0)),
            Step::Resume,
            "past the range"
        );
    }

    #[test]
    fn system_registers() {
        let mut l = loaded();
        let sys = |op0: u64, op1: u64, crn: u64, crm: u64, op2: u64, rt: u64, read: bool| {
            ec::SYS64 << 26
                | 1 << 25
                | op0 << 20
                | op2 << 17
                | op1 << 14
                | crn << 10
                | rt << 5
                | crm << 1
                | read as u64
        };
        l.ctx.x[4] = 0x0100_0000_0002_0003;
        assert_eq!(
            step(&mut l, &sync(sys(3, 0, 12, 11, 5, 4, false), 0)),
            Step::Exit
        );
        assert_eq!(
            (l.report.reason, l.report.data),
            (exit::SGI, 0x0100_0000_0002_0003)
        );
        assert_eq!(l.ctx.pc, 4);
        // MDSCR_EL1 round trip, PMU reads as zero, OS lock status.
        l.ctx.x[6] = 0x8000;
        step(&mut l, &sync(sys(2, 0, 0, 2, 2, 6, false), 0));
        l.ctx.x[7] = 1;
        step(&mut l, &sync(sys(2, 0, 0, 2, 2, 7, true), 0));
        assert_eq!(l.ctx.x[7], 0x8000);
        l.ctx.x[8] = 5;
        step(&mut l, &sync(sys(3, 3, 9, 12, 0, 8, true), 0));
        assert_eq!(l.ctx.x[8], 0, "PMCR_EL0 reads as zero");
        l.ctx.x[1] = 1;
        step(&mut l, &sync(sys(2, 0, 1, 0, 4, 1, false), 0));
        step(&mut l, &sync(sys(2, 0, 1, 1, 4, 9, true), 0));
        assert_eq!(l.ctx.x[9], 0b1010);
        // KServ sees the same OSLSR_EL1 and may change only OSLK.
        assert_eq!(l.ctx.get_reg(reg::sys::OSLSR_EL1), Some(0b1010));
        assert!(
            l.ctx.set_reg(reg::sys::OSLSR_EL1, 0).is_err(),
            "OSLM is fixed"
        );
        assert!(l.ctx.set_reg(reg::sys::OSLSR_EL1, 0b1000).is_ok());
        step(&mut l, &sync(sys(2, 0, 1, 1, 4, 9, true), 0));
        assert_eq!(l.ctx.x[9], 0b1000, "unlocked by KServ");
        // Breakpoint and watchpoint registers are the vCPU's: the guest's
        // writes reach KServ's view and the hardware's (once enabled).
        l.ctx.x[12] = 0xffff_0000_1000;
        step(&mut l, &sync(sys(2, 0, 0, 3, 4, 12, false), 0)); // DBGBVR3_EL1
        l.ctx.x[12] = 0x1e7;
        step(&mut l, &sync(sys(2, 0, 0, 3, 5, 12, false), 0)); // DBGBCR3_EL1
        l.ctx.x[12] = 0x5;
        step(&mut l, &sync(sys(2, 0, 0, 15, 7, 12, false), 0)); // DBGWCR15_EL1
        step(&mut l, &sync(sys(2, 0, 0, 3, 4, 13, true), 0));
        assert_eq!(l.ctx.x[13], 0xffff_0000_1000);
        assert_eq!(l.ctx.get_reg(reg::sys::debug(13)), Some(0x1e7));
        assert_eq!(l.ctx.get_reg(reg::sys::debug(63)), Some(0x5));
        assert_eq!(l.ctx.get_reg(reg::sys::debug(1)), Some(0));
        assert!(l.ctx.set_reg(reg::sys::debug(1), 0x21).is_ok());
        step(&mut l, &sync(sys(2, 0, 0, 0, 5, 13, true), 0));
        assert_eq!(l.ctx.x[13], 0x21, "KServ's write reaches the guest");
        // MDCCINT_EL1 stays RAZ/WI.
        l.ctx.x[14] = 0x7;
        step(&mut l, &sync(sys(2, 0, 0, 2, 0, 14, false), 0));
        step(&mut l, &sync(sys(2, 0, 0, 2, 0, 14, true), 0));
        assert_eq!(l.ctx.x[14], 0);
        // Loaded only with debug exceptions enabled; the OS lock (still
        // clear here) disables them.
        l.ctx.set_sys(Sys::Mdscr, 0);
        assert_eq!(l.ctx.debug_to_load(&ALL16), None);
        l.ctx.set_sys(Sys::Mdscr, 1 << 15);
        let regs = l.ctx.debug_to_load(&ALL16).expect("MDE set");
        assert_eq!(
            (regs[12], regs[13], regs[63]),
            (0xffff_0000_1000, 0x1e7, 0x5)
        );
        assert_eq!(l.ctx.mdscr_to_load(), 1 << 15);
        // The OS lock disables them, and software step, in the hardware
        // only: the guest reads its MDSCR_EL1 unchanged.
        l.ctx.set_sys(Sys::Mdscr, 1 << 15 | 1 << 13 | 1 << 12 | 1);
        l.ctx.set_os_lock(true);
        assert_eq!(l.ctx.debug_to_load(&ALL16), None);
        assert_eq!(l.ctx.mdscr_to_load(), 1 << 12);
        step(&mut l, &sync(sys(2, 0, 0, 2, 2, 15, true), 0));
        assert_eq!(l.ctx.x[15], 1 << 15 | 1 << 13 | 1 << 12 | 1);
        l.ctx.set_os_lock(false);
        // An emulated instruction completes a step: PSTATE.SS clears.
        l.ctx.pstate |= 1 << 21;
        let pc = l.ctx.pc;
        step(&mut l, &sync(sys(2, 0, 0, 2, 2, 15, true), 0));
        assert_eq!((l.ctx.pc, l.ctx.pstate & 1 << 21), (pc + 4, 0));
        // ACTLR_EL1 reads as zero and takes writes.
        l.ctx.x[10] = 0x55;
        step(&mut l, &sync(sys(3, 0, 1, 0, 1, 10, true), 0));
        assert_eq!(l.ctx.x[10], 0);
        let pc = l.ctx.pc;
        step(&mut l, &sync(sys(3, 0, 1, 0, 1, 10, false), 0));
        assert_eq!(l.ctx.pc, pc + 4, "a write is ignored, not UNDEFINED");
        // The feature ID space reads as the guests' sanitised view.
        l.ids = crate::idregs::GuestIdRegs::sanitise(|_| u64::MAX);
        step(&mut l, &sync(sys(3, 0, 0, 4, 0, 10, true), 0));
        assert_eq!(Some(l.ctx.x[10]), l.ids.get(crate::idregs::ID_AA64PFR0_EL1));
        assert_eq!(l.ctx.x[10] & 0xFF, 0x11, "AArch64 only at EL0 and EL1");
        l.ctx.x[11] = 7;
        step(&mut l, &sync(sys(3, 0, 0, 4, 4, 11, true), 0));
        assert_eq!(l.ctx.x[11], 0, "ID_AA64ZFR0_EL1: no SVE");
        // An implementation-defined register: UNDEFINED in the guest.
        l.ctx.set_sys(Sys::Vbar, 0x8000);
        let pc = l.ctx.pc;
        step(&mut l, &sync(sys(3, 0, 15, 0, 0, 0, false), 0));
        assert_eq!(l.ctx.pc, 0x8200);
        assert_eq!(l.ctx.sys(Sys::ElrEl1), pc);
        assert_eq!(Esr(l.ctx.sys(Sys::Esr)).ec(), ec::UNKNOWN);
    }

    #[test]
    fn kservs_debugging_steps_and_reports_debug_exceptions() {
        use kcore_abi::reg::guest_debug::{ENABLE, SINGLE_STEP};
        let mut l = loaded();
        const SS: u64 = 1 << 21;
        // Esr of a software step completed at EL1 (EC 0x32), a BRK #5.
        let softstep = 0x32 << 26 | 1 << 25 | 0x22;
        let brk = 0x3C << 26 | 1 << 25 | 5;
        // Without KServ's debugging these never reach EL2: UNDEFINED.
        l.ctx.set_sys(Sys::Vbar, 0x8000);
        step(&mut l, &sync(softstep, 0));
        assert_eq!(l.ctx.pc, 0x8200);
        assert!(l.ctx.set_reg(reg::GUEST_DEBUG, 8).is_err(), "unknown bit");
        assert!(
            l.ctx
                .set_reg(reg::GUEST_DEBUG, ENABLE | SINGLE_STEP)
                .is_ok()
        );
        assert_eq!(l.ctx.get_reg(reg::GUEST_DEBUG), Some(ENABLE | SINGLE_STEP));
        assert!(l.ctx.host_debug());
        // Each entry steps one instruction: SS set in SPSR and MDSCR; the
        // guest's own SS (clear) is kept.
        l.ctx.pc = 0x1000;
        assert_eq!(l.ctx.pstate_to_load() & SS, SS);
        assert_eq!(l.ctx.mdscr_to_load() & 1, 1);
        // The step exception: the hardware's SPSR.SS is clear then.
        l.ctx.finish_pstate(l.ctx.pstate_to_load() & !SS);
        assert_eq!(l.ctx.pstate & SS, 0, "the guest's own SS");
        assert_eq!(step(&mut l, &sync(softstep, 0)), Step::Exit);
        assert_eq!(l.ctx.pstate_to_load() & SS, SS, "a new step next");
        assert_eq!(
            (l.report.reason, l.report.data, l.report.addr),
            (exit::DEBUG, softstep, 0)
        );
        assert_eq!(step(&mut l, &sync(brk, 0)), Step::Exit);
        assert_eq!((l.report.reason, l.report.data), (exit::DEBUG, brk));
        // An emulated instruction completes the step: the next entry takes
        // the step exception before the next instruction (SS clear), once.
        // MRS x3, MDSCR_EL1 (op0 2, op2 2, CRm 2), emulated.
        let mrs_mdscr = 0x18 << 26 | 1 << 25 | 2 << 20 | 2 << 17 | 3 << 5 | 2 << 1 | 1;
        step(&mut l, &sync(mrs_mdscr, 0));
        assert_eq!(l.ctx.pc, 0x1004);
        assert_eq!(l.ctx.pstate_to_load() & SS, 0);
        // An interrupt before the pending step exception keeps it pending;
        // the exception itself ends it.
        l.ctx.finish_pstate(l.ctx.pstate_to_load());
        assert_eq!(l.ctx.pstate_to_load() & SS, 0);
        step(&mut l, &sync(softstep, 0));
        assert_eq!(l.ctx.pstate_to_load() & SS, SS);
        // An interrupt before the stepped instruction ran: SS stays set.
        l.ctx.finish_pstate(l.ctx.pstate_to_load());
        assert_eq!(l.ctx.pstate_to_load() & SS, SS);
        // A guest's reset by CPU_ON keeps KServ's debugging.
        l.ctx.status |= status::BOOT;
        assert!(l.ctx.start_from_boot(0));
        assert!(l.ctx.host_debug());
        // Off again: the guest's MDSCR alone.
        assert!(l.ctx.set_reg(reg::GUEST_DEBUG, 0).is_ok());
        assert!(!l.ctx.host_debug());
        assert_eq!(l.ctx.mdscr_to_load(), 0);
    }

    /// A CPU with 16 of each, all context-aware.
    const ALL16: DebugCounts = DebugCounts::from_dfr0(0xF0F0_F000);

    #[test]
    fn kservs_hardware_breakpoints_replace_the_guests_for_the_run() {
        use kcore_abi::reg::guest_debug::{ENABLE, USE_HW};
        // QEMU's cortex-a72: 6 breakpoints, 4 watchpoints.
        let a72 = DebugCounts::from_dfr0(0x1030_5106);
        let mut l = loaded();
        let host = |i: u64| reg::HOST_DEBUG_REG + i;
        assert_eq!(
            l.ctx.set_reg(reg::GUEST_DEBUG, USE_HW),
            Err(kcore_abi::Error::InvalidParameter),
            "USE_HW needs ENABLE"
        );
        // The guest's own breakpoint 0, which must survive.
        l.ctx.dbg[0] = 0x4000;
        l.ctx.dbg[1] = 0x1e7;
        // KServ's: an EL1/EL0 breakpoint 0, a breakpoint 1 that would match
        // at EL2 (HMC), a watchpoint 3, and a breakpoint 7 the CPU lacks.
        let bcr = 1 | 3 << 1 | 0xF << 5;
        let wcr = 1 | 3 << 1 | 3 << 3 | 0xFF << 5;
        for (i, v) in [
            (0, 0xffff_8000_0010_0000),
            (1, bcr),
            (5, bcr | 1 << 13),
            (14, 0xffff_8000_0020_0008),
            (15, wcr),
            (29, bcr),
        ] {
            assert_eq!(l.ctx.set_reg(host(i), v), Ok(()));
        }
        assert_eq!(l.ctx.get_reg(host(5)), Some(bcr | 1 << 13), "as written");
        assert_eq!(l.ctx.set_reg(reg::GUEST_DEBUG, ENABLE | USE_HW), Ok(()));
        assert_eq!(l.ctx.get_reg(reg::GUEST_DEBUG), Some(ENABLE | USE_HW));
        assert!(l.ctx.host_debug(), "debug exceptions to EL2 (TDE)");
        // Breakpoints and watchpoints enabled in the hardware only (MDE);
        // the guest's MDSCR_EL1 and registers are untouched.
        assert_eq!(l.ctx.mdscr_to_load(), 1 << 15);
        assert_eq!(l.ctx.sys(Sys::Mdscr), 0);
        let regs = l.ctx.debug_to_load(&a72).expect("KServ's");
        assert_eq!((regs[0], regs[1]), (0xffff_8000_0010_0000, bcr));
        assert_eq!(regs[5] & 1, 0, "HMC: disabled");
        assert_eq!((regs[14], regs[15]), (0xffff_8000_0020_0008, wcr));
        assert_eq!(regs[29], 0, "breakpoint 7: none on this CPU");
        assert_eq!((l.ctx.dbg[0], l.ctx.dbg[1]), (0x4000, 0x1e7));
        // A breakpoint hit and a watchpoint hit exit to KServ, the latter
        // with the address.
        let bkpt = ec::BKPT_LOW << 26 | 1 << 25 | 0x22;
        let wpt = ec::WATCHPT_LOW << 26 | 1 << 25 | 1 << 6 | 0x22;
        let hit = |esr, far| GuestExit {
            far,
            ..sync(esr, 0)
        };
        assert_eq!(step(&mut l, &hit(bkpt, 0x1234)), Step::Exit);
        assert_eq!(
            (l.report.reason, l.report.data, l.report.addr),
            (exit::DEBUG, bkpt, 0)
        );
        assert_eq!(step(&mut l, &hit(wpt, 0xffff_8000_0020_0008)), Step::Exit);
        assert_eq!(
            (l.report.reason, l.report.data, l.report.addr),
            (exit::DEBUG, wpt, 0xffff_8000_0020_0008)
        );
        // A guest's reset keeps KServ's registers and mode.
        l.ctx.status |= status::BOOT;
        assert!(l.ctx.start_from_boot(0));
        assert_eq!(l.ctx.get_reg(reg::GUEST_DEBUG), Some(ENABLE | USE_HW));
        assert_eq!(l.ctx.get_reg(host(1)), Some(bcr));
        // Off: the guest's registers again, loaded only as its MDSCR says.
        l.ctx.dbg[0] = 0x4000;
        assert_eq!(l.ctx.set_reg(reg::GUEST_DEBUG, ENABLE), Ok(()));
        assert_eq!(l.ctx.debug_to_load(&a72), None);
        l.ctx.set_sys(Sys::Mdscr, 1 << 15);
        assert_eq!(l.ctx.debug_to_load(&a72).map(|r| r[0]), Some(0x4000));
    }

    #[test]
    fn a_pending_serror_is_kservs_to_set_and_read_until_taken() {
        use kcore_abi::reg::serror::{IDS, PENDING};
        let mut l = loaded();
        assert_eq!(l.ctx.get_reg(reg::SERROR), Some(0));
        for bad in [1, PENDING | 1 << 25, PENDING | 1 << 40] {
            assert_eq!(
                l.ctx.set_reg(reg::SERROR, bad),
                Err(kcore_abi::Error::InvalidParameter),
                "{bad:#x}"
            );
        }
        assert_eq!(l.ctx.set_reg(reg::SERROR, PENDING | 0x1234), Ok(()));
        assert_eq!(l.ctx.get_reg(reg::SERROR), Some(PENDING | 0x1234));
        assert_ne!(l.ctx.status & status::VSERROR, 0, "HCR_EL2.VSE next entry");
        // A physical SError meanwhile keeps KServ's syndrome.
        let serror = GuestExit {
            kind: ExitKind::SError,
            ..sync(0, 0)
        };
        step(&mut l, &serror);
        assert_eq!(l.ctx.get_reg(reg::SERROR), Some(PENDING | 0x1234));
        assert_eq!(l.ctx.set_reg(reg::SERROR, 0), Ok(()));
        assert_eq!(l.ctx.get_reg(reg::SERROR), Some(0));
        // KCore's own forwarded SError: an implementation-defined one.
        step(&mut l, &serror);
        assert_eq!(l.ctx.get_reg(reg::SERROR), Some(PENDING | IDS));
        // Survives the context page.
        let back = VcpuContext::from_words(&l.ctx.to_words());
        assert_eq!(back.get_reg(reg::SERROR), Some(PENDING | IDS));
    }

    #[test]
    fn an_injected_external_data_abort_enters_the_guests_el1() {
        const EL1H_MASKED: u64 = 0x3C5;
        let mut l = loaded();
        l.ctx.set_sys(Sys::Vbar, 0x8000);
        // An MMIO read at EL1h from 0x1000: KCore steps over it at the exit.
        l.ctx.pc = 0x1000;
        l.ctx.pstate = 0x6000_0005; // EL1h, Z and C, unmasked
        let e = sync(dabt(false, 2, false, 3, false), 0x900_0010);
        assert_eq!(step(&mut l, &e), Step::Exit);
        assert_eq!(l.ctx.pc, 0x1004);
        assert_eq!(
            l.ctx.set_reg(reg::INJECT_DABT, 1),
            Err(kcore_abi::Error::InvalidParameter)
        );
        assert_eq!(l.ctx.set_reg(reg::INJECT_DABT, 0), Ok(()));
        // EC 0x25 (same EL), IL, FSC 0x10 (synchronous external abort);
        // FAR the access's; the vector of the current EL with SP_ELx.
        assert_eq!(l.ctx.sys(Sys::Esr), 0x25 << 26 | 1 << 25 | 0x10);
        assert_eq!(l.ctx.sys(Sys::Far), e.far);
        assert_eq!(l.ctx.sys(Sys::ElrEl1), 0x1000, "the faulting instruction");
        assert_eq!(l.ctx.sys(Sys::SpsrEl1), 0x6000_0005);
        assert_eq!(
            (l.ctx.pc, l.ctx.pstate),
            (0x8200, EL1H_MASKED),
            "SPAN: PAN kept"
        );
        assert_eq!(l.ctx.pending, Pending::None, "the read never completes");
        // From EL0, not after an MMIO exit: EC 0x24, the lower-EL vector,
        // ELR the PC as it is.
        l.ctx.pc = 0x2000;
        l.ctx.pstate = 0;
        assert_eq!(l.ctx.set_reg(reg::INJECT_DABT, 0), Ok(()));
        assert_eq!(l.ctx.sys(Sys::Esr), 0x24 << 26 | 1 << 25 | 0x10);
        assert_eq!((l.ctx.sys(Sys::ElrEl1), l.ctx.pc), (0x2000, 0x8400));
        // From EL1t: the current EL with SP_EL0 vector.
        l.ctx.pc = 0x3000;
        l.ctx.pstate = 0x3C4;
        assert_eq!(l.ctx.set_reg(reg::INJECT_DABT, 0), Ok(()));
        assert_eq!((l.ctx.sys(Sys::ElrEl1), l.ctx.pc), (0x3000, 0x8000));
        assert_eq!(l.ctx.get_reg(reg::INJECT_DABT), None, "write-only");
    }

    #[test]
    fn wfi_wfe_and_interrupts() {
        let mut l = loaded();
        assert_eq!(step(&mut l, &sync(ec::WFX << 26, 0)), Step::Exit);
        assert_eq!(
            (l.report.reason, l.report.flags, l.ctx.pc),
            (exit::WFI, 0, 4)
        );
        step(&mut l, &sync(ec::WFX << 26 | 1, 0));
        assert_eq!(l.report.flags, exit_flags::WFE);
        let irq = GuestExit {
            kind: ExitKind::Irq,
            esr: 0x1234,
            far: 0x5678,
            hpfar: 0,
            fp: false,
        };
        assert_eq!(step(&mut l, &irq), Step::Exit);
        let timer = GuestExit {
            kind: ExitKind::GuestTimer,
            ..irq
        };
        let before = l.report;
        assert_eq!(
            step(&mut l, &timer),
            Step::Resume,
            "no round trip for its own timer"
        );
        assert_eq!(l.report, before);
        assert_eq!(
            l.report,
            ExitReport {
                reason: exit::IRQ,
                ..ExitReport::default()
            }
        );
    }
}
