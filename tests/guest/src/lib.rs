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
const _: () = assert!(testdev::BASE >= gic::ITS + gic::ITS_SIZE);

/// `x0` of vCPU 0 that makes the guest run the [`eventfd`] program
/// instead of its tests ("eventfd!").
pub const EVENTFD_X0: u64 = 0x6576_656e_7466_6421;

/// The eventfd program, for a host's `KVM_IOEVENTFD` and `KVM_IRQFD`: vCPU
/// 0 alone, the host's GICv3 distributor at [`eventfd::GICD`]. The guest
/// writes [`eventfd::STEP`] at each step (the step number in bits 0..8,
/// the SPIs it took so far in bits 32..48 (edge) and 48..64 (level)); the
/// host acts on it before it runs the vCPU again:
///
/// 1. the guest read the first two words of the host's read-only memory
///    slot at [`eventfd::ROM`] ([`eventfd::rom_word`]), wrote one (which must
///    reach the host as an MMIO write) and read it back unchanged, and
///    called the code in the read-only slot [`eventfd::XROM`] if the host
///    made one; then it
///    rang [`eventfd::DOORBELLS`] doorbells (32-bit writes of
///    [`eventfd::DOORBELL_VALUE`] to [`eventfd::DOORBELL`], the host's
///    ioeventfd with that data match takes them) and then one with another
///    value, which must reach the host as an MMIO write; the host signals
///    the edge irqfd ([`eventfd::EDGE_GSI`]) before the next entry;
/// 2. the guest took that SPI; the host signals the edge irqfd again from
///    another thread a while later, while the guest waits in WFI;
/// 3. the guest took it; the host signals the resampling irqfd
///    ([`eventfd::LEVEL_GSI`]);
/// 4. the guest took that level SPI and completed it: the host's
///    resamplefd must have been signalled once; the host deassigns the edge
///    irqfd and the ioeventfd, and signals the edge eventfd;
/// 5. the guest waited [`eventfd::QUIET_MS`] without an interrupt and rang
///    one more doorbell, which must reach the host as an MMIO write.
///
/// Then it writes [`testdev::STATUS`] (the steps that went as the guest
/// expected, all 5 to pass) and turns the VM off. Its console says what
/// went wrong.
pub mod eventfd {
    /// The distributor's base.
    pub const GICD: u64 = 0x0800_0000;
    /// The redistributors' base.
    pub const GICR: u64 = 0x080A_0000;
    /// Test device register the doorbells go to (32-bit writes).
    pub const DOORBELL: u64 = 0x020;
    /// The value of the doorbells the ioeventfd takes.
    pub const DOORBELL_VALUE: u64 = 0x5eed;
    /// Doorbells rung in step 1.
    pub const DOORBELLS: u64 = 100;
    /// Test device register of the steps (64-bit writes).
    pub const STEP: u64 = 0x028;
    /// The GSI of the edge irqfd: SPI 40, edge-triggered.
    pub const EDGE_GSI: u32 = 8;
    /// The GSI of the resampling irqfd: SPI 41, level-sensitive.
    pub const LEVEL_GSI: u32 = 9;
    /// How long step 5 waits for an interrupt that must not come.
    pub const QUIET_MS: u64 = 200;
    /// What the guest checks itself (the read-only memory and steps 2 to
    /// 5), the `passed` of its status when all hold.
    pub const GUEST_CHECKS: u32 = 5;
    /// The host's read-only memory slot (one page, in the guest's device
    /// GiB, so it is read as device memory: no instruction fetches).
    pub const ROM: u64 = 0x0c00_0000;
    /// Word `i` of [`ROM`] as the host fills it.
    pub const fn rom_word(i: u64) -> u64 {
        0x0123_4567_0000_0000 | i.wrapping_mul(0x9E37_79B9) & 0xffff_ffff
    }
    /// What the guest writes to [`ROM`]'s first word.
    pub const ROM_WRITE: u64 = 0xdead_beef_f00d_cafe;
    /// [`ROM`]'s word that says whether the host also made [`XROM`] (1) or
    /// not (0; a protected VM, whose read-only slots the host emulates, so
    /// that an instruction fetch there faults).
    pub const ROM_XROM_WORD: u64 = 2;
    /// A read-only slot of code in RAM's GiB, past RAM (one page).
    pub const XROM: u64 = super::RAM_BASE + super::RAM_SIZE + (2 << 20);
    /// What [`XROM`] holds: `movz x0, #0x5a5a` and `ret`.
    pub const XROM_CODE: [u32; 2] = [0xD280_0000 | 0x5a5a << 5, 0xD65F_03C0];
    /// What calling [`XROM`] returns.
    pub const XROM_RESULT: u64 = 0x5a5a;
    /// The INTID of GSI `gsi` (arm64 KVM's default routing: SPI `32 + gsi`).
    pub const fn spi(gsi: u32) -> u32 {
        32 + gsi
    }

    /// The STEP word for `step` with `edge` and `level` SPIs taken.
    pub const fn step_word(step: u64, edge: u64, level: u64) -> u64 {
        step & 0xff | (edge & 0xffff) << 32 | (level & 0xffff) << 48
    }

    /// `(step, edge, level)` of a STEP word.
    pub const fn parse_step(w: u64) -> (u64, u64, u64) {
        (w & 0xff, (w >> 32) & 0xffff, w >> 48)
    }
}

/// `x0` of vCPU 0 that makes the guest run the [`bench`] program instead
/// of its tests ("bench!!!").
pub const BENCH_X0: u64 = 0x6265_6e63_6821_2121;

/// The bench program: microbenchmarks of what a VM's exits cost, each the
/// mean of [`bench::Bench::iterations`] repetitions timed with the guest's
/// virtual counter, for a host's side-by-side comparison of hypervisors.
///
/// A VM like the tests' (two vCPUs, [`RAM_SIZE`] of RAM, the test device),
/// plus the host's GICv3 at [`eventfd::GICD`] and [`eventfd::GICR`] with at
/// least [`bench::IRQ_GSI`]'s SPI. The `ipi` benchmark's SGIs are the
/// tests' [`gic::SGI_PING`] and [`gic::SGI_PONG`]. vCPU 0 programs the distributor, writes
/// `CNTFRQ_EL0` to [`bench::CNTFRQ`], starts vCPU 1 (PSCI `CPU_ON` with
/// [`bench::SECONDARY_CTX`]), then runs [`bench::BENCHES`] in order, each
/// after its warm-up repetitions, and writes one
/// [`bench::result_word`] per benchmark to [`bench::RESULT`]. Last it
/// writes [`testdev::STATUS`] (`passed`: benchmarks that ran and checked
/// out, `failed`: the others) and turns the VM off. Its console says what
/// failed.
///
/// What the host does for it: answers 32-bit reads of [`bench::MMIO`] with
/// [`bench::MMIO_VALUE`] (from userspace: a `KVM_EXIT_MMIO`), and on each
/// 32-bit write to [`bench::IRQ_REQUEST`] gives SPI
/// [`eventfd::spi`]`(`[`bench::IRQ_GSI`]`)` an edge (`KVM_IRQ_LINE` up,
/// then down) before the vCPU runs again. RAM from [`bench::FAULT_BASE`]
/// must be untouched (not yet backed) when the guest starts.
pub mod bench {
    /// One benchmark.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Bench {
        /// Its name (no spaces).
        pub name: &'static str,
        /// Timed repetitions; the result is their total.
        pub iterations: u32,
        /// Untimed repetitions first (none where the first time is what
        /// is measured).
        pub warmup: u32,
        /// What one repetition does.
        pub what: &'static str,
    }

    /// Every benchmark, in the order the guest runs and reports them.
    pub const BENCHES: &[Bench] = &[
        Bench {
            name: "hvc",
            iterations: 2000,
            warmup: 200,
            what: "hypercall round trip to the host kernel (HVC PSCI_VERSION)",
        },
        Bench {
            name: "mmio-kernel",
            iterations: 2000,
            warmup: 200,
            what: "MMIO exit handled in the host kernel (32-bit GICD_TYPER read)",
        },
        Bench {
            name: "mmio-user",
            iterations: 2000,
            warmup: 200,
            what: "MMIO exit to the VMM (32-bit read answered from userspace)",
        },
        Bench {
            name: "ipi",
            iterations: 1000,
            warmup: 100,
            what: "virtual IPI round trip: SGI to vCPU 1 and its SGI back, both idle in WFI",
        },
        Bench {
            name: "irq",
            iterations: 1000,
            warmup: 100,
            what: "interrupt injection: MMIO request, the VMM's KVM_IRQ_LINE, IRQ taken and EOIed",
        },
        Bench {
            name: "fault",
            iterations: FAULT_PAGES as u32,
            warmup: 0,
            what: "first touch of a page: stage-2 fault, backed by the host",
        },
    ];

    /// Test device register: the guest's `CNTFRQ_EL0` (64-bit write, once,
    /// before any result).
    pub const CNTFRQ: u64 = 0x030;
    /// Test device register of the results (64-bit writes of
    /// [`result_word`]).
    pub const RESULT: u64 = 0x038;
    /// Test device register the `mmio-user` benchmark reads (32-bit).
    pub const MMIO: u64 = 0x040;
    /// What reads of [`MMIO`] return.
    pub const MMIO_VALUE: u32 = 0x600d_b175;
    /// Test device register whose writes ask for an edge on the
    /// `irq` benchmark's SPI (32-bit).
    pub const IRQ_REQUEST: u64 = 0x048;
    /// The GSI of the `irq` benchmark: SPI 42, edge-triggered.
    pub const IRQ_GSI: u32 = 10;
    /// The context id vCPU 0 passes to PSCI `CPU_ON` for vCPU 1 ("bench-v1").
    pub const SECONDARY_CTX: u64 = 0x6265_6e63_682d_7631;
    /// First byte of the RAM the `fault` benchmark touches, a word per page.
    pub const FAULT_BASE: u64 = super::RAM_BASE + (8 << 20);
    /// Pages the `fault` benchmark touches.
    pub const FAULT_PAGES: u64 = 2048;
    /// How long a repetition may wait for an interrupt, in ms.
    pub const WAIT_MS: u64 = 1000;

    const _: () = assert!(FAULT_BASE + FAULT_PAGES * 4096 <= super::RAM_BASE + super::RAM_SIZE);
    const _: () = assert!(BENCHES.len() < 256);

    /// Bits of a result word's tick count.
    const TICK_BITS: u32 = 48;

    /// The result of benchmark `index` of [`BENCHES`]: `ticks` of the
    /// virtual counter for all its iterations, or `None` if it failed.
    pub const fn result_word(index: usize, ticks: Option<u64>) -> u64 {
        let (ok, t) = match ticks {
            Some(t) if t < 1 << TICK_BITS => (1, t),
            _ => (0, 0),
        };
        (index as u64 & 0xff) << 56 | ok << TICK_BITS | t
    }

    /// `(index, ticks)` of a result word; `ticks` is `None` for a failed
    /// benchmark.
    pub const fn parse_result(word: u64) -> (usize, Option<u64>) {
        let index = (word >> 56) as usize;
        let ticks = if word >> TICK_BITS & 1 == 1 {
            Some(word & ((1 << TICK_BITS) - 1))
        } else {
            None
        };
        (index, ticks)
    }
}

/// `x0` of vCPU 0 that makes the guest run the [`touch`] program ("touch!!!").
pub const TOUCH_X0: u64 = 0x746f_7563_6821_2121;

/// The touch program, for a host's benchmark of a VM's whole life: vCPU 0
/// alone, with its MMU off, stores [`touch::word`] to the first word of
/// each page from [`touch::FIRST`] upwards in address order, so every page
/// of RAM is backed; the first store past the VM's RAM exits to the host as
/// MMIO, which ends the run (the guest has nothing to report).
pub mod touch {
    /// The first page it touches: past everything the guest itself uses.
    pub const FIRST: u64 = super::RAM_BASE + (1 << 20);

    /// The RAM of KServ's `kvmbench-vm` benchmark VM, in MiB.
    pub const BENCH_MIB: u64 = 256;

    /// The page of the first store past `mib` MiB of RAM, which ends the
    /// run: a protected VM's signed manifest must offer it as MMIO
    /// (`test-guest.touch.sig`), as KCore emulates no other access there.
    pub const fn end_of_ram(mib: u64) -> u64 {
        super::RAM_BASE + (mib << 20)
    }

    /// What it stores at `addr`.
    pub const fn word(addr: u64) -> u64 {
        addr ^ 0x7061_6765_7061_6765
    }
}

/// `x0` of vCPU 0 that makes the guest run the [`dirty`] program
/// ("dirtylog").
pub const DIRTY_X0: u64 = 0x6469_7274_796c_6f67;

/// The dirty program, for a host's dirty page logging
/// (`KVM_GET_DIRTY_LOG`): two vCPUs, RAM in one slot that logs. vCPU 0
/// starts vCPU 1 (PSCI `CPU_ON` with [`dirty::SECONDARY_CTX`]); then, for
/// each round `r` of [`dirty::ROUNDS`], each vCPU `v` writes the first word
/// of every page `p` of the region at [`dirty::BASE`] for which
/// [`dirty::writes`]`(r, v, p)`, and once both did, vCPU 0 writes `r` to
/// [`dirty::ROUND`] (64-bit). Before the next entry the host reads the
/// slot's dirty log: of the region, exactly the pages of round `r` must be
/// dirty (the rest of RAM past the region is never written; the guest's own
/// image, stacks and data below it are). vCPU 1 keeps running meanwhile,
/// waiting for the next round. Last vCPU 0 writes [`testdev::STATUS`]
/// (`passed`: the rounds both vCPUs finished) and turns the VM off.
pub mod dirty {
    /// First byte of the region the rounds write.
    pub const BASE: u64 = super::RAM_BASE + (12 << 20);
    /// Pages in the region.
    pub const PAGES: u64 = 256;
    /// Rounds.
    pub const ROUNDS: u64 = 4;
    /// Test device register: the round both vCPUs finished (64-bit write).
    pub const ROUND: u64 = 0x050;
    /// The context id vCPU 0 passes to PSCI `CPU_ON` for vCPU 1 ("dirty-v1").
    pub const SECONDARY_CTX: u64 = 0x6469_7274_792d_7631;

    const _: () = assert!(BASE + PAGES * 4096 <= super::RAM_BASE + super::RAM_SIZE);

    /// Whether vCPU `vcpu` writes page `page` of the region in round
    /// `round`: vCPU 0 the even pages, vCPU 1 the odd ones; every round a
    /// quarter of them (pages `8k`, `8k + 1`: their writes are logged only
    /// if each read of the log write-protected them again) and a third that
    /// moves from round to round.
    pub const fn writes(round: u64, vcpu: u64, page: u64) -> bool {
        page % 2 == vcpu && ((page / 2 + round).is_multiple_of(3) || page % 8 < 2)
    }

    /// The word vCPU `vcpu` writes into a page in round `round`.
    pub const fn word(round: u64, vcpu: u64) -> u64 {
        0x6469_7274_0000_0000 | round << 8 | vcpu
    }
}

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
    "ptimer",
    "cpu-on",
    "sgi",
    "fpsimd-vcpu1",
    "cpu-off",
    "checksum",
    "its",
    "its-int",
    "its-discard",
];

/// SMCCC (Arm DEN 0028) function ids nobody implements; the host must
/// answer `NOT_SUPPORTED` ([`kcore_abi::smccc::RET_NOT_SUPPORTED`]) through
/// both `HVC #0` and `SMC #0`. The ids and results of the SMCCC and PSCI
/// (Arm DEN 0022) calls the guest makes are [`kcore_abi::smccc`]'s and
/// [`kcore_abi::psci`]'s.
pub const UNKNOWN_FUNCTIONS: [u64; 2] = [0xC600_1234, 0x8600_0042];

/// Interrupts. On a GICv3 (the default) they come through the CPU
/// interface's system registers (the tests program no distributor or
/// redistributor); on a GICv2 (the host's GIC is one, and the VMM says so
/// in [`testdev::GIC`]) through the memory-mapped CPU interface at
/// [`gic::GICC`] and the distributor at [`eventfd::GICD`] (`GICD_SGIR`,
/// `ITARGETSR`).
pub mod gic {
    /// A GICv2 VM's CPU interface (QEMU `virt`'s and `kcore-vmm`'s GICC).
    pub const GICC: u64 = 0x0801_0000;
    /// The SGI vCPU 0 sends to vCPU 1.
    pub const SGI_PING: u32 = 1;
    /// The SGI vCPU 1 sends back to vCPU 0 for every [`SGI_PING`].
    pub const SGI_PONG: u32 = 2;
    /// The EL1 virtual timer's PPI.
    pub const TIMER_INTID: u32 = 27;
    /// The EL1 physical timer's PPI.
    pub const PTIMER_INTID: u32 = 30;

    /// A GICv3 VM's ITS, when the VMM makes one (and says so with
    /// [`testdev::GIC_ITS`](crate::testdev::GIC_ITS)): its 128 KiB frame
    /// (`KVM_VGIC_ITS_ADDR_TYPE`: the control page, then the translation
    /// page), where QEMU `virt` has it, between the distributor
    /// ([`eventfd::GICD`](crate::eventfd::GICD), 64 KiB; a GICv2's CPU
    /// interface [`GICC`] after it) and the redistributors
    /// ([`eventfd::GICR`](crate::eventfd::GICR)).
    pub const ITS: u64 = 0x0808_0000;
    /// Bytes of [`ITS`]'s frame (`KVM_VGIC_V3_ITS_SIZE`).
    pub const ITS_SIZE: u64 = 0x2_0000;
    /// `GITS_TRANSLATER`'s offset in [`ITS`]'s frame: the doorbell address
    /// of the MSIs the VMM signals for the guest
    /// ([`testdev::MSI`](crate::testdev::MSI)).
    pub const ITS_TRANSLATER: u64 = 0x1_0040;
    /// The device id the `its` tests map in the ITS.
    pub const ITS_DEVICE: u32 = 7;
    /// The event of [`ITS_DEVICE`] they map.
    pub const ITS_EVENT: u32 = 3;
    /// The LPI that event is translated to (LPIs start at 8192).
    pub const ITS_LPI: u32 = 8192 + 35;
    /// The tests that need an ITS; without one ([`testdev::GIC`](crate::testdev::GIC)
    /// lacks [`GIC_ITS`](crate::testdev::GIC_ITS)) each prints a SKIP line
    /// instead ([`crate::Line::Skip`]), and no other test ever does.
    pub const ITS_TESTS: [&str; 3] = ["its", "its-int", "its-discard"];

    // The ITS frame is 64 KiB aligned and overlaps neither the
    // distributor, a GICv2's CPU interface (8 KiB) nor the redistributors.
    const _: () = assert!(ITS.is_multiple_of(0x1_0000));
    const _: () = assert!(ITS >= crate::eventfd::GICD + 0x1_0000 && ITS >= GICC + 0x2000);
    const _: () = assert!(ITS + ITS_SIZE <= crate::eventfd::GICR);
    const _: () = assert!(ITS_TRANSLATER < ITS_SIZE);
    // An LPI (from 8192) the ITS's 16 ID bits reach.
    const _: () = assert!(ITS_LPI >= 8192 && ITS_LPI < 1 << 16);
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
    /// 64-bit read, by vCPU 0 first thing (except in the bench and touch
    /// programs, which assume a GICv3): the VM's
    /// GIC, [`GIC_V2`] for a GICv2 and anything else (a VMM that does not
    /// know the register reads 0) for a GICv3.
    pub const GIC: u64 = 0x058;
    /// [`GIC`]'s value for a GICv2.
    pub const GIC_V2: u64 = 2;
    /// [`GIC`]'s bit for a GICv3 VM with an ITS at [`crate::gic::ITS`]
    /// (created and initialised before the first vCPU ran), whose MSIs the
    /// VMM signals on request ([`MSI`]). A VMM that reads 0 makes none, and
    /// the guest's [`ITS_TESTS`](crate::gic::ITS_TESTS) print SKIP lines.
    pub const GIC_ITS: u64 = 1 << 8;
    /// 64-bit write of [`msi_word`]`(device, event)`: before the vCPU runs
    /// again, the VMM signals that MSI through the VM's ITS
    /// (`KVM_SIGNAL_MSI`: doorbell [`crate::gic::ITS`] +
    /// [`ITS_TRANSLATER`](crate::gic::ITS_TRANSLATER), data `event`, flags
    /// `KVM_MSI_VALID_DEVID`, `devid` `device`). 64-bit read: what the last
    /// one returned, [`msi_result`]`(r)`: 1 delivered, 0 blocked (the ITS
    /// maps nothing for it), or `-errno`; [`MSI_NONE`] before the first
    /// and in a VM without an ITS.
    pub const MSI: u64 = 0x060;
    /// What [`MSI`] reads before the first MSI, or without an ITS.
    pub const MSI_NONE: u64 = 1 << 63;

    /// What the VMM's [`GIC`] register reads: a GICv2 (`v2`), or a GICv3
    /// with an ITS (`its`) or without one.
    pub const fn gic_word(v2: bool, its: bool) -> u64 {
        match (v2, its) {
            (true, _) => GIC_V2,
            (false, true) => GIC_ITS,
            (false, false) => 0,
        }
    }

    /// Whether a [`GIC`] word says the VM has an ITS (a GICv2 never has).
    pub const fn gic_has_its(word: u64) -> bool {
        word != GIC_V2 && word & GIC_ITS != 0
    }

    /// The [`MSI`] word of an MSI from `device` with `event`.
    pub const fn msi_word(device: u32, event: u32) -> u64 {
        (device as u64) << 32 | event as u64
    }

    /// `(device, event)` of an [`MSI`] word.
    pub const fn parse_msi(word: u64) -> (u32, u32) {
        ((word >> 32) as u32, word as u32)
    }

    /// What [`MSI`] reads after a `KVM_SIGNAL_MSI` that returned `r` (an
    /// errno as its negation).
    pub const fn msi_result(r: Result<i64, i32>) -> u64 {
        match r {
            Ok(n) => n as u64,
            Err(e) => (-(e as i64)) as u64,
        }
    }

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
    fn bench_results_round_trip() {
        use bench::{BENCHES, parse_result, result_word};
        for i in [0, 5, 255] {
            assert_eq!(parse_result(result_word(i, Some(1234))), (i, Some(1234)));
            assert_eq!(parse_result(result_word(i, None)), (i, None));
        }
        // Ticks that do not fit read as a failure, never as a wrong figure.
        assert_eq!(parse_result(result_word(1, Some(1 << 48))), (1, None));
        assert_eq!(parse_result(0), (0, None));
        for (i, a) in BENCHES.iter().enumerate() {
            assert!(
                !a.name.is_empty() && !a.name.contains([' ', '=']),
                "{}",
                a.name
            );
            assert!(a.iterations > 0);
            assert!(BENCHES[i + 1..].iter().all(|b| a.name != b.name));
        }
        let programs = [BOOT_X0, EVENTFD_X0, BENCH_X0, TOUCH_X0, DIRTY_X0];
        for (i, a) in programs.iter().enumerate() {
            assert!(programs[i + 1..].iter().all(|b| a != b));
        }
    }

    #[test]
    fn every_dirty_round_writes_pages_of_both_vcpus_and_changes() {
        use super::dirty::{PAGES, ROUNDS, writes};
        let set = |r| (0..PAGES).filter(move |&p| writes(r, 0, p) || writes(r, 1, p));
        for r in 0..ROUNDS {
            assert!((0..PAGES).any(|p| writes(r, 0, p)) && (0..PAGES).any(|p| writes(r, 1, p)));
            assert!((0..PAGES).all(|p| !(writes(r, 0, p) && writes(r, 1, p))));
            if r > 0 {
                assert!(set(r).ne(set(r - 1)), "round {r} repeats the last");
                assert!(
                    set(r).any(|p| set(r - 1).any(|q| q == p)),
                    "round {r} rewrites none"
                );
                assert!(
                    set(r).any(|p| set(r - 1).all(|q| q != p)),
                    "round {r} writes nothing new"
                );
            }
        }
    }

    #[test]
    fn the_gic_word_says_gic_and_its() {
        use testdev::{GIC_V2, gic_has_its, gic_word};
        assert_eq!(gic_word(true, false), GIC_V2);
        assert_eq!(gic_word(true, true), GIC_V2);
        assert!(!gic_has_its(gic_word(true, true)));
        assert!(gic_has_its(gic_word(false, true)));
        // A VMM that does not know the register: a GICv3 without an ITS.
        assert!(gic_word(false, true) != GIC_V2 && !gic_has_its(0));
        assert_eq!(gic_word(false, false), 0);
    }

    #[test]
    fn msi_words_round_trip() {
        use testdev::{MSI_NONE, msi_result, msi_word, parse_msi};
        assert_eq!(msi_word(7, 3), 0x7_0000_0003);
        assert_eq!(parse_msi(msi_word(gic::ITS_DEVICE, gic::ITS_EVENT)), (7, 3));
        assert_eq!(msi_result(Ok(1)), 1);
        assert_eq!(msi_result(Ok(0)), 0);
        assert_eq!(msi_result(Err(16)) as i64, -16);
        for r in [Ok(0), Ok(1), Err(1), Err(22)] {
            assert_ne!(msi_result(r), MSI_NONE);
        }
    }

    #[test]
    fn the_its_tests_are_tests() {
        for name in gic::ITS_TESTS {
            assert!(TESTS.contains(&name), "{name}");
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
