//! Building a payload (the packer's side), available with the `alloc` feature.
//!
//! [`build`] lays the components out exactly as `docs/boot-image.md` draws
//! them: header, entry table, VM verification key, command line and its NUL,
//! initramfs at the next
//! 4 KiB boundary, and the kernel last at the first offset whose absolute file
//! offset in the boot image is a multiple of 2 MiB. Every output of [`build`]
//! is accepted by [`crate::parse`].

use alloc::vec;
use alloc::vec::Vec;

use crate::{
    CHECKSUM_OFFSET, ENTRY_SIZE, EntryProblem, Error, FORMAT_VERSION, HEADER_SIZE, KERNEL_ALIGN,
    Kind, MAGIC, PAGE_ALIGN, Payload, VM_VERIFY_KEY_SIZE, check_cmdline, parse_image_header,
    payload_checksum,
};

/// Copies `bytes` into `out` at `at`.
fn put(out: &mut [u8], at: u64, bytes: &[u8]) -> Result<(), Error> {
    let at = usize::try_from(at).map_err(|_| Error::TooLarge)?;
    let end = at.checked_add(bytes.len()).ok_or(Error::TooLarge)?;
    out.get_mut(at..end)
        .ok_or(Error::TooLarge)?
        .copy_from_slice(bytes);
    Ok(())
}

/// Rounds `x` up to a multiple of `align` (a power of two), `None` on overflow.
fn align_up(x: u64, align: u64) -> Option<u64> {
    Some(x.checked_add(align - 1)? & !(align - 1))
}

/// Builds the payload for a boot image in which the payload header starts at
/// file offset `payload_file_offset` (KCore's footprint, 4 KiB aligned).
///
/// The kernel must carry a valid arm64 `Image` header, the initramfs (if any)
/// must not be empty, and the command line (if any) must be at most 4 KiB and
/// free of NUL bytes. `vm_verify_key`, the Ed25519 public key of protected
/// VMs' images, is packed as it is (KCore validates it at boot).
pub fn build(
    payload_file_offset: u64,
    kernel: &[u8],
    initramfs: Option<&[u8]>,
    cmdline: Option<&str>,
    vm_verify_key: Option<&[u8; 32]>,
) -> Result<Vec<u8>, Error> {
    if !payload_file_offset.is_multiple_of(PAGE_ALIGN) {
        return Err(Error::MisalignedPayloadOffset {
            offset: payload_file_offset,
        });
    }
    parse_image_header(kernel).map_err(Error::BadKernelHeader)?;
    if let Some(c) = cmdline {
        check_cmdline(c.as_bytes())?;
    }
    let mut entries: Vec<(Kind, u64, &[u8])> = Vec::new();
    let count = 1
        + u64::from(initramfs.is_some())
        + u64::from(cmdline.is_some())
        + u64::from(vm_verify_key.is_some());
    let mut cursor = HEADER_SIZE + ENTRY_SIZE * count;
    let too_large = Error::TooLarge;
    // The kernel's entry comes first; its offset is filled in below.
    entries.push((Kind::Kernel, 0, kernel));
    // The key right after the entry table: 8-byte aligned, at a fixed place.
    if let Some(k) = vm_verify_key {
        entries.push((Kind::VmVerifyKey, cursor, k.as_slice()));
        cursor += VM_VERIFY_KEY_SIZE;
    }
    if let Some(c) = cmdline {
        entries.push((Kind::Cmdline, cursor, c.as_bytes()));
        // The NUL terminator follows the command line.
        cursor = cursor.checked_add(c.len() as u64 + 1).ok_or(too_large)?;
    }
    if let Some(i) = initramfs {
        if i.is_empty() {
            let index = entries.len() as u32;
            return Err(Error::BadEntry {
                index,
                reason: EntryProblem::Empty,
            });
        }
        let offset = align_up(cursor, PAGE_ALIGN).ok_or(too_large)?;
        entries.push((Kind::Initramfs, offset, i));
        cursor = offset.checked_add(i.len() as u64).ok_or(too_large)?;
    }
    let absolute = payload_file_offset.checked_add(cursor).ok_or(too_large)?;
    let kernel_offset = align_up(absolute, KERNEL_ALIGN).ok_or(too_large)? - payload_file_offset;
    if let Some(first) = entries.first_mut() {
        first.1 = kernel_offset;
    }
    let total_size = kernel_offset
        .checked_add(kernel.len() as u64)
        .ok_or(too_large)?;

    let mut out = vec![0u8; usize::try_from(total_size).map_err(|_| too_large)?];
    put(&mut out, 0, &MAGIC)?;
    put(&mut out, 8, &FORMAT_VERSION.to_le_bytes())?;
    put(&mut out, 12, &(count as u32).to_le_bytes())?;
    put(&mut out, 16, &total_size.to_le_bytes())?;
    for (i, (kind, offset, bytes)) in entries.iter().enumerate() {
        let at = HEADER_SIZE + ENTRY_SIZE * i as u64;
        put(&mut out, at, &kind.raw().to_le_bytes())?;
        put(&mut out, at + 4, &0u32.to_le_bytes())?;
        put(&mut out, at + 8, &offset.to_le_bytes())?;
        put(&mut out, at + 16, &(bytes.len() as u64).to_le_bytes())?;
        put(&mut out, *offset, bytes)?;
    }
    let sum = payload_checksum(&out);
    put(&mut out, CHECKSUM_OFFSET as u64, &sum.to_le_bytes())?;
    Ok(out)
}

/// The value the packer writes into `image_size` of KCore's `Image` header:
/// the footprint of the whole boot image, from its first byte to the end of
/// the KServ kernel's footprint (`payload_file_offset + kernel offset +` the
/// kernel's `image_size`, or its file size should that be larger).
///
/// Fails if the kernel's `Image` header is invalid (it cannot be, for a
/// [`Payload`] returned by [`crate::parse`]) or the sum overflows.
pub fn boot_image_size(payload_file_offset: u64, payload: &Payload<'_>) -> Result<u64, Error> {
    let header = parse_image_header(payload.kernel.bytes).map_err(Error::BadKernelHeader)?;
    let footprint = header.image_size.max(payload.kernel.bytes.len() as u64);
    payload_file_offset
        .checked_add(payload.kernel.offset)
        .and_then(|x| x.checked_add(footprint))
        .ok_or(Error::TooLarge)
}
