//! The cost of an `Operation`: per chunk of a stream (`Operation::chunk`, with the histogram
//! handles it holds, against registering the two histograms on every chunk as the
//! `histogram!` macro does), and per call (start, usage, finish), with the GenAI series on
//! and off. The Prometheus recorder is installed thread-locally and rendered, untimed,
//! between batches so that its pending samples do not pile up.
//!
//! ```text
//! cargo bench -p evolution-metrics --bench operation -- --warm-up-time 1 --measurement-time 3
//! ```

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use evolution_metrics::names::{TIME_PER_OUTPUT_CHUNK_SECONDS, gen_ai, histogram_buckets};
use evolution_metrics::{Metrics, OperationName};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusRecorder};
use tokio::time::Instant;

const MODEL: &str = "GigaChat/GigaChat-2-Max";

fn prometheus() -> PrometheusRecorder {
    let mut builder = PrometheusBuilder::new();
    for (name, buckets) in histogram_buckets() {
        builder = builder
            .set_buckets_for_metric(Matcher::Full(name.to_owned()), buckets)
            .expect("buckets are not empty");
    }
    builder.build_recorder()
}

fn metrics(gen_ai: bool) -> Metrics {
    Metrics::builder()
        .label("client", "billing")
        .gen_ai(gen_ai)
        .build()
        .expect("a valid label")
}

/// Times `iterations` runs of `f`, then renders (untimed) to drain the recorder.
fn timed(recorder: &PrometheusRecorder, iterations: u64, mut f: impl FnMut()) -> Duration {
    let start = Instant::now();
    for _ in 0..iterations {
        f();
    }
    let elapsed = start.elapsed();
    black_box(recorder.handle().render());
    elapsed
}

fn operation(c: &mut Criterion) {
    let base_url: http::Uri = "https://foundation-models.api.cloud.ru/v1".parse().unwrap();
    let recorder = prometheus();
    let mut group = c.benchmark_group("operation");

    for gen_ai in [true, false] {
        let metrics = metrics(gen_ai);
        let suffix = if gen_ai { "gen_ai" } else { "evolution_only" };
        metrics::with_local_recorder(&recorder, || {
            let mut stream = metrics.operation(OperationName::Chat, MODEL, &base_url);
            stream.response_model(MODEL);
            stream.chunk();
            group.bench_function(format!("chunk/prometheus/{suffix}"), |b| {
                b.iter_custom(|iterations| {
                    timed(&recorder, iterations, || {
                        stream.response_model(black_box(MODEL));
                        stream.chunk();
                    })
                })
            });
            group.bench_function(format!("call/prometheus/{suffix}"), |b| {
                b.iter_custom(|iterations| {
                    timed(&recorder, iterations, || {
                        let mut call = metrics.operation(OperationName::Chat, MODEL, &base_url);
                        call.response_model(MODEL);
                        call.usage(120, 30);
                        call.finish(None);
                    })
                })
            });
        });
    }

    // What `chunk` would cost registering its two histograms each time, as the macros do:
    // the evolution one with the constant label, the GenAI one with its seven labels.
    metrics::with_local_recorder(&recorder, || {
        let mut previous = Instant::now();
        group.bench_function("chunk/prometheus/gen_ai_registered_per_chunk", |b| {
            b.iter_custom(|iterations| {
                timed(&recorder, iterations, || {
                    let now = Instant::now();
                    let gap = now.duration_since(previous).as_secs_f64();
                    previous = now;
                    metrics::histogram!(TIME_PER_OUTPUT_CHUNK_SECONDS, "client" => "billing")
                        .record(gap);
                    metrics::histogram!(
                        gen_ai::CLIENT_OPERATION_TIME_PER_OUTPUT_CHUNK,
                        "client" => "billing",
                        gen_ai::OPERATION_NAME => "chat",
                        gen_ai::PROVIDER_NAME => gen_ai::PROVIDER,
                        gen_ai::REQUEST_MODEL => MODEL,
                        gen_ai::RESPONSE_MODEL => MODEL,
                        gen_ai::SERVER_ADDRESS => "foundation-models.api.cloud.ru",
                        gen_ai::SERVER_PORT => "443",
                    )
                    .record(gap);
                })
            })
        });
    });

    let metrics = metrics(true);
    let mut stream = metrics.operation(OperationName::Chat, MODEL, &base_url);
    stream.chunk();
    group.bench_function("chunk/no_recorder", |b| b.iter(|| stream.chunk()));

    group.finish();
}

criterion_group!(benches, operation);
criterion_main!(benches);
