//! cargo-fuzz target: `checks::iam_token`, the same check the stable proptest harness runs
//! (crates/client/tests/fuzz/checks.rs). Seed corpus: crates/client/tests/corpus/iam_token/.
#![no_main]

// Each target uses one of the checks.
#[allow(dead_code)]
#[path = "../../crates/client/tests/fuzz/checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::iam_token(data));
