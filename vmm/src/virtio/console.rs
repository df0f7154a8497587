//! A virtio console (virtio 1.1 §5.3) with one port and no optional
//! features: queue 0 carries input to the guest, queue 1 its output.

use super::{DeviceError, GuestMem, VirtioDevice, read_config_bytes};
use std::collections::VecDeque;
use std::io::{Read, Write};
use virtio_queue::{Queue, QueueT};

/// virtio device id of a console.
pub const DEVICE_ID: u32 = 3;
/// receiveq (device to driver).
const RX: usize = 0;
/// transmitq (driver to device).
const TX: usize = 1;
/// Both queues' largest size.
const QUEUE_SIZE: u16 = 256;

/// The console device.
pub struct Console {
    out: Box<dyn Write + Send>,
    input: VecDeque<u8>,
    sizes: [u16; 2],
}

impl Console {
    /// A console writing the guest's output to `out`.
    pub fn new(out: Box<dyn Write + Send>) -> Self {
        Console {
            out,
            input: VecDeque::new(),
            sizes: [QUEUE_SIZE; 2],
        }
    }

    /// Queues input for the guest; delivered by the next
    /// [`crate::virtio::mmio::MmioTransport::process`].
    pub fn push_input(&mut self, bytes: &[u8]) {
        self.input.extend(bytes);
    }

    /// Input not yet taken by the guest.
    pub fn pending_input(&self) -> usize {
        self.input.len()
    }

    fn transmit(&mut self, q: &mut Queue, mem: &GuestMem) -> Result<bool, DeviceError> {
        let mut used = false;
        while let Some(chain) = q.pop_descriptor_chain(mem) {
            let head = chain.head_index();
            let mut reader = chain.reader(mem)?;
            let mut buf = Vec::with_capacity(reader.available_bytes());
            reader.read_to_end(&mut buf)?;
            // A console that went away must not stop the guest.
            let _ = self.out.write_all(&buf);
            let _ = self.out.flush();
            q.add_used(mem, head, 0)?;
            used = true;
        }
        Ok(used)
    }

    fn receive(&mut self, q: &mut Queue, mem: &GuestMem) -> Result<bool, DeviceError> {
        let mut used = false;
        while !self.input.is_empty() {
            let Some(chain) = q.pop_descriptor_chain(mem) else {
                break;
            };
            let head = chain.head_index();
            let mut writer = chain.writer(mem)?;
            let n = writer.available_bytes().min(self.input.len());
            let bytes: Vec<u8> = self.input.drain(..n).collect();
            writer.write_all(&bytes)?;
            q.add_used(mem, head, n as u32)?;
            used = true;
        }
        Ok(used)
    }
}

impl VirtioDevice for Console {
    fn device_id(&self) -> u32 {
        DEVICE_ID
    }

    fn features(&self) -> u64 {
        0
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &self.sizes
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        // cols, rows, max_nr_ports, emerg_wr: none of their features offered.
        read_config_bytes(&[0; 12], offset, data);
    }

    fn process(&mut self, queues: &mut [Queue], mem: &GuestMem) -> Result<bool, DeviceError> {
        let mut used = false;
        if let Some(q) = queues.get_mut(TX).filter(|q| q.ready()) {
            used |= self.transmit(q, mem)?;
        }
        if let Some(q) = queues.get_mut(RX).filter(|q| q.ready()) {
            used |= self.receive(q, mem)?;
        }
        Ok(used)
    }

    fn reset(&mut self) {
        // Input typed before the driver came back is kept.
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::virtio::testing::{add_chain, memory, ready_queue, used};
    use std::sync::{Arc, Mutex};
    use virtio_queue::mock::MockSplitQueue;
    use vm_memory::{Bytes, GuestAddress};

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn output_and_input() {
        let mem = memory();
        let rxq = MockSplitQueue::create(&mem, GuestAddress(0x1000), 16);
        let txq = MockSplitQueue::create(&mem, GuestAddress(0x4000), 16);
        let sink = Sink::default();
        let mut c = Console::new(Box::new(sink.clone()));
        let mut queues = vec![ready_queue(&rxq), ready_queue(&txq)];

        // Output: two buffers of one chain.
        mem.write_slice(b"hello ", GuestAddress(0x8000)).unwrap();
        mem.write_slice(b"world\n", GuestAddress(0x9000)).unwrap();
        add_chain(&txq, 0, 0, &[(0x8000, 6, false), (0x9000, 6, false)]);
        assert!(c.process(&mut queues, &mem).unwrap());
        assert_eq!(*sink.0.lock().unwrap(), b"hello world\n");
        assert_eq!(used(&mem, &txq, 0), (1, 0, 0));

        // Input waits for a buffer, then fills as much as fits.
        c.push_input(b"abcdef");
        assert!(!c.process(&mut queues, &mem).unwrap());
        add_chain(&rxq, 0, 0, &[(0xa000, 4, true)]);
        assert!(c.process(&mut queues, &mem).unwrap());
        assert_eq!(used(&mem, &rxq, 0), (1, 0, 4));
        let mut got = [0u8; 4];
        mem.read_slice(&mut got, GuestAddress(0xa000)).unwrap();
        assert_eq!(&got, b"abcd");
        assert_eq!(c.pending_input(), 2);
    }
}
