//! `kcore-vmm`: a small VMM built on the rust-vmm crates that boots arm64
//! Linux guests through the KVM API — stock KVM (Debian's kernel at EL2) or
//! KServ's `/dev/kvm` on top of KCore. `docs/vmm.md` describes the machine it
//! builds, its options and the KVM calls it makes.
//!
//! Everything but the KVM calls is host-tested: the command line
//! ([`args`]), the memory map and boot placement ([`layout`], [`image`]),
//! the device tree ([`fdt`]), the devices ([`pl011`], [`virtio`]) and their
//! bus ([`bus`], [`irq`]), the exit decisions ([`exit`]), the console
//! input ([`terminal`]) and its output's timestamps ([`timestamp`]). `vm` drives KVM and exists only on aarch64.

pub mod args;
pub mod bus;
pub mod exit;
pub mod fdt;
pub mod image;
pub mod irq;
pub mod kvm_abi;
pub mod layout;
pub mod pl011;
pub mod terminal;
pub mod timestamp;
pub mod virtio;
#[cfg(target_arch = "aarch64")]
pub mod vm;

use layout::{Gpa, Spi};

/// The virtio-mmio windows and interrupts the options need, in order: the
/// console (with `--console virtio`), then the disk (with `--block`).
pub fn virtio_slots(opts: &args::Options) -> Vec<(Gpa, Spi)> {
    let n = u32::from(opts.console == fdt::Console::Virtio) + u32::from(opts.block.is_some());
    (0..n)
        .map(|i| (layout::virtio_base(i), layout::virtio_spi(i)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virtio_slots_in_order() {
        let opts = |a: &[&str]| match args::parse(a.iter().copied()) {
            Ok(args::Command::Run(o)) => o,
            other => panic!("{other:?}"),
        };
        assert!(virtio_slots(&opts(&["--kernel", "k"])).is_empty());
        assert_eq!(
            virtio_slots(&opts(&["--kernel", "k", "--block", "d"])),
            vec![(Gpa(0x0a00_0000), Spi(16))]
        );
        assert_eq!(
            virtio_slots(&opts(&[
                "--kernel",
                "k",
                "--console",
                "virtio",
                "--block",
                "d"
            ])),
            vec![(Gpa(0x0a00_0000), Spi(16)), (Gpa(0x0a00_0200), Spi(17))]
        );
    }
}
