//! `evolution`: chat with Cloud.ru Evolution, check credentials, load-test the
//! client stack, or run the emulator. Configuration comes from the `EVOLUTION_*`
//! variables and `.env`; flags override; `--emulator` needs no account at all.
//!
//! Exit codes: 0 success, 2 configuration error, 3 authentication error, 4 other
//! API or network error.

mod args;
mod bench;
mod chat;
mod failure;
mod gateway;
mod target;
mod token;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use crate::args::{Cli, Command};
use crate::failure::Failure;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Silent unless asked: errors reach the user as one `error:` line; RUST_LOG=debug shows
    // token acquisition and refresh. A server says what it does: the gateway logs at info.
    let default_filter = match cli.command {
        Command::Gateway(_) => "info",
        _ => "off",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter)),
        )
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            return Failure::Other(format!("cannot start the async runtime: {error}")).exit();
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Chat(args) => chat::run(args).await,
            Command::Token(args) => token::run(args).await,
            Command::Bench(args) => bench::run(args).await,
            Command::Gateway(args) => gateway::run(args).await,
            Command::Emulator(args) => evolution_emulator::cli::run(args)
                .await
                .map_err(|error| Failure::Other(format!("the emulator failed: {error}"))),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => failure.exit(),
    }
}
