//! A static Foundation Models API key instead of a key id and secret: sent as the bearer
//! token itself, with no IAM request ever.

use evolution_client::{ChatRequest, Error, EvolutionInference, EvolutionInferenceBuilder};
use evolution_emulator::{DEMO_MODEL, Emulator};
use futures_util::StreamExt;
use futures_util::future::join_all;
use http::StatusCode;

use evolution_testkit::{BACKUP, BACKUP_SECRET};

use crate::{KEY, SECRET};

/// The key the emulator accepts; no output may show it.
const API_KEY: &str = "static-api-key-never-printed";

async fn emulator() -> Emulator {
    evolution_testkit::emulator_builder()
        .api_key(API_KEY)
        .start()
        .await
        .expect("emulator starts")
}

fn builder(emu: &Emulator) -> EvolutionInferenceBuilder {
    EvolutionInference::builder()
        .model(DEMO_MODEL)
        .api_key(API_KEY)
        .base_url(emu.base_url())
}

#[tokio::test]
async fn chat_stream_and_embeddings_make_no_iam_request() {
    let emu = emulator().await;
    let llm = builder(&emu).build().unwrap();
    llm.invoke("hello").await.unwrap();
    let mut stream = llm
        .stream(ChatRequest::from_prompt("one two three"))
        .await
        .unwrap();
    while let Some(chunk) = stream.next().await {
        chunk.unwrap();
    }
    llm.embeddings("text").await.unwrap();
    llm.models().await.unwrap();

    let stats = emu.stats();
    assert_eq!(stats.iam_requests, 0);
    assert_eq!(stats.tokens_issued, 0);
    assert_eq!(stats.api_key_requests, 4);
    assert_eq!(stats.chat_status(200), 2);
    assert_eq!(stats.embeddings_status(200), 1);
    let label = llm.token_manager().key_id();
    assert_eq!(
        stats.chat_requests_for(&label),
        2,
        "counted under the same label"
    );
    assert!(llm.token_manager().is_api_key());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_callers_make_no_iam_request() {
    let emu = emulator().await;
    let llm = builder(&emu).build().unwrap();
    let calls = (0..64).map(|i| {
        let llm = llm.clone();
        tokio::spawn(async move { llm.invoke(format!("q{i}")).await })
    });
    for result in join_all(calls).await {
        result.unwrap().unwrap();
    }
    let stats = emu.stats();
    assert_eq!(stats.iam_requests, 0);
    assert_eq!(stats.chat_status(200), 64);
}

#[tokio::test]
async fn a_revoked_key_fails_with_401_after_one_resend() {
    let emu = emulator().await;
    let llm = builder(&emu).build().unwrap();
    llm.invoke("before").await.unwrap();
    assert!(emu.revoke_token(API_KEY));
    emu.reset_stats();

    let error = llm.invoke("after").await.unwrap_err();
    assert!(
        matches!(
            error,
            Error::Api {
                status: StatusCode::UNAUTHORIZED,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(error.is_auth());
    let stats = emu.stats();
    assert_eq!(stats.chat_requests, 2, "the call and its one resend");
    assert_eq!(stats.chat_status(401), 2);
    assert_eq!(stats.iam_requests, 0);

    // Accepted again: the next call goes through with the same key, still without IAM.
    emu.add_api_key(API_KEY);
    llm.invoke("restored").await.unwrap();
    assert_eq!(emu.stats().iam_requests, 0);
}

#[tokio::test]
async fn the_key_is_never_printed() {
    let emu = emulator().await;
    let unstarted = builder(&emu);
    let mut printed = format!("{unstarted:?}");
    let llm = unstarted.build().unwrap();
    llm.invoke("hello").await.unwrap();
    let tokens = llm.token_manager();
    let token = tokens.get_token().await.unwrap();
    printed += &format!("{llm:?} {tokens:?} {token:?} {:?}", tokens.info());
    assert!(emu.revoke_token(API_KEY));
    let error = llm.invoke("rejected").await.unwrap_err();
    printed += &format!("{error} {error:?}");
    let empty = builder(&emu).api_key("").build().unwrap_err();
    printed += &format!("{empty} {empty:?}");
    let spaced = builder(&emu)
        .api_key(format!("{API_KEY} x"))
        .build()
        .unwrap_err();
    printed += &format!("{spaced} {spaced:?}");

    assert!(printed.contains(&*tokens.key_id()), "{printed}");
    assert!(tokens.key_id().starts_with("api-key-"));
    assert!(!printed.contains(API_KEY), "the key was printed: {printed}");
}

#[test]
fn an_api_key_beside_a_key_id_or_secret_names_both() {
    for builder in [
        EvolutionInference::builder().key_id(KEY),
        EvolutionInference::builder().secret("s"),
    ] {
        let error = builder
            .model(DEMO_MODEL)
            .api_key(API_KEY)
            .base_url("https://example.com/v1")
            .build()
            .unwrap_err();
        let message = error.to_string();
        assert!(
            matches!(
                error,
                Error::Config {
                    field: "api_key",
                    ..
                }
            ),
            "{error:?}"
        );
        for name in [
            "EVOLUTION_API_KEY",
            ".api_key",
            "EVOLUTION_KEY_ID",
            ".key_id",
        ] {
            assert!(message.contains(name), "{name} not in {message}");
        }
        assert!(!message.contains(API_KEY));
    }
}

#[test]
fn an_empty_api_key_is_a_configuration_error() {
    let error = EvolutionInference::builder()
        .model(DEMO_MODEL)
        .api_key(" ")
        .base_url("https://example.com/v1")
        .build()
        .unwrap_err();
    assert!(
        matches!(
            error,
            Error::Config {
                field: "api_key",
                ..
            }
        ),
        "{error:?}"
    );
}

#[test]
fn the_auth_url_is_not_used() {
    // A plain-http auth URL to a remote host fails an IAM key's build; a static key never
    // asks IAM, so it is no concern of its.
    EvolutionInference::builder()
        .model(DEMO_MODEL)
        .api_key(API_KEY)
        .base_url("https://example.com/v1")
        .auth_url("http://iam.example.com/token")
        .build()
        .unwrap();
}

#[tokio::test]
async fn a_revoked_key_fails_over_to_the_backup() {
    let emu = evolution_testkit::emulator_builder()
        .key(BACKUP, BACKUP_SECRET)
        .api_key(API_KEY)
        .start()
        .await
        .unwrap();
    let llm = builder(&emu)
        .auth_url(emu.auth_url())
        .backup_credentials(BACKUP, BACKUP_SECRET)
        .build()
        .unwrap();
    llm.invoke("on the key").await.unwrap();
    assert!(llm.using_primary());
    assert_eq!(emu.stats().iam_requests, 0);

    assert!(emu.revoke_token(API_KEY));
    llm.invoke("on the backup").await.unwrap();
    assert!(!llm.using_primary());
    let stats = emu.stats();
    assert_eq!(stats.iam_requests_for(BACKUP), 1);
    assert_eq!(stats.iam_requests, 1, "only the backup asks IAM");
}

#[tokio::test]
async fn keys_rotate_between_kinds() {
    let emu = emulator().await;
    emu.add_api_key("next-api-key");
    let llm = builder(&emu).auth_url(emu.auth_url()).build().unwrap();
    llm.invoke("api key").await.unwrap();

    // To a key id: IAM at the configured auth URL.
    llm.set_credentials(KEY, SECRET).unwrap();
    llm.invoke("key id").await.unwrap();
    assert!(!llm.token_manager().is_api_key());
    assert_eq!(emu.stats().iam_requests_for(KEY), 1);

    // Back to another API key: no more IAM requests.
    llm.set_api_key("next-api-key").unwrap();
    llm.invoke("next api key").await.unwrap();
    assert!(llm.token_manager().is_api_key());
    let stats = emu.stats();
    assert_eq!(stats.iam_requests, 1);
    assert_eq!(stats.api_key_requests, 2);

    let error = llm.set_api_key("").unwrap_err();
    assert!(
        matches!(
            error,
            Error::Config {
                field: "api_key",
                ..
            }
        ),
        "{error:?}"
    );
    llm.invoke("still the next api key").await.unwrap();
}
