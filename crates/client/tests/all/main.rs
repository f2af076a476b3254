//! `EvolutionInference` against the in-process emulator.

mod api;
mod api_key;
mod blocking;
mod body;
mod config;
// Permission bits are Unix's.
#[cfg(unix)]
mod config_file;
mod errors;
mod fallback;
mod first_chunk;
mod metrics;
mod pool;
mod retry;
mod send;
mod stream_deadlines;
mod stream_usage;
mod tokens;
mod transport;
mod usage;

// The emulator, its key and a client for it: the set-up shared with the other test binaries.
pub(crate) use evolution_testkit::{KEY, SECRET, builder, client, emulator};
