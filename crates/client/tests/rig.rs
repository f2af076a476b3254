//! rig agents on `evolution_client::rig::Client`, against the in-process emulator.

use evolution_client::EvolutionInferenceBuilder;
use evolution_client::rig::rig_agent::agent::MultiTurnStreamItem;
use evolution_client::rig::rig_core::completion::CompletionRequest;
use evolution_client::rig::rig_core::providers::openai::OpenAIConfig;
use evolution_client::rig::rig_core::streaming::{Item, StreamEvent};
use evolution_client::rig::{Client, DIALECT};
use evolution_emulator::{DEMO_MODEL, Emulator, Fault, Route};
use evolution_testkit::{BACKUP, BACKUP_SECRET, KEY, builder, two_keys};
use futures_util::StreamExt;
use futures_util::future::join_all;

fn rig(_emu: &Emulator, builder: EvolutionInferenceBuilder) -> Client {
    Client::new(builder.build().expect("valid configuration"))
}

#[tokio::test]
async fn an_agent_prompt_returns_the_answer() {
    let emu = two_keys().await;
    let client = rig(&emu, builder(&emu));
    let agent = client.agent(DEMO_MODEL).preamble("Отвечай кратко.").build();
    let answer = agent.prompt("Привет!").await.unwrap();
    assert_eq!(answer.output(), format!("[{KEY}] echo: Привет!"));

    // What rig sent is what the reference clients send: plain-string contents.
    let sent = emu.last_chat_request().unwrap();
    assert_eq!(sent["model"], DEMO_MODEL);
    assert_eq!(sent["messages"][0]["role"], "system");
    assert_eq!(sent["messages"][0]["content"], "Отвечай кратко.");
    assert_eq!(sent["messages"][1]["content"], "Привет!");
    // The call went through the stack: it is in the client's statistics, its tokens too.
    let stats = client.inference().stats();
    assert_eq!(stats.total_requests, 1);
    let reported = emu.stats();
    assert!(reported.reported_output_tokens > 0);
    assert_eq!(
        (stats.input_tokens, stats.output_tokens),
        (
            reported.reported_input_tokens,
            reported.reported_output_tokens
        )
    );
}

#[tokio::test]
async fn a_streamed_prompt_yields_the_answer_in_pieces() {
    let emu = two_keys().await;
    let client = rig(&emu, builder(&emu));
    let agent = client.agent(DEMO_MODEL).build();
    let mut stream = agent.prompt("stream me please").stream();
    let (mut text, mut deltas, mut last) = (String::new(), 0, None);
    while let Some(item) = stream.next().await {
        match item.unwrap() {
            MultiTurnStreamItem::StreamAssistantItem(Item::Event(StreamEvent::Text {
                text: piece,
                ..
            })) => {
                text.push_str(&piece);
                deltas += 1;
            }
            MultiTurnStreamItem::FinalResponse(response) => last = Some(response.output()),
            _ => {}
        }
    }
    let expected = format!("[{KEY}] echo: stream me please");
    assert_eq!(text, expected);
    assert!(deltas > 1, "the answer came in {deltas} piece(s)");
    assert_eq!(last.as_deref(), Some(expected.as_str()));
    let reported = emu.stats();
    assert_eq!(reported.chat_streams, 1);
    // The stream's usage, as the server reported it.
    let stats = client.inference().stats();
    assert!(reported.reported_output_tokens > 0);
    assert_eq!(
        (stats.input_tokens, stats.output_tokens),
        (
            reported.reported_input_tokens,
            reported.reported_output_tokens
        )
    );
}

#[tokio::test]
async fn a_completion_model_serves_rig_requests_directly() {
    let emu = two_keys().await;
    let client = rig(&emu, builder(&emu));
    let response = client
        .completion_model(DEMO_MODEL)
        .call(CompletionRequest::new("direct"))
        .await
        .unwrap();
    assert_eq!(response.text(), format!("[{KEY}] echo: direct"));
}

#[tokio::test]
async fn a_cut_stream_ends_in_an_error_not_a_short_answer() {
    let emu = two_keys().await;
    let client = rig(&emu, builder(&emu));
    emu.push_fault(Route::Chat, Fault::cut_stream(2));
    let mut stream = client
        .agent(DEMO_MODEL)
        .build()
        .prompt("one two three four five six")
        .stream();
    let mut failed = false;
    while let Some(item) = stream.next().await {
        match item {
            Err(_) => failed = true,
            Ok(MultiTurnStreamItem::FinalResponse(response)) => {
                panic!("a cut stream finished as {:?}", response.output())
            }
            Ok(_) => {}
        }
    }
    assert!(failed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_prompts_make_one_iam_request() {
    let emu = two_keys().await;
    let client = rig(&emu, builder(&emu));
    let agent = client.agent(DEMO_MODEL).build();
    let answers = join_all((0..50).map(|i| {
        let agent = agent.clone();
        tokio::spawn(async move { agent.prompt(format!("q{i}")).await })
    }))
    .await;
    for (i, answer) in answers.into_iter().enumerate() {
        assert_eq!(
            answer.unwrap().unwrap().output(),
            format!("[{KEY}] echo: q{i}")
        );
    }
    let stats = emu.stats();
    assert_eq!(stats.iam_requests, 1);
    assert_eq!(stats.chat_requests, 50);
}

#[tokio::test]
async fn a_token_revoked_mid_run_is_invisible() {
    let emu = two_keys().await;
    let client = rig(&emu, builder(&emu));
    let agent = client.agent(DEMO_MODEL).build();
    agent.prompt("before").await.unwrap();
    let token = emu.issued_tokens().pop().unwrap();
    assert!(emu.revoke_token(&token));

    let answer = agent.prompt("after").await.unwrap();
    assert_eq!(answer.output(), format!("[{KEY}] echo: after"));
    let stats = emu.stats();
    assert_eq!(stats.iam_requests, 2, "one refresh for the revoked token");
    assert_eq!(
        stats.chat_status(401),
        1,
        "the rejected attempt was resent once"
    );
}

#[tokio::test(start_paused = true)]
async fn a_503_is_retried() {
    let emu = two_keys().await;
    let client = rig(&emu, builder(&emu));
    emu.push_fault(Route::Chat, Fault::status(503));
    let answer = client
        .agent(DEMO_MODEL)
        .build()
        .prompt("retried")
        .await
        .unwrap();
    assert_eq!(answer.output(), format!("[{KEY}] echo: retried"));
    let stats = emu.stats();
    assert_eq!(stats.chat_status(503), 1);
    assert_eq!(stats.chat_requests, 2);
    assert_eq!(client.inference().stats().retries, 1);
}

#[tokio::test(start_paused = true)]
async fn with_the_primary_key_disabled_the_backup_answers() {
    let emu = two_keys().await;
    emu.disable_key(KEY);
    let client = rig(
        &emu,
        builder(&emu).backup_credentials(BACKUP, BACKUP_SECRET),
    );
    let agent = client.agent(DEMO_MODEL).build();
    for i in 0..3 {
        let answer = agent.prompt(format!("q{i}")).await.unwrap();
        assert_eq!(answer.output(), format!("[{BACKUP}] echo: q{i}"));
    }
    assert!(!client.inference().using_primary());
    assert_eq!(client.inference().fallback().unwrap().switches(), 1);
}

#[tokio::test]
async fn an_api_error_reaches_rig_with_its_status() {
    let emu = two_keys().await;
    let client = rig(&emu, builder(&emu).no_retry());
    emu.push_fault(Route::Chat, Fault::status(400));
    let error = client
        .completion_model(DEMO_MODEL)
        .call(CompletionRequest::new("bad"))
        .await
        .unwrap_err();
    assert_eq!(
        error.provider_response().and_then(|r| r.status),
        Some(http::StatusCode::BAD_REQUEST),
        "{error}"
    );
}

#[tokio::test]
async fn the_token_never_leaves_the_base_url() {
    let emu = two_keys().await;
    let client = rig(&emu, builder(&emu));
    // A rig configuration of one's own, pointed elsewhere, on this transport.
    let elsewhere = OpenAIConfig::with_key(&DIALECT, "")
        .with_base_url("https://example.com/v1")
        .connect(client.http_client().clone())
        .chat(DEMO_MODEL);
    let error = elsewhere
        .call(CompletionRequest::new("leak?"))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("refusing"), "{error}");
    let stats = emu.stats();
    assert_eq!((stats.iam_requests, stats.chat_requests), (0, 0));
}
