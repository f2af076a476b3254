//! Rows about the wire: refused and dropped connections, truncated and non-JSON answers, a
//! stream cut in the middle.

use std::time::Duration;

use evolution_client::{ChatRequest, Error};
use evolution_emulator::{Fault, Malformed, Route};
use evolution_token::TokenError;
use futures_util::StreamExt;

use crate::{
    ATTEMPTS, KEY, break_route, builder, client, closed_port, echo, emulator, says, seen,
    token_error,
};

/// Nothing listens at the base URL, then at the auth URL: transport errors, retried 3 times,
/// that say which URL to check.
#[tokio::test(start_paused = true)]
async fn connection_refused() {
    let emu = emulator().await;

    // The API refuses connections; IAM works.
    let base_url = format!("http://127.0.0.1:{}/v1", closed_port());
    let llm = builder(&emu).base_url(&base_url).build().unwrap();
    let error = llm.invoke("hi").await.unwrap_err();
    assert!(matches!(error, Error::Transport(_)), "{error:?}");
    assert!(error.is_retryable() && !error.is_auth());
    says(
        &error.to_string(),
        &[
            "request to the Evolution API failed",
            "check the network and the base URL",
        ],
    );
    assert_eq!(seen(&emu), (1, 0));
    assert_eq!(llm.stats().retries, ATTEMPTS - 1, "3 connection attempts");

    // IAM refuses connections.
    let auth_url = format!("http://127.0.0.1:{}/api/v1/auth/token", closed_port());
    let llm = builder(&emu).auth_url(&auth_url).build().unwrap();
    let error = llm.invoke("hi").await.unwrap_err();
    match token_error(&error) {
        TokenError::Network { attempts, .. } => assert_eq!(*attempts, 3),
        other => panic!("expected Network, got {other:?}"),
    }
    assert!(error.is_retryable() && !error.is_auth());
    says(
        &error.to_string(),
        &[
            &format!("could not reach IAM at {auth_url} after 3 attempt(s)"),
            "check the network and the auth URL",
        ],
    );
    assert_eq!(seen(&emu), (1, 0), "nothing reached the emulator");
    assert_eq!(llm.stats().retries, ATTEMPTS - 1);
    // One refresh of 3 refused connections, which no server can count, and one more for each
    // client retry that came after the token manager's failure backoff.
    let refreshes = llm.stats().failed_refreshes;
    assert!((1..=ATTEMPTS).contains(&refreshes), "{refreshes}");
}

/// The server drops the connection before answering (retried: the request may be resent),
/// and after sending the head and half the body (not retried: the server has answered).
#[tokio::test(start_paused = true)]
async fn connection_closed_mid_response() {
    let emu = emulator().await;
    let llm = client(&emu);

    // Before the answer, once: retried to success.
    emu.push_fault(Route::Chat, Fault::close());
    assert_eq!(llm.invoke("a").await.unwrap(), echo(KEY, "a"));
    assert_eq!(seen(&emu), (1, 2));
    assert_eq!(emu.stats().connections_dropped, 1);

    // Before the answer, always: a transport error after 3 attempts.
    break_route(&emu, Route::Chat, Fault::close());
    let error = llm.invoke("b").await.unwrap_err();
    assert!(matches!(error, Error::Transport(_)), "{error:?}");
    assert!(error.is_retryable());
    says(
        &error.to_string(),
        &[
            "request to the Evolution API failed",
            "check the network and the base URL",
        ],
    );
    assert_eq!(seen(&emu), (1, 2 + ATTEMPTS));
    assert_eq!(emu.stats().connections_dropped, 1 + ATTEMPTS);
    crate::heal(&emu);

    // In the middle of the body: the head said 200, so the retry layer has let it through;
    // reading the rest fails.
    emu.push_fault(Route::Chat, Fault::cut_stream(0));
    let error = llm.invoke("c").await.unwrap_err();
    assert!(matches!(error, Error::Transport(_)), "{error:?}");
    says(
        &error.to_string(),
        &["request to the Evolution API failed: request or response body error"],
    );
    assert_eq!(seen(&emu), (1, 3 + ATTEMPTS), "a cut body is not resent");
    assert_eq!(emu.stats().connections_dropped, 2 + ATTEMPTS);

    assert_eq!(llm.invoke("d").await.unwrap(), echo(KEY, "d"));
}

/// 200 answers that are cut short, not JSON, empty or lack `choices`: `Error::Decode` saying
/// what was expected, not retried.
#[tokio::test(start_paused = true)]
async fn truncated_or_non_json_answer() {
    let emu = emulator().await;
    let llm = client(&emu);
    let cases = [
        (Fault::malformed(Malformed::Truncated), "EOF while parsing"),
        (Fault::malformed(Malformed::NotJson), "expected value"),
        (Fault::malformed(Malformed::Empty), "EOF while parsing"),
        (
            Fault::malformed(Malformed::MissingField),
            "missing field `choices`",
        ),
        (
            Fault::raw_body(200, "text/html", "<html><body>Gateway</body></html>"),
            "expected value",
        ),
        (
            Fault::raw_body(
                200,
                "application/json",
                r#"{"choices":[{"message":{"role":"robot"}}]}"#,
            ),
            "unknown variant `robot`",
        ),
    ];
    for (i, (fault, detail)) in cases.into_iter().enumerate() {
        emu.push_fault(Route::Chat, fault);
        let error = llm.invoke("hi").await.unwrap_err();
        assert!(matches!(error, Error::Decode(_)), "case {i}: {error:?}");
        assert!(!error.is_retryable() && !error.is_auth());
        says(
            &error.to_string(),
            &[
                "unexpected answer from the Evolution API",
                "the chat completion is not valid JSON of the expected shape",
                detail,
                "check that the base URL points to an OpenAI-compatible endpoint",
            ],
        );
        assert_eq!(seen(&emu), (1, i as u64 + 1), "case {i}: not retried");
    }

    // The model list too.
    emu.push_fault(Route::Models, Fault::malformed(Malformed::Truncated));
    let error = llm.models().await.unwrap_err();
    assert!(matches!(error, Error::Decode(_)), "{error:?}");
    says(
        &error.to_string(),
        &["the model list is not valid JSON of the expected shape"],
    );
    assert_eq!(emu.stats().models_requests, 1);

    // An answer larger than the client buffers.
    let huge = vec![b' '; evolution_client::MAX_RESPONSE_BYTES + 1];
    emu.push_fault(Route::Chat, Fault::raw_body(200, "application/json", huge));
    let error = llm.invoke("hi").await.unwrap_err();
    assert!(matches!(error, Error::Decode(_)), "{error:?}");
    says(
        &error.to_string(),
        &["the answer is larger than 16777216 bytes"],
    );

    // `choices: []` parses, but `invoke` has nothing to return.
    emu.push_fault(
        Route::Chat,
        Fault::raw_body(200, "application/json", r#"{"choices":[]}"#),
    );
    let error = llm.invoke("hi").await.unwrap_err();
    assert!(
        matches!(&error, Error::Decode(m) if m == "the answer has no choices"),
        "{error:?}"
    );
}

/// A stream cut after 3 events: those 3 chunks arrive, then one error, then the end. Bounded
/// by a real-time timeout so a hang fails the test instead of stalling it.
#[tokio::test]
async fn sse_stream_cut_in_the_middle() {
    let emu = emulator().await;
    let llm = client(&emu);
    emu.push_fault(Route::Chat, Fault::cut_stream(3));
    let outcome = tokio::time::timeout(Duration::from_secs(10), async {
        let mut stream = llm
            .stream(ChatRequest::from_prompt("one two three four five six"))
            .await
            .unwrap();
        let mut items = Vec::new();
        while let Some(item) = stream.next().await {
            items.push(item);
        }
        items
    })
    .await
    .expect("the stream ends instead of hanging");
    let (chunks, errors): (Vec<_>, Vec<_>) = outcome.into_iter().partition(Result::is_ok);
    assert_eq!(chunks.len(), 3, "{chunks:?}");
    let text: String = chunks.iter().map(|c| c.as_ref().unwrap().text()).collect();
    assert_eq!(text, format!("[{KEY}] echo: "));
    assert_eq!(errors.len(), 1, "exactly one error, last");
    let error = errors.into_iter().next().unwrap().unwrap_err();
    // hyper sees the chunked body end without its last chunk.
    assert!(matches!(error, Error::Transport(_)), "{error:?}");
    says(
        &error.to_string(),
        &[
            "request to the Evolution API failed: request or response body error",
            "check the network",
        ],
    );
    assert_eq!(seen(&emu), (1, 1), "a started stream is not retried");
    assert_eq!(emu.stats().chat_streams, 1);
    assert_eq!(emu.stats().connections_dropped, 1);

    // A body that ends cleanly but without `data: [DONE]`, and one event without end.
    let cases: [(&[u8], &str); 2] = [
        (
            b"data: {\"choices\":[{\"delta\":{\"content\":\"part\"}}]}\n\n",
            "the stream ended before `data: [DONE]`: the connection was cut",
        ),
        (b"data: ", "a stream event is larger than 4194304 bytes"),
    ];
    for (i, (body, expected)) in cases.into_iter().enumerate() {
        let mut body = body.to_vec();
        if i == 1 {
            body.resize(evolution_client::sse::MAX_EVENT_BYTES + 10, b'x');
        }
        emu.push_fault(Route::Chat, Fault::raw_body(200, "text/event-stream", body));
        let items: Vec<_> = tokio::time::timeout(Duration::from_secs(10), async {
            llm.stream(ChatRequest::from_prompt("x"))
                .await
                .unwrap()
                .collect::<Vec<_>>()
                .await
        })
        .await
        .expect("no hang");
        let last = items.last().expect("an item");
        assert!(
            matches!(last, Err(Error::Decode(message)) if message.contains(expected)),
            "case {i}: {items:?}"
        );
        assert_eq!(
            items.len(),
            2 - i,
            "case {i}: the chunk before, then the error"
        );
    }

    // The stream through `collect_text` reports the same, and a whole stream still works.
    emu.push_fault(Route::Chat, Fault::cut_stream(1));
    let result = tokio::time::timeout(
        Duration::from_secs(10),
        llm.stream(ChatRequest::from_prompt("x y z"))
            .await
            .unwrap()
            .collect_text(),
    )
    .await
    .expect("no hang");
    assert!(result.is_err(), "{result:?}");
    let whole = llm
        .stream(ChatRequest::from_prompt("x y z"))
        .await
        .unwrap()
        .collect_text()
        .await
        .unwrap();
    assert_eq!(whole, echo(KEY, "x y z"));
}
