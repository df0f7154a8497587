//! Interrupt lines from the emulated devices to the in-kernel vGIC.
//!
//! Every device interrupt here is level-triggered: a device computes its
//! output level after each register access or event and an [`IrqLine`]
//! forwards changes to KVM (`KVM_IRQ_LINE`, `vm.rs`). An irqfd could take its
//! place later without touching the devices.

use crate::kvm_abi::{KVM_ARM_IRQ_TYPE_SHIFT, KVM_ARM_IRQ_TYPE_SPI};
use crate::layout::Spi;
use std::sync::Mutex;

/// The `irq` field of `struct kvm_irq_level` for `spi` on arm64
/// (`api.rst`, KVM_IRQ_LINE: `irq_type` in bits 27:24, 1 = SPI of the
/// in-kernel GIC, and the INTID in bits 15:0).
pub const fn kvm_irq_line_spi(spi: Spi) -> u32 {
    (KVM_ARM_IRQ_TYPE_SPI << KVM_ARM_IRQ_TYPE_SHIFT) | spi.intid()
}

/// One interrupt line of a device.
pub trait IrqLine: Send + Sync {
    /// Drives the line high (`true`) or low.
    fn set_level(&self, high: bool);
}

/// A line that only remembers its level (tests; devices without an
/// interrupt).
#[derive(Debug, Default)]
pub struct LevelRecorder {
    /// Every level driven, in order.
    pub levels: Mutex<Vec<bool>>,
}

impl LevelRecorder {
    /// The last level driven (low if none).
    pub fn level(&self) -> bool {
        self.levels
            .lock()
            .map(|l| l.last().copied().unwrap_or(false))
            .unwrap_or(false)
    }
}

impl IrqLine for LevelRecorder {
    fn set_level(&self, high: bool) {
        if let Ok(mut l) = self.levels.lock() {
            l.push(high);
        }
    }
}

/// Remembers a device's output level and drives its line only on changes.
pub struct LevelIrq {
    line: std::sync::Arc<dyn IrqLine>,
    level: bool,
}

impl LevelIrq {
    /// Starts low (the line is assumed low too).
    pub fn new(line: std::sync::Arc<dyn IrqLine>) -> Self {
        LevelIrq { line, level: false }
    }

    /// Drives the line to `high` if that is a change.
    pub fn update(&mut self, high: bool) {
        if high != self.level {
            self.level = high;
            self.line.set_level(high);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn spi_encoding() {
        // QEMU's UART, SPI 1: INTID 33, irq_type 1.
        assert_eq!(kvm_irq_line_spi(Spi(1)), 0x0100_0021);
        assert_eq!(kvm_irq_line_spi(Spi(16)), 0x0100_0030);
    }

    #[test]
    fn only_changes_are_driven() {
        let rec = Arc::new(LevelRecorder::default());
        let mut irq = LevelIrq::new(rec.clone());
        irq.update(false);
        irq.update(true);
        irq.update(true);
        irq.update(false);
        assert_eq!(*rec.levels.lock().unwrap(), vec![true, false]);
        assert!(!rec.level());
    }
}
