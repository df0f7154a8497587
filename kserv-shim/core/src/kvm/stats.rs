//! KVM's binary statistics (`KVM_GET_STATS_FD` on a VM or vCPU fd,
//! `KVM_CAP_BINARY_STATS_FD`): a read-only fd whose contents are, as in
//! Linux 6.1's `virt/kvm/binary_stats.c`, a `struct kvm_stats_header`, the
//! id string (`kvm-<pid>` or `kvm-<pid>/vcpu-<id>`, [`NAME_SIZE`] bytes),
//! one `struct kvm_stats_desc` with its name per counter, then the
//! counters' values, each one `u64`. A read at any offset returns the bytes
//! of that image from there (values as they are at the read), 0 past its
//! end. The counters are atomics the vCPU threads bump as they handle
//! exits ([`VcpuStats`], in the VM's shared per-vCPU state, and
//! [`VmStats`]), so a read never waits for a running vCPU. The glue makes
//! the fd (`FMODE_PREAD`, as KVM) and calls [`read`] for each `read(2)`.

use super::env::KvmEnv;
use super::errno::{EINVAL, Errno};
use super::vm::Vm;
use core::sync::atomic::AtomicU64;
use core::sync::atomic::Ordering::Relaxed;

/// `KVM_STATS_NAME_SIZE`: the id string's and each name's bytes.
pub const NAME_SIZE: usize = 48;
/// `sizeof(struct kvm_stats_header)`.
pub const HEADER_SIZE: usize = 24;
/// `struct kvm_stats_desc` up to its name (`offsetof(..., name)`: the
/// kernel's own definition makes the name 48 bytes from 6.6 on, user
/// space's a flexible array).
pub const DESC_SIZE: usize = 16;

/// `KVM_STATS_TYPE_CUMULATIVE` (with `UNIT_NONE`, `BASE_POW10`).
const CUMULATIVE: u32 = 0;
/// `KVM_STATS_TYPE_INSTANT`.
const INSTANT: u32 = 1;

/// One counter: its name and `KVM_STATS_TYPE_*`.
struct Desc(&'static str, u32);

/// A VM's counters, in [`VM_DESCS`]' order.
#[derive(Default)]
pub struct VmStats {
    /// Guest pages backed with the VMM's memory on first touch.
    pub pages_backed: AtomicU64,
    /// vCPUs created.
    pub vcpus: AtomicU64,
}

const VM_DESCS: [Desc; 2] = [Desc("pages_backed", CUMULATIVE), Desc("vcpus", INSTANT)];

/// A vCPU's counters (KVM's names where KVM counts the same), in
/// [`VCPU_DESCS`]' order.
#[derive(Default)]
pub struct VcpuStats {
    /// Every exit from the guest.
    pub exits: AtomicU64,
    /// Exits for a host interrupt (or a kick).
    pub irq_exits: AtomicU64,
    /// WFI exits.
    pub wfi_exit_stat: AtomicU64,
    /// WFE exits.
    pub wfe_exit_stat: AtomicU64,
    /// Guest calls forwarded to the shim (PSCI and other SMCCC calls).
    pub hvc_exit_stat: AtomicU64,
    /// MMIO accesses the shim completed (vGIC, slots, ioeventfds).
    pub mmio_exit_kernel: AtomicU64,
    /// MMIO accesses handed to the VMM (`KVM_EXIT_MMIO`).
    pub mmio_exit_user: AtomicU64,
    /// `KVM_RUN`s ended by a signal.
    pub signal_exits: AtomicU64,
    /// Stage-2 faults backed with a page.
    pub mem_faults: AtomicU64,
    /// Waits in WFI ended by a wake-up (an interrupt, a kick).
    pub halt_wakeup: AtomicU64,
}

const VCPU_DESCS: [Desc; 10] = [
    Desc("exits", CUMULATIVE),
    Desc("irq_exits", CUMULATIVE),
    Desc("wfi_exit_stat", CUMULATIVE),
    Desc("wfe_exit_stat", CUMULATIVE),
    Desc("hvc_exit_stat", CUMULATIVE),
    Desc("mmio_exit_kernel", CUMULATIVE),
    Desc("mmio_exit_user", CUMULATIVE),
    Desc("signal_exits", CUMULATIVE),
    Desc("mem_faults", CUMULATIVE),
    Desc("halt_wakeup", CUMULATIVE),
];

impl VcpuStats {
    fn values(&self) -> [u64; VCPU_DESCS.len()] {
        [
            &self.exits,
            &self.irq_exits,
            &self.wfi_exit_stat,
            &self.wfe_exit_stat,
            &self.hvc_exit_stat,
            &self.mmio_exit_kernel,
            &self.mmio_exit_user,
            &self.signal_exits,
            &self.mem_faults,
            &self.halt_wakeup,
        ]
        .map(|c| c.load(Relaxed))
    }
}

impl VmStats {
    fn values(&self) -> [u64; VM_DESCS.len()] {
        [&self.pages_backed, &self.vcpus].map(|c| c.load(Relaxed))
    }
}

/// Adds one to a counter.
pub fn bump(c: &AtomicU64) {
    c.fetch_add(1, Relaxed);
}

/// The most counters of either kind.
const MAX_DESCS: usize = VCPU_DESCS.len();
/// The largest image.
const MAX_IMAGE: usize = HEADER_SIZE + NAME_SIZE + MAX_DESCS * (DESC_SIZE + NAME_SIZE + 8);

/// The file's whole contents for counters `descs` with `values` and id
/// string `id`; its length.
fn image(id: &[u8], descs: &[Desc], values: &[u64], out: &mut [u8; MAX_IMAGE]) -> usize {
    let n = descs.len();
    let id_off = HEADER_SIZE;
    let desc_off = id_off + NAME_SIZE;
    let data_off = desc_off + n * (DESC_SIZE + NAME_SIZE);
    let mut put = |at: usize, b: &[u8]| out[at..at + b.len()].copy_from_slice(b);
    // struct kvm_stats_header: flags, name_size, num_desc, id_offset,
    // desc_offset, data_offset.
    for (i, w) in [0, NAME_SIZE, n, id_off, desc_off, data_off]
        .iter()
        .enumerate()
    {
        put(4 * i, &(*w as u32).to_le_bytes());
    }
    let id = &id[..id.len().min(NAME_SIZE - 1)];
    put(id_off, id);
    for (i, d) in descs.iter().enumerate() {
        let at = desc_off + i * (DESC_SIZE + NAME_SIZE);
        // flags, exponent 0 (s16), size 1 (u16), offset (u32) in the data
        // block, bucket_size 0, then the name, NUL-padded.
        put(at, &d.1.to_le_bytes());
        put(at + 4, &0u16.to_le_bytes());
        put(at + 6, &1u16.to_le_bytes());
        put(at + 8, &(8 * i as u32).to_le_bytes());
        put(at + 12, &0u32.to_le_bytes());
        put(at + DESC_SIZE, d.0.as_bytes());
    }
    for (i, v) in values.iter().enumerate() {
        put(data_off + 8 * i, &v.to_le_bytes());
    }
    data_off + 8 * n
}

/// Writes `n` in decimal after `at` bytes of `buf`; the new length.
fn decimal(buf: &mut [u8], mut at: usize, n: u64) -> usize {
    let mut digits = [0u8; 20];
    let mut k = 0;
    let mut n = n;
    loop {
        digits[k] = b'0' + (n % 10) as u8;
        k += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    while k > 0 {
        k -= 1;
        buf[at] = digits[k];
        at += 1;
    }
    at
}

/// The id string: `kvm-<pid>` for the VM, `kvm-<pid>/vcpu-<id>` for vCPU
/// `vcpu` (as KVM names them, `pid` the VM's creator's); its length.
fn id_string(pid: u32, vcpu: Option<u32>, buf: &mut [u8; NAME_SIZE]) -> usize {
    buf[..4].copy_from_slice(b"kvm-");
    let mut at = decimal(buf, 4, u64::from(pid));
    if let Some(v) = vcpu {
        buf[at..at + 6].copy_from_slice(b"/vcpu-");
        at = decimal(buf, at + 6, u64::from(v));
    }
    at
}

/// The bytes of the stats file of the VM (`vcpu` `None`) or of one of its
/// vCPUs from `offset` into `out`: how many (0 at or past the end).
pub fn fill(vm: &Vm, pid: u32, vcpu: Option<u32>, offset: u64, out: &mut [u8]) -> usize {
    let mut id = [0u8; NAME_SIZE];
    let id_len = id_string(pid, vcpu, &mut id);
    let mut img = [0u8; MAX_IMAGE];
    let len = match vcpu {
        Some(v) => {
            let s = &vm.vcpus[v as usize].stats;
            image(&id[..id_len], &VCPU_DESCS, &s.values(), &mut img)
        }
        None => image(&id[..id_len], &VM_DESCS, &vm.stats.values(), &mut img),
    };
    if offset >= len as u64 {
        return 0;
    }
    let from = offset as usize;
    let n = out.len().min(len - from);
    out[..n].copy_from_slice(&img[from..from + n]);
    n
}

/// `read(2)` of a stats fd: up to `len` bytes from `offset` to the
/// caller's `uaddr`; the bytes read. `vcpu` must name a created vCPU.
pub fn read<E: KvmEnv>(
    env: &mut E,
    vm: &Vm,
    pid: u32,
    vcpu: Option<u32>,
    offset: i64,
    uaddr: u64,
    len: u64,
) -> Result<u64, Errno> {
    if offset < 0 {
        return Err(EINVAL);
    }
    if vcpu.is_some_and(|v| v as usize >= vm.vcpus.len()) {
        return Err(EINVAL);
    }
    let mut buf = [0u8; MAX_IMAGE];
    let want = len.min(MAX_IMAGE as u64) as usize;
    let n = fill(vm, pid, vcpu, offset as u64, &mut buf[..want]);
    env.copy_to_user(uaddr, &buf[..n])?;
    Ok(n as u64)
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;

    fn u32_at(b: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
    }
    fn u64_at(b: &[u8], at: usize) -> u64 {
        u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
    }

    #[test]
    fn ids_are_kvms() {
        let mut b = [0u8; NAME_SIZE];
        let n = id_string(1234, None, &mut b);
        assert_eq!(&b[..n], b"kvm-1234");
        let n = id_string(7, Some(63), &mut b);
        assert_eq!(&b[..n], b"kvm-7/vcpu-63");
        let n = id_string(0, Some(0), &mut b);
        assert_eq!(&b[..n], b"kvm-0/vcpu-0");
    }

    #[test]
    fn the_layout_is_kvms() {
        let mut img = [0u8; MAX_IMAGE];
        let values: [u64; 10] = core::array::from_fn(|i| 100 + i as u64);
        let len = image(b"kvm-9/vcpu-1", &VCPU_DESCS, &values, &mut img);
        let n = VCPU_DESCS.len();
        assert_eq!(u32_at(&img, 0), 0);
        assert_eq!(u32_at(&img, 4), NAME_SIZE as u32);
        assert_eq!(u32_at(&img, 8), n as u32);
        assert_eq!(u32_at(&img, 12), 24);
        assert_eq!(u32_at(&img, 16), 72);
        let data = 72 + n * 64;
        assert_eq!(u32_at(&img, 20), data as u32);
        assert_eq!(len, data + 8 * n);
        assert_eq!(&img[24..37], b"kvm-9/vcpu-1\0");
        for (i, d) in VCPU_DESCS.iter().enumerate() {
            let at = 72 + 64 * i;
            assert_eq!(u32_at(&img, at), d.1);
            assert_eq!(u32_at(&img, at + 4), 1 << 16, "exponent 0, size 1");
            assert_eq!(u32_at(&img, at + 8), 8 * i as u32);
            assert_eq!(u32_at(&img, at + 12), 0);
            let name = &img[at + 16..at + 64];
            let end = name.iter().position(|&c| c == 0).unwrap();
            assert_eq!(&name[..end], d.0.as_bytes());
            assert_eq!(u64_at(&img, data + 8 * i), 100 + i as u64);
        }
    }

    #[test]
    fn reads_take_any_window_of_the_image() {
        // SAFETY: all zero is what the glue hands the core (atomics,
        // integers, bools and cells of those).
        let vm: std::boxed::Box<Vm> = unsafe { std::boxed::Box::new_zeroed().assume_init() };
        bump(&vm.vcpus[3].stats.exits);
        bump(&vm.vcpus[3].stats.exits);
        bump(&vm.vcpus[3].stats.halt_wakeup);
        let mut whole = [0u8; 2 * MAX_IMAGE];
        let len = fill(&vm, 42, Some(3), 0, &mut whole);
        let data = u32_at(&whole, 20) as usize;
        assert_eq!(len, data + 8 * VCPU_DESCS.len());
        assert_eq!(u64_at(&whole, data), 2);
        assert_eq!(u64_at(&whole, data + 8 * 9), 1);
        // Any offset and length give the same bytes.
        for off in [0usize, 1, 23, 24, 71, 72, 100, data - 3, data, len - 1] {
            let mut b = [0xAAu8; 40];
            let n = fill(&vm, 42, Some(3), off as u64, &mut b);
            assert_eq!(n, 40.min(len - off));
            assert_eq!(&b[..n], &whole[off..off + n]);
        }
        assert_eq!(fill(&vm, 42, Some(3), len as u64, &mut [0u8; 8]), 0);
        assert_eq!(fill(&vm, 42, Some(3), u64::MAX, &mut [0u8; 8]), 0);
        // The VM's own file.
        bump(&vm.stats.vcpus);
        let len = fill(&vm, 42, None, 0, &mut whole);
        assert_eq!(u32_at(&whole, 8), 2);
        assert_eq!(&whole[24..31], b"kvm-42\0");
        assert_eq!(u64_at(&whole, len - 8), 1);
    }
}
