//! The KCore EL2 binary: `boot/src/el2` holds everything that runs there;
//! the host-testable parts are in this crate's library.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![deny(clippy::undocumented_unsafe_blocks, unsafe_op_in_unsafe_fn)]

#[cfg(target_os = "none")]
extern crate alloc;

#[cfg(target_os = "none")]
mod el2;

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("kcore runs at EL2: build it with `cargo xtask build`");
    std::process::exit(2);
}
