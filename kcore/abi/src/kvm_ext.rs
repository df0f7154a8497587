//! KServ's extensions of Linux's KVM API, as the shim implements them and
//! the VMM and KServ's tools call them: the protected VM type (as Android's
//! pKVM spells it), the capability that announces it, and the
//! `KSERV_VM_VERIFY_IMAGE` VM ioctl with the layout of its argument. Stock
//! KVM knows none of them (`KVM_CREATE_VM` fails with `EINVAL`, the ioctl
//! with `ENOTTY`). `docs/vmm.md` describes them.

/// `KVMIO`: the ioctl type of every KVM call.
pub const KVMIO: u32 = 0xAE;

/// `_IOC_WRITE`: userspace writes, the kernel reads.
pub const IOC_WRITE: u32 = 1;

/// `_IOC(dir, KVMIO, nr, size)` with the asm-generic layout arm64 uses:
/// direction in bits 31:30, size in 29:16, type in 15:8, number in 7:0.
pub const fn kvm_ioc(dir: u32, nr: u32, size: usize) -> u32 {
    dir << 30 | (size as u32) << 16 | KVMIO << 8 | nr
}

/// `KVM_VM_TYPE_ARM_PROTECTED` (as Android's pKVM): the `KVM_CREATE_VM`
/// type flag of a protected VM.
pub const VM_TYPE_ARM_PROTECTED: u64 = 1 << 31;

/// `KVM_CAP_ARM_PROTECTED_VM`, as Android's pKVM numbers it.
pub const CAP_ARM_PROTECTED_VM: u64 = 0xFFBA_DAB1;

/// `struct kserv_verify_image { __u64 gpa; __u64 len; __u64 sig_addr;
/// __u64 sig_len; }`, the argument of [`KSERV_VM_VERIFY_IMAGE`]: byte
/// offsets of its little-endian fields and its size.
pub mod verify_image {
    /// `gpa`: guest physical address of the image's first byte.
    pub const GPA: usize = 0;
    /// `len`: length of the image in bytes (the signed length).
    pub const LEN: usize = 8;
    /// `sig_addr`: user pointer to the signature block (the 64-byte
    /// Ed25519 signature, then the signed MMIO manifest,
    /// [`crate::manifest`]).
    pub const SIG_ADDR: usize = 16;
    /// `sig_len`: the signature block's length in bytes.
    pub const SIG_LEN: usize = 24;
    /// Size of the structure.
    pub const SIZE: usize = 32;
}

/// `KSERV_VM_VERIFY_IMAGE`, a VM ioctl: `_IOW(KVMIO, 0xF0, struct
/// kserv_verify_image)`. It asks KCore to verify the image at
/// `gpa..gpa + len` of a protected VM against the signature block (which
/// also fixes where the VM may have MMIO), after KServ has lost write
/// access to those pages; a protected vCPU does not run before.
pub const KSERV_VM_VERIFY_IMAGE: u32 = kvm_ioc(IOC_WRITE, 0xF0, verify_image::SIZE);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_image_ioctl_number() {
        assert_eq!(KSERV_VM_VERIFY_IMAGE, 0x4020_AEF0);
        // The same formula gives KVM's own numbers: KVM_IRQ_LINE =
        // _IOW(KVMIO, 0x61, struct kvm_irq_level (8 bytes)).
        assert_eq!(kvm_ioc(IOC_WRITE, 0x61, 8), 0x4008_AE61);
        assert_eq!(verify_image::SIG_LEN + 8, verify_image::SIZE);
    }
}
