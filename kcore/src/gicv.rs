//! A GICv2 host's virtual CPU interface (`GICV`) in a VM's stage 2
//! (`host_set_vgic_cpu`).
//!
//! On a GICv2 the guest talks to its CPU interface through MMIO, at the
//! `GICC` address its VMM chose. KCore maps the hardware's `GICV` frame (8
//! KiB, two pages) there as device memory, as KVM's `vgic_v2_map_resources`
//! does: the guest's acknowledges, priority drops and deactivations then
//! go straight to the list registers KCore loaded on the CPU it runs on
//! (`kcore-arch`'s world switch), without an exit. `GICV` shows only the
//! virtual interface of the physical CPU that reads it, and KCore loads it
//! only with the running vCPU's state, so the mapping is safe for protected
//! VMs too.
//!
//! KServ names the guest address; KCore decides what it maps: only ever
//! `GICV`'s two pages, which are KCore's (never in KServ's stage 2, so
//! never donated or shared), and only into pages of the VM's IPA space
//! that nothing maps yet and that are not declared MMIO. The address is set
//! once, before any vCPU of the VM ran, and never moves: a later donation
//! or share at those gfns finds them mapped (`Busy`); an unshare or a
//! guest's share finds no page of RAM there (refused). Teardown empties
//! the VM's root and so drops the mapping with everything else; the audit
//! ([`crate::audit`]) accepts exactly these two leaves.

use crate::addr::{Gfn, PAGE_SHIFT, PAGE_SIZE, Pa};
use crate::hw::Hardware;
use crate::mem_protect::MemCore;
use crate::pgtable::{Attrs, MemKind};
use crate::vm::{Reserved, Vm, VmState};
use kcore_abi::Error;

/// Pages of the `GICV` frame a VM maps (`KVM_VGIC_V2_CPU_SIZE`, 8 KiB).
pub const GICV_PAGES: u64 = 2;

/// Whether the stage-2 leaf at `gfn`, to `pa` with attributes `attrs`, is
/// the `GICV` mapping KCore made for `vm` on a host whose `GICV` is at
/// `gicv`.
pub fn is_gicv_leaf(vm: &Vm, gicv: Option<Pa>, gfn: u64, pa: Pa, attrs: Attrs) -> bool {
    let (Some(first), Some(frame)) = (vm.gicv, gicv) else {
        return false;
    };
    let Some(i) = gfn.checked_sub(first.0).filter(|&i| i < GICV_PAGES) else {
        return false;
    };
    attrs.kind == MemKind::Device && pa.raw() == frame.raw() + i * PAGE_SIZE
}

impl<S: AsRef<[u64]> + AsMut<[u64]>, const BANKS: usize, const VMS: usize> MemCore<S, BANKS, VMS> {
    /// Records where this machine's `GICV` frame is (GICv2 hosts; boot
    /// only). It must be KCore's: never part of KServ's stage 2.
    pub fn set_gicv(&mut self, frame: Pa) {
        if frame.is_aligned(PAGE_SIZE) {
            self.gicv = Some(frame);
        }
    }

    /// `host_set_vgic_cpu`: maps `GICV` at `gfn`, `gfn + 1` in VM `handle`.
    pub fn host_set_vgic_cpu(
        &mut self,
        handle: u64,
        gfn: u64,
        hw: &mut impl Hardware,
    ) -> Result<(), Error> {
        let frame = self.gicv.ok_or(Error::NotSupported)?;
        let (id, vm) = self.live_vm(handle)?;
        if vm.state != VmState::Created && vm.state != VmState::Verified {
            return Err(Error::Denied);
        }
        // Once, before any vCPU ran: the guest never sees its CPU
        // interface move.
        if vm.ran || vm.gicv.is_some() {
            return Err(Error::Denied);
        }
        let last = gfn
            .checked_add(GICV_PAGES - 1)
            .ok_or(Error::InvalidParameter)?;
        Self::guest_gfn(vm, gfn)?;
        Self::guest_gfn(vm, last)?;
        let mut needed = 0;
        for g in gfn..=last {
            if vm.mmio.contains(Gfn(g)) {
                return Err(Error::Denied);
            }
            if self.leaf_at(id, Gfn(g), hw)?.is_some() {
                return Err(Error::Busy);
            }
            let is_table = |t| self.owners.holds_table(t, Some(id));
            needed += vm
                .stage2
                .tables_needed(hw, &is_table, g << PAGE_SHIFT)
                .map_err(|_| {
                    self.broke();
                    Error::Denied
                })?;
        }
        if (vm.pool.len() as usize) < needed {
            return Err(Error::NoMemory);
        }
        // Commit: cannot fail (checked above, under the same lock).
        let owners = &self.owners;
        let is_table = |p| owners.holds_table(p, Some(id));
        let Some(vm) = self.vms.get_mut(id) else {
            self.broke();
            return Err(Error::NotFound);
        };
        vm.gicv = Some(Gfn(gfn));
        let mut ok = true;
        for i in 0..GICV_PAGES {
            let ipa = (gfn + i) << PAGE_SHIFT;
            let pa = Pa(frame.raw() + i * PAGE_SIZE);
            let n = vm.stage2.tables_needed(hw, &is_table, ipa).unwrap_or(3);
            ok &= match Reserved::take(&mut vm.pool, hw, n) {
                Some(mut r) => {
                    let m = vm
                        .stage2
                        .map(hw, &mut r, &is_table, ipa, pa, PAGE_SIZE, Attrs::DEVICE);
                    r.give_back(&mut vm.pool, hw);
                    m.is_ok()
                }
                None => false,
            };
        }
        if !ok {
            self.broke();
        }
        Ok(())
    }
}
