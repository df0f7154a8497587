//! KServ's calls on a protected VM's ITS (`host_set_gic_frames`,
//! `host_read_gic_table`): placing the frames whose registers KCore records
//! ([`crate::gic_tables`]) and reading the guest's memory inside the windows
//! its guest opened there, from the VM's own pages, under KCore's lock.

use crate::addr::{Gfn, PAGE_SHIFT, Pa, Pfn};
use crate::gic_tables::PlaceError;
use crate::hw::Hardware;
use crate::mem_protect::MemCore;
use crate::ownership::PageState;
use crate::vm::{VmKind, VmState};
use kcore_abi::Error;

/// Most bytes one `host_read_gic_table` returns (in `x1..x3`).
pub const MAX_READ: u64 = kcore_abi::gic_frame::MAX_READ;

impl<S: AsRef<[u64]> + AsMut<[u64]>, const BANKS: usize, const VMS: usize> MemCore<S, BANKS, VMS> {
    /// `host_set_gic_frames`: places protected VM `handle`'s ITS frame
    /// (`kind` [`crate::gic_tables::frame_kind::ITS`], one frame) or a region of `frames`
    /// redistributors ([`crate::gic_tables::frame_kind::REDIST`], in frame order) at `gfn`,
    /// before any vCPU ran. Each frame's register page must lie in the VM's
    /// MMIO ranges. `NotSupported` on a GICv2 host.
    pub fn host_set_gic_frames(
        &mut self,
        handle: u64,
        kind: u64,
        gfn: u64,
        frames: u64,
    ) -> Result<(), Error> {
        if self.gicv.is_some() {
            return Err(Error::NotSupported);
        }
        let (id, vm) = self.live_vm(handle)?;
        if vm.kind != VmKind::Protected {
            return Err(Error::InvalidParameter);
        }
        if vm.ran || !matches!(vm.state, VmState::Created | VmState::Verified) {
            return Err(Error::Denied);
        }
        let (first, end) = vm.gic.check_place(kind, gfn, frames).map_err(|e| match e {
            PlaceError::Invalid => Error::InvalidParameter,
            PlaceError::Again => Error::Denied,
        })?;
        Self::guest_gfn(vm, first)?;
        Self::guest_gfn(vm, end - 1)?;
        let mut placed = vm.gic;
        placed.place(kind, gfn, frames);
        if !placed.register_pages().all(|g| vm.mmio.contains(Gfn(g))) {
            return Err(Error::Denied);
        }
        match self.vms.get_mut(id) {
            Some(vm) => vm.gic = placed,
            None => self.broke(),
        }
        Ok(())
    }

    /// `host_read_gic_table`: `len` (1..=[`MAX_READ`]) bytes of protected
    /// VM `handle`'s memory at `ipa`, inside one page and one window its
    /// guest opened ([`crate::gic_tables::GicTables::allows`]), from the VM's own page there;
    /// little-endian in three words. `Denied` outside the windows,
    /// `NotFound` where the VM has no page of its own.
    pub fn host_read_gic_table(
        &self,
        handle: u64,
        ipa: u64,
        len: u64,
        hw: &impl Hardware,
    ) -> Result<[u64; 3], Error> {
        let (id, vm) = self.live_vm(handle)?;
        if len == 0 || len > MAX_READ || (ipa & 0xFFF) + len > 0x1000 {
            return Err(Error::InvalidParameter);
        }
        if vm.kind != VmKind::Protected
            || !matches!(vm.state, VmState::Created | VmState::Verified)
            || !vm.gic.allows(ipa, len)
        {
            return Err(Error::Denied);
        }
        let gfn = Self::guest_gfn(vm, ipa >> PAGE_SHIFT)?;
        let leaf = self.leaf_at(id, gfn, hw)?.ok_or(Error::NotFound)?;
        let page = Pa(leaf.pa.raw() & !0xFFF);
        let own = match self.owners.get(Pfn::of(page)) {
            Some(PageState::Guest { vm: v, gfn: g })
            | Some(PageState::GuestSharedWithHost { vm: v, gfn: g }) => v == id && g == gfn,
            _ => false,
        };
        if !own {
            return Err(Error::NotFound);
        }
        let mut buf = [0u8; MAX_READ as usize];
        hw.read(Pa(page.raw() + (ipa & 0xFFF)), &mut buf[..len as usize]);
        let mut out = [0u64; 3];
        for (w, chunk) in out.iter_mut().zip(buf.chunks(8)) {
            let mut b = [0u8; 8];
            b.copy_from_slice(chunk);
            *w = u64::from_le_bytes(b);
        }
        Ok(out)
    }
}
