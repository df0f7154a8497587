//! The KCore EL2 binary.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("kcore runs at EL2: build it with `cargo xtask build`");
    std::process::exit(2);
}
