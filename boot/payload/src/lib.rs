//! Format of the KServ payload packed after KCore in the boot image.
#![no_std]
#![forbid(unsafe_code)]
