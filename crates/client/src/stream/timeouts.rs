//! A stream's three limits, and the error each one ends it with.

use std::fmt;
use std::time::Duration;

/// The limits of a streamed completion, set on the builder
/// ([`first_chunk_timeout`](crate::EvolutionInferenceBuilder::first_chunk_timeout),
/// [`stream_idle_timeout`](crate::EvolutionInferenceBuilder::stream_idle_timeout),
/// [`stream_timeout`](crate::EvolutionInferenceBuilder::stream_timeout)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StreamLimits {
    /// From the response head to the first chunk.
    pub(crate) first_chunk: Duration,
    /// Between two frames of data, once the first chunk has come.
    pub(crate) idle: Duration,
    /// From the call's start to the stream's end.
    pub(crate) total: Option<Duration>,
}

/// Which of a stream's limits ran out: the [`Error::StreamTimeout`](crate::Error::StreamTimeout)
/// a [`ChatStream`](crate::ChatStream) ends with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StreamTimeout {
    /// No chunk within this long of the response head (`first_chunk_timeout`). The caller
    /// has been given nothing, so the client sends the request again while its retry policy
    /// allows (the retry's reason: `first_chunk_timeout`).
    FirstChunk(Duration),
    /// Nothing for this long after a chunk (`stream_idle_timeout`). Never resent: the
    /// caller has had part of the answer.
    Idle(Duration),
    /// The stream did not end within this long of the call's start (`stream_timeout`).
    Total(Duration),
}

impl StreamTimeout {
    /// The limit that ran out.
    pub fn limit(self) -> Duration {
        match self {
            Self::FirstChunk(limit) | Self::Idle(limit) | Self::Total(limit) => limit,
        }
    }

    /// A short name: `first_chunk_timeout`, `idle_timeout` or `stream_timeout` (the
    /// retry reason, and `error.type` on the call's span and metrics).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::FirstChunk(_) => "first_chunk_timeout",
            Self::Idle(_) => "idle_timeout",
            Self::Total(_) => "stream_timeout",
        }
    }
}

impl fmt::Display for StreamTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::FirstChunk(limit) => write!(
                f,
                "the stream sent no chunk within {limit:?} of its response head (first_chunk_timeout): the model is slow to start or overloaded; raise first_chunk_timeout or try again"
            ),
            Self::Idle(limit) => write!(
                f,
                "the stream sent nothing for {limit:?} after a chunk (stream_idle_timeout): the server stalled or the connection died; raise stream_idle_timeout or try again"
            ),
            Self::Total(limit) => write!(
                f,
                "the stream did not end within {limit:?} of the call's start (stream_timeout): raise stream_timeout or ask for fewer tokens"
            ),
        }
    }
}
