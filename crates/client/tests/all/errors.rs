use evolution_client::{ChatRequest, Error};
use evolution_emulator::{Fault, Route};
use http::StatusCode;

use crate::{KEY, builder, client, emulator};

#[tokio::test]
async fn api_errors_carry_status_and_the_server_message() {
    let emu = emulator().await;
    let llm = builder(&emu).no_retry().build().unwrap();
    for code in [400u16, 404, 500] {
        emu.push_fault(
            Route::Chat,
            Fault::status(code).with_message(format!("scripted {code}")),
        );
        let error = llm.invoke("hi").await.unwrap_err();
        match &error {
            Error::Api {
                status, message, ..
            } => {
                assert_eq!(status.as_u16(), code);
                assert_eq!(message, &format!("scripted {code}"));
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(error.status(), Some(StatusCode::from_u16(code).unwrap()));
        assert_eq!(error.is_retryable(), code == 500);
        assert!(!error.is_auth());
    }
}

#[tokio::test]
async fn an_empty_conversation_is_refused_before_sending() {
    let emu = emulator().await;
    let error = client(&emu).chat(ChatRequest::new()).await.unwrap_err();
    assert!(
        matches!(
            error,
            Error::Config {
                field: "messages",
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(emu.stats().chat_requests, 0);
    assert_eq!(emu.stats().iam_requests, 0);
}

#[tokio::test]
async fn wrong_secret_is_an_auth_error() {
    let emu = emulator().await;
    let error = builder(&emu)
        .secret("wrong")
        .build()
        .unwrap()
        .invoke("hi")
        .await
        .unwrap_err();
    assert!(error.is_auth(), "{error}");
    assert!(matches!(
        error,
        Error::Auth(evolution_token::TokenError::InvalidCredentials { .. })
    ));
    assert!(error.to_string().contains(KEY));
    assert!(!error.to_string().contains("wrong"));
}

#[tokio::test]
async fn non_json_answer_is_a_decode_error() {
    let emu = emulator().await;
    emu.push_fault(
        Route::Chat,
        Fault::raw_body(200, "application/json", "{\"choi"),
    );
    let error = client(&emu).invoke("hi").await.unwrap_err();
    assert!(matches!(error, Error::Decode(_)), "{error:?}");
}

#[tokio::test]
async fn a_closed_connection_is_a_transport_error() {
    let emu = emulator().await;
    emu.push_fault(Route::Chat, Fault::close());
    let error = builder(&emu)
        .no_retry()
        .build()
        .unwrap()
        .invoke("hi")
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Transport(_)), "{error:?}");
    assert!(error.is_retryable());
}

#[tokio::test]
async fn a_cut_stream_ends_with_an_error() {
    let emu = emulator().await;
    emu.push_fault(Route::Chat, Fault::cut_stream(2));
    let stream = client(&emu)
        .stream(ChatRequest::from_prompt("one two three four five six"))
        .await
        .unwrap();
    let error = stream.collect_text().await.unwrap_err();
    assert!(
        matches!(error, Error::Transport(_) | Error::Decode(_)),
        "{error:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn per_attempt_timeout() {
    let emu = emulator().await;
    emu.push_fault(
        Route::Chat,
        Fault::delay(std::time::Duration::from_secs(120)),
    );
    let llm = builder(&emu)
        .request_timeout(std::time::Duration::from_secs(5))
        .no_retry()
        .build()
        .unwrap();
    let error = llm.invoke("hi").await.unwrap_err();
    assert!(
        matches!(error, Error::Timeout(d) if d.as_secs() == 5),
        "{error:?}"
    );
}
