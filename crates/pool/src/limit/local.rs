//! In-process GCRA: `governor` on tokio's clock, one bucket for requests, one for tokens.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{NotUntil, Quota, RateLimiter};

use super::clock::{TokioClock, TokioInstant};
use super::{LimitKind, Limited};

type Gcra = RateLimiter<NotKeyed, InMemoryState, TokioClock, NoOpMiddleware<TokioInstant>>;

/// A refusal, and the tokens already taken by the time it came (to be given back).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Refused {
    pub(crate) limited: Limited,
    pub(crate) tokens_taken: u32,
}

/// Requests and tokens per minute, each with a burst of the whole minute: `rpm = 30` lets
/// 30 through at once, then one every 2 seconds.
pub(crate) struct LocalLimits {
    rpm: Option<Gcra>,
    tpm: Option<(Gcra, NonZeroU32)>,
}

fn per_minute(limit: NonZeroU32) -> Gcra {
    RateLimiter::direct_with_clock(Quota::per_minute(limit), TokioClock)
}

fn refused(kind: LimitKind, not_until: &NotUntil<TokioInstant>, tokens_taken: u32) -> Refused {
    Refused {
        limited: Limited {
            kind,
            retry_in: not_until.wait_time_from(TokioClock.now()),
        },
        tokens_taken,
    }
}

impl LocalLimits {
    pub(crate) fn new(rpm: Option<NonZeroU32>, tpm: Option<NonZeroU32>) -> Self {
        Self {
            rpm: rpm.map(per_minute),
            tpm: tpm.map(|tpm| (per_minute(tpm), tpm)),
        }
    }

    /// Takes one request and `tokens` tokens (at most the whole token burst), or says which
    /// limit refused.
    ///
    /// Tokens are checked first: a token refusal then costs nothing, while a request
    /// refusal after the tokens were taken reports them in [`Refused::tokens_taken`] for
    /// the caller to credit back (`governor` cannot return cells; the request cell, taken
    /// last, is never taken for a refused call).
    pub(crate) fn check(&self, tokens: u32) -> Result<(), Refused> {
        let mut taken = 0;
        if let (Some((tpm, burst)), Some(tokens)) = (&self.tpm, NonZeroU32::new(tokens)) {
            // More than the whole burst would never fit: such a call waits for a full
            // bucket and empties it.
            let tokens = tokens.min(*burst);
            match tpm.check_n(tokens) {
                Ok(Ok(())) => taken = tokens.get(),
                Ok(Err(not_until)) => return Err(refused(LimitKind::Tokens, &not_until, 0)),
                // Unreachable after the clamp; refuse for a minute rather than panic.
                Err(_insufficient) => {
                    return Err(Refused {
                        limited: Limited {
                            kind: LimitKind::Tokens,
                            retry_in: Duration::from_secs(60),
                        },
                        tokens_taken: 0,
                    });
                }
            }
        }
        if let Some(rpm) = &self.rpm {
            rpm.check()
                .map_err(|not_until| refused(LimitKind::Requests, &not_until, taken))?;
        }
        Ok(())
    }
}
