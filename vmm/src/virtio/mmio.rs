//! The virtio-mmio transport, version 2 ("modern", virtio 1.1 §4.2.2): the
//! register window through which a driver discovers a device, negotiates
//! features, sets up its queues and notifies it, and the interrupt status
//! the device raises.

use super::{DeviceError, GuestMem, VirtioDevice};
use crate::bus::{MmioDevice, le_value, put_le};
use crate::irq::{IrqLine, LevelIrq};
use std::sync::Arc;
use virtio_queue::{Queue, QueueT};

/// Register offsets (virtio 1.1, table 4.1).
mod reg {
    pub const MAGIC: u64 = 0x000;
    pub const VERSION: u64 = 0x004;
    pub const DEVICE_ID: u64 = 0x008;
    pub const VENDOR_ID: u64 = 0x00c;
    pub const DEVICE_FEATURES: u64 = 0x010;
    pub const DEVICE_FEATURES_SEL: u64 = 0x014;
    pub const DRIVER_FEATURES: u64 = 0x020;
    pub const DRIVER_FEATURES_SEL: u64 = 0x024;
    pub const QUEUE_SEL: u64 = 0x030;
    pub const QUEUE_NUM_MAX: u64 = 0x034;
    pub const QUEUE_NUM: u64 = 0x038;
    pub const QUEUE_READY: u64 = 0x044;
    pub const QUEUE_NOTIFY: u64 = 0x050;
    pub const INTERRUPT_STATUS: u64 = 0x060;
    pub const INTERRUPT_ACK: u64 = 0x064;
    pub const STATUS: u64 = 0x070;
    pub const QUEUE_DESC_LOW: u64 = 0x080;
    pub const QUEUE_DESC_HIGH: u64 = 0x084;
    pub const QUEUE_DRIVER_LOW: u64 = 0x090;
    pub const QUEUE_DRIVER_HIGH: u64 = 0x094;
    pub const QUEUE_DEVICE_LOW: u64 = 0x0a0;
    pub const QUEUE_DEVICE_HIGH: u64 = 0x0a4;
    pub const CONFIG_GENERATION: u64 = 0x0fc;
    pub const CONFIG: u64 = 0x100;
}

/// `virt` in little-endian.
pub const MAGIC: u32 = 0x7472_6976;
/// The transport version implemented.
pub const VERSION: u32 = 2;
/// Our vendor id: "KCor".
pub const VENDOR_ID: u32 = 0x726f_434b;
/// `VIRTIO_F_VERSION_1`.
pub const F_VERSION_1: u64 = 1 << 32;

/// Device status bits (virtio 1.1 §2.1).
pub mod status {
    /// The guest found the device.
    pub const ACKNOWLEDGE: u32 = 1;
    /// The guest has a driver for it.
    pub const DRIVER: u32 = 2;
    /// The driver is ready.
    pub const DRIVER_OK: u32 = 4;
    /// Feature negotiation is complete.
    pub const FEATURES_OK: u32 = 8;
    /// The device hit an error and needs a reset.
    pub const DEVICE_NEEDS_RESET: u32 = 0x40;
    /// The driver gave up.
    pub const FAILED: u32 = 0x80;
}

/// `InterruptStatus` bit: a queue has used buffers.
pub const INT_USED_BUFFER: u32 = 1;
/// `InterruptStatus` bit: the configuration changed (or the device needs a
/// reset).
pub const INT_CONFIG: u32 = 2;

/// One virtio device behind its MMIO window.
pub struct MmioTransport<D> {
    device: D,
    mem: GuestMem,
    irq: LevelIrq,
    queues: Vec<Queue>,
    status: u32,
    device_features_sel: u32,
    driver_features: u64,
    driver_features_sel: u32,
    queue_sel: u32,
    interrupt_status: u32,
    /// Why the device stopped, if it did.
    error: Option<String>,
}

impl<D: VirtioDevice> MmioTransport<D> {
    /// `device` over guest memory `mem`, interrupting on `irq`.
    pub fn new(device: D, mem: GuestMem, irq: Arc<dyn IrqLine>) -> Result<Self, DeviceError> {
        let queues = device
            .queue_max_sizes()
            .iter()
            .map(|&n| Queue::new(n))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(MmioTransport {
            device,
            mem,
            irq: LevelIrq::new(irq),
            queues,
            status: 0,
            device_features_sel: 0,
            driver_features: 0,
            driver_features_sel: 0,
            queue_sel: 0,
            interrupt_status: 0,
            error: None,
        })
    }

    /// The device.
    pub fn device(&self) -> &D {
        &self.device
    }

    /// The device, to feed it input; call [`Self::process`] afterwards.
    pub fn device_mut(&mut self) -> &mut D {
        &mut self.device
    }

    /// Why the device stopped (a driver error), if it did.
    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }

    fn offered_features(&self) -> u64 {
        self.device.features() | F_VERSION_1
    }

    fn reset(&mut self) {
        self.status = 0;
        self.device_features_sel = 0;
        self.driver_features = 0;
        self.driver_features_sel = 0;
        self.queue_sel = 0;
        self.interrupt_status = 0;
        self.error = None;
        for q in &mut self.queues {
            q.reset();
        }
        self.device.reset();
        self.irq.update(false);
    }

    /// Lets the device work on its queues (after a notification or new
    /// input) and interrupts the driver if it used buffers. Nothing happens
    /// before `DRIVER_OK` or after an error.
    pub fn process(&mut self) {
        if self.status & status::DRIVER_OK == 0 || self.error.is_some() {
            return;
        }
        match self.device.process(&mut self.queues, &self.mem) {
            Ok(true) => self.interrupt_status |= INT_USED_BUFFER,
            Ok(false) => {}
            Err(e) => {
                self.error = Some(e.0);
                self.status |= status::DEVICE_NEEDS_RESET;
                self.interrupt_status |= INT_CONFIG;
            }
        }
        self.irq.update(self.interrupt_status != 0);
    }

    fn selected_queue(&mut self) -> Option<&mut Queue> {
        self.queues.get_mut(self.queue_sel as usize)
    }

    fn read_reg(&mut self, offset: u64) -> u32 {
        match offset {
            reg::MAGIC => MAGIC,
            reg::VERSION => VERSION,
            reg::DEVICE_ID => self.device.device_id(),
            reg::VENDOR_ID => VENDOR_ID,
            reg::DEVICE_FEATURES => match self.device_features_sel {
                0 => self.offered_features() as u32,
                1 => (self.offered_features() >> 32) as u32,
                _ => 0,
            },
            reg::QUEUE_NUM_MAX => self.selected_queue().map_or(0, |q| u32::from(q.max_size())),
            reg::QUEUE_READY => self.selected_queue().map_or(0, |q| u32::from(q.ready())),
            reg::INTERRUPT_STATUS => self.interrupt_status,
            reg::STATUS => self.status,
            reg::CONFIG_GENERATION => 0,
            _ => 0,
        }
    }

    /// Whether the queue registers may change: not once the driver is running.
    fn queue_setup_allowed(&self) -> bool {
        self.status & status::FEATURES_OK != 0 && self.status & status::DRIVER_OK == 0
    }

    fn write_reg(&mut self, offset: u64, v: u32) {
        let setup = self.queue_setup_allowed();
        match offset {
            reg::DEVICE_FEATURES_SEL => self.device_features_sel = v,
            reg::DRIVER_FEATURES_SEL => self.driver_features_sel = v,
            reg::DRIVER_FEATURES if self.status & status::FEATURES_OK == 0 => {
                match self.driver_features_sel {
                    0 => {
                        self.driver_features = (self.driver_features & !0xffff_ffff) | u64::from(v)
                    }
                    1 => {
                        self.driver_features =
                            (self.driver_features & 0xffff_ffff) | (u64::from(v) << 32)
                    }
                    _ => {}
                }
            }
            reg::QUEUE_SEL => self.queue_sel = v,
            reg::QUEUE_NUM if setup => {
                if let Some(q) = self.selected_queue() {
                    q.set_size(v as u16);
                }
            }
            reg::QUEUE_READY if setup => {
                let mem = self.mem.clone();
                if let Some(q) = self.selected_queue() {
                    // `is_valid` checks a ready queue's rings against memory.
                    q.set_ready(v == 1);
                    if q.ready() && !q.is_valid(&mem) {
                        q.set_ready(false);
                    }
                }
            }
            reg::QUEUE_DESC_LOW
            | reg::QUEUE_DESC_HIGH
            | reg::QUEUE_DRIVER_LOW
            | reg::QUEUE_DRIVER_HIGH
            | reg::QUEUE_DEVICE_LOW
            | reg::QUEUE_DEVICE_HIGH
                if setup =>
            {
                if let Some(q) = self.selected_queue() {
                    let high = offset & 4 != 0;
                    let (lo, hi) = if high {
                        (None, Some(v))
                    } else {
                        (Some(v), None)
                    };
                    match offset & !4 {
                        reg::QUEUE_DESC_LOW => q.set_desc_table_address(lo, hi),
                        reg::QUEUE_DRIVER_LOW => q.set_avail_ring_address(lo, hi),
                        _ => q.set_used_ring_address(lo, hi),
                    }
                }
            }
            reg::QUEUE_NOTIFY => self.process(),
            reg::INTERRUPT_ACK => {
                self.interrupt_status &= !v;
                self.irq.update(self.interrupt_status != 0);
            }
            reg::STATUS => self.write_status(v),
            _ => {}
        }
    }

    fn write_status(&mut self, v: u32) {
        if v == 0 {
            self.reset();
            return;
        }
        let mut v = v;
        if v & status::FEATURES_OK != 0 && self.status & status::FEATURES_OK == 0 {
            // Accept only features we offered, and only a modern driver.
            let ok = self.driver_features & !self.offered_features() == 0
                && self.driver_features & F_VERSION_1 != 0;
            if !ok {
                v &= !status::FEATURES_OK;
            }
        }
        self.status = v | (self.status & status::DEVICE_NEEDS_RESET);
        if v & status::DRIVER_OK != 0 {
            // Buffers may have been made available before DRIVER_OK.
            self.process();
        }
    }

    /// The features the driver accepted.
    pub fn driver_features(&self) -> u64 {
        self.driver_features
    }
}

impl<D: VirtioDevice> MmioDevice for MmioTransport<D> {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        if offset >= reg::CONFIG {
            self.device.read_config(offset - reg::CONFIG, data);
        } else if data.len() == 4 {
            let v = self.read_reg(offset);
            put_le(data, u64::from(v));
        } else {
            // The registers are 32-bit only (§4.2.2.2).
            data.fill(0);
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        // The configuration spaces here are read-only; registers are 32-bit.
        if offset < reg::CONFIG && data.len() == 4 {
            self.write_reg(offset, le_value(data) as u32);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::irq::LevelRecorder;
    use crate::virtio::testing::{add_chain, memory};
    use virtio_queue::mock::MockSplitQueue;
    use vm_memory::{Bytes, GuestAddress};

    /// A device with one queue that uses every available chain with its
    /// first byte as the length.
    #[derive(Default)]
    struct Echo {
        resets: u32,
    }

    impl VirtioDevice for Echo {
        fn device_id(&self) -> u32 {
            42
        }
        fn features(&self) -> u64 {
            1 << 5
        }
        fn queue_max_sizes(&self) -> &[u16] {
            &[16]
        }
        fn read_config(&self, offset: u64, data: &mut [u8]) {
            super::super::read_config_bytes(&[1, 2, 3, 4, 5], offset, data);
        }
        fn process(&mut self, queues: &mut [Queue], mem: &GuestMem) -> Result<bool, DeviceError> {
            let q = &mut queues[0];
            let mut used = false;
            while let Some(chain) = q.pop_descriptor_chain(mem) {
                q.add_used(mem, chain.head_index(), 7)?;
                used = true;
            }
            Ok(used)
        }
        fn reset(&mut self) {
            self.resets += 1;
        }
    }

    fn rd(t: &mut MmioTransport<Echo>, off: u64) -> u32 {
        let mut d = [0u8; 4];
        t.read(off, &mut d);
        u32::from_le_bytes(d)
    }

    fn wr(t: &mut MmioTransport<Echo>, off: u64, v: u32) {
        t.write(off, &v.to_le_bytes());
    }

    /// Runs the Linux driver's probe sequence on a device whose queue 0 is
    /// `q`; returns the final status.
    fn probe(t: &mut MmioTransport<Echo>, q: &MockSplitQueue<'_, GuestMem>, features: u64) -> u32 {
        wr(t, reg::STATUS, 0);
        wr(t, reg::STATUS, status::ACKNOWLEDGE);
        wr(t, reg::STATUS, status::ACKNOWLEDGE | status::DRIVER);
        wr(t, reg::DRIVER_FEATURES_SEL, 0);
        wr(t, reg::DRIVER_FEATURES, features as u32);
        wr(t, reg::DRIVER_FEATURES_SEL, 1);
        wr(t, reg::DRIVER_FEATURES, (features >> 32) as u32);
        let s = status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK;
        wr(t, reg::STATUS, s);
        if rd(t, reg::STATUS) & status::FEATURES_OK == 0 {
            return rd(t, reg::STATUS);
        }
        wr(t, reg::QUEUE_SEL, 0);
        assert_eq!(rd(t, reg::QUEUE_NUM_MAX), 16);
        wr(t, reg::QUEUE_NUM, 16);
        let split = |a: GuestAddress| (a.0 as u32, (a.0 >> 32) as u32);
        for (lo, addr) in [
            (reg::QUEUE_DESC_LOW, q.desc_table_addr()),
            (reg::QUEUE_DRIVER_LOW, q.avail_addr()),
            (reg::QUEUE_DEVICE_LOW, q.used_addr()),
        ] {
            let (l, h) = split(addr);
            wr(t, lo, l);
            wr(t, lo + 4, h);
        }
        wr(t, reg::QUEUE_READY, 1);
        assert_eq!(rd(t, reg::QUEUE_READY), 1);
        wr(t, reg::STATUS, s | status::DRIVER_OK);
        rd(t, reg::STATUS)
    }

    #[test]
    fn identity_registers() {
        let irq = Arc::new(LevelRecorder::default());
        let mut t = MmioTransport::new(Echo::default(), memory(), irq).unwrap();
        assert_eq!(rd(&mut t, reg::MAGIC), 0x7472_6976);
        assert_eq!(rd(&mut t, reg::VERSION), 2);
        assert_eq!(rd(&mut t, reg::DEVICE_ID), 42);
        wr(&mut t, reg::DEVICE_FEATURES_SEL, 0);
        assert_eq!(rd(&mut t, reg::DEVICE_FEATURES), 1 << 5);
        wr(&mut t, reg::DEVICE_FEATURES_SEL, 1);
        assert_eq!(rd(&mut t, reg::DEVICE_FEATURES), 1, "VIRTIO_F_VERSION_1");
        // No second queue.
        wr(&mut t, reg::QUEUE_SEL, 1);
        assert_eq!(rd(&mut t, reg::QUEUE_NUM_MAX), 0);
        // Config space, any width.
        let mut b = [0u8; 2];
        t.read(0x101, &mut b);
        assert_eq!(b, [2, 3]);
        // Registers are 32-bit only.
        let mut b = [0xffu8; 2];
        t.read(reg::MAGIC, &mut b);
        assert_eq!(b, [0, 0]);
    }

    #[test]
    fn notify_uses_buffers_and_interrupts_until_acked() {
        let mem = memory();
        let q = MockSplitQueue::create(&mem, GuestAddress(0x1000), 16);
        let irq = Arc::new(LevelRecorder::default());
        let mut t = MmioTransport::new(Echo::default(), mem.clone(), irq.clone()).unwrap();
        let s = probe(&mut t, &q, F_VERSION_1 | 1 << 5);
        assert_eq!(s & status::DRIVER_OK, status::DRIVER_OK);
        assert_eq!(t.driver_features(), F_VERSION_1 | 1 << 5);

        add_chain(&q, 0, 0, &[(0x8000, 16, true)]);
        wr(&mut t, reg::QUEUE_NOTIFY, 0);
        assert!(irq.level());
        assert_eq!(rd(&mut t, reg::INTERRUPT_STATUS), INT_USED_BUFFER);
        let used_idx: u16 = mem.read_obj(GuestAddress(q.used_addr().0 + 2)).unwrap();
        assert_eq!(used_idx, 1);
        wr(&mut t, reg::INTERRUPT_ACK, INT_USED_BUFFER);
        assert!(!irq.level());
        // A notification with nothing new: no interrupt.
        wr(&mut t, reg::QUEUE_NOTIFY, 0);
        assert!(!irq.level());

        // Reset clears everything and tells the device.
        wr(&mut t, reg::STATUS, 0);
        assert_eq!(rd(&mut t, reg::STATUS), 0);
        assert_eq!(rd(&mut t, reg::QUEUE_READY), 0);
        // (The probe began with a reset too.)
        assert_eq!(t.device().resets, 2);
    }

    #[test]
    fn features_we_do_not_offer_or_a_legacy_driver_are_refused() {
        let mem = memory();
        let q = MockSplitQueue::create(&mem, GuestAddress(0x1000), 16);
        let irq = Arc::new(LevelRecorder::default());
        let mut t = MmioTransport::new(Echo::default(), mem.clone(), irq.clone()).unwrap();
        assert_eq!(
            probe(&mut t, &q, F_VERSION_1 | 1 << 6) & status::FEATURES_OK,
            0
        );
        assert_eq!(probe(&mut t, &q, 1 << 5) & status::FEATURES_OK, 0);
        assert_ne!(probe(&mut t, &q, F_VERSION_1) & status::FEATURES_OK, 0);
    }

    #[test]
    fn queue_registers_are_frozen_after_driver_ok_and_bad_queues_not_ready() {
        let mem = memory();
        let q = MockSplitQueue::create(&mem, GuestAddress(0x1000), 16);
        let irq = Arc::new(LevelRecorder::default());
        let mut t = MmioTransport::new(Echo::default(), mem.clone(), irq).unwrap();
        probe(&mut t, &q, F_VERSION_1);
        wr(&mut t, reg::QUEUE_NUM, 4);
        assert_eq!(t.queues[0].size(), 16);
        // A queue outside guest memory does not become ready.
        wr(&mut t, reg::STATUS, 0);
        let s = status::ACKNOWLEDGE | status::DRIVER;
        wr(&mut t, reg::STATUS, s);
        wr(&mut t, reg::DRIVER_FEATURES_SEL, 1);
        wr(&mut t, reg::DRIVER_FEATURES, 1);
        wr(&mut t, reg::STATUS, s | status::FEATURES_OK);
        wr(&mut t, reg::QUEUE_NUM, 16);
        wr(&mut t, reg::QUEUE_DESC_LOW, 0);
        wr(&mut t, reg::QUEUE_DESC_HIGH, 0x10);
        wr(&mut t, reg::QUEUE_READY, 1);
        assert_eq!(rd(&mut t, reg::QUEUE_READY), 0);
    }
}
