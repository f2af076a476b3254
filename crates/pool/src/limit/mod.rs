//! Rate limits per deployment: requests and tokens per minute (GCRA).
//!
//! PLACEHOLDER — replaced by the rate-limit work of issue 19 before it lands; the API below
//! is the contract the pool is written against.

use std::num::NonZeroU32;
use std::time::Duration;

/// Which limit a call ran into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LimitKind {
    /// Requests per minute.
    Requests,
    /// Tokens per minute.
    Tokens,
}

impl LimitKind {
    /// `rpm` or `tpm`: the `kind` label of `evolution_rate_limited_total`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Requests => "rpm",
            Self::Tokens => "tpm",
        }
    }
}

/// A deployment at its limit, and when it has room again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    /// The limit reached.
    pub kind: LimitKind,
    /// When the call would fit.
    pub retry_in: Duration,
}

/// The RPM and TPM limits of one deployment.
#[derive(Debug, Clone)]
pub struct RateLimits {
    rpm: Option<NonZeroU32>,
    tpm: Option<NonZeroU32>,
}

impl RateLimits {
    /// Limits of `rpm` requests and `tpm` tokens per minute (either may be absent).
    pub fn new(rpm: Option<NonZeroU32>, tpm: Option<NonZeroU32>) -> Self {
        Self { rpm, tpm }
    }

    /// Whether a token limit is set (calls then estimate their tokens).
    pub fn counts_tokens(&self) -> bool {
        self.tpm.is_some()
    }

    /// Takes one request and `tokens` tokens, or says which limit is reached.
    pub async fn acquire(&self, tokens: u32) -> Result<(), Limited> {
        let _ = (tokens, self.rpm);
        Ok(())
    }

    /// Corrects the tokens taken for a call that estimated `estimated` and used `actual`.
    pub fn settle(&self, estimated: u32, actual: u32) {
        let _ = (estimated, actual);
    }
}

/// The tokens a request will use: its `max_tokens` plus its prompt's length in tokens
/// (about 4 bytes each).
pub fn estimate_tokens(body: &[u8]) -> u32 {
    u32::try_from(body.len() / 4).unwrap_or(u32::MAX)
}
