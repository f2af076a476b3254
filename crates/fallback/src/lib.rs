//! Primary/backup key fallback for Evolution inference, as a tower middleware.
//!
//! [`Fallback`] holds two services, normally the same stack built twice with different keys
//! (each with its own `TokenManager` and `AuthLayer`, possibly different endpoints). Requests
//! go to the primary. When the primary's key is refused — a 401 answer after its own token
//! refresh-and-resend, a 403, or IAM refusing the key — `Fallback` switches to the backup and
//! resends the same request there at once: the caller sees the backup's answer.
//!
//! - Traffic stays on the backup (sticky, as in the reference SDK), then after a
//!   [`Failback`] interval ([`DEFAULT_FAILBACK_INTERVAL`], 5 minutes) one request probes the
//!   primary and traffic goes back if it answers. [`Failback::Never`] stays for good.
//! - Many requests failing at once switch once: the state is one atomic word, changed under
//!   a short lock by the first failure of each generation.
//! - When both keys are refused, the caller gets one [`BothKeysRejected`] naming both keys.
//! - What counts as a failure is a [`SwitchPolicy`]: [`AuthFailure`] by default,
//!   [`EndpointFailure`] to also switch on 5xx answers and failed requests.
//! - A [`FallbackHandle`] tells which side serves and how often it changed, and swaps the
//!   sides by hand ([`rotate`](FallbackHandle::rotate)); [`FallbackEvent`]s go to
//!   [`FallbackObserver`]s (metrics) and every change is logged with `tracing` (a warning for a
//!   switch to the backup).
//!
//! In the client's stack `Fallback` sits below the retry layer and above each side's `Auth`:
//! the retry layer sees one service whose key problems are already handled, and each side
//! refreshes its own tokens before `Fallback` judges it.
//!
//! # Example
//!
//! ```
//! use std::convert::Infallible;
//!
//! use evolution_fallback::FallbackLayer;
//! use http::{Request, Response, StatusCode};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), evolution_token::BoxError> {
//! // The primary's key was disabled: it answers 401.
//! let primary = service_fn(|_: Request<String>| async {
//!     let mut response = Response::new("primary".to_owned());
//!     *response.status_mut() = StatusCode::UNAUTHORIZED;
//!     Ok::<_, Infallible>(response)
//! });
//! let backup = service_fn(|_: Request<String>| async {
//!     Ok::<_, Infallible>(Response::new("backup".to_owned()))
//! });
//!
//! let layer = FallbackLayer::new(backup).key_ids("key-a", "key-b");
//! let handle = layer.handle();
//! let service = ServiceBuilder::new().layer(layer).service(primary);
//!
//! let response = service.clone().oneshot(Request::new(String::new())).await?;
//! assert_eq!(response.body(), "backup");
//! assert!(!handle.using_primary());
//! assert_eq!(handle.switches(), 1);
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub
)]

mod error;
mod event;
mod failback;
pub mod future;
mod handle;
mod layer;
mod policy;
mod service;
mod side;
mod state;

pub use self::error::{BothKeysRejected, KeyRejected, RejectionCause};
pub use self::event::{FallbackEvent, FallbackObserver};
pub use self::failback::{DEFAULT_FAILBACK_INTERVAL, Failback};
pub use self::handle::FallbackHandle;
pub use self::layer::FallbackLayer;
pub use self::policy::{
    AuthFailure, EndpointFailure, Outcome, SwitchPolicy, SwitchReason, auth_failure,
    endpoint_failure,
};
pub use self::service::Fallback;
pub use self::side::Side;
