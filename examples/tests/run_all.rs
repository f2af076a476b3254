//! Runs every example to completion on the embedded emulator, each within a time limit,
//! and checks that it printed what it is about.
//!
//! The example binaries are built once per test run with the cargo that runs the tests
//! (`cargo build --examples`, same profile and target directory; a no-op when `cargo test`
//! already built them), then run directly: a hung example is killed at the limit instead of
//! holding up CI. Each runs with the inherited `EVOLUTION_*` and `RUST_LOG` variables
//! removed (so the embedded emulator is used even on a machine configured for Cloud.ru) in
//! an empty temporary directory (so no `.env` is read).

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::time::Instant;

/// The longest one example may run. The slowest takes about 5 s (`prometheus`).
const LIMIT: Duration = Duration::from_secs(60);

/// The first line of every example on the embedded emulator.
const EMBEDDED: &str = "EVOLUTION_BASE_URL is not set: running on the embedded emulator";

/// Variables that would point an example at Cloud.ru or change its output.
const ENV_VARS: [&str; 8] = [
    "EVOLUTION_KEY_ID",
    "EVOLUTION_SECRET",
    "EVOLUTION_BASE_URL",
    "EVOLUTION_MODEL",
    "EVOLUTION_TOKEN_URL",
    "EVOLUTION_BACKUP_KEY_ID",
    "EVOLUTION_BACKUP_SECRET",
    "RUST_LOG",
];

/// One test per example, with lines its standard output must contain.
macro_rules! examples {
    ($($name:ident => [$($needle:expr),* $(,)?];)*) => {
        $(
            #[test]
            fn $name() {
                run_example(stringify!($name), &[$($needle),*]);
            }
        )*

        /// Every example this file runs.
        const EXAMPLES: &[&str] = &[$(stringify!($name)),*];
    };
}

examples! {
    quickstart => ["answer: [demo-key-id] echo: Привет!", "IAM requests made: 1"];
    custom_auth_url => ["answer: [demo-key-id] echo: Привет!"];
    env_config => ["answer: [demo-key-id] echo: Привет!"];
    logging => ["answer: [demo-key-id] echo: Ещё раз"];
    streaming => ["[demo-key-id] echo: Расскажи о Rust в двух словах"];
    key_rotation => ["after:  [rotated-key] echo: Привет!", "key in use: rotated-key"];
    retry => [
        "answer after 2 attempt(s)",
        "retrying: status 503 → attempt 2",
        "retrying: status 429 → attempt 2",
        "error after 1 attempt(s)",
        "retries: 2 ",
    ];
    fallback => [
        "[backup-key-id] echo: Ты здесь?",
        "[demo-key-id] echo: Снова основной ключ?",
        "switches: 2 · using the primary key: true",
    ];
    monitoring => ["llm.stats():", "total_requests        5", "as JSON: {"];
    custom_service => [
        "POST /ask → 200 OK [demo-key-id] echo: Что такое tower?",
        "the axum service has shut down.",
        "200 OK [demo-key-id] echo: Что такое reqwest-middleware?",
    ];
    prometheus => [
        "Prometheus metrics at http://127.0.0.1:",
        "# TYPE evolution_requests_total counter",
        "evolution_requests_total{client=\"prometheus-example\",outcome=\"ok\",status=\"200\"}",
        "evolution_token_refreshes_total{client=\"prometheus-example\",side=\"primary\",result=\"success\",trigger=\"ahead\"}",
        "evolution_retries_total{client=\"prometheus-example\",reason=\"503\"} 1",
        "# TYPE evolution_request_duration_seconds histogram",
        "evolution_fallback_active{client=\"prometheus-example\"} 0",
    ];
    otel => [
        "OTLP/HTTP receiver at http://127.0.0.1:",
        "span(s) of `otel-example`:",
        "    chat demo-model (client) gen_ai.operation.name=chat gen_ai.provider.name=cloud.ru gen_ai.request.model=demo-model server.address=127.0.0.1",
        "✓ two `chat demo-model` client spans, for the call and for the stream, in the trace of `ask`",
    ];
    async_openai => [
        "answer: [demo-key-id] echo: Привет!",
        "streamed: [demo-key-id] echo: Расскажи о Rust в двух словах",
        "2 requests, 100.0% ok, 1 token refresh(es)",
    ];
    full => [
        "Question 3: Что такое нейронные сети?",
        "[backup-key-id] echo: Что такое нейронные сети?",
        "✓ token refreshed during the run",
        "✓ transient 503 retried",
        "✓ primary key rejected, backup key used",
        "✓ every question answered",
        "successful_refreshes",
    ];
}

#[test]
fn every_example_is_run() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    let manifest = std::fs::read_to_string(&manifest).expect("read examples/Cargo.toml");
    let (mut plain, mut gated) = (BTreeSet::new(), BTreeSet::new());
    // The [[example]] tables: their name, and whether they need a cargo feature.
    for table in manifest.split("[[example]]").skip(1) {
        let table = table.split("\n[").next().unwrap_or_default();
        let value = |key: &str| {
            table.lines().find_map(|line| {
                let (k, v) = line.split_once('=')?;
                (k.trim() == key).then(|| v.trim().trim_matches('"').to_owned())
            })
        };
        let name = value("name").expect("every [[example]] has a name");
        match value("required-features") {
            Some(_) => gated.insert(name),
            None => plain.insert(name),
        };
    }
    let run: BTreeSet<String> = EXAMPLES.iter().map(|name| (*name).to_owned()).collect();
    assert_eq!(
        plain, run,
        "examples/Cargo.toml and this file must list the same examples"
    );
    // `cargo build --examples` skips them without their features; they are not run here.
    for name in gated {
        eprintln!("not run: `{name}` needs a cargo feature (required-features)");
    }
}

/// Runs one example and checks its output.
fn run_example(name: &str, needles: &[&str]) {
    let binary = examples_dir().join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    let scratch = Scratch::new(name);
    let mut command = Command::new(&binary);
    for var in ENV_VARS {
        command.env_remove(var);
    }
    command.current_dir(&scratch.0);
    let run = Run::with_limit(command, LIMIT);

    assert!(
        run.status.success(),
        "`{name}` failed ({}) after {:?}:\n{}",
        run.status,
        run.elapsed,
        run.transcript()
    );
    let first = run.stdout.lines().next().unwrap_or_default();
    assert!(
        first.starts_with(EMBEDDED),
        "`{name}` must say first that it runs on the embedded emulator:\n{}",
        run.transcript()
    );
    for needle in needles {
        assert!(
            run.stdout.contains(needle),
            "`{name}` did not print {needle:?}:\n{}",
            run.transcript()
        );
    }
    assert!(
        !run.stdout.contains('✗'),
        "`{name}` reports something that did not happen:\n{}",
        run.transcript()
    );
    eprintln!("{name}: {:.2} s", run.elapsed.as_secs_f64());
}

/// Where the example binaries are, after building them once for this test run.
fn examples_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        // This test runs as <target-dir>/<profile>/deps/run_all-<hash>.
        let exe = std::env::current_exe().expect("the test binary's path");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("the test binary is in <target>/<profile>/deps");
        let target_dir = profile_dir.parent().expect("a target directory");
        let profile = match profile_dir.file_name().and_then(|name| name.to_str()) {
            Some("debug") | None => "dev",
            Some(other) => other,
        };
        let started = Instant::now();
        let status = Command::new(env!("CARGO"))
            .args([
                "build",
                "--quiet",
                "--locked",
                "--examples",
                "--profile",
                profile,
            ])
            .arg("--manifest-path")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
            .arg("--target-dir")
            .arg(target_dir)
            .status()
            .expect("run cargo build --examples");
        assert!(status.success(), "cargo build --examples failed: {status}");
        eprintln!(
            "examples built (profile {profile}) in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        profile_dir.join("examples")
    })
}

/// An empty directory under the system temp dir, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "evolution-example-{name}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).expect("create a scratch directory");
        Self(path)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A finished (or killed) process and what it printed.
struct Run {
    status: ExitStatus,
    stdout: String,
    stderr: String,
    elapsed: Duration,
}

impl Run {
    /// Runs `command`, killing it if it is still running after `limit`.
    fn with_limit(mut command: Command, limit: Duration) -> Self {
        let started = Instant::now();
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {:?}: {error}", command.get_program()));
        // Read both pipes while waiting, so a chatty example cannot block on a full pipe.
        let stdout = drain(child.stdout.take());
        let stderr = drain(child.stderr.take());
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait for the example") {
                break status;
            }
            if started.elapsed() > limit {
                let _ = child.kill();
                let status = child.wait().expect("wait for the killed example");
                // A process it started may still hold the pipes: do not wait long for them.
                panic!(
                    "{:?} still running after {limit:?}, killed ({status}):\n--- stdout\n{}\n--- stderr\n{}",
                    command.get_program(),
                    join_within(stdout, Duration::from_secs(1)),
                    join_within(stderr, Duration::from_secs(1))
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        Self {
            status,
            stdout: join(stdout),
            stderr: join(stderr),
            elapsed: started.elapsed(),
        }
    }

    fn transcript(&self) -> String {
        format!("--- stdout\n{}\n--- stderr\n{}", self.stdout, self.stderr)
    }
}

fn drain(pipe: Option<impl Read + Send + 'static>) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut bytes);
        }
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

fn join(reader: JoinHandle<String>) -> String {
    reader.join().unwrap_or_default()
}

fn join_within(reader: JoinHandle<String>, limit: Duration) -> String {
    let started = Instant::now();
    while !reader.is_finished() {
        if started.elapsed() > limit {
            return "(still open)".to_owned();
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    join(reader)
}
