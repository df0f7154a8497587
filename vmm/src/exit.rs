//! What a vCPU exit means for the VM, and how the VMM process ends.
//!
//! `vm.rs` turns `kvm-ioctls`' `VcpuExit` into an [`Exit`]; [`handle`] does
//! the rest (MMIO to the bus, power events to a [`Stop`]), so every decision
//! is host-tested.

use crate::bus::{Access, MmioBus};
use crate::kvm_abi::{KVM_SYSTEM_EVENT_CRASH, KVM_SYSTEM_EVENT_RESET, KVM_SYSTEM_EVENT_SHUTDOWN};
use crate::layout::Gpa;
use std::fmt;

/// A vCPU exit, as far as the VMM cares.
#[derive(Debug)]
pub enum Exit<'a> {
    /// A load from an address no memory slot covers.
    MmioRead(Gpa, &'a mut [u8]),
    /// A store to such an address.
    MmioWrite(Gpa, &'a [u8]),
    /// `KVM_EXIT_SYSTEM_EVENT` (PSCI `SYSTEM_OFF`, `SYSTEM_RESET`, ...).
    SystemEvent(u32, &'a [u64]),
    /// `KVM_RUN` returned early for a signal (`EINTR`) or `KVM_EXIT_INTR`.
    Interrupted,
    /// Anything else: the exit's name.
    Unexpected(String),
}

/// Why the VM stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stop {
    /// The guest powered off.
    PowerOff,
    /// The guest asked for a reset, which this VMM does not do.
    Reset,
    /// The guest reported a crash.
    Crash,
    /// The user typed `Ctrl-A x`.
    Quit,
    /// A vCPU hit something the VMM cannot handle, or an ioctl failed.
    Error(String),
}

impl Stop {
    /// The process exit status: 0 after a power-off (or a quit), 2 after a
    /// reset request, 3 after a crash, 1 after an error.
    pub fn exit_code(&self) -> i32 {
        match self {
            Stop::PowerOff | Stop::Quit => 0,
            Stop::Reset => 2,
            Stop::Crash => 3,
            Stop::Error(_) => 1,
        }
    }
}

impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stop::PowerOff => f.write_str("the guest powered off"),
            Stop::Reset => f.write_str(
                "the guest asked for a reset (PSCI SYSTEM_RESET); kcore-vmm does not reboot guests",
            ),
            Stop::Crash => f.write_str("the guest reported a crash"),
            Stop::Quit => f.write_str("quit (Ctrl-A x)"),
            Stop::Error(e) => write!(f, "error: {e}"),
        }
    }
}

/// What the vCPU does next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next {
    /// Back into the guest.
    Run,
    /// The VM is done.
    Stop(Stop),
}

/// Counts of a vCPU's exits, shown with `-v`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExitStats {
    /// MMIO exits a device handled.
    pub mmio: u64,
    /// MMIO exits to addresses with no device.
    pub unclaimed: u64,
    /// Early returns for signals.
    pub interrupted: u64,
}

/// Handles one exit of a vCPU. Unclaimed MMIO reads as zero and ignores
/// writes (reported through `unclaimed` so `-v` can show them).
pub fn handle(
    bus: &MmioBus,
    exit: Exit<'_>,
    stats: &mut ExitStats,
    mut unclaimed: impl FnMut(&str, Gpa, usize),
) -> Next {
    match exit {
        Exit::MmioRead(addr, data) => {
            let len = data.len();
            match bus.read(addr, data) {
                Access::Device(_) => stats.mmio += 1,
                Access::Unclaimed => {
                    stats.unclaimed += 1;
                    unclaimed("read", addr, len);
                }
            }
            Next::Run
        }
        Exit::MmioWrite(addr, data) => {
            match bus.write(addr, data) {
                Access::Device(_) => stats.mmio += 1,
                Access::Unclaimed => {
                    stats.unclaimed += 1;
                    unclaimed("write", addr, data.len());
                }
            }
            Next::Run
        }
        Exit::SystemEvent(kind, data) => Next::Stop(match kind {
            KVM_SYSTEM_EVENT_SHUTDOWN => Stop::PowerOff,
            KVM_SYSTEM_EVENT_RESET => Stop::Reset,
            KVM_SYSTEM_EVENT_CRASH => Stop::Crash,
            other => Stop::Error(format!(
                "unexpected KVM_EXIT_SYSTEM_EVENT type {other} (data {data:x?})"
            )),
        }),
        Exit::Interrupted => {
            stats.interrupted += 1;
            Next::Run
        }
        Exit::Unexpected(what) => Next::Stop(Stop::Error(format!("unexpected vCPU exit: {what}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::{MmioDevice, SharedDevice};
    use std::sync::{Arc, Mutex};

    struct Reg(u8);

    impl MmioDevice for Reg {
        fn read(&mut self, _: u64, data: &mut [u8]) {
            data.fill(self.0);
        }
        fn write(&mut self, _: u64, data: &[u8]) {
            self.0 = data[0];
        }
    }

    #[test]
    fn mmio_goes_to_the_bus() {
        let mut bus = MmioBus::new();
        let dev: SharedDevice = Arc::new(Mutex::new(Reg(7)));
        bus.insert("reg", Gpa(0x1000), 0x10, dev).unwrap();
        let mut stats = ExitStats::default();
        let mut seen = Vec::new();
        let mut d = [0u8; 4];
        let next = handle(
            &bus,
            Exit::MmioRead(Gpa(0x1000), &mut d),
            &mut stats,
            |_, _, _| {},
        );
        assert_eq!((next, d), (Next::Run, [7; 4]));
        handle(
            &bus,
            Exit::MmioWrite(Gpa(0x1004), &[9]),
            &mut stats,
            |_, _, _| {},
        );
        handle(
            &bus,
            Exit::MmioRead(Gpa(0x1000), &mut d),
            &mut stats,
            |_, _, _| {},
        );
        assert_eq!(d, [9; 4]);
        let next = handle(
            &bus,
            Exit::MmioWrite(Gpa(0x5000), &[1, 2]),
            &mut stats,
            |what, a, n| seen.push((what.to_string(), a, n)),
        );
        assert_eq!(next, Next::Run);
        assert_eq!(seen, vec![("write".to_string(), Gpa(0x5000), 2)]);
        assert_eq!(
            stats,
            ExitStats {
                mmio: 3,
                unclaimed: 1,
                interrupted: 0
            }
        );
    }

    #[test]
    fn power_events_and_their_exit_codes() {
        let bus = MmioBus::new();
        let mut stats = ExitStats::default();
        let mut stop = |kind| match handle(
            &bus,
            Exit::SystemEvent(kind, &[0]),
            &mut stats,
            |_, _, _| {},
        ) {
            Next::Stop(s) => s,
            Next::Run => panic!("a system event must stop the VM"),
        };
        assert_eq!(stop(1), Stop::PowerOff);
        assert_eq!(stop(1).exit_code(), 0);
        assert_eq!(stop(2), Stop::Reset);
        assert_eq!(stop(2).exit_code(), 2);
        assert_eq!(stop(3).exit_code(), 3);
        let s = stop(9);
        assert!(matches!(s, Stop::Error(ref e) if e.contains("type 9")));
        assert_eq!(s.exit_code(), 1);
        assert_eq!(Stop::Quit.exit_code(), 0);
    }

    #[test]
    fn signals_resume_and_unknown_exits_stop() {
        let bus = MmioBus::new();
        let mut stats = ExitStats::default();
        assert_eq!(
            handle(&bus, Exit::Interrupted, &mut stats, |_, _, _| {}),
            Next::Run
        );
        assert_eq!(stats.interrupted, 1);
        let next = handle(
            &bus,
            Exit::Unexpected("FailEntry".into()),
            &mut stats,
            |_, _, _| {},
        );
        assert!(matches!(next, Next::Stop(Stop::Error(e)) if e.contains("FailEntry")));
    }
}
