//! The cost `MetricsLayer` adds to one call, over an in-memory service whose future is
//! ready at once: bare service, then the layer with no recorder installed, then with the
//! Prometheus recorder installed (thread-locally, rendered between batches so that its
//! pending histogram samples do not pile up).
//!
//! ```text
//! cargo bench -p evolution-metrics --bench layer_overhead -- --warm-up-time 1 --measurement-time 3
//! ```

use std::convert::Infallible;
use std::future::{Future, Ready, ready};
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use evolution_metrics::{AttemptCounterLayer, Metrics, names};
use http::{Request, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusRecorder};
use tokio::time::Instant;
use tower::{Service, ServiceBuilder, service_fn};

type Inner = fn(Request<Bytes>) -> Ready<Result<Response<()>, Infallible>>;

fn inner() -> tower::util::ServiceFn<Inner> {
    service_fn((|_request| ready(Ok(Response::new(())))) as Inner)
}

/// One call driven to completion on the current thread.
fn call<S>(service: &mut S)
where
    S: Service<Request<Bytes>, Response = Response<()>>,
    S::Error: std::fmt::Debug,
{
    let mut cx = Context::from_waker(Waker::noop());
    assert!(service.poll_ready(&mut cx).is_ready());
    let future = pin!(service.call(Request::new(Bytes::new())));
    match future.poll(&mut cx) {
        Poll::Ready(result) => {
            black_box(result.expect("the inner service never fails"));
        }
        Poll::Pending => unreachable!("the inner future is ready"),
    }
}

fn prometheus() -> PrometheusRecorder {
    let mut builder = PrometheusBuilder::new();
    for (name, buckets) in names::histogram_buckets() {
        builder = builder
            .set_buckets_for_metric(Matcher::Full(name.to_owned()), buckets)
            .expect("buckets are not empty");
    }
    builder.build_recorder()
}

/// Times `iterations` calls, then renders (untimed) to drain the recorder.
fn timed<S>(service: &mut S, recorder: &PrometheusRecorder, iterations: u64) -> Duration
where
    S: Service<Request<Bytes>, Response = Response<()>>,
    S::Error: std::fmt::Debug,
{
    let start = Instant::now();
    for _ in 0..iterations {
        call(service);
    }
    let elapsed = start.elapsed();
    black_box(recorder.handle().render());
    elapsed
}

fn layer_overhead(c: &mut Criterion) {
    let mut group = c.benchmark_group("layer_overhead");

    let mut bare = inner();
    group.bench_function("bare", |b| b.iter(|| call(&mut bare)));

    let metrics = Metrics::new();
    let mut layered = ServiceBuilder::new()
        .layer(metrics.layer())
        .service(inner());
    group.bench_function("metrics/no_recorder", |b| b.iter(|| call(&mut layered)));

    let mut counted = ServiceBuilder::new()
        .layer(metrics.layer())
        .layer(AttemptCounterLayer::new())
        .service(inner());
    group.bench_function("metrics+attempts/no_recorder", |b| {
        b.iter(|| call(&mut counted))
    });

    let recorder = prometheus();
    group.bench_function("metrics+attempts/prometheus", |b| {
        metrics::with_local_recorder(&recorder, || {
            b.iter_custom(|iterations| timed(&mut counted, &recorder, iterations))
        })
    });

    let labelled = Metrics::builder()
        .label("client", "billing")
        .build()
        .expect("a valid label");
    let mut labelled = ServiceBuilder::new()
        .layer(labelled.layer())
        .layer(AttemptCounterLayer::new())
        .service(inner());
    group.bench_function("metrics+attempts+label/prometheus", |b| {
        metrics::with_local_recorder(&recorder, || {
            b.iter_custom(|iterations| timed(&mut labelled, &recorder, iterations))
        })
    });

    group.finish();
}

criterion_group!(benches, layer_overhead);
criterion_main!(benches);
