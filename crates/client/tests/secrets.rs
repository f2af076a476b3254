//! The secrets audit: every public flow of the client runs with a `tracing` subscriber at
//! TRACE capturing all output and a Prometheus recorder; then the captured logs, the
//! `Display` and `Debug` of every error met, the `Debug` of every public type, the `Stats`
//! (as `Debug` and JSON) and the Prometheus scrape are searched for the known secrets and for
//! every token IAM issued. None may appear.
//!
//! # Zeroization
//!
//! A test cannot soundly look at freed memory (that is undefined behaviour), so this is
//! documented rather than tested. The secret and the token values are `secrecy::SecretString`s
//! (`SecretBox<str>`), which overwrite their bytes with zeros on drop (the `zeroize` crate):
//! `Credentials::secret`, `EvolutionInferenceBuilder`'s secrets, `AccessToken`'s value and
//! `TokenGrant::access_token`. Copies that live outside `secrecy`, and so are *not* zeroized:
//!
//! - the IAM request body (`{"keyId", "secret"}`), a plain `String` handed to reqwest, and
//!   the socket buffers it is written through;
//! - the IAM answer as reqwest reads it (`Bytes`) and the `serde_json::Value` parsed from it
//!   (`parse_token_response` moves the token `String` into a `SecretString`; the `Bytes` and
//!   any reallocation left behind are not wiped);
//! - `AccessToken`'s prepared `Authorization: Bearer …` `HeaderValue` (`Bytes`, built
//!   through a `format!` buffer), and its copies in every request's `HeaderMap` and hyper's
//!   write buffers;
//! - the per-thread token copies of `TokenManager` (`token/src/manager/local.rs`): they are
//!   `SecretString`s, so zeroized on drop, but a copy lives on in its thread's local storage
//!   after its manager is dropped, until the thread ends or eight other managers evict it.
//!
//! Tokens are short-lived (one hour) and the secret goes only to IAM over TLS; the plain
//! copies are freed (not wiped) when the request completes.

use std::sync::OnceLock;
use std::time::Duration;

use evolution_client::{
    ChatRequest, Error, EvolutionInference, EvolutionInferenceBuilder, Failback, Metrics,
    RetryConfig,
};
use evolution_emulator::{DEMO_MODEL, Emulator, Fault, Malformed, Route};
use evolution_testkit::Capture;
use evolution_token::{Credentials, TokenManager, parse_token_response};
use futures_util::StreamExt;
use metrics_exporter_prometheus::PrometheusBuilder;
use secrecy::ExposeSecret;

const PRIMARY: &str = "audit-primary-key";
const PRIMARY_SECRET: &str = "PRIMARY-s3cr3t-5f1e0c";
const BACKUP: &str = "audit-backup-key";
const BACKUP_SECRET: &str = "BACKUP-s3cr3t-8a2d4b";
const ROTATED: &str = "audit-rotated-key";
const ROTATED_SECRET: &str = "ROTATED-s3cr3t-71c9e3";
const WRONG_SECRET: &str = "WRONG-s3cr3t-0d0d0d";
/// A static API key: the bearer token itself, so it is a secret too.
const API_KEY: &str = "APIKEY-s3cr3t-4b7e21";
const SECRETS: [&str; 5] = [
    PRIMARY_SECRET,
    BACKUP_SECRET,
    ROTATED_SECRET,
    WRONG_SECRET,
    API_KEY,
];

/// The audit's subscriber: global, so that it hears every thread and runtime of the flows.
fn capture() -> &'static Capture {
    static CAPTURE: OnceLock<Capture> = OnceLock::new();
    CAPTURE.get_or_init(|| {
        let capture = Capture::default();
        let subscriber = capture
            .fmt()
            .with_span_events(tracing_subscriber::fmt::format::FmtSpan::FULL)
            .with_ansi(false)
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");
        capture
    })
}

/// What the flows printed: `Debug` and `Display` of everything they met.
#[derive(Default)]
struct Printed(String);

impl Printed {
    fn debug(&mut self, what: &str, value: &dyn std::fmt::Debug) {
        self.0 += &format!("\n{what}: {value:?}");
    }

    fn error(&mut self, what: &str, error: &Error) {
        self.0 += &format!("\n{what}: {error} | {error:?} | {error:#?}");
        let mut source = std::error::Error::source(error);
        while let Some(inner) = source {
            self.0 += &format!(" | caused by: {inner} / {inner:?}");
            source = inner.source();
        }
    }
}

fn builder(emu: &Emulator) -> EvolutionInferenceBuilder {
    EvolutionInference::builder()
        .model(DEMO_MODEL)
        .key_id(PRIMARY)
        .secret(PRIMARY_SECRET)
        .base_url(emu.base_url())
        .auth_url(emu.auth_url())
        .metrics(
            Metrics::builder()
                .label("client", "audit")
                .key_id_label(true)
                .build()
                .unwrap(),
        )
}

#[test]
fn no_secret_or_token_in_logs_errors_debug_stats_or_metrics() {
    let capture = capture();
    let recorder = PrometheusBuilder::new().build_recorder();
    let scrape = recorder.handle();
    let _local = metrics::set_default_local_recorder(&recorder);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    let mut printed = Printed::default();
    let emu = runtime.block_on(flows(&mut printed));

    // The blocking facade, on its own runtime and threads; the emulator keeps running on
    // this runtime meanwhile.
    let blocking_emu = emu.clone();
    let blocking_printed = runtime
        .block_on(async {
            tokio::task::spawn_blocking(move || blocking_flows(&blocking_emu)).await
        })
        .unwrap();
    printed.0 += &blocking_printed.0;
    let logs = capture.text();
    let scrape = scrape.render();
    let issued = emu.issued_tokens();

    // The capture works and saw the flows at every level.
    for expected in [
        "TRACE",
        "DEBUG",
        "WARN",
        "requesting IAM token",
        PRIMARY,
        BACKUP,
        ROTATED,
        "api-key-",
    ] {
        assert!(logs.contains(expected), "{expected:?} not in the logs");
    }
    for expected in [
        "evolution_requests_total",
        "evolution_token_refreshes_total",
        "evolution_fallback_switches_total",
        PRIMARY,
        "api-key-",
    ] {
        assert!(scrape.contains(expected), "{expected:?} not in\n{scrape}");
    }
    assert!(issued.len() >= 5, "{} tokens issued", issued.len());
    // Every variant of the public `Error` was met and printed.
    for variant in [
        "Config {",
        "Auth(",
        "KeysRejected(",
        "Api {",
        "Transport(",
        "Timeout(",
        "Decode(",
    ] {
        assert!(
            printed.0.contains(variant),
            "no {variant:?} error was printed"
        );
    }

    let haystacks = [
        ("logs", &logs),
        ("printed", &printed.0),
        ("prometheus scrape", &scrape),
    ];
    for (name, text) in haystacks {
        for secret in SECRETS {
            assert!(!text.contains(secret), "a secret is in the {name}");
        }
        for token in &issued {
            let body = token.trim_start_matches("evo_");
            assert!(!text.contains(body), "token {token} is in the {name}");
        }
    }
}

fn blocking_flows(emu: &Emulator) -> Printed {
    let mut printed = Printed::default();
    let blocking = evolution_client::blocking::EvolutionInference::from_builder(
        builder(emu).backup_credentials(BACKUP, BACKUP_SECRET),
    )
    .unwrap();
    printed.debug("blocking client", &blocking);
    printed.debug("blocking invoke", &blocking.invoke("blocking").unwrap());
    let answer = blocking.chat(ChatRequest::from_prompt("b")).unwrap();
    printed.debug("blocking chat", &answer);
    printed.debug("blocking models", &blocking.models().unwrap());
    let wrong = evolution_client::blocking::EvolutionInference::from_builder(
        builder(emu).secret(WRONG_SECRET).no_retry(),
    )
    .unwrap();
    printed.error("blocking wrong secret", &wrong.invoke("x").unwrap_err());
    printed
}

/// Every async flow; returns the emulator so its issued tokens can be checked.
async fn flows(printed: &mut Printed) -> Emulator {
    let emu = Emulator::builder()
        .key(PRIMARY, PRIMARY_SECRET)
        .key(BACKUP, BACKUP_SECRET)
        .key(ROTATED, ROTATED_SECRET)
        .api_key(API_KEY)
        .start()
        .await
        .unwrap();
    let unstarted = builder(&emu).backup_credentials(BACKUP, BACKUP_SECRET);
    printed.debug("builder", &unstarted);
    let llm = unstarted
        .failback(Failback::After(Duration::from_secs(60)))
        .retry(
            RetryConfig::builder()
                .base_delay(Duration::from_millis(10))
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    printed.debug("client", &llm);

    // Successes: invoke, generate, chat, stream, models.
    printed.debug("invoke", &llm.invoke("hello").await.unwrap());
    printed.debug("generate", &llm.generate(["a", "b", "c"]).await.unwrap());
    let response = llm
        .chat(ChatRequest::new().system("s").user("chat").n(2))
        .await
        .unwrap();
    printed.debug("chat", &response);
    let mut stream = llm
        .stream(ChatRequest::from_prompt("one two three"))
        .await
        .unwrap();
    printed.debug("stream", &stream);
    while let Some(chunk) = stream.next().await {
        printed.debug("chunk", &chunk.unwrap());
    }
    printed.debug("models", &llm.models().await.unwrap());

    // Tokens and their manager, the service, the handles.
    let tokens = llm.token_manager();
    let token = tokens.get_token().await.unwrap();
    printed.debug("access token", &token);
    printed.debug("bearer header", &token.bearer_header());
    printed.debug("token manager", tokens);
    printed.debug("token info", &tokens.info());
    printed.debug("backup token manager", &llm.backup_token_manager());
    printed.debug("fallback handle", &llm.fallback());
    printed.debug("metrics", llm.metrics());
    printed.debug("service", &llm.service());
    printed.debug("credentials", &Credentials::new(PRIMARY, PRIMARY_SECRET));
    printed.debug(
        "token manager builder",
        &TokenManager::builder(Credentials::new(PRIMARY, PRIMARY_SECRET)),
    );
    printed.debug("retry config", &RetryConfig::default());
    printed.debug(
        "token grant",
        &parse_token_response(
            format!(r#"{{"access_token":"{}"}}"#, token.secret().expose_secret()).as_bytes(),
        )
        .unwrap(),
    );

    // A revoked token: 401, refreshed and resent by the auth layer.
    emu.revoke_token(token.secret().expose_secret());
    llm.invoke("after revocation").await.unwrap();

    // API errors of each kind, with and without retries.
    for fault in [
        Fault::status(400),
        Fault::status(403),
        Fault::status(404),
        Fault::status(429).with_header("retry-after", "1"),
        Fault::status(500),
        Fault::malformed(Malformed::NotJson),
        Fault::cut_stream(0),
    ] {
        emu.set_random_faults(vec![fault]);
        emu.set_fault_probability(1.0, 1, &[Route::Chat]);
        printed.error("api error", &llm.invoke("fails").await.unwrap_err());
        emu.set_fault_probability(0.0, 1, &[]);
    }
    emu.push_fault(Route::Chat, Fault::close());
    let no_retry = builder(&emu).no_retry().build().unwrap();
    printed.error("transport", &no_retry.invoke("closed").await.unwrap_err());
    emu.push_fault(Route::Chat, Fault::delay(Duration::from_secs(120)));
    let impatient = builder(&emu)
        .no_retry()
        .request_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    printed.error("timeout", &impatient.invoke("slow").await.unwrap_err());
    emu.push_fault(Route::Chat, Fault::cut_stream(2));
    let mut cut = no_retry
        .stream(ChatRequest::from_prompt("a b c d"))
        .await
        .unwrap();
    while let Some(item) = cut.next().await {
        match item {
            Ok(chunk) => printed.debug("chunk", &chunk),
            Err(error) => printed.error("cut stream", &error),
        }
    }

    // Token errors: each kind IAM can cause.
    printed.error(
        "wrong secret",
        &builder(&emu)
            .secret(WRONG_SECRET)
            .build()
            .unwrap()
            .invoke("x")
            .await
            .unwrap_err(),
    );
    for fault in [
        Fault::status(403),
        Fault::status(503),
        Fault::status(400),
        Fault::malformed(Malformed::MissingField),
        Fault::iam_body(serde_json::json!({"access_token": "evo_leaky token", "expires_in": 60})),
        Fault::delay(Duration::from_secs(30)),
    ] {
        emu.set_random_faults(vec![fault]);
        emu.set_fault_probability(1.0, 1, &[Route::Iam]);
        let fresh = builder(&emu).no_retry().build().unwrap();
        printed.error("token error", &fresh.invoke("x").await.unwrap_err());
        emu.set_fault_probability(0.0, 1, &[]);
    }
    let unreachable = builder(&emu)
        .auth_url("http://127.0.0.1:9/api/v1/auth/token")
        .no_retry()
        .build()
        .unwrap();
    printed.error(
        "iam unreachable",
        &unreachable.invoke("x").await.unwrap_err(),
    );
    printed.error(
        "config",
        &EvolutionInference::builder()
            .model("m")
            .key_id(PRIMARY)
            .secret(PRIMARY_SECRET)
            .base_url("ftp://example")
            .build()
            .unwrap_err(),
    );
    printed.error("config", &llm.set_credentials(PRIMARY, "").unwrap_err());

    // Fallback: the primary key is disabled and its tokens revoked; then both keys.
    emu.disable_key(PRIMARY);
    emu.revoke_key(PRIMARY);
    printed.debug("on backup", &llm.invoke("fallback").await.unwrap());
    assert!(!llm.using_primary());
    printed.debug("fallback handle", &llm.fallback());
    let both = builder(&emu)
        .backup_credentials(BACKUP, WRONG_SECRET)
        .build()
        .unwrap();
    printed.error("both keys rejected", &both.invoke("x").await.unwrap_err());

    // Rotation of both keys while in use.
    llm.set_credentials(ROTATED, ROTATED_SECRET).unwrap();
    printed.debug("rotated", &llm.invoke("rotated").await.unwrap());
    llm.set_backup_credentials(BACKUP, BACKUP_SECRET).unwrap();
    llm.fallback().unwrap().rotate();
    printed.debug("rotated backup", &llm.invoke("backup again").await.unwrap());
    printed.debug("client after rotation", &llm);

    // Stats, as Debug and as JSON.
    let stats = llm.stats();
    printed.debug("stats", &stats);
    printed.0 += &serde_json::to_string(&stats).unwrap();

    api_key_flows(&emu, printed).await;
    emu
}

/// A static API key: calls, a stream, its manager, and its rejection once revoked.
async fn api_key_flows(emu: &Emulator, printed: &mut Printed) {
    let unstarted = EvolutionInference::builder()
        .model(DEMO_MODEL)
        .api_key(API_KEY)
        .base_url(emu.base_url())
        .metrics(
            Metrics::builder()
                .label("client", "audit-api-key")
                .key_id_label(true)
                .build()
                .unwrap(),
        );
    printed.debug("api key builder", &unstarted);
    let llm = unstarted.build().unwrap();
    printed.debug("api key client", &llm);
    printed.debug("api key invoke", &llm.invoke("hello").await.unwrap());
    let mut stream = llm
        .stream(ChatRequest::from_prompt("one two"))
        .await
        .unwrap();
    while let Some(chunk) = stream.next().await {
        printed.debug("api key chunk", &chunk.unwrap());
    }
    let tokens = llm.token_manager();
    printed.debug("api key token", &tokens.get_token().await.unwrap());
    printed.debug("api key manager", tokens);
    printed.debug("api key info", &tokens.info());
    printed.debug("api key credentials", &Credentials::api_key(API_KEY));
    assert!(emu.revoke_token(API_KEY));
    printed.error("api key revoked", &llm.invoke("x").await.unwrap_err());
    printed.debug("api key stats", &llm.stats());
}
