use evolution_client::Error;
use evolution_client::blocking::EvolutionInference;
use evolution_emulator::{DEMO_MODEL, Emulator};

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

/// An emulator served by a runtime on a thread of its own: a test whose own thread blocks in
/// a call still gets its answers. The thread stops when this is dropped.
struct RemoteEmulator {
    emu: Emulator,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl RemoteEmulator {
    fn start() -> Self {
        let (started, emulator) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                started.send(crate::emulator().await).unwrap();
                let _ = stopped.await;
            });
        });
        Self {
            emu: emulator.recv().unwrap(),
            stop: Some(stop),
        }
    }
}

impl Drop for RemoteEmulator {
    fn drop(&mut self) {
        let _ = self.stop.take().map(|stop| stop.send(()));
    }
}

fn blocking_client(emu: &Emulator) -> Result<EvolutionInference, Error> {
    EvolutionInference::from_builder(crate::builder(emu))
}

/// Built inside async code (`#[tokio::test]`: one thread, which also polls this test): no
/// panic, and a configuration error is the typed `Error::Config` naming the setting, as
/// outside a runtime.
#[tokio::test]
async fn blocking_client_built_inside_a_runtime() {
    let remote = RemoteEmulator::start();
    let llm = blocking_client(&remote.emu).unwrap();
    // Dropped on a plain thread: this test is about building.
    std::thread::spawn(move || drop(llm)).join().unwrap();

    let error =
        EvolutionInference::from_builder(crate::builder(&remote.emu).model("")).unwrap_err();
    assert!(
        matches!(&error, Error::Config { field: "model", .. }),
        "{error:?}"
    );
    assert_eq!(remote.emu.stats().iam_requests, 0);
}

/// Called inside async code: the call runs on the client's own runtime and blocks only this
/// thread until the answer; no panic.
#[tokio::test]
async fn blocking_client_called_inside_a_runtime() {
    let remote = RemoteEmulator::start();
    let llm = std::thread::spawn({
        let emu = remote.emu.clone();
        move || blocking_client(&emu).unwrap()
    })
    .join()
    .unwrap();

    assert_eq!(
        llm.invoke("inside").unwrap(),
        format!("[{KEY}] echo: inside")
    );
    assert_eq!(llm.models().unwrap().len(), 1);
    let stats = remote.emu.stats();
    assert_eq!((stats.iam_requests, stats.chat_requests), (1, 1));
    std::thread::spawn(move || drop(llm)).join().unwrap();
}

/// Dropped inside async code, the last clone shuts its runtime down without waiting on it;
/// no panic.
#[tokio::test]
async fn blocking_client_dropped_inside_a_runtime() {
    let remote = RemoteEmulator::start();
    let llm = std::thread::spawn({
        let emu = remote.emu.clone();
        move || {
            let llm = blocking_client(&emu).unwrap();
            llm.invoke("outside").unwrap();
            llm
        }
    })
    .join()
    .unwrap();
    let clone = llm.clone();
    drop(llm);
    drop(clone);
    assert_eq!(remote.emu.stats().chat_requests, 1);
}

/// The whole life inside async code on a multi-threaded runtime, from a worker thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_client_lives_on_a_worker_thread() {
    let remote = RemoteEmulator::start();
    let llm = blocking_client(&remote.emu).unwrap();
    let answer = tokio::spawn(async move { llm.invoke("worker") })
        .await
        .unwrap();
    assert_eq!(answer.unwrap(), format!("[{KEY}] echo: worker"));
}
