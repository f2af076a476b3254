//! The gateway end to end, in process: a [`Gateway`](evolution_gateway::Gateway) served on
//! a free loopback port, the emulator (or an upstream of the tests' own) behind it, and
//! reqwest (or a raw TCP stream) in front. One module per behaviour.

#[path = "../support/mod.rs"]
mod support;

mod auth;
mod chat;
mod config;
mod errors;
mod pool;
mod request_id;
mod shed;
mod shutdown;
mod slowloris;
mod stream;
mod tls;
