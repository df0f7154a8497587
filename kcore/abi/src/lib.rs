//! The wire format between KServ (the `kserv-shim` module) and KCore.
//!
//! Hypercalls are SMCCC fast calls (SMC64) in the vendor-specific hypervisor
//! service range `0xC600_0000..=0xC600_FFFF`, issued with `HVC #0` from EL1.
//! Arguments travel in `x1..=x6`; `x0` returns a status: [`SUCCESS`] or a
//! negative [`Error`] code, further results in `x1..`. This crate is the only
//! definition of those numbers: KCore and the shim both depend on it, so a
//! mismatch between them is a compile error. It has no dependencies and no
//! `unsafe`. The human-readable description lives in `docs/abi.md`.
//!
//! It is also the one home of the other numbers several crates must agree
//! on: the PSCI ([`psci`]) and SMCCC ([`smccc`]) function ids and results
//! KCore, the shim and the test guest use, and KServ's extensions of the KVM
//! API ([`kvm_ext`]) the shim implements and the VMM and tools call.
#![no_std]
#![forbid(unsafe_code)]

pub mod call;
pub mod kvm_ext;
pub mod manifest;
pub mod psci;
pub mod reg;
pub mod run;
pub mod smccc;

/// Major version of the hypercall ABI. Incompatible changes bump it.
pub const ABI_VERSION_MAJOR: u16 = 0;
/// Minor version of the hypercall ABI. Backwards-compatible additions bump it.
pub const ABI_VERSION_MINOR: u16 = 15;

/// The ABI version as returned by [`HypercallId::Version`] in `x1`:
/// `major << 16 | minor`.
pub const fn abi_version() -> u64 {
    ((ABI_VERSION_MAJOR as u64) << 16) | ABI_VERSION_MINOR as u64
}

/// Splits a version word returned by [`HypercallId::Version`] into
/// `(major, minor)`.
pub const fn split_version(v: u64) -> (u16, u16) {
    ((v >> 16) as u16, v as u16)
}

/// Status returned in `x0` by a hypercall that succeeded.
pub const SUCCESS: i64 = 0;

/// Base of KCore's hypercall function ids: SMCCC fast call, SMC64 calling
/// convention, owner "vendor specific hypervisor service" (6).
pub const HYPERCALL_BASE: u32 =
    smccc::FAST_CALL | smccc::SMC64 | smccc::owner(smccc::OWNER_VENDOR_HYP);

/// Every KCore hypercall. The discriminant is the SMCCC function id placed in
/// `x0`. Each call's arguments are a struct of the same name in [`call`].
///
/// Calls that change who owns a page are named
/// `<initiator>_<verb>_<completer>`; `Version` and `Features` only query.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum HypercallId {
    /// Query the ABI version.
    ///
    /// Returns `x0 = SUCCESS`, `x1 =` [`abi_version()`], `x2 =` the
    /// [`features`] bitmap of this KCore build.
    Version = HYPERCALL_BASE,
    /// Query whether a function id is implemented.
    ///
    /// `x1` = the function id to ask about. Returns `x0 = SUCCESS` if it is
    /// implemented, [`Error::NotSupported`] otherwise.
    Features = HYPERCALL_BASE + 1,
    /// `host_create_vm`: `x1` = [`vm_flags`], `x2` = IPA size in bits (0:
    /// default 40), `x3` = most vCPUs (1..=64), `x4` = first pfn and `x5` =
    /// number of KServ pages donated for the VM's stage-2 tables (contiguous;
    /// the first ones, aligned to their size, hold the root). Returns `x1` =
    /// the VM handle.
    HostCreateVm = HYPERCALL_BASE + 2,
    /// `host_create_vcpu`: `x1` = handle, `x2` = vCPU index. The vCPU's
    /// register state takes one page of the VM's table pool (KCore memory).
    HostCreateVcpu = HYPERCALL_BASE + 3,
    /// `host_donate_vm_pool`: `x1` = handle, `x2` = pfn of one more KServ page
    /// for the VM's stage-2 tables.
    HostDonateVmPool = HYPERCALL_BASE + 4,
    /// `host_donate_guest`: `x1` = handle, `x2` = pfn, `x3` = gfn. The page
    /// becomes the VM's at `gfn` and leaves KServ's stage 2.
    HostDonateGuest = HYPERCALL_BASE + 5,
    /// `host_share_guest`: `x1` = handle, `x2` = pfn, `x3` = gfn, `x4` =
    /// [`share_flags`]. The page stays KServ's and is also mapped in the
    /// (non-protected) VM at `gfn`; read-only, a guest write to it exits as
    /// MMIO (KVM's read-only memory slots).
    HostShareGuest = HYPERCALL_BASE + 6,
    /// `host_unshare_guest`: `x1` = handle, `x2` = gfn of a shared page.
    HostUnshareGuest = HYPERCALL_BASE + 7,
    /// `host_teardown_vm`: `x1` = handle. The VM is dying: unmapped, never to
    /// run again; its pages wait for `HostReclaimPage`.
    HostTeardownVm = HYPERCALL_BASE + 8,
    /// `host_reclaim_page`: `x1` = handle of a dying VM, `x2` = pfn of one of
    /// its pages (memory or table). KCore scrubs it and returns it to KServ;
    /// the VM's slot is freed with its last page.
    HostReclaimPage = HYPERCALL_BASE + 9,
    /// `host_page_owner` (for tests): `x1` = pfn. Returns `x1` = a
    /// [`PageOwner`] code, `x2` = the VM handle (0 if none), `x3` = the gfn.
    HostPageOwner = HYPERCALL_BASE + 10,
    /// `host_verify_image`: `x1` = handle of a protected VM that has not run,
    /// `x2` = first gfn of its boot image, `x3` = the image's length in
    /// bytes, `x4` = pfn of a KServ page whose first 64 bytes are the Ed25519
    /// signature. The image pages must be the VM's own (donated, not shared).
    /// On success the VM may run; if the signature does not verify, the VM is
    /// poisoned and never runs ([`Error::VerificationFailed`]).
    HostVerifyImage = HYPERCALL_BASE + 11,
    /// `host_declare_mmio`: `x1` = handle, `x2` = first gfn, `x3` = number of
    /// pages. Stage-2 faults inside a declared range exit as [`run::exit::MMIO`]
    /// with the one data register; faults elsewhere as
    /// [`run::exit::MEM_FAULT`] with the page only. A protected VM's ranges
    /// are frozen once one of its vCPUs ran.
    HostDeclareMmio = HYPERCALL_BASE + 12,
    /// `host_vcpu_run`: `x1` = handle, `x2` = vCPU index, `x3` = pfn of a
    /// KServ page laid out as [`run`] describes. KCore reads the entry half
    /// once, runs the vCPU until an exit KServ must see, writes the exit
    /// half and returns `x1` = the exit reason ([`run::exit`]).
    HostVcpuRun = HYPERCALL_BASE + 13,
    /// `host_vcpu_get_reg`: `x1` = handle, `x2` = vCPU index, `x3` = a
    /// [`reg`] id. Returns `x1` = the value. Refused for a protected VM.
    HostVcpuGetReg = HYPERCALL_BASE + 14,
    /// `host_vcpu_set_reg`: `x1` = handle, `x2` = vCPU index, `x3` = a [`reg`]
    /// id, `x4` = the value. A protected vCPU takes only [`reg::PC`] and
    /// [`reg::X0`], and only before it first ran.
    HostVcpuSetReg = HYPERCALL_BASE + 15,
    /// `host_self_check` (test images only, feature bit
    /// [`features::SELF_CHECK`]): KCore audits its ownership table against
    /// every stage-2 table. Returns `x1` = pages KServ's stage 2 maps, `x2`
    /// = pages VMs map, `x3` = table pages walked; [`Error::SelfCheckFailed`]
    /// (and a line on KCore's console) on the first disagreement.
    HostSelfCheck = HYPERCALL_BASE + 16,
    /// `host_guest_id_reg`: `x1` = a [`reg`] id of an identification
    /// register (`reg::SYSREG |` the feature space `op0=3, op1=0, CRn=0,
    /// CRm=1..7`, or `MIDR_EL1`, `REVIDR_EL1`, `CLIDR_EL1`, `AIDR_EL1`,
    /// `CTR_EL0`). Returns `x1` = the value every guest reads (the same for
    /// every VM, protected or not); [`Error::NotFound`] for any other id.
    HostGuestIdReg = HYPERCALL_BASE + 17,
    /// `host_protect_guest`: `x1` = handle of a non-protected VM, `x2` =
    /// first gfn, `x3` = number of pages (1..=[`MAX_PROTECT_PAGES`]). Every
    /// page of the range that KServ shares with the VM writable is made
    /// read-only in the VM's stage 2 (break-before-make, TLBs invalidated
    /// on every CPU) for dirty logging: the guest's next write to it exits
    /// as [`run::exit::MEM_FAULT`] with [`run::exit_flags::WRITE_PROTECTED`].
    /// Who owns a page never changes; other pages of the range are left
    /// alone. Returns `x1` = the pages write-protected.
    HostProtectGuest = HYPERCALL_BASE + 18,
    /// `host_unprotect_guest`: `x1` = handle of a non-protected VM, `x2` =
    /// gfn of a page KServ shares with it that [`HypercallId::HostProtectGuest`]
    /// (or [`share_flags::WRITE_PROTECT`]) made read-only: writable again.
    /// Returns `x1` = 1, or 0 if the page was writable already.
    HostUnprotectGuest = HYPERCALL_BASE + 19,
    /// `host_set_vgic_cpu` (ABI 0.12, GICv2 hosts only): `x1` = handle of a
    /// VM none of whose vCPUs ran, `x2` = the gfn of the guest's GIC CPU
    /// interface (`GICC`, 8 KiB: `x2` and `x2 + 1`). KCore maps the
    /// hardware's virtual CPU interface (`GICV`) there in the VM's stage 2,
    /// once: both pages must be unmapped, outside the VM's MMIO ranges and
    /// its IPA space. [`Error::NotSupported`] on a GICv3 host.
    HostSetVgicCpu = HYPERCALL_BASE + 20,
    /// `host_set_gic_frames` (ABI 0.15, GICv3 hosts): `x1` = handle of a
    /// protected VM none of whose vCPUs ran, `x2` = the frame kind (0: the
    /// ITS, one 128 KiB frame; 1: a region of redistributors, 128 KiB
    /// each, in frame order after the regions placed before), `x3` = its
    /// first gfn (64 KiB aligned), `x4` = how many frames (ITS: 1; at most
    /// 64 redistributors in at most 8 regions). Each frame's first page
    /// must lie in the VM's MMIO ranges. KCore then records the guest's own
    /// writes to the ITS's `GITS_CTLR`, `GITS_CBASER`, `GITS_BASER0/1` and
    /// the redistributors' `GICR_CTLR`, `GICR_PROPBASER`, `GICR_PENDBASER`
    /// (`kcore::gic_tables`). [`Error::NotSupported`] on a GICv2 host.
    HostSetGicFrames = HYPERCALL_BASE + 21,
    /// `host_read_gic_table` (ABI 0.15): `x1` = handle of a protected VM,
    /// `x2` = a guest address, `x3` = a length (1..=24, inside one page).
    /// Returns the VM's bytes there little-endian in `x1..x3`, only inside
    /// a window its guest opened for its ITS: the command queue, the device
    /// and collection tables, the LPI property table and the pending tables
    /// of redistributors with LPIs enabled. [`Error::Denied`] elsewhere,
    /// [`Error::NotFound`] where the VM has no page of its own.
    HostReadGicTable = HYPERCALL_BASE + 22,
}

/// The frame kinds of [`HypercallId::HostSetGicFrames`] (`x2`).
pub mod gic_frame {
    /// The ITS frame (one 128 KiB frame).
    pub const ITS: u64 = 0;
    /// A region of redistributors (128 KiB each).
    pub const REDIST: u64 = 1;
    /// Most bytes one [`super::HypercallId::HostReadGicTable`] returns.
    pub const MAX_READ: u64 = 24;
}

/// Most pages one [`HypercallId::HostProtectGuest`] covers (2 MiB): bounds
/// the time KCore's lock is held.
pub const MAX_PROTECT_PAGES: u64 = 512;

impl HypercallId {
    /// Every hypercall this ABI version defines.
    pub const ALL: [HypercallId; 23] = [
        HypercallId::Version,
        HypercallId::Features,
        HypercallId::HostCreateVm,
        HypercallId::HostCreateVcpu,
        HypercallId::HostDonateVmPool,
        HypercallId::HostDonateGuest,
        HypercallId::HostShareGuest,
        HypercallId::HostUnshareGuest,
        HypercallId::HostTeardownVm,
        HypercallId::HostReclaimPage,
        HypercallId::HostPageOwner,
        HypercallId::HostVerifyImage,
        HypercallId::HostDeclareMmio,
        HypercallId::HostVcpuRun,
        HypercallId::HostVcpuGetReg,
        HypercallId::HostVcpuSetReg,
        HypercallId::HostSelfCheck,
        HypercallId::HostGuestIdReg,
        HypercallId::HostProtectGuest,
        HypercallId::HostUnprotectGuest,
        HypercallId::HostSetVgicCpu,
        HypercallId::HostSetGicFrames,
        HypercallId::HostReadGicTable,
    ];

    /// The SMCCC function id of this call.
    pub const fn function_id(self) -> u32 {
        self as u32
    }

    /// Decodes a raw `x0` value. Only the low 32 bits carry the function id
    /// (SMCCC: the upper bits of `w0` are ignored for SMC64 calls are required
    /// to be zero); anything with upper bits set is not a KCore call.
    pub const fn from_raw(x0: u64) -> Option<HypercallId> {
        if x0 > u32::MAX as u64 {
            return None;
        }
        let id = x0 as u32;
        let mut i = 0;
        while i < Self::ALL.len() {
            if Self::ALL[i] as u32 == id {
                return Some(Self::ALL[i]);
            }
            i += 1;
        }
        None
    }
}

/// Flags of [`HypercallId::HostCreateVm`] in `x1`.
pub mod vm_flags {
    /// A protected VM: KServ can neither read nor write its private memory.
    pub const PROTECTED: u64 = 1 << 0;
    /// Every flag this ABI version defines.
    pub const ALL: u64 = PROTECTED;
}

/// Flags of [`HypercallId::HostShareGuest`] in `x4`.
pub mod share_flags {
    /// The guest may read and execute the page, not write it.
    pub const READ_ONLY: u64 = 1 << 0;
    /// Mapped write-protected for dirty logging, as
    /// [`super::HypercallId::HostProtectGuest`] leaves a page: the guest's
    /// first write exits as a memory fault
    /// ([`super::run::exit_flags::WRITE_PROTECTED`]) until
    /// [`super::HypercallId::HostUnprotectGuest`]. Not with [`READ_ONLY`].
    pub const WRITE_PROTECT: u64 = 1 << 1;
    /// Every flag this ABI version defines.
    pub const ALL: u64 = READ_ONLY | WRITE_PROTECT;
}

/// Who owns a page, as [`HypercallId::HostPageOwner`] reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u64)]
pub enum PageOwner {
    /// KCore's own.
    KCore = 1,
    /// KCore's, holding a VM's stage-2 tables.
    VmTable = 2,
    /// KServ's alone.
    Host = 3,
    /// KServ's, shared with a non-protected VM.
    HostSharedWithGuest = 4,
    /// A VM's.
    Guest = 5,
    /// A VM's, shared with KServ.
    GuestSharedWithHost = 6,
    /// KServ's, pinned by KCore while it uses the page (a running vCPU's
    /// run page): it cannot be donated, shared, pooled or made a table
    /// (`Busy`) until unpinned. `x3` reports the number of pins.
    HostPinned = 7,
}

impl PageOwner {
    /// Every owner code.
    pub const ALL: [PageOwner; 7] = [
        PageOwner::KCore,
        PageOwner::VmTable,
        PageOwner::Host,
        PageOwner::HostSharedWithGuest,
        PageOwner::Guest,
        PageOwner::GuestSharedWithHost,
        PageOwner::HostPinned,
    ];

    /// Decodes an `x1` value.
    pub const fn from_raw(v: u64) -> Option<PageOwner> {
        Some(match v {
            1 => PageOwner::KCore,
            2 => PageOwner::VmTable,
            3 => PageOwner::Host,
            4 => PageOwner::HostSharedWithGuest,
            5 => PageOwner::Guest,
            6 => PageOwner::GuestSharedWithHost,
            7 => PageOwner::HostPinned,
            _ => return None,
        })
    }
}

/// Bits of the feature word returned by [`HypercallId::Version`] in `x2`.
pub mod features {
    /// KCore proxies PSCI for KServ (CPU_ON, CPU_OFF, SYSTEM_OFF, ...).
    pub const PSCI_PROXY: u64 = 1 << 0;
    /// KServ's stage 2 isolates KCore's memory; KServ accesses to it are
    /// reported to KServ as synchronous external aborts.
    pub const HOST_STAGE2: u64 = 1 << 1;
    /// VMs: creation, memory donation and sharing, teardown and reclaim.
    pub const VMS: u64 = 1 << 2;
    /// vCPUs: run, exits, registers, virtual interrupts.
    pub const VCPUS: u64 = 1 << 3;
    /// A test image: [`super::HypercallId::HostSelfCheck`] is built in.
    pub const SELF_CHECK: u64 = 1 << 4;
    /// (ABI 0.12) The host's GIC is a GICv2: VMs get a GICv2 virtual CPU
    /// interface ([`super::HypercallId::HostSetVgicCpu`]) and at most 8
    /// vCPUs; without it, a GICv3's.
    pub const GICV2: u64 = 1 << 5;
}

/// Error codes returned in `x0`. The values below `-16` are KCore's own; the
/// first ones coincide with SMCCC's so that a generic SMCCC caller reads them
/// correctly.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(i64)]
pub enum Error {
    /// SMCCC `NOT_SUPPORTED`: unknown function id.
    NotSupported = -1,
    /// SMCCC `NOT_REQUIRED`.
    NotRequired = -2,
    /// SMCCC `INVALID_PARAMETER`: an argument is out of range or malformed.
    InvalidParameter = -3,
    /// The caller may not do this (wrong owner, wrong state).
    Denied = -17,
    /// The object is in a state where the call cannot proceed now.
    Busy = -18,
    /// KCore lacks the memory to complete the call.
    NoMemory = -19,
    /// No object with that handle or address exists.
    NotFound = -20,
    /// A VM image's signature did not verify: the VM is poisoned.
    VerificationFailed = -21,
    /// KCore's self-check found its ownership table and a stage-2 table
    /// disagreeing.
    SelfCheckFailed = -22,
}

impl Error {
    /// Every error code.
    pub const ALL: [Error; 9] = [
        Error::NotSupported,
        Error::NotRequired,
        Error::InvalidParameter,
        Error::Denied,
        Error::Busy,
        Error::NoMemory,
        Error::NotFound,
        Error::VerificationFailed,
        Error::SelfCheckFailed,
    ];

    /// The value placed in `x0`.
    pub const fn to_x0(self) -> u64 {
        self as i64 as u64
    }

    /// Decodes an `x0` status. `Ok(())` for [`SUCCESS`], `Err(None)` for a
    /// value this ABI version does not define.
    pub fn from_x0(x0: u64) -> Result<(), Option<Error>> {
        let v = x0 as i64;
        if v == SUCCESS {
            return Ok(());
        }
        Err(Self::ALL.iter().copied().find(|e| *e as i64 == v))
    }
}

/// What KCore writes into the device tree it hands to KServ.
pub mod dt {
    /// `compatible` of the node announcing KCore (`/hypervisor`).
    pub const HYPERVISOR_COMPATIBLE: &str = "kcore,hypervisor";
    /// Path of the node announcing KCore.
    pub const HYPERVISOR_NODE: &str = "/hypervisor";
    /// Property of that node holding [`super::abi_version()`] as one cell.
    pub const ABI_VERSION_PROP: &str = "kcore,abi-version";
    /// `compatible` of the `/reserved-memory` children covering KCore memory.
    pub const RESERVED_COMPATIBLE: &str = "kcore,reserved-memory";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_vendor_hyp_fast_smc64() {
        for id in HypercallId::ALL {
            let f = id.function_id();
            assert_eq!(f & 0xFFFF_0000, 0xC600_0000, "{id:?}");
            assert_eq!(HypercallId::from_raw(f as u64), Some(id));
        }
    }

    #[test]
    fn raw_decoding_rejects_other_ids() {
        assert_eq!(HypercallId::from_raw(0), None);
        assert_eq!(HypercallId::from_raw(0xC600_FFFF), None);
        assert_eq!(HypercallId::from_raw(0x1_C600_0000), None);
        assert_eq!(HypercallId::from_raw(0x8600_0000), None);
    }

    #[test]
    fn errors_round_trip() {
        for e in Error::ALL {
            assert!((e as i64) < 0);
            assert_eq!(Error::from_x0(e.to_x0()), Err(Some(e)));
        }
        assert_eq!(Error::from_x0(0), Ok(()));
        assert_eq!(Error::from_x0(-1000i64 as u64), Err(None));
    }

    #[test]
    fn owners_round_trip() {
        for o in PageOwner::ALL {
            assert_eq!(PageOwner::from_raw(o as u64), Some(o));
        }
        assert_eq!(PageOwner::from_raw(0), None);
        assert_eq!(PageOwner::from_raw(8), None);
    }

    #[test]
    fn version_packs() {
        assert_eq!(
            split_version(abi_version()),
            (ABI_VERSION_MAJOR, ABI_VERSION_MINOR)
        );
    }
}
