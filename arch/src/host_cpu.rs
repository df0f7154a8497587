//! Host doubles of what KCore asks of the CPU beyond memory, for tests and
//! model checks: firmware calls (`kcore::hw::Firmware`: the double records
//! each `SMC` and answers from a script) and running a guest
//! (`kcore::vcpu::GuestCpu`: the double plays back a script of exits).
//! Their memory counterparts are in [`crate::host_memory`].

extern crate std;

use kcore::hw::Firmware;
use std::vec::Vec;

/// Firmware that records calls and returns `answer`.
#[derive(Debug, Default)]
pub struct FakeFirmware {
    /// Value returned in `x0` for every call.
    pub answer: u64,
    /// Calls received, in order.
    pub calls: Vec<(u32, [u64; 3])>,
}

impl Firmware for FakeFirmware {
    fn smc(&mut self, fid: u32, args: [u64; 3]) -> u64 {
        self.calls.push((fid, args));
        self.answer
    }
    fn smc_regs(&mut self, fid: u32, args: [u64; 3]) -> [u64; 4] {
        [self.smc(fid, args), 0, 0, 0]
    }
}

/// A guest CPU that plays back a script of exits: each run records what
/// KCore entered with, lets the test change the guest's registers as the
/// guest would, and returns the next exit; an exhausted script exits with a
/// physical interrupt, so every run ends.
pub struct ScriptedGuest {
    /// Exits still to come, with what the guest does before each.
    pub script: std::collections::VecDeque<(kcore::vcpu::GuestExit, GuestAction)>,
    /// List registers of the simulated GIC.
    pub lrs: usize,
    /// The physical counter.
    pub now: u64,
    /// Every entry: the context and list registers KCore entered with.
    pub entries: Vec<(kcore::vcpu::VcpuContext, kcore::vgic::LrSet)>,
}

/// What the scripted guest does between entry and exit.
pub type GuestAction =
    std::boxed::Box<dyn FnMut(&mut kcore::vcpu::VcpuContext, &mut kcore::vgic::LrSet)>;

impl ScriptedGuest {
    /// A guest with `lrs` list registers and no script yet.
    pub fn new(lrs: usize) -> Self {
        ScriptedGuest {
            script: std::collections::VecDeque::new(),
            lrs,
            now: 0,
            entries: Vec::new(),
        }
    }
    /// Appends an exit the guest takes without doing anything first.
    pub fn then(&mut self, exit: kcore::vcpu::GuestExit) -> &mut Self {
        self.script
            .push_back((exit, std::boxed::Box::new(|_, _| {})));
        self
    }
    /// Appends an exit taken after `action`.
    pub fn then_do(
        &mut self,
        exit: kcore::vcpu::GuestExit,
        action: impl FnMut(&mut kcore::vcpu::VcpuContext, &mut kcore::vgic::LrSet) + 'static,
    ) -> &mut Self {
        self.script.push_back((exit, std::boxed::Box::new(action)));
        self
    }
}

impl kcore::vcpu::GuestCpu for ScriptedGuest {
    fn list_registers(&self) -> usize {
        self.lrs
    }
    fn counter(&self) -> u64 {
        self.now
    }
    fn run(
        &mut self,
        _cfg: &kcore::vcpu::GuestConfig,
        ctx: &mut kcore::vcpu::VcpuContext,
        lrs: &mut kcore::vgic::LrSet,
    ) -> kcore::vcpu::GuestExit {
        self.entries.push((*ctx, *lrs));
        match self.script.pop_front() {
            Some((exit, mut action)) => {
                let fp = (ctx.v, ctx.fpsr, ctx.fpcr);
                action(ctx, lrs);
                // As the hardware reports it: live whenever the guest
                // changed its FP/SIMD registers (and maybe when it did not).
                kcore::vcpu::GuestExit {
                    fp: exit.fp || fp != (ctx.v, ctx.fpsr, ctx.fpcr),
                    ..exit
                }
            }
            None => kcore::vcpu::GuestExit {
                kind: kcore::vcpu::ExitKind::Irq,
                esr: 0,
                far: 0,
                hpfar: 0,
                fp: false,
            },
        }
    }
}
