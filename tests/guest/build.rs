//! Links the guest binary with `guest.ld` when building for bare metal
//! (`target_os = "none"`); host builds need nothing.
fn main() {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("guest.ld");
    println!("cargo:rerun-if-changed={}", script.display());
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("none") {
        println!("cargo:rustc-link-arg-bins=-T{}", script.display());
    }
}
