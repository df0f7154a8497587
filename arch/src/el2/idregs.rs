//! Reading the CPU's identification registers at EL2, for
//! `kcore::idregs::GuestIdRegs::sanitise`.

use core::arch::asm;
use kcore::idregs::{AIDR_EL1, CLIDR_EL1, CTR_EL0, ICH_VTR_EL2, MIDR_EL1, REVIDR_EL1};

/// One `MRS` of an encoding spelled out, so that registers the assembler
/// has no name for (reserved ones of the feature space) read too.
macro_rules! mrs {
    ($op1:literal, $crn:literal, $crm:literal, $op2:literal) => {{
        let v: u64;
        // SAFETY: reading an identification register has no side effects;
        // every encoding of the feature space reads (as zero when reserved).
        unsafe {
            asm!(
                concat!("mrs {}, S3_", stringify!($op1), "_C", stringify!($crn), "_C", stringify!($crm), "_", stringify!($op2)),
                out(reg) v,
                options(nomem, nostack, preserves_flags)
            )
        };
        v
    }};
}

/// The eight registers of one `CRm` row of the feature space, by `op2`.
macro_rules! row {
    ($crm:literal, $op2:expr) => {
        match $op2 {
            0 => mrs!(0, 0, $crm, 0),
            1 => mrs!(0, 0, $crm, 1),
            2 => mrs!(0, 0, $crm, 2),
            3 => mrs!(0, 0, $crm, 3),
            4 => mrs!(0, 0, $crm, 4),
            5 => mrs!(0, 0, $crm, 5),
            6 => mrs!(0, 0, $crm, 6),
            _ => mrs!(0, 0, $crm, 7),
        }
    };
}

/// This CPU's identification register `enc` (a `kcore_abi::reg::sysreg`
/// encoding): the feature space `op0=3, op1=0, CRn=0, CRm=1..7` and
/// `kcore::idregs::FIXED`, and `ICH_VTR_EL2` on a GICv3 with its system
/// registers; 0 for any other encoding.
pub fn id_reg(enc: u64) -> u64 {
    if let Some(i) = kcore::idregs::feature_index(enc) {
        let op2 = i % 8;
        return match i / 8 + 1 {
            1 => row!(1, op2),
            2 => row!(2, op2),
            3 => row!(3, op2),
            4 => row!(4, op2),
            5 => row!(5, op2),
            6 => row!(6, op2),
            _ => row!(7, op2),
        };
    }
    match enc {
        MIDR_EL1 => mrs!(0, 0, 0, 0),
        REVIDR_EL1 => mrs!(0, 0, 0, 6),
        CLIDR_EL1 => mrs!(1, 0, 0, 1),
        AIDR_EL1 => mrs!(1, 0, 0, 7),
        CTR_EL0 => mrs!(3, 0, 0, 1),
        // Only with the GICv3 system registers (and ICC_SRE_EL2.SRE set,
        // which KServ's configuration does before this is read).
        ICH_VTR_EL2 if super::cpu::features().gicv3_sysregs => mrs!(4, 12, 11, 1),
        _ => 0,
    }
}
