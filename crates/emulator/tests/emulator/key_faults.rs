//! A failing deployment: a persistent fault on one key's chat and embeddings requests, keys
//! disabled from the start, and the per-key counts a pool's tests read.

use std::time::Duration;

use evolution_emulator::{Emulator, Fault, Route, Stats};
use reqwest::{Client, Response};
use serde_json::{Value, json};

use crate::support::{chat_body, chat_status, credentials, error_of, http, iam, token_for};

async fn embeddings(http: &Client, emu: &Emulator, token: &str) -> Response {
    http.post(format!("{}/embeddings", emu.base_url()))
        .bearer_auth(token)
        .json(&json!({"model": "demo-model", "input": "x"}))
        .send()
        .await
        .unwrap()
}

async fn control(http: &Client, emu: &Emulator, command: Value) -> Response {
    http.post(format!("{}/_emulator/control", emu.origin()))
        .json(&command)
        .send()
        .await
        .unwrap()
}

/// Issue 19's mixed keys: one disabled at IAM, one throttled, one healthy.
async fn mixed_keys() -> Emulator {
    Emulator::builder()
        .key("off", "s-off")
        .key("busy", "s-busy")
        .key("ok", "s-ok")
        .disable_key("off")
        .key_fault("busy", Fault::status(429).with_header("retry-after", "30"))
        .start()
        .await
        .unwrap()
}

#[tokio::test]
async fn mixed_keys_answer_and_count_per_key() {
    let emu = mixed_keys().await;
    let http = http();

    let refused = iam(&http, &emu, &credentials("off", "s-off")).await;
    assert_eq!(refused.status(), 401);
    assert_eq!(error_of(refused).await["code"], "key_disabled");
    let busy = token_for(&http, &emu, "busy", "s-busy").await;
    let ok = token_for(&http, &emu, "ok", "s-ok").await;

    let throttled = crate::support::chat(&http, &emu, &busy, &chat_body("hi")).await;
    assert_eq!(throttled.status(), 429);
    assert_eq!(throttled.headers()["retry-after"], "30");
    assert_eq!(error_of(throttled).await["code"], "injected_fault");
    let throttled = embeddings(&http, &emu, &busy).await;
    assert_eq!(throttled.status(), 429);
    assert_eq!(throttled.headers()["retry-after"], "30");
    for _ in 0..3 {
        assert_eq!(chat_status(&http, &emu, &ok).await, 200);
    }
    assert_eq!(embeddings(&http, &emu, &ok).await.status(), 200);

    let stats = emu.stats();
    assert_eq!(stats.iam_requests_for("off"), 1);
    assert_eq!(stats.iam_requests_for("busy"), 1);
    assert_eq!(stats.iam_status(401), 1);
    assert_eq!(stats.chat_requests_for("busy"), 1);
    assert_eq!(stats.embeddings_requests_for("busy"), 1);
    assert_eq!(stats.api_requests_for("busy"), 2);
    assert_eq!(stats.chat_requests_for("ok"), 3);
    assert_eq!(stats.embeddings_requests_for("ok"), 1);
    assert_eq!(stats.api_requests_for("ok"), 4);
    assert_eq!(stats.api_requests_for("off"), 0);
    assert_eq!(stats.chat_status(429), 1);
    assert_eq!(stats.embeddings_status(429), 1);
    assert_eq!(stats.chat_status(200), 3);
    assert_eq!(stats.faults_injected, 2);

    // A disabled key comes back at IAM when enabled; its attempts were all counted.
    assert!(emu.enable_key("off"));
    token_for(&http, &emu, "off", "s-off").await;
    assert_eq!(emu.stats().iam_requests_for("off"), 2);
}

#[tokio::test]
async fn a_failing_key_recovers_when_its_fault_is_cleared() {
    let emu = Emulator::builder()
        .key("down", "s1")
        .key("up", "s2")
        .start()
        .await
        .unwrap();
    let http = http();
    let down = token_for(&http, &emu, "down", "s1").await;
    let up = token_for(&http, &emu, "up", "s2").await;

    assert!(emu.set_key_fault("down", Fault::status(503)));
    emu.push_fault(Route::Chat, Fault::status(500));
    for _ in 0..4 {
        assert_eq!(chat_status(&http, &emu, &down).await, 503);
    }
    // The key's fault took the place of the route's: the queued one is still there, for
    // the next request of another key.
    assert_eq!(emu.pending_faults(Route::Chat), 1);
    assert_eq!(chat_status(&http, &emu, &up).await, 500);
    assert_eq!(chat_status(&http, &emu, &up).await, 200);

    // A later fault replaces the earlier one.
    assert!(emu.set_key_fault("down", Fault::status(502)));
    assert_eq!(chat_status(&http, &emu, &down).await, 502);

    assert!(emu.clear_key_fault("down"));
    assert_eq!(chat_status(&http, &emu, &down).await, 200);
    assert!(emu.clear_key_fault("down"), "clearing twice is fine");
    assert!(!emu.set_key_fault("nobody", Fault::status(503)));
    assert!(!emu.clear_key_fault("nobody"));

    let stats = emu.stats();
    assert_eq!(stats.chat_requests_for("down"), 6);
    assert_eq!(stats.chat_requests_for("up"), 2);
    assert_eq!(stats.chat_status(503), 4);
    assert_eq!(stats.chat_status(502), 1);
    assert_eq!(stats.chat_status(500), 1);
    assert_eq!(stats.faults_injected, 6);
}

#[tokio::test(start_paused = true)]
async fn a_hanging_key_times_out_until_cleared() {
    let emu = Emulator::builder().key("hung", "s1").start().await.unwrap();
    let http = http();
    let token = token_for(&http, &emu, "hung", "s1").await;
    assert!(emu.set_key_fault("hung", Fault::delay(Duration::from_secs(60))));

    let hung = tokio::time::timeout(Duration::from_secs(5), chat_status(&http, &emu, &token)).await;
    assert!(hung.is_err(), "answered {hung:?}");

    assert!(emu.clear_key_fault("hung"));
    assert_eq!(chat_status(&http, &emu, &token).await, 200);
    assert_eq!(emu.stats().chat_requests_for("hung"), 2);
}

#[tokio::test]
async fn a_dead_token_is_refused_before_the_keys_fault_and_still_counted() {
    let emu = Emulator::builder()
        .key("busy", "s1")
        .key_fault("busy", Fault::status(429))
        .start()
        .await
        .unwrap();
    let http = http();
    let token = token_for(&http, &emu, "busy", "s1").await;
    assert_eq!(chat_status(&http, &emu, &token).await, 429);
    assert_eq!(emu.revoke_key("busy"), 1);
    assert_eq!(chat_status(&http, &emu, &token).await, 401);
    assert_eq!(embeddings(&http, &emu, &token).await.status(), 401);
    // An unknown token names no key.
    assert_eq!(chat_status(&http, &emu, "evo_unknown").await, 401);

    let stats = emu.stats();
    assert_eq!(stats.chat_requests, 3);
    assert_eq!(stats.chat_requests_for("busy"), 2);
    assert_eq!(stats.embeddings_requests_for("busy"), 1);
    assert_eq!(stats.chat_status(401), 2);
    assert_eq!(stats.faults_injected, 1);
}

#[tokio::test]
async fn a_static_api_key_fails_by_its_label() {
    let emu = Emulator::builder()
        .api_key("static-key")
        .start()
        .await
        .unwrap();
    let http = http();
    assert_eq!(chat_status(&http, &emu, "static-key").await, 200);
    let label = emu.stats().chat_by_key.keys().next().unwrap().clone();
    assert!(label.starts_with("api-key-"), "{label}");

    assert!(emu.set_key_fault(&label, Fault::status(503)));
    assert_eq!(chat_status(&http, &emu, "static-key").await, 503);
    assert_eq!(embeddings(&http, &emu, "static-key").await.status(), 503);
    assert_eq!(emu.stats().api_requests_for(&label), 3);
}

#[tokio::test]
async fn control_sets_and_clears_a_keys_fault() {
    let emu = Emulator::builder().key("k1", "s1").start().await.unwrap();
    let http = http();
    let token = token_for(&http, &emu, "k1", "s1").await;

    let set = json!({
        "command": "set_key_fault",
        "key_id": "k1",
        "fault": {"kind": "status", "status": 429, "headers": {"retry-after": "30"}},
    });
    assert_eq!(control(&http, &emu, set).await.status(), 200);
    let throttled = embeddings(&http, &emu, &token).await;
    assert_eq!(throttled.status(), 429);
    assert_eq!(throttled.headers()["retry-after"], "30");

    let clear = json!({"command": "clear_key_fault", "key_id": "k1"});
    assert_eq!(control(&http, &emu, clear).await.status(), 200);
    assert_eq!(embeddings(&http, &emu, &token).await.status(), 200);

    for unknown in [
        json!({"command": "set_key_fault", "key_id": "nobody", "fault": {"kind": "close"}}),
        json!({"command": "clear_key_fault", "key_id": "nobody"}),
    ] {
        assert_eq!(control(&http, &emu, unknown).await.status(), 404);
    }
    for bad in [
        json!({"command": "set_key_fault", "key_id": "k1"}),
        json!({"command": "set_key_fault", "key_id": "k1", "fault": {"kind": "status", "status": 42}}),
        json!({"command": "clear_key_fault"}),
    ] {
        assert_eq!(
            control(&http, &emu, bad.clone()).await.status(),
            400,
            "{bad}"
        );
    }
    // Nothing above set a fault.
    assert_eq!(embeddings(&http, &emu, &token).await.status(), 200);
}

#[tokio::test]
async fn reset_zeroes_the_per_key_counts() {
    let emu = Emulator::builder().key("k1", "s1").start().await.unwrap();
    let http = http();
    let token = token_for(&http, &emu, "k1", "s1").await;
    assert_eq!(embeddings(&http, &emu, &token).await.status(), 200);
    assert_eq!(emu.stats().embeddings_requests_for("k1"), 1);
    emu.reset_stats();
    assert_eq!(emu.stats(), Stats::default());
}

#[tokio::test]
async fn the_builder_refuses_settings_for_unknown_keys() {
    let builders = [
        Emulator::builder()
            .key("k1", "s1")
            .key_fault("k2", Fault::status(503)),
        Emulator::builder().key("k1", "s1").disable_key("k2"),
        Emulator::builder()
            .key("k1", "s1")
            .key_latency("k2", Duration::from_millis(5)),
    ];
    for builder in builders {
        let error = builder.start().await.unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput);
        assert_eq!(error.to_string(), "no such key: k2");
    }
}

fn parse(args: &[&str]) -> Result<evolution_emulator::cli::Args, clap::Error> {
    use clap::Parser;
    let argv = ["evolution-emulator"].iter().chain(args);
    evolution_emulator::cli::Args::try_parse_from(argv)
}

#[test]
fn the_cli_parses_key_faults() {
    let args = parse(&[
        "--key-fault",
        "busy:429:30",
        "--key-fault",
        "down:503",
        "--key-fault",
        "ns:key:500",
    ])
    .unwrap();
    let faults: Vec<_> = args
        .key_faults
        .iter()
        .map(|fault| (fault.id.as_str(), fault.status, fault.retry_after))
        .collect();
    assert_eq!(
        faults,
        [
            ("busy", 429, Some(30)),
            ("down", 503, None),
            ("ns:key", 500, None)
        ]
    );
    for bad in [
        "busy",
        ":503",
        "busy:200",
        "busy:600",
        "busy:429:soon",
        "busy:slow",
    ] {
        assert!(parse(&["--key-fault", bad]).is_err(), "{bad}");
    }
}

#[tokio::test]
async fn the_cli_starts_keys_disabled_and_failing() {
    let args = parse(&[
        "--key",
        "off:s1",
        "--key",
        "busy:s2",
        "--disable-key",
        "off",
        "--key-fault",
        "busy:429:30",
    ])
    .unwrap();
    assert_eq!(args.disabled_keys, ["off"]);
    let emu = args.builder().start().await.unwrap();
    let http = http();
    assert_eq!(
        iam(&http, &emu, &credentials("off", "s1")).await.status(),
        401
    );
    let busy = token_for(&http, &emu, "busy", "s2").await;
    let throttled = crate::support::chat(&http, &emu, &busy, &chat_body("hi")).await;
    assert_eq!(throttled.status(), 429);
    assert_eq!(throttled.headers()["retry-after"], "30");

    let typo = parse(&["--key", "k1:s1", "--disable-key", "k2"]).unwrap();
    assert!(typo.builder().start().await.is_err());
}
