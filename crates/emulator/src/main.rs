//! `evolution-emulator`: a local Cloud.ru Evolution server with fault injection.
//!
//! Logs go to stderr, filtered by `RUST_LOG` (`RUST_LOG=debug` logs every request).

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use evolution_emulator::cli::{Args, run};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("evolution-emulator: {error}");
            ExitCode::FAILURE
        }
    }
}
