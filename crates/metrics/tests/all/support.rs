//! A recorder snapshot as a sorted map, compared whole so that nothing unexpected passes,
//! and a scripted stack in the shape of the client's.

use std::collections::BTreeMap;
use std::future::{Ready, ready};
use std::time::Duration;

use bytes::Bytes;
use evolution_metrics::{AttemptCounterLayer, Metrics};
use evolution_token::{BoxError, TokenError};
use http::{Request, Response, StatusCode};
use metrics::Unit;
use metrics_util::MetricKind;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use tower::ServiceBuilder;

/// A fake bearer token put on every request: it must appear nowhere in what is recorded.
pub(crate) const FAKE_TOKEN: &str = "eyJ-fake-access-token-0123456789";

/// One recorded value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Counter(u64),
    Gauge(f64),
    /// Samples, sorted.
    Histogram(Vec<f64>),
}

/// `"name{k=v,k=v}"` (labels in recorded order) to its value.
pub(crate) type Recorded = BTreeMap<String, Value>;

/// Everything the recorder saw, with descriptions and units by name.
#[derive(Debug, Default)]
pub(crate) struct Capture {
    pub values: Recorded,
    pub units: BTreeMap<String, Option<Unit>>,
    pub descriptions: BTreeMap<String, String>,
    /// Every label key and value, for the secrets check.
    pub label_text: Vec<String>,
}

pub(crate) fn recorder() -> (DebuggingRecorder, Snapshotter) {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    (recorder, snapshotter)
}

pub(crate) fn capture(snapshotter: &Snapshotter) -> Capture {
    let mut capture = Capture::default();
    for (key, unit, description, value) in snapshotter.snapshot().into_vec() {
        let (kind, key) = key.into_parts();
        let labels: Vec<String> = key
            .labels()
            .map(|label| format!("{}={}", label.key(), label.value()))
            .collect();
        for label in key.labels() {
            capture.label_text.push(label.key().to_owned());
            capture.label_text.push(label.value().to_owned());
        }
        let name = format!("{}{{{}}}", key.name(), labels.join(","));
        let value = match (kind, value) {
            (MetricKind::Counter, DebugValue::Counter(n)) => Value::Counter(n),
            (MetricKind::Gauge, DebugValue::Gauge(v)) => Value::Gauge(v.0),
            (MetricKind::Histogram, DebugValue::Histogram(samples)) => {
                let mut samples: Vec<f64> = samples.into_iter().map(|v| v.0).collect();
                samples.sort_by(f64::total_cmp);
                Value::Histogram(samples)
            }
            (kind, value) => panic!("{kind:?} recorded as {value:?}"),
        };
        assert!(capture.values.insert(name, value).is_none());
        capture.units.insert(key.name().to_owned(), unit);
        if let Some(description) = description {
            capture
                .descriptions
                .insert(key.name().to_owned(), description.to_string());
        }
    }
    capture
}

/// Builds the expected map from `(series, value)` pairs.
pub(crate) fn expect<const N: usize>(entries: [(&str, Value); N]) -> Recorded {
    entries
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value))
        .collect()
}

pub(crate) fn histogram<const N: usize>(samples: [f64; N]) -> Value {
    let mut samples = samples.to_vec();
    samples.sort_by(f64::total_cmp);
    Value::Histogram(samples)
}

/// What the scripted service does with a request, from its `x-case` header and attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Case {
    /// 200 after the given milliseconds.
    Ok(u64),
    /// The given status after the given milliseconds.
    Status(u16, u64),
    /// 503 after 50 ms on the first attempt, then 200 after 100 ms.
    Flaky,
    /// A `TokenError::InvalidCredentials` after 5 ms.
    RejectedKey,
    /// A `tower` timeout after 1 s.
    Timeout,
    /// An I/O error whose message holds the fake token, after 20 ms.
    Transport,
    /// Never answers.
    Hang,
}

impl Case {
    fn header(self) -> String {
        match self {
            Self::Ok(ms) => format!("ok/{ms}"),
            Self::Status(status, ms) => format!("status/{status}/{ms}"),
            Self::Flaky => "flaky".into(),
            Self::RejectedKey => "rejected".into(),
            Self::Timeout => "timeout".into(),
            Self::Transport => "transport".into(),
            Self::Hang => "hang".into(),
        }
    }

    fn parse(header: &str) -> Self {
        let parts: Vec<&str> = header.split('/').collect();
        match parts.as_slice() {
            ["ok", ms] => Self::Ok(ms.parse().unwrap()),
            ["status", status, ms] => Self::Status(status.parse().unwrap(), ms.parse().unwrap()),
            ["flaky"] => Self::Flaky,
            ["rejected"] => Self::RejectedKey,
            ["timeout"] => Self::Timeout,
            ["transport"] => Self::Transport,
            ["hang"] => Self::Hang,
            _ => panic!("unknown case {header}"),
        }
    }
}

/// A request for `case`, carrying the fake token as a bearer header.
pub(crate) fn request(case: Case) -> Request<Bytes> {
    Request::builder()
        .method("POST")
        .uri("http://evolution.test/v1/chat/completions")
        .header("authorization", format!("Bearer {FAKE_TOKEN}"))
        .header("x-case", case.header())
        .body(Bytes::from_static(b"{}"))
        .unwrap()
}

/// The scripted inner service: answers after sleeping (paused time makes latencies exact).
pub(crate) async fn scripted(request: Request<Bytes>) -> Result<Response<Bytes>, BoxError> {
    let case = Case::parse(request.headers()["x-case"].to_str().unwrap());
    // Read at the first poll, which happens inside the metrics layer's scope.
    let attempt = evolution_metrics::Attempts::current().unwrap_or(0);
    let answer = |status: u16| {
        Response::builder()
            .status(status)
            .body(Bytes::new())
            .unwrap()
    };
    let sleep = |ms| tokio::time::sleep(Duration::from_millis(ms));
    match case {
        Case::Ok(ms) => {
            sleep(ms).await;
            Ok(answer(200))
        }
        Case::Status(status, ms) => {
            sleep(ms).await;
            Ok(answer(status))
        }
        Case::Flaky if attempt <= 1 => {
            sleep(50).await;
            Ok(answer(503))
        }
        Case::Flaky => {
            sleep(100).await;
            Ok(answer(200))
        }
        Case::RejectedKey => {
            sleep(5).await;
            Err(TokenError::InvalidCredentials {
                key_id: "key-primary".into(),
            }
            .into())
        }
        Case::Timeout => {
            sleep(1000).await;
            Err(tower::timeout::error::Elapsed::new().into())
        }
        Case::Transport => {
            sleep(20).await;
            Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                format!("reset while sending Bearer {FAKE_TOKEN}"),
            )
            .into())
        }
        Case::Hang => std::future::pending().await,
    }
}

/// Retries a 503 once, telling `metrics`, as the client wires evolution-retry's observer.
#[derive(Debug, Clone)]
pub(crate) struct RetryOnce503 {
    pub metrics: Metrics,
    pub retried: bool,
}

impl<E> tower::retry::Policy<Request<Bytes>, Response<Bytes>, E> for RetryOnce503 {
    type Future = Ready<()>;

    fn retry(
        &mut self,
        _request: &mut Request<Bytes>,
        result: &mut Result<Response<Bytes>, E>,
    ) -> Option<Self::Future> {
        match result {
            Ok(response)
                if response.status() == StatusCode::SERVICE_UNAVAILABLE && !self.retried =>
            {
                self.retried = true;
                self.metrics.record_retry("503");
                Some(ready(()))
            }
            _ => None,
        }
    }

    fn clone_request(&mut self, request: &Request<Bytes>) -> Option<Request<Bytes>> {
        Some(request.clone())
    }
}

/// The client's shape: metrics, retry, attempt counter, transport.
pub(crate) fn stack(
    metrics: &Metrics,
) -> impl tower::Service<Request<Bytes>, Response = Response<Bytes>, Error = BoxError> + Clone {
    ServiceBuilder::new()
        .layer(metrics.layer())
        .layer(tower::retry::RetryLayer::new(RetryOnce503 {
            metrics: metrics.clone(),
            retried: false,
        }))
        .layer(AttemptCounterLayer::new())
        .service(tower::service_fn(scripted))
}

/// No label, series name or description holds any of `secrets`, nor does the `Stats` JSON.
pub(crate) fn assert_no_secret(
    capture: &Capture,
    stats: &evolution_metrics::Stats,
    secrets: &[&str],
) {
    let json = serde_json::to_string(stats).unwrap();
    let texts = capture
        .label_text
        .iter()
        .chain(capture.values.keys())
        .chain(capture.descriptions.values())
        .chain(std::iter::once(&json));
    for text in texts {
        for secret in secrets {
            assert!(!text.contains(secret), "{text:?} contains {secret:?}");
        }
    }
}
