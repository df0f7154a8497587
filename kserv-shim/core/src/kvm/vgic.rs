//! The virtual GICv3 of a VM (`KVM_DEV_TYPE_ARM_VGIC_V3`): distributor and
//! redistributor registers emulated on the guest's MMIO exits, interrupt
//! state for SGIs, PPIs, SPIs and LPIs (mapped by the ITS, [`its`]), and the
//! choice of the interrupts KServ hands KCore for a vCPU's list registers
//! at each entry.
//!
//! An interrupt is *pending* when its latch is set (an edge, a write to
//! `ISPENDR`, an SGI), when it is level-sensitive and its line is high, or
//! while a list register holds it pending. At each entry a vCPU gets, in at
//! most [`IRQ_SLOTS`] list registers, the active interrupts it already
//! holds, then the pending, enabled interrupts routed to it by priority;
//! the interrupt is then *owned* by that vCPU until the guest completes it
//! (the exit reports each list register's state, [`Vgic::fold`]). An edge's
//! pending state moves into the list register when it is handed over, as in
//! KVM's `vgic_v3_populate_lr`, so an edge that comes in meanwhile is not
//! lost. KCore delivers the guest's virtual and EL1 physical timers (PPIs 27
//! and 30, or those the VMM chose) itself: they are never handed over, and
//! their PPIs read as pending (`ISPENDR`/`ICPENDR`) while the timer asserts
//! it, as of the vCPU's last exit report and the counter at the access, as
//! KVM reads the timers' line level. Register behaviour follows KVM's
//! `vgic-mmio-v3.c` (Linux 6.1): accesses of a width a register does not
//! take read as zero and are ignored, SGI and PPI configuration is read-only,
//! `GICR_WAKER` reads as zero, priorities keep their top 5 bits.

pub mod its;
pub mod rdist;
pub mod v2;

use super::errno::{EBUSY, EINVAL, Errno};
use crate::psci::{mpidr_of, sgi_targets, vcpu_of_mpidr};
use its::LPI_START;
use kcore_abi::run::irq;

/// Most vCPUs a VM has (KCore's limit).
pub const MAX_VCPUS: usize = 64;
/// SGIs and PPIs.
pub const NR_PRIVATE: u32 = 32;
/// Most interrupts a VM may configure (`KVM_DEV_ARM_VGIC_GRP_NR_IRQS`: a
/// multiple of 32 up to 1023).
pub const MAX_IRQS: u32 = 992;
/// Interrupts of a VM that did not configure them (`VGIC_NR_IRQS_LEGACY`).
pub const DEFAULT_IRQS: u32 = 256;
/// Most interrupts handed to KCore per entry: the list registers of QEMU's
/// GICv3 (and of the Cortex-A cores' GIC CPU interfaces), four. KCore's
/// timer entries take free ones when the guest's timers need them, so the
/// last is only filled when the three before it are all active
/// ([`SPARE_SLOTS`]): only then does the guest need it (a fourth level of
/// preemption, four interrupts restored active), and a timer never waits
/// behind a pending interrupt (only the physical timer behind the virtual
/// one, when both fire together and three interrupts are pending).
pub const IRQ_SLOTS: usize = 4;
/// Entries handed over while fewer than that many are active.
pub const SPARE_SLOTS: usize = 3;
/// The guest's virtual timer, which KCore delivers.
pub const TIMER_PPI: u32 = 27;
/// The guest's EL1 physical timer, which KCore delivers.
pub const PTIMER_PPI: u32 = 30;

/// `GICD_IIDR`/`GICR_IIDR`: KVM's product id, Arm as implementer,
/// revision 2 (groups are guest-configurable).
/// A register region of userspace's (`KVM_DEV_ARM_VGIC_GRP_*_REGS`):
/// offset, bytes, bits per interrupt (0: not per interrupt, else only the
/// interrupts below `nr_irqs` are there). Each takes 32-bit accesses.
type Region = (u64, u64, u64);

/// The distributor's, as KVM 6.1's `vgic_v3_dist_registers`.
const DIST_REGS: [Region; 15] = [
    (0x0, 16, 0),       // GICD_CTLR, TYPER, IIDR, TYPER2
    (0x10, 4, 0),       // GICD_STATUSR
    (0x80, 128, 1),     // GICD_IGROUPR
    (0x100, 128, 1),    // GICD_ISENABLER
    (0x180, 128, 1),    // GICD_ICENABLER
    (0x200, 128, 1),    // GICD_ISPENDR
    (0x280, 128, 1),    // GICD_ICPENDR
    (0x300, 128, 1),    // GICD_ISACTIVER
    (0x380, 128, 1),    // GICD_ICACTIVER
    (0x400, 1024, 8),   // GICD_IPRIORITYR
    (0x800, 1024, 8),   // GICD_ITARGETSR
    (0xC00, 256, 2),    // GICD_ICFGR
    (0xD00, 128, 1),    // GICD_IGRPMODR
    (0x6000, 8192, 64), // GICD_IROUTER
    (0xFFD0, 48, 0),    // the ID registers
];

/// A redistributor's, RD frame then SGI frame, as KVM 6.1's
/// `vgic_v3_rd_registers`.
const RD_REGS: [Region; 22] = [
    (0x0, 4, 0),       // GICR_CTLR
    (0x4, 4, 0),       // GICR_IIDR
    (0x8, 8, 0),       // GICR_TYPER
    (0x10, 4, 0),      // GICR_STATUSR
    (0x14, 4, 0),      // GICR_WAKER
    (0x70, 8, 0),      // GICR_PROPBASER
    (0x78, 8, 0),      // GICR_PENDBASER
    (0xA0, 8, 0),      // GICR_INVLPIR
    (0xB0, 8, 0),      // GICR_INVALLR
    (0xC0, 4, 0),      // GICR_SYNCR
    (0xFFD0, 48, 0),   // the ID registers
    (0x1_0080, 4, 0),  // GICR_IGROUPR0
    (0x1_0100, 4, 0),  // GICR_ISENABLER0
    (0x1_0180, 4, 0),  // GICR_ICENABLER0
    (0x1_0200, 4, 0),  // GICR_ISPENDR0
    (0x1_0280, 4, 0),  // GICR_ICPENDR0
    (0x1_0300, 4, 0),  // GICR_ISACTIVER0
    (0x1_0380, 4, 0),  // GICR_ICACTIVER0
    (0x1_0400, 32, 0), // GICR_IPRIORITYR0..7
    (0x1_0C00, 8, 0),  // GICR_ICFGR0, 1
    (0x1_0D00, 4, 0),  // GICR_IGRPMODR0
    (0x1_0E00, 4, 0),  // GICR_NSACR
];

const IIDR: u64 = 0x4B << 24 | 2 << 12 | 0x43B;
/// `GICD_PIDR2`/`GICR_PIDR2`: a GICv3.
const PIDR2: u64 = 0x3B;

/// Bits of [`Irq::flags`].
mod f {
    pub const ENABLED: u8 = 1 << 0;
    pub const LATCH: u8 = 1 << 1;
    pub const LINE: u8 = 1 << 2;
    pub const ACTIVE: u8 = 1 << 3;
    pub const EDGE: u8 = 1 << 4;
    pub const GROUP1: u8 = 1 << 5;
    /// A list register holds it pending (as of the last exit).
    pub const LR_PENDING: u8 = 1 << 6;
    /// An irqfd in resampling mode holds its line high until the guest
    /// completes it.
    pub const RESAMPLE: u8 = 1 << 7;
}

/// Words of the bitmap of SPIs (by pin, `INTID - 32`) whose resampled line
/// the guest completed.
pub const ACKED_WORDS: usize = (MAX_IRQS - NR_PRIVATE).div_ceil(64) as usize;
/// GSIs a routing table may name (`KVM_MAX_IRQ_ROUTES`).
pub const MAX_ROUTES: usize = super::uapi::routing::MAX_ROUTES as usize;
/// Words of a bitmap of GSIs.
pub const GSI_WORDS: usize = MAX_ROUTES / 64;
/// A GSI's route in [`Vgic::set_routes`]: an MSI, `ROUTE_MSI | n` for
/// the `n`th of [`Vgic::set_msi_route`]'s, which the ITS translates.
pub const ROUTE_MSI: u16 = 0x8000;
/// MSI routes a routing table may hold (KVM takes as many as GSIs; a table
/// with more is refused, `ENOSPC`).
pub const MAX_MSI_ROUTES: usize = 512;

/// An MSI route: the doorbell address, the data (the event id) and the
/// device id (`KVM_MSI_VALID_DEVID`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MsiRoute {
    /// `address_hi << 32 | address_lo`.
    pub addr: u64,
    /// `data`.
    pub data: u32,
    /// `devid`, when the entry has `KVM_MSI_VALID_DEVID`.
    pub devid: u32,
    /// The entry has `KVM_MSI_VALID_DEVID`.
    pub has_devid: bool,
}

/// One interrupt's state. All zero is a valid (disabled) interrupt.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Irq {
    flags: u8,
    priority: u8,
    /// The vCPU whose list registers hold it, plus one; 0 for none.
    owner: u8,
    /// `GICD_IROUTER` affinity (SPIs).
    route: u32,
}

impl Irq {
    fn has(&self, b: u8) -> bool {
        self.flags & b != 0
    }
    fn set(&mut self, b: u8, on: bool) {
        if on {
            self.flags |= b;
        } else {
            self.flags &= !b;
        }
    }
    /// Pending: latched, or an edge pending in a list register, or a
    /// level-sensitive line that is high (its list register's pending bit
    /// is resampled from the line at every entry, as in KVM).
    pub fn pending(&self) -> bool {
        self.has(f::LATCH)
            || if self.has(f::EDGE) {
                self.has(f::LR_PENDING)
            } else {
                self.has(f::LINE)
            }
    }
    /// Active.
    pub fn active(&self) -> bool {
        self.has(f::ACTIVE)
    }
    /// Enabled.
    pub fn enabled(&self) -> bool {
        self.has(f::ENABLED)
    }
}

/// Redistributor regions [`Vgic::lpi_frames`] reports at most (one more
/// than KCore takes).
pub const LPI_REGIONS: usize = 9;

/// A VM's virtual GIC. All zero: not created.
pub struct Vgic {
    /// `KVM_CREATE_DEVICE` made it.
    pub created: bool,
    /// `KVM_DEV_ARM_VGIC_CTRL_INIT` ran.
    pub ready: bool,
    /// Distributor base, plus one (0: unset).
    dist: u64,
    /// The redistributors' regions.
    rd: rdist::Regions,
    /// Interrupts configured (0: unset, [`DEFAULT_IRQS`] at init).
    nr_irqs: u32,
    /// vCPUs at init, and their ids in redistributor order.
    nr_vcpus: usize,
    rd_vcpu: [u8; MAX_VCPUS],
    /// vCPU ids present.
    vcpu_mask: u64,
    /// `GICD_CTLR.EnableGrp1`.
    enabled: bool,
    /// `GICR_PROPBASER` (shared), `GICR_PENDBASER` per vCPU: stored only.
    propbaser: u64,
    pendbaser: [u64; MAX_VCPUS],
    private: [[Irq; NR_PRIVATE as usize]; MAX_VCPUS],
    spis: [Irq; (MAX_IRQS - NR_PRIVATE) as usize],
    /// The interrupts each vCPU owns (handed over at its last entry and not
    /// yet completed).
    owned: [[u16; IRQ_SLOTS]; MAX_VCPUS],
    n_owned: [u8; MAX_VCPUS],
    /// `KVM_SET_GSI_ROUTING`'s table, in force when `routed` (else KVM's
    /// default routing, which `KVM_DEV_ARM_VGIC_CTRL_INIT` installs: GSI
    /// `n` is SPI `32 + n` for each SPI): per GSI its irqchip pin plus one,
    /// [`ROUTE_MSI`] and an index for an MSI entry, 0 none.
    routes: [u16; MAX_ROUTES],
    routed: bool,
    /// The MSI routes of the table in force.
    msi_routes: [MsiRoute; MAX_MSI_ROUTES],
    /// Resampled SPIs the guest completed, by pin (`INTID - 32`), for
    /// their resamplefds.
    acked: [u64; ACKED_WORDS],
    any_acked: bool,
    /// The interrupts that may be unowned, enabled and pending: a superset,
    /// so that choosing what to hand a vCPU looks at these instead of every
    /// interrupt. Every mutable access marks its interrupt
    /// ([`Self::irq_mut`], [`Self::sgi`]); [`Self::flush`] clears the marks
    /// of those that are not. Private ones per vCPU by INTID, SPIs by
    /// INTID - 32.
    maybe_private: [u32; MAX_VCPUS],
    maybe_spi: [u64; ACKED_WORDS],
    /// The PPIs the guest's virtual and physical timers are
    /// (`KVM_ARM_VCPU_TIMER_IRQ_VTIMER`, `_PTIMER`; 0: [`TIMER_PPI`],
    /// [`PTIMER_PPI`]): KCore delivers them, the shim never hands them over.
    timer_ppis: [u32; 2],
    /// The ITS and its LPIs ([`its`]).
    pub its: its::Its,
    /// vCPUs whose `GICR_CTLR.EnableLPIs` is set.
    lpis_on: u64,
    /// Per vCPU, the physical counter value at which its virtual timer
    /// fires, plus one, as its last exit reported (0: disabled or masked):
    /// the timer's output, which KCore delivers, for reads of its PPI's
    /// pending state ([`Self::set_clock`]).
    timer_at: [[u64; 2]; MAX_VCPUS],
    /// The physical counter as of the last exit or register access.
    clock: u64,
    /// The host's GIC is a GICv2: this vGIC is one ([`v2`]).
    host_v2: bool,
    /// A GICv2's CPU interface base, plus one (0: unset), and whether
    /// KCore mapped `GICV` there.
    cpu: u64,
    cpu_mapped: bool,
    /// A GICv2's pending SGIs per target vCPU and SGI: a mask of sources.
    sgi_src: [[u8; 16]; MAX_VCPUS],
    /// vCPUs that had more interrupts to take than their last entry held
    /// (KCore then asks for an underflow maintenance interrupt).
    queued_more: u64,
}

/// `vgic_check_iorange`: `size` bytes at `addr`, 64 KiB aligned and not
/// wrapping (`EINVAL`), inside an IPA space of `ipa_bits` (`E2BIG`; also
/// an empty range at its end, as KVM's `addr & ~kvm_phys_mask`).
pub fn check_iorange(addr: u64, size: u64, ipa_bits: u32) -> Result<(), Errno> {
    use super::errno::E2BIG;
    if !addr.is_multiple_of(0x1_0000) {
        return Err(EINVAL);
    }
    let end = addr.checked_add(size).ok_or(EINVAL)?;
    let limit = 1u64 << ipa_bits;
    if addr >= limit || end > limit {
        return Err(E2BIG);
    }
    Ok(())
}

/// The first offset of the per-interrupt register bank holding distributor
/// offset `o` (`0x80..=0x7FF` or `0xC00..=0xCFF`).
fn reg_first(o: u64) -> u64 {
    match o {
        0x80..=0xFF => 0x80,
        0x100..=0x17F => 0x100,
        0x180..=0x1FF => 0x180,
        0x200..=0x27F => 0x200,
        0x280..=0x2FF => 0x280,
        0x300..=0x37F => 0x300,
        0x380..=0x3FF => 0x380,
        0x400..=0x7FF => 0x400,
        _ => 0xC00,
    }
}

/// Where an MMIO access landed.
enum Frame {
    Dist(u64),
    /// A redistributor's RD frame (vCPU id, offset) or SGI frame.
    Rd(usize, u64),
    Sgi(usize, u64),
}

impl Vgic {
    /// A fresh (not created) vGIC; large: host tests only build it on the
    /// heap, the module's glue allocates it zeroed.
    pub fn reset(&mut self) {
        self.created = false;
        self.ready = false;
        self.dist = 0;
        self.rd.reset();
        self.nr_irqs = 0;
        self.nr_vcpus = 0;
        self.vcpu_mask = 0;
        self.enabled = false;
        self.routed = false;
        self.its.created = false;
        self.lpis_on = 0;
        self.cpu = 0;
        self.cpu_mapped = false;
        self.queued_more = 0;
    }

    /// Interrupts in use (private ones included).
    pub fn nr_irqs(&self) -> u32 {
        self.nr_irqs
    }

    /// `KVM_DEV_ARM_VGIC_GRP_ADDR`: the distributor's or the
    /// redistributors' (region 0's) base (`None` when unset, KVM's
    /// `VGIC_ADDR_UNDEF`).
    pub fn base(&self, redist: bool) -> Option<u64> {
        if redist {
            self.rd.first_base()
        } else {
            self.dist.checked_sub(1)
        }
    }

    /// Sets a base: the distributor's (`EEXIST` when already set, `EINVAL`
    /// unaligned (64 KiB), `E2BIG` outside an IPA space of `ipa_bits`:
    /// `vgic_check_iorange`), or a legacy redistributor region for
    /// `vcpus` vCPUs ([`rdist::Regions::set_legacy`]).
    pub fn set_base(
        &mut self,
        redist: bool,
        addr: u64,
        ipa_bits: u32,
        vcpus: usize,
    ) -> Result<(), Errno> {
        use super::errno::EEXIST;
        use super::uapi::vgic_attr::DIST_SIZE;
        if redist {
            let dist = self.base(false);
            self.rd.set_legacy(addr, ipa_bits, vcpus, dist)?;
            return self.registered(vcpus, ipa_bits);
        }
        if self.base(false).is_some() {
            return Err(EEXIST);
        }
        check_iorange(addr, DIST_SIZE, ipa_bits)?;
        self.dist = addr + 1;
        Ok(())
    }

    /// `KVM_VGIC_V3_ADDR_TYPE_REDIST_REGION`'s write with `vcpus` vCPUs
    /// ([`rdist::Regions::set_region`]).
    pub fn set_redist_region(
        &mut self,
        value: u64,
        ipa_bits: u32,
        vcpus: usize,
    ) -> Result<(), Errno> {
        self.rd.set_region(value, ipa_bits, vcpus)?;
        self.registered(vcpus, ipa_bits)
    }

    /// After a region was added with `vcpus` vCPUs there: KVM registers
    /// their redistributors at once (`vgic_register_all_redist_iodevs`),
    /// checking the frames (`vgic_v3_check_base`); if they do not fit, the
    /// region is freed again and the answer is `EINVAL`.
    fn registered(&mut self, vcpus: usize, ipa_bits: u32) -> Result<(), Errno> {
        if vcpus > 0 && !self.layout_ok(vcpus as u64, ipa_bits) {
            self.rd.pop();
            return Err(EINVAL);
        }
        Ok(())
    }

    /// The region `value`'s index names, as `ADDR_TYPE_REDIST_REGION` reads
    /// it back (`ENOENT` if there is none).
    pub fn redist_region(&self, value: u64) -> Result<u64, Errno> {
        self.rd.region(value)
    }

    /// Whether a vCPU created now, with `vcpus` there, gets a
    /// redistributor ([`rdist::Regions::has_room`]).
    pub fn redist_free(&self, vcpus: u64) -> bool {
        self.rd.has_room(vcpus as usize)
    }

    /// Whether the frames placed fit with `vcpus` vCPUs
    /// ([`rdist::Regions::fits`]; KVM checks whenever a vCPU gets a
    /// redistributor).
    pub fn layout_ok(&self, vcpus: u64, ipa_bits: u32) -> bool {
        self.rd.fits(vcpus as usize, ipa_bits, self.base(false))
    }

    /// Where a protected VM's ITS and redistributors lie, for KCore
    /// ([`super::vm::prepare_run`]): the ITS frame's base (`None` without a
    /// placed ITS), and the redistributor regions that hold vCPUs, each
    /// with how many, in frame order (at most [`LPI_REGIONS`]: KCore takes
    /// 8, so a ninth makes it refuse).
    pub fn lpi_frames(&self) -> (Option<u64>, [(u64, u64); LPI_REGIONS], usize) {
        let mut out = [(0, 0); LPI_REGIONS];
        let mut n = 0;
        let its = self.its.base().filter(|_| self.its.created);
        for (slot, r) in out.iter_mut().zip(self.rd.filled_regions(self.nr_vcpus)) {
            *slot = r;
            n += 1;
        }
        (its, out, n)
    }

    /// The first run's checks of the frames (`vgic_v3_map_resources`): both
    /// bases set, every vCPU a redistributor (`ENXIO`), no region over the
    /// distributor, each inside the IPA space of `ipa_bits` and off the
    /// others (`vgic_v3_check_base`: `EINVAL`).
    pub fn check_frames(&self, ipa_bits: u32) -> Result<(), Errno> {
        use super::errno::ENXIO;
        match (self.base(false), self.base(true)) {
            (Some(d), Some(_)) => {
                self.rd.check_run(self.nr_vcpus, d)?;
                if self.rd.fits(self.nr_vcpus, ipa_bits, Some(d)) {
                    Ok(())
                } else {
                    Err(EINVAL)
                }
            }
            _ => Err(ENXIO),
        }
    }

    /// `KVM_DEV_ARM_VGIC_GRP_NR_IRQS`: `EINVAL` out of range, `EBUSY` once
    /// set or initialised.
    pub fn set_nr_irqs(&mut self, n: u32) -> Result<(), Errno> {
        if !(NR_PRIVATE + 32..=MAX_IRQS).contains(&n) || !n.is_multiple_of(32) {
            return Err(EINVAL);
        }
        if self.ready || self.nr_irqs != 0 {
            return Err(EBUSY);
        }
        self.nr_irqs = n;
        Ok(())
    }

    /// `KVM_DEV_ARM_VGIC_CTRL_INIT` with the VM's vCPU ids in creation
    /// order: the interrupts at their reset state. Idempotent.
    pub fn init(&mut self, vcpus: &[u8]) {
        if self.ready {
            return;
        }
        if self.nr_irqs == 0 {
            self.nr_irqs = DEFAULT_IRQS;
        }
        self.nr_vcpus = vcpus.len().min(MAX_VCPUS);
        self.vcpu_mask = 0;
        for (i, &v) in vcpus.iter().take(MAX_VCPUS).enumerate() {
            self.rd_vcpu[i] = v;
            self.vcpu_mask |= 1 << (v as usize % MAX_VCPUS);
        }
        // A GICv2's interrupts reset to group 0 (KVM's `vgic_init`).
        let group = if self.host_v2 { 0 } else { f::GROUP1 };
        self.sgi_src = [[0; 16]; MAX_VCPUS];
        for v in 0..MAX_VCPUS {
            for (i, irq) in self.private[v].iter_mut().enumerate() {
                *irq = Irq {
                    // SGIs: enabled, edge; PPIs: level.
                    flags: group | if i < 16 { f::ENABLED | f::EDGE } else { 0 },
                    ..Irq::default()
                };
            }
            self.owned[v] = [0; IRQ_SLOTS];
            self.n_owned[v] = 0;
            self.pendbaser[v] = 0;
        }
        for irq in self.spis.iter_mut() {
            *irq = Irq {
                flags: group,
                ..Irq::default()
            };
        }
        self.enabled = false;
        self.propbaser = 0;
        // KVM's default routing (`kvm_vgic_setup_default_irq_routing`).
        self.routed = false;
        // Nothing is pending at reset.
        self.maybe_private = [0; MAX_VCPUS];
        self.timer_at = [[0; 2]; MAX_VCPUS];
        self.maybe_spi = [0; ACKED_WORDS];
        self.ready = true;
    }

    /// vCPU `v` left the guest at counter `now` with its virtual and EL1
    /// physical timers due at `deadlines` (`u64::MAX`: disabled or masked),
    /// as KCore's exit report says.
    pub fn timer_exit(&mut self, v: usize, deadlines: [u64; 2], now: u64) {
        if let Some(at) = self.timer_at.get_mut(v) {
            *at = deadlines.map(|d| d.wrapping_add(1));
        }
        self.clock = now;
    }

    /// The physical counter now, for the timers' output in register reads.
    pub fn set_clock(&mut self, now: u64) {
        self.clock = now;
    }

    /// Whether vCPU `v`'s timer `t` (0: virtual, 1: physical) asserts its
    /// interrupt (KCore delivers it; KVM's line level of the timer's PPI).
    fn timer_output(&self, v: usize, t: usize) -> bool {
        self.timer_at
            .get(v)
            .is_some_and(|at| at[t % 2] != 0 && at[t % 2] - 1 <= self.clock)
    }

    /// Whether vCPU `v` has a redistributor (it existed at init).
    pub fn has_vcpu(&self, v: usize) -> bool {
        self.exists(v)
    }

    fn exists(&self, v: usize) -> bool {
        v < MAX_VCPUS && self.vcpu_mask & (1 << v) != 0
    }

    fn irq(&self, v: usize, intid: u32) -> Option<&Irq> {
        if intid < NR_PRIVATE {
            self.private.get(v)?.get(intid as usize)
        } else if intid < self.nr_irqs {
            self.spis.get((intid - NR_PRIVATE) as usize)
        } else if intid >= LPI_START {
            let s = self.its.lpi_slot(intid)?;
            Some(&self.its.lpis[s].irq)
        } else {
            None
        }
    }

    /// An interrupt to change: marked as one that may have become a
    /// candidate ([`Self::maybe_private`]).
    fn irq_mut(&mut self, v: usize, intid: u32) -> Option<&mut Irq> {
        if intid < NR_PRIVATE {
            *self.maybe_private.get_mut(v)? |= 1 << intid;
            self.private.get_mut(v)?.get_mut(intid as usize)
        } else if intid < self.nr_irqs {
            let s = (intid - NR_PRIVATE) as usize;
            *self.maybe_spi.get_mut(s / 64)? |= 1 << (s % 64);
            self.spis.get_mut(s)
        } else if intid >= LPI_START {
            let s = self.its.lpi_slot(intid)?;
            self.its.maybe[s / 64] |= 1 << (s % 64);
            Some(&mut self.its.lpis[s].irq)
        } else {
            None
        }
    }

    /// How many words of [`Self::maybe_spi`] this VM's SPIs use: only
    /// those can have marks.
    fn spi_words(&self) -> usize {
        (self.nr_irqs.saturating_sub(NR_PRIVATE) as usize)
            .div_ceil(64)
            .min(ACKED_WORDS)
    }

    /// Whether `irq` could be handed to some vCPU, whichever it is routed
    /// to and whether the distributor is enabled: what keeps its mark.
    fn may_be_candidate(irq: &Irq) -> bool {
        irq.owner == 0 && (irq.active() || irq.enabled() && irq.pending())
    }

    /// Clears the marks of vCPU `v`'s private interrupts and of the SPIs
    /// that are no candidates (owned, disabled or not pending): only a
    /// mutable access can make them one again, and it marks them.
    fn prune(&mut self, v: usize) {
        if let Some(bits) = self.maybe_private.get(v).copied() {
            let mut keep = bits;
            let mut rest = bits;
            while rest != 0 {
                let i = rest.trailing_zeros();
                rest &= rest - 1;
                if !Self::may_be_candidate(&self.private[v][i as usize]) {
                    keep &= !(1 << i);
                }
            }
            self.maybe_private[v] = keep;
        }
        for w in 0..self.spi_words() {
            let mut rest = self.maybe_spi[w];
            while rest != 0 {
                let b = rest.trailing_zeros() as usize;
                rest &= rest - 1;
                let keep = self
                    .spis
                    .get(w * 64 + b)
                    .is_some_and(Self::may_be_candidate);
                if !keep {
                    self.maybe_spi[w] &= !(1 << b);
                }
            }
        }
        for w in 0..self.its.maybe.len() {
            let mut rest = self.its.maybe[w];
            while rest != 0 {
                let b = rest.trailing_zeros() as usize;
                rest &= rest - 1;
                let keep = self
                    .its
                    .lpis
                    .get(w * 64 + b)
                    .is_some_and(|l| l.intid != 0 && Self::may_be_candidate(&l.irq));
                if !keep {
                    self.its.maybe[w] &= !(1 << b);
                }
            }
        }
    }

    /// The vCPU an interrupt goes to: `v` for its private ones, the routed
    /// one for SPIs.
    fn target(&self, v: usize, intid: u32, irq: &Irq) -> Option<usize> {
        if intid < NR_PRIVATE {
            return Some(v);
        }
        if intid >= LPI_START {
            // An LPI's route is its collection's vCPU.
            let t = irq.route as usize;
            return self.exists(t).then_some(t);
        }
        if self.host_v2 {
            return self.target_v2(irq.route);
        }
        vcpu_of_mpidr(u64::from(irq.route), MAX_VCPUS).filter(|&t| self.exists(t))
    }

    /// Whether `irq` should be handed to a vCPU now.
    fn deliverable(&self, irq: &Irq) -> bool {
        self.enabled && irq.enabled() && irq.pending()
    }

    /// The kick mask for interrupt `intid` of `v` if it is deliverable.
    fn kick_for(&self, v: usize, intid: u32) -> u64 {
        match self.irq(v, intid) {
            Some(irq) if self.deliverable(irq) => match irq.owner {
                0 => self.target(v, intid, irq).map_or(0, |t| 1 << t),
                o => 1 << (o - 1),
            },
            _ => 0,
        }
    }

    /// `KVM_IRQ_LINE` for a PPI of vCPU `v` or an SPI (`v` ignored): the
    /// vCPUs to kick. `EBUSY` before init, `EINVAL` for no such interrupt.
    /// As KVM's `kvm_vgic_inject_irq`: a level-sensitive interrupt's line
    /// follows `level`; an edge-triggered one becomes pending at every
    /// `level` 1 (its line is not tracked) and ignores 0.
    pub fn set_line(&mut self, v: usize, intid: u32, level: bool) -> Result<u64, Errno> {
        if !self.ready {
            return Err(EBUSY);
        }
        if intid < NR_PRIVATE && !self.exists(v) || intid >= self.nr_irqs {
            return Err(EINVAL);
        }
        let irq = self.irq_mut(v, intid).ok_or(EINVAL)?;
        if !irq.has(f::EDGE) {
            irq.set(f::LINE, level);
        } else if level {
            irq.set(f::LATCH, true);
        }
        Ok(self.kick_for(v, intid))
    }

    /// An irqfd's signal on SPI `intid`: the line raised, as Linux 6.1's
    /// `kvm_arch_set_irq_inatomic` does on arm64, and never lowered (an
    /// edge-triggered SPI becomes pending; a level-sensitive one stays high
    /// until `KVM_IRQ_LINE` lowers it). With `resample` the line stays high
    /// until the guest completes the interrupt. Returns the vCPUs to kick;
    /// nothing for an SPI the vGIC does not have (as KVM's routing ignores
    /// it).
    pub fn irqfd(&mut self, intid: u32, resample: bool) -> u64 {
        if intid < NR_PRIVATE || intid >= self.nr_irqs {
            return 0;
        }
        let Ok(k) = self.set_line(0, intid, true) else {
            return 0;
        };
        if resample && let Some(irq) = self.irq_mut(0, intid) {
            irq.set(f::RESAMPLE, true);
        }
        k
    }

    /// The last resampling irqfd of SPI `intid` went: its line goes low.
    pub fn end_resample(&mut self, intid: u32) -> u64 {
        let Some(irq) = self.irq_mut(0, intid) else {
            return 0;
        };
        if !irq.has(f::RESAMPLE) || intid < NR_PRIVATE {
            return 0;
        }
        irq.set(f::RESAMPLE, false);
        self.set_line(0, intid, false).unwrap_or(0)
    }

    /// The SPI an irqfd of `gsi` drives (`KVM_SET_GSI_ROUTING`'s table, or
    /// KVM's default routing), if any.
    pub fn spi_of(&self, gsi: u32) -> Option<u32> {
        if !self.routed {
            let spis = self.nr_irqs.saturating_sub(NR_PRIVATE);
            return (gsi < spis).then_some(gsi + NR_PRIVATE);
        }
        match self.routes.get(gsi as usize).copied() {
            None | Some(0) => None,
            Some(r) if r & ROUTE_MSI != 0 => None,
            Some(pin) => Some(u32::from(pin) - 1 + NR_PRIVATE),
        }
    }

    /// The MSI route of `gsi`, if the table in force has one.
    pub fn msi_of(&self, gsi: u32) -> Option<MsiRoute> {
        let r = *self.routes.get(gsi as usize).filter(|_| self.routed)?;
        if r & ROUTE_MSI == 0 {
            return None;
        }
        self.msi_routes.get(usize::from(r & !ROUTE_MSI)).copied()
    }

    /// Sets MSI route `n` (`KVM_SET_GSI_ROUTING`, before [`Self::set_routes`]
    /// names it); ignored past [`MAX_MSI_ROUTES`].
    pub fn set_msi_route(&mut self, n: usize, r: MsiRoute) {
        if let Some(m) = self.msi_routes.get_mut(n) {
            *m = r;
        }
    }

    /// Installs a routing table (`KVM_SET_GSI_ROUTING`, checked by the
    /// caller): `route(gsi)` is [`Self::routes`]' entry for each GSI.
    pub fn set_routes(&mut self, route: impl Fn(usize) -> u16) {
        for (gsi, r) in self.routes.iter_mut().enumerate() {
            *r = route(gsi);
        }
        self.routed = true;
    }

    /// The GSIs whose SPIs are in the bitmap `pins` (by pin), for their
    /// resamplefds: every GSI routed to one (KVM notifies the GSI its
    /// table names for the pin, the last one routed there).
    pub fn gsis_of(&self, pins: &[u64; ACKED_WORDS]) -> [u64; GSI_WORDS] {
        let mut out = [0u64; GSI_WORDS];
        if !self.routed {
            out[..ACKED_WORDS].copy_from_slice(pins);
            return out;
        }
        let mut last = [u16::MAX; ACKED_WORDS * 64];
        for (gsi, &r) in self.routes.iter().enumerate() {
            if r != 0
                && r & ROUTE_MSI == 0
                && let Some(l) = last.get_mut(usize::from(r) - 1)
            {
                *l = gsi as u16;
            }
        }
        for (pin, &gsi) in last.iter().enumerate() {
            if gsi != u16::MAX && pins[pin / 64] & (1 << (pin % 64)) != 0 {
                out[usize::from(gsi) / 64] |= 1 << (gsi % 64);
            }
        }
        out
    }

    /// `KVM_DEV_ARM_VGIC_GRP_LEVEL_INFO` read: the lines of the 32
    /// interrupts from `intid` (a multiple of 32) of vCPU `v`'s view that
    /// are level-sensitive and high (`vgic_read_irq_line_level_info`; SGIs
    /// and interrupts past the configured ones read as 0).
    pub fn line_levels(&self, v: usize, intid: u32) -> u32 {
        let mut val = 0;
        for i in 0..32 {
            let id = intid + i;
            if id < 16 {
                continue;
            }
            if self
                .irq(v, id)
                .is_some_and(|q| !q.has(f::EDGE) && q.has(f::LINE))
            {
                val |= 1 << i;
            }
        }
        val
    }

    /// `KVM_DEV_ARM_VGIC_GRP_LEVEL_INFO` write: the lines of those 32
    /// interrupts set from `val`, whatever their configuration (KVM's
    /// `vgic_write_irq_line_level_info`, so that a restore need not come
    /// after the configuration); SGIs and interrupts past the configured
    /// ones are left alone. Returns the vCPUs to kick.
    pub fn set_line_levels(&mut self, v: usize, intid: u32, val: u32) -> u64 {
        let mut kick = 0;
        for i in 0..32 {
            let id = intid + i;
            if id < 16 {
                continue;
            }
            if let Some(q) = self.irq_mut(v, id) {
                q.set(f::LINE, val & (1 << i) != 0);
                kick |= self.kick_for(v, id);
            }
        }
        kick
    }

    /// Takes the bitmap of resampled SPIs (by pin) the guest completed
    /// since the last call; `None` if there are none (the common case, on
    /// every exit: no bitmap is built).
    pub fn take_acked(&mut self) -> Option<[u64; ACKED_WORDS]> {
        if !self.any_acked {
            return None;
        }
        self.any_acked = false;
        Some(core::mem::replace(&mut self.acked, [0; ACKED_WORDS]))
    }

    /// An SGI register write by vCPU `from` (`group1`: `ICC_SGI1R_EL1`,
    /// which may raise SGIs of either group; else only group 0 ones): the
    /// vCPUs to kick.
    pub fn sgi(&mut self, from: usize, value: u64, group1: bool) -> u64 {
        if !self.ready {
            return 0;
        }
        let intid = crate::psci::sgi_intid(value);
        let targets = sgi_targets(value, from, MAX_VCPUS) & self.vcpu_mask;
        let mut kick = 0;
        for t in 0..MAX_VCPUS {
            if targets & (1 << t) == 0 {
                continue;
            }
            self.maybe_private[t] |= 1 << intid;
            let irq = &mut self.private[t][intid as usize];
            if group1 || !irq.has(f::GROUP1) {
                irq.set(f::LATCH, true);
                kick |= self.kick_for(t, intid);
            }
        }
        kick
    }

    /// Whether vCPU `v` has an interrupt to take: one it owns that is
    /// pending, or a deliverable one routed to it (what ends a WFI).
    pub fn has_work(&self, v: usize) -> bool {
        if !self.ready || v >= MAX_VCPUS {
            return false;
        }
        let owned = &self.owned[v][..self.n_owned[v] as usize];
        if owned.iter().any(|&i| {
            self.irq(v, u32::from(i))
                .is_some_and(|q| q.pending() && q.enabled())
        }) {
            return true;
        }
        self.candidates(v, |_, irq| self.deliverable(irq))
    }

    /// Whether an unowned interrupt goes into a list register: when it is
    /// deliverable, or active (as KVM's `vgic_target_oracle` keeps an
    /// active interrupt on its vCPU whatever its enable: the guest must be
    /// able to complete it, e.g. one user space restored active).
    fn wanted(&self, irq: &Irq) -> bool {
        irq.active() || self.deliverable(irq)
    }

    /// Calls `take(intid, irq)` for each unowned interrupt routed to `v`
    /// that goes into a list register ([`Self::wanted`]; not the timer);
    /// true as soon as one returns true.
    fn candidates(&self, v: usize, mut take: impl FnMut(u32, &Irq) -> bool) -> bool {
        if v >= MAX_VCPUS {
            return false;
        }
        // Only the marked ones can be candidates ([`Self::maybe_private`]),
        // visited in INTID order as a full scan would.
        let mut rest = self.maybe_private[v];
        while rest != 0 {
            let intid = rest.trailing_zeros();
            rest &= rest - 1;
            let irq = &self.private[v][intid as usize];
            // KCore's: the timers' PPIs, and PPIs 27 and 30 behind them
            // (which KCore refuses from the shim whatever the guest's
            // timers are).
            let timer = intid == TIMER_PPI
                || intid == PTIMER_PPI
                || intid == self.timer_ppi(0)
                || intid == self.timer_ppi(1);
            if !timer && irq.owner == 0 && self.wanted(irq) && take(intid, irq) {
                return true;
            }
        }
        let nspi = (self.nr_irqs.saturating_sub(NR_PRIVATE)) as usize;
        let spis = &self.spis[..nspi.min(self.spis.len())];
        for (w, &word) in self.maybe_spi[..self.spi_words()].iter().enumerate() {
            let mut rest = word;
            while rest != 0 {
                let s = w * 64 + rest.trailing_zeros() as usize;
                rest &= rest - 1;
                let Some(irq) = spis.get(s) else {
                    continue;
                };
                let intid = NR_PRIVATE + s as u32;
                if irq.owner == 0
                    && self.wanted(irq)
                    && self.target(v, intid, irq) == Some(v)
                    && take(intid, irq)
                {
                    return true;
                }
            }
        }
        for (w, &word) in self.its.maybe.iter().enumerate() {
            let mut rest = word;
            while rest != 0 {
                let s = w * 64 + rest.trailing_zeros() as usize;
                rest &= rest - 1;
                let Some(l) = self.its.lpis.get(s) else {
                    continue;
                };
                if l.intid != 0
                    && l.irq.owner == 0
                    && self.wanted(&l.irq)
                    && l.irq.route == v as u32
                    && take(l.intid, &l.irq)
                {
                    return true;
                }
            }
        }
        false
    }

    /// Timer `t`'s PPI: the virtual timer's (0) or the physical timer's
    /// (1).
    pub fn timer_ppi(&self, t: usize) -> u32 {
        match self.timer_ppis[t % 2] {
            0 => [TIMER_PPI, PTIMER_PPI][t % 2],
            p => p,
        }
    }

    /// Makes PPI `ppi` (16..=31) timer `t`'s ([`Self::timer_ppi`]).
    pub fn set_timer_ppi(&mut self, t: usize, ppi: u32) {
        self.timer_ppis[t % 2] = ppi;
    }

    /// How vCPU `v`'s timer PPIs are configured, as `run::entry_flags` for
    /// KCore, which delivers them: each disabled (or the distributor is),
    /// its priority, group and INTID, the virtual timer's in the low half,
    /// the physical timer's in the high one. 0 (KCore's defaults) without
    /// a vGIC.
    pub fn timer_flags(&self, v: usize) -> u64 {
        use kcore_abi::run::entry_flags::PTIMER_SHIFT;
        let more = if self.queued_more & (1 << (v % MAX_VCPUS)) != 0 {
            kcore_abi::run::entry_flags::MORE_QUEUED
        } else {
            0
        };
        self.timer_half(v, self.timer_ppi(0), TIMER_PPI)
            | self.timer_half(v, self.timer_ppi(1), PTIMER_PPI) << PTIMER_SHIFT
            | more
    }

    /// One timer's half of [`Self::timer_flags`]: PPI `ppi`, whose default
    /// (INTID field 0) is `default`.
    fn timer_half(&self, v: usize, ppi: u32, default: u32) -> u64 {
        use kcore_abi::run::entry_flags::{
            TIMER_DISABLED, TIMER_GROUP0, TIMER_INTID_SHIFT, TIMER_PRIORITY_SHIFT,
        };
        let Some(t) = self
            .private
            .get(v)
            .map(|p| p[ppi as usize % NR_PRIVATE as usize])
        else {
            return 0;
        };
        if !self.ready {
            return 0;
        }
        let mut flags = u64::from(t.priority) << TIMER_PRIORITY_SHIFT;
        if ppi != default {
            flags |= u64::from(ppi) << TIMER_INTID_SHIFT;
        }
        if !self.enabled || !t.enabled() {
            flags |= TIMER_DISABLED;
        }
        if !t.has(f::GROUP1) {
            flags |= TIMER_GROUP0;
        }
        flags
    }

    /// The interrupt words for vCPU `v`'s next entry (at most
    /// [`IRQ_SLOTS`]): its active interrupts, then the pending ones by
    /// priority. Those chosen become `v`'s; owned ones not chosen again are
    /// given back.
    pub fn flush(&mut self, v: usize, out: &mut [u64; IRQ_SLOTS]) -> usize {
        if !self.ready || v >= MAX_VCPUS {
            return 0;
        }
        // (key, intid): active first, then priority, then INTID.
        let mut best: [(u32, u32); IRQ_SLOTS] = [(u32::MAX, 0); IRQ_SLOTS];
        let mut wanted = 0usize;
        let mut insert = |key: u32, intid: u32| {
            if key < best[IRQ_SLOTS - 1].0 {
                let mut i = IRQ_SLOTS - 1;
                while i > 0 && best[i - 1].0 > key {
                    best[i] = best[i - 1];
                    i -= 1;
                }
                best[i] = (key, intid);
            }
        };
        let key = |intid: u32, irq: &Irq| -> u32 {
            u32::from(!irq.active()) << 24 | u32::from(irq.priority) << 16 | intid
        };
        for k in 0..self.n_owned[v] as usize {
            let intid = u32::from(self.owned[v][k]);
            if let Some(irq) = self.irq(v, intid)
                && (irq.active() || self.deliverable(irq))
            {
                insert(key(intid, irq), intid);
                wanted += 1;
            }
        }
        self.candidates(v, |intid, irq| {
            insert(key(intid, irq), intid);
            wanted += 1;
            false
        });
        // The last list register only for an interrupt beyond three active
        // ones ([`IRQ_SLOTS`]); the key's top bit is set for pending ones.
        let take = if best[..SPARE_SLOTS]
            .iter()
            .all(|&(k, _)| k != u32::MAX && k >> 24 == 0)
        {
            IRQ_SLOTS
        } else {
            SPARE_SLOTS
        };
        // Give back what is owned but not chosen.
        for k in 0..self.n_owned[v] as usize {
            let intid = u32::from(self.owned[v][k]);
            if best[..take]
                .iter()
                .any(|&(key, i)| key != u32::MAX && i == intid)
            {
                continue;
            }
            self.unload(v, intid);
        }
        let mut n = 0;
        let v2 = self.host_v2;
        for &(k, intid) in &best[..take] {
            if k == u32::MAX {
                break;
            }
            let Some(irq) = self.irq_mut(v, intid) else {
                continue;
            };
            // A resampled level interrupt is never handed over pending and
            // active at once: its completion must show (as in KVM).
            let pending = irq.pending() && !(irq.active() && irq.has(f::RESAMPLE));
            let mut state = 0;
            if pending {
                state |= irq::PENDING;
            }
            if irq.active() {
                state |= irq::ACTIVE;
            }
            irq.owner = v as u8 + 1;
            let word = irq::encode(intid, irq.priority, irq.has(f::GROUP1), 0);
            out[n] = if v2 && intid < 16 {
                word | self.sgi_word(v, intid, state)
            } else {
                if pending && irq.has(f::EDGE) {
                    irq.set(f::LATCH, false);
                }
                irq.set(f::LR_PENDING, pending);
                irq::with_state(word, state)
            };
            self.owned[v][n] = intid as u16;
            n += 1;
        }
        self.n_owned[v] = n as u8;
        // More to take than was handed over.
        let more = wanted > n;
        self.queued_more = self.queued_more & !(1 << v) | u64::from(v2 && more && n >= 2) << v;
        self.prune(v);
        #[cfg(test)]
        self.check_marks();
        n
    }

    /// Takes interrupt `intid` back from vCPU `v`'s list registers: an
    /// edge still pending there is latched again (a GICv2 SGI's source
    /// pending again).
    fn unload(&mut self, v: usize, intid: u32) {
        let v2_sgi = self.host_v2 && intid < 16;
        if let Some(q) = self.irq_mut(v, intid) {
            let repend = q.has(f::EDGE) && q.has(f::LR_PENDING);
            if repend {
                q.set(f::LATCH, true);
            }
            q.set(f::LR_PENDING, false);
            q.owner = 0;
            if repend && v2_sgi {
                self.sgi_unload(v, intid);
            }
        }
    }

    /// Every interrupt that could be a candidate is marked (the superset
    /// [`Self::candidates`] relies on): checked after every flush in the
    /// host tests, so a mutation that bypassed the marks fails them.
    #[cfg(test)]
    fn check_marks(&self) {
        for v in 0..MAX_VCPUS {
            for (i, irq) in self.private[v].iter().enumerate() {
                assert!(
                    !Self::may_be_candidate(irq) || self.maybe_private[v] & (1 << i) != 0,
                    "vCPU {v} INTID {i} is a candidate but not marked"
                );
            }
        }
        let nspi = (self.nr_irqs.saturating_sub(NR_PRIVATE)) as usize;
        for (s, irq) in self.spis[..nspi.min(self.spis.len())].iter().enumerate() {
            assert!(
                !Self::may_be_candidate(irq) || self.maybe_spi[s / 64] & (1 << (s % 64)) != 0,
                "SPI {} is a candidate but not marked",
                s + NR_PRIVATE as usize
            );
        }
        for (s, l) in self.its.lpis.iter().enumerate() {
            assert!(
                l.intid == 0
                    || !Self::may_be_candidate(&l.irq)
                    || self.its.maybe[s / 64] & (1 << (s % 64)) != 0,
                "LPI {} is a candidate but not marked",
                l.intid
            );
        }
    }

    /// The states an exit reports for the words `supplied` at `v`'s entry:
    /// what the guest did with them. Returns the vCPUs to kick (an SPI
    /// rerouted meanwhile goes to its new target).
    pub fn fold(&mut self, v: usize, supplied: &[u64], states: &[u64]) -> u64 {
        let mut kick = 0;
        if v >= MAX_VCPUS {
            return 0;
        }
        for (&w, &s) in supplied.iter().zip(states) {
            let intid = irq::vintid(w);
            let Some(irq) = self.irq_mut(v, intid) else {
                continue;
            };
            if irq.owner != v as u8 + 1 {
                continue;
            }
            let s = irq::state(s);
            irq.set(f::ACTIVE, s & irq::ACTIVE != 0);
            irq.set(f::LR_PENDING, s & irq::PENDING != 0);
            if !irq.has(f::EDGE) && s & irq::PENDING == 0 {
                // Acknowledged: a level interrupt's software pend is spent.
                irq.set(f::LATCH, false);
            }
            let resampled = irq.has(f::RESAMPLE) && !irq.has(f::EDGE) && s == 0;
            if resampled {
                // Completed: the irqfd's line drops, its resamplefd fires.
                irq.set(f::RESAMPLE, false);
                irq.set(f::LINE, false);
            }
            let irq = *irq;
            if resampled && intid >= NR_PRIVATE {
                let gsi = (intid - NR_PRIVATE) as usize;
                if let Some(w) = self.acked.get_mut(gsi / 64) {
                    *w |= 1 << (gsi % 64);
                    self.any_acked = true;
                }
            }
            let target = self.target(v, intid, &irq);
            if !irq.active() && (!irq.pending() || target != Some(v)) {
                self.unload(v, intid);
                kick |= self.kick_for(v, intid);
            }
        }
        // Keep the owned list to what is still owned.
        let mut n = 0;
        for k in 0..self.n_owned[v] as usize {
            let intid = self.owned[v][k];
            if self
                .irq(v, u32::from(intid))
                .is_some_and(|q| q.owner == v as u8 + 1)
            {
                self.owned[v][n] = intid;
                n += 1;
            }
        }
        self.n_owned[v] = n as u8;
        kick
    }

    // ---- MMIO ------------------------------------------------------------------------

    fn frame(&self, addr: u64) -> Option<Frame> {
        use super::uapi::vgic_attr::DIST_SIZE;
        let size = if self.host_v2 {
            v2::DIST_SIZE
        } else {
            DIST_SIZE
        };
        if let Some(d) = self.base(false)
            && addr.wrapping_sub(d) < size
        {
            return Some(Frame::Dist(addr - d));
        }
        if self.host_v2 {
            return None;
        }
        let (i, o) = self.rd.locate(addr, self.nr_vcpus)?;
        let v = self.rd_vcpu[i] as usize;
        Some(if o < 0x1_0000 {
            Frame::Rd(v, o)
        } else {
            Frame::Sgi(v, o - 0x1_0000)
        })
    }

    /// Whether `addr` is one of the vGIC's registers (once initialised).
    pub fn claims(&self, addr: u64) -> bool {
        self.ready && self.frame(addr).is_some()
    }

    /// An MMIO access by vCPU `v` (`width` bytes at `addr`; `data` for a
    /// write): `None` if the address is not the vGIC's, else the value a
    /// read returns and the vCPUs to kick.
    pub fn mmio(
        &mut self,
        v: usize,
        addr: u64,
        width: u64,
        write: bool,
        data: u64,
    ) -> Option<(u64, u64)> {
        if !self.ready {
            return None;
        }
        let frame = self.frame(addr)?;
        Some(match frame {
            Frame::Dist(o) if self.host_v2 => self.dist_access_v2(v, o, width, write, data),
            Frame::Dist(o) => self.dist_access(v, o, width, write, data),
            Frame::Rd(t, o) => (self.rd_access(t, o, width, write, data), 0),
            Frame::Sgi(t, o) => self.sgi_frame_access(t, o, width, write, data),
        })
    }

    /// Whether userspace reaches a 32-bit register at `offset` of the
    /// distributor or (`rd`) a redistributor ([`DIST_REGS`], [`RD_REGS`]):
    /// `KVM_HAS_DEVICE_ATTR`'s answer, and where [`Vgic::uaccess`] goes
    /// further (KVM's `vgic_get_mmio_region`).
    pub fn has_reg(&self, rd: bool, offset: u64) -> bool {
        let table: &[Region] = if rd { &RD_REGS } else { &DIST_REGS };
        let irqs = u64::from(self.nr_irqs.max(NR_PRIVATE));
        offset.is_multiple_of(4)
            && table.iter().any(|&(at, len, bits)| {
                (at..at + len).contains(&offset) && (bits == 0 || (offset - at) * 8 / bits < irqs)
            })
    }

    /// `KVM_DEV_ARM_VGIC_GRP_{DIST,REDIST}_REGS`: a 32-bit register at
    /// `offset` of the distributor, or of vCPU `rd`'s redistributor (RD
    /// then SGI frame), as the guest would access it. `EBUSY` before init,
    /// `ENXIO` for a vCPU without a redistributor; an offset with no
    /// register ([`Vgic::has_reg`]) reads 0 and ignores a write. Returns
    /// the value read (0 for a write) and the vCPUs to kick.
    pub fn uaccess(
        &mut self,
        rd: Option<usize>,
        offset: u64,
        write: bool,
        value: u32,
    ) -> Result<(u64, u64), Errno> {
        use super::errno::ENXIO;
        if !self.ready {
            return Err(EBUSY);
        }
        let data = u64::from(value);
        match rd {
            Some(v) if !self.exists(v) => Err(ENXIO),
            // No register there: reads 0, a write is ignored, as
            // `vgic_uaccess_{read,write}` answer.
            _ if !self.has_reg(rd.is_some(), offset) => Ok((0, 0)),
            None if offset < 0x1_0000 => Ok(self.dist_access(0, offset, 4, write, data)),
            Some(v) if offset < 0x1_0000 => Ok((self.rd_access(v, offset, 4, write, data), 0)),
            Some(v) if offset < 0x2_0000 => {
                Ok(self.sgi_frame_access(v, offset - 0x1_0000, 4, write, data))
            }
            _ => Ok((0, 0)),
        }
    }

    /// `KVM_DEV_ARM_VGIC_GRP_DIST_REGS` of a GICv2: the 32-bit register
    /// at `offset` as vCPU `v` sees it (unaligned or past the 4 KiB frame:
    /// reads 0, a write ignored). Returns the value read and the vCPUs to
    /// kick.
    pub fn uaccess_v2(&mut self, v: usize, offset: u64, write: bool, value: u32) -> (u64, u64) {
        if !offset.is_multiple_of(4) || offset >= v2::DIST_SIZE {
            return (0, 0);
        }
        self.dist_access_v2(v, offset, 4, write, u64::from(value))
    }

    fn dist_access(&mut self, v: usize, o: u64, width: u64, write: bool, data: u64) -> (u64, u64) {
        match (o, width) {
            (0x0, 4) => {
                if write {
                    let was = self.enabled;
                    self.enabled = data & 2 != 0;
                    if !was && self.enabled {
                        return (0, self.vcpu_mask);
                    }
                    (0, 0)
                } else {
                    (u64::from(self.enabled) << 1 | 1 << 4 | 1 << 6, 0)
                }
            }
            (0x4, 4) => {
                // With an ITS: LPIs and 16 ID bits, else 10 (as KVM).
                let lpis = if self.its.created {
                    1 << 17 | u64::from(its::ID_BITS - 1) << 19
                } else {
                    (10 - 1) << 19
                };
                (u64::from((self.nr_irqs >> 5).saturating_sub(1)) | lpis, 0)
            }
            (0x8, 4) => (IIDR, 0),
            (0x80..=0x7FF, _) | (0xC00..=0xCFF, _) => {
                let first = reg_first(o);
                let bits = match first {
                    0x400 => 8,
                    0xC00 => 2,
                    _ => 1,
                };
                let intid = ((o - first) * 8 / bits) as u32;
                // The distributor does not reach private interrupts.
                if intid < NR_PRIVATE {
                    return (0, 0);
                }
                self.irq_regs(v, first, intid, width, write, data)
            }
            (0x6100..=0x7FDF, 8 | 4) => {
                let intid = ((o - 0x6000) / 8) as u32;
                let high = o % 8 == 4;
                if width == 8 && !o.is_multiple_of(8) {
                    return (0, 0);
                }
                let Some(irq) = self.irq_mut(v, intid) else {
                    return (0, 0);
                };
                if write {
                    if !high {
                        irq.route = (data & 0xFF_FFFF) as u32;
                    }
                    (0, self.kick_for(v, intid))
                } else if high {
                    (0, 0)
                } else {
                    (u64::from(irq.route), 0)
                }
            }
            (0xFFE8, 4) => (PIDR2, 0),
            _ => (0, 0),
        }
    }

    fn rd_access(&mut self, t: usize, o: u64, width: u64, write: bool, data: u64) -> u64 {
        match (o, width) {
            (0x0, 4) => {
                if write {
                    self.write_rd_ctlr(t, data);
                    0
                } else {
                    u64::from(self.lpis_enabled(t))
                }
            }
            (0x4, 4) => IIDR,
            (0x8, 8) | (0x8, 4) | (0xC, 4) => {
                let i = self.rd_vcpu[..self.nr_vcpus]
                    .iter()
                    .position(|&x| x as usize == t)
                    .unwrap_or(0);
                let last = u64::from(self.rd.is_last(i, self.nr_vcpus)) << 4;
                let plpis = u64::from(self.its.created);
                let typer = mpidr_of(t) << 32 | (t as u64 & 0xFFFF) << 8 | last | plpis;
                match (o, width) {
                    (0x8, 8) => typer,
                    (0x8, _) => typer & 0xFFFF_FFFF,
                    _ => typer >> 32,
                }
            }
            (0x70, 8) | (0x78, 8) | (0x70, 4) | (0x74, 4) | (0x78, 4) | (0x7C, 4) => {
                let lpis_on = self.lpis_enabled(t);
                let reg = if o < 0x78 {
                    &mut self.propbaser
                } else {
                    &mut self.pendbaser[t]
                };
                let shift = (o % 8) * 8;
                let mask = if width == 8 {
                    u64::MAX
                } else {
                    0xFFFF_FFFF << shift
                };
                if write {
                    // Fixed once LPIs are on (KVM ignores such writes).
                    if !lpis_on {
                        *reg = (*reg & !mask) | ((data << shift) & mask);
                    }
                    0
                } else {
                    (*reg & mask) >> shift
                }
            }
            (0xFFE8, 4) => PIDR2,
            _ => 0,
        }
    }

    fn sgi_frame_access(
        &mut self,
        t: usize,
        o: u64,
        width: u64,
        write: bool,
        data: u64,
    ) -> (u64, u64) {
        let first = match o {
            0x80 | 0x100 | 0x180 | 0x200 | 0x280 | 0x300 | 0x380 => o,
            0x400..=0x41F => 0x400,
            0xC00 | 0xC04 => 0xC00,
            _ => return (0, 0),
        };
        let bits = match first {
            0x400 => 8,
            0xC00 => 2,
            _ => 1,
        };
        let intid = ((o - first) * 8 / bits) as u32;
        self.irq_regs(t, first, intid, width, write, data)
    }

    /// A per-interrupt register (`first` is its offset in the distributor's
    /// layout) covering `width` bytes of interrupts from `intid` of vCPU
    /// `v`'s view.
    fn irq_regs(
        &mut self,
        v: usize,
        first: u64,
        intid: u32,
        width: u64,
        write: bool,
        data: u64,
    ) -> (u64, u64) {
        let bits: u32 = match first {
            0x400 => 8,
            0xC00 => 2,
            _ => 1,
        };
        // Priorities take bytes or words; everything else words only.
        if width != 4 && !(first == 0x400 && width == 1) {
            return (0, 0);
        }
        let count = (width as u32 * 8) / bits;
        let mut value = 0u64;
        let mut kick = 0u64;
        // The timer's PPI is pending while the timer asserts it, as its
        // line level in KVM.
        let asserted = |id: u32| (0..2).any(|t| self.timer_ppi(t) == id && self.timer_output(v, t));
        let timers: [bool; 32] = core::array::from_fn(|id| asserted(id as u32));
        for k in 0..count {
            let id = intid + k;
            let field = (data >> (k * bits)) & ((1 << bits) - 1);
            // A GICv2's SGIs are pended per source (`GICD_SPENDSGIR`).
            let v2_sgi = self.host_v2 && id < 16 && matches!(first, 0x200 | 0x280);
            let Some(irq) = self.irq_mut(v, id) else {
                continue;
            };
            if write && v2_sgi {
                continue;
            }
            let shift = k * bits;
            if !write {
                let got = match first {
                    0x80 => u64::from(irq.has(f::GROUP1)),
                    0x100 | 0x180 => u64::from(irq.enabled()),
                    0x200 | 0x280 => u64::from(
                        irq.pending() || timers.get(id as usize).copied().unwrap_or(false),
                    ),
                    0x300 | 0x380 => u64::from(irq.active()),
                    0x400 => u64::from(irq.priority),
                    _ => u64::from(irq.has(f::EDGE)) << 1,
                };
                value |= got << shift;
                continue;
            }
            match first {
                0x80 => irq.set(f::GROUP1, field != 0),
                0x100 if field != 0 => irq.set(f::ENABLED, true),
                0x180 if field != 0 => irq.set(f::ENABLED, false),
                0x200 if field != 0 => irq.set(f::LATCH, true),
                0x280 if field != 0 => {
                    irq.set(f::LATCH, false);
                    irq.set(f::LR_PENDING, false);
                }
                0x300 if field != 0 => irq.set(f::ACTIVE, true),
                0x380 if field != 0 => irq.set(f::ACTIVE, false),
                0x400 => irq.priority = (field as u8) & 0xF8,
                0xC00 if id >= NR_PRIVATE => irq.set(f::EDGE, field & 2 != 0),
                _ => {}
            }
            kick |= self.kick_for(v, id);
        }
        (value, kick)
    }
}

#[cfg(test)]
mod tests;
