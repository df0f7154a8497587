//! The caches' `CCSIDR_EL1` through `ONE_REG` (`KVM_REG_ARM_DEMUX`), as
//! KVM 6.1's `demux_c15_get`/`set` and `write_demux_regids`: listed and
//! read for each cache KCore's `CLIDR_EL1` (the guest's) has, with the
//! value the CPU gives (the fake kernel's), and read-only.

use super::*;
use crate::kvm::regs;
use kcore_abi::reg::id::CLIDR_EL1;

/// Separate level 1 instruction and data caches, a unified level 2, no
/// level 3, and a stray type at level 4 (past the first level without a
/// cache: ignored), LoC 2.
const CLIDR: u64 = 3 | 4 << 3 | 2 << 9 | 2 << 24;

/// The fake kernel's CPU with [`CLIDR`].
pub(super) fn with_caches(f: &mut Fake) {
    f.k()
        .w
        .host
        .mem_mut()
        .set_guest_id_regs(kcore::idregs::GuestIdRegs::sanitise(|enc| {
            if enc == CLIDR_EL1 { CLIDR } else { 0 }
        }));
}

fn one_reg(f: &mut Fake, vm: &Vm, v: &mut Vcpu, set: bool, id: u64, at: u64) -> Result<i64, Errno> {
    let a = user(f, 0x9400, &[id, at]);
    let cmd = if set {
        uapi::SET_ONE_REG
    } else {
        uapi::GET_ONE_REG
    };
    ioctl(f, vm, v, cmd, a)
}

#[test]
fn each_cache_of_clidr_is_listed_read_and_fixed() {
    let mut f = Fake::new();
    with_caches(&mut f);
    let vm = new_vm(&mut f, 0);
    let mut v = new_vcpu(&mut f, &vm, 0);
    init(&mut f, &vm, &mut v, 1 << 2);
    // Listed after the rest: L1 data, L1 instruction, L2 (csselr 0, 1, 2).
    let count = regs::COUNT as u64 + 3;
    let list = user(&mut f, 0xB000, &[count - 1]);
    assert_eq!(
        ioctl(&mut f, &vm, &mut v, uapi::GET_REG_LIST, list),
        Err(E2BIG)
    );
    let mut b = [0u8; 8];
    f.copy_from_user(0xB000, &mut b).ok();
    assert_eq!(u64::from_le_bytes(b), count);
    user(&mut f, 0xB000, &[count]);
    assert_eq!(ioctl(&mut f, &vm, &mut v, uapi::GET_REG_LIST, list), Ok(0));
    let tail: Vec<u64> = (regs::COUNT as u64..count)
        .map(|i| {
            f.copy_from_user(0xB008 + 8 * i, &mut b).ok();
            u64::from_le_bytes(b)
        })
        .collect();
    let ccsidr = uapi::reg::ccsidr;
    assert_eq!(tail, [ccsidr(0), ccsidr(1), ccsidr(2)]);
    // Each reads as the CPU answers it, 32 bits.
    for s in 0..3u8 {
        user(&mut f, 0xA000, &[!0]);
        assert_eq!(
            one_reg(&mut f, &vm, &mut v, false, ccsidr(s.into()), 0xA000),
            Ok(0)
        );
        f.copy_from_user(0xA000, &mut b).ok();
        let cpu = f.ccsidr(s);
        assert_eq!(
            u64::from_le_bytes(b),
            0xFFFF_FFFF_0000_0000 | u64::from(cpu)
        );
        // Writing it back is accepted, anything else is EINVAL.
        assert_eq!(
            one_reg(&mut f, &vm, &mut v, true, ccsidr(s.into()), 0xA000),
            Ok(0)
        );
        user(&mut f, 0xA000, &[u64::from(cpu ^ 1)]);
        assert_eq!(
            one_reg(&mut f, &vm, &mut v, true, ccsidr(s.into()), 0xA000),
            Err(EINVAL)
        );
    }
    // No such cache: L2 instruction (unified), L3, L4 (after none), past
    // CSSELR_MAX; a 64-bit id or another demux id: ENOENT, before the
    // value is looked at.
    for id in [
        ccsidr(3),
        ccsidr(4),
        ccsidr(6),
        ccsidr(14),
        ccsidr(0) & !uapi::reg::SIZE_MASK | uapi::reg::SIZE_U64,
        ccsidr(0) | 1 << 8,
    ] {
        assert_eq!(
            one_reg(&mut f, &vm, &mut v, false, id, 0xA000),
            Err(ENOENT),
            "{id:#x}"
        );
        assert_eq!(
            one_reg(&mut f, &vm, &mut v, true, id, 0x10),
            Err(ENOENT),
            "{id:#x}"
        );
    }
    assert_eq!(
        one_reg(&mut f, &vm, &mut v, true, ccsidr(0), 0x10),
        Err(EFAULT)
    );
    assert_eq!(
        one_reg(&mut f, &vm, &mut v, false, ccsidr(0), 0x10),
        Err(EFAULT)
    );
}

#[test]
fn a_protected_vcpu_has_the_same_caches() {
    let mut f = Fake::new();
    with_caches(&mut f);
    let vm = new_vm(&mut f, 1 << 31);
    let mut v = new_vcpu(&mut f, &vm, 0);
    init(&mut f, &vm, &mut v, 1 << 2);
    let id = uapi::reg::ccsidr(2);
    assert_eq!(one_reg(&mut f, &vm, &mut v, false, id, 0xA000), Ok(0));
    let mut b = [0u8; 4];
    f.copy_from_user(0xA000, &mut b).ok();
    assert_eq!(u32::from_le_bytes(b), f.ccsidr(2));
}
