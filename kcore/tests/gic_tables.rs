//! `host_set_gic_frames` and `host_read_gic_table` through the dispatcher
//! and the run loop: KServ reads a protected VM's memory only inside the
//! ITS and LPI tables the guest itself programmed, as KCore recorded them
//! from the guest's MMIO exits, never from what KServ says or writes into
//! the run page; and only from the VM's own pages.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on an unexpected error"
)]

mod common;

use common::{FIRST_HOST_PFN, World, check_invariants, hvc, world};
use ed25519_compact::{KeyPair, Seed};
use kcore::addr::Pa;
use kcore::exception::ec;
use kcore::host::{Direct, Regs, run_result};
use kcore::hw::PhysMemory;
use kcore::image::VerifyKey;
use kcore::vcpu::{ExitKind, GuestExit, Loaded, run_vcpu_in};
use kcore_abi::run::{self, exit};
use kcore_abi::{Error, HypercallId as H, reg, vm_flags};
use kcore_arch::host_cpu::ScriptedGuest;

const IMAGE_PFN: u64 = FIRST_HOST_PFN + 32;
const SIG_PFN: u64 = FIRST_HOST_PFN + 60;
const RUN_PFN: u64 = FIRST_HOST_PFN + 61;
/// KServ pages given to the VM as its RAM at [`RAM_GFNS`].
const RAM_PFN: u64 = FIRST_HOST_PFN + 80;
const GFN: u64 = 0x80;
const IMAGE_LEN: usize = 2 * 4096;
const ENTRY: u64 = (GFN << 12) + 0x40;
/// The guest's ITS frame (QEMU `virt`'s) and two redistributors.
const ITS_GFN: u64 = 0x0808_0000 >> 12;
const RD_GFN: u64 = 0x080A_0000 >> 12;
/// Guest RAM the test donates: the queue's page and a private page, each
/// 64 KiB aligned (as the queue and a pending table must be).
const RAM_GFNS: [u64; 2] = [0x110, 0x120];
const QUEUE: u64 = RAM_GFNS[0] << 12;
const PRIVATE: u64 = RAM_GFNS[1] << 12;

const FRAME_ITS: u64 = 0;
const FRAME_REDIST: u64 = 1;

fn err(e: Error) -> u64 {
    e.to_x0()
}

struct Vm {
    w: World,
    h: u64,
    cpu: Loaded,
}

/// A VM with one vCPU (protected: verified, its manifest allowing the GIC
/// frames), the GIC frames declared MMIO, two pages of RAM at
/// [`RAM_GFNS`] filled with a pattern.
fn vm(protected: bool) -> Vm {
    let mut w = world();
    let kp = KeyPair::from_seed(Seed::new([3; 32]));
    w.host
        .mem_mut()
        .set_verify_key(VerifyKey::new(*kp.pk).unwrap());
    let flags = if protected { vm_flags::PROTECTED } else { 0 };
    let r = hvc(&mut w, H::HostCreateVm, &[flags, 0, 4, FIRST_HOST_PFN, 16]);
    assert_eq!(r[0], 0);
    let h = r[1];
    assert_eq!(hvc(&mut w, H::HostCreateVcpu, &[h, 0])[0], 0);
    let img: Vec<u8> = (0..IMAGE_LEN).map(|i| (i * 5) as u8).collect();
    w.hw.write(IMAGE_PFN << 12, &img);
    for i in 0..2 {
        assert_eq!(
            hvc(&mut w, H::HostDonateGuest, &[h, IMAGE_PFN + i, GFN + i])[0],
            0
        );
    }
    if protected {
        let block = common::signature_block(&kp, &img, &[(ITS_GFN, 32 + 64)]);
        w.hw.write(SIG_PFN << 12, &block);
        let r = hvc(
            &mut w,
            H::HostVerifyImage,
            &[h, GFN, IMAGE_LEN as u64, SIG_PFN],
        );
        assert_eq!(r[0], 0);
    }
    assert_eq!(
        hvc(&mut w, H::HostDeclareMmio, &[h, ITS_GFN, 32 + 64])[0],
        0
    );
    for i in 0..2 {
        let pattern: Vec<u8> = (0..4096).map(|b| (b as u8) ^ (0x40 + i as u8)).collect();
        w.hw.write((RAM_PFN + i) << 12, &pattern);
        let call = if protected {
            H::HostDonateGuest
        } else {
            H::HostShareGuest
        };
        assert_eq!(
            hvc(&mut w, call, &[h, RAM_PFN + i, RAM_GFNS[i as usize], 0])[0],
            0
        );
    }
    Vm {
        w,
        h,
        cpu: Loaded::empty(),
    }
}

/// The frames as the shim places them.
fn place(v: &mut Vm) {
    let h = v.h;
    assert_eq!(
        hvc(&mut v.w, H::HostSetGicFrames, &[h, FRAME_ITS, ITS_GFN, 1])[0],
        0
    );
    assert_eq!(
        hvc(&mut v.w, H::HostSetGicFrames, &[h, FRAME_REDIST, RD_GFN, 2])[0],
        0
    );
}

fn read(v: &mut Vm, ipa: u64, len: u64) -> [u64; 4] {
    hvc(&mut v.w, H::HostReadGicTable, &[v.h, ipa, len])
}

/// A store of `2^sas` bytes from `x5` to `ipa` (a stage-2 translation
/// fault with ISV).
fn store(ipa: u64, sas: u64) -> GuestExit {
    let esr = ec::DABT_LOW << 26 | 1 << 25 | 1 << 24 | sas << 22 | 5 << 16 | 1 << 15 | 1 << 6 | 7;
    GuestExit {
        kind: ExitKind::Sync,
        esr,
        far: 0xffff_8000_0000_0000 | (ipa & 0xFFF),
        hpfar: (ipa >> 12) << 4,
        fp: false,
    }
}

/// Runs vCPU 0 until the guest stores `value` at `ipa` (an MMIO exit), a
/// 64-bit store (a 32-bit one where `value` fits).
fn guest_writes(v: &mut Vm, g: &mut ScriptedGuest, ipa: u64, value: u64) {
    let sas = if value >> 32 == 0 { 2 } else { 3 };
    let words = [0u64; run::ENTRY_WORDS];
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    v.w.hw.write(RUN_PFN << 12, &bytes);
    g.then_do(store(ipa, sas), move |ctx, _| ctx.x[5] = value);
    let mut regs: Regs = [0; 31];
    regs[0] = H::HostVcpuRun.function_id() as u64;
    regs[1..4].copy_from_slice(&[v.h, 0, RUN_PFN]);
    let a = v.w.host.handle_hvc(0, &mut regs, &mut v.w.hw).unwrap();
    let mut d = Direct {
        host: &mut v.w.host,
        hw: &mut v.w.hw,
    };
    let r = run_vcpu_in(&mut d, g, a, &mut v.cpu);
    run_result(r, &mut regs);
    assert_eq!((regs[0], regs[1]), (0, exit::MMIO));
    let mut out = vec![0u64; run::WORDS];
    v.w.hw.read_words(Pa(RUN_PFN << 12), &mut out);
    assert_eq!((out[run::EXIT_ADDR], out[run::EXIT_DATA]), (ipa, value));
    check_invariants(&v.w).unwrap();
}

/// The pattern [`vm`] put in RAM page `i`, `len` bytes from `off`, as
/// three little-endian words.
fn pattern(i: u64, off: u64, len: u64) -> [u64; 3] {
    let mut b = [0u8; 24];
    for k in 0..len {
        b[k as usize] = ((off + k) as u8) ^ (0x40 + i as u8);
    }
    let w = |k: usize| u64::from_le_bytes(b[k * 8..k * 8 + 8].try_into().unwrap());
    [w(0), w(1), w(2)]
}

#[test]
fn placing_the_frames_is_checked() {
    let mut v = vm(true);
    let h = v.h;
    // Outside the VM's MMIO ranges.
    assert_eq!(
        hvc(&mut v.w, H::HostSetGicFrames, &[h, FRAME_ITS, 0x9000, 1])[0],
        err(Error::Denied)
    );
    // Over RAM (the ITS at the guest's RAM would let its page table
    // writes count as ITS programming).
    assert_eq!(
        hvc(
            &mut v.w,
            H::HostSetGicFrames,
            &[h, FRAME_ITS, RAM_GFNS[0], 1]
        )[0],
        err(Error::Denied)
    );
    assert_eq!(
        hvc(
            &mut v.w,
            H::HostSetGicFrames,
            &[h, FRAME_ITS, ITS_GFN + 1, 1]
        )[0],
        err(Error::InvalidParameter)
    );
    assert_eq!(
        hvc(&mut v.w, H::HostSetGicFrames, &[h, 2, ITS_GFN, 1])[0],
        err(Error::InvalidParameter)
    );
    // The second redistributor's frame would leave the MMIO ranges.
    assert_eq!(
        hvc(&mut v.w, H::HostSetGicFrames, &[h, FRAME_REDIST, RD_GFN, 3])[0],
        err(Error::Denied)
    );
    place(&mut v);
    assert_eq!(
        hvc(&mut v.w, H::HostSetGicFrames, &[h, FRAME_ITS, ITS_GFN, 1])[0],
        err(Error::Denied),
        "once"
    );
    // A non-protected VM has none: KServ reads its memory itself.
    let mut p = vm(false);
    let ph = p.h;
    assert_eq!(
        hvc(&mut p.w, H::HostSetGicFrames, &[ph, FRAME_ITS, ITS_GFN, 1])[0],
        err(Error::InvalidParameter)
    );
    assert_eq!(read(&mut p, QUEUE, 8)[0], err(Error::Denied));
    // Stale handles find nothing.
    assert_eq!(
        hvc(
            &mut v.w,
            H::HostSetGicFrames,
            &[h + (1 << 16), FRAME_ITS, ITS_GFN, 1]
        )[0],
        err(Error::NotFound)
    );
}

#[test]
fn kserv_reads_only_what_the_guest_programmed() {
    let mut v = vm(true);
    place(&mut v);
    assert_eq!(
        hvc(&mut v.w, H::HostVcpuSetReg, &[v.h, 0, reg::PC, ENTRY])[0],
        0
    );
    // Nothing before the guest wrote anything.
    assert_eq!(read(&mut v, QUEUE, 8)[0], err(Error::Denied));
    let mut g = ScriptedGuest::new(4);
    // The guest writes GITS_CBASER: one page at QUEUE, valid.
    guest_writes(&mut v, &mut g, (ITS_GFN << 12) + 0x80, 1 << 63 | QUEUE);
    // KServ scribbling over the run page's exit changes nothing KCore
    // recorded.
    let mut words = vec![0u64; run::WORDS];
    v.w.hw.read_words(Pa(RUN_PFN << 12), &mut words);
    words[run::EXIT_DATA] = 1 << 63 | PRIVATE;
    v.w.hw.write_words(Pa(RUN_PFN << 12), &words);
    let r = read(&mut v, QUEUE + 0x20, 24);
    assert_eq!(r[0], 0);
    assert_eq!(r[1..], pattern(0, 0x20, 24));
    let r = read(&mut v, QUEUE + 0xFFD, 3);
    assert_eq!(r[1..], pattern(0, 0xFFD, 3));
    assert_eq!(read(&mut v, PRIVATE, 8)[0], err(Error::Denied));
    assert_eq!(
        read(&mut v, GFN << 12, 8)[0],
        err(Error::Denied),
        "the image"
    );
    assert_eq!(
        read(&mut v, QUEUE + 0xFF8, 16)[0],
        err(Error::InvalidParameter)
    );
    assert_eq!(read(&mut v, QUEUE, 25)[0], err(Error::InvalidParameter));
    assert_eq!(read(&mut v, QUEUE, 0)[0], err(Error::InvalidParameter));
    // A write to the same offset of another frame is no ITS programming.
    guest_writes(&mut v, &mut g, (RD_GFN << 12) + 0x80, 1 << 63 | PRIVATE);
    assert_eq!(read(&mut v, PRIVATE, 8)[0], err(Error::Denied));
    // The pending table of redistributor 1, once its LPIs are on.
    guest_writes(&mut v, &mut g, ((RD_GFN + 32) << 12) + 0x78, PRIVATE);
    assert_eq!(read(&mut v, PRIVATE, 8)[0], err(Error::Denied));
    guest_writes(&mut v, &mut g, (RD_GFN + 32) << 12, 1);
    let r = read(&mut v, PRIVATE + 8, 8);
    assert_eq!((r[0], r[1]), (0, pattern(1, 8, 8)[0]));
    // A window over a page the VM does not have.
    guest_writes(
        &mut v,
        &mut g,
        (ITS_GFN << 12) + 0x80,
        1 << 63 | 0x200 << 12,
    );
    assert_eq!(read(&mut v, 0x200 << 12, 8)[0], err(Error::NotFound));
    // The frames are fixed once a vCPU ran.
    assert_eq!(
        hvc(
            &mut v.w,
            H::HostSetGicFrames,
            &[v.h, FRAME_REDIST, RD_GFN + 64, 1]
        )[0],
        err(Error::Denied)
    );
    // Torn down: nothing.
    assert_eq!(hvc(&mut v.w, H::HostTeardownVm, &[v.h])[0], 0);
    assert_eq!(read(&mut v, PRIVATE + 8, 8)[0], err(Error::Denied));
    check_invariants(&v.w).unwrap();
}
