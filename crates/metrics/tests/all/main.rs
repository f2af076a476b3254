//! Behaviour tests of evolution-metrics, recorded with `metrics-util`'s debugging recorder
//! installed thread-locally (current-thread runtimes with paused time).

mod layer;
mod operation;
mod prometheus;
mod scenario;
mod support;
mod token;
