//! The error a caller gets when both keys are refused.

use std::error::Error;
use std::fmt;
use std::sync::Arc;

use evolution_token::{BoxError, TokenError};
use http::StatusCode;

use crate::policy::{SwitchReason, find_token_error};
use crate::side::Side;

/// What one side failed with.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum RejectionCause {
    /// The API answered this status (the response itself was dropped).
    Status(StatusCode),
    /// The side failed with this error: a [`TokenError`] when IAM refused the key.
    Error(Arc<dyn Error + Send + Sync>),
}

impl RejectionCause {
    pub(crate) fn from_error(error: BoxError) -> Self {
        Self::Error(Arc::from(error))
    }
}

/// One side's key was refused. Part of [`BothKeysRejected`].
#[derive(Debug, Clone)]
pub struct KeyRejected {
    side: Side,
    key_id: Option<Arc<str>>,
    reason: SwitchReason,
    cause: RejectionCause,
}

impl KeyRejected {
    pub(crate) fn new(
        side: Side,
        configured_key_id: Option<Arc<str>>,
        reason: SwitchReason,
        cause: RejectionCause,
    ) -> Self {
        let mut rejected = Self {
            side,
            key_id: configured_key_id,
            reason,
            cause,
        };
        // IAM's answer names the key that was really sent; prefer it to the configured label.
        if let Some(TokenError::InvalidCredentials { key_id } | TokenError::Forbidden { key_id }) =
            rejected.token_error()
        {
            rejected.key_id = Some(Arc::clone(key_id));
        }
        rejected
    }

    /// Which side it was.
    pub fn side(&self) -> Side {
        self.side
    }

    /// The key id, when the [`TokenError`] names it or key ids were configured
    /// ([`FallbackLayer::key_ids`](crate::FallbackLayer::key_ids)).
    pub fn key_id(&self) -> Option<&str> {
        self.key_id.as_deref()
    }

    /// How the policy classified the failure.
    pub fn reason(&self) -> SwitchReason {
        self.reason
    }

    /// The failure itself.
    pub fn cause(&self) -> &RejectionCause {
        &self.cause
    }

    /// The status the API answered, if it answered.
    pub fn status(&self) -> Option<StatusCode> {
        match &self.cause {
            RejectionCause::Status(status) => Some(*status),
            RejectionCause::Error(_) => None,
        }
    }

    /// The [`TokenError`], if IAM refused the key.
    pub fn token_error(&self) -> Option<&TokenError> {
        match &self.cause {
            RejectionCause::Error(error) => find_token_error(&**error),
            RejectionCause::Status(_) => None,
        }
    }
}

impl fmt::Display for KeyRejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.key_id {
            Some(key_id) => write!(f, "{} key `{key_id}`: {}", self.side, self.reason),
            None => write!(f, "{} key: {}", self.side, self.reason),
        }
    }
}

impl Error for KeyRejected {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match &self.cause {
            RejectionCause::Error(error) => Some(&**error),
            RejectionCause::Status(_) => None,
        }
    }
}

/// Both keys were refused for the same request: the primary first, then the backup it was
/// resent to. The one error the caller gets; the retry layer treats it as fatal.
///
/// The message names both key ids (never a secret) and both reasons; [`primary`](Self::primary)
/// and [`backup`](Self::backup) give the causes, and `source()` leads to the primary's.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "both keys were rejected ({primary}; {backup}): check both key ids and secrets, that both keys are active, and that their service accounts have access to the project"
)]
pub struct BothKeysRejected {
    #[source]
    primary: KeyRejected,
    backup: KeyRejected,
}

impl BothKeysRejected {
    /// From the two rejections, in any order.
    pub(crate) fn new(a: KeyRejected, b: KeyRejected) -> Self {
        let (primary, backup) = if a.side == Side::Primary {
            (a, b)
        } else {
            (b, a)
        };
        Self { primary, backup }
    }

    /// Why the primary key was refused.
    pub fn primary(&self) -> &KeyRejected {
        &self.primary
    }

    /// Why the backup key was refused.
    pub fn backup(&self) -> &KeyRejected {
        &self.backup
    }
}
