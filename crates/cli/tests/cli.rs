//! The `evolution` binary end to end: each subcommand against an emulator started in the
//! test (and with `--emulator`), its output shapes, exit codes and error lines, and that no
//! secret or token ever reaches its output.
//!
//! Every command runs with the inherited `EVOLUTION_*`, `RUST_LOG` and `RUST_BACKTRACE`
//! variables removed, in an empty temporary directory (so no `.env` is read), with a time
//! limit. The emulator serves from the test's multi-thread runtime while the command runs
//! on a blocking thread.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use assert_cmd::Command;
use evolution_emulator::{DEMO_KEY_ID, DEMO_SECRET, Emulator, Fault, Route};
use serde_json::{Map, Value};
use tokio::time::Instant;

const KEY: &str = "cli-key";
const SECRET: &str = "cli-secret-9f2c41d7-never-printed";
const BACKUP_KEY: &str = "cli-backup-key";
const BACKUP_SECRET: &str = "cli-backup-secret-5be07a13-never-printed";
/// A secret the emulator does not accept for [`KEY`].
const WRONG_SECRET: &str = "cli-wrong-secret-c81d22e0-never-printed";

/// Every variable the binary (or `.env`) configures itself from.
const ENV_VARS: [&str; 10] = [
    "EVOLUTION_KEY_ID",
    "EVOLUTION_SECRET",
    "EVOLUTION_API_KEY",
    "EVOLUTION_BASE_URL",
    "EVOLUTION_MODEL",
    "EVOLUTION_TOKEN_URL",
    "EVOLUTION_BACKUP_KEY_ID",
    "EVOLUTION_BACKUP_SECRET",
    "RUST_LOG",
    "RUST_BACKTRACE",
];

/// The longest any one command may take; the slowest (retries against a closed port) take
/// a few seconds.
const COMMAND_LIMIT: Duration = Duration::from_secs(60);

/// The keys `bench --json` prints, exactly.
const BENCH_KEYS: [&str; 10] = [
    "requests",
    "ok",
    "errors",
    "errors_by_kind",
    "rps",
    "p50_ms",
    "p99_ms",
    "token_refreshes",
    "retries",
    "fallback_switches",
];

// ---------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------

/// An empty directory under the system temp dir, removed on drop: the command's current
/// directory, so that no `.env` in the repository (or above) is read.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "evolution-cli-test-{}-{}",
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

/// `evolution ARGS` with a clean environment, in a scratch directory, with a time limit.
struct Cli {
    command: Command,
    _dir: Scratch,
}

impl Cli {
    fn new(args: &[&str]) -> Self {
        let dir = Scratch::new();
        let mut command = assert_cmd::cargo::cargo_bin_cmd!("evolution");
        for name in ENV_VARS {
            command.env_remove(name);
        }
        command
            .current_dir(&dir.0)
            .timeout(COMMAND_LIMIT)
            .args(args);
        Self { command, _dir: dir }
    }

    /// Points the command at `emu` with this key, through the `EVOLUTION_*` variables.
    fn against(mut self, emu: &Emulator, key_id: &str, secret: &str) -> Self {
        self.command
            .env("EVOLUTION_KEY_ID", key_id)
            .env("EVOLUTION_SECRET", secret)
            .env("EVOLUTION_BASE_URL", emu.base_url())
            .env("EVOLUTION_TOKEN_URL", emu.auth_url())
            .env("EVOLUTION_MODEL", "demo-model");
        self
    }

    fn env(mut self, name: &str, value: impl AsRef<std::ffi::OsStr>) -> Self {
        self.command.env(name, value);
        self
    }

    /// Runs the command to completion on a blocking thread, so that an emulator on this
    /// runtime keeps serving meanwhile.
    async fn run(self) -> Run {
        tokio::task::spawn_blocking(move || self.run_blocking())
            .await
            .expect("the command thread does not panic")
    }

    /// Runs the command on this thread (for tests without an in-process emulator).
    fn run_blocking(mut self) -> Run {
        let started = Instant::now();
        let output = self.command.output().expect("the evolution binary starts");
        Run::new(output, started.elapsed())
    }
}

/// What a command did.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn new(output: Output, elapsed: Duration) -> Self {
        let stdout = String::from_utf8(output.stdout).expect("stdout is UTF-8");
        let stderr = String::from_utf8(output.stderr).expect("stderr is UTF-8");
        let Some(code) = output.status.code() else {
            panic!(
                "killed after {elapsed:?} (limit {COMMAND_LIMIT:?}): {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
                output.status
            );
        };
        Self {
            code,
            stdout,
            stderr,
        }
    }

    /// Exit 0 and nothing on stderr.
    fn success(&self) -> &Self {
        assert_eq!(self.code, 0, "expected success: {self:#?}");
        assert_eq!(self.stderr, "", "expected a quiet stderr: {self:#?}");
        self
    }

    /// Exit `code`, nothing on stdout, and exactly one line on stderr: `error: ...`.
    /// Returns the message after `error: `.
    fn one_line_error(&self, code: i32) -> &str {
        assert_eq!(self.code, code, "expected exit {code}: {self:#?}");
        assert_eq!(self.stdout, "", "expected nothing on stdout: {self:#?}");
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(
            lines.len(),
            1,
            "expected exactly one line on stderr, got {}:\n{}",
            lines.len(),
            self.stderr
        );
        lines[0]
            .strip_prefix("error: ")
            .unwrap_or_else(|| panic!("expected `error: ...`, got {:?}", lines[0]))
    }

    /// The last line of stdout, as a JSON object.
    fn last_json_line(&self) -> Map<String, Value> {
        let line = self
            .stdout
            .lines()
            .rev()
            .find(|line| !line.trim().is_empty())
            .unwrap_or_else(|| panic!("no output: {self:#?}"));
        match serde_json::from_str(line) {
            Ok(Value::Object(object)) => object,
            other => panic!("the last line is not one JSON object ({other:?}): {line}"),
        }
    }

    /// stdout and stderr together.
    fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

async fn emulator() -> Emulator {
    Emulator::builder()
        .key(KEY, SECRET)
        .key(BACKUP_KEY, BACKUP_SECRET)
        .model("demo-model")
        .model("alt-model")
        .start()
        .await
        .expect("the emulator starts")
}

/// A loopback port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind a loopback port");
    listener.local_addr().expect("local address").port()
}

fn keys(object: &Map<String, Value>) -> BTreeSet<&str> {
    object.keys().map(String::as_str).collect()
}

fn u64_field(object: &Map<String, Value>, name: &str) -> u64 {
    object[name]
        .as_u64()
        .unwrap_or_else(|| panic!("`{name}` is not a whole number: {object:?}"))
}

fn f64_field(object: &Map<String, Value>, name: &str) -> f64 {
    object[name]
        .as_f64()
        .unwrap_or_else(|| panic!("`{name}` is not a number: {object:?}"))
}

/// Checks the shape of a `bench --json` report and that its numbers agree with each other.
fn bench_report(run: &Run) -> Map<String, Value> {
    let report = run.last_json_line();
    assert_eq!(keys(&report), BTreeSet::from(BENCH_KEYS), "{report:?}");
    let requests = u64_field(&report, "requests");
    let ok = u64_field(&report, "ok");
    let errors = u64_field(&report, "errors");
    assert_eq!(ok + errors, requests, "{report:?}");
    let by_kind = report["errors_by_kind"]
        .as_object()
        .expect("errors_by_kind is an object");
    let counted: u64 = by_kind
        .values()
        .map(|n| n.as_u64().expect("error counts are whole numbers"))
        .sum();
    assert_eq!(counted, errors, "errors_by_kind must add up to errors");
    assert!(
        by_kind.values().all(|n| n.as_u64() > Some(0)),
        "{by_kind:?}"
    );
    let (rps, p50, p99) = (
        f64_field(&report, "rps"),
        f64_field(&report, "p50_ms"),
        f64_field(&report, "p99_ms"),
    );
    assert!(rps.is_finite() && rps >= 0.0, "{report:?}");
    assert!(
        (0.0..=p99).contains(&p50),
        "p50 ({p50}) must not exceed p99 ({p99})"
    );
    if requests > 0 {
        assert!(rps > 0.0 && p99 > 0.0, "{report:?}");
    }
    for counter in ["token_refreshes", "retries", "fallback_switches"] {
        u64_field(&report, counter);
    }
    report
}

// ---------------------------------------------------------------------------------------
// chat
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_prints_the_answer() {
    let emu = emulator().await;
    let run = Cli::new(&["chat", "Привет,", "мир!"])
        .against(&emu, KEY, SECRET)
        .run()
        .await;
    run.success();
    assert_eq!(run.stdout, format!("[{KEY}] echo: Привет, мир!\n"));
    let stats = emu.stats();
    assert_eq!(stats.iam_requests, 1);
    assert_eq!(stats.chat_requests_for(KEY), 1);
    assert_eq!(stats.chat_streams, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_stream_prints_the_answer() {
    let emu = emulator().await;
    let run = Cli::new(&["chat", "--stream", "stream", "me"])
        .against(&emu, KEY, SECRET)
        .run()
        .await;
    run.success();
    assert_eq!(run.stdout, format!("[{KEY}] echo: stream me\n"));
    assert_eq!(emu.stats().chat_streams, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_sends_the_flags() {
    let emu = emulator().await;
    let run = Cli::new(&[
        "chat",
        "--model",
        "alt-model",
        "--system",
        "Be brief.",
        "--max-tokens",
        "7",
        "--temperature",
        "0.25",
        "question",
    ])
    .against(&emu, KEY, SECRET)
    .run()
    .await;
    run.success();
    assert_eq!(run.stdout, format!("[{KEY}] echo: question\n"));
    let body = emu.last_chat_request().expect("a chat request was made");
    assert_eq!(body["model"], "alt-model");
    assert_eq!(body["max_tokens"], 7);
    assert_eq!(body["temperature"], 0.25);
    assert_eq!(
        body["messages"],
        serde_json::json!([
            { "role": "system", "content": "Be brief." },
            { "role": "user", "content": "question" },
        ])
    );
}

#[test]
fn chat_on_the_embedded_emulator() {
    let run = Cli::new(&["chat", "--emulator", "hello", "world"]).run_blocking();
    run.success();
    assert_eq!(run.stdout, format!("[{DEMO_KEY_ID}] echo: hello world\n"));

    let run = Cli::new(&["chat", "--emulator", "--stream", "hello"]).run_blocking();
    run.success();
    assert_eq!(run.stdout, format!("[{DEMO_KEY_ID}] echo: hello\n"));
}

// ---------------------------------------------------------------------------------------
// token
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_prints_key_id_auth_url_and_expiry_but_not_the_token() {
    let emu = emulator().await;
    let run = Cli::new(&["token"]).against(&emu, KEY, SECRET).run().await;
    run.success();
    let report: Map<String, Value> = serde_json::from_str(&run.stdout).expect("JSON on stdout");
    assert_eq!(
        keys(&report),
        BTreeSet::from(["key_id", "auth_url", "expires_in_secs"])
    );
    assert_eq!(report["key_id"], KEY);
    assert_eq!(report["auth_url"], emu.auth_url());
    let ttl = emu.ttl().as_secs();
    let expires_in = u64_field(&report, "expires_in_secs");
    assert!(
        (ttl - 5..=ttl).contains(&expires_in),
        "{expires_in} s left of a {ttl} s token"
    );
    let issued = emu.issued_tokens();
    assert_eq!(issued.len(), 1);
    assert!(!run.all().contains(&issued[0]), "the token was printed");
}

/// A static API key the emulator accepts as a bearer token.
const API_KEY: &str = "cli-api-key-never-printed";

/// `cmd` pointed at `emu` with [`API_KEY`] in `EVOLUTION_API_KEY`, and no key id or secret.
fn with_api_key(args: &[&str], emu: &Emulator) -> Cli {
    Cli::new(args)
        .env("EVOLUTION_API_KEY", API_KEY)
        .env("EVOLUTION_BASE_URL", emu.base_url())
        .env("EVOLUTION_MODEL", "demo-model")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_with_an_api_key_prints_its_label_not_the_key() {
    let emu = emulator().await;
    emu.add_api_key(API_KEY);
    let run = with_api_key(&["token"], &emu).run().await;
    run.success();
    let report: Map<String, Value> = serde_json::from_str(&run.stdout).expect("JSON on stdout");
    assert_eq!(
        keys(&report),
        BTreeSet::from(["key_id", "api_key", "checked"])
    );
    // IAM does not know an API key: the API checks it.
    assert_eq!(
        report["checked"],
        format!("GET {}/models: 200 OK", emu.base_url())
    );
    assert_eq!(emu.stats().models_requests, 1);
    let label = report["key_id"].as_str().unwrap_or_default();
    assert!(
        label.starts_with("api-key-") && label.len() == 16,
        "{label}"
    );
    assert!(!run.all().contains(API_KEY), "the API key was printed");
    assert_eq!(emu.stats().iam_requests, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_with_evolution_api_key_asks_no_iam() {
    let emu = emulator().await;
    emu.add_api_key(API_KEY);
    let run = with_api_key(&["chat", "hi"], &emu).run().await;
    run.success();
    assert!(!run.stdout.trim().is_empty());
    assert!(!run.all().contains(API_KEY), "the API key was printed");
    let stats = emu.stats();
    assert_eq!(stats.iam_requests, 0);
    assert_eq!(stats.api_key_requests, 1);
}

#[test]
fn api_key_beside_a_key_id_is_a_configuration_error() {
    let run = Cli::new(&["chat", "hi"])
        .env("EVOLUTION_API_KEY", API_KEY)
        .env("EVOLUTION_KEY_ID", KEY)
        .env("EVOLUTION_BASE_URL", "https://example.invalid/v1")
        .env("EVOLUTION_MODEL", "demo-model")
        .run_blocking();
    let message = run.one_line_error(2);
    assert!(
        message.contains("EVOLUTION_API_KEY") && message.contains("EVOLUTION_KEY_ID"),
        "{message}"
    );
    assert!(!message.contains(API_KEY), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_show_token_prints_the_issued_token() {
    let emu = emulator().await;
    let run = Cli::new(&["token", "--show-token"])
        .against(&emu, KEY, SECRET)
        .run()
        .await;
    run.success();
    let report: Map<String, Value> = serde_json::from_str(&run.stdout).expect("JSON on stdout");
    assert_eq!(
        keys(&report),
        BTreeSet::from(["key_id", "auth_url", "expires_in_secs", "access_token"])
    );
    assert_eq!(
        report["access_token"].as_str(),
        emu.issued_tokens().last().map(String::as_str)
    );
}

#[test]
fn token_on_the_embedded_emulator() {
    let run = Cli::new(&["token", "--emulator"]).run_blocking();
    run.success();
    let report: Map<String, Value> = serde_json::from_str(&run.stdout).expect("JSON on stdout");
    assert_eq!(
        keys(&report),
        BTreeSet::from(["key_id", "auth_url", "expires_in_secs"])
    );
    assert_eq!(report["key_id"], DEMO_KEY_ID);
    let auth_url = report["auth_url"].as_str().expect("auth_url is a string");
    assert!(auth_url.starts_with("http://127.0.0.1:"), "{auth_url}");
    assert!(u64_field(&report, "expires_in_secs") > 0);

    let run = Cli::new(&["token", "--emulator", "--show-token"]).run_blocking();
    run.success();
    let report: Map<String, Value> = serde_json::from_str(&run.stdout).expect("JSON on stdout");
    let token = report["access_token"].as_str().unwrap_or_default();
    assert!(!token.is_empty(), "{report:?}");
}

// ---------------------------------------------------------------------------------------
// bench
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_json_reports_every_call() {
    let emu = emulator().await;
    let run = Cli::new(&["bench", "--requests", "40", "--concurrency", "4", "--json"])
        .against(&emu, KEY, SECRET)
        .run()
        .await;
    run.success();
    assert_eq!(run.stdout.lines().count(), 1, "{}", run.stdout);
    let report = bench_report(&run);
    assert_eq!(u64_field(&report, "requests"), 40);
    assert_eq!(u64_field(&report, "ok"), 40);
    assert_eq!(report["errors_by_kind"], serde_json::json!({}));
    assert_eq!(u64_field(&report, "token_refreshes"), 1);
    assert_eq!(u64_field(&report, "retries"), 0);
    assert_eq!(u64_field(&report, "fallback_switches"), 0);
    let stats = emu.stats();
    assert_eq!(stats.chat_requests, 40);
    assert_eq!(stats.iam_requests, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_counts_retries_and_errors_by_kind() {
    let emu = emulator().await;
    // One call at a time, so the faults meet known calls: the first call's first attempt
    // gets the 503 and is retried; the retry gets the 400, which is final.
    emu.push_fault(Route::Chat, Fault::status(503));
    emu.push_fault(Route::Chat, Fault::status(400));
    let run = Cli::new(&["bench", "--requests", "10", "--concurrency", "1", "--json"])
        .against(&emu, KEY, SECRET)
        .run()
        .await;
    run.success();
    let report = bench_report(&run);
    assert_eq!(u64_field(&report, "requests"), 10);
    assert_eq!(u64_field(&report, "ok"), 9);
    assert_eq!(u64_field(&report, "errors"), 1);
    assert_eq!(
        report["errors_by_kind"],
        serde_json::json!({ "api_400": 1 })
    );
    assert_eq!(u64_field(&report, "retries"), 1);
    assert_eq!(emu.stats().chat_requests, 11);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_counts_fallback_switches() {
    let emu = emulator().await;
    emu.disable_key(KEY);
    let run = Cli::new(&["bench", "--requests", "5", "--concurrency", "1", "--json"])
        .against(&emu, KEY, SECRET)
        .env("EVOLUTION_BACKUP_KEY_ID", BACKUP_KEY)
        .env("EVOLUTION_BACKUP_SECRET", BACKUP_SECRET)
        .run()
        .await;
    // The primary's refusal is logged as a warning; the run itself succeeds.
    assert_eq!(run.code, 0, "{run:#?}");
    let report = bench_report(&run);
    assert_eq!(u64_field(&report, "ok"), 5);
    assert_eq!(u64_field(&report, "fallback_switches"), 1);
    // Only the backup obtained a token.
    assert_eq!(u64_field(&report, "token_refreshes"), 1);
    assert_eq!(emu.stats().chat_requests_for(BACKUP_KEY), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_exits_zero_when_every_call_failed() {
    let emu = emulator().await;
    let run = Cli::new(&["bench", "--requests", "3", "--concurrency", "1", "--json"])
        .against(&emu, KEY, WRONG_SECRET)
        .run()
        .await;
    assert_eq!(run.code, 0, "{run:#?}");
    let report = bench_report(&run);
    assert_eq!(u64_field(&report, "ok"), 0);
    assert_eq!(u64_field(&report, "errors"), 3);
    assert_eq!(
        report["errors_by_kind"],
        serde_json::json!({ "auth_invalid_credentials": 3 })
    );
}

#[test]
fn bench_on_the_embedded_emulator() {
    let run = Cli::new(&[
        "bench",
        "--emulator",
        "--requests",
        "20",
        "--concurrency",
        "4",
        "--json",
    ])
    .run_blocking();
    run.success();
    let report = bench_report(&run);
    assert_eq!(u64_field(&report, "requests"), 20);
    assert_eq!(u64_field(&report, "ok"), 20);

    let run = Cli::new(&[
        "bench",
        "--emulator",
        "--duration",
        "0.3",
        "--concurrency",
        "2",
        "--json",
    ])
    .run_blocking();
    run.success();
    let report = bench_report(&run);
    assert!(u64_field(&report, "requests") > 0);
    assert_eq!(u64_field(&report, "errors"), 0);
}

#[test]
fn bench_prints_a_table_without_json() {
    let run = Cli::new(&["bench", "--emulator", "--requests", "5"]).run_blocking();
    run.success();
    for label in [
        "requests",
        "ok",
        "errors",
        "throughput",
        "latency p50",
        "latency p99",
    ] {
        assert!(
            run.stdout.lines().any(|line| line.starts_with(label)),
            "no `{label}` line:\n{}",
            run.stdout
        );
    }
}

// ---------------------------------------------------------------------------------------
// emulator
// ---------------------------------------------------------------------------------------

/// Kills the child if the test fails before it exits.
struct Reap(Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emulator_serves_until_sigterm() {
    let scratch = Scratch::new();
    let mut command = std::process::Command::new(assert_cmd::cargo::cargo_bin!("evolution"));
    for name in ENV_VARS {
        command.env_remove(name);
    }
    let child = command
        .args(["emulator", "--port", "0", "--ttl", "30", "--key"])
        .arg(format!("{KEY}:{SECRET}"))
        .current_dir(&scratch.0)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the evolution binary starts");
    let mut child = Reap(child);

    // It prints where it listens: a banner, then base_url=... and auth_url=...
    let stdout = child.0.stdout.take().expect("piped stdout");
    let lines = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout)
            .lines()
            .take(3)
            .collect::<std::io::Result<Vec<String>>>()
    })
    .await
    .expect("the reader thread does not panic")
    .expect("read the emulator's stdout");
    assert!(
        lines[0].starts_with("evolution-emulator listening on http://127.0.0.1:"),
        "{lines:?}"
    );
    let base_url = lines[1]
        .strip_prefix("base_url=")
        .expect("a base_url= line");
    let auth_url = lines[2]
        .strip_prefix("auth_url=")
        .expect("an auth_url= line");

    let run = Cli::new(&["chat", "ping"])
        .env("EVOLUTION_KEY_ID", KEY)
        .env("EVOLUTION_SECRET", SECRET)
        .env("EVOLUTION_BASE_URL", base_url)
        .env("EVOLUTION_TOKEN_URL", auth_url)
        .env("EVOLUTION_MODEL", "demo-model")
        .run()
        .await;
    run.success();
    assert_eq!(run.stdout, format!("[{KEY}] echo: ping\n"));

    let pid = child.0.id().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("run kill");
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.0.try_wait().expect("wait for the emulator") {
            break status;
        }
        assert!(Instant::now() < deadline, "the emulator ignored SIGTERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "exit after SIGTERM: {status}");
}

// ---------------------------------------------------------------------------------------
// Exit code 2: configuration
// ---------------------------------------------------------------------------------------

#[test]
fn no_credentials_names_the_variables_to_set() {
    for command in [
        &["chat", "hi"][..],
        &["token"],
        &["bench", "--requests", "1"],
    ] {
        let run = Cli::new(command).run_blocking();
        let message = run.one_line_error(2).to_owned();
        for name in [
            "EVOLUTION_KEY_ID",
            "EVOLUTION_SECRET",
            "EVOLUTION_BASE_URL",
            "EVOLUTION_MODEL",
        ] {
            assert!(message.contains(name), "{command:?}: {message}");
        }
        assert!(message.contains("--emulator"), "{command:?}: {message}");
    }

    // Only what is missing is named.
    let run = Cli::new(&["chat", "hi"])
        .env("EVOLUTION_KEY_ID", KEY)
        .env("EVOLUTION_SECRET", SECRET)
        .run_blocking();
    let message = run.one_line_error(2);
    assert!(message.contains("EVOLUTION_BASE_URL") && message.contains("EVOLUTION_MODEL"));
    assert!(!message.contains("EVOLUTION_KEY_ID") && !message.contains("EVOLUTION_SECRET"));
    assert!(!message.contains(SECRET), "{message}");
}

#[test]
fn bad_bench_flags_are_configuration_errors() {
    for (args, needle) in [
        (&["--concurrency", "0"][..], "--concurrency"),
        (&["--requests", "0"], "--requests"),
        (&["--duration=-1"], "--duration"),
        (&["--duration", "0"], "--duration"),
    ] {
        let run = Cli::new(&[&["bench", "--emulator"][..], args].concat()).run_blocking();
        let message = run.one_line_error(2);
        assert!(message.contains(needle), "{args:?}: {message}");
    }
}

#[test]
fn unparsable_flags_exit_2_naming_the_flag() {
    for (args, needle) in [
        (
            &["chat", "--emulator", "--temperature", "warm", "hi"][..],
            "--temperature",
        ),
        (&["chat", "--emulator", "--max-tokens", "-3", "hi"], "-3"),
        (&["bench", "--emulator", "--requests", "many"], "--requests"),
        (
            &["bench", "--emulator", "--requests", "5", "--duration", "1"],
            "--duration",
        ),
        (&["chat", "--emulator"], "PROMPT"),
        (&["chat", "--no-such-flag", "hi"], "--no-such-flag"),
    ] {
        let run = Cli::new(args).run_blocking();
        assert_eq!(run.code, 2, "{args:?}: {run:#?}");
        assert_eq!(run.stdout, "", "{args:?}");
        // clap's own errors: the message on the first line, then a usage hint.
        let first = run.stderr.lines().next().unwrap_or_default();
        assert!(first.starts_with("error: "), "{args:?}: {}", run.stderr);
        assert!(run.stderr.contains(needle), "{args:?}: {}", run.stderr);
    }
}

#[test]
fn out_of_range_generation_flags_are_configuration_errors() {
    for (args, needle) in [
        (&["--temperature", "5"][..], "temperature"),
        (&["--temperature=-0.5"], "temperature"),
        (&["--max-tokens", "0"], "max_tokens"),
    ] {
        let run = Cli::new(&[&["chat", "--emulator"][..], args, &["hi"]].concat()).run_blocking();
        let message = run.one_line_error(2);
        assert!(message.contains(needle), "{args:?}: {message}");
    }
}

#[test]
fn unusable_urls_are_configuration_errors() {
    for (base_url, needle) in [
        ("not a url", "base"),
        // Plain http to a non-loopback host would send the token in clear.
        ("http://example.com/v1", "http"),
    ] {
        let run = Cli::new(&["chat", "hi"])
            .env("EVOLUTION_KEY_ID", KEY)
            .env("EVOLUTION_SECRET", SECRET)
            .env("EVOLUTION_MODEL", "demo-model")
            .env("EVOLUTION_BASE_URL", base_url)
            .run_blocking();
        let message = run.one_line_error(2);
        assert!(message.contains(needle), "{base_url}: {message}");
        assert!(!message.contains(SECRET));
    }
}

// ---------------------------------------------------------------------------------------
// Exit code 3: authentication
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_secret_exits_3() {
    let emu = emulator().await;
    for command in [&["chat", "hi"][..], &["chat", "--stream", "hi"], &["token"]] {
        let run = Cli::new(command)
            .against(&emu, KEY, WRONG_SECRET)
            .run()
            .await;
        let message = run.one_line_error(3);
        assert!(message.contains(KEY), "{command:?}: {message}");
        assert!(message.contains("secret"), "says what to check: {message}");
        assert!(!run.all().contains(WRONG_SECRET));
    }
    assert_eq!(emu.stats().chat_requests, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_keys_rejected_exits_3() {
    let emu = emulator().await;
    let run = Cli::new(&["chat", "hi"])
        .against(&emu, KEY, WRONG_SECRET)
        .env("EVOLUTION_BACKUP_KEY_ID", BACKUP_KEY)
        .env("EVOLUTION_BACKUP_SECRET", WRONG_SECRET)
        .run()
        .await;
    let message = run.one_line_error(3);
    assert!(
        message.contains(KEY) && message.contains(BACKUP_KEY),
        "{message}"
    );
}

// ---------------------------------------------------------------------------------------
// Exit code 4: other API and network errors
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_base_url_exits_4() {
    let emu = emulator().await;
    let closed = format!("http://127.0.0.1:{}/v1", closed_port());
    let run = Cli::new(&["chat", "hi"])
        .against(&emu, KEY, SECRET)
        .env("EVOLUTION_BASE_URL", &closed)
        .run()
        .await;
    let message = run.one_line_error(4);
    assert!(
        message.contains("base URL"),
        "says what to check: {message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_auth_url_exits_4() {
    let emu = emulator().await;
    let closed = format!("http://127.0.0.1:{}/api/v1/auth/token", closed_port());
    let run = Cli::new(&["token"])
        .against(&emu, KEY, SECRET)
        .env("EVOLUTION_TOKEN_URL", &closed)
        .run()
        .await;
    let message = run.one_line_error(4);
    assert!(
        message.contains("auth URL"),
        "says what to check: {message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_error_exits_4() {
    let emu = emulator().await;
    emu.push_fault(
        Route::Chat,
        Fault::status(400).with_message("messages: too long"),
    );
    let run = Cli::new(&["chat", "hi"])
        .against(&emu, KEY, SECRET)
        .run()
        .await;
    let message = run.one_line_error(4);
    assert!(
        message.contains("400") && message.contains("messages: too long"),
        "{message}"
    );
}

/// A stream that fails after its 200 head (`data: {"error": ...}` then `[DONE]`) is not a
/// truncated success: the text so far ends its line, then one error line, exit 4.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_stream_error_midway_exits_4() {
    let emu = emulator().await;
    emu.push_fault(
        Route::Chat,
        Fault::stream_error_after(
            3,
            serde_json::json!({ "error": { "message": "generation failed", "code": 503 } }),
        ),
    );
    let run = Cli::new(&["chat", "--stream", "one", "two", "three"])
        .against(&emu, KEY, SECRET)
        .run()
        .await;
    assert_eq!(run.code, 4, "{run:#?}");
    assert_eq!(run.stdout, format!("[{KEY}] echo: \n"));
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{run:#?}");
    assert!(
        lines[0].starts_with("error: the Evolution API answered 503")
            && lines[0].contains("generation failed"),
        "{}",
        lines[0]
    );
    assert_eq!(emu.stats().chat_streams, 1);
}

/// `--model` with a slash reaches the request body as it is, streamed or not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_model_ids_with_a_slash() {
    let model = "openai/gpt-oss-120b";
    let emu = Emulator::builder()
        .key(KEY, SECRET)
        .reasoning_model(model)
        .start()
        .await
        .expect("the emulator starts");
    for stream in [false, true] {
        let mut args = vec!["chat", "--model", model];
        if stream {
            args.push("--stream");
        }
        args.push("hi");
        let run = Cli::new(&args).against(&emu, KEY, SECRET).run().await;
        run.success();
        assert_eq!(run.stdout, format!("[{KEY}] echo: hi\n"));
        let body = emu.last_chat_request().expect("a chat request was made");
        assert_eq!(body["model"], model);
    }
    // A model the server does not serve: a 404 that says to check the model name.
    let run = Cli::new(&["chat", "--model", "openai/gpt-5", "hi"])
        .against(&emu, KEY, SECRET)
        .run()
        .await;
    let message = run.one_line_error(4);
    assert!(
        message.contains("404")
            && message.contains("openai/gpt-5")
            && message.contains("model name"),
        "{message}"
    );
}

// ---------------------------------------------------------------------------------------
// Secrets
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_or_token_in_any_output_at_trace() {
    let emu = emulator().await;
    let mut runs = Vec::new();
    let trace = |command: &[&str]| Cli::new(command).env("RUST_LOG", "trace");

    runs.push(
        trace(&["chat", "hi"])
            .against(&emu, KEY, SECRET)
            .run()
            .await,
    );
    runs.push(
        trace(&["chat", "--stream", "hi"])
            .against(&emu, KEY, SECRET)
            .run()
            .await,
    );
    runs.push(trace(&["token"]).against(&emu, KEY, SECRET).run().await);
    runs.push(
        trace(&["bench", "--requests", "6", "--concurrency", "2", "--json"])
            .against(&emu, KEY, SECRET)
            .run()
            .await,
    );
    // A revoked token (401): invalidated, a new one fetched, the call resent.
    emu.push_fault(Route::Chat, Fault::status(401));
    runs.push(
        trace(&["chat", "again"])
            .against(&emu, KEY, SECRET)
            .run()
            .await,
    );
    // A retried 503.
    emu.push_fault(Route::Chat, Fault::status(503));
    runs.push(
        trace(&["chat", "retry"])
            .against(&emu, KEY, SECRET)
            .run()
            .await,
    );
    // The primary refused by IAM: fallback to the backup key.
    emu.disable_key(KEY);
    runs.push(
        trace(&["chat", "fallback"])
            .against(&emu, KEY, SECRET)
            .env("EVOLUTION_BACKUP_KEY_ID", BACKUP_KEY)
            .env("EVOLUTION_BACKUP_SECRET", BACKUP_SECRET)
            .run()
            .await,
    );
    emu.enable_key(KEY);
    // Failures: a wrong secret, and an unreachable API.
    runs.push(
        trace(&["chat", "hi"])
            .against(&emu, KEY, WRONG_SECRET)
            .run()
            .await,
    );
    runs.push(
        trace(&["chat", "hi"])
            .against(&emu, KEY, SECRET)
            .env(
                "EVOLUTION_BASE_URL",
                format!("http://127.0.0.1:{}/v1", closed_port()),
            )
            .run()
            .await,
    );

    let codes: Vec<i32> = runs.iter().map(|run| run.code).collect();
    assert_eq!(codes, [0, 0, 0, 0, 0, 0, 0, 3, 4], "{runs:#?}");
    assert!(
        runs[6]
            .stdout
            .contains(&format!("[{BACKUP_KEY}] echo: fallback"))
    );

    let tokens = emu.issued_tokens();
    assert!(tokens.len() >= 4, "tokens issued: {}", tokens.len());
    for run in &runs {
        let all = run.all();
        // TRACE really was on: the runs say a lot.
        assert!(all.contains("TRACE") || all.contains("DEBUG"), "{all}");
        for secret in [SECRET, BACKUP_SECRET, WRONG_SECRET] {
            assert!(!all.contains(secret), "a secret was printed:\n{all}");
        }
        for token in &tokens {
            assert!(!all.contains(token.as_str()), "a token was printed:\n{all}");
        }
    }
}

#[test]
fn no_demo_secret_in_embedded_runs_at_trace() {
    for command in [
        &["chat", "--emulator", "hi"][..],
        &["chat", "--emulator", "--stream", "hi"],
        &["token", "--emulator"],
        &["bench", "--emulator", "--requests", "3", "--json"],
    ] {
        let run = Cli::new(command).env("RUST_LOG", "trace").run_blocking();
        assert_eq!(run.code, 0, "{run:#?}");
        assert!(
            !run.all().contains(DEMO_SECRET),
            "{command:?}:\n{}",
            run.all()
        );
    }
}

#[test]
fn the_scratch_directory_has_no_env_file() {
    // The commands above rely on running where no `.env` can be found.
    let scratch = Scratch::new();
    let mut dir: Option<&Path> = Some(&scratch.0);
    while let Some(path) = dir {
        assert!(
            !path.join(".env").exists(),
            "{} would configure the commands",
            path.join(".env").display()
        );
        dir = path.parent();
    }
}
