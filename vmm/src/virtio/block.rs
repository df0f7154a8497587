//! A virtio block device (virtio 1.1 §5.2) backed by a file: reads, writes,
//! flushes and the device id; capacity in 512-byte sectors (a file whose
//! length is not a multiple of 512 loses its tail).

use super::{DeviceError, GuestMem, VirtioDevice, read_config_bytes};
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use virtio_queue::{Queue, QueueT};

/// virtio device id of a block device.
pub const DEVICE_ID: u32 = 2;
/// `VIRTIO_BLK_F_FLUSH`.
pub const F_FLUSH: u64 = 1 << 9;
/// Sector size of the protocol.
pub const SECTOR: u64 = 512;
/// The request queue's largest size.
const QUEUE_SIZE: u16 = 256;
/// Length of the id `GET_ID` returns.
const ID_LEN: usize = 20;

/// Request types.
mod req {
    pub const IN: u32 = 0;
    pub const OUT: u32 = 1;
    pub const FLUSH: u32 = 4;
    pub const GET_ID: u32 = 8;
}

/// Status codes.
mod st {
    pub const OK: u8 = 0;
    pub const IOERR: u8 = 1;
    pub const UNSUPP: u8 = 2;
}

/// The block device.
pub struct Block {
    file: File,
    sectors: u64,
    id: [u8; ID_LEN],
    sizes: [u16; 1],
}

impl Block {
    /// A disk on `file` of `len` bytes, answering `GET_ID` with `id` (cut
    /// to 20 bytes).
    pub fn new(file: File, len: u64, id: &str) -> Self {
        let mut idb = [0u8; ID_LEN];
        let n = id.len().min(ID_LEN);
        idb[..n].copy_from_slice(&id.as_bytes()[..n]);
        Block {
            file,
            sectors: len / SECTOR,
            id: idb,
            sizes: [QUEUE_SIZE],
        }
    }

    /// Capacity in sectors.
    pub fn sectors(&self) -> u64 {
        self.sectors
    }

    /// Whether `len` bytes from `sector` lie on the disk.
    fn in_range(&self, sector: u64, len: usize) -> bool {
        (len as u64).is_multiple_of(SECTOR)
            && sector
                .checked_add(len as u64 / SECTOR)
                .is_some_and(|end| end <= self.sectors)
    }

    /// Serves one request; returns the bytes written into the chain.
    fn serve(
        &mut self,
        chain: virtio_queue::DescriptorChain<&GuestMem>,
        mem: &GuestMem,
    ) -> Result<u32, DeviceError> {
        let mut reader = chain.clone().reader(mem)?;
        let mut writer = chain.writer(mem)?;
        let mut hdr = [0u8; 16];
        reader
            .read_exact(&mut hdr)
            .map_err(|_| DeviceError("virtio-blk: request without a header".into()))?;
        let kind = u32::from_le_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]);
        let mut s = [0u8; 8];
        s.copy_from_slice(&hdr[8..16]);
        let sector = u64::from_le_bytes(s);
        let Some(data_len) = writer.available_bytes().checked_sub(1) else {
            return Err(DeviceError(
                "virtio-blk: request without a status byte".into(),
            ));
        };
        let mut status = writer.split_at(data_len)?;
        let (code, written) = match kind {
            req::IN => {
                let mut buf = vec![0u8; data_len];
                if self.in_range(sector, data_len)
                    && self.file.read_exact_at(&mut buf, sector * SECTOR).is_ok()
                {
                    writer.write_all(&buf)?;
                    (st::OK, data_len)
                } else {
                    (st::IOERR, 0)
                }
            }
            req::OUT => {
                let len = reader.available_bytes();
                let mut buf = vec![0u8; len];
                reader.read_exact(&mut buf)?;
                if self.in_range(sector, len)
                    && self.file.write_all_at(&buf, sector * SECTOR).is_ok()
                {
                    (st::OK, 0)
                } else {
                    (st::IOERR, 0)
                }
            }
            req::FLUSH => match self.file.sync_data() {
                Ok(()) => (st::OK, 0),
                Err(_) => (st::IOERR, 0),
            },
            req::GET_ID => {
                let n = data_len.min(ID_LEN);
                writer.write_all(&self.id[..n])?;
                (st::OK, n)
            }
            _ => (st::UNSUPP, 0),
        };
        status.write_all(&[code])?;
        Ok(written as u32 + 1)
    }
}

impl VirtioDevice for Block {
    fn device_id(&self) -> u32 {
        DEVICE_ID
    }

    fn features(&self) -> u64 {
        F_FLUSH
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &self.sizes
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        // struct virtio_blk_config: capacity first; the rest belongs to
        // features not offered.
        let mut cfg = [0u8; 60];
        cfg[..8].copy_from_slice(&self.sectors.to_le_bytes());
        read_config_bytes(&cfg, offset, data);
    }

    fn process(&mut self, queues: &mut [Queue], mem: &GuestMem) -> Result<bool, DeviceError> {
        let Some(q) = queues.first_mut().filter(|q| q.ready()) else {
            return Ok(false);
        };
        let mut used = false;
        while let Some(chain) = q.pop_descriptor_chain(mem) {
            let head = chain.head_index();
            let len = self.serve(chain, mem)?;
            q.add_used(mem, head, len)?;
            used = true;
        }
        Ok(used)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::virtio::testing::{add_chain, memory, ready_queue, used};
    use virtio_queue::mock::MockSplitQueue;
    use vm_memory::{Bytes, GuestAddress};

    fn disk(sectors: u64) -> (File, std::path::PathBuf) {
        let path = std::env::temp_dir().join(format!(
            "kcore-vmm-blk-{}-{:?}.img",
            std::process::id(),
            std::thread::current().id()
        ));
        let mut data = Vec::new();
        for s in 0..sectors {
            data.extend(std::iter::repeat_n(s as u8, SECTOR as usize));
        }
        std::fs::write(&path, &data).unwrap();
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        (f, path)
    }

    fn header(mem: &GuestMem, at: u64, kind: u32, sector: u64) {
        mem.write_obj(kind, GuestAddress(at)).unwrap();
        mem.write_obj(0u32, GuestAddress(at + 4)).unwrap();
        mem.write_obj(sector, GuestAddress(at + 8)).unwrap();
    }

    #[test]
    fn read_write_flush_id_and_errors() {
        // Nine sectors on file, but the disk is said to be 8.2 sectors long.
        let (file, path) = disk(9);
        let mut b = Block::new(file, 8 * SECTOR + 100, "kcore-disk");
        assert_eq!(b.sectors(), 8);
        let mut cap = [0u8; 8];
        b.read_config(0, &mut cap);
        assert_eq!(u64::from_le_bytes(cap), 8);

        let mem = memory();
        let q = MockSplitQueue::create(&mem, GuestAddress(0x1000), 16);
        let mut queues = vec![ready_queue(&q)];

        // Read sectors 2..4.
        header(&mem, 0x8000, req::IN, 2);
        add_chain(
            &q,
            0,
            0,
            &[(0x8000, 16, false), (0x9000, 1024, true), (0xa000, 1, true)],
        );
        assert!(b.process(&mut queues, &mem).unwrap());
        assert_eq!(used(&mem, &q, 0), (1, 0, 1025));
        let mut got = vec![0u8; 1024];
        mem.read_slice(&mut got, GuestAddress(0x9000)).unwrap();
        assert!(got[..512].iter().all(|&x| x == 2) && got[512..].iter().all(|&x| x == 3));
        assert_eq!(mem.read_obj::<u8>(GuestAddress(0xa000)).unwrap(), st::OK);

        // Write sector 7.
        header(&mem, 0x8000, req::OUT, 7);
        mem.write_slice(&[0xee; 512], GuestAddress(0x9000)).unwrap();
        add_chain(
            &q,
            3,
            1,
            &[(0x8000, 16, false), (0x9000, 512, false), (0xa000, 1, true)],
        );
        b.process(&mut queues, &mem).unwrap();
        assert_eq!(used(&mem, &q, 1), (2, 3, 1));
        assert_eq!(mem.read_obj::<u8>(GuestAddress(0xa000)).unwrap(), st::OK);

        // Past the end: an I/O error, nothing written.
        header(&mem, 0x8000, req::OUT, 8);
        add_chain(
            &q,
            6,
            2,
            &[(0x8000, 16, false), (0x9000, 512, false), (0xa000, 1, true)],
        );
        b.process(&mut queues, &mem).unwrap();
        assert_eq!(mem.read_obj::<u8>(GuestAddress(0xa000)).unwrap(), st::IOERR);

        // Flush, id, and an unknown request.
        header(&mem, 0x8000, req::FLUSH, 0);
        add_chain(&q, 9, 3, &[(0x8000, 16, false), (0xa000, 1, true)]);
        b.process(&mut queues, &mem).unwrap();
        assert_eq!(mem.read_obj::<u8>(GuestAddress(0xa000)).unwrap(), st::OK);
        header(&mem, 0x8000, req::GET_ID, 0);
        add_chain(
            &q,
            11,
            4,
            &[(0x8000, 16, false), (0x9000, 20, true), (0xa000, 1, true)],
        );
        b.process(&mut queues, &mem).unwrap();
        let mut id = [0u8; 10];
        mem.read_slice(&mut id, GuestAddress(0x9000)).unwrap();
        assert_eq!(&id, b"kcore-disk");
        assert_eq!(used(&mem, &q, 4), (5, 11, 21));
        header(&mem, 0x8000, 99, 0);
        add_chain(&q, 14, 5, &[(0x8000, 16, false), (0xa000, 1, true)]);
        b.process(&mut queues, &mem).unwrap();
        assert_eq!(
            mem.read_obj::<u8>(GuestAddress(0xa000)).unwrap(),
            st::UNSUPP
        );

        let data = std::fs::read(&path).unwrap();
        assert!(data[7 * 512..8 * 512].iter().all(|&x| x == 0xee));
        assert!(
            data[8 * 512..].iter().all(|&x| x == 8),
            "the tail was not touched"
        );
        std::fs::remove_file(&path).ok();
    }

    #[test]
    fn a_request_without_status_byte_is_a_driver_error() {
        let (file, path) = disk(1);
        let mut b = Block::new(file, SECTOR, "x");
        let mem = memory();
        let q = MockSplitQueue::create(&mem, GuestAddress(0x1000), 16);
        let mut queues = vec![ready_queue(&q)];
        header(&mem, 0x8000, req::IN, 0);
        add_chain(&q, 0, 0, &[(0x8000, 16, false)]);
        assert!(b.process(&mut queues, &mem).is_err());
        std::fs::remove_file(&path).ok();
    }
}
