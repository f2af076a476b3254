//! End-to-end behaviour of the emulator, driven over HTTP with reqwest.

mod chat;
mod control;
mod embeddings;
mod faults;
mod fidelity;
mod http2;
mod iam;
mod key_faults;
mod key_latency;
mod lifecycle;
mod reported_usage;
mod routing;
mod slow_streams;
mod stalls;
mod stats;
mod stream_options;
mod support;
mod tokens;
