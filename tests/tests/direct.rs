//! The baseline: the same Debian kernel and initramfs booted directly at EL2,
//! without KCore (as the benchmarks do). KServ's `nokcore` test must see no
//! KCore, the kernel must bring up KVM at EL2, and no `kcore:` line may
//! appear.

use kcore_qemu::Machine;
use kcore_qemu::kserv::KCORE_PREFIX;
use kcore_systests::{TestResult, batch, direct_boot};

#[test]
fn debian_kernel_at_el2_without_kcore() -> TestResult {
    let name = "direct-nokcore";
    let (_, run) = batch(name, Machine::virt_gicv3(), direct_boot()?, &["nokcore"])?;
    let lines = run.session.lines();
    if let Some(line) = lines.iter().find(|l| l.starts_with(KCORE_PREFIX)) {
        return Err(run
            .session
            .failure(format!("{name}: KCore spoke in a direct boot: {line:?}"))
            .into());
    }
    if !lines
        .iter()
        .any(|l| l.contains("kvm [") && l.contains("initialized successfully"))
    {
        return Err(run
            .session
            .failure(format!(
                "{name}: KVM did not initialise at EL2 (no `kvm [..]: .. initialized successfully`)"
            ))
            .into());
    }
    Ok(())
}
