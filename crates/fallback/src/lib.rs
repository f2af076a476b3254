//! evolution-fallback: see the workspace README. This crate is not built yet.
#![forbid(unsafe_code)]
