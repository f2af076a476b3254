//! Token usage: what the API reported in `usage` is counted in `Stats` and in
//! `evolution_tokens_total{type}`, exactly.

use evolution_client::{ChatRequest, EmbeddingsRequest};
use evolution_emulator::{DEMO_MODEL, Emulator};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};

#[tokio::test(start_paused = true)]
async fn the_tokens_counted_are_the_tokens_the_answers_reported() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);
    let emu = Emulator::builder()
        .key(evolution_testkit::KEY, evolution_testkit::SECRET)
        .model(DEMO_MODEL)
        .embedding_model("embedder")
        .start()
        .await
        .unwrap();
    let llm = evolution_testkit::client(&emu);

    let (mut input, mut output) = (0, 0);
    for question in ["one", "two words", "and three words here"] {
        let answer = llm
            .chat(ChatRequest::new().system("Be brief.").user(question))
            .await
            .unwrap();
        let usage = answer.usage.expect("the emulator reports usage");
        input += usage.prompt_tokens;
        output += usage.completion_tokens;
    }
    let embedded = llm
        .embeddings(EmbeddingsRequest::many(["a b c", "d e"]).model("embedder"))
        .await
        .unwrap();
    input += embedded.usage.expect("usage").prompt_tokens;
    let stats = llm.stats();
    assert_eq!((stats.input_tokens, stats.output_tokens), (input, output));
    assert!(input > 0 && output > 0);

    // One snapshot: taking one resets the debugging recorder's counters.
    let snapshot = snapshotter.snapshot().into_vec();
    let counted = |kind: &str| {
        snapshot
            .iter()
            .find(|(key, ..)| {
                key.key().name() == "evolution_tokens_total"
                    && key
                        .key()
                        .labels()
                        .any(|l| l.key() == "type" && l.value() == kind)
            })
            .map(|(.., value)| match value {
                DebugValue::Counter(n) => *n,
                other => panic!("{other:?}"),
            })
    };
    assert_eq!(counted("input"), Some(input));
    assert_eq!(counted("output"), Some(output));

    // `invoke` gives its caller only the text, but counts the usage as `chat` does.
    let usage = llm
        .chat(ChatRequest::new().user("four"))
        .await
        .unwrap()
        .usage
        .unwrap();
    llm.invoke("four").await.unwrap();
    let stats = llm.stats();
    assert_eq!(
        (stats.input_tokens, stats.output_tokens),
        (
            input + 2 * usage.prompt_tokens,
            output + 2 * usage.completion_tokens
        )
    );
}
