use std::sync::Arc;

use crate::{emulator, manager};

/// Eight plain threads share one cache through a runtime handle.
#[test]
fn std_threads_share_one_cache() {
    let runtime = Arc::new(tokio::runtime::Runtime::new().unwrap());
    let emu = runtime.block_on(emulator());
    let tokens = manager(&emu);
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let tokens = tokens.clone();
            let handle = runtime.handle().clone();
            std::thread::spawn(move || {
                (0..50)
                    .map(|_| handle.block_on(tokens.get_token()).unwrap())
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let all: Vec<_> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    assert!(all.iter().all(|t| t.same_as(&all[0])));
    assert_eq!(emu.stats().iam_requests, 1);
}
