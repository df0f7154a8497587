//! The VM itself, through `kvm-ioctls` (arm64 only): every KVM call the VMM
//! makes is in this file, in the order below (`docs/vmm.md` lists them for
//! whoever implements `/dev/kvm`).
//!
//! 1. `/dev/kvm`: `KVM_GET_API_VERSION`, `KVM_CHECK_EXTENSION` (USER_MEMORY,
//!    ONE_REG, ARM_PSCI_0_2, DEVICE_CTRL, IRQCHIP, MAX_VCPUS,
//!    ARM_VM_IPA_SIZE), `KVM_GET_VCPU_MMAP_SIZE`, `KVM_CREATE_VM` with the IPA
//!    size (and `KVM_VM_TYPE_ARM_PROTECTED` for `--protected`).
//! 2. `KVM_SET_USER_MEMORY_REGION`: one slot of RAM at 1 GiB.
//! 3. The kernel, initrd and device tree are written into RAM; for a
//!    protected VM `KSERV_VM_VERIFY_IMAGE` then has KCore verify the kernel.
//! 4. `KVM_ARM_PREFERRED_TARGET`, then per vCPU `KVM_CREATE_VCPU` (and the
//!    `kvm_run` mmap) and `KVM_ARM_VCPU_INIT` (PSCI 0.2; all but vCPU 0
//!    powered off).
//! 5. `KVM_CREATE_DEVICE` (vGICv3) and `KVM_SET_DEVICE_ATTR`: distributor
//!    and redistributor addresses, number of IRQs, then `CTRL_INIT`.
//! 6. `KVM_SET_ONE_REG` of vCPU 0: PC = kernel entry, x0 = device tree.
//!    Nothing else: `KVM_ARM_VCPU_INIT` gives the architectural reset state
//!    (EL1h, MMU off, interrupts masked), and a protected vCPU takes only
//!    these two.
//! 7. One thread per vCPU in `KVM_RUN`: MMIO exits go to the devices, device
//!    interrupts go out with `KVM_IRQ_LINE` (SPIs, level), PSCI runs in the
//!    kernel; `KVM_EXIT_SYSTEM_EVENT` ends the VM.

use crate::args::Options;
use crate::bus::{MmioBus, MmioDevice, SharedDevice};
use crate::exit::{self, Exit, ExitStats, Next, Stop};
use crate::fdt::{self, Console, FdtConfig, GicVersion};
use crate::image::{HEADER_LEN, ImageHeader};
use crate::irq::{IrqLine, kvm_irq_line_spi};
use crate::kvm_abi::{self, KservVerifyImage};
use crate::layout::{self, BootLayout, Gpa, Spi};
use crate::pl011::Pl011;
use crate::terminal::{self, ConsoleInput};
use crate::timestamp::Timestamped;
use crate::virtio::GuestMem;
use crate::virtio::block::Block;
use crate::virtio::console::Console as VirtioConsole;
use crate::virtio::mmio::MmioTransport;
use anyhow::{Context, Result, bail, ensure};
use kvm_bindings::{
    kvm_create_device, kvm_device_attr, kvm_userspace_memory_region, kvm_vcpu_init,
};
use kvm_ioctls::{Cap, DeviceFd, Kvm, VcpuExit, VcpuFd, VmFd};
use linux_loader::loader::KernelLoader;
use linux_loader::loader::pe::PE;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};

// The constants `kvm_abi` spells out, checked against the bindings.
const _: () = {
    use kvm_abi as k;
    use kvm_bindings as b;
    assert!(k::KVM_REG_ARM64 == b::KVM_REG_ARM64);
    assert!(k::KVM_REG_SIZE_U64 == b::KVM_REG_SIZE_U64);
    assert!(k::KVM_REG_ARM_CORE == b::KVM_REG_ARM_CORE as u64);
    assert!(k::KVM_ARM_VCPU_POWER_OFF == b::KVM_ARM_VCPU_POWER_OFF);
    assert!(k::KVM_ARM_VCPU_PSCI_0_2 == b::KVM_ARM_VCPU_PSCI_0_2);
    assert!(k::KVM_DEV_TYPE_ARM_VGIC_V3 == b::kvm_device_type_KVM_DEV_TYPE_ARM_VGIC_V3);
    assert!(k::KVM_DEV_TYPE_ARM_VGIC_V2 == b::kvm_device_type_KVM_DEV_TYPE_ARM_VGIC_V2);
    assert!(k::KVM_CREATE_DEVICE_TEST == b::KVM_CREATE_DEVICE_TEST);
    assert!(KVM_CREATE_DEVICE == 0xC00C_AEE0);
    assert!(k::KVM_VGIC_V2_ADDR_TYPE_DIST == b::KVM_VGIC_V2_ADDR_TYPE_DIST as u64);
    assert!(k::KVM_VGIC_V2_ADDR_TYPE_CPU == b::KVM_VGIC_V2_ADDR_TYPE_CPU as u64);
    assert!(k::KVM_DEV_ARM_VGIC_GRP_ADDR == b::KVM_DEV_ARM_VGIC_GRP_ADDR);
    assert!(k::KVM_DEV_ARM_VGIC_GRP_NR_IRQS == b::KVM_DEV_ARM_VGIC_GRP_NR_IRQS);
    assert!(k::KVM_DEV_ARM_VGIC_GRP_CTRL == b::KVM_DEV_ARM_VGIC_GRP_CTRL);
    assert!(k::KVM_DEV_ARM_VGIC_CTRL_INIT == b::KVM_DEV_ARM_VGIC_CTRL_INIT as u64);
    assert!(k::KVM_VGIC_V3_ADDR_TYPE_DIST == b::KVM_VGIC_V3_ADDR_TYPE_DIST as u64);
    assert!(k::KVM_VGIC_V3_ADDR_TYPE_REDIST == b::KVM_VGIC_V3_ADDR_TYPE_REDIST as u64);
    assert!(k::KVM_ARM_IRQ_TYPE_SHIFT == b::KVM_ARM_IRQ_TYPE_SHIFT);
    assert!(k::KVM_ARM_IRQ_TYPE_SPI == b::KVM_ARM_IRQ_TYPE_SPI);
    assert!(k::KVM_SYSTEM_EVENT_SHUTDOWN == b::KVM_SYSTEM_EVENT_SHUTDOWN);
    assert!(k::KVM_SYSTEM_EVENT_RESET == b::KVM_SYSTEM_EVENT_RESET);
    assert!(k::KVM_SYSTEM_EVENT_CRASH == b::KVM_SYSTEM_EVENT_CRASH);
    assert!(k::KVM_VM_TYPE_ARM_IPA_SIZE_MASK == b::KVM_VM_TYPE_ARM_IPA_SIZE_MASK as u64);
};

/// arm64's `COMMAND_LINE_SIZE`, the terminating NUL included.
const COMMAND_LINE_SIZE: usize = 2048;
/// The memory slot of RAM.
const RAM_SLOT: u32 = 0;

/// Reports with `-v`.
#[derive(Clone, Copy)]
struct Verbose(bool);

impl Verbose {
    fn say(self, what: impl FnOnce() -> String) {
        if self.0 {
            eprintln!("kcore-vmm: {}", what());
        }
    }
}

/// An SPI of the in-kernel vGIC, driven with `KVM_IRQ_LINE`. A failure
/// stops the VM.
struct KvmIrqLine {
    vm: Arc<VmFd>,
    spi: Spi,
    stop: Mutex<Sender<Stop>>,
}

impl IrqLine for KvmIrqLine {
    fn set_level(&self, high: bool) {
        if let Err(e) = self.vm.set_irq_line(kvm_irq_line_spi(self.spi), high) {
            let msg = format!(
                "KVM_IRQ_LINE (SPI {}, level {high}) failed: {e}",
                self.spi.0
            );
            if let Ok(s) = self.stop.lock() {
                let _ = s.send(Stop::Error(msg));
            }
        }
    }
}

/// The PL031 of `vm-superio` on the bus (32-bit registers only).
struct Rtc(vm_superio::Rtc<vm_superio::rtc_pl031::NoEvents>);

impl MmioDevice for Rtc {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let mut v = [0u8; 4];
        if data.len() == 4 {
            self.0.read(offset as u16, &mut v);
        }
        crate::bus::put_le(data, u64::from(u32::from_le_bytes(v)));
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if let Ok(v) = <[u8; 4]>::try_from(data) {
            self.0.write(offset as u16, &v);
        }
    }
}

impl ConsoleInput for Pl011 {
    fn push_input(&mut self, bytes: &[u8]) {
        Pl011::push_input(self, bytes);
    }
}

impl ConsoleInput for MmioTransport<VirtioConsole> {
    fn push_input(&mut self, bytes: &[u8]) {
        self.device_mut().push_input(bytes);
        self.process();
    }
}

/// Checks that the host's KVM has what this VMM needs.
fn check_kvm(kvm: &Kvm, opts: &Options) -> Result<()> {
    let api = kvm.get_api_version();
    ensure!(api == 12, "KVM_GET_API_VERSION is {api}, expected 12");
    let needed = [
        (Cap::UserMemory, "KVM_CAP_USER_MEMORY"),
        (Cap::OneReg, "KVM_CAP_ONE_REG"),
        (Cap::ArmPsci02, "KVM_CAP_ARM_PSCI_0_2"),
        (Cap::DeviceCtrl, "KVM_CAP_DEVICE_CTRL"),
        (Cap::Irqchip, "KVM_CAP_IRQCHIP"),
    ];
    let missing: Vec<&str> = needed
        .into_iter()
        .filter(|(cap, _)| !kvm.check_extension(*cap))
        .map(|(_, name)| name)
        .collect();
    ensure!(missing.is_empty(), "/dev/kvm lacks {}", missing.join(", "));
    let max = kvm.get_max_vcpus();
    ensure!(
        opts.vcpus as usize <= max,
        "{} vCPUs asked for, KVM allows {max} (KVM_CAP_MAX_VCPUS)",
        opts.vcpus
    );
    Ok(())
}

/// `KVM_CREATE_VM` with the IPA size the guest needs.
fn create_vm(kvm: &Kvm, opts: &Options, v: Verbose) -> Result<VmFd> {
    let needed = layout::ipa_bits_needed(opts.mem_bytes());
    let ipa_bits = if kvm.check_extension(Cap::ArmVmIPASize) {
        let limit = kvm.get_host_ipa_limit();
        ensure!(
            i64::from(needed) <= i64::from(limit),
            "the guest needs {needed} bits of IPA space, the host offers {limit}"
        );
        needed
    } else {
        ensure!(
            needed <= kvm_abi::KVM_DEFAULT_IPA_BITS,
            "the guest needs {needed} bits of IPA space; KVM offers 40 (no KVM_CAP_ARM_VM_IPA_SIZE)"
        );
        0
    };
    let ty = kvm_abi::vm_type(ipa_bits, opts.protected);
    v.say(|| {
        format!(
            "KVM_CREATE_VM type {ty:#x} (IPA bits {ipa_bits}, protected {})",
            opts.protected
        )
    });
    kvm.create_vm_with_type(ty).map_err(|e| {
        if opts.protected {
            anyhow::anyhow!(
                "KVM_CREATE_VM of a protected VM (type {ty:#x}) failed: {e}. Protected VMs are \
                 KServ's extension of the KVM API (KVM_VM_TYPE_ARM_PROTECTED, as in pKVM); \
                 stock KVM has none"
            )
        } else {
            anyhow::anyhow!("KVM_CREATE_VM (type {ty:#x}) failed: {e}")
        }
    })
}

/// Guest RAM, registered as memory slot 0.
fn create_memory(vm: &VmFd, opts: &Options) -> Result<GuestMem> {
    let size = usize::try_from(opts.mem_bytes()).context("guest RAM size")?;
    let mem = GuestMem::from_ranges(&[(GuestAddress(layout::RAM_BASE.0), size)])
        .map_err(|e| anyhow::anyhow!("cannot map {} MiB of guest RAM: {e:?}", opts.mem_mib))?;
    let host = mem
        .get_host_address(GuestAddress(layout::RAM_BASE.0))
        .map_err(|e| anyhow::anyhow!("guest RAM has no host address: {e}"))?;
    let region = kvm_userspace_memory_region {
        slot: RAM_SLOT,
        flags: 0,
        guest_phys_addr: layout::RAM_BASE.0,
        memory_size: opts.mem_bytes(),
        userspace_addr: host as u64,
    };
    // SAFETY: `host..host + size` is the anonymous mapping `mem` owns, and it
    // outlives the VM: every vCPU thread keeps a clone of `mem` (its regions
    // are reference-counted), and the process exits when the VM stops.
    unsafe { vm.set_user_memory_region(region) }
        .context("KVM_SET_USER_MEMORY_REGION of guest RAM")?;
    Ok(mem)
}

/// What was placed in RAM.
struct Loaded {
    layout: BootLayout,
    kernel_len: u64,
}

/// Loads the kernel, the initrd and the device tree.
fn load(
    mem: &GuestMem,
    opts: &Options,
    virtio: &[(Gpa, Spi)],
    gic: GicVersion,
    v: Verbose,
) -> Result<Loaded> {
    let kpath = &opts.kernel;
    let mut kfile =
        File::open(kpath).with_context(|| format!("cannot open the kernel {}", kpath.display()))?;
    let kernel_len = kfile.metadata()?.len();
    let mut head = [0u8; HEADER_LEN];
    kfile
        .read_exact(&mut head)
        .with_context(|| format!("cannot read {}", kpath.display()))?;
    let header = ImageHeader::parse(&head).with_context(|| kpath.display().to_string())?;
    let initrd = match &opts.initrd {
        Some(p) => {
            Some(fs::read(p).with_context(|| format!("cannot read the initrd {}", p.display()))?)
        }
        None => None,
    };
    let layout = BootLayout::new(
        opts.mem_bytes(),
        header.text_offset,
        header.footprint(kernel_len),
        initrd.as_ref().map(|i| i.len() as u64),
    )?;
    let loaded = PE::load(
        mem,
        Some(GuestAddress(layout.kernel_base.0)),
        &mut kfile,
        None,
    )
    .map_err(|e| anyhow::anyhow!("loading {}: {e}", kpath.display()))?;
    ensure!(
        loaded.kernel_load.0 == layout.kernel_entry.0,
        "linux-loader put the kernel at {:#x}, not at {}",
        loaded.kernel_load.0,
        layout.kernel_entry
    );
    if let (Some(bytes), Some((at, _))) = (&initrd, layout.initrd) {
        mem.write_slice(bytes, GuestAddress(at.0))
            .map_err(|e| anyhow::anyhow!("writing the initrd: {e}"))?;
    }
    let cmdline = linux_loader::cmdline::Cmdline::try_from(&opts.cmdline, COMMAND_LINE_SIZE)
        .map_err(|e| anyhow::anyhow!("kernel command line: {e}"))?;
    let cmdline = cmdline
        .as_cstring()
        .map_err(|e| anyhow::anyhow!("kernel command line: {e}"))?;
    let cmdline = cmdline.to_str().context("kernel command line")?;
    let dtb = fdt::build(&FdtConfig {
        vcpus: opts.vcpus,
        layout: &layout,
        cmdline,
        console: opts.console,
        virtio,
        gic,
    })
    .map_err(|e| anyhow::anyhow!("building the device tree: {e}"))?;
    ensure!(
        dtb.len() as u64 <= layout::DTB_MAX,
        "the device tree is {} bytes, more than 2 MiB",
        dtb.len()
    );
    mem.write_slice(&dtb, GuestAddress(layout.dtb.0))
        .map_err(|e| anyhow::anyhow!("writing the device tree: {e}"))?;
    v.say(|| {
        format!(
            "kernel {} ({kernel_len} bytes, text_offset {:#x}, image_size {:#x}) at {}; initrd {}; \
             device tree ({} bytes) at {}; RAM {} + {} MiB",
            kpath.display(),
            header.text_offset,
            header.image_size,
            layout.kernel_entry,
            layout
                .initrd
                .map_or("none".to_string(), |(a, l)| format!("{l} bytes at {a}")),
            dtb.len(),
            layout.dtb,
            layout::RAM_BASE,
            opts.mem_mib
        )
    });
    Ok(Loaded { layout, kernel_len })
}

/// `KSERV_VM_VERIFY_IMAGE`: KCore verifies the kernel of a protected VM.
fn verify_image(vm: &VmFd, opts: &Options, loaded: &Loaded, v: Verbose) -> Result<()> {
    let sig_path = opts.signature_path();
    let sig = fs::read(&sig_path)
        .with_context(|| format!("cannot read the kernel's signature {}", sig_path.display()))?;
    ensure!(
        (kvm_abi::MIN_SIGNATURE_BLOCK..=kvm_abi::MAX_SIGNATURE_BLOCK).contains(&sig.len()),
        "{} holds {} bytes, not a signature block (a 64-byte Ed25519 signature and the \
         signed MMIO manifest, `cargo xtask sign-image`)",
        sig_path.display(),
        sig.len()
    );
    let arg = KservVerifyImage {
        gpa: loaded.layout.kernel_entry.0,
        len: loaded.kernel_len,
        sig_addr: sig.as_ptr() as u64,
        sig_len: sig.len() as u64,
    };
    v.say(|| {
        format!(
            "KSERV_VM_VERIFY_IMAGE gpa {:#x} len {:#x}",
            arg.gpa, arg.len
        )
    });
    // SAFETY: `vm` is an open VM file descriptor; the kernel reads the
    // 32-byte `arg` and the `sig_len` bytes at `sig_addr`, both alive for
    // the call.
    let ret = unsafe {
        vmm_sys_util::ioctl::ioctl_with_ref(
            vm,
            kcore_abi::kvm_ext::KSERV_VM_VERIFY_IMAGE as _,
            &arg,
        )
    };
    if ret < 0 {
        let e = std::io::Error::last_os_error();
        bail!(
            "KSERV_VM_VERIFY_IMAGE failed: {e} (KServ's extension of the KVM API: KCore \
             refused the image and signature {}, or this is not KServ's /dev/kvm)",
            sig_path.display()
        );
    }
    Ok(())
}

/// Creates and initialises the vCPUs.
fn create_vcpus(vm: &VmFd, opts: &Options) -> Result<Vec<VcpuFd>> {
    let mut kvi = kvm_vcpu_init::default();
    vm.get_preferred_target(&mut kvi)
        .context("KVM_ARM_PREFERRED_TARGET")?;
    (0..opts.vcpus)
        .map(|i| {
            let vcpu = vm
                .create_vcpu(u64::from(i))
                .with_context(|| format!("KVM_CREATE_VCPU {i}"))?;
            let mut init = kvi;
            init.features[0] |= 1 << kvm_abi::KVM_ARM_VCPU_PSCI_0_2;
            if i > 0 {
                init.features[0] |= 1 << kvm_abi::KVM_ARM_VCPU_POWER_OFF;
            }
            vcpu.vcpu_init(&init)
                .with_context(|| format!("KVM_ARM_VCPU_INIT of vCPU {i}"))?;
            Ok(vcpu)
        })
        .collect()
}

fn set_attr(dev: &DeviceFd, group: u32, attr: u64, addr: u64, what: &str) -> Result<()> {
    let a = kvm_device_attr {
        flags: 0,
        group,
        attr,
        addr,
    };
    dev.set_device_attr(&a)
        .with_context(|| format!("KVM_SET_DEVICE_ATTR of the vGIC: {what}"))
}

/// `KVM_CREATE_DEVICE` = `_IOWR(KVMIO, 0xe0, struct kvm_create_device)`
/// (`IOC_READ` is 2).
const KVM_CREATE_DEVICE: u32 = kcore_abi::kvm_ext::kvm_ioc(
    kcore_abi::kvm_ext::IOC_WRITE | 2,
    0xe0,
    size_of::<kvm_create_device>(),
);

/// The vGIC the host offers: a GICv3, else a GICv2 (the device type
/// `KVM_CREATE_DEVICE_TEST` accepts; a GICv2 host's KVM offers only a
/// GICv2, a GICv3 host's usually only a GICv3).
///
/// The probe is a raw ioctl, not `VmFd::create_device`: a test creates no
/// file descriptor and leaves the structure's `fd` as it was, and
/// `create_device` would wrap that 0 in a `DeviceFd` whose drop closes the
/// VMM's stdin — the guest's console input.
fn gic_version(vm: &VmFd) -> Result<GicVersion> {
    for (ty, version) in [
        (kvm_abi::KVM_DEV_TYPE_ARM_VGIC_V3, GicVersion::V3),
        (kvm_abi::KVM_DEV_TYPE_ARM_VGIC_V2, GicVersion::V2),
    ] {
        let mut dev = kvm_create_device {
            type_: ty,
            fd: 0,
            flags: kvm_abi::KVM_CREATE_DEVICE_TEST,
        };
        // SAFETY: `vm` is an open VM file descriptor; the kernel reads and
        // may write the 12-byte `dev`, alive for the call.
        let ret = unsafe {
            vmm_sys_util::ioctl::ioctl_with_mut_ref(vm, KVM_CREATE_DEVICE as _, &mut dev)
        };
        if ret == 0 {
            return Ok(version);
        }
    }
    anyhow::bail!("KVM_CREATE_DEVICE offers neither a GICv3 nor a GICv2")
}

/// The in-kernel GIC of `version`, after every vCPU exists.
fn create_vgic(vm: &VmFd, vcpus: u32, version: GicVersion) -> Result<DeviceFd> {
    let (ty, frames) = match version {
        GicVersion::V3 => (
            kvm_abi::KVM_DEV_TYPE_ARM_VGIC_V3,
            [
                (kvm_abi::KVM_VGIC_V3_ADDR_TYPE_DIST, layout::GIC_DIST_BASE.0),
                (
                    kvm_abi::KVM_VGIC_V3_ADDR_TYPE_REDIST,
                    layout::GIC_REDIST_BASE.0,
                ),
            ],
        ),
        GicVersion::V2 => (
            kvm_abi::KVM_DEV_TYPE_ARM_VGIC_V2,
            [
                (kvm_abi::KVM_VGIC_V2_ADDR_TYPE_DIST, layout::GIC_DIST_BASE.0),
                (kvm_abi::KVM_VGIC_V2_ADDR_TYPE_CPU, layout::GIC_CPU_BASE.0),
            ],
        ),
    };
    let mut dev = kvm_create_device {
        type_: ty,
        fd: 0,
        flags: 0,
    };
    let gic = vm
        .create_device(&mut dev)
        .with_context(|| format!("KVM_CREATE_DEVICE of a {version:?} vGIC (type {ty})"))?;
    let nr_irqs: u32 = layout::NR_IRQS;
    for (attr, base) in frames {
        set_attr(
            &gic,
            kvm_abi::KVM_DEV_ARM_VGIC_GRP_ADDR,
            attr,
            &base as *const u64 as u64,
            &format!("address type {attr}"),
        )?;
    }
    set_attr(
        &gic,
        kvm_abi::KVM_DEV_ARM_VGIC_GRP_NR_IRQS,
        0,
        &nr_irqs as *const u32 as u64,
        "number of IRQs",
    )?;
    set_attr(
        &gic,
        kvm_abi::KVM_DEV_ARM_VGIC_GRP_CTRL,
        kvm_abi::KVM_DEV_ARM_VGIC_CTRL_INIT,
        0,
        &format!("CTRL_INIT ({vcpus} vCPUs)"),
    )?;
    Ok(gic)
}

/// The devices on the bus, and where console input goes.
struct Devices {
    bus: MmioBus,
    input: Arc<Mutex<dyn ConsoleInput>>,
}

fn create_devices(
    opts: &Options,
    mem: &GuestMem,
    line: &dyn Fn(Spi) -> Arc<dyn IrqLine>,
    virtio: &[(Gpa, Spi)],
    console_out: Box<dyn Write + Send>,
) -> Result<Devices> {
    let mut bus = MmioBus::new();
    let rtc: SharedDevice = Arc::new(Mutex::new(Rtc(vm_superio::Rtc::new())));
    bus.insert("pl031", layout::RTC_BASE, layout::PRIMECELL_SIZE, rtc)?;
    let mut next_virtio = virtio.iter();
    let input: Arc<Mutex<dyn ConsoleInput>> = match opts.console {
        Console::Pl011 => {
            let uart = Arc::new(Mutex::new(Pl011::new(console_out, line(layout::UART_SPI))));
            bus.insert(
                "pl011",
                layout::UART_BASE,
                layout::PRIMECELL_SIZE,
                uart.clone(),
            )?;
            uart
        }
        Console::Virtio => {
            let &(base, spi) = next_virtio
                .next()
                .context("no virtio slot for the console")?;
            let console = VirtioConsole::new(console_out);
            let t = Arc::new(Mutex::new(
                MmioTransport::new(console, mem.clone(), line(spi))
                    .map_err(|e| anyhow::anyhow!("virtio console: {e}"))?,
            ));
            bus.insert("virtio-console", base, layout::VIRTIO_SIZE, t.clone())?;
            t
        }
    };
    if let Some(path) = &opts.block {
        let &(base, spi) = next_virtio.next().context("no virtio slot for the disk")?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .with_context(|| format!("cannot open the disk {}", path.display()))?;
        let len = file.metadata()?.len();
        ensure!(
            len >= crate::virtio::block::SECTOR,
            "the disk {} is smaller than one 512-byte sector",
            path.display()
        );
        let block = Block::new(file, len, "kcore-vmm-disk");
        let t = MmioTransport::new(block, mem.clone(), line(spi))
            .map_err(|e| anyhow::anyhow!("virtio-blk: {e}"))?;
        bus.insert(
            "virtio-blk",
            base,
            layout::VIRTIO_SIZE,
            Arc::new(Mutex::new(t)),
        )?;
    }
    Ok(Devices { bus, input })
}

fn errno_is_retry(e: &kvm_ioctls::Error) -> bool {
    e.errno() == libc::EINTR || e.errno() == libc::EAGAIN
}

/// One vCPU's loop, until the VM stops.
fn run_vcpu(
    index: u32,
    mut vcpu: VcpuFd,
    bus: &MmioBus,
    stats: &Mutex<ExitStats>,
    v: Verbose,
) -> Stop {
    let mut local = ExitStats::default();
    loop {
        let next = match vcpu.run() {
            Ok(e) => {
                let e = match e {
                    VcpuExit::MmioRead(a, d) => Exit::MmioRead(Gpa(a), d),
                    VcpuExit::MmioWrite(a, d) => Exit::MmioWrite(Gpa(a), d),
                    VcpuExit::SystemEvent(kind, data) => Exit::SystemEvent(kind, data),
                    VcpuExit::Intr => Exit::Interrupted,
                    other => Exit::Unexpected(format!("{other:?} on vCPU {index}")),
                };
                exit::handle(bus, e, &mut local, |what, addr, len| {
                    v.say(|| format!("vCPU {index}: {len}-byte {what} at {addr}: no device there"))
                })
            }
            Err(e) if errno_is_retry(&e) => {
                local.interrupted += 1;
                Next::Run
            }
            Err(e) => Next::Stop(Stop::Error(format!("KVM_RUN of vCPU {index}: {e}"))),
        };
        if let Ok(mut s) = stats.lock() {
            *s = local;
        }
        if let Next::Stop(s) = next {
            return s;
        }
    }
}

/// Builds the VM from `opts`, runs it and returns why it stopped. Console
/// input comes from stdin (with `Ctrl-A` escapes when `escapes`). The vCPU
/// threads are left behind in `KVM_RUN`: the caller exits the process.
pub fn run(opts: &Options, escapes: bool) -> Result<Stop> {
    let v = Verbose(opts.verbose);
    let started = Instant::now();
    // Before anything else: the stamps count from here.
    let console_out: Box<dyn Write + Send> = if opts.timestamps {
        Box::new(Timestamped::new(std::io::stdout(), || {
            crate::timestamp::counter().0
        }))
    } else {
        Box::new(std::io::stdout())
    };
    let kvm = Kvm::new().context("cannot open /dev/kvm")?;
    check_kvm(&kvm, opts)?;
    let vm = Arc::new(create_vm(&kvm, opts, v)?);
    let mem = create_memory(&vm, opts)?;
    let virtio = crate::virtio_slots(opts);
    let gic = gic_version(&vm)?;
    ensure!(
        gic == GicVersion::V3 || opts.vcpus <= layout::GICV2_MAX_VCPUS,
        "a GICv2 takes at most {} vCPUs",
        layout::GICV2_MAX_VCPUS
    );
    v.say(|| format!("vGIC: {gic:?}"));
    let loaded = load(&mem, opts, &virtio, gic, v)?;
    if opts.protected {
        verify_image(&vm, opts, &loaded, v)?;
    }
    let vcpus = create_vcpus(&vm, opts)?;
    let _gic = create_vgic(&vm, opts.vcpus, gic)?;
    let boot = vcpus.first().context("no vCPU")?;
    boot.set_one_reg(kvm_abi::REG_PC, &loaded.layout.kernel_entry.0.to_le_bytes())
        .context("KVM_SET_ONE_REG of vCPU 0's PC")?;
    boot.set_one_reg(kvm_abi::REG_X0, &loaded.layout.dtb.0.to_le_bytes())
        .context("KVM_SET_ONE_REG of vCPU 0's x0")?;

    let (tx, rx) = mpsc::channel::<Stop>();
    let line = |spi: Spi| -> Arc<dyn IrqLine> {
        Arc::new(KvmIrqLine {
            vm: vm.clone(),
            spi,
            stop: Mutex::new(tx.clone()),
        })
    };
    let devices = create_devices(opts, &mem, &line, &virtio, console_out)?;
    let bus = Arc::new(devices.bus);
    let stats: Arc<Vec<Mutex<ExitStats>>> =
        Arc::new((0..opts.vcpus).map(|_| Mutex::default()).collect());
    v.say(|| {
        format!(
            "set up in {:?}; starting {} vCPUs",
            started.elapsed(),
            opts.vcpus
        )
    });

    for (i, vcpu) in vcpus.into_iter().enumerate() {
        let (bus, stats, tx, mem) = (bus.clone(), stats.clone(), tx.clone(), mem.clone());
        std::thread::Builder::new()
            .name(format!("vcpu{i}"))
            .spawn(move || {
                // Keeps guest RAM mapped while this vCPU may run.
                let _mem = mem;
                let stop = run_vcpu(i as u32, vcpu, &bus, &stats[i], v);
                let _ = tx.send(stop);
            })
            .with_context(|| format!("cannot start the thread of vCPU {i}"))?;
    }
    let input = devices.input;
    let quit_tx = tx.clone();
    std::thread::Builder::new()
        .name("console-in".into())
        .spawn(move || {
            let quit = terminal::pump(std::io::stdin(), escapes, |bytes| {
                if let Ok(mut i) = input.lock() {
                    i.push_input(bytes);
                }
            });
            if quit {
                let _ = quit_tx.send(Stop::Quit);
            }
        })
        .context("cannot start the console input thread")?;
    drop(tx);
    let stop = rx
        .recv()
        .unwrap_or_else(|_| Stop::Error("every vCPU thread ended without a reason".into()));
    v.say(|| {
        let per_vcpu: Vec<String> = stats
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let s = s.lock().map(|s| *s).unwrap_or_default();
                format!(
                    "vCPU {i}: {} MMIO, {} unclaimed, {} interrupted",
                    s.mmio, s.unclaimed, s.interrupted
                )
            })
            .collect();
        format!(
            "{stop} after {:?}; exits: {}",
            started.elapsed(),
            per_vcpu.join("; ")
        )
    });
    Ok(stop)
}
