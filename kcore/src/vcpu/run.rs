//! The run loop of `host_vcpu_run` ([`run_vcpu_in`]): load the vCPU, enter
//! it on the CPU ([`GuestCpu`], implemented by `kcore-arch`) and decide
//! each exit, until one KServ must see, then put it back. KCore's state is
//! reached through [`VcpuHost`], whose calls each take the state lock for
//! their own duration only; [`RunArgs`] is what KServ asked to run.

use super::context::VcpuContext;
use super::exit::{GuestExit, step, write_fault};
use super::loaded::{GuestConfig, Loaded, Step, WriteFault};
use super::timer::{prepare_timer, save_timer};
use crate::vgic::LrSet;
use kcore_abi::Error;

/// The CPU side of running a guest, implemented by `kcore-arch`.
pub trait GuestCpu {
    /// The GIC's list registers (GICv3: `ICH_VTR_EL2.ListRegs + 1`); 0 when
    /// this platform cannot run guests.
    fn list_registers(&self) -> usize;
    /// The physical counter, `CNTPCT_EL0`.
    fn counter(&self) -> u64;
    /// Switches this CPU to the guest described by `cfg` and `ctx` with the
    /// list registers `lrs`, runs it until its next exception to EL2, and
    /// switches back to KServ's state. `ctx` and the states in `lrs` are
    /// updated; hardware-mapped entries have their physical interrupt made
    /// active for the run and inactive again afterwards.
    fn run(&mut self, cfg: &GuestConfig, ctx: &mut VcpuContext, lrs: &mut LrSet) -> GuestExit;
}

/// Where `host_vcpu_run` found a vCPU and what it asks of the run: the
/// call's arguments as KServ passed them (`handle`, `vcpu`, `run_pfn`),
/// checked when the vCPU is loaded.
pub type RunArgs = kcore_abi::call::HostVcpuRun;

/// KCore's state as the run loop reaches it: each call takes the state lock
/// for its own duration only, so the guest runs with no lock held.
pub trait VcpuHost {
    /// [`crate::mem_protect::MemCore::vcpu_guest_mem`].
    fn guest_mem(&mut self, l: &mut Loaded, share: bool, gfn: u64);
    /// [`crate::mem_protect::MemCore::vcpu_load_into`].
    fn load(&mut self, a: RunArgs, lr_count: usize, out: &mut Loaded) -> Result<(), Error>;
    /// [`crate::mem_protect::MemCore::vcpu_cpu_on`].
    fn cpu_on(&mut self, l: &mut Loaded, target: usize, entry: u64, context: u64) -> Step;
    /// [`crate::mem_protect::MemCore::vcpu_put`].
    fn put(&mut self, l: &mut Loaded);
    /// [`crate::mem_protect::MemCore::vcpu_write_fault`].
    fn write_fault(&mut self, l: &Loaded, ipa: u64) -> WriteFault;
}

/// `host_vcpu_run`: loads the vCPU, runs it on `cpu` until an exit KServ
/// must see (exits KCore answers itself re-enter at once), and puts it back.
/// Returns the exit reason.
pub fn run_vcpu(
    host: &mut impl VcpuHost,
    cpu: &mut impl GuestCpu,
    a: RunArgs,
) -> Result<u64, Error> {
    run_vcpu_in(host, cpu, a, &mut Loaded::empty())
}

/// [`run_vcpu`] in `l`, which the caller keeps for this CPU from one run to
/// the next: when the same vCPU runs here again and KCore has not written
/// its context page since, its context is not read back (see
/// [`Loaded::ctx_key`]). Whatever `l` held before, only the context can be
/// reused, and only under that key.
pub fn run_vcpu_in(
    host: &mut impl VcpuHost,
    cpu: &mut impl GuestCpu,
    a: RunArgs,
    l: &mut Loaded,
) -> Result<u64, Error> {
    host.load(a, cpu.list_registers(), l)?;
    loop {
        prepare_timer(l, cpu.counter(), cpu.list_registers());
        let e = cpu.run(&l.cfg, &mut l.ctx, &mut l.lrs);
        if e.fp {
            l.v_in_page = false;
        }
        save_timer(l);
        match step(l, &e) {
            Step::Resume => {}
            Step::Exit => break,
            Step::GuestMem { share, gfn } => host.guest_mem(l, share, gfn),
            Step::WriteFault { ipa } => {
                let what = host.write_fault(l, ipa);
                if write_fault(l, &e, ipa, what) != Step::Resume {
                    break;
                }
            }
            Step::CpuOn {
                target,
                entry,
                context,
            } => {
                if host.cpu_on(l, target, entry, context) != Step::Resume {
                    break;
                }
            }
        }
    }
    host.put(l);
    Ok(l.report.reason)
}
