//! Shared set-up of the pool's command-line tests: a scratch directory, and the `evolution`
//! binary run against an emulator with a pool file.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

use evolution_emulator::{DEMO_MODEL, Emulator};
use serde_json::Value;

/// Every variable the binary (or `.env`) configures itself from.
const ENV_VARS: [&str; 12] = [
    "EVOLUTION_KEY_ID",
    "EVOLUTION_SECRET",
    "EVOLUTION_API_KEY",
    "EVOLUTION_BASE_URL",
    "EVOLUTION_MODEL",
    "EVOLUTION_TOKEN_URL",
    "EVOLUTION_BACKUP_KEY_ID",
    "EVOLUTION_BACKUP_SECRET",
    "EVOLUTION_REDIS_URL",
    "EVOLUTION_CONFIG",
    "RUST_LOG",
    "RUST_BACKTRACE",
];

/// An empty directory under the system temp dir, removed on drop.
pub(crate) struct Scratch(pub(crate) PathBuf);

impl Scratch {
    pub(crate) fn new() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "evolution-cli-pool-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).expect("create a scratch directory");
        Self(path)
    }

    /// Writes `text` to `name` in the directory.
    pub(crate) fn file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).expect("write a file");
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `evolution ARGS --config CONFIG` against `emu`, with `secrets` in the environment.
pub(crate) fn command(
    emu: &Emulator,
    config: &Path,
    secrets: &[(&str, &str)],
    args: &[&str],
) -> Command {
    let mut command = Command::new(assert_cmd::cargo::cargo_bin!("evolution"));
    for name in ENV_VARS {
        command.env_remove(name);
    }
    command
        .current_dir(config.parent().expect("the file is in a directory"))
        .args(args)
        .arg("--config")
        .arg(config)
        .env("EVOLUTION_BASE_URL", emu.base_url())
        .env("EVOLUTION_TOKEN_URL", emu.auth_url())
        .env("EVOLUTION_MODEL", DEMO_MODEL);
    for (name, value) in secrets {
        command.env(name, value);
    }
    command
}

/// Runs a command to its end, off the runtime's threads (the emulator serves on them).
pub(crate) async fn run(mut command: Command) -> Output {
    tokio::task::spawn_blocking(move || command.output().expect("the binary runs"))
        .await
        .expect("the runner does not panic")
}

/// `evolution ARGS --config CONFIG`'s output.
pub(crate) async fn evolution(
    emu: &Emulator,
    config: &Path,
    secrets: &[(&str, &str)],
    args: &[&str],
) -> Output {
    run(command(emu, config, secrets, args)).await
}

/// `evolution bench --json EXTRA --config CONFIG`'s report (it must succeed).
pub(crate) async fn bench(
    emu: &Emulator,
    config: &Path,
    secrets: &[(&str, &str)],
    extra: &[&str],
) -> Value {
    let mut args = vec!["bench", "--json"];
    args.extend_from_slice(extra);
    let output = evolution(emu, config, secrets, &args).await;
    report(&output)
}

/// The JSON report on the last line of a bench's stdout.
pub(crate) fn report(output: &Output) -> Value {
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let last = stdout.lines().last().expect("a report line");
    serde_json::from_str(last).expect("the report is JSON")
}
