//! The arguments of every hypercall, defined once: one plain struct per
//! [`HypercallId`], named after it, whose fields are the call's arguments in
//! `x1..=x6` as `docs/abi.md` lists them.
//!
//! The fields are raw `u64`s: what KServ alleges, not what KCore accepts.
//! KCore decodes each call with [`Call::from_regs`] and validates every
//! field itself; the shim builds the registers with [`Call::to_regs`]. A
//! register a call does not use is ignored on decoding and zero on encoding.

use crate::HypercallId;

/// The arguments of one hypercall.
pub trait Call: Sized {
    /// The call these are the arguments of.
    const ID: HypercallId;
    /// The arguments as `x1..=x6`.
    fn to_regs(&self) -> [u64; 6];
    /// The arguments found in `x1..=x6`.
    fn from_regs(regs: &[u64; 6]) -> Self;
}

/// Defines one struct per call (field `name: n` travels in `xn`), its
/// [`Call`] impl, and [`Hypercall`], the decoding of any call.
macro_rules! calls {
    ($(
        $(#[$doc:meta])*
        $name:ident { $( $(#[$fdoc:meta])* $field:ident: $x:literal, )* }
    )*) => {
        $(
            $(#[$doc])*
            #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
            pub struct $name {
                $( $(#[$fdoc])* pub $field: u64, )*
            }

            impl Call for $name {
                const ID: HypercallId = HypercallId::$name;

                fn to_regs(&self) -> [u64; 6] {
                    let regs = [0; 6];
                    $( let regs = with(regs, $x, self.$field); )*
                    regs
                }

                fn from_regs(regs: &[u64; 6]) -> Self {
                    let _ = regs;
                    $name { $( $field: regs[$x - 1], )* }
                }
            }
        )*

        /// Any hypercall with its arguments, as KCore decodes it.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Hypercall {
            $(
                #[doc = concat!("[`HypercallId::", stringify!($name), "`].")]
                $name($name),
            )*
        }

        impl Hypercall {
            /// Decodes the arguments of call `id` from `x1..=x6`.
            pub fn decode(id: HypercallId, regs: &[u64; 6]) -> Hypercall {
                match id {
                    $( HypercallId::$name => Hypercall::$name($name::from_regs(regs)), )*
                }
            }

            /// Which call this is.
            pub fn id(&self) -> HypercallId {
                match self {
                    $( Hypercall::$name(_) => HypercallId::$name, )*
                }
            }

            /// The arguments as `x1..=x6`.
            pub fn to_regs(&self) -> [u64; 6] {
                match self {
                    $( Hypercall::$name(a) => a.to_regs(), )*
                }
            }
        }
    };
}

/// `regs` with `x{x}` set to `v`.
const fn with(mut regs: [u64; 6], x: usize, v: u64) -> [u64; 6] {
    regs[x - 1] = v;
    regs
}

calls! {
    /// [`HypercallId::Version`]: no arguments.
    Version {}
    /// [`HypercallId::Features`].
    Features {
        /// The function id asked about.
        function_id: 1,
    }
    /// [`HypercallId::HostCreateVm`].
    HostCreateVm {
        /// [`crate::vm_flags`].
        flags: 1,
        /// IPA size in bits; 0 for KCore's default (40).
        ipa_bits: 2,
        /// Most vCPUs (1..=64).
        max_vcpus: 3,
        /// First pfn of the KServ pages donated for the VM's stage-2 tables.
        pool_pfn: 4,
        /// How many (contiguous; the root's pages first, aligned to their
        /// size).
        pool_pages: 5,
    }
    /// [`HypercallId::HostCreateVcpu`].
    HostCreateVcpu {
        /// The VM's handle.
        handle: 1,
        /// The vCPU index.
        vcpu: 2,
    }
    /// [`HypercallId::HostDonateVmPool`].
    HostDonateVmPool {
        /// The VM's handle.
        handle: 1,
        /// One more KServ page for the VM's stage-2 tables.
        pfn: 2,
    }
    /// [`HypercallId::HostDonateGuest`].
    HostDonateGuest {
        /// The VM's handle.
        handle: 1,
        /// KServ's page.
        pfn: 2,
        /// Where the VM sees it.
        gfn: 3,
    }
    /// [`HypercallId::HostShareGuest`].
    HostShareGuest {
        /// The (non-protected) VM's handle.
        handle: 1,
        /// KServ's page.
        pfn: 2,
        /// Where the VM sees it.
        gfn: 3,
        /// [`crate::share_flags`].
        flags: 4,
    }
    /// [`HypercallId::HostUnshareGuest`].
    HostUnshareGuest {
        /// The VM's handle.
        handle: 1,
        /// Where the VM sees the shared page.
        gfn: 2,
    }
    /// [`HypercallId::HostTeardownVm`].
    HostTeardownVm {
        /// The VM's handle.
        handle: 1,
    }
    /// [`HypercallId::HostReclaimPage`].
    HostReclaimPage {
        /// The dying VM's handle.
        handle: 1,
        /// One of its pages (memory or table).
        pfn: 2,
    }
    /// [`HypercallId::HostPageOwner`].
    HostPageOwner {
        /// The page asked about.
        pfn: 1,
    }
    /// [`HypercallId::HostVerifyImage`].
    HostVerifyImage {
        /// The protected VM's handle.
        handle: 1,
        /// First gfn of its boot image.
        gfn: 2,
        /// The image's length in bytes.
        len: 3,
        /// KServ's page holding the signature block.
        sig_pfn: 4,
    }
    /// [`HypercallId::HostDeclareMmio`].
    HostDeclareMmio {
        /// The VM's handle.
        handle: 1,
        /// First gfn of the range.
        gfn: 2,
        /// Its number of pages.
        pages: 3,
    }
    /// [`HypercallId::HostVcpuRun`].
    HostVcpuRun {
        /// The VM's handle.
        handle: 1,
        /// The vCPU index.
        vcpu: 2,
        /// KServ's run page ([`crate::run`]).
        run_pfn: 3,
    }
    /// [`HypercallId::HostVcpuGetReg`].
    HostVcpuGetReg {
        /// The VM's handle.
        handle: 1,
        /// The vCPU index.
        vcpu: 2,
        /// A [`crate::reg`] id.
        reg: 3,
    }
    /// [`HypercallId::HostVcpuSetReg`].
    HostVcpuSetReg {
        /// The VM's handle.
        handle: 1,
        /// The vCPU index.
        vcpu: 2,
        /// A [`crate::reg`] id.
        reg: 3,
        /// The value.
        value: 4,
    }
    /// [`HypercallId::HostSelfCheck`]: no arguments.
    HostSelfCheck {}
    /// [`HypercallId::HostGuestIdReg`].
    HostGuestIdReg {
        /// A [`crate::reg`] id (`reg::SYSREG | encoding`).
        reg: 1,
    }
    /// [`HypercallId::HostProtectGuest`].
    HostProtectGuest {
        /// The (non-protected) VM's handle.
        handle: 1,
        /// First gfn of the range.
        gfn: 2,
        /// Its number of pages (1..=[`crate::MAX_PROTECT_PAGES`]).
        pages: 3,
    }
    /// [`HypercallId::HostUnprotectGuest`].
    HostUnprotectGuest {
        /// The (non-protected) VM's handle.
        handle: 1,
        /// The write-protected shared page's gfn.
        gfn: 2,
    }
    /// [`HypercallId::HostSetVgicCpu`].
    HostSetVgicCpu {
        /// The VM's handle.
        handle: 1,
        /// The first of the two pages of the guest's `GICC`.
        gfn: 2,
    }
    /// [`HypercallId::HostSetGicFrames`].
    HostSetGicFrames {
        /// The protected VM's handle.
        handle: 1,
        /// 0: the ITS; 1: a region of redistributors.
        kind: 2,
        /// The first gfn.
        gfn: 3,
        /// How many frames.
        frames: 4,
    }
    /// [`HypercallId::HostReadGicTable`].
    HostReadGicTable {
        /// The protected VM's handle.
        handle: 1,
        /// The guest address.
        ipa: 2,
        /// Bytes (1..=24).
        len: 3,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REGS: [u64; 6] = [11, 22, 33, 44, 55, 66];

    /// `from_regs` of [`REGS`], and `to_regs` of that: the registers the
    /// call uses, the others zero.
    fn round_trip<A: Call + core::fmt::Debug + PartialEq>(a: A, used: usize) {
        assert_eq!(A::from_regs(&REGS), a);
        let mut want = [0; 6];
        want[..used].copy_from_slice(&REGS[..used]);
        assert_eq!(a.to_regs(), want, "{a:?}");
        assert_eq!(A::from_regs(&a.to_regs()), a);
        assert_eq!(Hypercall::decode(A::ID, &REGS).to_regs(), want);
        assert_eq!(Hypercall::decode(A::ID, &REGS).id(), A::ID);
    }

    #[test]
    fn version() {
        round_trip(Version {}, 0);
    }

    #[test]
    fn features() {
        round_trip(Features { function_id: 11 }, 1);
    }

    #[test]
    fn host_create_vm() {
        let a = HostCreateVm {
            flags: 11,
            ipa_bits: 22,
            max_vcpus: 33,
            pool_pfn: 44,
            pool_pages: 55,
        };
        round_trip(a, 5);
    }

    #[test]
    fn host_create_vcpu() {
        round_trip(
            HostCreateVcpu {
                handle: 11,
                vcpu: 22,
            },
            2,
        );
    }

    #[test]
    fn host_donate_vm_pool() {
        round_trip(
            HostDonateVmPool {
                handle: 11,
                pfn: 22,
            },
            2,
        );
    }

    #[test]
    fn host_donate_guest() {
        let a = HostDonateGuest {
            handle: 11,
            pfn: 22,
            gfn: 33,
        };
        round_trip(a, 3);
    }

    #[test]
    fn host_share_guest() {
        let a = HostShareGuest {
            handle: 11,
            pfn: 22,
            gfn: 33,
            flags: 44,
        };
        round_trip(a, 4);
    }

    #[test]
    fn host_unshare_guest() {
        round_trip(
            HostUnshareGuest {
                handle: 11,
                gfn: 22,
            },
            2,
        );
    }

    #[test]
    fn host_teardown_vm() {
        round_trip(HostTeardownVm { handle: 11 }, 1);
    }

    #[test]
    fn host_reclaim_page() {
        round_trip(
            HostReclaimPage {
                handle: 11,
                pfn: 22,
            },
            2,
        );
    }

    #[test]
    fn host_page_owner() {
        round_trip(HostPageOwner { pfn: 11 }, 1);
    }

    #[test]
    fn host_verify_image() {
        let a = HostVerifyImage {
            handle: 11,
            gfn: 22,
            len: 33,
            sig_pfn: 44,
        };
        round_trip(a, 4);
    }

    #[test]
    fn host_declare_mmio() {
        let a = HostDeclareMmio {
            handle: 11,
            gfn: 22,
            pages: 33,
        };
        round_trip(a, 3);
    }

    #[test]
    fn host_vcpu_run() {
        let a = HostVcpuRun {
            handle: 11,
            vcpu: 22,
            run_pfn: 33,
        };
        round_trip(a, 3);
    }

    #[test]
    fn host_vcpu_get_reg() {
        let a = HostVcpuGetReg {
            handle: 11,
            vcpu: 22,
            reg: 33,
        };
        round_trip(a, 3);
    }

    #[test]
    fn host_vcpu_set_reg() {
        let a = HostVcpuSetReg {
            handle: 11,
            vcpu: 22,
            reg: 33,
            value: 44,
        };
        round_trip(a, 4);
    }

    #[test]
    fn host_self_check() {
        round_trip(HostSelfCheck {}, 0);
    }

    #[test]
    fn host_guest_id_reg() {
        round_trip(HostGuestIdReg { reg: 11 }, 1);
    }

    #[test]
    fn host_protect_guest() {
        let a = HostProtectGuest {
            handle: 11,
            gfn: 22,
            pages: 33,
        };
        round_trip(a, 3);
    }

    #[test]
    fn host_unprotect_guest() {
        round_trip(
            HostUnprotectGuest {
                handle: 11,
                gfn: 22,
            },
            2,
        );
    }

    #[test]
    fn every_call_decodes_as_itself() {
        for id in HypercallId::ALL {
            assert_eq!(Hypercall::decode(id, &REGS).id(), id);
        }
    }
}
