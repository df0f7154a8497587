//! The numbers of Linux's KVM API on arm64 that the shim implements, from
//! `include/uapi/linux/kvm.h` and `arch/arm64/include/uapi/asm/kvm.h` of
//! Linux 6.1 (unchanged in 6.12). KServ's own extensions (the protected VM
//! type and capability, `KSERV_VM_VERIFY_IMAGE`) are
//! [`kcore_abi::kvm_ext`]'s.
//! The module's glue compares every ioctl number and structure layout here
//! with the kernel headers it is compiled against when it loads
//! ([`CHECKED`]), so a mistake here stops the module instead of
//! misbehaving.

pub use kcore_abi::kvm_ext::KVMIO;
use kcore_abi::kvm_ext::{IOC_WRITE, kvm_ioc as ioc};

const fn io(nr: u32) -> u32 {
    ioc(0, nr, 0)
}
const fn iow(nr: u32, size: usize) -> u32 {
    ioc(IOC_WRITE, nr, size)
}
const fn ior(nr: u32, size: usize) -> u32 {
    ioc(2, nr, size)
}
const fn iowr(nr: u32, size: usize) -> u32 {
    ioc(3, nr, size)
}

/// The number of an ioctl (bits 0..8).
pub const fn ioc_nr(cmd: u32) -> u32 {
    cmd & 0xFF
}
/// The type of an ioctl (bits 8..16).
pub const fn ioc_type(cmd: u32) -> u32 {
    (cmd >> 8) & 0xFF
}

/// `KVM_API_VERSION`.
pub const API_VERSION: i64 = 12;

/// Sizes of the argument structures.
pub mod size {
    /// `struct kvm_userspace_memory_region`.
    pub const USERSPACE_MEMORY_REGION: usize = 32;
    /// `struct kvm_irq_level`.
    pub const IRQ_LEVEL: usize = 8;
    /// `struct kvm_one_reg`.
    pub const ONE_REG: usize = 16;
    /// `struct kvm_mp_state`.
    pub const MP_STATE: usize = 4;
    /// `struct kvm_enable_cap`: `cap`, `flags`, `args[4]`, `pad[64]`.
    pub const ENABLE_CAP: usize = 104;
    /// `struct kvm_vcpu_init`.
    pub const VCPU_INIT: usize = 32;
    /// `struct kvm_reg_list` (its header; `reg[]` follows).
    pub const REG_LIST: usize = 8;
    /// `struct kvm_create_device`.
    pub const CREATE_DEVICE: usize = 12;
    /// `struct kvm_device_attr`.
    pub const DEVICE_ATTR: usize = 24;
    /// `struct kvm_run`.
    pub const RUN: usize = 2352;
    /// `struct kvm_irqfd`.
    pub const IRQFD: usize = super::super::eventfd::irq::SIZE;
    /// `struct kvm_ioeventfd`.
    pub const IOEVENTFD: usize = super::super::eventfd::io::SIZE;
    /// `struct kvm_dirty_log`: `slot`, padding, `dirty_bitmap`.
    pub const DIRTY_LOG: usize = 16;
    /// `struct kvm_clear_dirty_log`: `slot`, `num_pages`, `first_page`,
    /// `dirty_bitmap`.
    pub const CLEAR_DIRTY_LOG: usize = 24;
}

/// `KVM_GET_API_VERSION`.
pub const GET_API_VERSION: u32 = io(0x00);
/// `KVM_CREATE_VM`.
pub const CREATE_VM: u32 = io(0x01);
/// `KVM_CHECK_EXTENSION`.
pub const CHECK_EXTENSION: u32 = io(0x03);
/// `KVM_GET_VCPU_MMAP_SIZE`.
pub const GET_VCPU_MMAP_SIZE: u32 = io(0x04);
/// `KVM_CREATE_VCPU`.
pub const CREATE_VCPU: u32 = io(0x41);
/// `KVM_SET_USER_MEMORY_REGION`.
pub const SET_USER_MEMORY_REGION: u32 = iow(0x46, size::USERSPACE_MEMORY_REGION);
/// `KVM_CREATE_IRQCHIP` (GICv2 only: refused).
pub const CREATE_IRQCHIP: u32 = io(0x60);
/// `KVM_IRQ_LINE`.
pub const IRQ_LINE: u32 = iow(0x61, size::IRQ_LEVEL);
/// `KVM_RUN`.
pub const RUN: u32 = io(0x80);
/// `KVM_GET_ONE_REG`.
pub const GET_ONE_REG: u32 = iow(0xAB, size::ONE_REG);
/// `KVM_SET_ONE_REG`.
pub const SET_ONE_REG: u32 = iow(0xAC, size::ONE_REG);
/// `KVM_ARM_VCPU_INIT`.
pub const ARM_VCPU_INIT: u32 = iow(0xAE, size::VCPU_INIT);
/// `KVM_ARM_PREFERRED_TARGET`.
pub const ARM_PREFERRED_TARGET: u32 = ior(0xAF, size::VCPU_INIT);
/// `KVM_GET_REG_LIST`.
pub const GET_REG_LIST: u32 = iowr(0xB0, size::REG_LIST);
/// `KVM_CREATE_DEVICE`.
pub const CREATE_DEVICE: u32 = iowr(0xE0, size::CREATE_DEVICE);
/// `KVM_SET_DEVICE_ATTR`.
pub const SET_DEVICE_ATTR: u32 = iow(0xE1, size::DEVICE_ATTR);
/// `KVM_GET_DEVICE_ATTR`.
pub const GET_DEVICE_ATTR: u32 = iow(0xE2, size::DEVICE_ATTR);
/// `KVM_HAS_DEVICE_ATTR`.
pub const HAS_DEVICE_ATTR: u32 = iow(0xE3, size::DEVICE_ATTR);
/// `KVM_IRQFD`.
pub const IRQFD: u32 = iow(0x76, size::IRQFD);
/// `KVM_SET_GSI_ROUTING` (`struct kvm_irq_routing`: `nr`, `flags`, then
/// `nr` entries of [`routing::ENTRY_SIZE`] bytes).
pub const SET_GSI_ROUTING: u32 = iow(0x6a, 8);
/// `KVM_IOEVENTFD`.
pub const IOEVENTFD: u32 = iow(0x79, size::IOEVENTFD);
/// `KVM_GET_MP_STATE`.
pub const GET_MP_STATE: u32 = ior(0x98, size::MP_STATE);
/// `KVM_SET_MP_STATE`.
pub const SET_MP_STATE: u32 = iow(0x99, size::MP_STATE);
/// `KVM_ENABLE_CAP`.
pub const ENABLE_CAP: u32 = iow(0xA3, size::ENABLE_CAP);
/// `KVM_GET_STATS_FD` (the glue makes the fd; [`super::stats`]).
pub const GET_STATS_FD: u32 = io(0xCE);
/// `KVM_SIGNAL_MSI` (`struct kvm_msi`: `address_lo`, `address_hi`, `data`,
/// `flags`, `devid`, 12 bytes of padding).
pub const SIGNAL_MSI: u32 = iow(0xA5, 32);
/// `KVM_SET_GUEST_DEBUG` (`struct kvm_guest_debug`: `control`, `pad`, then
/// `struct kvm_guest_debug_arch`'s 64 breakpoint and watchpoint registers).
pub const SET_GUEST_DEBUG: u32 = iow(0x9b, 8 + 512);
/// `KVM_GET_VCPU_EVENTS`.
pub const GET_VCPU_EVENTS: u32 = ior(0x9f, super::events::SIZE);
/// `KVM_SET_VCPU_EVENTS`.
pub const SET_VCPU_EVENTS: u32 = iow(0xa0, super::events::SIZE);

/// `kvm_guest_debug.control` bits.
pub mod guest_debug {
    /// `KVM_GUESTDBG_ENABLE`.
    pub const ENABLE: u32 = 1 << 0;
    /// `KVM_GUESTDBG_SINGLESTEP`.
    pub const SINGLESTEP: u32 = 1 << 1;
    /// `KVM_GUESTDBG_USE_SW_BP`.
    pub const USE_SW_BP: u32 = 1 << 16;
    /// `KVM_GUESTDBG_USE_HW`.
    pub const USE_HW: u32 = 1 << 17;
    /// arm64's `KVM_GUESTDBG_VALID_MASK`.
    pub const VALID: u32 = ENABLE | SINGLESTEP | USE_SW_BP | USE_HW;
    /// What the shim offers (`KVM_CAP_SET_GUEST_DEBUG2`): all of it.
    pub const OFFERED: u32 = VALID;
}

/// `KVM_GET_DIRTY_LOG`.
pub const GET_DIRTY_LOG: u32 = iow(0x42, size::DIRTY_LOG);
/// `KVM_CLEAR_DIRTY_LOG`.
pub const CLEAR_DIRTY_LOG: u32 = iowr(0xC0, size::CLEAR_DIRTY_LOG);

/// Capabilities (`KVM_CHECK_EXTENSION`).
pub mod cap {
    /// `KVM_CAP_IRQCHIP`.
    pub const IRQCHIP: u64 = 0;
    /// `KVM_CAP_USER_MEMORY`.
    pub const USER_MEMORY: u64 = 3;
    /// `KVM_CAP_NR_VCPUS`.
    pub const NR_VCPUS: u64 = 9;
    /// `KVM_CAP_NR_MEMSLOTS`.
    pub const NR_MEMSLOTS: u64 = 10;
    /// `KVM_CAP_MP_STATE`.
    pub const MP_STATE: u64 = 14;
    /// `KVM_CAP_ENABLE_CAP_VM`.
    pub const ENABLE_CAP_VM: u64 = 98;
    /// `KVM_CAP_DESTROY_MEMORY_REGION_WORKS`.
    pub const DESTROY_MEMORY_REGION_WORKS: u64 = 21;
    /// `KVM_CAP_JOIN_MEMORY_REGIONS_WORKS`.
    pub const JOIN_MEMORY_REGIONS_WORKS: u64 = 30;
    /// `KVM_CAP_IRQFD`.
    pub const IRQFD: u64 = 32;
    /// `KVM_CAP_INTERNAL_ERROR_DATA`: `KVM_EXIT_INTERNAL_ERROR` fills
    /// `internal.ndata` and `internal.data`.
    pub const INTERNAL_ERROR_DATA: u64 = 40;
    /// `KVM_CAP_IRQ_ROUTING`.
    pub const IRQ_ROUTING: u64 = 25;
    /// `KVM_CAP_IOEVENTFD`.
    pub const IOEVENTFD: u64 = 36;
    /// `KVM_CAP_MAX_VCPUS`.
    pub const MAX_VCPUS: u64 = 66;
    /// `KVM_CAP_ONE_REG`.
    pub const ONE_REG: u64 = 70;
    /// `KVM_CAP_READONLY_MEM`.
    pub const READONLY_MEM: u64 = 81;
    /// `KVM_CAP_IRQFD_RESAMPLE`.
    pub const IRQFD_RESAMPLE: u64 = 82;
    /// `KVM_CAP_SIGNAL_MSI`.
    pub const SIGNAL_MSI: u64 = 77;
    /// `KVM_CAP_MSI_DEVID` (a VM's: 1 once it has an ITS).
    pub const MSI_DEVID: u64 = 131;
    /// `KVM_CAP_ARM_PSCI`.
    pub const ARM_PSCI: u64 = 87;
    /// `KVM_CAP_DEVICE_CTRL`.
    pub const DEVICE_CTRL: u64 = 89;
    /// `KVM_CAP_ARM_PSCI_0_2`.
    pub const ARM_PSCI_0_2: u64 = 102;
    /// `KVM_CAP_IOEVENTFD_ANY_LENGTH`.
    pub const IOEVENTFD_ANY_LENGTH: u64 = 122;
    /// `KVM_CAP_CHECK_EXTENSION_VM`.
    pub const CHECK_EXTENSION_VM: u64 = 105;
    /// `KVM_CAP_MAX_VCPU_ID`.
    pub const MAX_VCPU_ID: u64 = 128;
    /// `KVM_CAP_IMMEDIATE_EXIT`.
    pub const IMMEDIATE_EXIT: u64 = 136;
    /// `KVM_CAP_ARM_VM_IPA_SIZE`.
    pub const ARM_VM_IPA_SIZE: u64 = 165;
    /// `KVM_CAP_ARM_IRQ_LINE_LAYOUT_2`.
    pub const ARM_IRQ_LINE_LAYOUT_2: u64 = 174;
    /// `KVM_CAP_SYSTEM_EVENT_DATA`.
    pub const SYSTEM_EVENT_DATA: u64 = 215;
    /// `KVM_CAP_ARM_SYSTEM_SUSPEND`.
    pub const ARM_SYSTEM_SUSPEND: u64 = 216;
    /// `KVM_CAP_SET_GUEST_DEBUG`.
    pub const SET_GUEST_DEBUG: u64 = 23;
    /// `KVM_CAP_VCPU_EVENTS`.
    pub const VCPU_EVENTS: u64 = 41;
    /// `KVM_CAP_HALT_POLL`.
    pub const HALT_POLL: u64 = 182;
    /// `KVM_CAP_SET_GUEST_DEBUG2`: the `control` bits offered.
    pub const SET_GUEST_DEBUG2: u64 = 195;
    /// `KVM_CAP_GUEST_DEBUG_HW_BPS`: the VMM's hardware breakpoints.
    pub const GUEST_DEBUG_HW_BPS: u64 = 119;
    /// `KVM_CAP_GUEST_DEBUG_HW_WPS`: the VMM's hardware watchpoints.
    pub const GUEST_DEBUG_HW_WPS: u64 = 120;
    /// `KVM_CAP_ARM_INJECT_SERROR_ESR`: an SError's ESR (RAS only).
    pub const ARM_INJECT_SERROR_ESR: u64 = 158;
    /// `KVM_CAP_ARM_INJECT_EXT_DABT`: `ext_dabt_pending`.
    pub const ARM_INJECT_EXT_DABT: u64 = 178;
    /// `KVM_CAP_BINARY_STATS_FD`.
    pub const BINARY_STATS_FD: u64 = 203;
    /// `KVM_CAP_STEAL_TIME`.
    pub const STEAL_TIME: u64 = 187;
    /// `KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2`.
    pub const MANUAL_DIRTY_LOG_PROTECT2: u64 = 168;
    /// `KVM_CAP_DIRTY_LOG_RING` (not offered: 0).
    pub const DIRTY_LOG_RING: u64 = 192;
}

/// `KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2`'s options (`KVM_ENABLE_CAP`'s
/// `args[0]`).
pub mod dirty_log {
    /// `KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE`: `KVM_GET_DIRTY_LOG` neither
    /// clears nor write-protects; `KVM_CLEAR_DIRTY_LOG` does.
    pub const MANUAL_PROTECT_ENABLE: u64 = 1 << 0;
    /// `KVM_DIRTY_LOG_INITIALLY_SET`: a slot starts logging with every
    /// page dirty and none write-protected.
    pub const INITIALLY_SET: u64 = 1 << 1;
    /// arm64's `KVM_DIRTY_LOG_MANUAL_CAPS`, what `KVM_CHECK_EXTENSION`
    /// answers.
    pub const MANUAL_CAPS: u64 = MANUAL_PROTECT_ENABLE | INITIALLY_SET;
}

/// `struct kvm_mp_state` values arm64 KVM knows.
pub mod mp_state {
    /// `KVM_MP_STATE_RUNNABLE`.
    pub const RUNNABLE: u32 = 0;
    /// `KVM_MP_STATE_STOPPED`.
    pub const STOPPED: u32 = 5;
    /// `KVM_MP_STATE_SUSPENDED`.
    pub const SUSPENDED: u32 = 10;
}

/// `KVM_CREATE_VM` type bits on arm64.
pub mod vm_type {
    /// `KVM_VM_TYPE_ARM_IPA_SIZE_MASK`: the IPA size in bits (0: 40).
    pub const IPA_SIZE_MASK: u64 = 0xFF;
    /// The IPA size KVM gives a VM whose type says 0 (`KVM_PHYS_SHIFT`).
    pub const DEFAULT_IPA_BITS: u32 = 40;
    /// The smallest IPA size KVM accepts (`ARM64_MIN_PARANGE_BITS`).
    pub const MIN_IPA_BITS: u32 = 32;
}

/// `KVM_MEM_*` memory slot flags.
pub mod mem {
    /// `KVM_MEM_LOG_DIRTY_PAGES`.
    pub const LOG_DIRTY_PAGES: u32 = 1 << 0;
    /// `KVM_MEM_READONLY`.
    pub const READONLY: u32 = 1 << 1;
}

/// Exit reasons (`kvm_run.exit_reason`).
pub mod exit {
    /// `KVM_EXIT_UNKNOWN`.
    pub const UNKNOWN: u32 = 0;
    /// `KVM_EXIT_DEBUG`.
    pub const DEBUG: u32 = 4;
    /// `KVM_EXIT_MMIO`.
    pub const MMIO: u32 = 6;
    /// `KVM_EXIT_FAIL_ENTRY`.
    pub const FAIL_ENTRY: u32 = 9;
    /// `KVM_EXIT_INTR`.
    pub const INTR: u32 = 10;
    /// `KVM_EXIT_INTERNAL_ERROR`.
    pub const INTERNAL_ERROR: u32 = 17;
    /// `KVM_EXIT_SYSTEM_EVENT`.
    pub const SYSTEM_EVENT: u32 = 24;
}

/// `kvm_run.system_event.type` and flags.
pub mod system_event {
    /// `KVM_SYSTEM_EVENT_SHUTDOWN`.
    pub const SHUTDOWN: u32 = 1;
    /// `KVM_SYSTEM_EVENT_RESET`.
    pub const RESET: u32 = 2;
    /// `KVM_SYSTEM_EVENT_SUSPEND`.
    pub const SUSPEND: u32 = 5;
    /// `KVM_SYSTEM_EVENT_RESET_FLAG_PSCI_RESET2`.
    pub const RESET_FLAG_PSCI_RESET2: u64 = 1 << 0;
}

/// `kvm_run.internal.suberror`.
pub mod internal_error {
    /// `KVM_INTERNAL_ERROR_EMULATION`: an access the kernel cannot emulate.
    pub const EMULATION: u32 = 1;
    /// `KVM_INTERNAL_ERROR_UNEXPECTED_EXIT_REASON`.
    pub const UNEXPECTED_EXIT_REASON: u32 = 4;
}

/// Byte offsets in `struct kvm_run`.
pub mod run {
    /// `immediate_exit` (u8).
    pub const IMMEDIATE_EXIT: usize = 1;
    /// `exit_reason` (u32).
    pub const EXIT_REASON: usize = 8;
    /// `flags` (u16).
    pub const FLAGS: usize = 14;
    /// The exit union.
    pub const UNION: usize = 32;
    /// `mmio.phys_addr` (u64).
    pub const MMIO_PHYS_ADDR: usize = UNION;
    /// `mmio.data` (8 bytes).
    pub const MMIO_DATA: usize = UNION + 8;
    /// `mmio.len` (u32).
    pub const MMIO_LEN: usize = UNION + 16;
    /// `mmio.is_write` (u8).
    pub const MMIO_IS_WRITE: usize = UNION + 20;
    /// `fail_entry.hardware_entry_failure_reason` (u64).
    pub const FAIL_ENTRY_REASON: usize = UNION;
    /// `fail_entry.cpu` (u32).
    pub const FAIL_ENTRY_CPU: usize = UNION + 8;
    /// `internal.suberror` (u32).
    pub const INTERNAL_SUBERROR: usize = UNION;
    /// `internal.ndata` (u32).
    pub const INTERNAL_NDATA: usize = UNION + 4;
    /// `internal.data[]` (u64 each).
    pub const INTERNAL_DATA: usize = UNION + 8;
    /// `debug.arch.hsr` (u32): `ESR_EL2[31:0]`.
    pub const DEBUG_HSR: usize = UNION;
    /// `debug.arch.hsr_high` (u32): `ESR_EL2[61:32]`.
    pub const DEBUG_HSR_HIGH: usize = UNION + 4;
    /// `debug.arch.far` (u64).
    pub const DEBUG_FAR: usize = UNION + 8;
    /// `system_event.type` (u32).
    pub const SYSTEM_EVENT_TYPE: usize = UNION;
    /// `system_event.ndata` (u32).
    pub const SYSTEM_EVENT_NDATA: usize = UNION + 4;
    /// `system_event.data[]` (u64 each).
    pub const SYSTEM_EVENT_DATA: usize = UNION + 8;
    /// Bytes of the exit union.
    pub const UNION_SIZE: usize = 256;
}

/// `KVM_ARM_VCPU_INIT` targets and features.
pub mod vcpu_init {
    /// `KVM_ARM_TARGET_AEM_V8`.
    pub const TARGET_AEM_V8: u32 = 0;
    /// `KVM_ARM_TARGET_FOUNDATION_V8`.
    pub const TARGET_FOUNDATION_V8: u32 = 1;
    /// `KVM_ARM_TARGET_CORTEX_A57`.
    pub const TARGET_CORTEX_A57: u32 = 2;
    /// `KVM_ARM_TARGET_XGENE_POTENZA`.
    pub const TARGET_XGENE_POTENZA: u32 = 3;
    /// `KVM_ARM_TARGET_CORTEX_A53`.
    pub const TARGET_CORTEX_A53: u32 = 4;
    /// `KVM_ARM_TARGET_GENERIC_V8`.
    pub const TARGET_GENERIC_V8: u32 = 5;
    /// `KVM_ARM_VCPU_POWER_OFF`: the vCPU starts off.
    pub const POWER_OFF: u32 = 0;
    /// `KVM_ARM_VCPU_EL1_32BIT` (not offered).
    pub const EL1_32BIT: u32 = 1;
    /// `KVM_ARM_VCPU_PSCI_0_2`.
    pub const PSCI_0_2: u32 = 2;
    /// `KVM_VCPU_MAX_FEATURES` in 6.1: features at or above are `ENOENT`.
    pub const MAX_FEATURES: u32 = 7;

    /// `kvm_target_cpu()`: the target KVM prefers for a CPU with `midr`.
    pub const fn preferred_target(midr: u64) -> u32 {
        let implementer = (midr >> 24) & 0xFF;
        let part = (midr >> 4) & 0xFFF;
        match (implementer, part) {
            (0x41, 0xD0F) => TARGET_AEM_V8,
            (0x41, 0xD00) => TARGET_FOUNDATION_V8,
            (0x41, 0xD03) => TARGET_CORTEX_A53,
            (0x41, 0xD07) => TARGET_CORTEX_A57,
            (0x50, 0x000) => TARGET_XGENE_POTENZA,
            _ => TARGET_GENERIC_V8,
        }
    }
}

/// `KVM_IRQ_LINE`'s `irq` field on arm64.
pub mod irq_line {
    /// `KVM_ARM_IRQ_TYPE_CPU`.
    pub const TYPE_CPU: u32 = 0;
    /// `KVM_ARM_IRQ_TYPE_SPI`.
    pub const TYPE_SPI: u32 = 1;
    /// `KVM_ARM_IRQ_TYPE_PPI`.
    pub const TYPE_PPI: u32 = 2;

    /// `(type, vcpu index, irq number)` of an `irq` field (layout 2: the
    /// vCPU index's bits 8..12 in bits 28..32).
    pub const fn decode(irq: u32) -> (u32, usize, u32) {
        let ty = (irq >> 24) & 0xF;
        let vcpu = ((irq >> 16) & 0xFF) as usize + (((irq >> 28) & 0xF) as usize) * 256;
        (ty, vcpu, irq & 0xFFFF)
    }
}

/// `KVM_CREATE_DEVICE` types and flags.
pub mod device {
    /// `KVM_CREATE_DEVICE_TEST`: only ask whether the type is supported.
    pub const CREATE_TEST: u32 = 1;
    /// `KVM_DEV_TYPE_ARM_VGIC_V2`.
    pub const TYPE_ARM_VGIC_V2: u32 = 5;
    /// `KVM_DEV_TYPE_ARM_VGIC_V3`.
    pub const TYPE_ARM_VGIC_V3: u32 = 7;
    /// `KVM_DEV_TYPE_ARM_VGIC_ITS`.
    pub const TYPE_ARM_VGIC_ITS: u32 = 8;
}

/// `KVM_DEV_ARM_VGIC_*` attribute groups and attributes of a GICv3.
pub mod vgic_attr {
    /// `KVM_DEV_ARM_VGIC_GRP_ADDR`.
    pub const GRP_ADDR: u32 = 0;
    /// `KVM_DEV_ARM_VGIC_GRP_DIST_REGS`.
    pub const GRP_DIST_REGS: u32 = 1;
    /// `KVM_DEV_ARM_VGIC_GRP_CPU_REGS` (a GICv2's): the vCPU in bits
    /// 39..32, an offset in the CPU interface's frame in bits 31..0.
    pub const GRP_CPU_REGS: u32 = 2;
    /// `KVM_DEV_ARM_VGIC_GRP_NR_IRQS`.
    pub const GRP_NR_IRQS: u32 = 3;
    /// `KVM_DEV_ARM_VGIC_GRP_CTRL`.
    pub const GRP_CTRL: u32 = 4;
    /// `KVM_DEV_ARM_VGIC_GRP_REDIST_REGS`.
    pub const GRP_REDIST_REGS: u32 = 5;
    /// `KVM_DEV_ARM_VGIC_GRP_CPU_SYSREGS`: `attr` is the vCPU's MPIDR in
    /// bits 63..32 and a system-register encoding in bits 15..0.
    pub const GRP_CPU_SYSREGS: u32 = 6;
    /// `KVM_DEV_ARM_VGIC_GRP_LEVEL_INFO`: the attribute is `mpidr << 32 |
    /// info << 10 | intid` (info 0, `VGIC_LEVEL_INFO_LINE_LEVEL`, the only
    /// one; `intid` a multiple of 32), the value the 32 lines from there.
    pub const GRP_LEVEL_INFO: u32 = 7;
    /// `KVM_DEV_ARM_VGIC_GRP_ITS_REGS` (an ITS device's registers by
    /// offset in its frame).
    pub const GRP_ITS_REGS: u32 = 8;
    /// `KVM_VGIC_ITS_ADDR_TYPE` (an ITS device's `GRP_ADDR`).
    pub const ITS_ADDR_TYPE: u64 = 4;
    /// `KVM_DEV_ARM_VGIC_SAVE_PENDING_TABLES` (the GICv3's `GRP_CTRL`).
    pub const SAVE_PENDING_TABLES: u64 = 3;
    /// `KVM_DEV_ARM_ITS_SAVE_TABLES`.
    pub const ITS_SAVE_TABLES: u64 = 1;
    /// `KVM_DEV_ARM_ITS_RESTORE_TABLES`.
    pub const ITS_RESTORE_TABLES: u64 = 2;
    /// `KVM_DEV_ARM_ITS_CTRL_RESET`.
    pub const ITS_CTRL_RESET: u64 = 4;
    /// `KVM_VGIC_V3_ADDR_TYPE_DIST`.
    pub const ADDR_TYPE_DIST: u64 = 2;
    /// `KVM_VGIC_V3_ADDR_TYPE_REDIST`.
    pub const ADDR_TYPE_REDIST: u64 = 3;
    /// `KVM_VGIC_V3_ADDR_TYPE_REDIST_REGION`: the value is
    /// `count << 52 | base | flags << 12 | index` (`base` 64 KiB aligned).
    pub const ADDR_TYPE_REDIST_REGION: u64 = 5;
    /// `KVM_DEV_ARM_VGIC_CTRL_INIT`.
    pub const CTRL_INIT: u64 = 0;
    /// `KVM_VGIC_V3_DIST_SIZE`.
    pub const DIST_SIZE: u64 = 0x1_0000;
    /// `KVM_VGIC_V3_REDIST_SIZE` (one vCPU's RD and SGI frames).
    pub const REDIST_SIZE: u64 = 0x2_0000;
    /// `VGIC_ADDR_UNDEF`: what an address reads as before it is set.
    pub const ADDR_UNDEF: u64 = u64::MAX;
}

/// `KVM_SET_GSI_ROUTING`'s entries (`struct kvm_irq_routing_entry`).
pub mod routing {
    /// Bytes per entry: `gsi`, `type`, `flags`, `pad`, then a 32-byte union.
    pub const ENTRY_SIZE: usize = 48;
    /// `KVM_MAX_IRQ_ROUTES`: GSIs and entries per table.
    pub const MAX_ROUTES: u32 = 4096;
    /// `KVM_IRQ_ROUTING_IRQCHIP` (union: `irqchip`, `pin`).
    pub const IRQCHIP: u32 = 1;
    /// `KVM_IRQ_ROUTING_MSI`.
    pub const MSI: u32 = 2;
    /// `KVM_MSI_VALID_DEVID`, the one flag an MSI entry may have.
    pub const MSI_VALID_DEVID: u32 = 1;
    /// `KVM_IRQCHIP_NUM_PINS` on arm64: SPIs 32..1020.
    pub const NUM_PINS: u32 = 1020 - 32;
}

/// `ONE_REG` ids on arm64.
pub mod reg {
    /// `KVM_REG_ARM64`.
    pub const ARM64: u64 = 0x6000_0000_0000_0000;
    /// `KVM_REG_SIZE_MASK`.
    pub const SIZE_MASK: u64 = 0x00F0_0000_0000_0000;
    /// `KVM_REG_SIZE_SHIFT`.
    pub const SIZE_SHIFT: u32 = 52;
    /// `KVM_REG_SIZE_U32`.
    pub const SIZE_U32: u64 = 0x0020_0000_0000_0000;
    /// `KVM_REG_SIZE_U64`.
    pub const SIZE_U64: u64 = 0x0030_0000_0000_0000;
    /// `KVM_REG_SIZE_U128`.
    pub const SIZE_U128: u64 = 0x0040_0000_0000_0000;
    /// `KVM_REG_ARM_COPROC_MASK`.
    pub const COPROC_MASK: u64 = 0x0000_0000_0FFF_0000;
    /// `KVM_REG_ARM_CORE`.
    pub const CORE: u64 = 0x0010 << 16;
    /// `KVM_REG_ARM64_SYSREG`.
    pub const SYSREG: u64 = 0x0013 << 16;
    /// `KVM_REG_ARM_FW`.
    pub const FW: u64 = 0x0014 << 16;
    /// `KVM_REG_ARM_FW_FEAT_BMAP`.
    pub const FW_FEAT_BMAP: u64 = 0x0016 << 16;
    /// `KVM_REG_ARM_DEMUX`.
    pub const DEMUX: u64 = 0x0011 << 16;
    /// `KVM_REG_ARM_DEMUX_ID_CCSIDR`'s id of the cache `csselr` selects.
    pub const fn ccsidr(csselr: u64) -> u64 {
        ARM64 | SIZE_U32 | DEMUX | (csselr & 0xFF)
    }

    /// The bytes an id says its value has.
    pub const fn size(id: u64) -> usize {
        1 << ((id & SIZE_MASK) >> SIZE_SHIFT)
    }
    /// `ARM64_SYS_REG(op0, op1, crn, crm, op2)`.
    pub const fn sys(op0: u64, op1: u64, crn: u64, crm: u64, op2: u64) -> u64 {
        ARM64 | SIZE_U64 | SYSREG | kcore_abi::reg::sysreg(op0, op1, crn, crm, op2)
    }
    /// `KVM_REG_ARM_TIMER_CTL` (`CNTV_CTL_EL0`).
    pub const TIMER_CTL: u64 = sys(3, 3, 14, 3, 1);
    /// `KVM_REG_ARM_TIMER_CVAL`: `CNTV_CVAL_EL0`, although the encoding is
    /// `CNTVCT_EL0`'s (KVM's ABI swapped the two long ago and keeps them).
    pub const TIMER_CVAL: u64 = sys(3, 3, 14, 0, 2);
    /// `KVM_REG_ARM_TIMER_CNT`: the virtual count, encoded as `CNTV_CVAL_EL0`.
    pub const TIMER_CNT: u64 = sys(3, 3, 14, 3, 2);
    /// `KVM_REG_ARM_PTIMER_CTL` (`CNTP_CTL_EL0`).
    pub const PTIMER_CTL: u64 = sys(3, 3, 14, 2, 1);
    /// `KVM_REG_ARM_PTIMER_CVAL` (`CNTP_CVAL_EL0`; no swap here).
    pub const PTIMER_CVAL: u64 = sys(3, 3, 14, 2, 2);
    /// `KVM_REG_ARM_PTIMER_CNT`: the physical count (`CNTPCT_EL0`).
    pub const PTIMER_CNT: u64 = sys(3, 3, 14, 0, 1);
    /// `KVM_REG_ARM_PSCI_VERSION`.
    pub const PSCI_VERSION: u64 = ARM64 | SIZE_U64 | FW;
    /// `KVM_REG_ARM_SMCCC_ARCH_WORKAROUND_1`, `_2`, `_3`: `FW | 1..=3`.
    pub const fn workaround(n: u64) -> u64 {
        ARM64 | SIZE_U64 | FW | n
    }
    /// `KVM_REG_ARM_STD_BMAP` (0), `STD_HYP_BMAP` (1), `VENDOR_HYP_BMAP` (2).
    pub const fn feature_bitmap(n: u64) -> u64 {
        ARM64 | SIZE_U64 | FW_FEAT_BMAP | n
    }
    /// A core register: `offset` in 32-bit words into `struct kvm_regs`.
    pub const fn core(size: u64, offset: u64) -> u64 {
        ARM64 | size | CORE | offset
    }
}

/// What the glue checks against the kernel's headers when the module loads,
/// in this order (`kserv_core.h` lists the same names).
pub const CHECKED: [u64; 46] = [
    GET_API_VERSION as u64,
    CREATE_VM as u64,
    CHECK_EXTENSION as u64,
    GET_VCPU_MMAP_SIZE as u64,
    CREATE_VCPU as u64,
    SET_USER_MEMORY_REGION as u64,
    CREATE_IRQCHIP as u64,
    IRQ_LINE as u64,
    RUN as u64,
    GET_ONE_REG as u64,
    SET_ONE_REG as u64,
    ARM_VCPU_INIT as u64,
    ARM_PREFERRED_TARGET as u64,
    GET_REG_LIST as u64,
    CREATE_DEVICE as u64,
    SET_DEVICE_ATTR as u64,
    GET_DEVICE_ATTR as u64,
    HAS_DEVICE_ATTR as u64,
    IRQFD as u64,
    IOEVENTFD as u64,
    GET_MP_STATE as u64,
    SET_MP_STATE as u64,
    ENABLE_CAP as u64,
    size::RUN as u64,
    run::MMIO_DATA as u64,
    run::MMIO_LEN as u64,
    run::MMIO_IS_WRITE as u64,
    run::SYSTEM_EVENT_NDATA as u64,
    run::SYSTEM_EVENT_DATA as u64,
    run::INTERNAL_DATA as u64,
    run::FAIL_ENTRY_CPU as u64,
    reg::TIMER_CNT,
    reg::TIMER_CVAL,
    reg::PSCI_VERSION,
    reg::core(reg::SIZE_U32, 212),
    reg::core(reg::SIZE_U128, 84),
    GET_STATS_FD as u64,
    super::stats::HEADER_SIZE as u64,
    super::stats::DESC_SIZE as u64,
    GET_DIRTY_LOG as u64,
    CLEAR_DIRTY_LOG as u64,
    SET_GUEST_DEBUG as u64,
    run::DEBUG_HSR_HIGH as u64,
    run::DEBUG_FAR as u64,
    GET_VCPU_EVENTS as u64,
    SET_VCPU_EVENTS as u64,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioctl_numbers_match_linux() {
        // Values as Linux's headers expand them on arm64.
        assert_eq!(CREATE_VM, 0xAE01);
        assert_eq!(RUN, 0xAE80);
        assert_eq!(SET_USER_MEMORY_REGION, 0x4020_AE46);
        assert_eq!(IRQ_LINE, 0x4008_AE61);
        assert_eq!(GET_ONE_REG, 0x4010_AEAB);
        assert_eq!(ARM_VCPU_INIT, 0x4020_AEAE);
        assert_eq!(ARM_PREFERRED_TARGET, 0x8020_AEAF);
        assert_eq!(GET_REG_LIST, 0xC008_AEB0);
        assert_eq!(CREATE_DEVICE, 0xC00C_AEE0);
        assert_eq!(SET_DEVICE_ATTR, 0x4018_AEE1);
        assert_eq!(kcore_abi::kvm_ext::KSERV_VM_VERIFY_IMAGE, 0x4020_AEF0);
        assert_eq!(IRQFD, 0x4020_AE76);
        assert_eq!(IOEVENTFD, 0x4040_AE79);
        assert_eq!(GET_MP_STATE, 0x8004_AE98);
        assert_eq!(SET_MP_STATE, 0x4004_AE99);
        assert_eq!(ENABLE_CAP, 0x4068_AEA3);
        assert_eq!(GET_STATS_FD, 0xAECE);
        assert_eq!(GET_VCPU_EVENTS, 0x8040_AE9F);
        assert_eq!(SET_VCPU_EVENTS, 0x4040_AEA0);
        assert_eq!(SIGNAL_MSI, 0x4020_AEA5);
        assert_eq!(GET_DIRTY_LOG, 0x4010_AE42);
        assert_eq!(CLEAR_DIRTY_LOG, 0xC018_AEC0);
        assert_eq!(SET_GUEST_DEBUG, 0x4208_AE9B);
        assert_eq!(reg::TIMER_CNT, 0x6030_0000_0013_DF1A);
        assert_eq!(reg::TIMER_CVAL, 0x6030_0000_0013_DF02);
        assert_eq!(reg::TIMER_CTL, 0x6030_0000_0013_DF19);
        assert_eq!(reg::PTIMER_CTL, 0x6030_0000_0013_DF11);
        assert_eq!(reg::PTIMER_CVAL, 0x6030_0000_0013_DF12);
        assert_eq!(reg::PTIMER_CNT, 0x6030_0000_0013_DF01);
        assert_eq!(reg::PSCI_VERSION, 0x6030_0000_0014_0000);
    }

    #[test]
    fn irq_line_layout() {
        assert_eq!(irq_line::decode(1 << 24 | 40), (1, 0, 40));
        assert_eq!(irq_line::decode(2 << 24 | 3 << 16 | 23), (2, 3, 23));
        assert_eq!(
            irq_line::decode(2 << 24 | 1 << 28 | 2 << 16 | 20),
            (2, 258, 20)
        );
    }

    #[test]
    fn preferred_targets() {
        assert_eq!(vcpu_init::preferred_target(0x410F_D083), 5); // Cortex-A72
        assert_eq!(vcpu_init::preferred_target(0x410F_D034), 4); // Cortex-A53
        assert_eq!(vcpu_init::preferred_target(0x411F_D070), 2); // Cortex-A57
        assert_eq!(vcpu_init::preferred_target(0x000F_0510), 5); // QEMU max
    }
}
