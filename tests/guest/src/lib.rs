//! The protocol between `kcore-test-guest` and the KServ-side driver that
//! runs it.
//!
//! The guest (`src/main.rs`, built for `aarch64-unknown-none`) runs at EL1 in
//! a VM; the driver creates that VM, emulates its test device and checks what
//! the guest reports. Everything both sides must agree on lives here and
//! builds for any target: the VM's memory map and boot registers, the
//! hypercall and interrupt numbers the guest uses, the test device's
//! registers and semantics, the memory pattern whose checksum the guest
//! reports, and the console lines and status word it reports with.
#![no_std]

mod checksum;
mod report;

pub use checksum::{checksum, expected_checksum, fill_word};
pub use report::{LINE_PREFIX, Line, RESULT_NAME, Status, parse_line};

/// Guest-physical address of the first byte of RAM; the image is loaded here
/// and vCPU 0 starts at its first byte.
pub const RAM_BASE: u64 = 0x4000_0000;

/// Bytes of guest RAM. Pages past the image are backed by the host when the
/// guest first touches them.
pub const RAM_SIZE: u64 = 16 << 20;

/// Number of vCPUs; vCPU `i` has `MPIDR_EL1.Aff0 == i`.
pub const VCPUS: u64 = 2;

/// `x0` of vCPU 0 at its first instruction ("kcoregst"); every other
/// general-purpose register is zero.
pub const BOOT_X0: u64 = 0x6b63_6f72_6567_7374;

/// The context id vCPU 0 passes to PSCI `CPU_ON` for vCPU 1, which finds it
/// in `x0` at its entry point ("vcpu1-on").
pub const SECONDARY_CTX: u64 = 0x7663_7075_312d_6f6e;

/// Guest-physical address of the region the `checksum` test fills with
/// [`fill_word`] and checksums.
pub const CHECKSUM_BASE: u64 = RAM_BASE + (8 << 20);

/// Bytes in the checksum region.
pub const CHECKSUM_BYTES: u64 = 4 << 20;

/// 64-bit words in the checksum region.
pub const CHECKSUM_WORDS: u64 = CHECKSUM_BYTES / 8;

// The memory map: the checksum region is in RAM, well past the image (the
// linker script checks the image's end), and the test device is below RAM.
const _: () = assert!(CHECKSUM_BASE >= RAM_BASE + (1 << 20));
const _: () = assert!(CHECKSUM_BASE + CHECKSUM_BYTES <= RAM_BASE + RAM_SIZE);
const _: () = assert!(testdev::BASE + testdev::SIZE <= RAM_BASE);
const _: () = assert!(testdev::SCRATCH + 8 <= testdev::SIZE);

/// Every test the guest reports, in the order it reports them.
pub const TESTS: &[&str] = &[
    "x0",
    "mmu",
    "mmio8",
    "mmio16",
    "mmio32",
    "mmio64",
    "mmio-signed",
    "mmio-zero-reg",
    "hvc-unknown",
    "smc-unknown",
    "smccc-version",
    "psci-version-hvc",
    "psci-version-smc",
    "sysreg-undef",
    "fpsimd",
    "vtimer",
    "wfi-timer",
    "cpu-on",
    "sgi",
    "fpsimd-vcpu1",
    "cpu-off",
    "checksum",
];

/// SMCCC (Arm DEN 0028) calls the guest makes; both `HVC #0` and `SMC #0`
/// reach the host.
pub mod smccc {
    /// `SMCCC_VERSION`.
    pub const VERSION: u64 = 0x8000_0000;
    /// What `SMCCC_VERSION` returns: v1.1.
    pub const VERSION_1_1: u64 = 0x1_0001;
    /// `NOT_SUPPORTED` (-1), returned in `x0` for an unknown function id.
    pub const NOT_SUPPORTED: u64 = u64::MAX;
    /// Function ids nobody implements; the host must answer
    /// [`NOT_SUPPORTED`].
    pub const UNKNOWN_FUNCTIONS: [u64; 2] = [0xC600_1234, 0x8600_0042];
}

/// PSCI (Arm DEN 0022) calls, emulated by the host.
pub mod psci {
    /// `PSCI_VERSION`.
    pub const VERSION: u64 = 0x8400_0000;
    /// What `PSCI_VERSION` returns: 1.0.
    pub const VERSION_1_0: u64 = 0x0001_0000;
    /// `CPU_OFF`: does not return on success.
    pub const CPU_OFF: u64 = 0x8400_0002;
    /// `CPU_ON` (SMC64): `x1` target MPIDR, `x2` entry point, `x3` context id.
    pub const CPU_ON: u64 = 0xC400_0003;
    /// `AFFINITY_INFO` (SMC64): `x1` target MPIDR, `x2` lowest affinity level
    /// (0).
    pub const AFFINITY_INFO: u64 = 0xC400_0004;
    /// `SYSTEM_OFF`: the guest's last call.
    pub const SYSTEM_OFF: u64 = 0x8400_0008;
    /// `SUCCESS`.
    pub const SUCCESS: u64 = 0;
    /// `AFFINITY_INFO`: the target is on.
    pub const AFFINITY_ON: u64 = 0;
    /// `AFFINITY_INFO`: the target is off.
    pub const AFFINITY_OFF: u64 = 1;
    /// `AFFINITY_INFO`: the target is being turned on.
    pub const AFFINITY_ON_PENDING: u64 = 2;
}

/// Interrupts, delivered through the GICv3 CPU interface's system registers
/// (there is no distributor or redistributor to program).
pub mod gic {
    /// The SGI vCPU 0 sends to vCPU 1.
    pub const SGI_PING: u32 = 1;
    /// The SGI vCPU 1 sends back to vCPU 0 for every [`SGI_PING`].
    pub const SGI_PONG: u32 = 2;
    /// The EL1 virtual timer's PPI.
    pub const TIMER_INTID: u32 = 27;
}

/// The test device: one page of MMIO whose accesses exit to the host.
pub mod testdev {
    /// Guest-physical base address.
    pub const BASE: u64 = 0x0900_0000;
    /// Bytes of the device's MMIO window.
    pub const SIZE: u64 = 0x1000;
    /// 8-bit writes: one byte of console output each.
    pub const CONSOLE: u64 = 0x000;
    /// 64-bit write, once at the end: [`crate::Status::to_word`].
    pub const STATUS: u64 = 0x008;
    /// 64-bit write: the checksum the guest computed over the checksum
    /// region.
    pub const CHECKSUM: u64 = 0x010;
    /// Read-inverting scratch register; see [`scratch_store`] and
    /// [`scratch_load`].
    pub const SCRATCH: u64 = 0x100;

    /// The width of one MMIO access.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Width {
        /// 8 bits (`ldrb`/`strb`).
        Byte,
        /// 16 bits (`ldrh`/`strh`).
        Half,
        /// 32 bits (`ldr w`/`str w`).
        Word,
        /// 64 bits (`ldr x`/`str x`).
        Double,
    }

    impl Width {
        /// Bytes transferred.
        pub const fn bytes(self) -> u64 {
            match self {
                Self::Byte => 1,
                Self::Half => 2,
                Self::Word => 4,
                Self::Double => 8,
            }
        }

        /// The bits an access of this width transfers.
        pub const fn mask(self) -> u64 {
            match self {
                Self::Byte => 0xff,
                Self::Half => 0xffff,
                Self::Word => 0xffff_ffff,
                Self::Double => u64::MAX,
            }
        }
    }

    /// What [`SCRATCH`] holds after a write of `value` with `width`: the
    /// written bits, zero-extended (a narrow write replaces the whole value).
    pub const fn scratch_store(value: u64, width: Width) -> u64 {
        value & width.mask()
    }

    /// What a read of [`SCRATCH`] with `width` returns while it holds
    /// `stored`: the inverted value, truncated to the access width (the CPU
    /// then zero- or sign-extends it as the load instruction says).
    pub const fn scratch_load(stored: u64, width: Width) -> u64 {
        !stored & width.mask()
    }
}

#[cfg(test)]
mod tests {
    use super::testdev::{Width, scratch_load, scratch_store};
    use super::*;

    #[test]
    fn test_names_are_unique_and_fit_a_line() {
        for (i, a) in TESTS.iter().enumerate() {
            assert!(!a.is_empty() && !a.contains([' ', ':']), "{a}");
            assert_ne!(*a, RESULT_NAME);
            assert!(TESTS[i + 1..].iter().all(|b| a != b), "{a} twice");
        }
    }

    #[test]
    fn scratch_inverts_within_the_access_width() {
        let stored = scratch_store(0x0123_4567_89ab_cdef, Width::Half);
        assert_eq!(stored, 0xcdef);
        assert_eq!(scratch_load(stored, Width::Half), 0x3210);
        assert_eq!(scratch_load(stored, Width::Byte), 0x10);
        assert_eq!(scratch_load(stored, Width::Double), !0xcdef);
        assert_eq!(scratch_load(0, Width::Word), 0xffff_ffff);
        for w in [Width::Byte, Width::Half, Width::Word, Width::Double] {
            assert_eq!(w.mask(), u64::MAX >> (64 - 8 * w.bytes()));
        }
    }
}
