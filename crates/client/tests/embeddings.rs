//! `EvolutionInference::embeddings` against the in-process emulator: the answer's shape, the
//! IAM requests it costs, the 401 resend and retries.

use evolution_client::{EmbeddingsRequest, Error};
use evolution_emulator::{DEFAULT_EMBEDDING_DIMENSIONS, DEMO_EMBEDDING_MODEL, Fault, Route};
use evolution_testkit::{builder, client, emulator, emulator_builder};
use secrecy::ExposeSecret;
use serde_json::json;

#[tokio::test]
async fn answers_one_vector_per_text_in_order() {
    let emu = emulator().await;
    let llm = client(&emu);
    let answer = llm
        .embeddings(
            EmbeddingsRequest::many(["hello world", "good bye", "third"])
                .model(DEMO_EMBEDDING_MODEL),
        )
        .await
        .unwrap();
    assert_eq!(answer.model, DEMO_EMBEDDING_MODEL);
    assert_eq!(answer.data.len(), 3);
    for (i, entry) in answer.data.iter().enumerate() {
        assert_eq!(entry.index as usize, i);
        assert_eq!(entry.embedding.len(), DEFAULT_EMBEDDING_DIMENSIONS);
        let norm: f32 = entry.embedding.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-3, "norm {norm}");
    }
    let usage = answer.usage.unwrap();
    assert_eq!((usage.prompt_tokens, usage.total_tokens), (5, 5));
    assert_eq!(
        emu.last_embeddings_request(),
        Some(json!({
            "model": DEMO_EMBEDDING_MODEL,
            "input": ["hello world", "good bye", "third"],
            "encoding_format": "float",
        }))
    );
    let stats = emu.stats();
    assert_eq!(stats.embeddings_status(200), 1);
    assert_eq!(stats.chat_requests, 0);
}

#[tokio::test]
async fn one_text_goes_as_a_string_with_the_clients_model_and_asked_dimensions() {
    let emu = emulator().await;
    let llm = client(&emu);
    let answer = llm
        .embeddings(EmbeddingsRequest::new("same text").dimensions(16))
        .await
        .unwrap();
    assert_eq!(answer.data.len(), 1);
    assert_eq!(answer.data[0].embedding.len(), 16);
    assert_eq!(answer.model, llm.model());
    assert_eq!(
        emu.last_embeddings_request(),
        Some(json!({
            "model": llm.model(), "input": "same text", "encoding_format": "float",
            "dimensions": 16,
        }))
    );
    // The same text gets the same vector.
    let again = llm
        .embeddings(EmbeddingsRequest::new("same text").dimensions(16))
        .await
        .unwrap();
    assert_eq!(again.data[0].embedding, answer.data[0].embedding);
}

#[tokio::test]
async fn calls_share_one_token_with_chat() {
    let emu = emulator().await;
    let llm = client(&emu);
    for i in 0..5 {
        llm.embeddings(format!("text {i}")).await.unwrap();
    }
    llm.invoke("hi").await.unwrap();
    let stats = emu.stats();
    assert_eq!(stats.iam_requests, 1);
    assert_eq!(stats.embeddings_status(200), 5);
    assert_eq!(stats.chat_status(200), 1);
}

#[tokio::test]
async fn a_revoked_token_is_refreshed_and_the_call_resent() {
    let emu = emulator().await;
    let llm = client(&emu);
    llm.embeddings("warm up").await.unwrap();
    let token = llm.token_manager().get_token().await.unwrap();
    assert!(emu.revoke_token(token.secret().expose_secret()));
    llm.embeddings("after the revocation").await.unwrap();
    let stats = emu.stats();
    assert_eq!(stats.iam_requests, 2, "one extra IAM request");
    assert_eq!(stats.embeddings_status(401), 1);
    assert_eq!(stats.embeddings_status(200), 2);
}

#[tokio::test(start_paused = true)]
async fn transient_faults_are_retried_to_success() {
    let emu = emulator().await;
    emu.push_fault(Route::Embeddings, Fault::status(503));
    emu.push_fault(Route::Embeddings, Fault::close());
    let llm = client(&emu);
    let answer = llm.embeddings("hi").await.unwrap();
    assert_eq!(answer.data.len(), 1);
    let stats = emu.stats();
    assert_eq!(stats.embeddings_requests, 3);
    assert_eq!(stats.embeddings_status(503), 1);
    assert_eq!(stats.embeddings_status(200), 1);
    assert_eq!(llm.stats().retries, 2);
}

#[tokio::test]
async fn a_refused_request_is_an_api_error_with_the_servers_code() {
    let emu = emulator_builder()
        .embedding_model(DEMO_EMBEDDING_MODEL)
        .start()
        .await
        .unwrap();
    let llm = builder(&emu).model(DEMO_EMBEDDING_MODEL).build().unwrap();
    let error = llm
        .embeddings(EmbeddingsRequest::new("hi").model("no-such-model"))
        .await
        .unwrap_err();
    match error {
        Error::Api { status, code, .. } => {
            assert_eq!(status, 404);
            assert_eq!(code.as_deref(), Some("model_not_found"));
        }
        other => panic!("expected an API error, got {other:?}"),
    }
    let error = llm.embeddings("").await.unwrap_err();
    assert_eq!(error.status().map(|status| status.as_u16()), Some(400));
    assert_eq!(emu.stats().embeddings_requests, 2, "4xx are not retried");
}

#[tokio::test]
async fn a_request_without_text_is_refused_before_sending() {
    let emu = emulator().await;
    let llm = client(&emu);
    let error = llm
        .embeddings(EmbeddingsRequest::many(Vec::<String>::new()))
        .await
        .unwrap_err();
    assert!(
        matches!(error, Error::Config { field: "input", .. }),
        "{error:?}"
    );
    assert_eq!(emu.stats().embeddings_requests, 0);
    assert_eq!(emu.stats().iam_requests, 0);
}

/// The blocking facade, from a thread outside any runtime; the emulator runs on its own.
#[test]
fn the_blocking_client_embeds_too() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let emu = runtime.block_on(emulator());
    let llm = evolution_client::blocking::EvolutionInference::from_builder(builder(&emu)).unwrap();
    let answer = llm
        .embeddings(EmbeddingsRequest::many(["a", "b"]).dimensions(4))
        .unwrap();
    assert_eq!(
        answer.vectors().map(<[f32]>::len).collect::<Vec<_>>(),
        [4, 4]
    );
    assert_eq!(emu.stats().embeddings_status(200), 1);
}
