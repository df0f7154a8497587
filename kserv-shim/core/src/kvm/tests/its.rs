//! The ITS through the KVM API against the real KCore: the device and its
//! attributes with KVM's errors, the guest's ITS accesses on its MMIO
//! exits, a command queue in guest memory run on a `CWRITER` write, the
//! property table read for the LPIs it maps, and MSIs from
//! `KVM_SIGNAL_MSI` and from an irqfd's MSI route reaching KCore's list
//! registers as LPIs.

use super::*;
use crate::kvm::uapi::routing::{MSI, MSI_VALID_DEVID};
use crate::kvm::uapi::vgic_attr::{
    ADDR_UNDEF, CTRL_INIT, GRP_ADDR, GRP_CTRL, GRP_ITS_REGS, ITS_ADDR_TYPE, ITS_CTRL_RESET,
    ITS_RESTORE_TABLES, ITS_SAVE_TABLES, SAVE_PENDING_TABLES,
};
use crate::kvm::vgic::its;
use kcore_abi::run::exit_flags::WRITE;
use uapi::mem::LOG_DIRTY_PAGES;

const ITS: u64 = 0x0808_0000;
/// Guest tables in the slot at [`RAM`]: device and collection tables, the
/// command queue, the property and pending tables.
const DEV_TABLE: u64 = RAM + 0x1_0000;
const COLL_TABLE: u64 = RAM + 0x2_0000;
const QUEUE: u64 = RAM + 0x3_0000;
const PROP: u64 = RAM + 0x4_0000;
const PEND: u64 = RAM + 0x6_0000;

/// An ITS device attribute: `op` 0 set, 1 get, 2 has; the value at 0xA000.
fn its_attr(
    f: &mut Fake,
    vm: &Vm,
    op: u32,
    group: u32,
    attr: u64,
    value: u64,
) -> Result<u64, Errno> {
    device_attr(f, vm, its::device_ioctl, op, group, attr, value)
}

/// Guest memory at `gpa` (in the slot) written.
fn guest_write(f: &mut Fake, gpa: u64, data: &[u8]) {
    f.copy_to_user(UADDR + gpa - RAM, data)
        .expect("guest memory");
}

/// The guest's commands: MAPD device 7 (8 event bits, its ITT at `RAM +
/// 0x8_0000`), MAPC 3 to vCPU 0, MAPTI event 2 to LPI 8197, SYNC.
const COMMANDS: [[u64; 4]; 4] = [
    [0x08 | 7 << 32, 7, (1 << 63) | (RAM + 0x8_0000), 0],
    [0x09, 0, 1 << 63 | 3, 0],
    [0x0A | 7 << 32, 2 | 8197 << 32, 3, 0],
    [0x05, 0, 0, 0],
];

/// [`COMMANDS`] into the guest's queue at [`QUEUE`].
fn write_commands(f: &mut Fake) {
    for (i, c) in COMMANDS.iter().enumerate() {
        for (k, w) in c.iter().enumerate() {
            guest_write(f, QUEUE + 32 * i as u64 + 8 * k as u64, &w.to_le_bytes());
        }
    }
}

/// `KVM_SIGNAL_MSI` of `struct kvm_msi` (`flags` and `devid` in `fd`).
fn signal_msi(f: &mut Fake, vm: &Vm, addr: u64, data: u32, fd: (u32, u32)) -> Result<i64, Errno> {
    let (flags, devid) = fd;
    let msi = [
        addr,
        u64::from(data) | u64::from(flags) << 32,
        u64::from(devid),
        0,
    ];
    let a = user(f, 0xB800, &msi);
    vm::ioctl(f, vm, &HOST, uapi::SIGNAL_MSI, a)
}

#[test]
fn its_device_commands_and_msis_reach_the_guest_as_lpis() {
    assert_eq!(vm::check_extension(&HOST, uapi::cap::SIGNAL_MSI), 1);
    let mut f = Fake::new();
    let vm = new_vm(&mut f, 0);
    slot(&mut f, &vm);
    // Fd 5 is an eventfd, for an irqfd on an MSI route.
    f.fds.extend([(5, 0xE5)]);
    let mut v = new_vcpu(&mut f, &vm, 0);
    init(&mut f, &vm, &mut v, 1 << 2);
    let cap = |f: &mut Fake, vm: &Vm| {
        vm::ioctl(f, vm, &HOST, uapi::CHECK_EXTENSION, uapi::cap::MSI_DEVID)
    };
    assert_eq!(cap(&mut f, &vm), Ok(0));
    assert_eq!(
        vm::dev_ioctl(&HOST, uapi::CHECK_EXTENSION, uapi::cap::MSI_DEVID),
        ret(EINVAL)
    );
    // Without an ITS (and before the vGIC): KVM's errors.
    assert_eq!(
        signal_msi(&mut f, &vm, ITS, 0, (MSI_VALID_DEVID, 0)),
        Err(EINVAL)
    );
    vgic(&mut f, &vm);
    assert_eq!(
        signal_msi(&mut f, &vm, ITS, 0, (MSI_VALID_DEVID, 0)),
        Err(ENODEV)
    );
    // The ITS device: test, create, a second one.
    let ty = uapi::device::TYPE_ARM_VGIC_ITS;
    assert_eq!(
        vm::device_create(&mut f, &vm, ty, uapi::device::CREATE_TEST),
        Ok(0)
    );
    assert_eq!(vm::device_create(&mut f, &vm, ty, 0), Ok(vm::DEVICE_ITS));
    assert_eq!(vm::device_create(&mut f, &vm, ty, 0), Err(EEXIST));
    assert_eq!(cap(&mut f, &vm), Ok(1));
    // Attributes.
    assert_eq!(
        its_attr(&mut f, &vm, 1, GRP_ADDR, ITS_ADDR_TYPE, 0),
        Ok(ADDR_UNDEF)
    );
    assert_eq!(
        its_attr(&mut f, &vm, 1, GRP_ITS_REGS, 0x8, 0),
        Err(ENXIO),
        "no base"
    );
    assert_eq!(its_attr(&mut f, &vm, 0, GRP_ADDR, 2, ITS), Err(ENODEV));
    assert_eq!(its_attr(&mut f, &vm, 2, GRP_ADDR, 2, 0), Err(ENXIO));
    assert_eq!(
        its_attr(&mut f, &vm, 0, GRP_ADDR, ITS_ADDR_TYPE, ITS + 0x1000),
        Err(EINVAL)
    );
    assert_eq!(
        its_attr(&mut f, &vm, 0, GRP_ADDR, ITS_ADDR_TYPE, 1 << 44),
        Err(E2BIG)
    );
    assert_eq!(
        its_attr(&mut f, &vm, 0, GRP_ADDR, ITS_ADDR_TYPE, ITS),
        Ok(ITS)
    );
    assert_eq!(
        its_attr(&mut f, &vm, 0, GRP_ADDR, ITS_ADDR_TYPE, ITS),
        Err(EEXIST)
    );
    assert_eq!(
        its_attr(&mut f, &vm, 1, GRP_ADDR, ITS_ADDR_TYPE, 0),
        Ok(ITS)
    );
    assert_eq!(its_attr(&mut f, &vm, 0, GRP_CTRL, CTRL_INIT, 0), Ok(0));
    assert_eq!(its_attr(&mut f, &vm, 2, GRP_CTRL, ITS_CTRL_RESET, 0), Ok(0));
    assert_eq!(its_attr(&mut f, &vm, 2, GRP_ITS_REGS, 0x88, 0), Ok(0));
    assert_eq!(its_attr(&mut f, &vm, 2, GRP_ITS_REGS, 0x8C, 0), Err(EINVAL));
    assert_eq!(its_attr(&mut f, &vm, 2, GRP_ITS_REGS, 0x40, 0), Err(ENXIO));
    assert_eq!(its_attr(&mut f, &vm, 2, 9, 0, 0), Err(ENXIO));
    assert_eq!(its_attr(&mut f, &vm, 1, GRP_ITS_REGS, 0x8, 0), Ok(0x1_EF71));
    let cmd = user(&mut f, 0xA100, &[0]);
    assert_eq!(its::device_ioctl(&mut f, &vm, uapi::RUN, cmd), Err(ENOTTY));
    // The guest: its redistributor's LPI tables, LPI 8197 enabled at
    // priority 0x80 in the property table, then the ITS's tables and queue
    // (its BASER writes and TYPER read on MMIO exits).
    guest_write(&mut f, PROP + 5, &[0x81]);
    vm.with_gic(&mut f, |g| {
        g.mmio(0, GICR + 0x70, 8, true, PROP | 15);
        g.mmio(0, GICR + 0x78, 8, true, PEND);
        g.mmio(0, GICR, 4, true, 1);
        ((), 0)
    });
    let dev = 1 << 63 | DEV_TABLE;
    let coll = 1 << 63 | COLL_TABLE;
    f.script([
        (exit::MMIO, 0, ITS + 0x8, 0, 8, [0; 3]),
        (exit::MMIO, WRITE, ITS + 0x100, dev, 8, [0; 3]),
        (exit::MMIO, WRITE, ITS + 0x108, coll, 8, [0; 3]),
        (exit::MMIO, WRITE, ITS + 0x80, 1 << 63 | QUEUE, 8, [0; 3]),
        (exit::MMIO, WRITE, ITS, 1, 4, [0; 3]),
        (exit::MMIO, 0, ITS, 0, 4, [0; 3]),
        (exit::MMIO, 0, 0x0900_0000, 0, 4, [0; 3]),
    ]);
    assert_eq!(ioctl(&mut f, &vm, &mut v, uapi::RUN, 0), Ok(0));
    let answers = f.answers();
    assert_eq!(answers[0], 0x1_EF71, "GITS_TYPER");
    assert_eq!(answers[1], 1 << 31 | 1, "enabled, quiescent");
    // The commands, then CWRITER on an MMIO exit runs them.
    write_commands(&mut f);
    f.script([
        (exit::MMIO, WRITE, ITS + 0x88, 4 * 32, 8, [0; 3]),
        (exit::MMIO, 0, ITS + 0x90, 0, 8, [0; 3]),
        (exit::MMIO, 0, 0x0900_0000, 0, 4, [0; 3]),
    ]);
    assert_eq!(ioctl(&mut f, &vm, &mut v, uapi::RUN, 0), Ok(0));
    assert_eq!(f.answers()[3], 4 * 32, "CREADR: every command read");
    // KVM_SIGNAL_MSI: delivered (1), unmapped (0), bad flags or doorbell.
    assert_eq!(
        signal_msi(&mut f, &vm, ITS + 0x1_0040, 2, (MSI_VALID_DEVID, 7)),
        Ok(1)
    );
    assert_eq!(
        signal_msi(&mut f, &vm, ITS + 0x1_0040, 3, (MSI_VALID_DEVID, 7)),
        Ok(0)
    );
    assert_eq!(
        signal_msi(&mut f, &vm, ITS + 0x1_0040, 2, (0, 7)),
        Err(EINVAL)
    );
    assert_eq!(
        signal_msi(&mut f, &vm, ITS + 0x1_0040, 2, (2, 7)),
        Err(EINVAL)
    );
    assert_eq!(
        signal_msi(&mut f, &vm, GICD, 2, (MSI_VALID_DEVID, 7)),
        Err(EINVAL)
    );
    // The next entry hands LPI 8197 to KCore, which loads it.
    f.script([(exit::MMIO, 0, 0x0900_0000, 0, 4, [0; 3])]);
    assert_eq!(ioctl(&mut f, &vm, &mut v, uapi::RUN, 0), Ok(0));
    assert_eq!(f.last_entry_irqs(), [8197]);
    // The guest takes and completes it (as the exit would report).
    vm.with_gic(&mut f, |g| {
        let mut words = [0u64; super::super::vgic::IRQ_SLOTS];
        let n = g.flush(0, &mut words);
        let done: Vec<u64> = words[..n]
            .iter()
            .map(|&w| kcore_abi::run::irq::with_state(w, 0))
            .collect();
        g.fold(0, &words[..n], &done);
        assert!(!g.has_work(0));
        ((), 0)
    });
    // An irqfd on an MSI route: its signal is the same MSI.
    let a = user(
        &mut f,
        0xC000,
        &[
            1,
            3 | u64::from(MSI) << 32,
            u64::from(MSI_VALID_DEVID),
            ITS + 0x1_0040,
            2 | 7 << 32,
            0,
            0,
        ],
    );
    assert_eq!(
        vm::ioctl(&mut f, &vm, &HOST, uapi::SET_GSI_ROUTING, a),
        Ok(0)
    );
    let a = user(&mut f, 0xB100, &[5 | 3 << 32, 0, 0, 0]);
    assert_eq!(vm::ioctl(&mut f, &vm, &HOST, uapi::IRQFD, a), Ok(0));
    f.kicks.clear();
    f.signal_fd(&vm, 5);
    assert_eq!(f.kicks, [0]);
    assert!(vm.with_gic(&mut f, |g| (g.has_work(0), 0)));
    f.script([(exit::MMIO, 0, 0x0900_0000, 0, 4, [0; 3])]);
    assert_eq!(ioctl(&mut f, &vm, &mut v, uapi::RUN, 0), Ok(0));
    assert_eq!(f.last_entry_irqs(), [8197]);
    assert_eq!(its_attr(&mut f, &vm, 1, GRP_ITS_REGS, 0x90, 0), Ok(4 * 32));
    // A migration logs the slot's dirty pages. The saves below write the
    // guest's tables through the VMM's mapping, which no guest fault
    // records: they must mark those pages dirty themselves, or the copy
    // would carry them stale (as a migration with the ITS did).
    let a = user(
        &mut f,
        0x8000,
        &[u64::from(LOG_DIRTY_PAGES) << 32, RAM, 0x10_0000, UADDR],
    );
    assert_eq!(
        vm::ioctl(&mut f, &vm, &HOST, uapi::SET_USER_MEMORY_REGION, a),
        Ok(0)
    );
    let dirty = |f: &mut Fake| -> Vec<u64> {
        let a = user(f, 0x8100, &[0, 0xD000]);
        assert_eq!(vm::ioctl(f, &vm, &HOST, uapi::GET_DIRTY_LOG, a), Ok(0));
        let mut pages = Vec::new();
        for w in 0..4u64 {
            let mut b = [0u8; 8];
            f.copy_from_user(0xD000 + 8 * w, &mut b).expect("bitmap");
            let bits = u64::from_le_bytes(b);
            pages.extend((0..64).filter(|k| bits >> k & 1 != 0).map(|k| 64 * w + k));
        }
        pages
    };
    assert_eq!(dirty(&mut f), Vec::<u64>::new());
    // Save: KVM's ABI revision 0 entries in the guest's tables.
    assert_eq!(
        its_attr(&mut f, &vm, 2, GRP_CTRL, ITS_SAVE_TABLES, 0),
        Ok(0)
    );
    assert_eq!(
        its_attr(&mut f, &vm, 0, GRP_CTRL, ITS_SAVE_TABLES, 0),
        Ok(0)
    );
    // The device table's, the collection table's and the ITT's pages.
    assert_eq!(dirty(&mut f), [0x10, 0x20, 0x80]);
    let read = |f: &mut Fake, gpa: u64| {
        let mut b = [0u8; 8];
        f.copy_from_user(UADDR + gpa - RAM, &mut b)
            .expect("guest memory");
        u64::from_le_bytes(b)
    };
    let dte = 1 << 63 | (RAM + 0x8_0000) >> 8 << 5 | 7;
    assert_eq!(read(&mut f, DEV_TABLE + 7 * 8), dte);
    assert_eq!(read(&mut f, RAM + 0x8_0000 + 2 * 8), 8197 << 16 | 3);
    assert_eq!(read(&mut f, COLL_TABLE), 1 << 63 | 3);
    assert_eq!(read(&mut f, COLL_TABLE + 8), 0);
    // The GICv3's SAVE_PENDING_TABLES: LPI 8197, pending, into vCPU 0's
    // pending table (byte 1024, bit 5).
    assert_eq!(signal_msi(&mut f, &vm, ITS, 2, (MSI_VALID_DEVID, 7)), Ok(1));
    let pend = |f: &mut Fake| {
        let mut b = [0u8; 1];
        f.copy_from_user(UADDR + PEND - RAM + 1024, &mut b)
            .expect("guest memory");
        b[0]
    };
    assert_eq!(pend(&mut f), 0);
    // Has, then set.
    for op in [2, 0] {
        let r = gic_attr(&mut f, &vm, op, GRP_CTRL, SAVE_PENDING_TABLES, 0);
        assert_eq!(r, Ok(0));
    }
    assert_eq!(pend(&mut f), 1 << 5);
    assert_eq!(dirty(&mut f), [(PEND - RAM) >> 12]);
    // Restore into a reset ITS, as a VMM does after migration: registers
    // first, then the tables; the MSI reaches LPI 8197 again.
    assert_eq!(its_attr(&mut f, &vm, 0, GRP_CTRL, ITS_CTRL_RESET, 0), Ok(0));
    assert_eq!(
        signal_msi(&mut f, &vm, ITS, 2, (MSI_VALID_DEVID, 7)),
        Err(EBUSY)
    );
    for (off, value) in [(0x100, dev), (0x108, coll), (0x80, 1 << 63 | QUEUE)] {
        assert_eq!(
            its_attr(&mut f, &vm, 0, GRP_ITS_REGS, off, value),
            Ok(value)
        );
    }
    assert_eq!(
        its_attr(&mut f, &vm, 0, GRP_CTRL, ITS_RESTORE_TABLES, 0),
        Ok(0)
    );
    assert_eq!(its_attr(&mut f, &vm, 0, GRP_ITS_REGS, 0x0, 1), Ok(1));
    // The restored LPI took its pending state from the table, and consumed it.
    assert!(vm.with_gic(&mut f, |g| (g.has_work(0), 0)));
    assert_eq!(pend(&mut f), 0);
    assert_eq!(signal_msi(&mut f, &vm, ITS, 2, (MSI_VALID_DEVID, 7)), Ok(1));
    assert_eq!(signal_msi(&mut f, &vm, ITS, 3, (MSI_VALID_DEVID, 7)), Ok(0));
    // A second restore finds collection 3 there: EEXIST, and drops it all.
    assert_eq!(
        its_attr(&mut f, &vm, 0, GRP_CTRL, ITS_RESTORE_TABLES, 0),
        Err(EEXIST)
    );
    assert_eq!(signal_msi(&mut f, &vm, ITS, 2, (MSI_VALID_DEVID, 7)), Ok(0));
    // A malformed entry (an ITT entry's LPI below 8192): EINVAL.
    guest_write(&mut f, COLL_TABLE, &0u64.to_le_bytes());
    guest_write(
        &mut f,
        RAM + 0x8_0000 + 2 * 8,
        &(100u64 << 16).to_le_bytes(),
    );
    assert_eq!(
        its_attr(&mut f, &vm, 0, GRP_CTRL, ITS_RESTORE_TABLES, 0),
        Err(EINVAL)
    );
    // The VMM's view of the registers (CBASER's write restarted the queue),
    // and a reset.
    assert_eq!(its_attr(&mut f, &vm, 1, GRP_ITS_REGS, 0x90, 0), Ok(0));
    assert_eq!(its_attr(&mut f, &vm, 0, GRP_ITS_REGS, 0x90, 0), Err(EBUSY));
    assert_eq!(its_attr(&mut f, &vm, 0, GRP_CTRL, ITS_CTRL_RESET, 0), Ok(0));
    assert_eq!(its_attr(&mut f, &vm, 1, GRP_ITS_REGS, 0x0, 0), Ok(1 << 31));
    assert_eq!(
        signal_msi(&mut f, &vm, ITS, 2, (MSI_VALID_DEVID, 7)),
        Err(EBUSY)
    );
    vcpu::destroy(&mut f, &mut v);
    vm::destroy(&mut f, &vm);
    assert_eq!(f.eventfd_refs(), 0);
}

/// A protected VM's ITS: the guest's tables are in memory KServ cannot
/// read (donated on first touch), so the shim reads them through KCore,
/// which lets it read only what the guest itself programmed into its ITS
/// and redistributor registers on its MMIO exits. The same commands as
/// above run, the MSI reaches the guest as LPI 8197, and nothing else of
/// the guest's memory is readable, nor its ITS state saved.
#[test]
fn a_protected_vms_its_reads_only_what_its_guest_programmed() {
    let mut f = Fake::new();
    let vm = new_vm(&mut f, kcore_abi::kvm_ext::VM_TYPE_ARM_PROTECTED);
    slot(&mut f, &vm);
    let mut v = new_vcpu(&mut f, &vm, 0);
    init(&mut f, &vm, &mut v, 1 << 2);
    // What the VMM loads before anything is donated: the guest's property
    // table entry for LPI 8197, its command queue, a secret.
    guest_write(&mut f, PROP + 5, &[0x81]);
    write_commands(&mut f);
    const SECRET: u64 = RAM + 0x9_0000;
    guest_write(&mut f, SECRET, &0x5EC2_E700_u64.to_le_bytes());
    // Its image (the first page), signed to allow MMIO below 1 GiB.
    f.trust_signer();
    let req = signed_request(&mut f, 0x1000, &[(0, 0x4_0000)]);
    assert_eq!(
        vm::ioctl(&mut f, &vm, &HOST, KSERV_VM_VERIFY_IMAGE, req),
        Ok(0)
    );
    start_in_image(&mut f, &vm, &mut v);
    vgic(&mut f, &vm);
    let ty = uapi::device::TYPE_ARM_VGIC_ITS;
    assert_eq!(vm::device_create(&mut f, &vm, ty, 0), Ok(vm::DEVICE_ITS));
    assert_eq!(
        its_attr(&mut f, &vm, 0, GRP_ADDR, ITS_ADDR_TYPE, ITS),
        Ok(ITS)
    );
    assert_eq!(its_attr(&mut f, &vm, 0, GRP_CTRL, CTRL_INIT, 0), Ok(0));
    // The guest touches its tables' pages (each donated), then programs
    // its redistributor and ITS, and runs the queue.
    let dev = 1 << 63 | DEV_TABLE;
    let coll = 1 << 63 | COLL_TABLE;
    let mut exits: Vec<Script> = [QUEUE, PROP, PEND, DEV_TABLE, COLL_TABLE, SECRET]
        .iter()
        .map(|&a| (exit::MEM_FAULT, 0, a, 0, 0, [0; 3]))
        .collect();
    exits.extend([
        (exit::MMIO, WRITE, GICR + 0x70, PROP | 15, 8, [0; 3]),
        (exit::MMIO, WRITE, GICR + 0x78, PEND, 8, [0; 3]),
        (exit::MMIO, WRITE, GICR, 1, 4, [0; 3]),
        (exit::MMIO, WRITE, ITS + 0x100, dev, 8, [0; 3]),
        (exit::MMIO, WRITE, ITS + 0x108, coll, 8, [0; 3]),
        (exit::MMIO, WRITE, ITS + 0x80, 1 << 63 | QUEUE, 8, [0; 3]),
        (exit::MMIO, WRITE, ITS, 1, 4, [0; 3]),
        (exit::MMIO, WRITE, ITS + 0x88, 4 * 32, 8, [0; 3]),
        (exit::MMIO, 0, ITS + 0x90, 0, 8, [0; 3]),
        (exit::MMIO, 0, 0x0900_0000, 0, 4, [0; 3]),
    ]);
    f.script(exits);
    assert_eq!(ioctl(&mut f, &vm, &mut v, uapi::RUN, 0), Ok(0));
    assert_eq!(f.answers()[0], 4 * 32, "CREADR: every command read");
    assert!(f.guest_pages().contains_key(&(QUEUE >> 12)), "donated");
    // The commands took: the MSI is delivered, with the property the
    // guest's table gives (enabled), and reaches the vCPU as LPI 8197.
    assert_eq!(
        signal_msi(&mut f, &vm, ITS + 0x1_0040, 2, (MSI_VALID_DEVID, 7)),
        Ok(1)
    );
    f.script([(exit::MMIO, 0, 0x0900_0000, 0, 4, [0; 3])]);
    assert_eq!(ioctl(&mut f, &vm, &mut v, uapi::RUN, 0), Ok(0));
    assert_eq!(f.last_entry_irqs(), [8197]);
    // KServ reads the queue through KCore, but nothing the guest did not
    // hand its ITS: not the secret, not the ITT MAPD named.
    let h = vm.handle();
    let q = crate::hypercall::read_gic_table(&mut f, h, QUEUE + 32, 24);
    assert_eq!(
        q.ok(),
        Some([COMMANDS[1][0], COMMANDS[1][1], COMMANDS[1][2]])
    );
    for addr in [SECRET, RAM + 0x8_0000, RAM] {
        assert!(crate::hypercall::read_gic_table(&mut f, h, addr, 8).is_err());
    }
    // No state of a protected VM is saved, nor restored into it.
    for attr in [ITS_SAVE_TABLES, ITS_RESTORE_TABLES] {
        assert_eq!(its_attr(&mut f, &vm, 0, GRP_CTRL, attr, 0), Err(EPERM));
    }
    assert_eq!(
        gic_attr(&mut f, &vm, 0, GRP_CTRL, SAVE_PENDING_TABLES, 0),
        Err(EPERM)
    );
    vcpu::destroy(&mut f, &mut v);
    vm::destroy(&mut f, &vm);
}
