//! Typed wrappers for KCore's VM, memory and vCPU hypercalls (the ABI of
//! `kcore_abi`, `docs/abi.md`): each places its arguments in `x1..` with the
//! call's argument struct of [`kcore_abi::call`], issues the call
//! through a [`Conduit`] and decodes `x0` into `Ok` or the
//! [`kcore_abi::Error`] KCore refused with.
//!
//! The wrappers check nothing themselves: deciding what is allowed is
//! KCore's job, and the tests that play a hostile KServ need to pass
//! anything. What they add is decoding, so callers never compare raw
//! registers.

use crate::conduit::Conduit;
use kcore_abi::call::{self as args, Call};
use kcore_abi::{Error, PageOwner};

/// Why a hypercall did not succeed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallError {
    /// KCore refused with a status the ABI defines.
    Kcore(Error),
    /// `x0` was neither success nor a status this ABI version defines.
    UnknownStatus(u64),
    /// The call succeeded but its results cannot be decoded (say, an owner
    /// code the ABI does not define).
    MalformedReply,
}

impl CallError {
    /// The ABI error, if KCore answered with one.
    pub const fn kcore(self) -> Option<Error> {
        match self {
            CallError::Kcore(e) => Some(e),
            _ => None,
        }
    }

    /// Whether this is exactly KCore's `e`.
    pub fn is(self, e: Error) -> bool {
        self == CallError::Kcore(e)
    }
}

/// A VM as KCore names it to KServ (`x1` of `HostCreateVm`). Opaque: KCore
/// encodes a slot and a generation in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct VmHandle(pub u64);

/// Arguments of [`create_vm`].
pub use kcore_abi::call::HostCreateVm as CreateVm;

/// What `HostPageOwner` reports about a page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageInfo {
    /// Its owner.
    pub owner: PageOwner,
    /// The VM it belongs to or is shared with, `None` for KServ's or KCore's
    /// own pages (KCore reports 0).
    pub vm: Option<VmHandle>,
    /// The guest frame it is mapped at (0 when not a VM's).
    pub gfn: u64,
}

/// Issues the call whose arguments are `args` (their registers from
/// [`Call::to_regs`]); returns `x1..=x3` on success.
pub fn call<C: Conduit, A: Call>(c: &mut C, args: &A) -> Result<[u64; 3], CallError> {
    let mut regs = [0u64; 8];
    regs[0] = u64::from(A::ID.function_id());
    regs[1..7].copy_from_slice(&args.to_regs());
    c.call(&mut regs);
    match Error::from_x0(regs[0]) {
        Ok(()) => Ok([regs[1], regs[2], regs[3]]),
        Err(Some(e)) => Err(CallError::Kcore(e)),
        Err(None) => Err(CallError::UnknownStatus(regs[0])),
    }
}

/// `HostCreateVm`: the pool pages become the VM's table pages; returns the
/// VM's handle.
pub fn create_vm<C: Conduit>(c: &mut C, a: &CreateVm) -> Result<VmHandle, CallError> {
    let [handle, _, _] = call(c, a)?;
    Ok(VmHandle(handle))
}

/// `HostCreateVcpu`: registers vCPU `index` of `vm`.
pub fn create_vcpu<C: Conduit>(c: &mut C, vm: VmHandle, index: u64) -> Result<(), CallError> {
    let a = args::HostCreateVcpu {
        handle: vm.0,
        vcpu: index,
    };
    call(c, &a).map(drop)
}

/// `HostDonateVmPool`: one more KServ page for `vm`'s stage-2 tables.
pub fn donate_vm_pool<C: Conduit>(c: &mut C, vm: VmHandle, pfn: u64) -> Result<(), CallError> {
    call(c, &args::HostDonateVmPool { handle: vm.0, pfn }).map(drop)
}

/// `HostDonateGuest`: KServ's page `pfn` becomes `vm`'s at `gfn`.
pub fn donate_guest<C: Conduit>(
    c: &mut C,
    vm: VmHandle,
    pfn: u64,
    gfn: u64,
) -> Result<(), CallError> {
    let a = args::HostDonateGuest {
        handle: vm.0,
        pfn,
        gfn,
    };
    call(c, &a).map(drop)
}

/// `HostShareGuest`: KServ's page `pfn` is also mapped in (non-protected)
/// `vm` at `gfn`, with `kcore_abi::share_flags`: `READ_ONLY` (the guest's
/// writes there exit as MMIO) or `WRITE_PROTECT` (dirty logging: the first
/// write exits as a memory fault).
pub fn share_guest<C: Conduit>(
    c: &mut C,
    vm: VmHandle,
    pfn: u64,
    gfn: u64,
    flags: u64,
) -> Result<(), CallError> {
    let a = args::HostShareGuest {
        handle: vm.0,
        pfn,
        gfn,
        flags,
    };
    call(c, &a).map(drop)
}

/// `HostProtectGuest`: the pages KServ shares writable with (non-protected)
/// `vm` in `[gfn, gfn + pages)` become write-protected for dirty logging
/// (at most `kcore_abi::MAX_PROTECT_PAGES` a call); how many did.
pub fn protect_guest<C: Conduit>(
    c: &mut C,
    vm: VmHandle,
    gfn: u64,
    pages: u64,
) -> Result<u64, CallError> {
    let a = args::HostProtectGuest {
        handle: vm.0,
        gfn,
        pages,
    };
    call(c, &a).map(|[n, _, _]| n)
}

/// `HostUnprotectGuest`: the write-protected shared page `vm` sees at
/// `gfn` is writable again; whether it changed (0: it was writable).
pub fn unprotect_guest<C: Conduit>(c: &mut C, vm: VmHandle, gfn: u64) -> Result<u64, CallError> {
    call(c, &args::HostUnprotectGuest { handle: vm.0, gfn }).map(|[n, _, _]| n)
}

/// `HostSetVgicCpu` (GICv2 hosts): KCore maps the GIC's virtual CPU
/// interface (8 KiB) into `vm` at `gfn`, where the guest's GICC is.
pub fn set_vgic_cpu<C: Conduit>(c: &mut C, vm: VmHandle, gfn: u64) -> Result<(), CallError> {
    call(c, &args::HostSetVgicCpu { handle: vm.0, gfn }).map(drop)
}

/// `HostSetGicFrames` (GICv3 hosts, protected VMs, before the first run):
/// where `vm`'s ITS frame (`kind` 0, one frame) or a region of `frames`
/// redistributors (`kind` 1) lies, from `gfn`.
pub fn set_gic_frames<C: Conduit>(
    c: &mut C,
    vm: VmHandle,
    kind: u64,
    gfn: u64,
    frames: u64,
) -> Result<(), CallError> {
    let a = args::HostSetGicFrames {
        handle: vm.0,
        kind,
        gfn,
        frames,
    };
    call(c, &a).map(drop)
}

/// `HostReadGicTable`: `len` (1..=24, inside one page) bytes of protected
/// `vm`'s memory at `ipa`, inside an ITS or LPI table its guest programmed;
/// little-endian in three words.
pub fn read_gic_table<C: Conduit>(
    c: &mut C,
    vm: VmHandle,
    ipa: u64,
    len: u64,
) -> Result<[u64; 3], CallError> {
    call(
        c,
        &args::HostReadGicTable {
            handle: vm.0,
            ipa,
            len,
        },
    )
}

/// Whether the host's GIC is a GICv2 (KCore's `features::GICV2`); false
/// when KCore does not answer.
pub fn host_gicv2<C: Conduit>(c: &mut C) -> bool {
    crate::version::query(c).is_ok_and(|v| v.features & kcore_abi::features::GICV2 != 0)
}

/// `HostUnshareGuest`: ends the sharing of the page `vm` sees at `gfn`.
pub fn unshare_guest<C: Conduit>(c: &mut C, vm: VmHandle, gfn: u64) -> Result<(), CallError> {
    call(c, &args::HostUnshareGuest { handle: vm.0, gfn }).map(drop)
}

/// `HostTeardownVm`: `vm` is dying; its pages wait for [`reclaim_page`].
pub fn teardown_vm<C: Conduit>(c: &mut C, vm: VmHandle) -> Result<(), CallError> {
    call(c, &args::HostTeardownVm { handle: vm.0 }).map(drop)
}

/// `HostReclaimPage`: page `pfn` of dying `vm` comes back to KServ,
/// scrubbed.
pub fn reclaim_page<C: Conduit>(c: &mut C, vm: VmHandle, pfn: u64) -> Result<(), CallError> {
    call(c, &args::HostReclaimPage { handle: vm.0, pfn }).map(drop)
}

/// `HostPageOwner` (for tests): who owns page `pfn`.
pub fn page_owner<C: Conduit>(c: &mut C, pfn: u64) -> Result<PageInfo, CallError> {
    let [code, vm, gfn] = call(c, &args::HostPageOwner { pfn })?;
    let owner = PageOwner::from_raw(code).ok_or(CallError::MalformedReply)?;
    Ok(PageInfo {
        owner,
        vm: (vm != 0).then_some(VmHandle(vm)),
        gfn,
    })
}

/// `HostVerifyImage`: checks `vm`'s boot image, `len` bytes from `gfn` on,
/// against the 64-byte signature at the start of KServ's page `sig_pfn`.
pub fn verify_image<C: Conduit>(
    c: &mut C,
    vm: VmHandle,
    gfn: u64,
    len: u64,
    sig_pfn: u64,
) -> Result<(), CallError> {
    let a = args::HostVerifyImage {
        handle: vm.0,
        gfn,
        len,
        sig_pfn,
    };
    call(c, &a).map(drop)
}

/// `HostDeclareMmio`: guest accesses to `pages` pages from `gfn` exit to
/// KServ as MMIO (protected VMs: only before a vCPU first ran).
pub fn declare_mmio<C: Conduit>(
    c: &mut C,
    vm: VmHandle,
    gfn: u64,
    pages: u64,
) -> Result<(), CallError> {
    let a = args::HostDeclareMmio {
        handle: vm.0,
        gfn,
        pages,
    };
    call(c, &a).map(drop)
}

/// `HostVcpuRun`: runs vCPU `vcpu` of `vm` with KServ's run page `run_pfn`
/// (`kcore_abi::run`) until an exit KServ must handle; returns the exit
/// reason (`kcore_abi::run::exit`), which the run page's exit half repeats
/// with the details.
pub fn vcpu_run<C: Conduit>(
    c: &mut C,
    vm: VmHandle,
    vcpu: u64,
    run_pfn: u64,
) -> Result<u64, CallError> {
    let a = args::HostVcpuRun {
        handle: vm.0,
        vcpu,
        run_pfn,
    };
    let [reason, _, _] = call(c, &a)?;
    Ok(reason)
}

/// `HostVcpuGetReg`: register `reg` (`kcore_abi::reg`) of a
/// non-protected vCPU.
pub fn vcpu_get_reg<C: Conduit>(
    c: &mut C,
    vm: VmHandle,
    vcpu: u64,
    reg: u64,
) -> Result<u64, CallError> {
    let a = args::HostVcpuGetReg {
        handle: vm.0,
        vcpu,
        reg,
    };
    let [value, _, _] = call(c, &a)?;
    Ok(value)
}

/// `HostVcpuSetReg`: sets register `reg` of vCPU `vcpu` (a protected vCPU:
/// only the PC and `x0`, only before it first ran).
pub fn vcpu_set_reg<C: Conduit>(
    c: &mut C,
    vm: VmHandle,
    vcpu: u64,
    reg: u64,
    value: u64,
) -> Result<(), CallError> {
    let a = args::HostVcpuSetReg {
        handle: vm.0,
        vcpu,
        reg,
        value,
    };
    call(c, &a).map(drop)
}

/// `HostGuestIdReg`: the value every guest reads from identification
/// register `reg` (`kcore_abi::reg::SYSREG |` an encoding of
/// `kcore_abi::reg::id`).
pub fn guest_id_reg<C: Conduit>(c: &mut C, reg: u64) -> Result<u64, CallError> {
    let [value, _, _] = call(c, &args::HostGuestIdReg { reg })?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records the registers of each call and answers with a fixed reply.
    struct Scripted {
        reply: [u64; 4],
        asked: [u64; 8],
    }

    impl Scripted {
        fn new(reply: [u64; 4]) -> Self {
            Scripted {
                reply,
                asked: [0; 8],
            }
        }
    }

    impl Conduit for Scripted {
        fn call(&mut self, regs: &mut [u64; 8]) {
            self.asked = *regs;
            regs[..4].copy_from_slice(&self.reply);
            // Whatever KCore leaves in x4.. must not matter.
            regs[4..].fill(0xdead);
        }
    }

    const OK: [u64; 4] = [0, 0, 0, 0];

    #[test]
    fn arguments_land_in_x1_onwards() {
        let vm = VmHandle(0x1_0003);
        let mut c = Scripted::new([0, 0x2_0001, 0, 0]);
        let a = CreateVm {
            flags: 1,
            ipa_bits: 0,
            max_vcpus: 2,
            pool_pfn: 0x4_0000,
            pool_pages: 4,
        };
        assert_eq!(create_vm(&mut c, &a), Ok(VmHandle(0x2_0001)));
        assert_eq!(c.asked, [0xC600_0002, 1, 0, 2, 0x4_0000, 4, 0, 0]);

        let mut c = Scripted::new(OK);
        type Call = fn(&mut Scripted) -> Result<(), CallError>;
        let cases: [(Call, [u64; 8]); 14] = [
            (
                |c| create_vcpu(c, VmHandle(0x1_0003), 1),
                [0xC600_0003, vm.0, 1, 0, 0, 0, 0, 0],
            ),
            (
                |c| donate_vm_pool(c, VmHandle(0x1_0003), 7),
                [0xC600_0004, vm.0, 7, 0, 0, 0, 0, 0],
            ),
            (
                |c| donate_guest(c, VmHandle(0x1_0003), 7, 9),
                [0xC600_0005, vm.0, 7, 9, 0, 0, 0, 0],
            ),
            (
                |c| share_guest(c, VmHandle(0x1_0003), 7, 9, 0),
                [0xC600_0006, vm.0, 7, 9, 0, 0, 0, 0],
            ),
            (
                |c| share_guest(c, VmHandle(0x1_0003), 7, 9, 1),
                [0xC600_0006, vm.0, 7, 9, 1, 0, 0, 0],
            ),
            (
                |c| share_guest(c, VmHandle(0x1_0003), 7, 9, 2),
                [0xC600_0006, vm.0, 7, 9, 2, 0, 0, 0],
            ),
            (
                |c| protect_guest(c, VmHandle(0x1_0003), 9, 3).map(drop),
                [0xC600_0012, vm.0, 9, 3, 0, 0, 0, 0],
            ),
            (
                |c| unprotect_guest(c, VmHandle(0x1_0003), 9).map(drop),
                [0xC600_0013, vm.0, 9, 0, 0, 0, 0, 0],
            ),
            (
                |c| unshare_guest(c, VmHandle(0x1_0003), 9),
                [0xC600_0007, vm.0, 9, 0, 0, 0, 0, 0],
            ),
            (
                |c| teardown_vm(c, VmHandle(0x1_0003)),
                [0xC600_0008, vm.0, 0, 0, 0, 0, 0, 0],
            ),
            (
                |c| reclaim_page(c, VmHandle(0x1_0003), 7),
                [0xC600_0009, vm.0, 7, 0, 0, 0, 0, 0],
            ),
            (
                |c| verify_image(c, VmHandle(0x1_0003), 0x80, 5000, 3),
                [0xC600_000B, vm.0, 0x80, 5000, 3, 0, 0, 0],
            ),
            (
                |c| declare_mmio(c, VmHandle(0x1_0003), 0x9000, 1),
                [0xC600_000C, vm.0, 0x9000, 1, 0, 0, 0, 0],
            ),
            (
                |c| vcpu_set_reg(c, VmHandle(0x1_0003), 1, 32, 0x4000_0000),
                [0xC600_000F, vm.0, 1, 32, 0x4000_0000, 0, 0, 0],
            ),
        ];
        for (f, regs) in cases {
            assert_eq!(f(&mut c), Ok(()));
            assert_eq!(c.asked, regs);
        }
    }

    #[test]
    fn vcpu_calls_return_x1() {
        let vm = VmHandle(0x2_0001);
        let mut c = Scripted::new([0, 5, 0, 0]);
        assert_eq!(vcpu_run(&mut c, vm, 1, 0x4_1234), Ok(5));
        assert_eq!(c.asked, [0xC600_000D, vm.0, 1, 0x4_1234, 0, 0, 0, 0]);
        let mut c = Scripted::new([0, 0xabcd, 0, 0]);
        assert_eq!(vcpu_get_reg(&mut c, vm, 0, 32), Ok(0xabcd));
        assert_eq!(c.asked, [0xC600_000E, vm.0, 0, 32, 0, 0, 0, 0]);
        let mut c = Scripted::new([Error::Denied.to_x0(), 3, 0, 0]);
        assert_eq!(
            vcpu_run(&mut c, vm, 1, 0),
            Err(CallError::Kcore(Error::Denied))
        );
    }

    #[test]
    fn errors_decode() {
        let mut c = Scripted::new([Error::Busy.to_x0(), 0, 0, 0]);
        let r = reclaim_page(&mut c, VmHandle(1), 2);
        assert_eq!(r, Err(CallError::Kcore(Error::Busy)));
        assert!(r.is_err_and(|e| e.is(Error::Busy) && e.kcore() == Some(Error::Busy)));
        let mut c = Scripted::new([Error::VerificationFailed.to_x0(), 0, 0, 0]);
        assert_eq!(
            verify_image(&mut c, VmHandle(1), 0, 1, 2),
            Err(CallError::Kcore(Error::VerificationFailed))
        );
        let mut c = Scripted::new([-1000i64 as u64, 0, 0, 0]);
        let r = teardown_vm(&mut c, VmHandle(1));
        assert_eq!(r, Err(CallError::UnknownStatus(-1000i64 as u64)));
        assert_eq!(r.err().and_then(CallError::kcore), None);
        // A failed create yields no handle, whatever x1 says.
        let mut c = Scripted::new([Error::Denied.to_x0(), 0x55, 0, 0]);
        let a = CreateVm {
            flags: 1,
            ipa_bits: 0,
            max_vcpus: 1,
            pool_pfn: 0,
            pool_pages: 2,
        };
        assert_eq!(create_vm(&mut c, &a), Err(CallError::Kcore(Error::Denied)));
    }

    #[test]
    fn page_owner_decodes() {
        let mut c = Scripted::new([0, 5, 0x1_0001, 0x80]);
        assert_eq!(
            page_owner(&mut c, 0x4_0000),
            Ok(PageInfo {
                owner: PageOwner::Guest,
                vm: Some(VmHandle(0x1_0001)),
                gfn: 0x80
            })
        );
        assert_eq!(c.asked, [0xC600_000A, 0x4_0000, 0, 0, 0, 0, 0, 0]);
        let mut c = Scripted::new([0, 3, 0, 0]);
        assert_eq!(
            page_owner(&mut c, 1).map(|i| (i.owner, i.vm)),
            Ok((PageOwner::Host, None))
        );
        let mut c = Scripted::new([0, 9, 0, 0]);
        assert_eq!(page_owner(&mut c, 1), Err(CallError::MalformedReply));
        let mut c = Scripted::new([Error::InvalidParameter.to_x0(), 0, 0, 0]);
        assert_eq!(
            page_owner(&mut c, u64::MAX),
            Err(CallError::Kcore(Error::InvalidParameter))
        );
    }
}
