//! Linux error numbers (`include/uapi/asm-generic/errno-base.h`), as the
//! KVM API returns them (negated) from its ioctls.

/// An error number (positive; ioctls return it negated).
pub type Errno = i32;

/// `EPERM`.
pub const EPERM: Errno = 1;
/// `ENOENT`.
pub const ENOENT: Errno = 2;
/// `EINTR`.
pub const EINTR: Errno = 4;
/// `EIO`.
pub const EIO: Errno = 5;
/// `ENXIO`.
pub const ENXIO: Errno = 6;
/// `E2BIG`.
pub const E2BIG: Errno = 7;
/// `ENOEXEC`.
pub const ENOEXEC: Errno = 8;
/// `EBADF`.
pub const EBADF: Errno = 9;
/// `EAGAIN`.
pub const EAGAIN: Errno = 11;
/// `ENOMEM`.
pub const ENOMEM: Errno = 12;
/// `EFAULT`.
pub const EFAULT: Errno = 14;
/// `EBUSY`.
pub const EBUSY: Errno = 16;
/// `EEXIST`.
pub const EEXIST: Errno = 17;
/// `ENODEV`.
pub const ENODEV: Errno = 19;
/// `EINVAL`.
pub const EINVAL: Errno = 22;
/// `ENOSPC`.
pub const ENOSPC: Errno = 28;

/// What an ioctl returns for `e`.
pub const fn ret(e: Errno) -> i64 {
    -(e as i64)
}

/// An ioctl's return value from a result.
pub fn ioctl_ret(r: Result<i64, Errno>) -> i64 {
    match r {
        Ok(v) => v,
        Err(e) => ret(e),
    }
}

/// `EKEYREJECTED`: a protected VM's image signature did not verify.
pub const EKEYREJECTED: Errno = 129;
/// `ENOTTY`: an ioctl a device fd does not know.
pub const ENOTTY: Errno = 25;
