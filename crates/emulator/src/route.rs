//! The routes faults and latency can be attached to.

use std::fmt;

use serde::{Deserialize, Serialize};

/// One of the emulated endpoints.
///
/// Scripted faults, added latency and random faults are set per route.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Route {
    /// `POST /api/v1/auth/token`, the IAM key exchange.
    Iam,
    /// `POST /v1/chat/completions`.
    Chat,
    /// `GET /v1/models`.
    Models,
    /// `POST /v1/embeddings`.
    Embeddings,
}

impl Route {
    /// Every route, in a fixed order.
    pub const ALL: [Route; 4] = [Route::Iam, Route::Chat, Route::Models, Route::Embeddings];

    /// How many routes there are, for per-route arrays.
    pub(crate) const COUNT: usize = Route::ALL.len();

    /// The route's name as used by the control endpoint: `iam`, `chat`, `models` or
    /// `embeddings`.
    pub fn as_str(self) -> &'static str {
        match self {
            Route::Iam => "iam",
            Route::Chat => "chat",
            Route::Models => "models",
            Route::Embeddings => "embeddings",
        }
    }

    /// Dense index, for per-route arrays.
    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
