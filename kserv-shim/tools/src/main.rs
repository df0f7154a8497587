//! `kserv-tools`: the small static binary KServ's init and tests run.
//!
//! Built for `aarch64-unknown-linux-musl` (static, linked with `rust-lld`) and
//! installed as `/bin/kserv-tools` in KServ's initramfs. Subcommands:
//!
//! - `cntvct`: prints `cntvct=<CNTVCT_EL0> cntfrq=<CNTFRQ_EL0>` (decimal). Linux
//!   lets EL0 read both (`CNTKCTL_EL1.EL0VCTEN`). Under QEMU's
//!   `-icount shift=0` the virtual count is instruction time since reset, which
//!   is what the boot benchmark compares.
//!
//! - `kvmapi [GUEST_IMAGE [SIGNATURE]]`: exercises `/dev/kvm` ([`kvmapi`]);
//!   `kvmapi --guest GUEST_IMAGE [SIGNATURE]`, `kvmapi --cycles N GUEST_IMAGE
//!   SIGNATURE` and `kvmapi --sigbus GUEST_IMAGE SIGNATURE` only run the test
//!   guest: once, `N` times, or with reads of its donated memory.
//!
//! - `attack ROW ARGS..`: one userspace row of the attack suite
//!   ([`kvmapi::attack`]).
//!
//! - `kvmbench GUEST_IMAGE`: the test guest's microbenchmarks through
//!   `/dev/kvm`, one `KSERV-BENCH` line each ([`kvmbench`]).
//!
//! Deliberately tiny: no argument-parsing crate.

use std::process::ExitCode;

mod kvm;
mod kvmapi;
mod kvmbench;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("cntvct") if args.len() == 1 => cntvct(),
        Some("kvmapi") if args.len() <= 5 => kvmapi::main(&args[1..]),
        Some("attack") => kvmapi::attack::main(&args[1..]),
        Some("kvmbench") => kvmbench::main(&args[1..]),
        _ => {
            eprintln!(
                "usage: kserv-tools cntvct | kvmapi [GUEST_IMAGE [SIGNATURE]]\n\
                 \x20      kserv-tools kvmapi --guest GUEST_IMAGE [SIGNATURE]\n\
                 \x20      kserv-tools kvmapi --cycles N GUEST_IMAGE SIGNATURE\n\
                 \x20      kserv-tools kvmapi --sigbus GUEST_IMAGE SIGNATURE\n\
                 \x20      kserv-tools kvmapi --gicv2-cpu\n\
                 \x20      kserv-tools attack ROW ARGS.. (the attack suite's rows)\n\
                 \x20      kserv-tools kvmbench GUEST_IMAGE"
            );
            ExitCode::from(2)
        }
    }
}

fn cntvct() -> ExitCode {
    match counter::read() {
        Some((count, freq)) => {
            println!("cntvct={count} cntfrq={freq}");
            ExitCode::SUCCESS
        }
        None => {
            eprintln!("kserv-tools: cntvct: the generic timer is readable only on aarch64");
            ExitCode::FAILURE
        }
    }
}

/// The Arm generic timer's virtual count and frequency.
pub mod counter {
    /// `(CNTVCT_EL0, CNTFRQ_EL0)`.
    #[cfg(target_arch = "aarch64")]
    pub fn read() -> Option<(u64, u64)> {
        let count: u64;
        let freq: u64;
        // SAFETY: reading CNTVCT_EL0 and CNTFRQ_EL0 has no side effects, and
        // Linux enables both for EL0 (an access it did not enable would trap
        // and end this process with SIGILL, not corrupt anything). The ISB
        // keeps the counter read from being taken early.
        unsafe {
            core::arch::asm!(
                "isb",
                "mrs {count}, cntvct_el0",
                "mrs {freq}, cntfrq_el0",
                count = out(reg) count,
                freq = out(reg) freq,
                options(nomem, nostack, preserves_flags),
            );
        }
        Some((count, freq))
    }

    /// `None`: there is no generic timer to read on this architecture.
    #[cfg(not(target_arch = "aarch64"))]
    pub fn read() -> Option<(u64, u64)> {
        None
    }
}
