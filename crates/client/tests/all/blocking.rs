use evolution_emulator::DEMO_MODEL;

use crate::{KEY, SECRET};

/// Eight plain threads × 50 blocking calls share one token.
#[test]
fn blocking_client_from_many_threads() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let emu = runtime.block_on(crate::emulator());
    let llm = evolution_client::blocking::EvolutionInference::from_builder(
        evolution_client::EvolutionInference::builder()
            .model(DEMO_MODEL)
            .key_id(KEY)
            .secret(SECRET)
            .base_url(emu.base_url())
            .auth_url(emu.auth_url()),
    )
    .unwrap();
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let llm = llm.clone();
            std::thread::spawn(move || {
                for i in 0..50 {
                    let answer = llm.invoke(format!("t{t} c{i}")).unwrap();
                    assert_eq!(answer, format!("[{KEY}] echo: t{t} c{i}"));
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    assert_eq!(emu.stats().iam_requests, 1);
    assert_eq!(emu.stats().chat_status(200), 400);
}
