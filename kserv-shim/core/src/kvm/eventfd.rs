//! `KVM_IOEVENTFD` and `KVM_IRQFD`: eventfds that stand for a guest's
//! doorbell writes and for interrupt lines, so that a VMM's device threads
//! neither take `KVM_EXIT_MMIO` exits nor call `KVM_IRQ_LINE`. Semantics and
//! error codes follow Linux 6.1's `virt/kvm/eventfd.c`.
//!
//! - An ioeventfd is an MMIO address (exact), a length (1, 2, 4, 8, or 0 for
//!   any) and optionally a value: a guest write that matches signals the
//!   eventfd and completes in the shim ([`Eventfds::mmio_write`], after the
//!   vGIC, for writes no writable memory slot takes). `PIO` and
//!   `VIRTIO_CCW_NOTIFY` ones are accepted as KVM accepts them but, as on
//!   arm64 KVM, nothing ever writes to those buses.
//! - An irqfd maps its eventfd to a GSI, which drives the SPI the vGIC's
//!   routing table names (`Vgic::spi_of`: KVM's default routing, GSI `n` to
//!   SPI `32 + n`, until `KVM_SET_GSI_ROUTING` replaces it). The
//!   glue hooks the eventfd's wait queue; each signal makes a kernel worker
//!   call [`super::vm::irqfd_inject`]: the line raised and never lowered (as
//!   Linux 6.1 on arm64), or with `KVM_IRQFD_FLAG_RESAMPLE` the line raised until the guest
//!   completes the interrupt, when the shim lowers it and signals the
//!   resamplefd. The shim sees the completion at the vCPU's next exit (KCore
//!   does not request EOI maintenance interrupts), where KVM sees it at
//!   once.
//!
//! The tables live in the VM's configuration (under `Lock::Vm`); each
//! entry holds a reference to its eventfds, dropped on deassignment and at
//! teardown ([`Eventfds::release`]).

use super::env::KvmEnv;
use super::errno::{EAGAIN, EBUSY, EEXIST, EINVAL, ENOENT, ENOSPC, Errno};

/// Most ioeventfds per VM (KVM's bus holds 1000 devices; `ENOSPC` beyond,
/// as KVM answers a full bus).
pub const MAX_IOEVENTFDS: usize = 128;
/// Most irqfds per VM (`ENOSPC` beyond; KVM is limited by memory only).
pub const MAX_IRQFDS: usize = 128;

/// `struct kvm_ioeventfd` and its flags.
pub mod io {
    /// Bytes of the structure.
    pub const SIZE: usize = 64;
    /// `KVM_IOEVENTFD_FLAG_DATAMATCH`.
    pub const DATAMATCH: u32 = 1 << 0;
    /// `KVM_IOEVENTFD_FLAG_PIO`.
    pub const PIO: u32 = 1 << 1;
    /// `KVM_IOEVENTFD_FLAG_DEASSIGN`.
    pub const DEASSIGN: u32 = 1 << 2;
    /// `KVM_IOEVENTFD_FLAG_VIRTIO_CCW_NOTIFY`.
    pub const VIRTIO_CCW_NOTIFY: u32 = 1 << 3;
    /// `KVM_IOEVENTFD_VALID_FLAG_MASK` (five flag numbers in 6.1's enum).
    pub const VALID: u32 = (1 << 5) - 1;
}

/// `struct kvm_irqfd` and its flags.
pub mod irq {
    /// Bytes of the structure.
    pub const SIZE: usize = 32;
    /// `KVM_IRQFD_FLAG_DEASSIGN`.
    pub const DEASSIGN: u32 = 1 << 0;
    /// `KVM_IRQFD_FLAG_RESAMPLE`.
    pub const RESAMPLE: u32 = 1 << 1;
}

/// The bus of an ioeventfd (`ioeventfd_bus_from_flags`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Bus {
    #[default]
    Mmio,
    Pio,
    Ccw,
}

/// One ioeventfd. `eventfd` 0 is a free entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct IoEventfd {
    bus: Bus,
    addr: u64,
    len: u32,
    wildcard: bool,
    datamatch: u64,
    eventfd: u64,
}

/// One irqfd: its eventfd, GSI, resamplefd (0: none) and the glue's hook.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Irqfd {
    eventfd: u64,
    gsi: u32,
    resamplefd: u64,
    hook: u64,
}

/// A VM's ioeventfds and irqfds. All zero: none.
pub struct Eventfds {
    io: [IoEventfd; MAX_IOEVENTFDS],
    n_io: usize,
    irq: [Irqfd; MAX_IRQFDS],
    n_irq: usize,
}

/// `struct kvm_ioeventfd`, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoArgs {
    /// `datamatch`.
    pub datamatch: u64,
    /// `addr`.
    pub addr: u64,
    /// `len`.
    pub len: u32,
    /// `fd`.
    pub fd: i32,
    /// `flags`.
    pub flags: u32,
}

impl IoArgs {
    /// Decodes the structure's bytes.
    pub fn parse(b: &[u8; io::SIZE]) -> IoArgs {
        let u64_at = |i: usize| {
            u64::from_le_bytes([
                b[i],
                b[i + 1],
                b[i + 2],
                b[i + 3],
                b[i + 4],
                b[i + 5],
                b[i + 6],
                b[i + 7],
            ])
        };
        let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        IoArgs {
            datamatch: u64_at(0),
            addr: u64_at(8),
            len: u32_at(16),
            fd: u32_at(20) as i32,
            flags: u32_at(24),
        }
    }

    fn bus(&self) -> Bus {
        if self.flags & io::PIO != 0 {
            Bus::Pio
        } else if self.flags & io::VIRTIO_CCW_NOTIFY != 0 {
            Bus::Ccw
        } else {
            Bus::Mmio
        }
    }
}

/// `struct kvm_irqfd`, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IrqArgs {
    /// `fd`.
    pub fd: i32,
    /// `gsi`.
    pub gsi: u32,
    /// `flags`.
    pub flags: u32,
    /// `resamplefd`.
    pub resamplefd: i32,
}

impl IrqArgs {
    /// Decodes the structure's bytes.
    pub fn parse(b: &[u8; irq::SIZE]) -> IrqArgs {
        let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        IrqArgs {
            fd: u32_at(0) as i32,
            gsi: u32_at(4),
            flags: u32_at(8),
            resamplefd: u32_at(12) as i32,
        }
    }
}

/// What a deassigned resampling irqfd leaves behind: the GSI whose line
/// the caller lowers, when no other resampling irqfd drives it.
pub type Unresampled = Option<u32>;

impl Eventfds {
    /// How many ioeventfds there are (the vCPU path skips the lookup when
    /// none).
    pub fn ioeventfds(&self) -> usize {
        self.n_io
    }

    /// `KVM_IOEVENTFD` (`kvm_ioeventfd`).
    pub fn ioeventfd<E: KvmEnv>(&mut self, env: &mut E, a: &IoArgs) -> Result<(), Errno> {
        if a.flags & io::DEASSIGN != 0 {
            return self.io_deassign(env, a);
        }
        if !matches!(a.len, 0 | 1 | 2 | 4 | 8)
            || a.addr.checked_add(u64::from(a.len)).is_none()
            || a.flags & !io::VALID != 0
            || (a.len == 0 && a.flags & io::DATAMATCH != 0)
        {
            return Err(EINVAL);
        }
        let eventfd = env.eventfd_get(a.fd)?;
        let p = IoEventfd {
            bus: a.bus(),
            addr: a.addr,
            len: a.len,
            wildcard: a.flags & io::DATAMATCH == 0,
            datamatch: if a.flags & io::DATAMATCH != 0 {
                a.datamatch
            } else {
                0
            },
            eventfd,
        };
        // `ioeventfd_check_collision`.
        let collides = self.io[..self.n_io].iter().any(|q| {
            q.bus == p.bus
                && q.addr == p.addr
                && (q.len == 0
                    || p.len == 0
                    || (q.len == p.len && (q.wildcard || p.wildcard || q.datamatch == p.datamatch)))
        });
        let r = if collides {
            Err(EEXIST)
        } else if self.n_io == MAX_IOEVENTFDS {
            Err(ENOSPC)
        } else {
            self.io[self.n_io] = p;
            self.n_io += 1;
            return Ok(());
        };
        env.eventfd_put(eventfd);
        r
    }

    fn io_deassign<E: KvmEnv>(&mut self, env: &mut E, a: &IoArgs) -> Result<(), Errno> {
        let eventfd = env.eventfd_get(a.fd)?;
        let wildcard = a.flags & io::DATAMATCH == 0;
        let bus = a.bus();
        let found = self.io[..self.n_io].iter().position(|p| {
            p.bus == bus
                && p.eventfd == eventfd
                && p.addr == a.addr
                && p.len == a.len
                && p.wildcard == wildcard
                && (p.wildcard || p.datamatch == a.datamatch)
        });
        let r = match found {
            Some(i) => {
                env.eventfd_put(self.io[i].eventfd);
                self.n_io -= 1;
                self.io[i] = self.io[self.n_io];
                self.io[self.n_io] = IoEventfd::default();
                Ok(())
            }
            None => Err(ENOENT),
        };
        env.eventfd_put(eventfd);
        r
    }

    /// A guest's MMIO write of `width` bytes of `data` at `addr`: whether an
    /// ioeventfd took it (and was signalled). KVM's bus stops at the first
    /// device that accepts a write.
    pub fn mmio_write<E: KvmEnv>(&self, env: &mut E, addr: u64, width: u64, data: u64) -> bool {
        let value = if width >= 8 {
            data
        } else {
            data & ((1u64 << (8 * width)) - 1)
        };
        let hit = self.io[..self.n_io].iter().find(|p| {
            p.bus == Bus::Mmio
                && p.addr == addr
                && (p.len == 0
                    || (u64::from(p.len) == width && (p.wildcard || p.datamatch == value)))
        });
        match hit {
            Some(p) => {
                env.eventfd_signal(p.eventfd);
                true
            }
            None => false,
        }
    }

    /// `KVM_IRQFD` (`kvm_irqfd`): `gic_ready` is whether the vGIC is
    /// initialised (`kvm_arch_intc_initialized`). Returns, for a
    /// deassignment, the GSI whose resampled line the caller must lower.
    pub fn irqfd<E: KvmEnv>(
        &mut self,
        env: &mut E,
        a: &IrqArgs,
        gic_ready: bool,
    ) -> Result<Unresampled, Errno> {
        if a.flags & !(irq::DEASSIGN | irq::RESAMPLE) != 0 {
            return Err(EINVAL);
        }
        if a.flags & irq::DEASSIGN != 0 {
            return self.irq_deassign(env, a);
        }
        if !gic_ready {
            return Err(EAGAIN);
        }
        let eventfd = env.eventfd_get(a.fd)?;
        let mut resamplefd = 0;
        if a.flags & irq::RESAMPLE != 0 {
            match env.eventfd_get(a.resamplefd) {
                Ok(r) => resamplefd = r,
                Err(e) => {
                    env.eventfd_put(eventfd);
                    return Err(e);
                }
            }
        }
        let r = if self.irq[..self.n_irq].iter().any(|q| q.eventfd == eventfd) {
            // "This fd is used for another irq already."
            Err(EBUSY)
        } else if self.n_irq == MAX_IRQFDS {
            Err(ENOSPC)
        } else {
            env.irqfd_attach(a.fd, eventfd, a.gsi, resamplefd != 0)
        };
        match r {
            Ok(hook) => {
                self.irq[self.n_irq] = Irqfd {
                    eventfd,
                    gsi: a.gsi,
                    resamplefd,
                    hook,
                };
                self.n_irq += 1;
                Ok(None)
            }
            Err(e) => {
                if resamplefd != 0 {
                    env.eventfd_put(resamplefd);
                }
                env.eventfd_put(eventfd);
                Err(e)
            }
        }
    }

    /// Every irqfd with the fd's eventfd and the GSI goes; 0 even if none
    /// (`kvm_irqfd_deassign`).
    fn irq_deassign<E: KvmEnv>(&mut self, env: &mut E, a: &IrqArgs) -> Result<Unresampled, Errno> {
        let eventfd = env.eventfd_get(a.fd)?;
        let mut lower = None;
        let mut i = 0;
        while i < self.n_irq {
            let q = self.irq[i];
            if q.eventfd == eventfd && q.gsi == a.gsi {
                self.remove_irq(env, i);
                if q.resamplefd != 0
                    && !self.irq[..self.n_irq]
                        .iter()
                        .any(|o| o.gsi == q.gsi && o.resamplefd != 0)
                {
                    lower = Some(q.gsi);
                }
            } else {
                i += 1;
            }
        }
        env.eventfd_put(eventfd);
        Ok(lower)
    }

    fn remove_irq<E: KvmEnv>(&mut self, env: &mut E, i: usize) {
        let q = self.irq[i];
        // No injection runs once this returns.
        env.irqfd_detach(q.hook);
        env.eventfd_put(q.eventfd);
        if q.resamplefd != 0 {
            env.eventfd_put(q.resamplefd);
        }
        self.n_irq -= 1;
        self.irq[i] = self.irq[self.n_irq];
        self.irq[self.n_irq] = Irqfd::default();
    }

    /// The guest completed the interrupts of these GSIs (bitmap, bit `n`
    /// of word `n / 64`): signals their resamplefds.
    pub fn resampled<E: KvmEnv>(&self, env: &mut E, gsis: &[u64]) {
        for q in &self.irq[..self.n_irq] {
            let (w, b) = ((q.gsi / 64) as usize, q.gsi % 64);
            if q.resamplefd != 0 && gsis.get(w).is_some_and(|x| x & (1 << b) != 0) {
                env.eventfd_signal(q.resamplefd);
            }
        }
    }

    /// Teardown: every irqfd unhooked and every eventfd reference dropped.
    pub fn release<E: KvmEnv>(&mut self, env: &mut E) {
        while self.n_irq > 0 {
            self.remove_irq(env, self.n_irq - 1);
        }
        for p in &mut self.io[..self.n_io] {
            env.eventfd_put(p.eventfd);
            *p = IoEventfd::default();
        }
        self.n_io = 0;
    }
}
