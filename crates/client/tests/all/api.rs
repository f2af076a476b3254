use evolution_client::{ChatRequest, Role};
use evolution_emulator::DEMO_MODEL;
use futures_util::StreamExt;

use crate::{KEY, client, emulator};

#[tokio::test]
async fn invoke_returns_the_answer() {
    let emu = emulator().await;
    let answer = client(&emu).invoke("Привет!").await.unwrap();
    assert_eq!(answer, format!("[{KEY}] echo: Привет!"));
}

#[tokio::test]
async fn generate_keeps_prompt_order() {
    let emu = emulator().await;
    let prompts: Vec<String> = (0..20).map(|i| format!("question {i}")).collect();
    let answers = client(&emu).generate(prompts.clone()).await.unwrap();
    for (prompt, answer) in prompts.iter().zip(&answers) {
        assert_eq!(answer, &format!("[{KEY}] echo: {prompt}"));
    }
    assert_eq!(emu.stats().iam_requests, 1);
}

#[tokio::test]
async fn chat_with_a_system_message() {
    let emu = emulator().await;
    let response = client(&emu)
        .chat(
            ChatRequest::new()
                .system("Be brief.")
                .user("What is Rust?")
                .temperature(0.1),
        )
        .await
        .unwrap();
    assert_eq!(response.choices.len(), 1);
    assert_eq!(response.choices[0].message.role, Role::Assistant);
    assert_eq!(
        response.text(),
        Some(&*format!("[{KEY}] echo: What is Rust?"))
    );
    assert_eq!(response.model, DEMO_MODEL);
    assert!(response.usage.unwrap().total_tokens > 0);
}

#[tokio::test]
async fn n_choices() {
    let emu = emulator().await;
    let response = client(&emu)
        .chat(ChatRequest::from_prompt("hi").n(3))
        .await
        .unwrap();
    assert_eq!(response.choices.len(), 3);
}

#[tokio::test]
async fn stream_concatenates_to_the_non_streamed_answer() {
    let emu = emulator().await;
    let llm = client(&emu);
    let prompt = "Tell me about streaming in several words please";
    let whole = llm.invoke(prompt).await.unwrap();
    let mut stream = llm.stream(ChatRequest::from_prompt(prompt)).await.unwrap();
    let mut text = String::new();
    let mut chunks = 0;
    while let Some(chunk) = stream.next().await {
        text.push_str(chunk.unwrap().text());
        chunks += 1;
    }
    assert!(chunks > 2, "the answer came in several chunks");
    assert_eq!(text, whole);

    let collected = llm
        .stream(ChatRequest::from_prompt(prompt))
        .await
        .unwrap()
        .collect_text()
        .await
        .unwrap();
    assert_eq!(collected, whole);
}

#[tokio::test]
async fn models_lists_the_served_models() {
    let emu = emulator().await;
    let models = client(&emu).models().await.unwrap();
    assert!(models.iter().any(|m| m.id == DEMO_MODEL));
}
