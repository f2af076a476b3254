//! cargo-fuzz target: `checks::sse`, the same check the stable proptest harness runs
//! (crates/client/tests/fuzz/checks.rs). Seed corpus: crates/client/tests/corpus/sse/.
#![no_main]

// Each target uses one of the checks.
#[allow(dead_code)]
#[path = "../../crates/client/tests/fuzz/checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::sse(data));
