//! SSE parsing throughput of `evolution_client::sse::SseParser`, at several sizes: linear
//! parsing shows as the same time per byte for 1 MiB and for 4 MiB (and, for one event, for
//! 16 MiB: a working set past the CPU's caches costs per byte, a rescan costs per read).
//!
//! ```text
//! cargo bench -p evolution-benches --bench sse_parse -- --warm-up-time 1 --measurement-time 2
//! ```
//!
//! - `small_events`: a completion stream of ~230-byte chunk events (the emulator's shape),
//!   read in 16 KiB reads, as a connection delivers them;
//! - `one_event`: a single event whose one `data:` line is the whole size, read in 1 KiB
//!   reads: the case a parser that searches its whole buffer on every read makes quadratic
//!   (the parser before issue 17 took seconds for 4 MiB).

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use evolution_benches::{criterion_estimate_ns, machine};
use evolution_client::sse::SseParser;

const GROUP: &str = "sse_parse";
const MIB: usize = 1024 * 1024;

/// One chunk event as vLLM and the emulator send it.
const EVENT: &str = "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"openai/gpt-oss-120b\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"word \"},\"logprobs\":null,\"finish_reason\":null}]}\n\n";

/// Chunk events up to `size` bytes, then `[DONE]`.
fn small_events(size: usize) -> Vec<u8> {
    let mut stream = Vec::with_capacity(size + EVENT.len());
    while stream.len() + EVENT.len() + 14 <= size {
        stream.extend_from_slice(EVENT.as_bytes());
    }
    stream.extend_from_slice(b"data: [DONE]\n\n");
    stream
}

/// One event of `size` bytes.
fn one_event(size: usize) -> Vec<u8> {
    let mut stream = b"data: ".to_vec();
    stream.resize(size - 2, b'x');
    stream.extend_from_slice(b"\n\n");
    stream
}

/// A case: its name, how its stream is made for a size, the size of each read, and the
/// sizes.
type Case = (&'static str, fn(usize) -> Vec<u8>, usize, &'static [usize]);

/// Feeds `stream` in reads of `read` bytes; returns how many events came out.
fn parse(stream: &[u8], read: usize) -> usize {
    let mut parser = SseParser::default();
    let mut events = 0;
    for bytes in stream.chunks(read) {
        parser.feed(bytes);
        while let Some(event) = parser.next_event() {
            black_box(event);
            events += 1;
        }
    }
    events
}

fn sse_parse(c: &mut Criterion) {
    println!("{}", machine());
    let mut group = c.benchmark_group(GROUP);
    let cases: [Case; 2] = [
        ("small_events", small_events, 16 * 1024, &[MIB, 4 * MIB]),
        ("one_event", one_event, 1024, &[MIB, 4 * MIB, 16 * MIB]),
    ];
    for (name, make, read, sizes) in cases {
        for &size in sizes {
            let stream = make(size);
            assert!(parse(&stream, read) > 0);
            group.throughput(Throughput::Bytes(stream.len() as u64));
            group.bench_function(format!("{name}/{}MiB", size / MIB), |b| {
                b.iter(|| parse(&stream, read))
            });
        }
    }
    group.finish();

    for (name, _, _, sizes) in cases {
        let per_byte = |size: usize| {
            criterion_estimate_ns(GROUP, &format!("{name}/{}MiB", size / MIB))
                .map(|ns| ns / size as f64)
        };
        let Some(base) = per_byte(MIB) else { continue };
        for &size in &sizes[1..] {
            if let Some(per_byte) = per_byte(size) {
                println!(
                    "{name}: {:.0} MiB/s at 1 MiB, {:.0} MiB/s at {} MiB; time per byte {} MiB / 1 MiB = {:.2}",
                    1e9 / base / MIB as f64,
                    1e9 / per_byte / MIB as f64,
                    size / MIB,
                    size / MIB,
                    per_byte / base
                );
            }
        }
    }
    println!("{} (after)", machine());
}

criterion_group!(benches, sse_parse);
criterion_main!(benches);
