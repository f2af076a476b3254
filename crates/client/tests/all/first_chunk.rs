//! Time to first chunk: a streamed call records, once, the time from its start to its first
//! chunk in `evolution_time_to_first_chunk_seconds`.

use std::time::Duration;

use evolution_client::ChatRequest;
use evolution_emulator::Route;
use futures_util::StreamExt;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};

#[tokio::test(start_paused = true)]
async fn a_stream_records_its_time_to_first_chunk_once() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);
    let emu = evolution_testkit::emulator_builder()
        .latency(Route::Chat, Duration::from_millis(250))
        .stream_interval(Duration::from_millis(40))
        .start()
        .await
        .unwrap();
    let llm = evolution_testkit::client(&emu);
    // The token first, so that the measured time is the chat's alone.
    llm.token_manager().get_token().await.unwrap();

    let mut stream = llm
        .stream(ChatRequest::new().user("three words here"))
        .await
        .unwrap();
    let mut chunks = 0;
    while let Some(chunk) = stream.next().await {
        chunk.unwrap();
        chunks += 1;
    }
    assert!(chunks > 1, "several chunks, one first");

    let recorded: Vec<f64> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter(|(key, ..)| key.key().name() == "evolution_time_to_first_chunk_seconds")
        .flat_map(|(.., value)| match value {
            DebugValue::Histogram(values) => values
                .into_iter()
                .map(|v| v.into_inner())
                .collect::<Vec<f64>>(),
            other => panic!("{other:?}"),
        })
        .collect();
    // The emulator's 250 ms before its head, then the first event at once or after one
    // interval: never the whole stream's time.
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    assert!(
        (0.25..=0.29).contains(&recorded[0]),
        "time to first chunk {} s",
        recorded[0]
    );
}
