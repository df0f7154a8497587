//! Fuzz target `dispatcher`: input bytes become a sequence of raw KServ
//! traps (ESR class and ISS, FAR, HPFAR, `x0..x7`, SPSR, the CPU index)
//! applied to one pre-populated world through `Host::handle_trap` over the
//! host doubles; the invariants are checked after every trap. The body is
//! shared with the deterministic host test `kcore/tests/dispatcher_fuzz.rs`.
//! Run it with `cargo xtask fuzz` (docs/model-checking.md, "Fuzzing the
//! trap dispatcher").

#![no_main]

#[path = "../../tests/fuzz_body/mod.rs"]
mod fuzz_body;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Whether the invariant walks saw what KCore wrote is a property of the
    // harness, not of KCore, and costs more than a run: checked for one
    // input length in 16.
    let check_mirror = data.len().is_multiple_of(16);
    let mut tally = fuzz_body::Tally::default();
    if let Err(e) = fuzz_body::run(data, check_mirror, &mut tally) {
        // libFuzzer records a panic as a crash, with the input.
        #[allow(clippy::panic, reason = "a broken invariant is the fuzzer's finding")]
        {
            panic!("KCore invariant violated: {e}");
        }
    }
});
