//! The emulator's own endpoints: `GET /_emulator/stats` and `POST /_emulator/control`.
//!
//! `GET /_emulator/stats` answers the [`Stats`](crate::Stats) snapshot as JSON.
//!
//! `POST /_emulator/control` takes one JSON command, named by its `command` field, and answers
//! `{"ok": true}` (`revoke_key` adds `"revoked": <live tokens revoked>`), 400 for a malformed
//! command, 404 for an unknown key or token:
//!
//! | command | fields | effect |
//! |---|---|---|
//! | `set_ttl` | `secs` | lifetime of tokens issued from now on |
//! | `revoke_token` | `token` | that token answers 401 from now on |
//! | `revoke_key` | `key_id` | every token issued so far for the key answers 401 |
//! | `disable_key` / `enable_key` | `key_id` | IAM refuses (401, code `key_disabled`) / accepts the key again |
//! | `add_key` | `key_id`, `secret` | a new key, or a new secret for an existing one |
//! | `add_api_key` | `api_key` | a static API key accepted as a bearer token (`revoke_token` it to refuse it) |
//! | `push_fault` | `route`, `fault` | queue a fault (format below) on `iam`, `chat`, `models` or `embeddings` |
//! | `clear_faults` | `route` (optional) | drop queued faults of a route, or of all |
//! | `set_latency` | `route`, `ms` | latency added to every request of the route |
//! | `set_key_latency` | `key_id`, `ms` | latency added to the chat and embeddings requests of one key |
//! | `set_key_fault` | `key_id`, `fault` | every chat and embeddings request of one key gets the fault, until cleared |
//! | `clear_key_fault` | `key_id` | that key's requests are answered normally again |
//! | `set_stream_interval` | `ms` | gap between two events of streamed chat answers from now on |
//! | `set_stream_chunks` | `chunks` | content pieces per streamed chat answer (0: one per word) |
//! | `set_refuse_stream_options` | `refuse` | chat requests naming `stream_options` answer 400 (true) or not (false) |
//! | `set_fault_probability` | `probability`, `seed`, `routes` | seeded random faults (0 stops them) |
//! | `reset_stats` | | zero the counters |
//!
//! A `fault` is an object with a `kind` and optional `delay_ms` (wait first) and `headers`
//! (added to the answer):
//!
//! ```json
//! {"kind": "status", "status": 429, "headers": {"retry-after": "1"}}
//! {"kind": "status", "status": 503, "message": "maintenance"}
//! {"kind": "delay", "delay_ms": 500}
//! {"kind": "iam_body", "body": {"access_token": "x", "expires_in": "soon"}}
//! {"kind": "patch_body", "body": {"expires_in": 10}}
//! {"kind": "raw_body", "status": 200, "content_type": "application/json", "body": "{\"choi"}
//! {"kind": "malformed", "malformed": "not_json"}
//! {"kind": "close"}
//! {"kind": "cut_stream", "chunks": 2}
//! {"kind": "stream_error", "after": 2, "body": {"error": {"message": "generation failed", "code": 500}}}
//! {"kind": "stall_stream", "after_chunks": 0, "pause_ms": 30000}
//! ```
//!
//! `malformed` is one of `not_json`, `empty`, `truncated`, `missing_field`.
//!
//! A `key_id` is an IAM key id, or a static API key's label (`api-key-` and the first 8 hex
//! digits of its SHA-256).
//!
//! ```text
//! curl -s localhost:PORT/_emulator/control -d '{"command": "push_fault", "route": "chat",
//!      "fault": {"kind": "status", "status": 503}}'
//! curl -s localhost:PORT/_emulator/control -d '{"command": "set_key_fault", "key_id": "k2",
//!      "fault": {"kind": "status", "status": 429, "headers": {"retry-after": "30"}}}'
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::response::Response;
use bytes::Bytes;
use http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error;
use crate::exchange::read_body;
use crate::fault::{Fault, Malformed};
use crate::route::Route;
use crate::state::Shared;

pub(crate) async fn stats(State(shared): State<Arc<Shared>>) -> Response {
    match serde_json::to_vec(&shared.stats()) {
        Ok(body) => error::json(StatusCode::OK, Bytes::from(body)),
        Err(_) => error::respond(
            StatusCode::INTERNAL_SERVER_ERROR,
            "cannot encode stats",
            None,
        ),
    }
}

pub(crate) async fn control(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let Ok(body) = read_body(request.into_body()).await else {
        return error::respond(StatusCode::BAD_REQUEST, "cannot read the body", None);
    };
    let command = match serde_json::from_slice::<Command>(&body) {
        Ok(command) => command,
        Err(error) => {
            return error::respond(
                StatusCode::BAD_REQUEST,
                &format!("invalid control command: {error}"),
                None,
            );
        }
    };
    match command.apply(&shared) {
        Ok(answer) => error::json(StatusCode::OK, Bytes::from(answer.to_string())),
        Err((status, message)) => error::respond(status, &message, None),
    }
}

#[derive(Debug, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
enum Command {
    SetTtl {
        secs: u64,
    },
    RevokeToken {
        token: String,
    },
    RevokeKey {
        key_id: String,
    },
    DisableKey {
        key_id: String,
    },
    EnableKey {
        key_id: String,
    },
    AddKey {
        key_id: String,
        secret: String,
    },
    AddApiKey {
        api_key: String,
    },
    PushFault {
        route: Route,
        fault: FaultSpec,
    },
    ClearFaults {
        #[serde(default)]
        route: Option<Route>,
    },
    SetLatency {
        route: Route,
        ms: u64,
    },
    SetKeyLatency {
        key_id: String,
        ms: u64,
    },
    SetKeyFault {
        key_id: String,
        fault: FaultSpec,
    },
    ClearKeyFault {
        key_id: String,
    },
    SetStreamInterval {
        ms: u64,
    },
    SetStreamChunks {
        chunks: usize,
    },
    SetRefuseStreamOptions {
        refuse: bool,
    },
    SetFaultProbability {
        probability: f64,
        seed: u64,
        routes: Vec<Route>,
    },
    ResetStats,
}

type Refusal = (StatusCode, String);

impl Command {
    fn apply(self, shared: &Shared) -> Result<Value, Refusal> {
        let ok = json!({ "ok": true });
        let found = |found: bool, what: &str| {
            if found {
                Ok(json!({ "ok": true }))
            } else {
                Err((StatusCode::NOT_FOUND, format!("no such {what}")))
            }
        };
        match self {
            Command::SetTtl { secs } => shared.set_ttl(Duration::from_secs(secs)),
            Command::RevokeToken { token } => return found(shared.tokens.revoke(&token), "token"),
            Command::RevokeKey { key_id } => {
                if !shared.keys.contains(&key_id) {
                    return found(false, "key");
                }
                let revoked = shared.tokens.revoke_key(&key_id);
                return Ok(json!({ "ok": true, "revoked": revoked }));
            }
            Command::DisableKey { key_id } => {
                return found(shared.keys.set_disabled(&key_id, true), "key");
            }
            Command::EnableKey { key_id } => {
                return found(shared.keys.set_disabled(&key_id, false), "key");
            }
            Command::AddKey { key_id, secret } => shared.keys.add(&key_id, &secret),
            Command::AddApiKey { api_key } => shared.add_api_key(&api_key),
            Command::PushFault { route, fault } => shared.faults.push(route, fault.into_fault()?),
            Command::ClearFaults { route } => {
                let routes = route.map_or(Route::ALL.to_vec(), |route| vec![route]);
                for route in routes {
                    shared.faults.clear(route);
                }
            }
            Command::SetLatency { route, ms } => {
                shared.set_latency(route, Duration::from_millis(ms));
            }
            Command::SetKeyLatency { key_id, ms } => {
                return found(
                    shared.keys.set_latency(&key_id, Duration::from_millis(ms)),
                    "key",
                );
            }
            Command::SetKeyFault { key_id, fault } => {
                let fault = fault.into_fault()?;
                return found(shared.keys.set_fault(&key_id, Some(fault)), "key");
            }
            Command::ClearKeyFault { key_id } => {
                return found(shared.keys.set_fault(&key_id, None), "key");
            }
            Command::SetStreamInterval { ms } => {
                shared.set_stream_interval(Duration::from_millis(ms));
            }
            Command::SetStreamChunks { chunks } => {
                shared.set_stream_chunks(chunks);
            }
            Command::SetRefuseStreamOptions { refuse } => {
                shared.set_refuse_stream_options(refuse);
            }
            Command::SetFaultProbability {
                probability,
                seed,
                routes,
            } => shared.faults.set_probability(probability, seed, &routes),
            Command::ResetStats => shared.reset_stats(),
        }
        Ok(ok)
    }
}

#[derive(Debug, Deserialize)]
struct FaultSpec {
    #[serde(flatten)]
    kind: FaultKind,
    #[serde(default)]
    delay_ms: u64,
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum FaultKind {
    Status {
        status: u16,
        #[serde(default)]
        message: Option<String>,
    },
    Delay,
    IamBody {
        body: Value,
    },
    PatchBody {
        body: Value,
    },
    RawBody {
        status: u16,
        content_type: String,
        body: String,
    },
    Malformed {
        malformed: Malformed,
    },
    Close,
    CutStream {
        chunks: usize,
    },
    StreamError {
        after: usize,
        body: Value,
    },
    StallStream {
        after_chunks: usize,
        pause_ms: u64,
    },
}

impl FaultSpec {
    fn into_fault(self) -> Result<Fault, Refusal> {
        let invalid = |what: &str| (StatusCode::BAD_REQUEST, format!("invalid fault: {what}"));
        let mut fault = match self.kind {
            FaultKind::Status { status, message } => {
                let fault = Fault::try_status(status).ok_or_else(|| invalid("status"))?;
                match message {
                    Some(message) => fault.with_message(message),
                    None => fault,
                }
            }
            FaultKind::Delay => Fault::delay(Duration::ZERO),
            FaultKind::IamBody { body } => Fault::iam_body(body),
            FaultKind::PatchBody { body } => Fault::patch_body(body),
            FaultKind::RawBody {
                status,
                content_type,
                body,
            } => Fault::try_raw_body(status, &content_type, Bytes::from(body))
                .ok_or_else(|| invalid("status or content_type"))?,
            FaultKind::Malformed { malformed } => Fault::malformed(malformed),
            FaultKind::Close => Fault::close(),
            FaultKind::CutStream { chunks } => Fault::cut_stream(chunks),
            FaultKind::StreamError { after, body } => Fault::stream_error_after(after, body),
            FaultKind::StallStream {
                after_chunks,
                pause_ms,
            } => Fault::stall_stream(after_chunks, Duration::from_millis(pause_ms)),
        };
        fault = fault.with_delay(Duration::from_millis(self.delay_ms));
        for (name, value) in &self.headers {
            fault = fault
                .try_with_header(name, value)
                .ok_or_else(|| invalid("header"))?;
        }
        Ok(fault)
    }
}
