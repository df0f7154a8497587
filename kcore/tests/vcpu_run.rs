//! `host_vcpu_run` and the vCPU register calls, on a scripted guest CPU:
//! the first run of a protected vCPU takes only a PC inside its verified
//! image and `x0`, its registers are KServ's to neither read nor set after
//! that, exits expose only what DESIGN.md §1 allows, the run page is read
//! once and checked, a guest's CPU_ON decides where its target starts, and
//! KServ's virtual interrupts are checked before they reach list registers.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on an unexpected error"
)]

mod common;

use common::{FIRST_HOST_PFN, RAM, World, check_invariants, host_walk, hvc, world, world_with};
use ed25519_compact::{KeyPair, Seed};
use kcore::addr::Pa;
use kcore::exception::ec;
use kcore::host::{Direct, Regs, run_result};
use kcore::hw::PhysMemory;
use kcore::image::VerifyKey;
use kcore::vcpu::{
    CTX_WORDS, ExitKind, GuestExit, Loaded, RunArgs, VcpuContext, mpidr_of, run_vcpu_in,
};
use kcore::vgic::{LrState, PTIMER_PPI, TIMER_PPI};
use kcore_abi::run::{self, exit, exit_flags, irq};
use kcore_abi::{Error, HypercallId as H, psci, reg, vm_flags};
use kcore_arch::host_cpu::ScriptedGuest;

const IMAGE_PFN: u64 = FIRST_HOST_PFN + 32;
const SIG_PFN: u64 = FIRST_HOST_PFN + 60;
const RUN_PFN: u64 = FIRST_HOST_PFN + 61;
const SPARE_PFN: u64 = FIRST_HOST_PFN + 70;
const GFN: u64 = 0x80;
const IMAGE_LEN: usize = 2 * 4096;
const ENTRY: u64 = (GFN << 12) + 0x40;
const MMIO_GFN: u64 = 0x9000;

struct Vm {
    w: World,
    h: u64,
    /// The one simulated CPU's loaded vCPU, kept between runs as the EL2
    /// glue keeps it: every test runs through the kept-context path.
    cpu: Loaded,
    /// The pages each write-fault classification of the last
    /// [`racing_run`] changed.
    changed: Vec<Vec<u64>>,
}

/// A VM with `vcpus` vCPUs (protected: with a verified image at `GFN`).
fn vm(protected: bool, vcpus: u64) -> Vm {
    vm_in(world(), protected, vcpus)
}

/// [`vm`] in the world `w`.
fn vm_in(mut w: World, protected: bool, vcpus: u64) -> Vm {
    let kp = KeyPair::from_seed(Seed::new([3; 32]));
    w.host
        .mem_mut()
        .set_verify_key(VerifyKey::new(*kp.pk).unwrap());
    let flags = if protected { vm_flags::PROTECTED } else { 0 };
    let r = hvc(&mut w, H::HostCreateVm, &[flags, 0, 4, FIRST_HOST_PFN, 16]);
    assert_eq!(r[0], 0);
    let h = r[1];
    for i in 0..vcpus {
        assert_eq!(hvc(&mut w, H::HostCreateVcpu, &[h, i])[0], 0);
    }
    let img: Vec<u8> = (0..IMAGE_LEN).map(|i| (i * 5) as u8).collect();
    w.hw.write(IMAGE_PFN << 12, &img);
    for i in 0..2 {
        assert_eq!(
            hvc(&mut w, H::HostDonateGuest, &[h, IMAGE_PFN + i, GFN + i])[0],
            0
        );
    }
    if protected {
        let block = common::signature_block(&kp, &img, &[(MMIO_GFN, 16)]);
        w.hw.write(SIG_PFN << 12, &block);
        let r = hvc(
            &mut w,
            H::HostVerifyImage,
            &[h, GFN, IMAGE_LEN as u64, SIG_PFN],
        );
        assert_eq!(r[0], 0);
    }
    // A protected VM's MMIO only once verified, inside its manifest.
    assert_eq!(hvc(&mut w, H::HostDeclareMmio, &[h, MMIO_GFN, 1])[0], 0);
    Vm {
        w,
        h,
        cpu: Loaded::empty(),
        changed: Vec::new(),
    }
}

fn sync(esr: u64, ipa: u64) -> GuestExit {
    GuestExit {
        kind: ExitKind::Sync,
        esr,
        far: 0xffff_8000_0000_0000 | (ipa & 0xFFF),
        hpfar: (ipa >> 12) << 4,
        fp: false,
    }
}

fn irq_exit() -> GuestExit {
    GuestExit {
        kind: ExitKind::Irq,
        esr: 0,
        far: 0,
        hpfar: 0,
        fp: false,
    }
}

/// A data abort with ISV: translation fault, level 3.
fn dabt(write: bool, sas: u64, rt: u64) -> u64 {
    ec::DABT_LOW << 26
        | 1 << 25
        | 1 << 24
        | sas << 22
        | rt << 16
        | 1 << 15
        | (write as u64) << 6
        | 7
}

fn run_page(v: &mut Vm, completion: u64, irqs: &[u64]) {
    let mut words = [0u64; run::ENTRY_WORDS];
    words[run::COMPLETION] = completion;
    words[run::IRQ_COUNT] = irqs.len() as u64;
    words[run::IRQS..run::IRQS + irqs.len()].copy_from_slice(irqs);
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    v.w.hw.write(RUN_PFN << 12, &bytes);
}

fn exit_words(v: &World) -> Vec<u64> {
    let mut out = vec![0u64; run::WORDS];
    v.hw.read_words(Pa(RUN_PFN << 12), &mut out);
    out
}

/// One `host_vcpu_run` through the HVC dispatcher and the run loop, as the
/// EL2 glue does it. Returns `(x0, x1)`.
fn run(v: &mut Vm, vcpu: u64, g: &mut ScriptedGuest) -> (u64, u64) {
    let mut regs: Regs = [0; 31];
    regs[0] = H::HostVcpuRun.function_id() as u64;
    regs[1..4].copy_from_slice(&[v.h, vcpu, RUN_PFN]);
    let a = v.w.host.handle_hvc(0, &mut regs, &mut v.w.hw).unwrap();
    assert_eq!(
        a,
        RunArgs {
            handle: v.h,
            vcpu,
            run_pfn: RUN_PFN
        }
    );
    let mut d = Direct {
        host: &mut v.w.host,
        hw: &mut v.w.hw,
    };
    let r = run_vcpu_in(&mut d, g, a, &mut v.cpu);
    run_result(r, &mut regs);
    check_invariants(&v.w).unwrap();
    (regs[0], regs[1])
}

fn set(v: &mut Vm, vcpu: u64, id: u64, val: u64) -> u64 {
    hvc(&mut v.w, H::HostVcpuSetReg, &[v.h, vcpu, id, val])[0]
}

fn get(v: &mut Vm, vcpu: u64, id: u64) -> [u64; 4] {
    hvc(&mut v.w, H::HostVcpuGetReg, &[v.h, vcpu, id])
}

#[test]
fn protected_first_run_takes_only_a_pc_in_the_image_and_x0() {
    let mut v = vm(true, 1);
    let denied = Error::Denied.to_x0();
    assert_eq!(set(&mut v, 0, reg::x(1), 5), denied, "x1");
    assert_eq!(set(&mut v, 0, reg::sys::VBAR_EL1, 5), denied);
    assert_eq!(set(&mut v, 0, reg::PSTATE, 0x3c5), denied);
    // Nor the pseudo-registers of a plain vCPU's power and GIC interface.
    for id in [reg::POWER_OFF, reg::ICH_VMCR, reg::ICH_AP0R] {
        assert_eq!(set(&mut v, 0, id, 0), denied, "set {id:#x} before the run");
    }
    // Nor KServ's debugging, its breakpoints, an SError or an abort.
    for (id, val) in [
        (
            reg::GUEST_DEBUG,
            reg::guest_debug::ENABLE | reg::guest_debug::USE_HW,
        ),
        (reg::HOST_DEBUG_REG + 1, 0x1e7),
        (reg::SERROR, reg::serror::PENDING),
        (reg::INJECT_DABT, 0),
    ] {
        assert_eq!(set(&mut v, 0, id, val), denied, "set {id:#x}");
    }
    assert_eq!(get(&mut v, 0, reg::PC)[0], denied);
    // A PC outside the verified image: refused at run time, nothing runs.
    assert_eq!(set(&mut v, 0, reg::PC, (GFN << 12) + IMAGE_LEN as u64), 0);
    run_page(&mut v, 0, &[]);
    let mut g = ScriptedGuest::new(4);
    assert_eq!(run(&mut v, 0, &mut g), (denied, 0));
    assert!(g.entries.is_empty());
    assert_eq!(set(&mut v, 0, reg::PC, ENTRY), 0);
    assert_eq!(set(&mut v, 0, reg::X0, 0xB007), 0);
    g.then_do(irq_exit(), |ctx, _| ctx.x[9] = 0x5EC2E7);
    assert_eq!(run(&mut v, 0, &mut g), (0, exit::IRQ));
    let (ctx, _) = g.entries[0];
    let mut expect = VcpuContext::reset(0);
    expect.pc = ENTRY;
    expect.x[0] = 0xB007;
    assert_eq!(ctx.x, expect.x, "every other register is zero");
    assert_eq!(
        (ctx.pc, ctx.pstate, ctx.sys),
        (expect.pc, expect.pstate, expect.sys)
    );
    // After the first run: nothing in, nothing out.
    for id in [
        reg::PC,
        reg::X0,
        reg::x(9),
        reg::sys::SCTLR_EL1,
        reg::V_LO,
        reg::POWER_OFF,
        reg::ICH_VMCR,
        reg::ICH_AP1R,
        reg::sys::OSLSR_EL1,
    ] {
        assert_eq!(set(&mut v, 0, id, 1), denied, "set {id:#x}");
        let r = get(&mut v, 0, id);
        assert_eq!(r, [denied, 0, 0, 0], "get {id:#x}");
    }
    // The exit page says an interrupt happened, and nothing else.
    let out = exit_words(&v.w);
    assert_eq!(out[run::EXIT_REASON], exit::IRQ);
    assert_eq!(&out[run::EXIT_FLAGS..run::EXIT_TIMER_CTL], &[0; 7]);
    assert_eq!(out[run::EXIT_TIMER_DEADLINE], u64::MAX);
    // The registers survive: the next run resumes where the guest was.
    g.then(irq_exit());
    assert_eq!(run(&mut v, 0, &mut g), (0, exit::IRQ));
    assert_eq!(g.entries[1].0.x[9], 0x5EC2E7);
}

#[test]
fn a_protected_vm_runs_only_once_verified() {
    let mut w = world();
    let r = hvc(
        &mut w,
        H::HostCreateVm,
        &[vm_flags::PROTECTED, 0, 1, FIRST_HOST_PFN, 8],
    );
    assert_eq!(hvc(&mut w, H::HostCreateVcpu, &[r[1], 0])[0], 0);
    let mut v = Vm {
        w,
        h: r[1],
        cpu: Loaded::empty(),
        changed: Vec::new(),
    };
    run_page(&mut v, 0, &[]);
    let mut g = ScriptedGuest::new(4);
    assert_eq!(run(&mut v, 0, &mut g).0, Error::Denied.to_x0());
    assert_eq!(run(&mut v, 1, &mut g).0, Error::NotFound.to_x0());
}

#[test]
fn non_protected_registers_are_kservs() {
    let mut v = vm(false, 1);
    for (id, val) in [
        (reg::x(7), 7),
        (reg::PC, 0x4000_0000),
        (reg::sys::VBAR_EL1, 0x4000_8000),
        (reg::V_HI + 3, 0xABCD),
        (reg::FPCR, 0x0300_0000),
    ] {
        assert_eq!(set(&mut v, 0, id, val), 0, "{id:#x}");
        assert_eq!(get(&mut v, 0, id)[..2], [0, val], "{id:#x}");
    }
    assert_eq!(
        set(&mut v, 0, reg::PSTATE, 0x3c9),
        Error::InvalidParameter.to_x0(),
        "EL2h"
    );
    assert_eq!(
        set(&mut v, 0, reg::PSTATE, 0x10),
        Error::InvalidParameter.to_x0(),
        "AArch32"
    );
    assert_eq!(get(&mut v, 0, 0xFFFF)[0], Error::NotFound.to_x0());
    assert_eq!(get(&mut v, 0, reg::sys::MPIDR_EL1)[1], mpidr_of(0));
    run_page(&mut v, 0, &[]);
    let mut g = ScriptedGuest::new(4);
    g.then_do(irq_exit(), |ctx, _| ctx.x[7] = 70);
    assert_eq!(run(&mut v, 0, &mut g), (0, exit::IRQ));
    assert_eq!(g.entries[0].0.pc, 0x4000_0000);
    assert_eq!(get(&mut v, 0, reg::x(7))[1], 70);
}

/// A non-protected VM whose two vCPUs start at 0x4000_0000, an empty run
/// page, and a guest CPU with 4 list registers.
fn two_plain_vcpus() -> (Vm, ScriptedGuest) {
    let mut v = vm(false, 2);
    for vcpu in 0..2 {
        assert_eq!(set(&mut v, vcpu, reg::PC, 0x4000_0000), 0);
    }
    run_page(&mut v, 0, &[]);
    (v, ScriptedGuest::new(4))
}

#[test]
fn a_kept_context_is_used_only_while_kcore_left_its_page_alone() {
    let (mut v, mut g) = two_plain_vcpus();
    g.then_do(irq_exit(), |ctx, _| ctx.x[5] = 0x55);
    assert_eq!(run(&mut v, 0, &mut g), (0, exit::IRQ));
    assert_eq!(get(&mut v, 0, reg::x(5))[1], 0x55, "the page was written");
    let page = v.cpu.ctx_page.raw();

    // Nothing wrote the page since: the next run here uses the copy, so
    // a change behind KCore's back (which only KCore can make) is not
    // read. This is what saves the read.
    let mut ctx = [0u64; 1];
    v.w.hw.read_words(Pa(page + 5 * 8), &mut ctx);
    assert_eq!(ctx[0], 0x55, "x5 is word 5 of the context");
    v.w.hw.write_words(Pa(page + 5 * 8), &[0x66]);
    g.then(irq_exit());
    run(&mut v, 0, &mut g);
    assert_eq!(g.entries[1].0.x[5], 0x55, "entered from the kept copy");

    // KServ's register write renews the page's version: read again.
    assert_eq!(set(&mut v, 0, reg::x(5), 0x77), 0);
    g.then(irq_exit());
    run(&mut v, 0, &mut g);
    assert_eq!(g.entries[2].0.x[5], 0x77, "set_reg seen");

    // Another vCPU on this CPU, then the first again: its own registers.
    g.then_do(irq_exit(), |ctx, _| ctx.x[5] = 0x11);
    run(&mut v, 1, &mut g);
    g.then(irq_exit());
    run(&mut v, 0, &mut g);
    assert_eq!(g.entries[4].0.x[5], 0x77, "vCPU 0's context, not vCPU 1's");

    // vCPU 0 runs on another CPU (a fresh `Loaded`) in between: this CPU's
    // copy is out of date and must not be used.
    let mut other = std::mem::replace(&mut v.cpu, Loaded::empty());
    g.then_do(irq_exit(), |ctx, _| ctx.x[5] = 0x99);
    run(&mut v, 0, &mut g);
    std::mem::swap(&mut v.cpu, &mut other);
    g.then(irq_exit());
    run(&mut v, 0, &mut g);
    assert_eq!(g.entries[6].0.x[5], 0x99, "the other CPU's run seen");

    // A guest's CPU_ON writes its target's page: vCPU 1 turns itself off
    // here, vCPU 0 starts it again from another CPU, and vCPU 1 then starts
    // here where the guest said, not where this CPU's copy left it.
    g.then_do(sync(ec::HVC64 << 26, 0), |ctx, _| ctx.x[0] = 0x8400_0002);
    assert_eq!(run(&mut v, 1, &mut g), (0, exit::PSCI));
    std::mem::swap(&mut v.cpu, &mut other);
    g.then_do(sync(ec::HVC64 << 26, 0), |ctx, _| {
        ctx.x[0] = 0xC400_0003;
        ctx.x[1] = mpidr_of(1);
        ctx.x[2] = 0x4000_2000;
        ctx.x[3] = 0xC0;
    });
    assert_eq!(run(&mut v, 0, &mut g), (0, exit::PSCI));
    std::mem::swap(&mut v.cpu, &mut other);
    g.then(irq_exit());
    assert_eq!(run(&mut v, 1, &mut g), (0, exit::IRQ));
    let (ctx, _) = g.entries[g.entries.len() - 1];
    assert_eq!((ctx.pc, ctx.x[0]), (0x4000_2000, 0xC0), "CPU_ON seen");
    check_invariants(&v.w).unwrap();
}

#[test]
fn kservs_register_access_comes_after_a_recorded_cpu_on() {
    let (mut v, mut g) = two_plain_vcpus();
    let cpu_on = |g: &mut ScriptedGuest| {
        g.then_do(sync(ec::HVC64 << 26, 0), |ctx, _| {
            ctx.x[0] = 0xC400_0003;
            ctx.x[1] = mpidr_of(1);
            ctx.x[2] = 0x4000_2000;
            ctx.x[3] = 0xC0;
        });
    };
    // vCPU 1 never ran: the guest's CPU_ON is recorded, and KServ's reads
    // see the start it asked for before vCPU 1 runs (as KVM applies a
    // pending PSCI reset before a ONE_REG access).
    assert_eq!(set(&mut v, 1, reg::x(0), 0x1234), 0);
    cpu_on(&mut g);
    assert_eq!(run(&mut v, 0, &mut g), (0, exit::PSCI));
    assert_eq!(get(&mut v, 1, reg::PC)[1], 0x4000_2000);
    assert_eq!(get(&mut v, 1, reg::x(0))[1], 0xC0);
    // A write after the start stays: the start is not applied twice.
    assert_eq!(set(&mut v, 1, reg::x(1), 0x77), 0);
    g.then(irq_exit());
    assert_eq!(run(&mut v, 1, &mut g), (0, exit::IRQ));
    let (ctx, _) = g.entries[g.entries.len() - 1];
    assert_eq!((ctx.pc, ctx.x[0], ctx.x[1]), (0x4000_2000, 0xC0, 0x77));

    // vCPU 1 has run: a CPU_ON for it is ALREADY_ON, unless KServ marked it
    // off (KVM_SET_MP_STATE) through the POWER_OFF pseudo-register.
    assert_eq!(get(&mut v, 1, reg::POWER_OFF)[1], 0);
    cpu_on(&mut g);
    g.then(irq_exit());
    assert_eq!(run(&mut v, 0, &mut g), (0, exit::IRQ));
    let (ctx, _) = g.entries[g.entries.len() - 1];
    assert_eq!(ctx.x[0], psci::ALREADY_ON);
    assert_eq!(
        set(&mut v, 1, reg::POWER_OFF, 2),
        Error::InvalidParameter.to_x0()
    );
    assert_eq!(set(&mut v, 1, reg::POWER_OFF, 1), 0);
    assert_eq!(get(&mut v, 1, reg::POWER_OFF)[1], 1);
    cpu_on(&mut g);
    assert_eq!(run(&mut v, 0, &mut g), (0, exit::PSCI), "taken this time");
    assert_eq!(get(&mut v, 1, reg::PC)[1], 0x4000_2000);
    assert_eq!(get(&mut v, 1, reg::POWER_OFF)[1], 0, "started again");
    check_invariants(&v.w).unwrap();
}

#[test]
fn the_guest_reads_kcores_id_registers_through_the_run_path() {
    let (mut v, mut g) = two_plain_vcpus();
    let pfr0 = kcore::idregs::ID_AA64PFR0_EL1;
    // MRS x3, ID_AA64PFR0_EL1: op0 3, op1 0, CRn 0, CRm 4, op2 0, read.
    let mrs = ec::SYS64 << 26 | 1 << 25 | 3 << 20 | 4 << 1 | 3 << 5 | 1;
    // Two views whose ID_AA64PFR0_EL1 differ (FP, then GIC).
    for view in [0x0001_0000u64, 0x0100_0000] {
        v.w.host
            .mem_mut()
            .set_guest_id_regs(kcore::idregs::GuestIdRegs::sanitise(|_| view));
        let want = v.w.host.mem().guest_id_regs().get(pfr0);
        g.then(sync(mrs, 0));
        g.then(irq_exit());
        assert_eq!(run(&mut v, 0, &mut g), (0, exit::IRQ));
        let (ctx, _) = g.entries[g.entries.len() - 1];
        assert_eq!(Some(ctx.x[3]), want, "the view as it is now, {view:#x}");
        let hvc = hvc(&mut v.w, H::HostGuestIdReg, &[reg::SYSREG | pfr0]);
        assert_eq!((hvc[0], Some(hvc[1])), (0, want), "KServ reads the same");
    }
}

#[test]
fn kserv_saves_and_restores_a_plain_guests_gic_cpu_interface() {
    let (mut v, mut g) = two_plain_vcpus();
    // VPMR 0xf0, VBPR0 2, VBPR1 3, VEOIM, VENG1.
    let vmcr = 0xf0 << 24 | 2 << 21 | 3 << 18 | 1 << 9 | 1 << 1;
    assert_eq!(set(&mut v, 0, reg::ICH_VMCR, vmcr), 0);
    assert_eq!(
        set(&mut v, 0, reg::ICH_VMCR, 1 << 5),
        Error::InvalidParameter.to_x0(),
        "a reserved bit"
    );
    assert_eq!(set(&mut v, 0, reg::ICH_AP1R, 1 << 30), 0);
    assert_eq!(
        set(&mut v, 0, reg::ICH_AP0R + 3, 1 << 32),
        Error::InvalidParameter.to_x0()
    );
    g.then_do(irq_exit(), |ctx, _| ctx.vgic.vmcr |= 1);
    assert_eq!(run(&mut v, 0, &mut g), (0, exit::IRQ));
    let (ctx, _) = g.entries[0];
    assert_eq!(
        (ctx.vgic.vmcr, ctx.vgic.ap1r[0]),
        (vmcr, 1 << 30),
        "entered with it"
    );
    assert_eq!(
        get(&mut v, 0, reg::ICH_VMCR)[1],
        vmcr | 1,
        "the guest's change read back"
    );
    check_invariants(&v.w).unwrap();
}

#[test]
fn the_page_gets_the_fp_registers_whenever_they_may_have_changed() {
    let (mut v, mut g) = two_plain_vcpus();
    // The page of the vCPU that ran last.
    let page = |v: &Vm| {
        let mut w = [0u64; CTX_WORDS];
        v.w.hw.read_words(v.cpu.ctx_page, &mut w);
        w
    };

    // The guest uses FP/SIMD: the put writes it.
    g.then_do(irq_exit(), |ctx, _| {
        ctx.v[6] = 0xF00D;
        ctx.fpcr = 0x0300_0000;
    });
    run(&mut v, 0, &mut g);
    assert_eq!(page(&v), v.cpu.ctx.to_words(), "the page is the context");
    assert_eq!(get(&mut v, 0, reg::V_LO + 3)[1], 0xF00D);

    // Runs that leave FP/SIMD alone, one of them with it live all the same,
    // then one that changes it again: the page follows every time.
    g.then_do(irq_exit(), |ctx, _| ctx.x[1] = 1);
    run(&mut v, 0, &mut g);
    assert_eq!(page(&v), v.cpu.ctx.to_words());
    let mut live = irq_exit();
    live.fp = true;
    g.then(live);
    run(&mut v, 0, &mut g);
    assert_eq!(page(&v), v.cpu.ctx.to_words());
    g.then_do(irq_exit(), |ctx, _| ctx.v[6] = 0xBEEF);
    run(&mut v, 0, &mut g);
    assert_eq!(page(&v), v.cpu.ctx.to_words());
    assert_eq!(get(&mut v, 0, reg::V_LO + 3)[1], 0xBEEF);

    // vCPU 1 uses FP/SIMD, turns itself off, vCPU 0 starts it again: it
    // starts with FP/SIMD zero here, the CPU that holds its old copy, and
    // its page says so.
    g.then_do(irq_exit(), |ctx, _| ctx.v[6] = 0xDEAD);
    run(&mut v, 1, &mut g);
    g.then_do(sync(ec::HVC64 << 26, 0), |ctx, _| ctx.x[0] = 0x8400_0002);
    assert_eq!(run(&mut v, 1, &mut g), (0, exit::PSCI));
    let mut other = std::mem::replace(&mut v.cpu, Loaded::empty());
    g.then_do(sync(ec::HVC64 << 26, 0), |ctx, _| {
        ctx.x[0] = 0xC400_0003;
        ctx.x[1] = mpidr_of(1);
        ctx.x[2] = 0x4000_2000;
    });
    assert_eq!(run(&mut v, 0, &mut g), (0, exit::PSCI));
    std::mem::swap(&mut v.cpu, &mut other);
    g.then(irq_exit());
    run(&mut v, 1, &mut g);
    let (ctx, _) = g.entries[g.entries.len() - 1];
    assert_eq!(
        (ctx.pc, ctx.v[6]),
        (0x4000_2000, 0),
        "CPU_ON resets FP/SIMD"
    );
    assert_eq!(page(&v), v.cpu.ctx.to_words(), "and the page has it");
    assert_eq!(get(&mut v, 1, reg::V_LO + 3)[1], 0);
    check_invariants(&v.w).unwrap();
}

#[test]
fn mmio_exits_carry_one_register_and_reads_complete_into_one() {
    let mut v = vm(true, 1);
    assert_eq!(set(&mut v, 0, reg::PC, ENTRY), 0);
    run_page(&mut v, 0, &[]);
    let mut g = ScriptedGuest::new(4);
    let mmio = (MMIO_GFN << 12) + 0x104;
    g.then_do(sync(dabt(true, 2, 5), mmio), |ctx, _| {
        ctx.x = [0x1111_2222_3333_4444; 31];
    });
    assert_eq!(run(&mut v, 0, &mut g), (0, exit::MMIO));
    let out = exit_words(&v.w);
    assert_eq!(out[run::EXIT_ADDR], mmio);
    assert_eq!(out[run::EXIT_WIDTH], 4);
    assert_eq!(out[run::EXIT_FLAGS], exit_flags::WRITE);
    assert_eq!(out[run::EXIT_DATA], 0x3333_4444, "x5, clamped to 32 bits");
    // A read into x3: nothing of the guest's goes out, the completion
    // comes back into x3 only, and the PC moves past the load.
    g.then(sync(dabt(false, 0, 3), mmio));
    run_page(&mut v, 0, &[]);
    assert_eq!(run(&mut v, 0, &mut g), (0, exit::MMIO));
    let out = exit_words(&v.w);
    assert_eq!((out[run::EXIT_DATA], out[run::EXIT_FLAGS]), (0, 0));
    assert_eq!(out[run::EXIT_WIDTH], 1);
    run_page(&mut v, 0x1FF, &[]);
    g.then(irq_exit());
    run(&mut v, 0, &mut g);
    let (ctx, _) = g.entries[2];
    assert_eq!(ctx.x[3], 0xFF, "ldrb zero-extends the completion");
    assert_eq!(ctx.x[4], 0x1111_2222_3333_4444);
    assert_eq!(ctx.pc, ENTRY + 8);
    // A completion on a run that follows no read changes nothing.
    run_page(&mut v, 0x77, &[]);
    g.then(irq_exit());
    run(&mut v, 0, &mut g);
    assert_eq!(g.entries[3].0.x, ctx.x);
}

#[test]
fn memory_faults_show_only_the_page_and_retry() {
    let mut v = vm(true, 1);
    assert_eq!(set(&mut v, 0, reg::PC, ENTRY), 0);
    run_page(&mut v, 0, &[]);
    let mut g = ScriptedGuest::new(4);
    g.then_do(sync(dabt(true, 3, 2), 0x0012_3456), |ctx, _| {
        ctx.x[2] = 0x5EC2E7;
        ctx.pc = ENTRY + 0x10;
    });
    assert_eq!(run(&mut v, 0, &mut g), (0, exit::MEM_FAULT));
    let out = exit_words(&v.w);
    assert_eq!(out[run::EXIT_ADDR], 0x0012_3000);
    assert_eq!(out[run::EXIT_FLAGS], exit_flags::WRITE);
    assert_eq!(out[run::EXIT_DATA], 0);
    assert!(!out.contains(&0x5EC2E7));
    // KServ donates the page; the guest retries the same instruction.
    assert_eq!(
        hvc(&mut v.w, H::HostDonateGuest, &[v.h, SPARE_PFN, 0x123])[0],
        0
    );
    assert!(
        v.w.hw.synced().contains(&Pa(SPARE_PFN << 12)),
        "a donated page is cleaned to the point of coherency before the guest maps it"
    );
    g.then(irq_exit());
    run(&mut v, 0, &mut g);
    assert_eq!(g.entries[1].0.pc, ENTRY + 0x10);
}

#[test]
fn the_guests_cpu_on_decides_where_its_target_starts() {
    let mut v = vm(true, 2);
    assert_eq!(set(&mut v, 0, reg::PC, ENTRY), 0);
    // KServ tries to choose vCPU 1's start itself (inside the image), and
    // to start it before the guest asked: a protected VM's secondaries take
    // nothing from KServ and start only through the guest's CPU_ON.
    let denied = Error::Denied.to_x0();
    assert_eq!(set(&mut v, 1, reg::PC, ENTRY + 0x100), denied);
    assert_eq!(set(&mut v, 1, reg::X0, 0xBAD), denied);
    run_page(&mut v, 0, &[]);
    let mut g = ScriptedGuest::new(4);
    assert_eq!(run(&mut v, 1, &mut g).0, denied, "vCPU 1 before CPU_ON");
    assert!(g.entries.is_empty());
    check_invariants(&v.w).unwrap();
    g.then_do(sync(ec::HVC64 << 26, 0), |ctx, _| {
        ctx.x[0] = 0xC400_0003;
        ctx.x[1] = mpidr_of(1);
        ctx.x[2] = ENTRY + 0x200;
        ctx.x[3] = 0xC0FFEE;
        ctx.x[4] = 0x5EC2E7;
    });
    assert_eq!(run(&mut v, 0, &mut g), (0, exit::PSCI));
    let out = exit_words(&v.w);
    assert_eq!(out[run::EXIT_DATA], 0xC400_0003);
    assert_eq!(
        out[run::EXIT_ARGS..run::EXIT_ARGS + 3],
        [mpidr_of(1), ENTRY + 0x200, 0xC0FFEE]
    );
    assert!(!out.contains(&0x5EC2E7));
    run_page(&mut v, 0, &[]);
    g.then(irq_exit());
    assert_eq!(run(&mut v, 1, &mut g), (0, exit::IRQ));
    let (ctx, _) = g.entries[1];
    assert_eq!((ctx.pc, ctx.x[0]), (ENTRY + 0x200, 0xC0FFEE));
    assert_eq!(ctx.mpidr, mpidr_of(1));
    // vCPU 0 gets KServ's PSCI answer in x0 only.
    g.then(irq_exit());
    run_page(&mut v, 0, &[]);
    run(&mut v, 0, &mut g);
    assert_eq!(g.entries[2].0.x[0], 0);
    assert_eq!(g.entries[2].0.x[4], 0x5EC2E7);
    // CPU_ON of a running vCPU: ALREADY_ON from KCore, KServ not involved.
    g.then_do(sync(ec::HVC64 << 26, 0), |ctx, _| {
        ctx.x[0] = 0xC400_0003;
        ctx.x[1] = mpidr_of(1);
    });
    g.then(irq_exit());
    run(&mut v, 0, &mut g);
    assert_eq!(g.entries[4].0.x[0], -4i64 as u64);
    // CPU_OFF: vCPU 1 stays off until a CPU_ON; KServ cannot run it.
    g.then_do(sync(ec::HVC64 << 26, 0), |ctx, _| ctx.x[0] = 0x8400_0002);
    run_page(&mut v, 0, &[]);
    assert_eq!(run(&mut v, 1, &mut g), (0, exit::PSCI));
    assert_eq!(run(&mut v, 1, &mut g).0, Error::Denied.to_x0());
}

#[test]
fn kservs_interrupts_are_checked_and_their_state_reported() {
    let mut v = vm(true, 1);
    assert_eq!(set(&mut v, 0, reg::PC, ENTRY), 0);
    let mut g = ScriptedGuest::new(4);
    // Refused: hardware-mapped, the timer's PPI, more than the list
    // registers, a malformed state. Nothing runs, nothing changes.
    for (irqs, e) in [
        (
            vec![irq::encode(40, 0xa0, true, irq::PENDING) | irq::HW | 40 << 44],
            Error::Denied,
        ),
        (
            vec![irq::encode(TIMER_PPI, 0xa0, true, irq::PENDING)],
            Error::Denied,
        ),
        (
            (1..=5)
                .map(|i| irq::encode(i, 0xa0, true, irq::PENDING))
                .collect(),
            Error::InvalidParameter,
        ),
        (vec![irq::encode(3, 0, true, 0)], Error::InvalidParameter),
    ] {
        run_page(&mut v, 0, &irqs);
        assert_eq!(run(&mut v, 0, &mut g).0, e.to_x0(), "{irqs:x?}");
    }
    assert!(g.entries.is_empty());
    assert_eq!(set(&mut v, 0, reg::PC, ENTRY), 0, "still never ran");
    let sgi = irq::encode(1, 0xa0, true, irq::PENDING);
    let spi = irq::encode(40, 0x80, true, irq::PENDING);
    run_page(&mut v, 0, &[sgi, spi]);
    g.then_do(irq_exit(), |_, lrs| {
        lrs.lrs[0].state = LrState::Active;
        lrs.lrs[1].state = LrState::Invalid;
    });
    assert_eq!(run(&mut v, 0, &mut g), (0, exit::IRQ));
    let lrs = g.entries[0].1;
    assert_eq!(lrs.len, 2);
    assert_eq!((lrs.lrs[0].vintid, lrs.lrs[0].hw), (1, None));
    assert_eq!(lrs.lrs[1].priority, 0x80);
    let out = exit_words(&v.w);
    assert_eq!(out[run::EXIT_IRQ_COUNT], 2);
    assert_eq!(irq::state(out[run::EXIT_IRQS]), irq::ACTIVE);
    assert_eq!(irq::vintid(out[run::EXIT_IRQS]), 1);
    assert_eq!(irq::state(out[run::EXIT_IRQS + 1]), 0, "completed");
    // KServ may fill every list register (the timer, idle here, needs none).
    let four: Vec<u64> = (1..=4)
        .map(|i| irq::encode(i, 0xa0, true, irq::ACTIVE))
        .collect();
    run_page(&mut v, 0, &four);
    g.then_do(irq_exit(), |_, lrs| lrs.lrs[3].state = LrState::Invalid);
    assert_eq!(run(&mut v, 0, &mut g), (0, exit::IRQ));
    assert_eq!(g.entries[1].1.len, 4);
    let out = exit_words(&v.w);
    assert_eq!(out[run::EXIT_IRQ_COUNT], 4);
    assert_eq!(irq::state(out[run::EXIT_IRQS + 2]), irq::ACTIVE);
    assert_eq!(irq::state(out[run::EXIT_IRQS + 3]), 0, "completed");
}

#[test]
fn the_guest_timer_is_delivered_by_kcore() {
    let mut v = vm(false, 1);
    run_page(&mut v, 0, &[]);
    let mut g = ScriptedGuest::new(4);
    g.now = 1000;
    g.then_do(irq_exit(), |ctx, _| {
        ctx.cntv_cval = 2000;
        ctx.cntv_ctl = 1;
    });
    run(&mut v, 0, &mut g);
    let out = exit_words(&v.w);
    assert_eq!(out[run::EXIT_TIMER_CTL], 1);
    assert_eq!(
        out[run::EXIT_TIMER_DEADLINE],
        2000,
        "KServ can wake the vCPU then"
    );
    g.now = 1999;
    g.then(irq_exit());
    run(&mut v, 0, &mut g);
    assert_eq!(g.entries[1].1.len, 0);
    g.now = 2000;
    g.then(irq_exit());
    run(&mut v, 0, &mut g);
    let lr = g.entries[2].1.lrs[0];
    assert_eq!(
        (lr.vintid, lr.hw, lr.state),
        (TIMER_PPI, Some(TIMER_PPI), LrState::Pending)
    );
}

/// The run page's entry half with `flags` and KServ's interrupts `irqs`.
fn run_page_with_flags(v: &mut Vm, flags: u64, irqs: &[u64]) {
    run_page(v, 0, irqs);
    v.w.hw.write(RUN_PFN << 12, &flags.to_le_bytes());
}

#[test]
fn the_physical_timer_is_delivered_by_kcore_and_is_each_vcpus_own() {
    let (mut v, mut g) = two_plain_vcpus();
    g.now = 1000;
    g.then_do(irq_exit(), |ctx, _| {
        (ctx.cntp_ctl, ctx.cntp_cval) = (1, 1500);
        (ctx.cntv_ctl, ctx.cntv_cval) = (1, 3000);
    });
    run(&mut v, 0, &mut g);
    let out = exit_words(&v.w);
    assert_eq!(out[run::EXIT_TIMER_CTL], 1, "the virtual timer's");
    assert_eq!(
        out[run::EXIT_TIMER_DEADLINE],
        1500,
        "the earlier deadline: KServ wakes the vCPU then"
    );
    assert_eq!(
        out[run::EXIT_TIMER_DEADLINES..][..2],
        [3000, 1500],
        "each timer's own, for the PPIs' line levels"
    );
    // vCPU 1's physical timer is its own: off, nothing delivered, no
    // deadline; vCPU 0's state stays in vCPU 0.
    g.now = 2000;
    g.then(irq_exit());
    run(&mut v, 1, &mut g);
    assert_eq!((g.entries[1].0.cntp_ctl, g.entries[1].0.cntp_cval), (0, 0));
    assert_eq!(g.entries[1].1.len, 0);
    assert_eq!(exit_words(&v.w)[run::EXIT_TIMER_DEADLINE], u64::MAX);
    assert_eq!(
        exit_words(&v.w)[run::EXIT_TIMER_DEADLINES..][..2],
        [u64::MAX; 2]
    );
    // vCPU 0's fired meanwhile: delivered as PPI 30, behind PPI 30.
    g.then(irq_exit());
    run(&mut v, 0, &mut g);
    assert_eq!(
        (g.entries[2].0.cntp_ctl, g.entries[2].0.cntp_cval),
        (1, 1500)
    );
    assert_eq!(g.entries[2].1.len, 1);
    let lr = g.entries[2].1.lrs[0];
    assert_eq!(
        (lr.vintid, lr.hw, lr.state),
        (PTIMER_PPI, Some(PTIMER_PPI), LrState::Pending)
    );
    // KServ's registers of a plain vCPU, each vCPU's own.
    assert_eq!(get(&mut v, 0, reg::sys::CNTP_CVAL_EL0)[..2], [0, 1500]);
    assert_eq!(get(&mut v, 1, reg::sys::CNTP_CVAL_EL0)[..2], [0, 0]);
    assert_eq!(set(&mut v, 1, reg::sys::CNTP_CTL_EL0, 0xFF), 0);
    assert_eq!(
        get(&mut v, 1, reg::sys::CNTP_CTL_EL0)[1],
        3,
        "ENABLE, IMASK"
    );
    assert_eq!(get(&mut v, 0, reg::sys::CNTP_CTL_EL0)[1], 1);
    // At the INTID KServ names for it.
    use kcore_abi::run::entry_flags::{PTIMER_SHIFT, TIMER_INTID_SHIFT};
    run_page_with_flags(&mut v, 21 << TIMER_INTID_SHIFT << PTIMER_SHIFT, &[]);
    g.then(irq_exit());
    run(&mut v, 0, &mut g);
    let lr = g.entries[3].1.lrs[0];
    assert_eq!((lr.vintid, lr.hw), (21, Some(PTIMER_PPI)));
}

#[test]
fn the_timers_intids_are_distinct_ppis_and_kcores() {
    use kcore_abi::run::entry_flags::{PTIMER_SHIFT, TIMER_INTID_SHIFT};
    let (mut v, mut g) = two_plain_vcpus();
    let vt = |i: u64| i << TIMER_INTID_SHIFT;
    let pt = |i: u64| i << TIMER_INTID_SHIFT << PTIMER_SHIFT;
    let bad = Error::InvalidParameter.to_x0();
    for (flags, what) in [
        (vt(20) | pt(20), "one INTID for both"),
        (pt(27), "the virtual timer's default"),
        (vt(30), "the physical timer's default"),
        (pt(40), "no PPI"),
        (pt(15), "an SGI"),
        (1 << 33, "undefined bit"),
    ] {
        run_page_with_flags(&mut v, flags, &[]);
        assert_eq!(run(&mut v, 0, &mut g).0, bad, "{what}");
    }
    assert!(g.entries.is_empty());
    // Swapped is fine.
    run_page_with_flags(&mut v, vt(30) | pt(27), &[]);
    assert_eq!(run(&mut v, 0, &mut g), (0, exit::IRQ));
    // KServ may hand over neither timer's INTID nor PPIs 27 and 30.
    let denied = Error::Denied.to_x0();
    for i in [20, 21, 27, 30] {
        let w = irq::encode(i, 0xa0, true, irq::PENDING);
        run_page_with_flags(&mut v, vt(20) | pt(21), &[w]);
        assert_eq!(run(&mut v, 0, &mut g).0, denied, "{i}");
    }
    let w = irq::encode(22, 0xa0, true, irq::PENDING);
    run_page_with_flags(&mut v, vt(20) | pt(21), &[w]);
    assert_eq!(run(&mut v, 0, &mut g), (0, exit::IRQ));
}

#[test]
fn a_protected_vcpus_physical_timer_is_not_kservs() {
    let mut v = vm(true, 1);
    let denied = Error::Denied.to_x0();
    for id in [reg::sys::CNTP_CTL_EL0, reg::sys::CNTP_CVAL_EL0] {
        assert_eq!(set(&mut v, 0, id, 0), denied, "{id:#x} before the run");
    }
    assert_eq!(set(&mut v, 0, reg::PC, ENTRY), 0);
    run_page(&mut v, 0, &[]);
    let mut g = ScriptedGuest::new(4);
    g.now = 1000;
    const SECRET: u64 = 0x5EC0_0000_1234_5678;
    // Masked: no deadline either.
    g.then_do(irq_exit(), |ctx, _| {
        (ctx.cntp_ctl, ctx.cntp_cval) = (3, SECRET)
    });
    assert_eq!(run(&mut v, 0, &mut g), (0, exit::IRQ));
    let out = exit_words(&v.w);
    assert!(!out.contains(&SECRET), "{out:x?}");
    assert!(!out.contains(&3), "its control");
    assert_eq!(out[run::EXIT_TIMER_DEADLINE], u64::MAX);
    for id in [reg::sys::CNTP_CTL_EL0, reg::sys::CNTP_CVAL_EL0] {
        assert_eq!(get(&mut v, 0, id)[0], denied, "get {id:#x}");
        assert_eq!(set(&mut v, 0, id, 0), denied, "set {id:#x}");
    }
    // Unmasked, KServ learns when it is due (to wake the vCPU), as it does
    // for the virtual timer, and KCore delivers it.
    g.then_do(irq_exit(), |ctx, _| {
        (ctx.cntp_ctl, ctx.cntp_cval) = (1, 1200)
    });
    run(&mut v, 0, &mut g);
    assert_eq!(exit_words(&v.w)[run::EXIT_TIMER_DEADLINE], 1200);
    g.now = 1200;
    g.then(irq_exit());
    run(&mut v, 0, &mut g);
    assert_eq!(g.entries[2].1.lrs[0].hw, Some(PTIMER_PPI));
}

#[test]
fn the_run_page_must_be_kservs_and_well_formed() {
    let mut v = vm(false, 1);
    let mut g = ScriptedGuest::new(4);
    let mut regs: Regs = [0; 31];
    for (pfn, e) in [
        (RAM >> 12, Error::Denied),      // KCore's
        (IMAGE_PFN, Error::Denied),      // the guest's
        (FIRST_HOST_PFN, Error::Denied), // the VM's table pool
        (0x10, Error::InvalidParameter), // not RAM
    ] {
        let a = RunArgs {
            handle: v.h,
            vcpu: 0,
            run_pfn: pfn,
        };
        let mut d = Direct {
            host: &mut v.w.host,
            hw: &mut v.w.hw,
        };
        run_result(run_vcpu_in(&mut d, &mut g, a, &mut v.cpu), &mut regs);
        assert_eq!(regs[0], e.to_x0(), "{pfn:#x}");
    }
    // An entry flag this ABI does not define.
    v.w.hw.write(RUN_PFN << 12, &(1u64 << 20).to_le_bytes());
    assert_eq!(
        run(&mut v, 0, &mut g).0,
        Error::InvalidParameter.to_x0(),
        "flags"
    );
    run_page(&mut v, 0, &[]);
    v.w.hw.write(
        (RUN_PFN << 12) + 8 * run::IRQ_COUNT as u64,
        &17u64.to_le_bytes(),
    );
    assert_eq!(
        run(&mut v, 0, &mut g).0,
        Error::InvalidParameter.to_x0(),
        "count"
    );
    assert!(g.entries.is_empty());
}

#[test]
fn a_running_vcpu_keeps_its_vm_alive() {
    let mut v = vm(false, 1);
    run_page(&mut v, 0, &[]);
    let a = RunArgs {
        handle: v.h,
        vcpu: 0,
        run_pfn: RUN_PFN,
    };
    let mut l = v.w.host.mem_mut().vcpu_load(a, 4, &mut v.w.hw).unwrap();
    assert_eq!(
        hvc(&mut v.w, H::HostTeardownVm, &[v.h])[0],
        Error::Busy.to_x0()
    );
    assert_eq!(get(&mut v, 0, reg::PC)[0], Error::Busy.to_x0());
    assert_eq!(set(&mut v, 0, reg::PC, 0), Error::Busy.to_x0());
    let mut g = ScriptedGuest::new(4);
    assert_eq!(
        run(&mut v, 0, &mut g).0,
        Error::Busy.to_x0(),
        "one CPU at a time"
    );
    v.w.host.mem_mut().vcpu_put(&mut l, &mut v.w.hw);
    assert_eq!(hvc(&mut v.w, H::HostTeardownVm, &[v.h])[0], 0);
    // The context page is the VM's until reclaimed, then scrubbed.
    let page = l.ctx_page.raw() >> 12;
    assert_eq!(hvc(&mut v.w, H::HostReclaimPage, &[v.h, page])[0], 0);
    assert!(v.w.hw.is_zero(page << 12));
    check_invariants(&v.w).unwrap();
}

/// The run page, while a vCPU runs with KCore's lock dropped: another CPU
/// offers it as a VM's root, a table-pool page (where vCPU contexts come
/// from too), a protected VM's memory and a page shared into a VM; each is
/// `Busy` until the last vCPU using it is put back, and the put writes the
/// exit into the run page, nowhere else.
#[test]
fn the_run_page_is_pinned_while_a_guest_runs() {
    let mut v = vm(false, 2);
    run_page(&mut v, 0, &[]);
    // A protected VM on another pool, to offer the page to.
    let pool = FIRST_HOST_PFN + 128;
    let r = hvc(
        &mut v.w,
        H::HostCreateVm,
        &[vm_flags::PROTECTED, 0, 1, pool, 8],
    );
    assert_eq!(r[0], 0);
    let other = r[1];
    let load = |v: &mut Vm, vcpu: u64| {
        let a = RunArgs {
            handle: v.h,
            vcpu,
            run_pfn: RUN_PFN,
        };
        v.w.host.mem_mut().vcpu_load(a, 4, &mut v.w.hw).unwrap()
    };
    let busy = Error::Busy.to_x0();
    let offers = |v: &mut Vm| -> Vec<u64> {
        vec![
            // A new VM's (one-page, 36-bit IPA) root.
            hvc(&mut v.w, H::HostCreateVm, &[0, 36, 1, RUN_PFN, 1])[0],
            // A table-pool page of either VM.
            hvc(&mut v.w, H::HostDonateVmPool, &[other, RUN_PFN])[0],
            hvc(&mut v.w, H::HostDonateVmPool, &[v.h, RUN_PFN])[0],
            // The protected VM's memory.
            hvc(&mut v.w, H::HostDonateGuest, &[other, RUN_PFN, 0x40])[0],
            // Shared into the running VM itself.
            hvc(&mut v.w, H::HostShareGuest, &[v.h, RUN_PFN, 0x41, 0])[0],
        ]
    };
    let owner = |v: &mut Vm| hvc(&mut v.w, H::HostPageOwner, &[RUN_PFN]);
    let pinned = kcore_abi::PageOwner::HostPinned as u64;

    let mut l0 = load(&mut v, 0);
    assert_eq!(owner(&mut v), [0, pinned, 0, 1]);
    check_invariants(&v.w).unwrap();
    // Two vCPUs on two CPUs may share one run page: two pins.
    let mut l1 = load(&mut v, 1);
    assert_eq!(owner(&mut v), [0, pinned, 0, 2]);
    check_invariants(&v.w).unwrap();
    assert_eq!(offers(&mut v), [busy; 5]);
    // KServ itself may still read and write it (the shim's exit page).
    assert!(
        v.w.host
            .mem()
            .owners()
            .host_may_map_range(kcore::addr::MemRange::new(RUN_PFN << 12, 4096).unwrap())
    );

    l0.report.reason = exit::MMIO;
    l0.report.data = 0x00e0_0000_4000_0741; // what a forged block descriptor looks like
    v.w.host.mem_mut().vcpu_put(&mut l0, &mut v.w.hw);
    assert_eq!(exit_words(&v.w)[run::EXIT_DATA], 0x00e0_0000_4000_0741);
    assert_eq!(owner(&mut v), [0, pinned, 0, 1]);
    check_invariants(&v.w).unwrap();
    assert_eq!(offers(&mut v), [busy; 5], "still pinned by vCPU 1");

    v.w.host.mem_mut().vcpu_put(&mut l1, &mut v.w.hw);
    assert_eq!(owner(&mut v), [0, kcore_abi::PageOwner::Host as u64, 0, 0]);
    assert_eq!(v.w.host.mem().broken_invariants(), 0);
    check_invariants(&v.w).unwrap();
    // Unpinned, it is KServ's to give again.
    assert_eq!(
        hvc(&mut v.w, H::HostDonateGuest, &[other, RUN_PFN, 0x40])[0],
        0
    );
    check_invariants(&v.w).unwrap();
}

/// KServ's `SYSTEM_RESET` (or `SYSTEM_OFF`) with a protected VM alive and
/// one of its vCPUs running on another CPU: before the firmware gets the
/// call, every VM is torn down and every page a VM holds — its memory, its
/// tables, its vCPU contexts — is zero, since RAM survives a reset.
#[test]
fn system_reset_leaves_no_vm_data_in_ram() {
    use kcore::exception::TrapState;
    use kcore::ownership::PageState;
    use kcore::vm::VmState;
    use kcore_arch::host_cpu::FakeFirmware;

    let mut v = vm(true, 2);
    assert_eq!(set(&mut v, 0, reg::PC, ENTRY), 0);
    run_page(&mut v, 0, &[]);
    assert!(!v.w.hw.is_zero(IMAGE_PFN << 12), "the image is in RAM");
    let a = RunArgs {
        handle: v.h,
        vcpu: 0,
        run_pfn: RUN_PFN,
    };
    let mut l = v.w.host.mem_mut().vcpu_load(a, 4, &mut v.w.hw).unwrap();
    const SYSTEM_RESET: u64 = 0x8400_0009;
    let mut regs: Regs = [0; 31];
    regs[0] = SYSTEM_RESET;
    let smc = TrapState {
        esr: ec::SMC64 << 26 | 1 << 25,
        far: 0,
        hpfar: 0,
        elr: 0xffff_8000_0810_0000,
        spsr: 0x3c5,
        vbar_el1: 0,
        sctlr_el1: 0,
    };
    // The firmware refuses, so what KCore left behind can be looked at.
    let mut fw = FakeFirmware {
        answer: -3i64 as u64,
        calls: Vec::new(),
    };
    v.w.host
        .handle_trap(0, &smc, &mut regs, &mut v.w.hw, &mut v.w.alloc, &mut fw);
    assert_eq!(fw.calls, [(SYSTEM_RESET as u32, [0; 3])]);
    let mut vm_pages = 0;
    for (pfn, s) in v.w.host.mem().owners().iter() {
        if matches!(s, PageState::Guest { .. } | PageState::VmTable { .. }) {
            vm_pages += 1;
            assert!(v.w.hw.is_zero(pfn.0 << 12), "{pfn:?} ({s:?}) not scrubbed");
        }
    }
    assert!(vm_pages > 16, "memory, tables and contexts: {vm_pages}");
    assert!(v.w.hw.is_zero(IMAGE_PFN << 12));
    let (_, vm) = v.w.host.mem().vms().lookup(v.h).unwrap();
    assert_eq!(vm.state, VmState::Dying);
    // Until the guest still out on the other CPU is put back, its VM's pages
    // stay: the put writes its context page.
    let ctx = l.ctx_page.raw() >> 12;
    assert_eq!(
        hvc(&mut v.w, H::HostReclaimPage, &[v.h, ctx])[0],
        Error::Busy.to_x0()
    );
    // It exits (its stage 2 is gone) and is put back; then the pages come
    // back, scrubbed.
    v.w.host.mem_mut().vcpu_put(&mut l, &mut v.w.hw);
    check_invariants(&v.w).unwrap();
    assert_eq!(hvc(&mut v.w, H::HostReclaimPage, &[v.h, ctx])[0], 0);
    assert!(v.w.hw.is_zero(ctx << 12), "scrubbed at reclaim");
    let mut g = ScriptedGuest::new(4);
    assert_eq!(run(&mut v, 0, &mut g).0, Error::Denied.to_x0(), "dying");
    assert!(g.entries.is_empty());
}

/// `SYSTEM_OFF` on a board with no firmware (the spin-table backend) while
/// another CPU runs a protected vCPU: KCore drops its lock while the guest
/// runs, so the call can come before the run's load, between the load and
/// the put, after the put, or after that CPU's next trap. In every order:
/// every later trap from KServ, on either CPU, parks it (a run asked for
/// after the call never loads); a put that was due still completes, writing
/// only the vCPU's context page and its pinned run page; KServ's stage 2
/// maps nothing afterwards, no VM page is KServ's, every page a VM held is
/// scrubbed but the context page the put wrote, and KCore's invariants hold.
#[test]
fn spin_table_system_off_against_a_running_vcpu_in_every_order() {
    use kcore::exception::TrapState;
    use kcore::host::Resume;
    use kcore::ownership::PageState;
    use kcore::psci::{Backend, PsciRelay};
    use kcore_arch::host_cpu::FakeFirmware;

    /// KServ's trap `t` on CPU `cpu`, as the EL2 glue hands it to KCore.
    fn trap_on(
        v: &mut Vm,
        cpu: usize,
        t: &TrapState,
        regs: &mut Regs,
        fw: &mut FakeFirmware,
    ) -> Resume {
        v.w.host
            .handle_trap(cpu, t, regs, &mut v.w.hw, &mut v.w.alloc, fw)
    }

    let trap = |esr: u64, hpfar: u64| TrapState {
        esr,
        far: 0,
        hpfar,
        elr: 0xffff_8000_0810_0000,
        spsr: 0x3c5,
        vbar_el1: 0,
        sctlr_el1: 0,
    };
    let smc = trap(ec::SMC64 << 26 | 1 << 25, 0);
    let hvc_trap = trap(ec::HVC64 << 26 | 1 << 25, 0);
    // A touch of KServ's own page, which faults once its stage 2 is gone.
    let own_fault = trap(ec::DABT_LOW << 26 | 1 << 25 | 7, SPARE_PFN << 4);
    for off_at in 0..4 {
        let relay = PsciRelay::new(&[0, 1, 2, 3], 0).with_backend(Backend::SpinTable);
        let mut v = vm_in(world_with(relay), true, 1);
        assert!(host_walk(&v.w, SPARE_PFN << 12).is_some(), "KServ's page");
        assert_eq!(set(&mut v, 0, reg::PC, ENTRY), 0);
        run_page(&mut v, 0, &[]);
        let mut fw = FakeFirmware::default();
        let mut loaded: Option<Loaded> = None;
        let mut parked = false;
        for step in 0..4 {
            if step == off_at {
                let mut regs: Regs = [0; 31];
                regs[0] = u64::from(psci::SYSTEM_OFF);
                let r = trap_on(&mut v, 0, &smc, &mut regs, &mut fw);
                assert_eq!(r, Resume::SystemOff, "off at {off_at}");
            }
            let mut regs: Regs = [0; 31];
            match step {
                // CPU 1 asks for the run.
                0 => {
                    regs[0] = H::HostVcpuRun.function_id() as u64;
                    regs[1..4].copy_from_slice(&[v.h, 0, RUN_PFN]);
                    match trap_on(&mut v, 1, &hvc_trap, &mut regs, &mut fw) {
                        Resume::RunVcpu(a) => {
                            assert!(off_at > 0, "a run after SYSTEM_OFF");
                            loaded = Some(v.w.host.mem_mut().vcpu_load(a, 4, &mut v.w.hw).unwrap());
                        }
                        Resume::Park => {
                            assert_eq!(off_at, 0);
                            parked = true;
                        }
                        other => panic!("the run: {other:?}"),
                    }
                }
                // The guest exits; the put writes the exit back: after
                // SYSTEM_OFF, into the context page and the run page only.
                1 => {
                    let pages: Vec<u64> =
                        v.w.host.mem().owners().iter().map(|(p, _)| p.0).collect();
                    let snapshot = |w: &World| -> Vec<Vec<u8>> {
                        pages
                            .iter()
                            .map(|p| {
                                let mut b = vec![0u8; 4096];
                                w.hw.read(Pa(p << 12), &mut b);
                                b
                            })
                            .collect()
                    };
                    let before = snapshot(&v.w);
                    if let Some(l) = loaded.as_mut() {
                        v.w.host.mem_mut().vcpu_put(l, &mut v.w.hw);
                    }
                    if off_at == 1 {
                        let ctx = loaded.as_ref().map(|l| l.ctx_page.raw() >> 12);
                        for (i, (a, b)) in before.iter().zip(snapshot(&v.w)).enumerate() {
                            let p = pages[i];
                            if *a != b {
                                assert!(
                                    p == RUN_PFN || Some(p) == ctx,
                                    "the put wrote page {p:#x}"
                                );
                            }
                        }
                    }
                }
                // Back in KServ on CPU 1: a hypercall, then a touch of its
                // own RAM.
                _ if parked => {}
                2 => {
                    regs[0] = H::Version.function_id() as u64;
                    let r = trap_on(&mut v, 1, &hvc_trap, &mut regs, &mut fw);
                    if v.w.host.is_off() {
                        assert_eq!(r, Resume::Park, "off at {off_at}");
                        parked = true;
                    } else {
                        assert_eq!(r, Resume::Retry);
                    }
                }
                _ => {
                    let r = trap_on(&mut v, 1, &own_fault, &mut regs, &mut fw);
                    if v.w.host.is_off() {
                        assert_eq!(r, Resume::Park, "off at {off_at}");
                    }
                }
            }
        }
        assert!(v.w.host.is_off());
        assert!(fw.calls.is_empty(), "no firmware on this board");
        assert!(
            host_walk(&v.w, SPARE_PFN << 12).is_none(),
            "off at {off_at}"
        );
        assert!(host_walk(&v.w, RUN_PFN << 12).is_none());
        // Every later trap from KServ, on any CPU, parks.
        for cpu in 0..4 {
            let mut regs: Regs = [0; 31];
            regs[0] = H::HostVcpuRun.function_id() as u64;
            regs[1..4].copy_from_slice(&[v.h, 0, RUN_PFN]);
            for t in [&hvc_trap, &smc, &own_fault] {
                let r = trap_on(&mut v, cpu, t, &mut regs, &mut fw);
                assert_eq!(r, Resume::Park, "CPU {cpu}, off at {off_at}");
            }
        }
        check_invariants(&v.w).unwrap();
        let ctx = loaded.map(|l| l.ctx_page.raw() >> 12);
        let mut vm_pages = 0;
        for (pfn, s) in v.w.host.mem().owners().iter() {
            if (IMAGE_PFN..IMAGE_PFN + 2).contains(&pfn.0) {
                assert!(matches!(s, PageState::Guest { .. }), "{pfn:?} is {s:?}");
            }
            if matches!(s, PageState::Guest { .. } | PageState::VmTable { .. }) {
                vm_pages += 1;
                if Some(pfn.0) != ctx || off_at > 1 {
                    assert!(
                        v.w.hw.is_zero(pfn.0 << 12),
                        "{pfn:?} ({s:?}), off at {off_at}"
                    );
                }
            }
        }
        assert!(vm_pages > 8, "off at {off_at}: {vm_pages}");
    }
}

mod noninterference {
    //! What an exit shows KServ depends only on what DESIGN.md §1 lets it
    //! see: two vCPUs that differ in every register the exit does not
    //! declassify produce the same step and the same report.

    use kcore::addr::Gfn;
    use kcore::addr::Pa;
    use kcore::exception::ec;
    use kcore::pgtable::Geometry;
    use kcore::vcpu::{ExitKind, ExitReport, GuestConfig, GuestExit, Loaded, VcpuContext, step};
    use kcore::vgic::LrSet;
    use kcore::vm::{MmioRanges, VmId, VmKind};
    use kcore_abi::run;
    use proptest::prelude::*;

    fn loaded(ctx: VcpuContext) -> Loaded {
        let mut mmio = MmioRanges::default();
        assert!(mmio.add(Gfn(0x9000), 4));
        Loaded {
            vm: VmId(0),
            idx: 0,
            kind: VmKind::Protected,
            cfg: GuestConfig {
                vmid: 1,
                root: Pa(0),
                geometry: Geometry::stage2(40).unwrap(),
            },
            ctx,
            ctx_page: Pa(0),
            run_page: Pa(0),
            irq_words: [0; run::MAX_IRQS],
            n_irqs: 0,
            lrs: LrSet::default(),
            mmio,
            ipa_limit: 1 << 40,
            timer: kcore::vcpu::TimerIrq::from_flags(0),
            ptimer: kcore::vcpu::TimerIrq::of(kcore::vcpu::Timer::Phys, 0),
            report: ExitReport::default(),
            ctx_key: None,
            v_in_page: false,
            ids: kcore::idregs::GuestIdRegs::sanitise(|enc| enc.wrapping_mul(0x9e37_79b9)),
            ids_version: 0,
        }
    }

    /// Exception classes a guest can cause, and the ISS bits that name the
    /// register an exit may declassify.
    const CLASSES: [u64; 7] = [
        ec::DABT_LOW,
        ec::IABT_LOW,
        ec::HVC64,
        ec::SMC64,
        ec::SYS64,
        ec::WFX,
        0x07,
    ];

    fn exposed(esr: u64) -> Vec<usize> {
        let mut v = vec![0, 1, 2, 3]; // SMCCC function id and arguments
        match esr >> 26 {
            ec::DABT_LOW => v.push(((esr >> 16) & 31) as usize),
            ec::SYS64 => v.push(((esr >> 5) & 31) as usize),
            _ => {}
        }
        v
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn exits_depend_only_on_what_they_declassify(
            class in 0..CLASSES.len(),
            iss in any::<u32>(),
            ipa in prop_oneof![0x900_0000u64..0x900_4000, any::<u64>().prop_map(|a| a & 0xFF_FFFF_FFFF)],
            kind in 0..8u8,
            fid in prop_oneof![Just(0x8400_0000u64), Just(0xC400_0003), Just(0x8400_0002), Just(0x8000_0000), any::<u64>()],
            a in any::<[u64; 31]>(),
            b in any::<[u64; 31]>(),
            pcs in any::<(u64, u64)>(),
        ) {
            let esr = CLASSES[class] << 26 | 1 << 25 | (iss as u64 & 0x1FF_FFFF);
            let exit = GuestExit {
                kind: [ExitKind::Sync, ExitKind::Irq, ExitKind::Fiq, ExitKind::SError][kind as usize % 4],
                esr,
                far: ipa & 0xFFF,
                hpfar: (ipa >> 12) << 4,
                fp: kind & 4 != 0,
            };
            let mut ca = VcpuContext::reset(0);
            ca.x = a;
            ca.x[0] = fid;
            ca.pc = pcs.0;
            let mut cb = ca;
            cb.x = b;
            cb.pc = pcs.1;
            cb.sys[3] ^= 0x5EC2E7; // TTBR1_EL1: a secret of the guest's
            for r in exposed(esr) {
                if r < 31 {
                    cb.x[r] = ca.x[r];
                }
            }
            let (mut la, mut lb) = (loaded(ca), loaded(cb));
            let (sa, sb) = (step(&mut la, &exit), step(&mut lb, &exit));
            prop_assert_eq!(sa, sb);
            prop_assert_eq!(la.report, lb.report);
            prop_assert_eq!(la.ctx.pending, lb.ctx.pending);
        }
    }
}

/// A non-protected vCPU whose first run armed its timer, which has fired
/// since (KCore delivers it at the next entry).
fn timer_fired() -> (Vm, ScriptedGuest) {
    let mut v = vm(false, 1);
    let mut g = ScriptedGuest::new(4);
    g.now = 5000;
    g.then_do(irq_exit(), |ctx, _| {
        ctx.cntv_cval = 100;
        ctx.cntv_ctl = 1;
    });
    run_page(&mut v, 0, &[]);
    run(&mut v, 0, &mut g);
    (v, g)
}

#[test]
fn the_timer_follows_kservs_vgic_configuration() {
    use kcore_abi::run::entry_flags as ef;
    let (mut v, mut g) = timer_fired();
    // The guest disabled the PPI in KServ's redistributor model: nothing.
    let mut disabled = [0u64; run::ENTRY_WORDS];
    disabled[run::FLAGS] = ef::TIMER_DISABLED;
    let bytes: Vec<u8> = disabled.iter().flat_map(|w| w.to_le_bytes()).collect();
    v.w.hw.write(RUN_PFN << 12, &bytes);
    g.then(irq_exit());
    run(&mut v, 0, &mut g);
    assert_eq!(g.entries[1].1.len, 0);
    assert_eq!(
        g.entries[1].1.hold_active,
        1 << TIMER_PPI,
        "the asserted, undelivered line is held quiet for the run"
    );
    assert_eq!(
        g.entries[1].1.hold_active,
        1 << TIMER_PPI,
        "the asserted, undelivered line is held quiet for the run"
    );
    // Enabled, with the priority and group the guest gave it.
    let mut flags = [0u64; run::ENTRY_WORDS];
    flags[run::FLAGS] = 0xa0 << ef::TIMER_PRIORITY_SHIFT | ef::TIMER_GROUP0;
    let bytes: Vec<u8> = flags.iter().flat_map(|w| w.to_le_bytes()).collect();
    v.w.hw.write(RUN_PFN << 12, &bytes);
    g.then(irq_exit());
    run(&mut v, 0, &mut g);
    let lr = g.entries[2].1.lrs[0];
    assert_eq!(
        (lr.vintid, lr.priority, lr.group1),
        (TIMER_PPI, 0xa0, false)
    );
}

#[test]
fn writes_to_a_read_only_shared_page_exit_as_mmio() {
    use kcore_abi::share_flags;
    let mut v = vm(false, 1);
    let rom = FIRST_HOST_PFN + 90;
    let r = hvc(
        &mut v.w,
        H::HostShareGuest,
        &[v.h, rom, 0x200, share_flags::READ_ONLY],
    );
    assert_eq!(r[0], 0);
    for flags in [4, share_flags::READ_ONLY | share_flags::WRITE_PROTECT] {
        assert_eq!(
            hvc(&mut v.w, H::HostShareGuest, &[v.h, rom + 1, 0x201, flags])[0],
            Error::InvalidParameter.to_x0(),
            "unknown flag or combination {flags:#x}"
        );
    }
    // Permission fault, level 3, write, ISV, x7.
    let esr = ec::DABT_LOW << 26 | 1 << 25 | 1 << 24 | 3 << 22 | 7 << 16 | 1 << 15 | 1 << 6 | 0x0F;
    run_page(&mut v, 0, &[]);
    let mut g = ScriptedGuest::new(4);
    g.then_do(sync(esr, 0x20_0010), |ctx, _| ctx.x[7] = 0x1234);
    assert_eq!(run(&mut v, 0, &mut g), (0, exit::MMIO));
    let out = exit_words(&v.w);
    assert_eq!(out[run::EXIT_ADDR], 0x20_0010);
    assert_eq!(
        (out[run::EXIT_DATA], out[run::EXIT_FLAGS]),
        (0x1234, exit_flags::WRITE)
    );
    // The same fault in a protected VM is the guest's: an abort, no exit.
    let mut p = vm(true, 1);
    assert_eq!(set(&mut p, 0, reg::PC, ENTRY), 0);
    run_page(&mut p, 0, &[]);
    let mut g = ScriptedGuest::new(4);
    g.then(sync(esr, (GFN << 12) + 0x10));
    assert_eq!(run(&mut p, 0, &mut g), (0, exit::IRQ));
    assert_eq!(g.entries.len(), 2, "re-entered at its abort vector");
}

#[test]
fn a_protected_guest_shares_and_unshares_its_pages_itself() {
    use kcore::exception::TrapState;
    use kcore::host::Resume;
    use kcore::ownership::PageState;
    use kcore::vm::VmId;
    use kcore_arch::host_cpu::FakeFirmware;
    use kcore_arch::host_memory::FakeAllocator;
    let mut v = vm(true, 1);
    assert_eq!(set(&mut v, 0, reg::PC, ENTRY), 0);
    run_page(&mut v, 0, &[]);
    let hvc_exit = |fid: u64, a1: u64, a2: u64| {
        move |ctx: &mut VcpuContext, _: &mut kcore::vgic::LrSet| {
            ctx.x[0] = fid;
            ctx.x[1] = a1;
            ctx.x[2] = a2;
            ctx.x[3] = 0;
        }
    };
    let mut g = ScriptedGuest::new(4);
    let hvc = sync(ec::HVC64 << 26, 0);
    g.then_do(hvc, hvc_exit(0x8600_FF01, 0, 0)); // UID: KVM's
    g.then_do(hvc, hvc_exit(0x8600_0000, 0, 0)); // features
    g.then_do(hvc, hvc_exit(0xC600_0002, 0, 0)); // HYP_MEMINFO
    g.then_do(hvc, hvc_exit(0xC600_0003, (GFN + 1) << 12, 0)); // share its page
    g.then_do(hvc, hvc_exit(0xC600_0003, (GFN + 1) << 12, 0)); // again: refused
    g.then_do(hvc, hvc_exit(0xC600_0003, 0x300 << 12, 0)); // not its page
    g.then_do(hvc, hvc_exit(0xC600_0003, (GFN << 12) + 8, 0)); // misaligned
    g.then(irq_exit());
    assert_eq!(
        run(&mut v, 0, &mut g),
        (0, exit::IRQ),
        "no KServ round trip"
    );
    let x = |i: usize| g.entries[i].0.x;
    assert_eq!(
        x(1)[..4],
        [0xb66f_b428, 0xe911_c52e, 0x564b_caa9, 0x743a_004d]
    );
    assert_eq!(x(2)[0], 1 | 1 << 2 | 1 << 3 | 1 << 4);
    assert_eq!(x(3)[0], 4096);
    assert_eq!(x(4)[0], 0, "shared");
    let invalid = -3i64 as u64;
    assert_eq!((x(5)[0], x(6)[0], x(7)[0]), (invalid, invalid, invalid));
    let page = IMAGE_PFN + 1;
    assert_eq!(
        v.w.host.mem().owners().get(kcore::addr::Pfn(page)),
        Some(PageState::GuestSharedWithHost {
            vm: VmId(0),
            gfn: kcore::addr::Gfn(GFN + 1)
        })
    );
    // KServ may now touch it: its stage-2 fault maps the page.
    let pa = page << 12;
    let t = TrapState {
        esr: ec::DABT_LOW << 26 | 1 << 25 | 0x07,
        far: pa,
        hpfar: (pa >> 12) << 4,
        elr: 0,
        spsr: 0x3c5,
        vbar_el1: 0,
        sctlr_el1: 0,
    };
    let mut regs: Regs = [0; 31];
    let mut alloc = FakeAllocator::new(common::HOST_S2_POOL + 32 * 4096, 32);
    let r = v.w.host.handle_trap(
        0,
        &t,
        &mut regs,
        &mut v.w.hw,
        &mut alloc,
        &mut FakeFirmware::default(),
    );
    assert_eq!(r, Resume::Retry);
    check_invariants(&v.w).unwrap();
    // Unshared: the guest's alone again, out of KServ's stage 2.
    g.then_do(hvc, hvc_exit(0xC600_0004, (GFN + 1) << 12, 0));
    g.then(irq_exit());
    run(&mut v, 0, &mut g);
    assert_eq!(g.entries[9].0.x[0], 0);
    assert!(matches!(
        v.w.host.mem().owners().get(kcore::addr::Pfn(page)),
        Some(PageState::Guest { .. })
    ));
    let r = v.w.host.handle_trap(
        0,
        &t,
        &mut regs,
        &mut v.w.hw,
        &mut alloc,
        &mut FakeFirmware::default(),
    );
    assert!(
        matches!(r, Resume::Inject(_)),
        "KServ's access faults again"
    );
}

#[test]
fn an_active_timer_keeps_its_list_register_when_kserv_fills_them() {
    let (mut v, mut g) = timer_fired();
    // Delivered; the guest acknowledges it.
    g.then_do(irq_exit(), |_, lrs| lrs.lrs[0].state = LrState::Active);
    run(&mut v, 0, &mut g);
    assert_eq!(g.entries[1].1.lrs[0].vintid, TIMER_PPI);
    // KServ hands four active interrupts: the active timer takes the last
    // list register, and that entry comes back as supplied.
    let four: Vec<u64> = (40..44)
        .map(|i| irq::encode(i, 0x80, true, irq::ACTIVE))
        .collect();
    run_page(&mut v, 0, &four);
    g.then_do(irq_exit(), |_, lrs| {
        lrs.lrs[0].state = LrState::Invalid;
        lrs.lrs[3].state = LrState::Invalid;
    });
    assert_eq!(run(&mut v, 0, &mut g), (0, exit::IRQ));
    let lrs = g.entries[2].1;
    assert_eq!(lrs.len, 4);
    assert_eq!(
        (lrs.lrs[3].vintid, lrs.lrs[3].hw, lrs.lrs[3].state),
        (TIMER_PPI, Some(TIMER_PPI), LrState::Active)
    );
    assert_eq!(lrs.lrs[2].vintid, 42);
    let out = exit_words(&v.w);
    assert_eq!(out[run::EXIT_IRQ_COUNT], 4);
    assert_eq!(irq::state(out[run::EXIT_IRQS]), 0, "completed");
    assert_eq!(
        out[run::EXIT_IRQS + 3],
        four[3],
        "never loaded: as supplied"
    );
    // The guest completed the timer: the next run has no entry for it
    // (re-armed for later), and KServ's four are all loaded.
    g.then_do(irq_exit(), |ctx, _| ctx.cntv_cval = 1 << 40);
    run(&mut v, 0, &mut g);
    g.then(irq_exit());
    run(&mut v, 0, &mut g);
    let lrs = g.entries[4].1;
    assert_eq!(lrs.len, 4);
    assert!(lrs.as_slice().iter().all(|lr| lr.hw.is_none()));
}

/// A permission fault on a write, level 3, ISV, `x7`, at `ipa`.
fn write_permission_fault(ipa: u64) -> GuestExit {
    let esr = ec::DABT_LOW << 26 | 1 << 25 | 1 << 24 | 3 << 22 | 7 << 16 | 1 << 15 | 1 << 6 | 0x0F;
    sync(esr, ipa)
}

/// A non-protected VM (with `vm`'s two donated pages at `GFN`) and KServ's
/// pages shared with it at gfn `0x200 + i`: read-write, or read-only for
/// the index `ro`.
fn logged_vm(shares: u64, ro: Option<u64>) -> Vm {
    use kcore_abi::share_flags;
    let mut v = vm(false, 1);
    for i in 0..shares {
        let flags = if Some(i) == ro {
            share_flags::READ_ONLY
        } else {
            0
        };
        let r = hvc(
            &mut v.w,
            H::HostShareGuest,
            &[v.h, FIRST_HOST_PFN + 90 + i, 0x200 + i, flags],
        );
        assert_eq!(r[0], 0);
    }
    v
}

/// `HostProtectGuest` of `pages` pages from `gfn`: `x0`, `x1`.
fn protect(v: &mut Vm, gfn: u64, pages: u64) -> [u64; 2] {
    let r = hvc(&mut v.w, H::HostProtectGuest, &[v.h, gfn, pages]);
    [r[0], r[1]]
}

/// The exit's flags, address and data words.
fn fault_words(v: &Vm) -> (u64, u64, u64) {
    let out = exit_words(&v.w);
    (
        out[run::EXIT_FLAGS],
        out[run::EXIT_ADDR],
        out[run::EXIT_DATA],
    )
}

fn vm_id(v: &Vm) -> kcore::vm::VmId {
    v.w.host.mem().vms().lookup(v.h).unwrap().0
}

#[test]
fn dirty_logging_write_protects_shared_pages_without_changing_owners() {
    let mut v = logged_vm(3, Some(1));
    let id = vm_id(&v);
    let owners = |v: &mut Vm| -> Vec<[u64; 4]> {
        (0..3)
            .map(|i| hvc(&mut v.w, H::HostPageOwner, &[FIRST_HOST_PFN + 90 + i]))
            .collect()
    };
    let before = owners(&mut v);
    let flushes = v.w.hw.flushes().len();
    // 0x200 and 0x202 are writable shares; 0x201 a read-only one, 0x203
    // nothing, and the VM's own pages at GFN are not KServ's to log.
    let r = hvc(&mut v.w, H::HostProtectGuest, &[v.h, 0x200, 4]);
    assert_eq!(r[..2], [0, 2]);
    assert_eq!(protect(&mut v, GFN, 2), [0, 0]);
    assert_eq!(owners(&mut v), before, "no page changed owner");
    for (gfn, write, logged) in [
        (0x200, false, true),
        (0x201, false, false),
        (0x202, false, true),
    ] {
        let leaf = common::vm_walk(&v.w, id, gfn << 12).unwrap();
        assert_eq!(
            (leaf.attrs.write, leaf.attrs.dirty_log),
            (write, logged),
            "{gfn:#x}"
        );
        assert_eq!(leaf.pa.raw() >> 12, FIRST_HOST_PFN + 90 + (gfn - 0x200));
    }
    assert!(common::vm_walk(&v.w, id, GFN << 12).unwrap().attrs.write);
    // Each change was flushed from every CPU's TLBs before the new leaf
    // (FakeMachine counts a valid descriptor rewritten without a flush).
    assert_eq!(v.w.hw.unflushed(), 0);
    assert!(v.w.hw.flushes().len() >= flushes + 2);
    check_invariants(&v.w).unwrap();
    // Protecting again changes nothing more.
    assert_eq!(protect(&mut v, 0x200, 4), [0, 0]);
}

/// Sets the run page's dirty ring counts (what KServ keeps there).
fn set_ring(v: &mut Vm, head: u64, tail: u64) {
    let mut bytes = head.to_le_bytes().to_vec();
    bytes.extend_from_slice(&tail.to_le_bytes());
    v.w.hw
        .write((RUN_PFN << 12) + 8 * run::DIRTY_HEAD as u64, &bytes);
}

/// The run page's dirty ring: its head, tail and entries.
fn ring(v: &Vm) -> (u64, u64, Vec<u64>) {
    let mut words = vec![0u64; run::PAGE_WORDS];
    v.w.hw.read_words(Pa(RUN_PFN << 12), &mut words);
    let entries = words[run::DIRTY_RING..].to_vec();
    (words[run::DIRTY_HEAD], words[run::DIRTY_TAIL], entries)
}

#[test]
fn with_the_dirty_ring_full_a_write_to_a_write_protected_page_is_a_memory_fault_not_mmio() {
    let mut v = logged_vm(2, Some(1));
    assert_eq!(protect(&mut v, 0x200, 2), [0, 1]);
    set_ring(&mut v, 300, 300 - run::DIRTY_ENTRIES as u64);
    let ring_before = ring(&v);
    run_page(&mut v, 0, &[]);
    let mut g = ScriptedGuest::new(4);
    g.then_do(write_permission_fault(0x20_0010), |ctx, _| {
        ctx.pc = 0x8_0000;
        ctx.x[7] = 0x1234;
    });
    assert_eq!(run(&mut v, 0, &mut g), (0, exit::MEM_FAULT));
    assert_eq!(
        fault_words(&v),
        (
            exit_flags::WRITE | exit_flags::WRITE_PROTECTED,
            0x20_0000,
            0
        ),
        "the page and the direction only"
    );
    assert_eq!(ring(&v), ring_before, "nothing appended");
    assert!(
        !common::vm_walk(&v.w, vm_id(&v), 0x20_0000)
            .unwrap()
            .attrs
            .write
    );
    assert_eq!(
        get(&mut v, 0, reg::PC)[1],
        0x8_0000,
        "the write is repeated"
    );
    // The read-only share next to it still exits as MMIO with its data.
    run_page(&mut v, 0, &[]);
    let mut g = ScriptedGuest::new(4);
    g.then_do(write_permission_fault(0x20_1008), |ctx, _| ctx.x[7] = 0x55);
    assert_eq!(run(&mut v, 0, &mut g), (0, exit::MMIO));
    assert_eq!(fault_words(&v), (exit_flags::WRITE, 0x20_1008, 0x55));
    // KServ made the page writable: once, then it already is.
    assert_eq!(
        hvc(&mut v.w, H::HostUnprotectGuest, &[v.h, 0x200])[..2],
        [0, 1]
    );
    assert_eq!(
        hvc(&mut v.w, H::HostUnprotectGuest, &[v.h, 0x200])[..2],
        [0, 0]
    );
    let leaf = common::vm_walk(&v.w, vm_id(&v), 0x20_0000).unwrap();
    assert!(leaf.attrs.write && !leaf.attrs.dirty_log);
    assert_eq!(v.w.hw.unflushed(), 0);
    // A fault that raced with the unprotect on another CPU: the guest
    // just repeats the write (re-entered, no exit for it).
    run_page(&mut v, 0, &[]);
    let mut g = ScriptedGuest::new(4);
    g.then(write_permission_fault(0x20_0010));
    g.then(irq_exit());
    assert_eq!(run(&mut v, 0, &mut g), (0, exit::IRQ));
    assert_eq!(g.entries.len(), 2);
    // Shared write-protected from the start (a page first touched by a
    // read while logging): its first write is a dirty-log fault too.
    let r = hvc(
        &mut v.w,
        H::HostShareGuest,
        &[
            v.h,
            FIRST_HOST_PFN + 95,
            0x210,
            kcore_abi::share_flags::WRITE_PROTECT,
        ],
    );
    assert_eq!(r[0], 0);
    run_page(&mut v, 0, &[]);
    let mut g = ScriptedGuest::new(4);
    g.then(write_permission_fault(0x21_0000));
    assert_eq!(run(&mut v, 0, &mut g), (0, exit::MEM_FAULT));
    assert_eq!(
        exit_words(&v.w)[run::EXIT_FLAGS],
        exit_flags::WRITE | exit_flags::WRITE_PROTECTED
    );
    check_invariants(&v.w).unwrap();
}

#[test]
fn a_write_fault_is_classified_against_the_stage_2_as_it_is_now() {
    use kcore::vcpu::WriteFault;
    let mut v = logged_vm(2, Some(1));
    assert_eq!(protect(&mut v, 0x200, 1), [0, 1]);
    let mut l = Loaded::empty();
    l.vm = vm_id(&v);
    l.ipa_limit = 1 << 40;
    // Not loaded: its run page is none KCore pinned, so KCore never
    // records in it (it exits, and counts the broken invariant).
    let class =
        |v: &mut Vm, l: &Loaded, ipa: u64| v.w.host.mem_mut().vcpu_write_fault(l, ipa, &mut v.w.hw);
    assert_eq!(class(&mut v, &l, 0x20_0000), WriteFault::Logged);
    assert_eq!(class(&mut v, &l, 0x20_1000), WriteFault::ReadOnly);
    assert_eq!(class(&mut v, &l, GFN << 12), WriteFault::Retry, "writable");
    assert_eq!(class(&mut v, &l, 0x30_0000), WriteFault::Retry, "unmapped");
    assert_eq!(
        class(&mut v, &l, 1 << 40),
        WriteFault::Retry,
        "past the IPA space"
    );
    // Another CPU unshared it meanwhile: the guest's retry faults again
    // and KServ sees an ordinary memory fault then.
    assert_eq!(hvc(&mut v.w, H::HostUnshareGuest, &[v.h, 0x200])[0], 0);
    assert_eq!(class(&mut v, &l, 0x20_0000), WriteFault::Retry);
    // ... or made it writable.
    let r = hvc(
        &mut v.w,
        H::HostShareGuest,
        &[v.h, FIRST_HOST_PFN + 90, 0x200, 2],
    );
    assert_eq!(r[0], 0);
    assert_eq!(class(&mut v, &l, 0x20_0000), WriteFault::Logged);
    assert_eq!(
        hvc(&mut v.w, H::HostUnprotectGuest, &[v.h, 0x200])[..2],
        [0, 1]
    );
    assert_eq!(class(&mut v, &l, 0x20_0000), WriteFault::Retry);
    assert!(
        v.w.host.mem().broken_invariants() > 0,
        "an unpinned run page"
    );
    // A dying VM's tables are not walked.
    assert_eq!(hvc(&mut v.w, H::HostTeardownVm, &[v.h])[0], 0);
    assert_eq!(class(&mut v, &l, 0x20_1000), WriteFault::Retry);
}

#[test]
fn dirty_logging_refusals_change_nothing() {
    let mut v = logged_vm(2, Some(1));
    let mut p = vm(true, 1);
    let (inval, denied, notfound) = (
        Error::InvalidParameter.to_x0(),
        Error::Denied.to_x0(),
        Error::NotFound.to_x0(),
    );
    let max = kcore_abi::MAX_PROTECT_PAGES;
    // (the protected VM's world, call, arguments, status)
    let cases: [(bool, H, Vec<u64>, u64); 14] = [
        (true, H::HostProtectGuest, vec![p.h, GFN, 1], denied),
        (true, H::HostUnprotectGuest, vec![p.h, GFN], denied),
        (
            false,
            H::HostProtectGuest,
            vec![v.h + 1, 0x200, 1],
            notfound,
        ),
        (false, H::HostUnprotectGuest, vec![0, 0x200], notfound),
        (false, H::HostProtectGuest, vec![v.h, 0x200, 0], inval),
        (false, H::HostProtectGuest, vec![v.h, 0x200, max + 1], inval),
        (
            false,
            H::HostProtectGuest,
            vec![v.h, (1 << 28) - 1, 2],
            inval,
        ),
        (false, H::HostProtectGuest, vec![v.h, u64::MAX, 1], inval),
        (false, H::HostUnprotectGuest, vec![v.h, 1 << 28], inval),
        // A read-only share is not write-protected for logging.
        (false, H::HostUnprotectGuest, vec![v.h, 0x201], denied),
        // The VM's own page, not a share.
        (false, H::HostUnprotectGuest, vec![v.h, GFN], denied),
        (false, H::HostUnprotectGuest, vec![v.h, 0x300], notfound),
        // MMIO: nothing mapped.
        (false, H::HostUnprotectGuest, vec![v.h, MMIO_GFN], notfound),
        (false, H::HostProtectGuest, vec![v.h, 0x200, max], 0),
    ];
    let id = vm_id(&v);
    let snapshot = |v: &Vm| {
        let leaves: Vec<_> = [0x200, 0x201, GFN]
            .map(|g| common::vm_walk(&v.w, id, g << 12))
            .to_vec();
        let owners: Vec<_> = (0..2)
            .map(|i| v.w.host.mem().host_page_owner(FIRST_HOST_PFN + 90 + i))
            .collect();
        (leaves, owners, v.w.hw.flushes().len())
    };
    for (protected, call, args, want) in cases {
        let before = snapshot(&v);
        let w = if protected { &mut p.w } else { &mut v.w };
        assert_eq!(hvc(w, call, &args)[0], want, "{call:?} {args:x?}");
        if want != 0 {
            assert_eq!(snapshot(&v), before, "{call:?} {args:x?} changed something");
        }
    }
    // A dying VM is refused.
    assert_eq!(hvc(&mut v.w, H::HostTeardownVm, &[v.h])[0], 0);
    assert_eq!(
        hvc(&mut v.w, H::HostProtectGuest, &[v.h, 0x200, 1])[0],
        denied
    );
    assert_eq!(
        hvc(&mut v.w, H::HostUnprotectGuest, &[v.h, 0x200])[0],
        denied
    );
    check_invariants(&v.w).unwrap();
    check_invariants(&p.w).unwrap();
}

/// The run loop over `World`, with a second KServ CPU's hypercalls made
/// exactly where the loop has dropped KCore's lock between a guest's write
/// fault and its classification (the EL2 glue's `Locked::write_fault`
/// takes the lock again only there).
struct Racing<'a> {
    w: &'a mut World,
    /// The other CPU's calls, made at the next write fault.
    calls: Vec<(H, Vec<u64>)>,
    /// Their `x0`s.
    results: Vec<u64>,
    /// The pages each classification itself changed.
    changed: Vec<Vec<u64>>,
}

impl kcore::vcpu::VcpuHost for Racing<'_> {
    fn load(&mut self, a: RunArgs, lr_count: usize, out: &mut Loaded) -> Result<(), Error> {
        self.w
            .host
            .mem_mut()
            .vcpu_load_into(a, lr_count, &mut self.w.hw, out)
    }
    fn cpu_on(&mut self, l: &mut Loaded, t: usize, e: u64, c: u64) -> kcore::vcpu::Step {
        self.w
            .host
            .mem_mut()
            .vcpu_cpu_on(l, t, e, c, &mut self.w.hw)
    }
    fn guest_mem(&mut self, l: &mut Loaded, share: bool, gfn: u64) {
        self.w
            .host
            .mem_mut()
            .vcpu_guest_mem(l, share, gfn, &mut self.w.hw)
    }
    fn put(&mut self, l: &mut Loaded) {
        self.w.host.mem_mut().vcpu_put(l, &mut self.w.hw)
    }
    fn write_fault(&mut self, l: &Loaded, ipa: u64) -> kcore::vcpu::WriteFault {
        for (id, args) in std::mem::take(&mut self.calls) {
            let r = hvc(self.w, id, &args)[0];
            self.results.push(r);
        }
        let before = self.w.hw.clone();
        let what = self
            .w
            .host
            .mem_mut()
            .vcpu_write_fault(l, ipa, &mut self.w.hw);
        self.changed.push(self.w.hw.pages_changed_since(&before));
        what
    }
}

/// One run of vCPU 0 through [`Racing`], `calls` made at its first write
/// fault: the exit reason and the calls' results.
fn racing_run(v: &mut Vm, g: &mut ScriptedGuest, calls: Vec<(H, Vec<u64>)>) -> (u64, Vec<u64>) {
    run_page(v, 0, &[]);
    let a = RunArgs {
        handle: v.h,
        vcpu: 0,
        run_pfn: RUN_PFN,
    };
    let mut r = Racing {
        w: &mut v.w,
        calls,
        results: Vec::new(),
        changed: Vec::new(),
    };
    let reason = run_vcpu_in(&mut r, g, a, &mut v.cpu).unwrap();
    let (results, changed) = (r.results, r.changed);
    check_invariants(&v.w).unwrap();
    v.changed = changed;
    (reason, results)
}

#[test]
fn another_cpu_changes_the_page_between_a_write_fault_and_its_classification() {
    use kcore_abi::share_flags;
    let mut v = logged_vm(1, None);
    let page = FIRST_HOST_PFN + 90;
    // The exits of the slow path (the fast one: below).
    set_ring(&mut v, run::DIRTY_ENTRIES as u64, 0);
    // KServ made the page writable meanwhile (another vCPU's fault came
    // first): the guest just repeats its write, no exit for it.
    assert_eq!(protect(&mut v, 0x200, 1), [0, 1]);
    let mut g = ScriptedGuest::new(4);
    g.then(write_permission_fault(0x20_0000));
    g.then(irq_exit());
    let calls = vec![(H::HostUnprotectGuest, vec![v.h, 0x200])];
    assert_eq!(racing_run(&mut v, &mut g, calls), (exit::IRQ, vec![0]));
    assert_eq!(g.entries.len(), 2, "re-entered after the fault");
    // Unshared meanwhile: repeated, and the repeat is a translation fault,
    // an ordinary memory fault for KServ (which may share it again).
    assert_eq!(protect(&mut v, 0x200, 1), [0, 1]);
    let mut g = ScriptedGuest::new(4);
    g.then(write_permission_fault(0x20_0000));
    g.then(sync(dabt(true, 3, 1), 0x20_0000));
    let calls = vec![(H::HostUnshareGuest, vec![v.h, 0x200])];
    assert_eq!(
        racing_run(&mut v, &mut g, calls),
        (exit::MEM_FAULT, vec![0])
    );
    assert_eq!(exit_words(&v.w)[run::EXIT_FLAGS], exit_flags::WRITE);
    // Shared again read-only (a read-only slot now): the write is emulated
    // as MMIO with its data, never a dirty-log fault.
    let calls = vec![(
        H::HostShareGuest,
        vec![v.h, page, 0x200, share_flags::READ_ONLY],
    )];
    let mut g = ScriptedGuest::new(4);
    g.then_do(write_permission_fault(0x20_0008), |ctx, _| ctx.x[7] = 0x77);
    assert_eq!(racing_run(&mut v, &mut g, calls), (exit::MMIO, vec![0]));
    assert_eq!(fault_words(&v), (exit_flags::WRITE, 0x20_0008, 0x77));
    // Unshared and shared again write-protected: a dirty-log fault.
    let calls = vec![
        (H::HostUnshareGuest, vec![v.h, 0x200]),
        (
            H::HostShareGuest,
            vec![v.h, page, 0x200, share_flags::WRITE_PROTECT],
        ),
    ];
    let mut g = ScriptedGuest::new(4);
    g.then(write_permission_fault(0x20_0000));
    assert_eq!(
        racing_run(&mut v, &mut g, calls),
        (exit::MEM_FAULT, vec![0, 0])
    );
    assert_eq!(
        exit_words(&v.w)[run::EXIT_FLAGS],
        exit_flags::WRITE | exit_flags::WRITE_PROTECTED
    );
    // Teardown is refused while the vCPU runs: the stage 2 it classifies
    // against stays.
    let calls = vec![(H::HostTeardownVm, vec![v.h])];
    let mut g = ScriptedGuest::new(4);
    g.then(write_permission_fault(0x20_0000));
    assert_eq!(
        racing_run(&mut v, &mut g, calls),
        (exit::MEM_FAULT, vec![Error::Busy.to_x0()])
    );
}

/// The pages of a fast-path write fault's classification, checked: the run
/// page and one stage-2 table page of the VM, nothing else.
fn only_the_run_page_and_a_table_changed(v: &Vm, changed: &[u64]) {
    let others: Vec<u64> = changed
        .iter()
        .copied()
        .filter(|&p| p != RUN_PFN << 12)
        .collect();
    assert!(changed.contains(&(RUN_PFN << 12)), "{changed:x?}");
    assert_eq!(others.len(), 1, "{changed:x?}");
    let owner = v.w.host.mem().host_page_owner(others[0] >> 12);
    assert!(
        matches!(owner, Ok(kcore::ownership::PageState::VmTable { .. })),
        "{owner:?}"
    );
}

#[test]
fn a_write_to_a_write_protected_page_is_recorded_in_the_ring_without_an_exit() {
    let mut v = logged_vm(3, Some(1));
    let id = vm_id(&v);
    assert_eq!(protect(&mut v, 0x200, 3), [0, 2]);
    let barriers = v.w.hw.store_barriers();
    // Two logged writes and a write to the read-only share, in one run.
    let mut g = ScriptedGuest::new(4);
    g.then(write_permission_fault(0x20_0010));
    g.then(write_permission_fault(0x20_2ff8));
    g.then_do(write_permission_fault(0x20_1008), |ctx, _| ctx.x[7] = 0x55);
    assert_eq!(racing_run(&mut v, &mut g, vec![]).0, exit::MMIO);
    assert_eq!(g.entries.len(), 3, "no exit for the logged writes");
    assert_eq!(fault_words(&v), (exit_flags::WRITE, 0x20_1008, 0x55));
    let (head, tail, entries) = ring(&v);
    assert_eq!((head, tail, &entries[..3]), (2, 0, &[0x200, 0x202, 0][..]));
    for (gfn, write) in [(0x200, true), (0x201, false), (0x202, true)] {
        let leaf = common::vm_walk(&v.w, id, gfn << 12).unwrap();
        assert_eq!(leaf.attrs.write, write, "{gfn:#x}");
        assert!(!(write && leaf.attrs.dirty_log), "{gfn:#x}");
    }
    assert_eq!(v.w.hw.unflushed(), 0, "break, flush, make");
    assert_eq!(
        v.w.hw.store_barriers(),
        barriers + 2,
        "entry, barrier, head"
    );
    let changed = v.changed.clone();
    assert_eq!(changed.len(), 3);
    only_the_run_page_and_a_table_changed(&v, &changed[0]);
    only_the_run_page_and_a_table_changed(&v, &changed[1]);
    assert_eq!(
        changed[2],
        Vec::<u64>::new(),
        "the read-only share: nothing"
    );
    // The same page again, writable now: no new entry.
    let mut g = ScriptedGuest::new(4);
    g.then(write_permission_fault(0x20_0010));
    g.then(irq_exit());
    assert_eq!(racing_run(&mut v, &mut g, vec![]).0, exit::IRQ);
    assert_eq!(ring(&v).0, 2);
    // KServ took both entries; protected again, the next write is
    // recorded after them.
    set_ring(&mut v, 2, 2);
    assert_eq!(protect(&mut v, 0x200, 3), [0, 2]);
    let mut g = ScriptedGuest::new(4);
    g.then(write_permission_fault(0x20_2000));
    g.then(irq_exit());
    assert_eq!(racing_run(&mut v, &mut g, vec![]).0, exit::IRQ);
    let (head, tail, entries) = ring(&v);
    assert_eq!((head, tail, entries[2]), (3, 2, 0x202));
    assert!(!common::vm_walk(&v.w, id, 0x20_0000).unwrap().attrs.write);
    check_invariants(&v.w).unwrap();
}

#[test]
fn any_ring_counts_kserv_leaves_are_safe() {
    let n = run::DIRTY_ENTRIES as u64;
    // (head, tail, recorded)
    let cases = [
        (0, 0, true),
        (n - 1, 0, true),
        (n, 0, false),
        (u64::MAX, u64::MAX - n, false),
        (u64::MAX, u64::MAX - (n - 1), true),
        (7, 8, false),
        (0, u64::MAX, true),
        (5, u64::MAX - 300, false),
        (u64::MAX / 3, 0, false),
    ];
    for (head, tail, recorded) in cases {
        let mut v = logged_vm(1, None);
        let id = vm_id(&v);
        assert_eq!(protect(&mut v, 0x200, 1), [0, 1]);
        set_ring(&mut v, head, tail);
        let mut g = ScriptedGuest::new(4);
        g.then(write_permission_fault(0x20_0000));
        g.then(irq_exit());
        let (reason, _) = racing_run(&mut v, &mut g, vec![]);
        let what = format!("head {head:#x} tail {tail:#x}");
        let (h, t, entries) = ring(&v);
        let leaf = common::vm_walk(&v.w, id, 0x20_0000).unwrap();
        assert_eq!(leaf.attrs.write, recorded, "{what}");
        if recorded {
            assert_eq!(reason, exit::IRQ, "{what}");
            assert_eq!((h, t), (head.wrapping_add(1), tail), "{what}");
            let slot = run::dirty_slot(head) - run::DIRTY_RING;
            assert_eq!(entries[slot], 0x200, "{what}");
            only_the_run_page_and_a_table_changed(&v, &v.changed[0]);
        } else {
            assert_eq!(reason, exit::MEM_FAULT, "{what}: the slow path");
            assert_eq!((h, t), (head, tail), "{what}");
            assert!(entries.iter().all(|&e| e == 0), "{what}");
            assert_eq!(v.changed[0], Vec::<u64>::new(), "{what}");
        }
        assert_eq!(v.w.host.mem().broken_invariants(), 0, "{what}");
    }
}

#[test]
fn a_protected_vcpus_write_fault_never_records_or_makes_anything_writable() {
    use kcore::vcpu::WriteFault;
    let mut p = vm(true, 1);
    let mut l = Loaded::empty();
    l.vm = p.w.host.mem().vms().lookup(p.h).unwrap().0;
    l.kind = kcore::vm::VmKind::Protected;
    l.ipa_limit = 1 << 40;
    l.run_page = Pa(RUN_PFN << 12);
    let before = p.w.hw.clone();
    for ipa in [GFN << 12, (GFN + 1) << 12, 0x20_0000] {
        assert_eq!(
            p.w.host.mem_mut().vcpu_write_fault(&l, ipa, &mut p.w.hw),
            WriteFault::Retry
        );
    }
    assert_eq!(p.w.hw.pages_changed_since(&before), Vec::<u64>::new());
    // Through the run loop: a protected guest's permission fault is its
    // own (an abort injected), never a write fault KCore classifies.
    assert_eq!(set(&mut p, 0, reg::PC, ENTRY), 0);
    let mut g = ScriptedGuest::new(4);
    g.then(write_permission_fault(GFN << 12));
    g.then(irq_exit());
    assert_eq!(racing_run(&mut p, &mut g, vec![]).0, exit::IRQ);
    assert!(p.changed.is_empty(), "not classified");
    assert_eq!(ring(&p).0, 0);
}
