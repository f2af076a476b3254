//! cargo-fuzz target: `checks::retry_after`, the same check the stable proptest harness runs
//! (crates/client/tests/fuzz/checks.rs). Seed corpus: crates/client/tests/corpus/retry_after/.
#![no_main]

// Each target uses one of the checks.
#[allow(dead_code)]
#[path = "../../crates/client/tests/fuzz/checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::retry_after(data));
