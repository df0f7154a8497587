//! PSCI (Arm DEN 0022) as KServ emulates it for guests: function ids and
//! results (re-exported from [`kcore_abi::psci`], their one home), and the
//! affinity helpers the KVM API in [`crate::kvm`] uses. KCore forwards a
//! guest's PSCI calls ([`is_psci`]) to KServ with `x1..x3`; what KServ
//! answers goes back in `x0`.

/// The function ids, results and the MPIDR affinity mask, defined once
/// for KCore, the shim and the test guest.
pub use kcore_abi::psci::*;

/// The vCPU index an MPIDR names (Aff0 = index % 16, Aff1 = index / 16, as
/// KCore and KVM lay them out), if it is below `vcpus`.
pub fn vcpu_of_mpidr(mpidr: u64, vcpus: usize) -> Option<usize> {
    let aff = mpidr & MPIDR_AFFINITY;
    if aff & !0xFFFF != 0 || aff & 0xF0 != 0 {
        return None;
    }
    let idx = ((aff >> 8) as usize) << 4 | (aff & 0xF) as usize;
    (idx < vcpus).then_some(idx)
}

/// The affinity (`Aff1.Aff0`, as in [`vcpu_of_mpidr`]) of vCPU `idx`.
pub const fn mpidr_of(idx: usize) -> u64 {
    (idx as u64 & 0xF) | ((idx as u64 >> 4) & 0xFF) << 8
}

/// The vCPUs an `ICC_SGI1R_EL1` value targets, as a mask of the first
/// `vcpus` (at most 64) indices, for a write by vCPU `from`: every other
/// vCPU with IRM, else those of the target list at affinity
/// `Aff3.Aff2.Aff1` with range selector 0.
pub fn sgi_targets(value: u64, from: usize, vcpus: usize) -> u64 {
    let n = vcpus.min(64);
    let all = if n == 64 { u64::MAX } else { (1u64 << n) - 1 };
    if value & (1 << 40) != 0 {
        let me = if from < 64 { 1u64 << from } else { 0 };
        return all & !me;
    }
    let aff1 = (value >> 16) & 0xFF;
    let aff2 = (value >> 32) & 0xFF;
    let aff3 = (value >> 48) & 0xFF;
    let rs = (value >> 44) & 0xF;
    if aff3 != 0 || aff2 != 0 || rs != 0 || aff1 >= 4 {
        return 0;
    }
    // vCPU t is Aff1 = t / 16, Aff0 = t % 16 (`mpidr_of`).
    ((value & 0xFFFF) << (16 * aff1)) & all
}

/// The INTID an SGI register value generates.
pub const fn sgi_intid(value: u64) -> u32 {
    ((value >> 24) & 0xF) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use kcore_abi::smccc;

    /// `sgi_targets` as the architecture states it, vCPU by vCPU.
    fn sgi_targets_one_by_one(value: u64, from: usize, vcpus: usize) -> u64 {
        let mut mask = 0;
        for t in 0..vcpus.min(64) {
            let hit = if value & (1 << 40) != 0 {
                t != from
            } else {
                let aff = mpidr_of(t);
                (value >> 48) & 0xFF == 0
                    && (value >> 32) & 0xFF == 0
                    && (value >> 44) & 0xF == 0
                    && (value >> 16) & 0xFF == (aff >> 8) & 0xFF
                    && value & (1 << (aff & 0xF)) != 0
            };
            if hit {
                mask |= 1 << t;
            }
        }
        mask
    }

    #[test]
    fn sgi_targets_match_the_one_by_one_definition() {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let fixed = [1 << 40, 0xFFFF, 0x3_FFFF, 0x1_0001, 0xFF_FFFF, 1 << 44 | 1];
        let random = (0..40000).map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Half with small affinities, so the target list matters.
            if i % 2 == 0 {
                x & 0xFFFF_0000_00FF_FFFF & !(0xFC << 16) | (x >> 20 & 1) << 40
            } else {
                x
            }
        });
        for v in fixed.into_iter().chain(random) {
            for vcpus in [0, 1, 2, 5, 16, 17, 33, 63, 64, 100] {
                for from in [0, 1, 15, 16, 63, 64] {
                    assert_eq!(
                        sgi_targets(v, from, vcpus),
                        sgi_targets_one_by_one(v, from, vcpus),
                        "value {v:#x}, from {from}, {vcpus} vCPUs"
                    );
                }
            }
        }
    }

    #[test]
    fn mpidr_round_trip() {
        for i in 0..64 {
            assert_eq!(vcpu_of_mpidr(mpidr_of(i) | 1 << 31, 64), Some(i));
        }
        assert_eq!(vcpu_of_mpidr(mpidr_of(5), 5), None);
        assert_eq!(vcpu_of_mpidr(0x10, 64), None);
        assert_eq!(vcpu_of_mpidr(1 << 16, 64), None);
    }

    #[test]
    fn sgi_target_lists() {
        // IRM: everyone else.
        assert_eq!(sgi_targets(1 << 40, 1, 4), 0b1101);
        // Target list 0b101 at Aff1 0.
        assert_eq!(sgi_targets(0b101 | 3 << 24, 0, 4), 0b101);
        // Aff1 1 reaches vCPUs 16..
        assert_eq!(sgi_targets(1 << 16 | 0b11, 0, 20), 0b11 << 16);
        // Range selector or Aff2 set: nobody here.
        assert_eq!(sgi_targets(1 << 44 | 1, 0, 4), 0);
        assert_eq!(sgi_targets(1 << 32 | 1, 0, 4), 0);
        assert_eq!(sgi_intid(7 << 24), 7);
        assert_eq!(smccc::arg(CPU_ON_32, u64::MAX), 0xFFFF_FFFF);
        assert_eq!(smccc::arg(CPU_ON_64, u64::MAX), u64::MAX);
    }
}
