//! The GICv2 flavour of the vGIC (`KVM_DEV_TYPE_ARM_VGIC_V2`), offered
//! only on a GICv2 host (KCore's `features::GICV2`), as a GICv3 is only on
//! a GICv3 host.
//!
//! The interrupt state, the choice of list-register entries and the
//! per-interrupt registers are the GICv3 model's ([`super::Vgic`]); what
//! differs is here, after KVM's `vgic-mmio-v2.c` (Linux 6.1):
//!
//! - one 4 KiB distributor frame (`KVM_VGIC_V2_ADDR_TYPE_DIST`) and the
//!   guest's CPU interface (`KVM_VGIC_V2_ADDR_TYPE_CPU`, 8 KiB), each 4 KiB
//!   aligned; the CPU interface is not emulated: at the first run KCore
//!   maps the hardware's `GICV` there (`HostSetVgicCpu`), so the guest's
//!   acknowledges and EOIs reach the list registers directly;
//! - the distributor banks the SGIs and PPIs of the accessing vCPU;
//! - SPIs are routed by a CPU mask (`GICD_ITARGETSR`, the lowest present
//!   vCPU of the mask receives it, as KVM's `vgic_v2` target);
//! - SGIs are raised by `GICD_SGIR` and are pending per source vCPU
//!   (`GICD_SPENDSGIR`/`CPENDSGIR`); a list register carries one source,
//!   which the guest's `GICC_IAR` reports. The next source of the same SGI
//!   is handed over once the guest has taken the previous one (never
//!   pending-and-active with another source, whose EOI would not match);
//! - interrupts reset to group 0 (Linux's GICv2 driver enables only group
//!   0 at its CPU interface);
//! - at most 8 vCPUs.

use super::{EBUSY, EINVAL, Errno, MAX_VCPUS, NR_PRIVATE, Vgic, f};
use crate::kvm::errno::{E2BIG, EEXIST, ENXIO};
use kcore_abi::run::irq;

/// `KVM_VGIC_V2_DIST_SIZE`.
pub const DIST_SIZE: u64 = 0x1000;
/// `KVM_VGIC_V2_CPU_SIZE`.
pub const CPU_SIZE: u64 = 0x2000;
/// Most vCPUs of a GICv2 (`VGIC_V2_MAX_CPUS`).
pub const MAX_CPUS: usize = 8;
/// `KVM_VGIC_V2_ADDR_TYPE_DIST`, `KVM_VGIC_V2_ADDR_TYPE_CPU`.
pub const ADDR_TYPE_DIST: u64 = 0;
/// See [`ADDR_TYPE_DIST`].
pub const ADDR_TYPE_CPU: u64 = 1;

/// `GICD_SGIR`.
const SGIR: u64 = 0xF00;
/// `GICD_CPENDSGIR<n>`, `GICD_SPENDSGIR<n>` (one byte per SGI: a mask of
/// source CPUs).
const CPENDSGIR: u64 = 0xF10;
const SPENDSGIR: u64 = 0xF20;
/// `GICD_ITARGETSR<n>` (one byte per interrupt).
const ITARGETSR: u64 = 0x800;

/// `vgic_check_iorange` for a GICv2 frame: `EEXIST` when set, `EINVAL`
/// unaligned (4 KiB) or wrapping, `E2BIG` outside an IPA space of
/// `ipa_bits`.
fn check_iorange(set: bool, addr: u64, size: u64, ipa_bits: u32) -> Result<(), Errno> {
    if set {
        return Err(EEXIST);
    }
    if !addr.is_multiple_of(0x1000) {
        return Err(EINVAL);
    }
    let end = addr.checked_add(size).ok_or(EINVAL)?;
    if addr >= 1u64 << ipa_bits || end > 1u64 << ipa_bits {
        return Err(E2BIG);
    }
    Ok(())
}

impl Vgic {
    /// Whether this vGIC is a GICv2 (the host's GIC is one).
    pub fn is_v2(&self) -> bool {
        self.host_v2
    }

    /// Records that the host's GIC is a GICv2 (at VM creation, after
    /// [`Vgic::reset`]).
    pub fn set_host_v2(&mut self, v2: bool) {
        self.host_v2 = v2;
    }

    /// `KVM_DEV_ARM_VGIC_GRP_ADDR` of a GICv2: the distributor's
    /// (`cpu` false) or the CPU interface's base (`None`: unset).
    pub fn base_v2(&self, cpu: bool) -> Option<u64> {
        if cpu {
            self.cpu.checked_sub(1)
        } else {
            self.dist.checked_sub(1)
        }
    }

    /// Sets a GICv2 base ([`check_iorange`]'s errors).
    pub fn set_base_v2(&mut self, cpu: bool, addr: u64, ipa_bits: u32) -> Result<(), Errno> {
        let size = if cpu { CPU_SIZE } else { DIST_SIZE };
        check_iorange(self.base_v2(cpu).is_some(), addr, size, ipa_bits)?;
        if cpu {
            self.cpu = addr + 1;
        } else {
            self.dist = addr + 1;
        }
        Ok(())
    }

    /// The first run's checks of a GICv2's frames
    /// (`vgic_v2_map_resources`): both set (`ENXIO`), not overlapping
    /// (`EINVAL`). Returns the CPU interface's base, where KCore maps
    /// `GICV`, or `None` when that was done already.
    pub fn check_frames_v2(&self) -> Result<Option<u64>, Errno> {
        let (Some(d), Some(c)) = (self.base_v2(false), self.base_v2(true)) else {
            return Err(ENXIO);
        };
        if d + DIST_SIZE > c && c + CPU_SIZE > d {
            return Err(EINVAL);
        }
        Ok((!self.cpu_mapped).then_some(c))
    }

    /// KCore mapped `GICV` at the CPU interface's base.
    pub fn set_cpu_mapped(&mut self) {
        self.cpu_mapped = true;
    }

    /// The vCPU a GICv2 SPI with target mask `targets` goes to.
    pub(super) fn target_v2(&self, targets: u32) -> Option<usize> {
        let present = targets & self.vcpu_mask as u32 & 0xFF;
        (present != 0).then(|| present.trailing_zeros() as usize)
    }

    /// A GICv2 distributor access by vCPU `v` at offset `o`: the value read
    /// and the vCPUs to kick.
    pub(super) fn dist_access_v2(
        &mut self,
        v: usize,
        o: u64,
        width: u64,
        write: bool,
        data: u64,
    ) -> (u64, u64) {
        match (o, width) {
            (0x0, 4) => {
                if !write {
                    return (u64::from(self.enabled), 0);
                }
                let was = self.enabled;
                self.enabled = data & 1 != 0;
                (
                    0,
                    if !was && self.enabled {
                        self.vcpu_mask
                    } else {
                        0
                    },
                )
            }
            (0x4, 4) => {
                let lines = u64::from((self.nr_irqs >> 5).saturating_sub(1));
                let cpus = (self.nr_vcpus.clamp(1, MAX_CPUS) as u64 - 1) << 5;
                (lines | cpus, 0)
            }
            (0x8, 4) => (super::IIDR, 0),
            (0x80..=0x7FF, _) | (0xC00..=0xCFF, _) => {
                let first = super::reg_first(o);
                let bits = if first == 0x400 {
                    8
                } else if first == 0xC00 {
                    2
                } else {
                    1
                };
                let intid = ((o - first) * 8 / bits) as u32;
                self.irq_regs(v, first, intid, width, write, data)
            }
            (ITARGETSR..=0xBFF, 1 | 4) => self.itargets(v, o - ITARGETSR, width, write, data),
            (SGIR, 4) if write => (0, self.sgir(v, data as u32)),
            (CPENDSGIR..=0xF2F, 1 | 4) => {
                let set = o >= SPENDSGIR;
                let first = (o - if set { SPENDSGIR } else { CPENDSGIR }) as u32;
                self.sgi_pend(v, first, width, set.then_some(write), write, data)
            }
            _ => (0, 0),
        }
    }

    /// `GICD_ITARGETSR`: one byte per interrupt from `first`; a private
    /// interrupt reads as the accessing vCPU's bit and ignores writes.
    fn itargets(&mut self, v: usize, first: u64, width: u64, write: bool, data: u64) -> (u64, u64) {
        let mut value = 0;
        let mut kick = 0;
        for k in 0..width {
            let id = (first + k) as u32;
            let byte = (data >> (8 * k)) as u8;
            if id < NR_PRIVATE {
                value |= (1u64 << (v % MAX_CPUS)) << (8 * k);
                continue;
            }
            let Some(irq) = self.irq_mut(v, id) else {
                continue;
            };
            if write {
                irq.route = u32::from(byte);
                kick |= self.kick_for(v, id);
            } else {
                value |= u64::from(irq.route as u8) << (8 * k);
            }
        }
        (value, kick)
    }

    /// `GICD_SGIR` written by vCPU `from`: the SGI pending on its targets,
    /// from `from`. Returns the vCPUs to kick.
    fn sgir(&mut self, from: usize, value: u32) -> u64 {
        let intid = value & 0xF;
        let all = self.vcpu_mask as u32 & 0xFF;
        let targets = match (value >> 24) & 3 {
            0 => (value >> 16) & 0xFF,
            1 => all & !(1 << from),
            2 => 1 << from,
            _ => return 0,
        } & all;
        let mut kick = 0;
        for t in 0..MAX_CPUS {
            if targets & (1 << t) != 0 {
                kick |= self.pend_sgi(t, intid, 1 << (from % MAX_CPUS));
            }
        }
        kick
    }

    /// Makes SGI `intid` of vCPU `t` pending from the sources `mask`.
    fn pend_sgi(&mut self, t: usize, intid: u32, mask: u8) -> u64 {
        if mask == 0 {
            return 0;
        }
        let Some(irq) = self.irq_mut(t, intid) else {
            return 0;
        };
        irq.set(f::LATCH, true);
        self.sgi_src[t][intid as usize % 16] |= mask;
        self.kick_for(t, intid)
    }

    /// `GICD_SPENDSGIR` (`set` = `Some(write)`) or `GICD_CPENDSGIR`: one
    /// byte per SGI of vCPU `v` from `first`, each a mask of source CPUs.
    fn sgi_pend(
        &mut self,
        v: usize,
        first: u32,
        width: u64,
        set: Option<bool>,
        write: bool,
        data: u64,
    ) -> (u64, u64) {
        let mut value = 0;
        let mut kick = 0;
        for k in 0..width as u32 {
            let id = (first + k) as usize;
            let (Some(src), byte) = (
                self.sgi_src.get(v).and_then(|s| s.get(id)),
                (data >> (8 * k)) as u8,
            ) else {
                continue;
            };
            if !write {
                value |= u64::from(*src) << (8 * k);
                continue;
            }
            if set.is_some() {
                kick |= self.pend_sgi(v, id as u32, byte);
            } else {
                let left = *src & !byte;
                self.sgi_src[v][id] = left;
                if left == 0
                    && let Some(irq) = self.irq_mut(v, id as u32)
                {
                    irq.set(f::LATCH, false);
                }
            }
        }
        (value, kick)
    }

    /// Hands SGI `intid` of vCPU `v` to a list register as `state`
    /// (pending and/or active): its source goes into the word. A new
    /// pending delivery takes the lowest pending source (and stays latched
    /// while others remain); one still pending in a list register, or
    /// active, keeps the source it had. Returns the word's state and source
    /// bits.
    pub(super) fn sgi_word(&mut self, v: usize, intid: u32, state: u64) -> u64 {
        let Some(src) = self.sgi_src.get(v).map(|s| s[intid as usize % 16]) else {
            return state << irq::STATE_SHIFT;
        };
        let i = intid as usize % 16;
        let Some(q) = self.private.get_mut(v).map(|p| &mut p[i]) else {
            return 0;
        };
        let fresh = state & irq::PENDING != 0 && !q.has(f::LR_PENDING);
        let mut state = state;
        if fresh && src != 0 {
            let next = src.trailing_zeros();
            if q.active() && next != q.route {
                // Another source while the last one is still active: that
                // one first (its EOI must find its own list register).
                state &= !irq::PENDING;
            } else {
                self.sgi_src[v][i] &= !(1 << next);
                q.route = next;
            }
        }
        // Still pending from other sources: latched for a later entry.
        let more = self.sgi_src[v][i] != 0;
        q.set(f::LATCH, more);
        q.set(f::LR_PENDING, state & irq::PENDING != 0);
        state << irq::STATE_SHIFT | u64::from(q.route) << irq::SGI_SOURCE_SHIFT
    }

    /// A GICv2 SGI taken back from vCPU `v`'s list registers while still
    /// pending there: its source is pending again.
    pub(super) fn sgi_unload(&mut self, v: usize, intid: u32) {
        if let Some(q) = self.private.get(v).map(|p| p[intid as usize % 16]) {
            self.sgi_src[v][intid as usize % 16] |= 1 << (q.route % 8);
        }
    }
}

/// `KVM_DEV_ARM_VGIC_GRP_DIST_REGS` of a GICv2: the vCPU is `attr`'s bits
/// 39..32 (`KVM_DEV_ARM_VGIC_CPUID_MASK`; `EINVAL` when it has none), the
/// offset bits 31..0.
pub fn attr_cpu(g: &Vgic, attr: u64) -> Result<(usize, u64), Errno> {
    let cpu = ((attr >> 32) & 0xFF) as usize;
    if !g.ready {
        return Err(EBUSY);
    }
    if cpu >= MAX_VCPUS || !g.has_vcpu(cpu) {
        return Err(EINVAL);
    }
    Ok((cpu, attr & 0xFFFF_FFFF))
}
