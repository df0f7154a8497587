//! How a hypercall reaches KCore.
//!
//! [`Conduit`] is the one operation the rest of the crate needs: place eight
//! registers, trap to EL2, read the registers back. On the real machine that is
//! [`Hvc`]; host tests implement the trait over the real KCore's HVC handler
//! (`kvm`'s tests) or with a scripted fake, so the logic above it runs
//! unchanged in `cargo test`.

/// Issues one SMCCC call: `regs[0]` is the function id, `regs[1..=6]` the
/// arguments (`regs[7]` is passed too, for SMCCC 1.2 style calls). On return
/// `regs` holds `x0..=x7` as the callee left them.
pub trait Conduit {
    /// Performs the call in place.
    fn call(&mut self, regs: &mut [u64; 8]);
}

/// `HVC #0` from EL1: the conduit to KCore.
#[cfg(target_arch = "aarch64")]
pub struct Hvc {
    _private: (),
}

#[cfg(target_arch = "aarch64")]
impl Hvc {
    /// The HVC conduit.
    ///
    /// # Safety
    ///
    /// KCore must be running at EL2 underneath this kernel. With nothing there
    /// (kernel entered at EL1 without a hypervisor) `HVC` is undefined and the
    /// kernel dies; with Linux's own hyp stub or KVM there, ids it knows have
    /// side effects at EL2. The module establishes this from the device tree
    /// before it creates an `Hvc`.
    pub unsafe fn new() -> Self {
        Hvc { _private: () }
    }
}

#[cfg(target_arch = "aarch64")]
impl Conduit for Hvc {
    fn call(&mut self, regs: &mut [u64; 8]) {
        // SAFETY: an `Hvc` exists only when KCore is underneath (see `Hvc::new`),
        // and KCore implements SMCCC 1.1: it returns to the next instruction,
        // may change x0-x17 (all declared as outputs or clobbers here), preserves
        // x18-x30, SP and PSTATE and does not write KServ memory that Rust owns
        // without a call that says so. No stack is used.
        unsafe {
            core::arch::asm!(
                "hvc #0",
                inout("x0") regs[0],
                inout("x1") regs[1],
                inout("x2") regs[2],
                inout("x3") regs[3],
                inout("x4") regs[4],
                inout("x5") regs[5],
                inout("x6") regs[6],
                inout("x7") regs[7],
                out("x8") _,
                out("x9") _,
                out("x10") _,
                out("x11") _,
                out("x12") _,
                out("x13") _,
                out("x14") _,
                out("x15") _,
                out("x16") _,
                out("x17") _,
                options(nostack),
            );
        }
    }
}
