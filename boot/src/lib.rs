//! Host-testable parts of the EL2 binary: platform discovery from the device
//! tree and the device tree KServ is handed.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;
