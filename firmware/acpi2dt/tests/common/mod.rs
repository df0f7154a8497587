//! A small ACPI table builder: RSDP 2.0, XSDT, MADT (GICC, GICD, GICR, ITS),
//! FADT, SPCR, GTDT, IORT (an ITS group and SMMUv3 nodes) and MCFG, laid out
//! in one buffer that stands for physical memory, with the field offsets of
//! ACPI 6.5. And an EFI memory map with hundreds of descriptors.
#![allow(dead_code, clippy::unwrap_used, clippy::panic, missing_docs)]

/// `kcore-boot`'s test helpers: the random generator and `dtc`.
#[path = "../../../../boot/tests/common/mod.rs"]
pub mod boot;
pub use boot::{Rng, dtc_accepts};

use kcore_acpi::memory::{EFI_MEMORY_WB, efi_type};
use kcore_acpi::{MemDesc, SliceMem};

/// Where the tables' "memory" starts.
pub const MEM_BASE: u64 = 0x7c00_0000;
pub const GICD: u64 = 0x0800_0000;
pub const GICC: u64 = 0x0801_0000;
pub const GICH: u64 = 0x0803_0000;
pub const GICV: u64 = 0x0804_0000;
pub const GICR: u64 = 0x080a_0000;
pub const UART: u64 = 0x0900_0000;
pub const SMMU: u64 = 0x0905_0000;
pub const ECAM: u64 = 0x40_1000_0000;
pub const ITS0: u64 = 0x0808_0000;
pub const ITS1: u64 = 0x0810_0000;

pub fn put16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_le_bytes());
}
pub fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}
pub fn put64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// Sets byte `at` so that `b[..len]` sums to zero.
pub fn fix(b: &mut [u8], len: usize, at: usize) {
    b[at] = 0;
    let s = b[..len].iter().fold(0u8, |s, &x| s.wrapping_add(x));
    b[at] = 0u8.wrapping_sub(s);
}

/// An SDT: header (revision `rev`) then `body`, checksum fixed.
pub fn sdt(sig: &[u8; 4], rev: u8, body: &[u8]) -> Vec<u8> {
    let mut t = vec![0; 36];
    t[..4].copy_from_slice(sig);
    put32(&mut t, 4, (36 + body.len()) as u32);
    t[8] = rev;
    t[10..16].copy_from_slice(b"KCORE ");
    t[16..24].copy_from_slice(b"TESTTBL ");
    put32(&mut t, 24, 1);
    put32(&mut t, 28, 0x4b43_4f52);
    put32(&mut t, 32, 1);
    t.extend_from_slice(body);
    let len = t.len();
    fix(&mut t, len, 9);
    t
}

/// Re-fixes the checksum of an SDT after an edit.
pub fn refix(t: &mut [u8]) {
    let len = t.len();
    fix(t, len, 9);
}

pub fn gicc(uid: u32, mpidr: u64, gicr: u64, enabled: bool) -> Vec<u8> {
    let mut e = vec![0; 80];
    e[0] = 0x0b;
    e[1] = 80;
    put32(&mut e, 4, uid);
    put32(&mut e, 8, uid);
    put32(&mut e, 12, u32::from(enabled));
    put32(&mut e, 20, 23); // PMU PPI
    put64(&mut e, 32, GICC);
    put64(&mut e, 40, GICV);
    put64(&mut e, 48, GICH);
    put32(&mut e, 56, 25);
    put64(&mut e, 60, gicr);
    put64(&mut e, 68, mpidr);
    e
}

pub fn gicd(base: u64, version: u8) -> Vec<u8> {
    let mut e = vec![0; 24];
    e[0] = 0x0c;
    e[1] = 24;
    put64(&mut e, 8, base);
    e[20] = version;
    e
}

pub fn gicr(base: u64, len: u32) -> Vec<u8> {
    let mut e = vec![0; 16];
    e[0] = 0x0e;
    e[1] = 16;
    put64(&mut e, 4, base);
    put32(&mut e, 12, len);
    e
}

pub fn its(id: u32, base: u64) -> Vec<u8> {
    let mut e = vec![0; 20];
    e[0] = 0x0f;
    e[1] = 20;
    put32(&mut e, 4, id);
    put64(&mut e, 8, base);
    e
}

pub fn madt(entries: &[Vec<u8>]) -> Vec<u8> {
    let mut body = vec![0; 8]; // local interrupt controller address, flags
    for e in entries {
        body.extend_from_slice(e);
    }
    sdt(b"APIC", 5, &body)
}

/// ACPI 6.5 FADT (276 bytes), hardware-reduced, with `ARM_BOOT_ARCH`.
pub fn fadt(psci: bool, hvc: bool) -> Vec<u8> {
    let mut body = vec![0; 276 - 36];
    put32(&mut body, 112 - 36, 1 << 20); // HW_REDUCED_ACPI
    put16(&mut body, 129 - 36, u16::from(psci) | (u16::from(hvc) << 1));
    body[131 - 36] = 5; // minor version
    sdt(b"FACP", 6, &body)
}

/// SPCR revision 2 with interface `ty` at `base`.
pub fn spcr(ty: u8, base: u64) -> Vec<u8> {
    let mut body = vec![0; 80 - 36];
    body[0] = ty;
    // Generic address: system memory, 32-bit, dword access.
    body[4] = 0;
    body[5] = 32;
    body[7] = 3;
    put64(&mut body, 8, base);
    body[16] = 8; // interrupt type: GIC
    put32(&mut body, 18, 33);
    body[22] = 7; // 115200
    sdt(b"SPCR", 2, &body)
}

/// GTDT revision 3: secure, non-secure, virtual, EL2 timer GSIVs.
pub fn gtdt(gsiv: [u32; 4], flags: u32) -> Vec<u8> {
    let mut body = vec![0; 104 - 36];
    put64(&mut body, 0, u64::MAX); // CntControlBase: none
    for (k, g) in gsiv.iter().enumerate() {
        put32(&mut body, 48 - 36 + 8 * k, *g);
        put32(&mut body, 52 - 36 + 8 * k, flags);
    }
    put64(&mut body, 80 - 36, u64::MAX); // CntReadBase: none
    sdt(b"GTDT", 3, &body)
}

/// IORT revision 5: an ITS group node listing ITS 0, then one SMMUv3 node
/// per base.
pub fn iort(smmus: &[u64]) -> Vec<u8> {
    let mut nodes = Vec::new();
    let mut its_node = vec![0; 24];
    its_node[0] = 0;
    put16(&mut its_node, 1, 24);
    its_node[3] = 1;
    put32(&mut its_node, 16, 1); // one ITS
    put32(&mut its_node, 20, 0); // its id 0
    nodes.push(its_node);
    for &b in smmus {
        let mut n = vec![0; 68];
        n[0] = 4;
        put16(&mut n, 1, 68);
        n[3] = 4;
        put64(&mut n, 16, b);
        put32(&mut n, 44, 106); // event GSIV
        nodes.push(n);
    }
    let mut body = vec![0; 12];
    put32(&mut body, 0, nodes.len() as u32);
    put32(&mut body, 4, 48);
    for n in &nodes {
        body.extend_from_slice(n);
    }
    sdt(b"IORT", 5, &body)
}

pub fn mcfg(base: u64, start: u8, end: u8) -> Vec<u8> {
    let mut body = vec![0; 8 + 16];
    put64(&mut body, 8, base);
    body[8 + 10] = start;
    body[8 + 11] = end;
    sdt(b"MCFG", 1, &body)
}

pub fn xsdt(addrs: &[u64]) -> Vec<u8> {
    let body: Vec<u8> = addrs.iter().flat_map(|a| a.to_le_bytes()).collect();
    sdt(b"XSDT", 1, &body)
}

pub fn rsdp(xsdt: u64) -> Vec<u8> {
    let mut r = vec![0; 36];
    r[..8].copy_from_slice(b"RSD PTR ");
    r[9..15].copy_from_slice(b"KCORE ");
    r[15] = 2;
    put32(&mut r, 20, 36);
    put64(&mut r, 24, xsdt);
    fix(&mut r, 20, 8);
    fix(&mut r, 36, 32);
    r
}

/// MPIDR of CPU `i`: 128 per Aff3 "socket", Aff1 the core, like a
/// two-socket Altra Max.
pub fn mpidr(i: usize) -> u64 {
    (((i / 128) as u64) << 32) | (((i % 128) as u64) << 8)
}

/// What to build.
#[derive(Clone, Debug)]
pub struct Machine {
    pub cpus: usize,
    /// One GICR structure covering every CPU (else GICC.GICR per CPU).
    pub gicr_structure: bool,
    pub its: Vec<u64>,
    /// FADT: `None` no PSCI, else `Some(hvc)`.
    pub psci: Option<bool>,
    pub spcr_type: u8,
    pub smmus: Vec<u64>,
}

impl Machine {
    pub fn server(cpus: usize) -> Self {
        Machine {
            cpus,
            gicr_structure: true,
            its: vec![ITS0, ITS1],
            psci: Some(true),
            spcr_type: 3,
            smmus: vec![SMMU],
        }
    }

    pub fn madt_entries(&self) -> Vec<Vec<u8>> {
        let mut e = Vec::new();
        for i in 0..self.cpus {
            let gicr_base = if self.gicr_structure {
                0
            } else {
                GICR + 0x2_0000 * i as u64
            };
            e.push(gicc(i as u32, mpidr(i), gicr_base, true));
        }
        e.push(gicd(GICD, 3));
        if self.gicr_structure {
            e.push(gicr(GICR, 0x2_0000 * self.cpus as u32));
        }
        for (k, &b) in self.its.iter().enumerate() {
            e.push(its(k as u32, b));
        }
        e
    }

    /// The tables, in XSDT order.
    pub fn tables(&self) -> Vec<Vec<u8>> {
        vec![
            fadt(self.psci.is_some(), self.psci == Some(true)),
            madt(&self.madt_entries()),
            gtdt([29, 30, 27, 26], 0),
            spcr(self.spcr_type, UART),
            iort(&self.smmus),
            mcfg(ECAM, 0, 255),
            sdt(b"PPTT", 2, &[0; 16]),
        ]
    }
}

/// Lays out `tables` after an RSDP and XSDT in one buffer starting at
/// [`MEM_BASE`]. Returns the buffer and the RSDP's address.
pub fn layout(tables: &[Vec<u8>]) -> (Vec<u8>, u64) {
    layout_at(tables, MEM_BASE)
}

/// [`layout`] for a buffer that will live at `base`.
pub fn layout_at(tables: &[Vec<u8>], base: u64) -> (Vec<u8>, u64) {
    let mut mem = rsdp(0);
    let align = |m: &mut Vec<u8>| m.resize(m.len().next_multiple_of(16), 0);
    align(&mut mem);
    let xsdt_at = mem.len();
    let xsdt_len = 36 + 8 * tables.len();
    mem.resize(xsdt_at + xsdt_len, 0);
    align(&mut mem);
    let mut addrs = Vec::new();
    for t in tables {
        addrs.push(base + mem.len() as u64);
        mem.extend_from_slice(t);
        align(&mut mem);
    }
    let x = xsdt(&addrs);
    mem[xsdt_at..xsdt_at + xsdt_len].copy_from_slice(&x);
    let r = rsdp(base + xsdt_at as u64);
    mem[..36].copy_from_slice(&r);
    (mem, base)
}

pub fn mem(bytes: &[u8]) -> SliceMem<'_> {
    SliceMem {
        base: MEM_BASE,
        bytes,
    }
}

/// An EFI memory map made of `banks` banks of 256 MiB from 0x8000_0000,
/// each of three usable descriptors of different types, followed by a
/// 1 MiB descriptor that is runtime-services data (memory, not usable),
/// MMIO, or uncached conventional memory (not memory) in turn; plus the
/// ACPI-reclaim range holding the tables. Scrambled, as nothing orders a
/// firmware's map.
pub struct EfiMap {
    pub map: Vec<MemDesc>,
    /// The banks KCore should see.
    pub memory: Vec<(u64, u64)>,
    /// The ranges it should reserve.
    pub reserved: Vec<(u64, u64)>,
}

pub fn efi_map(banks: usize) -> EfiMap {
    let d = |ty, base: u64, size: u64, attribute| MemDesc {
        ty,
        base,
        pages: size / 4096,
        attribute,
    };
    let wb = EFI_MEMORY_WB | 1;
    let mut out = EfiMap {
        map: Vec::new(),
        memory: Vec::new(),
        reserved: Vec::new(),
    };
    for k in 0..banks as u64 {
        let base = 0x8000_0000 + k * 0x2000_0000;
        let size = 0x1000_0000;
        let kinds = [
            efi_type::CONVENTIONAL,
            efi_type::BOOT_SERVICES_DATA,
            efi_type::LOADER_CODE,
        ];
        let third = size / 4;
        let map = &mut out.map;
        map.push(d(kinds[k as usize % 3], base, third, wb));
        map.push(d(kinds[(k as usize + 1) % 3], base + third, third, wb));
        map.push(d(
            kinds[(k as usize + 2) % 3],
            base + 2 * third,
            size - 2 * third,
            wb,
        ));
        let gap = 0x10_0000;
        match k % 3 {
            0 => {
                map.push(d(efi_type::RUNTIME_SERVICES_DATA, base + size, gap, wb));
                out.memory.push((base, size + gap));
                out.reserved.push((base + size, gap));
            }
            1 => {
                map.push(d(efi_type::MMIO, base + size, gap, 1));
                out.memory.push((base, size));
            }
            _ => {
                map.push(d(efi_type::CONVENTIONAL, base + size, gap, 1));
                out.memory.push((base, size));
            }
        }
    }
    // The tables' memory, ACPI reclaim, adjacent to nothing else.
    out.map
        .push(d(efi_type::ACPI_RECLAIM, MEM_BASE, 0x10_0000, wb));
    out.memory.push((MEM_BASE, 0x10_0000));
    out.reserved.push((MEM_BASE, 0x10_0000));
    out.memory.sort();
    out.reserved.sort();
    let n = out.map.len();
    for i in 0..n {
        out.map.swap(i, (i * 7919 + 13) % n);
    }
    out
}

/// The `== NAME` sections of a recorded fixture (`tests/fixtures/*.hex`:
/// `#` comments, then `od -An -tx1` lines under each name), as bytes.
pub fn hex_sections(text: &str) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        if let Some(name) = line.strip_prefix("== ") {
            out.push((name.to_string(), Vec::new()));
        } else {
            let bytes = line
                .split_whitespace()
                .map(|h| u8::from_str_radix(h, 16).unwrap());
            out.last_mut().unwrap().1.extend(bytes);
        }
    }
    out
}
