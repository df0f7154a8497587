//! [`MemCore`]'s vCPU half: creating a VM's vCPUs, KServ's access to their
//! registers and MMIO ranges, and the two halves of `host_vcpu_run` that
//! run under KCore's lock — the load, which takes a vCPU's context out of
//! its page and pins the run page, and the put, which writes the context
//! and the exit back and unpins it — with the guest's own memory-sharing
//! and `CPU_ON` calls in between.
//!
//! It sits above both [`crate::mem_protect`] (the ownership table, the VMs)
//! and [`crate::vcpu`] (what a vCPU is and what its exits mean); neither of
//! those depends on it. As there, a step that finds the state other than
//! its checks promised (the VM gone, its pool empty, the run page no longer
//! pinned) does what it still can and counts a broken invariant
//! ([`MemCore::broken_invariants`]).

use crate::addr::{Gfn, PAGE_SHIFT, Pa, Pfn};
use crate::hw::Hardware;
use crate::mem_protect::MemCore;
use crate::ownership::PageState;
use crate::vcpu::{
    CtxKey, ExitReport, GuestConfig, Loaded, Pending, RunArgs, Step, Timer, TimerIrq, VcpuContext,
    status,
};
use crate::vgic;
use crate::vm::{MAX_VCPUS, Vm, VmId, VmKind, VmState};
use kcore_abi::{Error, psci, reg, run, smccc};

impl<S: AsRef<[u64]> + AsMut<[u64]>, const BANKS: usize, const VMS: usize> MemCore<S, BANKS, VMS> {
    // ---- host_create_vcpu -----------------------------------------------------

    /// `host_create_vcpu`: registers vCPU `idx` of a VM. Its context (the
    /// registers at reset) goes into one page of the VM's table pool, so it
    /// is KCore's and mapped nowhere.
    pub fn host_create_vcpu(
        &mut self,
        handle: u64,
        idx: u64,
        hw: &mut impl Hardware,
    ) -> Result<(), Error> {
        let (id, vm) = self.live_vm(handle)?;
        if matches!(vm.state, VmState::Dying | VmState::Poisoned) {
            return Err(Error::Denied);
        }
        if idx >= vm.max_vcpus as u64 {
            return Err(Error::InvalidParameter);
        }
        if vm.vcpus & (1 << idx) != 0 {
            return Err(Error::Busy);
        }
        if vm.pool.is_empty() {
            return Err(Error::NoMemory);
        }
        let version = self.next_ctx_version();
        // Cannot fail: the VM is live and its pool holds a page.
        match self.vms.get_mut(id).map(|vm| (vm.pool.pop(hw), vm)) {
            Some((Some(page), vm)) => {
                let ctx = VcpuContext::reset(idx as usize);
                hw.write_words(page, &ctx.to_words());
                vm.vcpu_pages[idx as usize] = page.raw();
                vm.ctx_versions[idx as usize] = version;
                vm.vcpus |= 1 << idx;
            }
            _ => self.broke(),
        }
        Ok(())
    }

    // ---- vCPUs ------------------------------------------------------------------

    /// A vCPU of a live VM and its context page.
    fn vcpu_page(&self, handle: u64, idx: u64) -> Result<(VmId, &Vm, Pa), Error> {
        let (id, vm) = self.live_vm(handle)?;
        if idx >= MAX_VCPUS as u64 || vm.vcpus & (1 << idx) == 0 {
            return Err(Error::NotFound);
        }
        Ok((id, vm, Pa(vm.vcpu_pages[idx as usize])))
    }

    /// A context-page version never given out before.
    fn next_ctx_version(&mut self) -> u64 {
        self.ctx_writes += 1;
        self.ctx_writes
    }

    /// Records that KCore wrote vCPU `idx`'s context page: a copy of the
    /// old contents is stale from now on. Returns the new version, or
    /// `None` (nothing recorded) if VM `id` or its vCPU `idx` does not
    /// exist, which every caller had found it to: the caller counts a
    /// broken invariant.
    fn ctx_written(&mut self, id: VmId, idx: usize) -> Option<u64> {
        let version = self.next_ctx_version();
        let v = self
            .vms
            .get_mut(id)
            .and_then(|vm| vm.ctx_versions.get_mut(idx))?;
        *v = version;
        Some(version)
    }

    fn read_ctx(hw: &impl Hardware, page: Pa) -> VcpuContext {
        let mut c = VcpuContext::reset(0);
        Self::read_ctx_into(hw, page, &mut c);
        c
    }

    /// [`Self::read_ctx`] into `ctx` (the run path: no context moves).
    fn read_ctx_into(hw: &impl Hardware, page: Pa, ctx: &mut VcpuContext) {
        ctx.read_from(hw, page);
    }

    /// `host_declare_mmio`: `pages` pages from `gfn` are emulated by KServ.
    /// For a protected VM only once its image is verified, only inside the
    /// manifest its signature covers, and only before its first run.
    pub fn host_declare_mmio(&mut self, handle: u64, gfn: u64, pages: u64) -> Result<(), Error> {
        let (id, vm) = self.live_vm(handle)?;
        if matches!(vm.state, VmState::Dying | VmState::Poisoned) {
            return Err(Error::Denied);
        }
        if vm.kind == VmKind::Protected && vm.ran {
            return Err(Error::Denied);
        }
        let last = gfn
            .checked_add(pages)
            .filter(|_| pages > 0)
            .ok_or(Error::InvalidParameter)?;
        Self::guest_gfn(vm, gfn)?;
        Self::guest_gfn(vm, last - 1)?;
        // A protected VM's accesses leave it as exits with their data only
        // where its image's signer allowed: inside the verified manifest.
        // KServ may narrow that, never widen it.
        if vm.kind == VmKind::Protected
            && (vm.state != VmState::Verified || !vm.manifest.covers(gfn, pages))
        {
            return Err(Error::Denied);
        }
        let mut mmio = vm.mmio;
        if !mmio.add(Gfn(gfn), pages) {
            return Err(Error::NoMemory);
        }
        match self.vms.get_mut(id) {
            Some(vm) => vm.mmio = mmio,
            // Found live above.
            None => self.broke(),
        }
        Ok(())
    }

    /// `host_vcpu_get_reg`: a non-protected vCPU's register.
    pub fn host_vcpu_get_reg(
        &self,
        handle: u64,
        idx: u64,
        id: u64,
        hw: &impl Hardware,
    ) -> Result<u64, Error> {
        let (_, vm, page) = self.vcpu_page(handle, idx)?;
        if vm.kind == VmKind::Protected {
            return Err(Error::Denied);
        }
        if vm.loaded & (1 << idx) != 0 {
            return Err(Error::Busy);
        }
        let mut ctx = Self::read_ctx(hw, page);
        // A start the guest's CPU_ON asked for comes before any access of
        // KServ's (as KVM resets a vCPU before a ONE_REG access).
        ctx.start_from_boot(idx as usize);
        ctx.get_reg(id).ok_or(Error::NotFound)
    }

    /// `host_vcpu_set_reg`: any register of a non-protected vCPU; only the
    /// PC and `x0` of a protected VM's vCPU 0 before it first ran. A
    /// protected VM's other vCPUs take nothing from KServ: they start only
    /// where the guest's own PSCI `CPU_ON` says.
    pub fn host_vcpu_set_reg(
        &mut self,
        handle: u64,
        idx: u64,
        id: u64,
        value: u64,
        hw: &mut impl Hardware,
    ) -> Result<(), Error> {
        let (vm_id, vm, page) = self.vcpu_page(handle, idx)?;
        if vm.loaded & (1 << idx) != 0 {
            return Err(Error::Busy);
        }
        let mut ctx = Self::read_ctx(hw, page);
        if vm.kind == VmKind::Protected
            && (idx != 0 || ctx.status & status::STARTED != 0 || !matches!(id, reg::PC | reg::X0))
        {
            return Err(Error::Denied);
        }
        if vm.kind == VmKind::NonProtected {
            ctx.start_from_boot(idx as usize);
        }
        ctx.set_reg(id, value)?;
        hw.write_words(page, &ctx.to_words());
        if self.ctx_written(vm_id, idx as usize).is_none() {
            self.broke();
        }
        Ok(())
    }

    /// First half of `host_vcpu_run`: checks the request, copies the entry
    /// half of the run page once, takes the vCPU's context out of its page,
    /// finishes the previous exit with KServ's completion, applies a first
    /// run or a guest's CPU_ON, checks KServ's interrupts, and marks the vCPU
    /// running. `lr_count` is the GIC's number of list registers.
    pub fn vcpu_load(
        &mut self,
        a: RunArgs,
        lr_count: usize,
        hw: &mut impl Hardware,
    ) -> Result<Loaded, Error> {
        let mut l = Loaded::empty();
        self.vcpu_load_into(a, lr_count, hw, &mut l)?;
        Ok(l)
    }

    /// [`Self::vcpu_load`] into `out`, which the run path keeps in one place
    /// for the whole run (a context is a kilobyte: moving it costs more than
    /// the rest of an exit). `out` is only meaningful on `Ok`.
    ///
    /// When `out` still holds this vCPU's context as the last
    /// [`Self::vcpu_put`] on this CPU wrote it, and KCore has not written
    /// the page since (`out.ctx_key` names the VM's handle, the vCPU and the
    /// page's current version), the context is not read again: the copy is
    /// the page.
    pub fn vcpu_load_into(
        &mut self,
        a: RunArgs,
        lr_count: usize,
        hw: &mut impl Hardware,
        out: &mut Loaded,
    ) -> Result<(), Error> {
        if lr_count == 0 {
            return Err(Error::NotSupported);
        }
        let (id, vm, page) = self.vcpu_page(a.handle, a.vcpu)?;
        let idx = a.vcpu as usize;
        let runnable = match vm.kind {
            VmKind::Protected => vm.state == VmState::Verified,
            VmKind::NonProtected => matches!(vm.state, VmState::Created | VmState::Verified),
        };
        if !runnable {
            return Err(Error::Denied);
        }
        if vm.loaded & (1 << idx) != 0 {
            return Err(Error::Busy);
        }
        // The run page must be KServ's alone; it is pinned below for the
        // whole run, since the put writes the exit into it after KCore's
        // lock was dropped while the guest ran.
        let (run_pfn, run_state) = self.ram_page(a.run_pfn)?;
        match run_state {
            PageState::Host => {}
            PageState::HostPinned { pins } if pins < u32::MAX => {}
            PageState::HostPinned { .. } => return Err(Error::Busy),
            _ => return Err(Error::Denied),
        }
        let run_page = run_pfn.pa().ok_or(Error::InvalidParameter)?;
        // The entry half, copied once (up to the last interrupt word KServ
        // supplied): everything below looks at the copy.
        let mut entry = [0u64; run::IRQS];
        hw.read_words(run_page, &mut entry);
        let flags = entry[run::FLAGS];
        let intids =
            run::entry_flags::timer_intid(flags).zip(run::entry_flags::ptimer_intid(flags));
        // Two list register entries with one INTID are UNPREDICTABLE.
        let Some(timer_intids) = intids.filter(|(v, p)| v != p) else {
            return Err(Error::InvalidParameter);
        };
        if flags & !run::entry_flags::ALL != 0 {
            return Err(Error::InvalidParameter);
        }
        let n_irqs = entry[run::IRQ_COUNT];
        if n_irqs > run::MAX_IRQS as u64 {
            return Err(Error::InvalidParameter);
        }
        let n_irqs = n_irqs as usize;
        let irqs = Pa(run_page.raw() + 8 * run::IRQS as u64);
        hw.read_words(irqs, &mut out.irq_words[..n_irqs]);
        vgic::check_irqs_into(
            &out.irq_words[..n_irqs],
            lr_count,
            [timer_intids.0, timer_intids.1],
            match self.gicv {
                Some(_) => vgic::IrqSpace::V2 {
                    vcpus: vm.max_vcpus.min(8) as u8,
                },
                None => vgic::IrqSpace::V3,
            },
            &mut out.lrs,
        )?;
        // With fewer than two entries the underflow interrupt would end
        // the run at once.
        out.lrs.underflow = flags & run::entry_flags::MORE_QUEUED != 0 && n_irqs >= 2;

        let current = CtxKey {
            handle: a.handle,
            idx,
            version: vm.ctx_versions.get(idx).copied().unwrap_or_default(),
        };
        // Taken whatever happens next: a failed load may leave `out.ctx`
        // half changed.
        if out.ctx_key.take() != Some(current) {
            Self::read_ctx_into(hw, page, &mut out.ctx);
            out.v_in_page = true;
        }
        let ctx = &mut out.ctx;
        if ctx.start_from_boot(idx) {
            // A guest's CPU_ON: its FP/SIMD registers are zero, which the
            // page does not have yet.
            out.v_in_page = false;
        } else if ctx.status & status::STARTED == 0 {
            if vm.kind == VmKind::Protected {
                // Only vCPU 0 boots at KServ's word (inside the verified
                // image); the others only through the guest's CPU_ON.
                if idx != 0 {
                    return Err(Error::Denied);
                }
                let (gfn, len) = vm.image.ok_or(Error::Denied)?;
                let start = gfn.0 << PAGE_SHIFT;
                if !(start..start.saturating_add(len)).contains(&ctx.pc) {
                    return Err(Error::Denied);
                }
            }
            ctx.status |= status::STARTED;
        } else if ctx.status & status::OFF != 0 {
            if vm.kind == VmKind::Protected {
                return Err(Error::Denied);
            }
            ctx.status &= !status::OFF;
        } else {
            ctx.complete(entry[run::COMPLETION]);
        }
        // The MMIO exit is over: KServ's `INJECT_DABT` no longer steps back.
        ctx.status &= !status::MMIO_EXIT;
        if !crate::vcpu::pstate_ok(ctx.pstate) {
            // Never reached by a context KCore kept; refuse rather than
            // return to EL2 or AArch32.
            return Err(Error::Denied);
        }
        out.vm = id;
        out.idx = idx;
        out.kind = vm.kind;
        out.cfg = GuestConfig {
            vmid: id.vmid(),
            root: vm.stage2.root(),
            geometry: vm.stage2.geometry(),
        };
        out.ctx_page = page;
        out.run_page = run_page;
        out.n_irqs = n_irqs;
        out.mmio = vm.mmio;
        out.ipa_limit = vm.stage2.geometry().input_limit();
        out.timer = TimerIrq::of(Timer::Virt, flags);
        out.ptimer = TimerIrq::of(Timer::Phys, flags);
        out.report = ExitReport::default();
        // The view is fixed at boot: copied once per CPU, not per run.
        if out.ids_version != self.guest_ids_version {
            out.ids = self.guest_ids;
            out.ids_version = self.guest_ids_version;
        }
        // Commit: nothing below can fail.
        let pins = match run_state {
            PageState::HostPinned { pins } => pins + 1,
            _ => 1,
        };
        self.set_owner(run_pfn, PageState::HostPinned { pins });
        match self.vms.get_mut(id) {
            Some(vm) => {
                vm.loaded |= 1 << idx;
                vm.run_pages[idx] = run_pfn.0;
                vm.ran = true;
            }
            // Found live above.
            None => self.broke(),
        }
        Ok(())
    }

    /// A guest's `MEM_SHARE` or `MEM_UNSHARE` of `gfn` while `l` runs (pKVM's
    /// guest ABI): the checked transition, its result in the guest's `x0`
    /// (0, or SMCCC `INVALID_PARAMETER` when the page is not the guest's in
    /// the right state). Only the guest can make these calls: KServ cannot
    /// share a protected VM's page.
    pub fn vcpu_guest_mem(
        &mut self,
        l: &mut Loaded,
        share: bool,
        gfn: u64,
        hw: &mut impl Hardware,
    ) {
        let r = if share {
            self.check_guest_share_host(l.vm, gfn, hw)
                .map(|t| self.commit_guest_share_host(t))
        } else {
            self.check_guest_unshare_host(l.vm, gfn, hw)
                .map(|t| self.commit_guest_unshare_host(t, hw))
        };
        l.ctx.x[0] = match r {
            Ok(()) => 0,
            Err(_) => smccc::RET_INVALID_PARAMETER,
        };
    }

    /// A guest's PSCI CPU_ON of vCPU `target`, while `l` runs: records the
    /// entry point and context id in the target (if it exists and is off or
    /// never ran), then lets KServ schedule it. Without a target that can be
    /// started the guest gets PSCI's answer at once and keeps running.
    pub fn vcpu_cpu_on(
        &mut self,
        l: &mut Loaded,
        target: usize,
        entry: u64,
        context: u64,
        hw: &mut impl Hardware,
    ) -> Step {
        let Some(vm) = self.vms.get(l.vm) else {
            // The load found the VM live, and a VM keeps its slot while a
            // vCPU of it runs.
            self.broke();
            return Step::Exit;
        };
        if target >= MAX_VCPUS as usize || vm.vcpus & (1 << target) == 0 {
            l.ctx.pending = Pending::None;
            l.ctx.x[0] = psci::INVALID_PARAMETERS;
            return Step::Resume;
        }
        let page = Pa(vm.vcpu_pages[target]);
        let vm_id = l.vm;
        let mut t = Self::read_ctx(hw, page);
        let running = t.status & status::STARTED != 0 && t.status & status::OFF == 0;
        if vm.loaded & (1 << target) != 0 || running {
            l.ctx.pending = Pending::None;
            l.ctx.x[0] = psci::ALREADY_ON;
            return Step::Resume;
        }
        t.status |= status::BOOT;
        t.boot_pc = entry;
        t.boot_x0 = context;
        hw.write_words(page, &t.to_words());
        if self.ctx_written(vm_id, target).is_none() {
            self.broke();
        }
        Step::Exit
    }

    /// The pins of `l`'s run page, if it is the page `l`'s load pinned and
    /// recorded for the vCPU, and still pinned: the only KServ page KCore
    /// may write for this run, since no other CPU can give it away.
    pub(crate) fn run_page_pins(&self, l: &Loaded) -> Option<u32> {
        let run_pfn = Pfn::of(l.run_page);
        let recorded = self
            .vms
            .get(l.vm)
            .filter(|vm| vm.loaded & (1 << l.idx) != 0)
            .and_then(|vm| vm.run_pages.get(l.idx).copied());
        match (recorded, self.owners.get(run_pfn)) {
            (Some(p), Some(PageState::HostPinned { pins })) if p == run_pfn.0 => Some(pins),
            _ => None,
        }
    }

    /// Last half of `host_vcpu_run`: the context back into its page, the
    /// exit half of the run page written (the report, the guest's timer,
    /// the state of KServ's interrupts), the vCPU no longer running. `l`
    /// keeps the context with the key that lets the next
    /// [`Self::vcpu_load_into`] on this CPU use it without reading the page.
    pub fn vcpu_put(&mut self, l: &mut Loaded, hw: &mut impl Hardware) {
        l.ctx.write_to(hw, l.ctx_page, !l.v_in_page);
        l.v_in_page = true;
        // A VM gone is counted below (its run page is not recorded).
        let version = self.ctx_written(l.vm, l.idx);
        l.ctx_key = self.vms.get(l.vm).zip(version).map(|(vm, version)| CtxKey {
            handle: vm.handle.0,
            idx: l.idx,
            version,
        });
        let r = &l.report;
        let mut out = [0u64; run::WORDS - run::EXIT];
        let mut put = |i: usize, v: u64| {
            if let Some(w) = out.get_mut(i - run::EXIT) {
                *w = v;
            }
        };
        put(run::EXIT_REASON, r.reason);
        put(run::EXIT_FLAGS, r.flags);
        put(run::EXIT_ADDR, r.addr);
        put(run::EXIT_DATA, r.data);
        put(run::EXIT_WIDTH, r.width);
        for (i, a) in r.args.iter().enumerate() {
            put(run::EXIT_ARGS + i, *a);
        }
        put(run::EXIT_TIMER_CTL, l.ctx.cntv_ctl);
        put(run::EXIT_TIMER_DEADLINE, l.ctx.timer_deadline());
        put(run::EXIT_TIMER_DEADLINES, l.ctx.deadline_of(Timer::Virt));
        put(
            run::EXIT_TIMER_DEADLINES + 1,
            l.ctx.deadline_of(Timer::Phys),
        );
        put(run::EXIT_IRQ_COUNT, l.n_irqs as u64);
        for i in 0..l.n_irqs {
            let lr = l.lrs.as_slice().get(i).copied().unwrap_or_default();
            put(run::EXIT_IRQS + i, vgic::report(l.irq_words[i], &lr));
        }
        // Up to the last interrupt word: KServ reads no further. Only into
        // the page the load pinned, and only while it is still pinned: no
        // other CPU can have given it away meanwhile.
        let used = (run::EXIT_IRQS - run::EXIT + l.n_irqs).min(out.len());
        let run_pfn = Pfn::of(l.run_page);
        match self.run_page_pins(l) {
            Some(pins) => {
                hw.write_words(Pa(l.run_page.raw() + 8 * run::EXIT as u64), &out[..used]);
                let now = match pins {
                    1 => PageState::Host,
                    n => PageState::HostPinned { pins: n - 1 },
                };
                self.set_owner(run_pfn, now);
            }
            // The load pinned this page and recorded it: anything else is
            // a bug in KCore. The exit is not written anywhere.
            _ => self.broke(),
        }
        if let Some(vm) = self.vms.get_mut(l.vm) {
            // A protected guest's write to its ITS's or redistributors'
            // registers, as reported (`crate::gic_tables`): recorded before
            // KServ, which emulates it, learns of it.
            let r = &l.report;
            if l.kind == VmKind::Protected
                && r.reason == run::exit::MMIO
                && r.flags & run::exit_flags::WRITE != 0
            {
                vm.gic.record_write(r.addr, r.width, r.data);
            }
            vm.loaded &= !(1 << l.idx);
        }
    }
}
