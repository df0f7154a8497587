//! The dispatcher fuzz target's body (`fuzz_body`, shared with
//! `kcore/fuzz`) as a plain deterministic test: the committed corpus
//! `kcore/fuzz/corpus/dispatcher/` and pseudo-random inputs from a fixed
//! seed, each a sequence of raw KServ traps through `Host::handle_trap`,
//! with the invariants checked after every trap. No fuzzing tool is needed;
//! `cargo xtask fuzz` runs the real fuzzer over the same body.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on an unexpected error"
)]

mod fuzz_body;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use fuzz_body::{Encoder, MAX_TRAPS, Tally, run, seeds};
use kcore_abi::HypercallId;

/// Pseudo-random inputs per run.
const INPUTS: usize = 20_000;
/// Most traps in a shaped pseudo-random input.
const MAX_SHAPED_TRAPS: u64 = 8;
/// Longest plain pseudo-random input in bytes (a trap takes roughly 10 to 80).
const MAX_LEN: usize = 160;
/// Every this many inputs, also check that the invariant walks saw what KCore
/// wrote (slow in the debug profile: `FakeMachine` reads byte by byte).
const MIRROR_EVERY: usize = 500;
/// The generator's fixed seed.
const SEED: u64 = 0x6b63_6f72_655f_667a;

/// SplitMix64: small, fast, and the same sequence everywhere.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/dispatcher")
}

fn hex(data: &[u8]) -> String {
    data.iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs one input; a panic or a broken invariant becomes a message that
/// carries the input, ready to paste into a reproducer.
fn run_one(name: &str, data: &[u8], check_mirror: bool, tally: &mut Tally) -> Result<(), String> {
    let mut t = Tally::default();
    match catch_unwind(AssertUnwindSafe(|| run(data, check_mirror, &mut t))) {
        Ok(Ok(())) => {
            tally.add(&t);
            Ok(())
        }
        Ok(Err(e)) => Err(format!(
            "{name}: invariant violated: {e}\n  input: {}",
            hex(data)
        )),
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            Err(format!(
                "{name}: KCore panicked: {msg}\n  input: {}",
                hex(data)
            ))
        }
    }
}

fn corpus() -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<_> = std::fs::read_dir(corpus_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect()
}

#[test]
fn committed_corpus() {
    let mut tally = Tally::default();
    let corpus = corpus();
    assert!(
        !corpus.is_empty(),
        "no corpus in {}",
        corpus_dir().display()
    );
    let failures: Vec<String> = corpus
        .iter()
        .filter_map(|(name, data)| run_one(name, data, true, &mut tally).err())
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let placed = HypercallId::ALL
        .iter()
        .position(|&id| id == HypercallId::HostSetGicFrames)
        .map(|i| tally.hvc_ok[i]);
    assert_eq!(placed, Some(1), "the seed gic_frames places one ITS");
}

/// The committed seeds are exactly what `fuzz_body::seeds` generates. Run
/// with `KCORE_WRITE_SEEDS=1` after changing the generator to rewrite them.
#[test]
fn seeds_are_in_the_corpus() {
    if std::env::var_os("KCORE_WRITE_SEEDS").is_some() {
        let dir = corpus_dir();
        std::fs::create_dir_all(&dir).unwrap();
        for (name, data) in seeds() {
            std::fs::write(dir.join(format!("seed-{name}")), data).unwrap();
        }
    }
    let corpus = corpus();
    for (name, data) in seeds() {
        let file = format!("seed-{name}");
        let found = corpus.iter().find(|(n, _)| *n == file).map(|(_, d)| d);
        assert_eq!(
            found,
            Some(&data),
            "{file} is missing or stale: rerun this test with KCORE_WRITE_SEEDS=1"
        );
    }
}

#[test]
fn random_inputs() {
    let mut rng = SplitMix64(SEED);
    let mut tally = Tally::default();
    let mut failures = Vec::new();
    for i in 0..INPUTS {
        // Half shaped like the decoder reads traps, half plain bytes.
        let data = if i % 2 == 0 {
            let mut e = Encoder::new();
            for _ in 0..=rng.next() % MAX_SHAPED_TRAPS {
                e.random_trap(&mut || rng.next());
            }
            e.finish()
        } else {
            let len = 1 + (rng.next() % MAX_LEN as u64) as usize;
            (0..len).map(|_| rng.next() as u8).collect()
        };
        let check_mirror = i % MIRROR_EVERY == 0;
        if let Err(e) = run_one(
            &format!("random input {i}"),
            &data,
            check_mirror,
            &mut tally,
        ) {
            failures.push(e);
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {INPUTS} inputs failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // The body must get past the decoders' first checks: every call
    // succeeds somewhere and is refused somewhere, and each kind of trap
    // occurs.
    for (i, id) in HypercallId::ALL.iter().enumerate() {
        // The version query and the self-check cannot be refused.
        if !matches!(id, HypercallId::Version | HypercallId::HostSelfCheck) {
            assert!(tally.hvc_refused[i] > 0, "{id:?} never refused: {tally:?}");
        }
        // Placing GIC frames succeeds only on a verified protected VM's
        // declared MMIO on a GICv3 host, which random traps do not reach
        // (the seed `gic_frames` does, `committed_corpus`); a read of its
        // ITS tables needs a guest that programmed them on its own MMIO
        // exits, which no trap here makes (`kcore/tests/gic_tables.rs` and
        // the shim's host tests read them). Both are refused here, and
        // checked like every call.
        if !matches!(
            id,
            HypercallId::HostSetGicFrames | HypercallId::HostReadGicTable
        ) {
            assert!(tally.hvc_ok[i] > 0, "{id:?} never succeeded: {tally:?}");
        }
    }
    assert!(
        tally.hvc_other > 0 && tally.smc > 0 && tally.undef > 0,
        "{tally:?}"
    );
    assert!(tally.cpu_started > 0 && tally.cpu_off > 0, "{tally:?}");
    assert!(
        tally.aborts_mapped > 0 && tally.aborts_injected > 0,
        "{tally:?}"
    );
    assert!(tally.traps <= (INPUTS * MAX_TRAPS) as u64);
    eprintln!("{INPUTS} inputs: {tally:?}");
}
