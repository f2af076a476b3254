//! Fuzzing on stable: `proptest` harnesses for the parsers that read what comes off the wire
//! (IAM token answer, SSE chunks, `Retry-After`, chat answers), seeded from the committed corpus
//! in `tests/corpus/<target>/`, plus properties of the token manager and the retry budget.
//!
//! The same checks (`checks.rs`) are cargo-fuzz targets in `fuzz/` for longer runs on nightly:
//!
//! ```text
//! cargo +nightly fuzz run -O sse fuzz/corpus/sse crates/client/tests/corpus/sse -- -max_total_time=60
//! ```
//!
//! Case counts are chosen so that this whole target runs in seconds in a debug build.
//! Properties proven elsewhere are not repeated here: backoff never exceeds its cap
//! (`crates/retry/tests/all/properties.rs`: `delays_never_exceed_the_cap`,
//! `ceilings_never_decrease`), a call never makes more than `max_attempts` attempts nor waits
//! past its deadline (same file: `the_total_wait_never_exceeds_the_deadline`), the token
//! schedule's windows are ordered (`crates/token/src/manager/schedule.rs`: `windows_are_ordered`).

mod checks;
mod properties;

use std::path::PathBuf;

use proptest::prelude::*;
use proptest::sample::select;

/// A check from `checks.rs`: panics if the input breaks the parser's promises.
type Check = fn(&[u8]);

/// Every parser the harness exercises, by corpus directory name.
const TARGETS: [(&str, Check); 4] = [
    ("iam_token", checks::iam_token),
    ("sse", checks::sse),
    ("retry_after", checks::retry_after),
    ("chat_response", checks::chat_response),
];

/// Generated inputs per parser, on top of the seeds themselves.
const CASES: u32 = 1024;

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|error| panic!("{}: {error}", dir.display()))
        .map(|entry| entry.expect("corpus entry").path())
        .collect();
    files.sort();
    let seeds: Vec<_> = files
        .iter()
        .map(|path| std::fs::read(path).expect("corpus file"))
        .collect();
    assert!(!seeds.is_empty(), "empty corpus {}", dir.display());
    seeds
}

#[test]
fn every_seed_passes_its_check() {
    for (target, check) in TARGETS {
        for seed in corpus(target) {
            check(&seed);
        }
    }
}

/// Tokens that matter to these parsers, for insertions.
const DICTIONARY: &[&[u8]] = &[
    b"\n",
    b"\r\n",
    b"\r",
    b"\n\n",
    b"data: ",
    b"data:",
    b": comment",
    b"[DONE]",
    b"\xEF\xBB\xBF",
    b"event: error",
    b"event:",
    b"\"error\":",
    b"\"reasoning_content\":",
    b"\"",
    b"{",
    b"}",
    b"[",
    b"]",
    b",",
    b":",
    b"null",
    b"true",
    b"-1",
    b"0",
    b"1e999",
    b"-0.0",
    b"18446744073709551616",
    b"\\u0000",
    b"\\ud800",
    b"\xff",
    b"\xc3",
    b"\"access_token\":",
    b"\"expires_in\":",
    b"\"choices\":",
    b"\"delta\":",
    b"\"content\":",
    b"\"role\":\"assistant\"",
    b" GMT",
    b"Sun, 06 Nov 1994 08:49:37 GMT",
    b".",
    b"+",
];

#[derive(Debug, Clone)]
enum Mutation {
    Flip { at: usize, bit: u8 },
    Insert { at: usize, byte: u8 },
    Word { at: usize, word: usize },
    Delete { at: usize, len: usize },
    Truncate { at: usize },
    Duplicate { at: usize, len: usize },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let at = any::<usize>();
    prop_oneof![
        (at, 0u8..8).prop_map(|(at, bit)| Mutation::Flip { at, bit }),
        (at, any::<u8>()).prop_map(|(at, byte)| Mutation::Insert { at, byte }),
        (at, 0..DICTIONARY.len()).prop_map(|(at, word)| Mutation::Word { at, word }),
        (at, 1usize..16).prop_map(|(at, len)| Mutation::Delete { at, len }),
        at.prop_map(|at| Mutation::Truncate { at }),
        (at, 1usize..64).prop_map(|(at, len)| Mutation::Duplicate { at, len }),
    ]
}

fn apply(mut input: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for mutation in mutations {
        let len = input.len();
        let pos = |at: usize| if len == 0 { 0 } else { at % (len + 1) };
        match *mutation {
            Mutation::Flip { at, bit } if len > 0 => input[at % len] ^= 1 << bit,
            Mutation::Flip { .. } => {}
            Mutation::Insert { at, byte } => input.insert(pos(at), byte),
            Mutation::Word { at, word } => {
                let at = pos(at);
                input.splice(at..at, DICTIONARY[word].iter().copied());
            }
            Mutation::Delete { at, len: n } => {
                let at = pos(at);
                input.drain(at..(at + n).min(len));
            }
            Mutation::Truncate { at } => input.truncate(pos(at)),
            Mutation::Duplicate { at, len: n } => {
                let at = pos(at);
                let copy = input[at..(at + n).min(len)].to_vec();
                input.splice(at..at, copy);
            }
        }
    }
    input
}

/// Seeds with up to 8 mutations, seeds spliced together, or plain random bytes.
fn inputs(target: &str) -> impl Strategy<Value = Vec<u8>> + use<> {
    let seeds = corpus(target);
    prop_oneof![
        6 => (select(seeds.clone()), proptest::collection::vec(mutation(), 1..8))
            .prop_map(|(seed, mutations)| apply(seed, &mutations)),
        2 => (select(seeds.clone()), select(seeds), any::<usize>()).prop_map(|(a, b, at)| {
            let mut spliced = a[..at % (a.len() + 1)].to_vec();
            spliced.extend_from_slice(&b[at % (b.len() + 1)..]);
            spliced
        }),
        1 => proptest::collection::vec(any::<u8>(), 0..256),
    ]
}

/// Failing inputs are saved next to the source (`main.regressions`) and re-run first.
fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::WithSource("regressions"),
        )),
        ..ProptestConfig::with_cases(cases)
    }
}

proptest! {
    #![proptest_config(config(CASES))]

    #[test]
    fn iam_token_answers(input in inputs("iam_token")) {
        checks::iam_token(&input);
    }

    #[test]
    fn sse_streams(input in inputs("sse")) {
        checks::sse(&input);
    }

    #[test]
    fn retry_after_values(input in inputs("retry_after")) {
        checks::retry_after(&input);
    }

    #[test]
    fn chat_answers(input in inputs("chat_response")) {
        checks::chat_response(&input);
    }
}
