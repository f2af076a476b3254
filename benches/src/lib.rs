//! Shared set-up for the benchmarks: runtimes, the emulator (in-process or as the release
//! binary in its own process), the calls the loopback benches make, and reporting helpers.

// Benchmarks measure real elapsed time.
#![allow(clippy::disallowed_methods)]

pub mod calls;

use std::future::Future;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use evolution_emulator::Emulator;
use evolution_token::{AccessToken, Credentials, TokenManager};
use tokio::runtime::Runtime;

/// The backup key the benches register with the emulator, for stacks with fallback.
pub const BACKUP_KEY_ID: &str = "bench-backup-key";
/// Its secret.
pub const BACKUP_SECRET: &str = "bench-backup-secret";

/// A multi-threaded runtime with the emulator running on it.
#[derive(Debug)]
pub struct Bench {
    /// The runtime everything runs on.
    pub runtime: Arc<Runtime>,
    /// The emulator serving IAM and inference.
    pub emulator: Emulator,
}

impl Bench {
    /// Starts a runtime and an emulator with the demo key.
    pub fn start() -> Self {
        let runtime = Arc::new(runtime(2));
        let emulator = runtime
            .block_on(Emulator::builder().start())
            .expect("the emulator starts");
        Self { runtime, emulator }
    }

    /// A token manager for the demo key whose cache is already warm.
    pub fn warm_manager(&self) -> TokenManager {
        let tokens = demo_manager(&self.emulator.auth_url())
            .build()
            .expect("valid configuration");
        self.runtime
            .block_on(tokens.get_token())
            .expect("the emulator issues a token");
        tokens
    }

    /// A token, for baselines that cache it themselves.
    pub fn token(&self) -> AccessToken {
        self.runtime
            .block_on(self.warm_manager().get_token())
            .expect("a token")
    }
}

/// A multi-threaded runtime with `workers` worker threads and every driver enabled.
pub fn runtime(workers: usize) -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// A future as [`on_threads`] runs it.
pub type ThreadWork = Pin<Box<dyn Future<Output = ()>>>;

/// Runs `per_thread(iters)` on `threads` threads at once, each inside its own
/// current-thread runtime (time driver enabled) for the whole loop, and returns the wall
/// time of the slowest: with perfect scaling, the same as one thread alone.
pub fn on_threads<F>(threads: usize, iters: u64, per_thread: F) -> Duration
where
    F: Fn(u64) -> ThreadWork + Send + Sync + 'static,
{
    on_threads_at(threads, iters, None, per_thread)
}

/// [`on_threads`], on runtimes whose clock is paused and moved `at` ahead before the loop
/// when `at` is given, so that a token fetched before looks that old.
pub fn on_threads_at<F>(threads: usize, iters: u64, at: Option<Duration>, per_thread: F) -> Duration
where
    F: Fn(u64) -> ThreadWork + Send + Sync + 'static,
{
    let per_thread = Arc::new(per_thread);
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let per_thread = per_thread.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .start_paused(at.is_some())
                    .build()
                    .expect("a tokio runtime");
                if let Some(at) = at {
                    runtime.block_on(tokio::time::advance(at));
                }
                barrier.wait();
                let start = Instant::now();
                runtime.block_on(per_thread(iters));
                start.elapsed()
            })
        })
        .collect();
    handles
        .into_iter()
        .map(|h| h.join().expect("no bench thread panics"))
        .max()
        .expect("at least one thread")
}

/// A token manager builder for the demo key against `auth_url`.
pub fn demo_manager(auth_url: &str) -> evolution_token::TokenManagerBuilder {
    TokenManager::builder(Credentials::new(
        evolution_emulator::DEMO_KEY_ID,
        evolution_emulator::DEMO_SECRET,
    ))
    .auth_url(auth_url)
}

// ------------------------------------------------------------------ the server

/// Where the loopback emulator runs, so that client and server never share a runtime.
#[derive(Debug)]
pub enum Server {
    /// `target/release/evolution-emulator` in its own process.
    Process {
        /// The child process; killed on drop.
        child: Child,
        /// `http://127.0.0.1:PORT`.
        origin: String,
        /// The binary.
        binary: PathBuf,
    },
    /// A server started by hand, named by `EVOLUTION_EMULATOR_URL`.
    External {
        /// `http://127.0.0.1:PORT`.
        origin: String,
    },
    /// The emulator library on a runtime of its own (its own threads).
    InProcess {
        /// The runtime, kept alive while the emulator serves.
        runtime: Runtime,
        /// The emulator.
        emulator: Emulator,
    },
}

impl Server {
    /// Starts the release emulator binary with the demo key and [`BACKUP_KEY_ID`], or, if it
    /// is not built, the emulator library on a dedicated 2-thread runtime. Which one is
    /// printed. `EVOLUTION_EMULATOR_BIN` names another binary; `EVOLUTION_EMULATOR_URL`
    /// (`http://127.0.0.1:PORT`) a server already running, which must accept both keys.
    pub fn start() -> Self {
        if let Ok(origin) = std::env::var("EVOLUTION_EMULATOR_URL") {
            return Self::External {
                origin: origin.trim_end_matches('/').to_owned(),
            };
        }
        match emulator_binary() {
            Some(binary) => Self::spawn(&binary),
            None => {
                eprintln!(
                    "note: no release emulator binary (cargo build --release -p evolution-emulator); \
                     running the emulator in-process on its own runtime"
                );
                let runtime = runtime(2);
                let emulator = runtime
                    .block_on(
                        Emulator::builder()
                            .key(
                                evolution_emulator::DEMO_KEY_ID,
                                evolution_emulator::DEMO_SECRET,
                            )
                            .key(BACKUP_KEY_ID, BACKUP_SECRET)
                            .start(),
                    )
                    .expect("the emulator starts");
                Self::InProcess { runtime, emulator }
            }
        }
    }

    fn spawn(binary: &Path) -> Self {
        let mut child = Command::new(binary)
            .args(["--port", "0", "--key"])
            .arg(format!(
                "{}:{}",
                evolution_emulator::DEMO_KEY_ID,
                evolution_emulator::DEMO_SECRET
            ))
            .arg("--key")
            .arg(format!("{BACKUP_KEY_ID}:{BACKUP_SECRET}"))
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {}: {error}", binary.display()));
        let stdout = child.stdout.take().expect("piped stdout");
        let mut first = String::new();
        BufReader::new(stdout)
            .read_line(&mut first)
            .expect("the emulator prints where it listens");
        let origin = first
            .trim()
            .strip_prefix("evolution-emulator listening on ")
            .unwrap_or_else(|| panic!("unexpected first line from the emulator: {first:?}"))
            .to_owned();
        Self::Process {
            child,
            origin,
            binary: binary.to_owned(),
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn origin(&self) -> String {
        match self {
            Self::Process { origin, .. } | Self::External { origin } => origin.clone(),
            Self::InProcess { emulator, .. } => emulator.origin(),
        }
    }

    /// The API base URL (`…/v1`).
    pub fn base_url(&self) -> String {
        format!("{}/v1", self.origin())
    }

    /// The IAM URL.
    pub fn auth_url(&self) -> String {
        format!("{}/api/v1/auth/token", self.origin())
    }

    /// One line saying where the server runs.
    pub fn describe(&self) -> String {
        match self {
            Self::Process {
                binary,
                origin,
                child,
            } => format!(
                "emulator: {} (pid {}) at {origin}, its own process",
                binary.display(),
                child.id()
            ),
            Self::External { origin } => format!("emulator: EVOLUTION_EMULATOR_URL={origin}"),
            Self::InProcess { emulator, .. } => format!(
                "emulator: in-process on its own 2-thread runtime at {}",
                emulator.origin()
            ),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Self::Process { child, .. } = self {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `EVOLUTION_EMULATOR_BIN`, or `evolution-emulator` next to the running bench's
/// profile directory (`target/release/`), if it exists.
fn emulator_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("EVOLUTION_EMULATOR_BIN") {
        return Some(PathBuf::from(path));
    }
    // A bench runs as target/release/deps/NAME-HASH.
    let exe = std::env::current_exe().ok()?;
    let binary = exe.parent()?.parent()?.join("evolution-emulator");
    binary.is_file().then_some(binary)
}

// ------------------------------------------------------------------ reporting

/// Cores, memory and load average of this machine, for the record.
pub fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let memory_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|info| {
            let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
            let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kib / 1024.0 / 1024.0)
        })
        .unwrap_or(0.0);
    format!(
        "machine: {cores} cores, {memory_gib:.1} GiB; load average {}",
        load_average()
    )
}

/// The 1, 5 and 15 minute load averages from `/proc/loadavg`.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "unknown".into())
}

/// Criterion's estimate (nanoseconds per iteration: the slope when sampling is linear,
/// else the mean) for `group/function` of the run that just finished, read from its
/// `new/estimates.json`. `None` unless this process wrote that file: the benchmark was
/// filtered out, or this is `cargo test --benches` (each routine runs once, nothing is
/// estimated), and the file is an older run's.
pub fn criterion_estimate_ns(group: &str, function: &str) -> Option<f64> {
    if !bench_mode() {
        return None;
    }
    // Criterion's directory names: these characters become `_` (names here are short ASCII).
    let safe = |name: &str| name.replace(['?', '"', '/', '\\', '*', '<', '>', ':', '|', '^'], "_");
    let path = criterion_home()
        .join(safe(group))
        .join(safe(function))
        .join("new/estimates.json");
    let written = std::fs::metadata(&path).ok()?.modified().ok()?;
    if written < process_started()? {
        return None;
    }
    let estimates: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
    ["slope", "mean"]
        .iter()
        .find_map(|kind| estimates.get(kind)?.get("point_estimate")?.as_f64())
}

/// When this process started: boot time (`btime` in `/proc/stat`) plus the start time in
/// `/proc/self/stat` (field 22, clock ticks since boot), to the second.
fn process_started() -> Option<std::time::SystemTime> {
    let boot: u64 = std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|line| line.strip_prefix("btime ")?.trim().parse().ok())?;
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Field 22 of the line, 20 after the command name (which may contain spaces).
    let ticks: u64 = stat[stat.rfind(')')? + 2..]
        .split_whitespace()
        .nth(19)?
        .parse()
        .ok()?;
    // USER_HZ is 100; round down to the second, as btime is.
    Some(std::time::UNIX_EPOCH + Duration::from_secs(boot + ticks / 100))
}

/// The directory criterion writes to (the same resolution as criterion's own).
pub fn criterion_home() -> PathBuf {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return PathBuf::from(home);
    }
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(target).join("criterion");
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.parent()?.join("criterion")))
        .unwrap_or_else(|| PathBuf::from("target/criterion"))
}

/// CPU time (user + system) this process has used so far, from `/proc/self/stat`
/// (clock-tick resolution: sum it over seconds of work). Zero where unavailable.
pub fn process_cpu_time() -> Duration {
    let ticks = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|stat| {
            // Fields after the command name, which is in parentheses and may contain spaces.
            let rest = &stat[stat.rfind(')')? + 2..];
            let fields: Vec<&str> = rest.split_whitespace().collect();
            // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
            let utime: u64 = fields.get(11)?.parse().ok()?;
            let stime: u64 = fields.get(12)?.parse().ok()?;
            Some(utime + stime)
        });
    // USER_HZ is 100 on every Linux configuration that matters here.
    Duration::from_millis(ticks.unwrap_or(0) * 10)
}

/// Whether this bench binary runs as a benchmark (`cargo bench` passes `--bench`), rather
/// than as a smoke test (`cargo test --benches`).
pub fn bench_mode() -> bool {
    std::env::args().any(|arg| arg == "--bench")
}
