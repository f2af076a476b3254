//! What a deployment's answer says about it, and whether the call moves on.

use std::error::Error;
use std::io;

use evolution_fallback::{Outcome, auth_failure};
use evolution_retry::{Clock, SystemClock};
use evolution_token::{BoxError, TokenError};
use http::{Response, StatusCode};

use crate::health::Verdict;

/// The verdict for health, and whether the same request goes to the next deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Judgement {
    pub(crate) verdict: Verdict,
    pub(crate) failover: bool,
}

/// Judges one deployment's result.
///
/// - A rejected key (what [`auth_failure`] calls one: 401 after the key's own token refresh,
///   403, IAM refusing the key) and a 429 cool the deployment down, and the call fails over.
/// - A 5xx counts towards the circuit breaker, and the call fails over.
/// - A connection refused (any reqwest connect error: DNS, TCP, TLS) counts too, and
///   fails over: nothing was sent.
/// - Any other failure without an answer (a reset, a broken body) counts towards the
///   breaker but is handed back: the request may have been processed, so whether to send it
///   again is the retry layer's decision (`retry_ambiguous`).
/// - IAM failing other than by refusing the key (down, slow) says nothing about the
///   deployment and is handed back.
pub(crate) fn judge<B>(result: &Result<Response<B>, BoxError>) -> Judgement {
    match result {
        Ok(response) => {
            let status = response.status();
            let outcome = Outcome::Response {
                status,
                headers: response.headers(),
            };
            if auth_failure(outcome).is_some() {
                return failover(Verdict::KeyRejected);
            }
            if status == StatusCode::TOO_MANY_REQUESTS {
                let retry_after =
                    evolution_retry::retry_after(response.headers(), SystemClock.now());
                return failover(Verdict::RateLimited(retry_after));
            }
            if status.is_server_error() {
                return failover(Verdict::Failed);
            }
            Judgement {
                verdict: Verdict::Served,
                failover: false,
            }
        }
        Err(error) => {
            let error: &(dyn Error + Send + Sync + 'static) = error.as_ref();
            if auth_failure(Outcome::Error(error)).is_some() {
                return failover(Verdict::KeyRejected);
            }
            if find::<TokenError>(error).is_some() {
                return Judgement {
                    verdict: Verdict::Neutral,
                    failover: false,
                };
            }
            // Nothing was sent: a refused connection, a failed DNS lookup or TLS handshake
            // (reqwest calls all of these connect errors).
            let refused = find::<io::Error>(error)
                .is_some_and(|io| io.kind() == io::ErrorKind::ConnectionRefused)
                || find::<reqwest::Error>(error).is_some_and(reqwest::Error::is_connect);
            Judgement {
                verdict: Verdict::Failed,
                failover: refused,
            }
        }
    }
}

fn failover(verdict: Verdict) -> Judgement {
    Judgement {
        verdict,
        failover: true,
    }
}

/// The first `E` in `error`'s `source()` chain, itself included.
fn find<'a, E: Error + 'static>(error: &'a (dyn Error + Send + Sync + 'static)) -> Option<&'a E> {
    let mut next: Option<&'a (dyn Error + 'static)> = Some(error);
    while let Some(error) = next {
        if let Some(found) = error.downcast_ref::<E>() {
            return Some(found);
        }
        next = error.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn answer(status: u16, retry_after: Option<&str>) -> Result<Response<()>, BoxError> {
        let mut response = Response::builder().status(status);
        if let Some(value) = retry_after {
            response = response.header("retry-after", value);
        }
        Ok(response.body(()).unwrap())
    }

    #[test]
    fn answers_are_judged() {
        assert_eq!(
            judge(&answer(200, None)),
            Judgement {
                verdict: Verdict::Served,
                failover: false
            }
        );
        assert_eq!(judge(&answer(400, None)).verdict, Verdict::Served);
        assert_eq!(judge(&answer(401, None)), failover(Verdict::KeyRejected));
        assert_eq!(judge(&answer(403, None)), failover(Verdict::KeyRejected));
        assert_eq!(
            judge(&answer(429, Some("30"))),
            failover(Verdict::RateLimited(Some(Duration::from_secs(30))))
        );
        assert_eq!(
            judge(&answer(429, None)),
            failover(Verdict::RateLimited(None))
        );
        assert_eq!(judge(&answer(503, None)), failover(Verdict::Failed));
    }

    #[test]
    fn errors_are_judged() {
        let refused: BoxError = Box::new(io::Error::from(io::ErrorKind::ConnectionRefused));
        assert_eq!(judge::<()>(&Err(refused)), failover(Verdict::Failed));
        let reset: BoxError = Box::new(io::Error::from(io::ErrorKind::ConnectionReset));
        assert_eq!(
            judge::<()>(&Err(reset)),
            Judgement {
                verdict: Verdict::Failed,
                failover: false
            }
        );
    }
}
