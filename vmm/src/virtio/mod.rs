//! virtio devices (virtio 1.1, OASIS) on the virtio-mmio transport, for
//! non-protected guests: a console ([`console`]) and a block device
//! ([`block`]). Virtqueues are `virtio-queue`'s split queues over the guest's
//! `vm-memory`.
//!
//! A notification reaches a device as an MMIO write to `QueueNotify` (a
//! vCPU exit) and the device's interrupt goes out through an
//! [`crate::irq::IrqLine`] (`KVM_IRQ_LINE`). Both are behind the transport's
//! two entry points ([`mmio::MmioTransport::process`] and the
//! [`crate::irq::IrqLine`]), so an ioeventfd and an irqfd could replace them.

pub mod block;
pub mod console;
pub mod mmio;

use std::fmt;
use virtio_queue::Queue;
use vm_memory::GuestMemoryMmap;

/// The guest memory the devices read and write.
pub type GuestMem = GuestMemoryMmap;

/// A device's part of virtio: identity, features, configuration space and
/// the processing of its queues.
pub trait VirtioDevice: Send {
    /// The virtio device id (virtio 1.1 §5).
    fn device_id(&self) -> u32;
    /// Device-specific feature bits offered (the transport adds
    /// `VIRTIO_F_VERSION_1`).
    fn features(&self) -> u64;
    /// The largest size of each queue; the number of queues.
    fn queue_max_sizes(&self) -> &[u16];
    /// Reads the configuration space at `offset`.
    fn read_config(&self, offset: u64, data: &mut [u8]);
    /// Takes the used buffers of every ready queue it has work for; returns
    /// whether the driver should be interrupted (buffers were used).
    fn process(&mut self, queues: &mut [Queue], mem: &GuestMem) -> Result<bool, DeviceError>;
    /// The driver reset the device.
    fn reset(&mut self) {}
}

/// A guest driver broke the protocol (malformed chain, bad address): the
/// device stops until the driver resets it (`DEVICE_NEEDS_RESET`).
#[derive(Debug)]
pub struct DeviceError(pub String);

impl fmt::Display for DeviceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DeviceError {}

impl From<virtio_queue::Error> for DeviceError {
    fn from(e: virtio_queue::Error) -> Self {
        DeviceError(format!("virtqueue: {e}"))
    }
}

impl From<std::io::Error> for DeviceError {
    fn from(e: std::io::Error) -> Self {
        DeviceError(format!("guest buffer: {e}"))
    }
}

/// Reads `data.len()` bytes at `offset` of a configuration space image
/// `config`; bytes past its end read as zero.
pub fn read_config_bytes(config: &[u8], offset: u64, data: &mut [u8]) {
    for (i, b) in data.iter_mut().enumerate() {
        *b = usize::try_from(offset)
            .ok()
            .and_then(|o| o.checked_add(i))
            .and_then(|at| config.get(at))
            .copied()
            .unwrap_or(0);
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! Guest memory with a driver's side of a split virtqueue.

    use super::GuestMem;
    use virtio_queue::desc::RawDescriptor;
    use virtio_queue::desc::split::Descriptor;
    use virtio_queue::mock::MockSplitQueue;
    use virtio_queue::{Queue, QueueT};
    use vm_memory::{Bytes, GuestAddress};

    /// 1 MiB of guest memory at 0.
    pub fn memory() -> GuestMem {
        GuestMem::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap()
    }

    /// `VRING_DESC_F_NEXT`.
    pub const NEXT: u16 = 1;
    /// `VRING_DESC_F_WRITE`.
    pub const WRITE: u16 = 2;

    /// A buffer: address, length, writable by the device.
    pub type Buf = (u64, u32, bool);

    /// Puts one chain made of `bufs` at descriptor `first` and makes it
    /// available as the queue's `slot`-th entry.
    pub fn add_chain(q: &MockSplitQueue<'_, GuestMem>, first: u16, slot: u16, bufs: &[Buf]) {
        let descs: Vec<RawDescriptor> = bufs
            .iter()
            .enumerate()
            .map(|(i, &(addr, len, w))| {
                let last = i + 1 == bufs.len();
                let flags = if last { 0 } else { NEXT } | if w { WRITE } else { 0 };
                let next = if last { 0 } else { first + i as u16 + 1 };
                RawDescriptor::from(Descriptor::new(addr, len, flags, next))
            })
            .collect();
        for (i, d) in descs.into_iter().enumerate() {
            q.desc_table().store(first + i as u16, d).unwrap();
        }
        q.avail().ring().ref_at(slot as usize).unwrap().store(first);
        q.avail().idx().store(slot + 1);
    }

    /// A queue set up as the driver left it, ready.
    pub fn ready_queue(q: &MockSplitQueue<'_, GuestMem>) -> Queue {
        let mut queue: Queue = q.create_queue().unwrap();
        queue.set_ready(true);
        queue
    }

    /// The used ring's index and the `(id, len)` of entry `i`.
    pub fn used(mem: &GuestMem, q: &MockSplitQueue<'_, GuestMem>, i: u64) -> (u16, u32, u32) {
        let base = q.used_addr().0;
        let idx: u16 = mem.read_obj(GuestAddress(base + 2)).unwrap();
        let id: u32 = mem.read_obj(GuestAddress(base + 4 + 8 * i)).unwrap();
        let len: u32 = mem.read_obj(GuestAddress(base + 8 + 8 * i)).unwrap();
        (idx, id, len)
    }
}
