//! The numbers of the KVM API this VMM uses, as plain constants so the code
//! that computes with them is host-testable (`kvm-bindings` only has the arm64
//! definitions when built for aarch64; there, `vm.rs` checks each constant
//! against the bindings at compile time).
//!
//! Sources: Linux `Documentation/virt/kvm/api.rst` and
//! `arch/arm64/include/uapi/asm/kvm.h` (6.1). KServ's own extension of the
//! API (the protected VM type, `KSERV_VM_VERIFY_IMAGE` and the layout of its
//! argument) is [`kcore_abi::kvm_ext`]'s (`docs/vmm.md`); [`KservVerifyImage`]
//! is that argument as a Rust structure, checked against the layout there.

use core::mem::offset_of;
use kcore_abi::kvm_ext::{self, verify_image};

/// `KVM_REG_ARM64`: the architecture field of a `ONE_REG` id.
pub const KVM_REG_ARM64: u64 = 0x6000_0000_0000_0000;
/// `KVM_REG_SIZE_U64`: the size field of a 64-bit register's id.
pub const KVM_REG_SIZE_U64: u64 = 0x0030_0000_0000_0000;
/// `KVM_REG_ARM_CORE`: the coprocessor field of the core registers
/// (`struct kvm_regs`, indexed in 32-bit words).
pub const KVM_REG_ARM_CORE: u64 = 0x0010 << 16;

/// Offset of `regs.regs[0]` (x0) in `struct kvm_regs`.
const KVM_REGS_X0_OFFSET: u64 = 0;
/// Offset of `regs.pc` in `struct kvm_regs`: after x0..x30 and sp.
const KVM_REGS_PC_OFFSET: u64 = 8 * 32;

/// The `ONE_REG` id of a core register at byte `offset` in `struct kvm_regs`.
pub const fn core_reg_id(offset: u64) -> u64 {
    KVM_REG_ARM64 | KVM_REG_SIZE_U64 | KVM_REG_ARM_CORE | (offset / 4)
}

/// `ONE_REG` id of the vCPU's `x0`.
pub const REG_X0: u64 = core_reg_id(KVM_REGS_X0_OFFSET);
/// `ONE_REG` id of the vCPU's `pc`.
pub const REG_PC: u64 = core_reg_id(KVM_REGS_PC_OFFSET);

/// `KVM_ARM_VCPU_INIT` feature bit: the vCPU starts powered off (a PSCI
/// `CPU_ON` starts it).
pub const KVM_ARM_VCPU_POWER_OFF: u32 = 0;
/// `KVM_ARM_VCPU_INIT` feature bit: in-kernel PSCI 0.2 and later.
pub const KVM_ARM_VCPU_PSCI_0_2: u32 = 2;

/// `KVM_DEV_TYPE_ARM_VGIC_V3` for `KVM_CREATE_DEVICE`.
pub const KVM_DEV_TYPE_ARM_VGIC_V3: u32 = 7;
/// `KVM_DEV_TYPE_ARM_VGIC_V2` for `KVM_CREATE_DEVICE` (a GICv2 host's).
pub const KVM_DEV_TYPE_ARM_VGIC_V2: u32 = 5;
/// `KVM_CREATE_DEVICE_TEST`: only ask whether the type could be created.
pub const KVM_CREATE_DEVICE_TEST: u32 = 1;
/// vGIC address attribute: GICv2 distributor (4 KiB).
pub const KVM_VGIC_V2_ADDR_TYPE_DIST: u64 = 0;
/// vGIC address attribute: GICv2 CPU interface (8 KiB).
pub const KVM_VGIC_V2_ADDR_TYPE_CPU: u64 = 1;
/// vGIC attribute group: base addresses.
pub const KVM_DEV_ARM_VGIC_GRP_ADDR: u32 = 0;
/// vGIC attribute group: number of interrupts (a `u32`, multiple of 32).
pub const KVM_DEV_ARM_VGIC_GRP_NR_IRQS: u32 = 3;
/// vGIC attribute group: control.
pub const KVM_DEV_ARM_VGIC_GRP_CTRL: u32 = 4;
/// vGIC control attribute: initialise now.
pub const KVM_DEV_ARM_VGIC_CTRL_INIT: u64 = 0;
/// vGIC address attribute: GICv3 distributor.
pub const KVM_VGIC_V3_ADDR_TYPE_DIST: u64 = 2;
/// vGIC address attribute: the first GICv3 redistributor (one 128 KiB frame
/// pair per vCPU follows it).
pub const KVM_VGIC_V3_ADDR_TYPE_REDIST: u64 = 3;

/// `KVM_IRQ_LINE` on arm64: the `irq_type` field's shift.
pub const KVM_ARM_IRQ_TYPE_SHIFT: u32 = 24;
/// `irq_type` of an SPI of the in-kernel GIC; `irq_id` is its INTID
/// (32..=1019).
pub const KVM_ARM_IRQ_TYPE_SPI: u32 = 1;

/// `KVM_SYSTEM_EVENT_SHUTDOWN`: the guest powered off (PSCI `SYSTEM_OFF`).
pub const KVM_SYSTEM_EVENT_SHUTDOWN: u32 = 1;
/// `KVM_SYSTEM_EVENT_RESET`: the guest asked for a reset (PSCI
/// `SYSTEM_RESET`).
pub const KVM_SYSTEM_EVENT_RESET: u32 = 2;
/// `KVM_SYSTEM_EVENT_CRASH`.
pub const KVM_SYSTEM_EVENT_CRASH: u32 = 3;

/// `KVM_VM_TYPE_ARM_IPA_SIZE_MASK`: the low byte of the `KVM_CREATE_VM` type
/// is the IPA size in bits (0: the default, 40).
pub const KVM_VM_TYPE_ARM_IPA_SIZE_MASK: u64 = 0xff;
/// The IPA size a VM gets with IPA bits 0.
pub const KVM_DEFAULT_IPA_BITS: u32 = 40;
/// The smallest IPA size `KVM_CREATE_VM` accepts.
pub const KVM_MIN_IPA_BITS: u32 = 32;

/// The `KVM_CREATE_VM` type for a VM with `ipa_bits` of IPA space (0: the
/// default), protected or not ([`kvm_ext::VM_TYPE_ARM_PROTECTED`], **KServ's
/// extension**: stock KVM (Debian's 6.1) has no protected VMs and fails
/// `KVM_CREATE_VM` with `EINVAL`).
pub const fn vm_type(ipa_bits: u32, protected: bool) -> u64 {
    let ipa = ipa_bits as u64 & KVM_VM_TYPE_ARM_IPA_SIZE_MASK;
    if protected {
        ipa | kvm_ext::VM_TYPE_ARM_PROTECTED
    } else {
        ipa
    }
}

/// The argument of `KSERV_VM_VERIFY_IMAGE` ([`kvm_ext::KSERV_VM_VERIFY_IMAGE`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KservVerifyImage {
    /// Guest physical address of the image's first byte.
    pub gpa: u64,
    /// Length of the image in bytes (the signed length).
    pub len: u64,
    /// User pointer to the signature block: the 64-byte Ed25519 signature,
    /// then the signed MMIO manifest (`kcore_abi::manifest`).
    pub sig_addr: u64,
    /// Its length in bytes.
    pub sig_len: u64,
}

// The structure is `struct kserv_verify_image` as `kcore_abi::kvm_ext`
// lays it out.
const _: () = assert!(size_of::<KservVerifyImage>() == verify_image::SIZE);
const _: () = assert!(offset_of!(KservVerifyImage, gpa) == verify_image::GPA);
const _: () = assert!(offset_of!(KservVerifyImage, len) == verify_image::LEN);
const _: () = assert!(offset_of!(KservVerifyImage, sig_addr) == verify_image::SIG_ADDR);
const _: () = assert!(offset_of!(KservVerifyImage, sig_len) == verify_image::SIG_LEN);

/// Shortest signature block `KSERV_VM_VERIFY_IMAGE` takes: the signature
/// and an empty manifest's header.
pub const MIN_SIGNATURE_BLOCK: usize = 64 + 16;
/// Longest: the signature and a manifest of 16 ranges.
pub const MAX_SIGNATURE_BLOCK: usize = 64 + 16 + 16 * 16;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_register_ids() {
        // As QEMU and kvmtool compute them: ARM64 | U64 | CORE | offset/4.
        assert_eq!(REG_X0, 0x6030_0000_0010_0000);
        assert_eq!(REG_PC, 0x6030_0000_0010_0040);
    }

    #[test]
    fn verify_image_ioctl_number() {
        assert_eq!(size_of::<KservVerifyImage>(), 32);
        assert_eq!(kvm_ext::KSERV_VM_VERIFY_IMAGE, 0x4020_AEF0);
        // The same formula as vmm-sys-util's `_IOW` (used for KVM's own
        // numbers), for a known KVM ioctl: KVM_IRQ_LINE = _IOW(KVMIO, 0x61,
        // struct kvm_irq_level (8 bytes)).
        assert_eq!(kvm_ext::kvm_ioc(kvm_ext::IOC_WRITE, 0x61, 8), 0x4008_AE61);
    }

    #[test]
    fn vm_types() {
        assert_eq!(vm_type(0, false), 0);
        assert_eq!(vm_type(32, false), 32);
        assert_eq!(vm_type(40, true), 0x8000_0028);
        assert_eq!(vm_type(0, true), 1 << 31);
    }
}
