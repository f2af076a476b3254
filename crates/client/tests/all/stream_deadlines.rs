//! A stream's three limits, on paused time: the wait for the first chunk (resent while
//! nothing reached the caller), the stall between chunks and the whole stream's length,
//! each ending the stream with its own error.

use std::time::Duration;

use evolution_client::retry::DEFAULT_MAX_ATTEMPTS;
use evolution_client::{ChatRequest, Error, StreamTimeout};
use evolution_emulator::{Fault, Route};
use futures_util::StreamExt;
use tokio::time::Instant;

use super::{builder, emulator};

/// Reads a stream to its end: the chunks' texts, and the error it ended with, if any.
async fn drain(mut stream: evolution_client::ChatStream) -> (String, Option<Error>) {
    let mut text = String::new();
    while let Some(item) = stream.next().await {
        match item {
            Ok(chunk) => text.push_str(chunk.text()),
            Err(error) => {
                assert!(stream.next().await.is_none(), "nothing after the error");
                return (text, Some(error));
            }
        }
    }
    (text, None)
}

#[tokio::test(start_paused = true)]
async fn a_stall_between_chunks_ends_the_stream_and_is_never_resent() {
    let emu = emulator().await;
    // 2 s between events; 1.5 s of silence is allowed.
    emu.set_stream_interval(Duration::from_secs(2));
    let llm = builder(&emu)
        .stream_idle_timeout(Duration::from_millis(1500))
        .build()
        .unwrap();
    let stream = llm.stream(ChatRequest::from_prompt("a b c")).await.unwrap();
    let started = Instant::now();
    let (text, error) = drain(stream).await;
    assert!(
        matches!(error, Some(Error::StreamTimeout(StreamTimeout::Idle(limit))) if limit == Duration::from_millis(1500)),
        "{error:?}"
    );
    // The first event came at once; the second was due after 2 s.
    assert_eq!(started.elapsed(), Duration::from_millis(1500));
    assert_eq!(text, "", "the role chunk only");
    assert_eq!(
        emu.stats().chat_requests,
        1,
        "a stream that has sent something is never resent"
    );
    let message = error.unwrap().to_string();
    assert!(message.contains("stream_idle_timeout"), "{message}");
}

#[tokio::test(start_paused = true)]
async fn a_slow_but_steady_stream_is_within_its_idle_limit() {
    let emu = emulator().await;
    emu.set_stream_interval(Duration::from_secs(2));
    let llm = builder(&emu)
        .stream_idle_timeout(Duration::from_secs(3))
        .build()
        .unwrap();
    let stream = llm.stream(ChatRequest::from_prompt("a b c")).await.unwrap();
    let (text, error) = drain(stream).await;
    assert!(error.is_none(), "{error:?}");
    assert_eq!(text, format!("[{}] echo: a b c", super::KEY));
}

#[tokio::test(start_paused = true)]
async fn the_total_limit_ends_a_stream_that_keeps_sending() {
    let emu = emulator().await;
    emu.set_stream_interval(Duration::from_secs(1));
    let llm = builder(&emu)
        .stream_timeout(Duration::from_millis(4500))
        .build()
        .unwrap();
    let started = Instant::now();
    let stream = llm
        .stream(ChatRequest::from_prompt(
            "one two three four five six seven eight",
        ))
        .await
        .unwrap();
    let (text, error) = drain(stream).await;
    assert!(
        matches!(error, Some(Error::StreamTimeout(StreamTimeout::Total(limit))) if limit == Duration::from_millis(4500)),
        "{error:?}"
    );
    // From the call's start, token and head included (both instant here).
    assert_eq!(started.elapsed(), Duration::from_millis(4500));
    // The role event at 0 s, then one word a second: 4 words by 4.5 s.
    assert_eq!(text, format!("[{}] echo: one two ", super::KEY));
    assert_eq!(emu.stats().chat_requests, 1);
    assert!(error.unwrap().to_string().contains("stream_timeout"));
}

#[tokio::test]
async fn a_zero_stream_limit_is_a_configuration_error() {
    let emu = emulator().await;
    for (field, builder) in [
        (
            "first_chunk_timeout",
            builder(&emu).first_chunk_timeout(Duration::ZERO),
        ),
        (
            "stream_idle_timeout",
            builder(&emu).stream_idle_timeout(Duration::ZERO),
        ),
        (
            "stream_timeout",
            builder(&emu).stream_timeout(Duration::ZERO),
        ),
    ] {
        let error = builder.build().unwrap_err();
        assert!(
            matches!(&error, Error::Config { field: f, .. } if *f == field),
            "{field}: {error:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_stream_with_no_first_chunk_in_time_is_sent_again() {
    let recorder = metrics_util::debugging::DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);
    let emu = emulator().await;
    emu.push_fault(Route::Chat, Fault::stall_stream(0, Duration::from_secs(30)));
    let llm = builder(&emu)
        .first_chunk_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    llm.token_manager().get_token().await.unwrap();
    let started = Instant::now();
    let stream = llm.stream(ChatRequest::from_prompt("again")).await.unwrap();
    assert_eq!(
        started.elapsed(),
        Duration::from_secs(1),
        "one wait, then the resend's head"
    );
    let (text, error) = drain(stream).await;
    assert!(error.is_none(), "{error:?}");
    assert_eq!(text, format!("[{}] echo: again", super::KEY));
    let reported = emu.stats();
    assert_eq!(reported.chat_requests, 2);
    let stats = llm.stats();
    assert_eq!(stats.retries, 1);
    // One logical call, counted once, with the resent stream's usage.
    assert_eq!((stats.total_requests, stats.successes), (1, 1));
    assert!(reported.reported_output_tokens > 0);
    assert_eq!(
        (stats.input_tokens, stats.output_tokens),
        (
            reported.reported_input_tokens,
            reported.reported_output_tokens
        )
    );
    let retried: Vec<String> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter(|(key, ..)| key.key().name() == "evolution_retries_total")
        .flat_map(|(key, ..)| {
            key.key()
                .labels()
                .filter(|label| label.key() == "reason")
                .map(|label| label.value().to_owned())
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(retried, ["first_chunk_timeout"]);
}

#[tokio::test(start_paused = true)]
async fn a_stream_that_never_starts_fails_after_the_retry_policys_attempts() {
    let emu = emulator().await;
    for _ in 0..5 {
        emu.push_fault(Route::Chat, Fault::stall_stream(0, Duration::from_secs(30)));
    }
    let llm = builder(&emu)
        .first_chunk_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    llm.token_manager().get_token().await.unwrap();
    let started = Instant::now();
    let error = llm
        .stream(ChatRequest::from_prompt("never"))
        .await
        .unwrap_err();
    assert!(
        matches!(error, Error::StreamTimeout(StreamTimeout::FirstChunk(limit)) if limit == Duration::from_secs(2)),
        "{error:?}"
    );
    assert!(error.to_string().contains("first_chunk_timeout"), "{error}");
    assert_eq!(emu.stats().chat_requests, u64::from(DEFAULT_MAX_ATTEMPTS));
    assert_eq!(
        started.elapsed(),
        Duration::from_secs(2) * DEFAULT_MAX_ATTEMPTS
    );
}
