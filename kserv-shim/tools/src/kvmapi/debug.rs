//! The VMM's hardware breakpoints and its exceptions for the guest
//! (`KVM_GUESTDBG_USE_HW`, `KVM_SET_VCPU_EVENTS`) in a non-protected VM,
//! with a guest of a few instructions written into its RAM (MMU off):
//!
//! - a hardware breakpoint the VMM sets on the third instruction ends
//!   `KVM_RUN` with `KVM_EXIT_DEBUG`, a breakpoint syndrome (EC 0x30) and
//!   the PC there;
//! - with debugging off the guest reads an address no device claims
//!   (`KVM_EXIT_MMIO`); the VMM answers with `ext_dabt_pending`, and the
//!   guest's synchronous vector reports (MMIO writes) the `ESR_EL1`,
//!   `ELR_EL1` and `FAR_EL1` it took: EC 0x25, FSC 0x10, the load's PC and
//!   address;
//! - an SError the VMM makes pending reads back through
//!   `KVM_GET_VCPU_EVENTS` while the guest masks it, and once the guest
//!   unmasks it is taken at its SError vector (EC 0x2F) and no longer
//!   pending.

use super::Checks;
use crate::kvm::*;
use std::fs::File;

/// `KVM_SET_GUEST_DEBUG`: `struct kvm_guest_debug` (control, pad, then
/// `dbg_bcr`, `dbg_bvr`, `dbg_wcr`, `dbg_wvr`, 16 each).
const SET_GUEST_DEBUG: u32 = ioc(1, 0x9B, 8 + 512);
/// `KVM_GET_VCPU_EVENTS`, `KVM_SET_VCPU_EVENTS`: `struct kvm_vcpu_events`.
const GET_VCPU_EVENTS: u32 = ioc(2, 0x9F, 64);
const SET_VCPU_EVENTS: u32 = ioc(1, 0xA0, 64);
const GUESTDBG_ENABLE: u64 = 1;
const GUESTDBG_USE_HW: u64 = 1 << 17;
const CAP_SET_GUEST_DEBUG2: u64 = 195;
const CAP_GUEST_DEBUG_HW_BPS: u64 = 119;
const CAP_GUEST_DEBUG_HW_WPS: u64 = 120;
const CAP_ARM_INJECT_EXT_DABT: u64 = 178;
const EXIT_DEBUG: u32 = 4;

const RAM: u64 = 0x4000_0000;
const VBAR: u64 = RAM + 0x800;
/// Read by the guest: no device there.
const NOWHERE: u64 = 0x0900_0000;
/// Written by the guest: its reports.
const REPORT: u64 = 0x0A00_0000;
/// Written by the guest where it should not get to (an exception not
/// taken): an exit rather than a spin the VMM would wait on forever.
const FELL_THROUGH: u64 = 0x0B00_0000;

const NOP: u32 = 0xD503_201F;
const LDR_W1_X2: u32 = 0xB940_0041;
const STR_X0_X3: u32 = 0xF900_0060;
const STR_X0_X4: u32 = 0xF900_0080;
const B_SELF: u32 = 0x1400_0000;
const MRS_X0_ESR: u32 = 0xD538_5200;
const MRS_X0_ELR: u32 = 0xD538_4020;
const MRS_X0_FAR: u32 = 0xD538_6000;
const MSR_DAIFCLR_A: u32 = 0xD503_44FF;

/// The guest: `(offset, instructions)`.
const CODE: [(usize, &[u32]); 3] = [
    (0, &[NOP, NOP, NOP, LDR_W1_X2, STR_X0_X4, B_SELF]),
    // VBAR_EL1 + 0x200: synchronous, current EL with SP_ELx.
    (
        0xA00,
        &[
            MRS_X0_ESR,
            STR_X0_X3,
            MRS_X0_ELR,
            STR_X0_X3,
            MRS_X0_FAR,
            STR_X0_X3,
            LDR_W1_X2,
            MSR_DAIFCLR_A,
            STR_X0_X4,
            B_SELF,
        ],
    ),
    // VBAR_EL1 + 0x380: SError, current EL with SP_ELx.
    (0xB80, &[MRS_X0_ESR, STR_X0_X3, B_SELF]),
];

/// The checks; an `Err` is a setup step that failed.
pub fn checks(c: &mut Checks, kvm: &File, target: u32) -> Result<(), String> {
    let cap = |n| ioctl(kvm, CHECK_EXTENSION, n);
    c.check(
        "debug-cap-hw-bps",
        cap(CAP_GUEST_DEBUG_HW_BPS).is_ok_and(|n| n >= 2),
        || format!("{:?}", cap(CAP_GUEST_DEBUG_HW_BPS)),
    );
    c.check(
        "debug-cap-hw-wps",
        cap(CAP_GUEST_DEBUG_HW_WPS).is_ok_and(|n| n >= 2),
        || format!("{:?}", cap(CAP_GUEST_DEBUG_HW_WPS)),
    );
    let want = (GUESTDBG_ENABLE | GUESTDBG_USE_HW) as i64;
    c.check(
        "debug-cap-use-hw",
        cap(CAP_SET_GUEST_DEBUG2).is_ok_and(|b| b & want == want),
        || format!("{:?}", cap(CAP_SET_GUEST_DEBUG2)),
    );
    c.ok("events-cap-ext-dabt", cap(CAP_ARM_INJECT_EXT_DABT), 1);

    let vm = owned(ioctl(kvm, CREATE_VM, 0).map_err(|e| format!("KVM_CREATE_VM: errno {e}"))?);
    let ram = anon(2 << 20).map_err(|e| format!("mmap: errno {e}"))?;
    for (off, code) in CODE {
        for (i, insn) in code.iter().enumerate() {
            ram[off + 4 * i..off + 4 * i + 4].copy_from_slice(&insn.to_le_bytes());
        }
    }
    set_region(&vm, region(0, 0, RAM, 2 << 20, ram.as_ptr() as u64))
        .map_err(|e| format!("memslot: errno {e}"))?;
    let v = make_vcpu(&vm, 0, target, 1 << 2)?;
    for (id, val) in [
        (REG_PC, RAM),
        (core64(4), NOWHERE),
        (core64(6), REPORT),
        (core64(8), FELL_THROUGH),
        (sysreg(3, 0, 12, 0, 0), VBAR),
    ] {
        set_reg(&v.fd, id, val).map_err(|e| format!("set {id:#x}: errno {e}"))?;
    }
    let run = |what: &str| ioctl(&v.fd, RUN, 0).map_err(|e| format!("KVM_RUN ({what}): errno {e}"));

    // A hardware breakpoint on the third instruction, at EL1 and EL0
    // (PMC 0b11), all four bytes (BAS 0xF).
    let mut dbg = [0u64; 65];
    dbg[0] = GUESTDBG_ENABLE | GUESTDBG_USE_HW;
    dbg[1] = 1 | 3 << 1 | 0xF << 5; // dbg_bcr[0]
    dbg[17] = RAM + 8; // dbg_bvr[0]
    c.ok(
        "debug-use-hw",
        ioctl(&v.fd, SET_GUEST_DEBUG, dbg.as_ptr() as u64),
        0,
    );
    run("breakpoint")?;
    let (reason, hsr) = (v.run_u32(8), v.run_u32(32));
    c.check(
        "debug-hw-breakpoint-exit",
        reason == EXIT_DEBUG && hsr >> 26 == 0x30,
        || format!("exit {reason}, hsr {hsr:#x}"),
    );
    let pc = get_reg(&v.fd, REG_PC);
    c.check("debug-hw-breakpoint-pc", pc == Ok(RAM + 8), || {
        format!("{pc:x?}")
    });

    // Off again: the load of NOWHERE exits, and fails.
    let off = [0u64; 65];
    c.ok(
        "debug-off",
        ioctl(&v.fd, SET_GUEST_DEBUG, off.as_ptr() as u64),
        0,
    );
    run("load")?;
    let mmio = v.mmio();
    c.check(
        "events-load-exit",
        v.run_u32(8) == EXIT_MMIO && mmio.0 == NOWHERE && !mmio.3,
        || format!("exit {}, {mmio:x?}", v.run_u32(8)),
    );
    let mut ev = [0u64; 8];
    ev[0] = 1 << 16; // ext_dabt_pending
    c.ok(
        "events-ext-dabt",
        ioctl(&v.fd, SET_VCPU_EVENTS, ev.as_ptr() as u64),
        0,
    );
    let mut reports = Vec::new();
    for _ in 0..3 {
        run("abort vector")?;
        let (addr, data, _, write) = v.mmio();
        if v.run_u32(8) != EXIT_MMIO || addr != REPORT || !write {
            break;
        }
        reports.push(data);
    }
    c.check(
        "events-ext-dabt-taken",
        reports == [0x9600_0010, RAM + 12, NOWHERE],
        || format!("ESR, ELR, FAR {reports:x?}"),
    );

    // The vector's own load of NOWHERE, with SErrors masked: an SError
    // pending meanwhile reads back until the guest unmasks it.
    run("second load")?;
    let mmio = v.mmio();
    c.check(
        "events-second-load",
        v.run_u32(8) == EXIT_MMIO && mmio.0 == NOWHERE,
        || format!("exit {}, {mmio:x?}", v.run_u32(8)),
    );
    ev[0] = 1; // serror_pending
    c.ok(
        "events-serror",
        ioctl(&v.fd, SET_VCPU_EVENTS, ev.as_ptr() as u64),
        0,
    );
    let pending = |v: &Vcpu| {
        let mut got = [u64::MAX; 8];
        ioctl(&v.fd, GET_VCPU_EVENTS, got.as_mut_ptr() as u64).map(|_| got[0] & 1)
    };
    c.ok("events-serror-pending", pending(&v).map(|p| p as i64), 1);
    run("SError vector")?;
    let (addr, esr, _, write) = v.mmio();
    // (At FELL_THROUGH if the guest unmasked without taking it.)
    c.check(
        "events-serror-taken",
        addr == REPORT && write && esr >> 26 == 0x2F,
        || format!("exit {}, at {addr:#x}, ESR {esr:#x}", v.run_u32(8)),
    );
    c.ok("events-serror-delivered", pending(&v).map(|p| p as i64), 0);
    Ok(())
}
