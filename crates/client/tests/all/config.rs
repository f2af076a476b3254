use std::time::Duration;

use evolution_client::{Error, EvolutionInference};

use crate::{builder, emulator};

fn field_of(result: evolution_client::Result<EvolutionInference>) -> (&'static str, String) {
    match result {
        Err(error @ Error::Config { .. }) => {
            let message = error.to_string();
            let Error::Config { field, .. } = error else {
                unreachable!()
            };
            (field, message)
        }
        other => panic!("expected a configuration error, got {other:?}"),
    }
}

#[test]
fn missing_settings_name_the_field_and_the_variable() {
    let full = || {
        EvolutionInference::builder()
            .model("m")
            .key_id("k")
            .secret("s")
            .base_url("https://api.example/v1")
    };
    let cases = [
        (
            EvolutionInference::builder()
                .key_id("k")
                .secret("s")
                .base_url("https://a/v1"),
            "model",
            "EVOLUTION_MODEL",
        ),
        (
            EvolutionInference::builder()
                .model("m")
                .secret("s")
                .base_url("https://a/v1"),
            "key_id",
            "EVOLUTION_KEY_ID",
        ),
        (
            EvolutionInference::builder()
                .model("m")
                .key_id("k")
                .base_url("https://a/v1"),
            "secret",
            "EVOLUTION_SECRET",
        ),
        (
            EvolutionInference::builder()
                .model("m")
                .key_id("k")
                .secret("s"),
            "base_url",
            "EVOLUTION_BASE_URL",
        ),
        (full().secret("  "), "secret", "EVOLUTION_SECRET"),
    ];
    for (builder, field, variable) in cases {
        let (got, message) = field_of(builder.build());
        assert_eq!(got, field);
        assert!(message.contains(variable), "{message}");
    }
    let invalid = [
        (full().base_url("not a url"), "base_url", "not a valid URL"),
        (
            full().base_url("http://api.example/v1"),
            "base_url",
            "plain http",
        ),
        (
            full().auth_url("http://iam.example/token"),
            "auth_url",
            "plain http",
        ),
        (full().temperature(2.5), "temperature", "between 0 and 2"),
        (full().top_p(-0.1), "top_p", "between 0 and 1"),
        (
            full().frequency_penalty(3.0),
            "frequency_penalty",
            "between -2 and 2",
        ),
        (
            full().presence_penalty(-3.0),
            "presence_penalty",
            "between -2 and 2",
        ),
        (full().temperature(f64::NAN), "temperature", "out of range"),
        (full().max_tokens(0), "max_tokens", "at least 1"),
        (full().n(0), "n", "at least 1"),
        (
            full().request_timeout(Duration::ZERO),
            "request_timeout",
            "longer than zero",
        ),
        (
            full().fetch_attempts(0),
            "fetch_attempts",
            "between 1 and 10",
        ),
        (
            full().fetch_timeout(Duration::ZERO),
            "fetch_timeout",
            "longer than zero",
        ),
        (
            full()
                .refresh_buffer(Duration::from_secs(60))
                .refresh_ahead(Duration::from_secs(10)),
            "refresh_ahead",
            "shorter than refresh_buffer",
        ),
    ];
    for (builder, field, expected) in invalid {
        let (got, message) = field_of(builder.build());
        assert_eq!(got, field, "{message}");
        assert!(message.contains(expected), "{message}");
    }
    // Accepted: trailing slash, loopback http, insecure http when allowed.
    full().base_url("https://api.example/v1/").build().unwrap();
    full().base_url("http://127.0.0.1:9/v1").build().unwrap();
    full()
        .base_url("http://inference.internal/v1")
        .auth_url("http://iam.internal/token")
        .allow_insecure_http(true)
        .build()
        .unwrap();
}

#[tokio::test]
async fn trailing_slash_on_base_url_works() {
    let emu = emulator().await;
    let llm = builder(&emu)
        .base_url(format!("{}/", emu.base_url()))
        .build()
        .unwrap();
    llm.invoke("hi").await.unwrap();
}

#[test]
fn debug_output_hides_the_secret() {
    let builder = EvolutionInference::builder()
        .model("m")
        .key_id("k")
        .secret("super-secret-value")
        .base_url("https://api.example/v1");
    assert!(!format!("{builder:?}").contains("super-secret-value"));
    let client = builder.build().unwrap();
    assert!(!format!("{client:?}").contains("super-secret-value"));
}

#[tokio::test]
async fn per_call_overrides_are_checked_before_sending() {
    use evolution_client::ChatRequest;
    let emu = emulator().await;
    let llm = builder(&emu).build().unwrap();
    let cases = [
        (
            ChatRequest::from_prompt("x").temperature(5.0),
            "temperature",
        ),
        (ChatRequest::from_prompt("x").top_p(1.5), "top_p"),
        (ChatRequest::from_prompt("x").max_tokens(0), "max_tokens"),
        (ChatRequest::from_prompt("x").n(0), "n"),
        (
            ChatRequest::from_prompt("x").presence_penalty(-2.5),
            "presence_penalty",
        ),
    ];
    for (request, expected) in cases {
        match llm.chat(request).await.unwrap_err() {
            Error::Config { field, .. } => assert_eq!(field, expected),
            other => panic!("expected a configuration error, got {other:?}"),
        }
    }
    assert_eq!(emu.stats().chat_requests, 0);
    assert_eq!(emu.stats().iam_requests, 0);
}
