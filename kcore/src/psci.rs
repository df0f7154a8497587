//! PSCI for KServ (Arm DEN0022): KCore is KServ's power-state firmware.
//!
//! KServ's `SMC`s trap to KCore (`HCR_EL2.TSC`). KCore implements PSCI 1.0
//! itself where it must keep control — `CPU_ON` starts the target CPU in
//! KCore's own entry point, which sets up EL2 there before dropping to the
//! entry KServ asked for — and forwards to the real firmware what only the
//! firmware can do (power a CPU off, power the system off or reset it,
//! report a CPU's affinity state). Every argument KServ passes is checked
//! first: an unknown MPIDR or an entry point outside KServ's memory never
//! reaches the firmware.
//!
//! On a platform with no PSCI firmware, whose CPUs start through a spin
//! table (the Raspberry Pi 4 with its stock armstub, where `SMC` is
//! UNDEFINED), the relay is built with [`Backend::SpinTable`] and calls no
//! firmware at all: KCore released every secondary CPU at boot into a pen of
//! its own, so `CPU_ON` posts the entry point to the pen
//! ([`PsciOutcome::StartCpu`], then [`PsciRelay::finish_cpu_on`] with
//! success), `CPU_OFF` sends the CPU back to the pen, `AFFINITY_INFO` is
//! answered from the relay's own state, and `SYSTEM_OFF`/`SYSTEM_RESET` come
//! back to the caller as [`PsciOutcome::SystemOff`]/[`PsciOutcome::SystemReset`]
//! (park every CPU; the board's reset device). `PSCI_FEATURES` and
//! `MIGRATE_INFO_TYPE` (no Trusted OS) answer the same on both backends.

use crate::hw::Firmware;
use kcore_abi::{psci, smccc};

/// The PSCI errors KCore returns itself (values from [`kcore_abi::psci`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum PsciError {
    /// `NOT_SUPPORTED`.
    NotSupported = psci::NOT_SUPPORTED,
    /// `INVALID_PARAMETERS`.
    InvalidParameters = psci::INVALID_PARAMETERS,
    /// `DENIED`.
    Denied = psci::DENIED,
    /// `ALREADY_ON`.
    AlreadyOn = psci::ALREADY_ON,
    /// `ON_PENDING`.
    OnPending = psci::ON_PENDING,
    /// `INTERNAL_FAILURE`.
    InternalFailure = psci::INTERNAL_FAILURE,
    /// `INVALID_ADDRESS`.
    InvalidAddress = psci::INVALID_ADDRESS,
}

impl PsciError {
    /// As it appears in `x0` (sign-extended).
    pub const fn to_x0(self) -> u64 {
        self as u64
    }
}

/// Where a CPU is in KCore's view of its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpuState {
    /// Off (or never started).
    Off,
    /// KServ asked for it to start; the firmware has it, KCore holds the
    /// entry point until the CPU arrives.
    OnPending {
        /// KServ's entry point (a physical address in KServ's RAM).
        entry: u64,
        /// KServ's context id, handed over in `x0`.
        context: u64,
    },
    /// Running KServ.
    On,
}

/// Who starts and stops CPUs and the system under KCore.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// PSCI firmware, reached through [`Firmware`].
    Firmware,
    /// No firmware: secondary CPUs wait in KCore's pen; KCore answers
    /// everything itself and never calls [`Firmware`].
    SpinTable,
}

/// What KCore must do after a PSCI call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PsciOutcome {
    /// Put this value in KServ's `x0` and resume after the `SMC`.
    Return(u64),
    /// `CPU_ON` was checked and recorded: the caller must now ask the
    /// firmware to start `mpidr` at KCore's secondary entry with
    /// `context = cpu` and then report with [`PsciRelay::finish_cpu_on`].
    StartCpu {
        /// Target MPIDR (affinity fields only).
        mpidr: u64,
        /// Index of the target in the platform's CPU list.
        cpu: usize,
    },
    /// Power this CPU off through the firmware; if that returns, report
    /// with [`PsciRelay::cpu_off_failed`].
    CpuOff {
        /// Index of the calling CPU.
        cpu: usize,
    },
    /// [`Backend::SpinTable`]'s `SYSTEM_OFF`: park every CPU (the board has
    /// no power-off).
    SystemOff,
    /// [`Backend::SpinTable`]'s `SYSTEM_RESET`: reset through the board's
    /// reset device; if there is none, or it returns, put
    /// [`PsciError::InternalFailure`] in KServ's `x0`.
    SystemReset,
}

/// KCore's PSCI state: the CPUs the platform has and where each one is.
#[derive(Clone, Debug)]
pub struct PsciRelay<const CPUS: usize> {
    mpidrs: [u64; CPUS],
    state: [CpuState; CPUS],
    count: usize,
    backend: Backend,
}

impl<const CPUS: usize> PsciRelay<CPUS> {
    /// A relay for the CPUs with these MPIDRs (from the device tree). The
    /// first `CPUS` are kept; `boot_cpu` is marked on.
    pub fn new(mpidrs: &[u64], boot_cpu: usize) -> Self {
        let mut r = PsciRelay {
            mpidrs: [0; CPUS],
            state: [CpuState::Off; CPUS],
            count: 0,
            backend: Backend::Firmware,
        };
        for (i, m) in mpidrs.iter().take(CPUS).enumerate() {
            r.mpidrs[i] = m & psci::MPIDR_AFFINITY;
            r.count = i + 1;
        }
        if boot_cpu < r.count {
            r.state[boot_cpu] = CpuState::On;
        }
        r
    }

    /// The same relay over `backend`.
    pub fn with_backend(self, backend: Backend) -> Self {
        PsciRelay { backend, ..self }
    }

    /// Who starts and stops CPUs.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Number of CPUs known.
    pub fn cpu_count(&self) -> usize {
        self.count
    }

    /// Index of the CPU with this MPIDR.
    pub fn cpu_index(&self, mpidr: u64) -> Option<usize> {
        let m = mpidr & psci::MPIDR_AFFINITY;
        self.mpidrs[..self.count].iter().position(|&x| x == m)
    }

    /// State of CPU `cpu`.
    pub fn state(&self, cpu: usize) -> Option<CpuState> {
        self.state[..self.count].get(cpu).copied()
    }

    /// Handles one PSCI (or SMCCC architecture) call from KServ on CPU
    /// `caller`. `entry_ok` says whether an address is acceptable as a KServ
    /// entry point (inside KServ's RAM).
    pub fn handle(
        &mut self,
        caller: usize,
        fid: u32,
        args: [u64; 3],
        fw: &mut impl Firmware,
        entry_ok: impl Fn(u64) -> bool,
    ) -> PsciOutcome {
        use PsciOutcome::Return;
        // SMC32 calls only see the low 32 bits of their arguments.
        let arg = |i: usize| smccc::arg(fid, args[i]);
        match fid {
            psci::VERSION => Return(psci::VERSION_1_0),
            psci::FEATURES => Return(self.features(arg(0) as u32, fw)),
            psci::MIGRATE_INFO_TYPE => Return(psci::NO_TRUSTED_OS),
            psci::CPU_ON_32 | psci::CPU_ON_64 => {
                self.start_cpu_on(arg(0), arg(1), arg(2), &entry_ok)
            }
            psci::CPU_OFF => match self.state[..self.count].get_mut(caller) {
                Some(s) => {
                    *s = CpuState::Off;
                    PsciOutcome::CpuOff { cpu: caller }
                }
                None => Return(PsciError::InternalFailure.to_x0()),
            },
            psci::AFFINITY_INFO_32 | psci::AFFINITY_INFO_64 => {
                let (target, level) = (arg(0), arg(1));
                if level != 0 {
                    return Return(PsciError::InvalidParameters.to_x0());
                }
                match self.cpu_index(target) {
                    Some(i) if target & !psci::MPIDR_AFFINITY == 0 => match self.backend {
                        Backend::Firmware => Return(fw.smc(fid, [self.mpidrs[i], 0, 0])),
                        Backend::SpinTable => Return(match self.state[i] {
                            CpuState::On => psci::AFFINITY_ON,
                            CpuState::Off => psci::AFFINITY_OFF,
                            CpuState::OnPending { .. } => psci::AFFINITY_ON_PENDING,
                        }),
                    },
                    _ => Return(PsciError::InvalidParameters.to_x0()),
                }
            }
            psci::SYSTEM_OFF if self.backend == Backend::SpinTable => PsciOutcome::SystemOff,
            psci::SYSTEM_RESET if self.backend == Backend::SpinTable => PsciOutcome::SystemReset,
            psci::SYSTEM_OFF | psci::SYSTEM_RESET => {
                let r = fw.smc(fid, [0; 3]);
                // Only reached if the firmware refused.
                Return(if r == 0 {
                    PsciError::InternalFailure.to_x0()
                } else {
                    r
                })
            }
            _ => Return(PsciError::NotSupported.to_x0()),
        }
    }

    /// `PSCI_FEATURES`: KCore's own calls, and `SMCCC_VERSION` as the
    /// firmware answers it (KCore forwards it, [`crate::smc_forward`]).
    fn features(&self, f: u32, fw: &mut impl Firmware) -> u64 {
        match f {
            smccc::SMCCC_VERSION if self.backend == Backend::Firmware => {
                fw.smc(psci::FEATURES, [u64::from(f), 0, 0])
            }
            psci::VERSION
            | psci::FEATURES
            | psci::CPU_OFF
            | psci::CPU_ON_32
            | psci::CPU_ON_64
            | psci::AFFINITY_INFO_32
            | psci::AFFINITY_INFO_64
            | psci::MIGRATE_INFO_TYPE
            | psci::SYSTEM_OFF
            | psci::SYSTEM_RESET => 0,
            _ => PsciError::NotSupported.to_x0(),
        }
    }

    fn start_cpu_on(
        &mut self,
        target: u64,
        entry: u64,
        context: u64,
        entry_ok: &impl Fn(u64) -> bool,
    ) -> PsciOutcome {
        let Some(cpu) = self
            .cpu_index(target)
            .filter(|_| target & !psci::MPIDR_AFFINITY == 0)
        else {
            return PsciOutcome::Return(PsciError::InvalidParameters.to_x0());
        };
        if !entry.is_multiple_of(4) || !entry_ok(entry) {
            return PsciOutcome::Return(PsciError::InvalidAddress.to_x0());
        }
        match self.state[cpu] {
            CpuState::On => PsciOutcome::Return(PsciError::AlreadyOn.to_x0()),
            CpuState::OnPending { .. } => PsciOutcome::Return(PsciError::OnPending.to_x0()),
            CpuState::Off => {
                self.state[cpu] = CpuState::OnPending { entry, context };
                PsciOutcome::StartCpu {
                    mpidr: self.mpidrs[cpu],
                    cpu,
                }
            }
        }
    }

    /// Reports the firmware's answer to the `CPU_ON` that
    /// [`PsciOutcome::StartCpu`] asked for; returns KServ's `x0`.
    pub fn finish_cpu_on(&mut self, cpu: usize, firmware_ret: u64) -> u64 {
        if firmware_ret != 0
            && let Some(s @ CpuState::OnPending { .. }) = self.state[..self.count].get_mut(cpu)
        {
            // The firmware did not start it: KServ may try again.
            *s = CpuState::Off;
        }
        firmware_ret
    }

    /// A started CPU arrived in KCore: hands out KServ's entry point and
    /// context once. `None` if KServ never asked for this CPU (firmware or
    /// loader misbehaviour; the CPU must then park).
    pub fn take_boot_args(&mut self, cpu: usize) -> Option<(u64, u64)> {
        let s = self.state[..self.count].get_mut(cpu)?;
        match *s {
            CpuState::OnPending { entry, context } => {
                *s = CpuState::On;
                Some((entry, context))
            }
            _ => None,
        }
    }

    /// The firmware's `CPU_OFF` returned (it must not): the CPU is still on.
    pub fn cpu_off_failed(&mut self, cpu: usize) -> u64 {
        if let Some(s) = self.state[..self.count].get_mut(cpu) {
            *s = CpuState::On;
        }
        PsciError::Denied.to_x0()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fw(u64, Option<(u32, [u64; 3])>);
    impl Firmware for Fw {
        fn smc(&mut self, fid: u32, args: [u64; 3]) -> u64 {
            self.1 = Some((fid, args));
            self.0
        }
        fn smc_regs(&mut self, fid: u32, args: [u64; 3]) -> [u64; 4] {
            [self.smc(fid, args), 0, 0, 0]
        }
    }

    fn relay() -> PsciRelay<4> {
        PsciRelay::new(&[0x0, 0x1, 0x100, 0x1_0000_0000], 0)
    }

    #[test]
    fn version_features_and_unknown() {
        let mut r = relay();
        let mut fw = Fw(0, None);
        let ok = |_| true;
        assert_eq!(
            r.handle(0, psci::VERSION, [0; 3], &mut fw, ok),
            PsciOutcome::Return(psci::VERSION_1_0)
        );
        assert_eq!(
            r.handle(
                0,
                psci::FEATURES,
                [psci::CPU_ON_64 as u64, 0, 0],
                &mut fw,
                ok
            ),
            PsciOutcome::Return(0)
        );
        let ns = PsciOutcome::Return(PsciError::NotSupported.to_x0());
        assert_eq!(
            r.handle(
                0,
                psci::FEATURES,
                [psci::CPU_SUSPEND_32 as u64, 0, 0],
                &mut fw,
                ok
            ),
            ns
        );
        assert_eq!(r.handle(0, psci::CPU_SUSPEND_64, [0; 3], &mut fw, ok), ns);
        assert_eq!(r.handle(0, 0x8400_001F, [0; 3], &mut fw, ok), ns);
        assert!(fw.1.is_none(), "nothing reached the firmware");
        assert!(psci::is_psci(psci::CPU_ON_64) && psci::is_psci(psci::SYSTEM_OFF));
        assert!(!psci::is_psci(0xC600_0000) && !psci::is_psci(0x8400_0020));
    }

    #[test]
    fn cpu_on_validates_then_hands_args_once() {
        let mut r = relay();
        let mut fw = Fw(0, None);
        let in_ram = |a: u64| (0x4000_0000..0x8000_0000).contains(&a);
        let bad_target = r.handle(0, psci::CPU_ON_64, [0x2, 0x4008_0000, 7], &mut fw, in_ram);
        assert_eq!(
            bad_target,
            PsciOutcome::Return(PsciError::InvalidParameters.to_x0())
        );
        let bad_entry = r.handle(0, psci::CPU_ON_64, [0x1, 0x1000, 7], &mut fw, in_ram);
        assert_eq!(
            bad_entry,
            PsciOutcome::Return(PsciError::InvalidAddress.to_x0())
        );
        let misaligned = r.handle(0, psci::CPU_ON_64, [0x1, 0x4008_0002, 7], &mut fw, in_ram);
        assert_eq!(
            misaligned,
            PsciOutcome::Return(PsciError::InvalidAddress.to_x0())
        );
        assert_eq!(r.state(1), Some(CpuState::Off), "refusals change nothing");
        let on = r.handle(0, psci::CPU_ON_64, [0x1, 0x4008_0000, 7], &mut fw, in_ram);
        assert_eq!(on, PsciOutcome::StartCpu { mpidr: 1, cpu: 1 });
        let again = r.handle(0, psci::CPU_ON_64, [0x1, 0x4008_0000, 7], &mut fw, in_ram);
        assert_eq!(again, PsciOutcome::Return(PsciError::OnPending.to_x0()));
        assert_eq!(r.finish_cpu_on(1, 0), 0);
        assert_eq!(r.take_boot_args(1), Some((0x4008_0000, 7)));
        assert_eq!(r.take_boot_args(1), None, "only once");
        let on_again = r.handle(0, psci::CPU_ON_64, [0x1, 0x4008_0000, 7], &mut fw, in_ram);
        assert_eq!(on_again, PsciOutcome::Return(PsciError::AlreadyOn.to_x0()));
        assert!(fw.1.is_none());
    }

    #[test]
    fn spin_table_answers_without_firmware() {
        let mut r = relay().with_backend(Backend::SpinTable);
        assert_eq!(r.backend(), Backend::SpinTable);
        let mut fw = Fw(0x77, None);
        let ok = |_| true;
        let info = |r: &mut PsciRelay<4>, fw: &mut Fw, m: u64| {
            r.handle(3, psci::AFFINITY_INFO_64, [m, 0, 0], fw, ok)
        };
        use PsciOutcome::Return;
        assert_eq!(info(&mut r, &mut fw, 0x0), Return(psci::AFFINITY_ON));
        assert_eq!(info(&mut r, &mut fw, 0x1), Return(psci::AFFINITY_OFF));
        // CPU_ON: the same checks, then the pen; the relay tracks the rest.
        assert_eq!(
            r.handle(0, psci::CPU_ON_64, [0x1, 0x4000_0000, 9], &mut fw, ok),
            PsciOutcome::StartCpu { mpidr: 1, cpu: 1 }
        );
        assert_eq!(
            info(&mut r, &mut fw, 0x1),
            Return(psci::AFFINITY_ON_PENDING)
        );
        assert_eq!(r.finish_cpu_on(1, psci::SUCCESS), psci::SUCCESS);
        assert_eq!(r.take_boot_args(1), Some((0x4000_0000, 9)));
        assert_eq!(info(&mut r, &mut fw, 0x1), Return(psci::AFFINITY_ON));
        // CPU_OFF: back to the pen, and seen off at once.
        assert_eq!(
            r.handle(1, psci::CPU_OFF, [0; 3], &mut fw, ok),
            PsciOutcome::CpuOff { cpu: 1 }
        );
        assert_eq!(info(&mut r, &mut fw, 0x1), Return(psci::AFFINITY_OFF));
        assert_eq!(
            info(&mut r, &mut fw, 0x2),
            Return(PsciError::InvalidParameters.to_x0())
        );
        assert_eq!(
            r.handle(0, psci::SYSTEM_OFF, [0; 3], &mut fw, ok),
            PsciOutcome::SystemOff
        );
        assert_eq!(
            r.handle(0, psci::SYSTEM_RESET, [0; 3], &mut fw, ok),
            PsciOutcome::SystemReset
        );
        assert_eq!(
            r.handle(0, psci::MIGRATE_INFO_TYPE, [0; 3], &mut fw, ok),
            Return(psci::NO_TRUSTED_OS)
        );
        for f in [psci::SYSTEM_OFF, psci::SYSTEM_RESET, psci::AFFINITY_INFO_64] {
            assert_eq!(
                r.handle(0, psci::FEATURES, [f as u64, 0, 0], &mut fw, ok),
                Return(0)
            );
        }
        assert!(fw.1.is_none(), "nothing reached the firmware");
        // The firmware backend still forwards the system calls.
        let mut f = relay();
        assert_eq!(
            f.handle(0, psci::SYSTEM_RESET, [0; 3], &mut fw, ok),
            Return(0x77)
        );
        assert_eq!(fw.1, Some((psci::SYSTEM_RESET, [0; 3])));
    }

    #[test]
    fn smc32_cpu_on_truncates_arguments() {
        let mut r = relay();
        let mut fw = Fw(0, None);
        let out = r.handle(
            0,
            psci::CPU_ON_32,
            [0xFFFF_FFFF_0000_0100, 0x1_4008_0000, 0],
            &mut fw,
            |a| a == 0x4008_0000,
        );
        assert_eq!(
            out,
            PsciOutcome::StartCpu {
                mpidr: 0x100,
                cpu: 2
            }
        );
    }

    #[test]
    fn failed_firmware_cpu_on_reverts() {
        let mut r = relay();
        let mut fw = Fw(0, None);
        assert!(matches!(
            r.handle(0, psci::CPU_ON_64, [0x100, 0x4000_0000, 0], &mut fw, |_| {
                true
            }),
            PsciOutcome::StartCpu { .. }
        ));
        let internal = PsciError::InternalFailure.to_x0();
        assert_eq!(r.finish_cpu_on(2, internal), internal);
        assert_eq!(r.state(2), Some(CpuState::Off));
        assert_eq!(r.take_boot_args(2), None);
    }

    #[test]
    fn cpu_off_and_affinity_info() {
        let mut r = relay();
        let mut fw = Fw(1, None);
        assert_eq!(
            r.handle(0, psci::CPU_OFF, [0; 3], &mut fw, |_| true),
            PsciOutcome::CpuOff { cpu: 0 }
        );
        assert_eq!(r.state(0), Some(CpuState::Off));
        assert_eq!(r.cpu_off_failed(0), PsciError::Denied.to_x0());
        assert_eq!(r.state(0), Some(CpuState::On));
        let info = r.handle(
            0,
            psci::AFFINITY_INFO_64,
            [0x1_0000_0000, 0, 0],
            &mut fw,
            |_| true,
        );
        assert_eq!(info, PsciOutcome::Return(1));
        assert_eq!(fw.1, Some((psci::AFFINITY_INFO_64, [0x1_0000_0000, 0, 0])));
        let bad = r.handle(0, psci::AFFINITY_INFO_64, [0x0, 1, 0], &mut fw, |_| true);
        assert_eq!(
            bad,
            PsciOutcome::Return(PsciError::InvalidParameters.to_x0())
        );
    }
}
