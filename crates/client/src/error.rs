//! The one public error type of the client.

use std::time::Duration;

use evolution_fallback::BothKeysRejected;
use evolution_retry::{
    RetryAfterTooLong, Retryable, classify_error, classify_status, is_quota_exhausted,
};
use evolution_token::{BoxError, TokenError, certificate_error};
use http::StatusCode;
use tower::timeout::error::Elapsed;

/// Everything a call can fail with. Messages say what happened and what to check,
/// and never contain a secret or a token.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The client was configured with something unusable.
    #[error("invalid configuration of `{field}`: {message}")]
    Config {
        /// The builder method or environment variable to fix.
        field: &'static str,
        /// What is wrong and what is expected.
        message: String,
    },
    /// No token could be obtained (wrong key, IAM down, ...). Retryable when the error is
    /// [transient](TokenError::is_transient), although the retry layer does not retry it:
    /// see [`is_retryable`](Self::is_retryable).
    #[error(transparent)]
    Auth(#[from] TokenError),
    /// Both the primary and the backup key were rejected.
    #[error(transparent)]
    KeysRejected(Box<BothKeysRejected>),
    /// Every deployment of the pool is cooling down, has its circuit open or is at its
    /// rate limit, and the call could not wait for the soonest (see
    /// [`AllCooling`](evolution_pool::AllCooling)). Names the soonest and when it is ready
    /// ([`retry_after`](Self::retry_after)). Not retried by the stack.
    #[error(transparent)]
    Unavailable(Box<evolution_pool::Unavailable>),
    /// The API answered with an error status, or sent an error inside a stream after its
    /// `200` head (then `status` is the error's `code` when that is an HTTP error status,
    /// else [`STREAM_ERROR_STATUS`](crate::STREAM_ERROR_STATUS)).
    #[error("the Evolution API answered {status}: {message}{hint}", hint = api_hint(*status))]
    Api {
        /// The HTTP status.
        status: StatusCode,
        /// The server's error message (from its JSON body), or the status text.
        message: String,
        /// The server's error code, when it sent one.
        code: Option<String>,
    },
    /// The API's TLS certificate does not chain to a trusted root (or is expired, or names
    /// another host). Not retried: it fails the same way every time.
    #[error(
        "the TLS certificate of the Evolution API is not trusted ({problem}): check the base URL, and that the system trust store (or the file SSL_CERT_FILE names) holds the CA that signed it"
    )]
    UntrustedCertificate {
        /// What the TLS stack found wrong with the certificate.
        problem: String,
        /// The transport error.
        #[source]
        source: BoxError,
    },
    /// The API says the quota (or the balance) of the project is exhausted: a 429 (or another
    /// error status) whose body carries OpenAI's `insufficient_quota` code or a like one
    /// ([`QUOTA_EXHAUSTED_CODES`](evolution_retry::QUOTA_EXHAUSTED_CODES)). Not retried: it
    /// lasts until the quota is raised or the balance topped up.
    #[error(
        "the Evolution API answered {status}: {message} (the quota is exhausted: check the billing and the quotas of the project; retrying will not help until they are raised)"
    )]
    QuotaExhausted {
        /// The HTTP status (429 from OpenAI-compatible servers).
        status: StatusCode,
        /// The server's error message, or the status text.
        message: String,
        /// The server's error code (`insufficient_quota`, ...).
        code: Option<String>,
    },
    /// The API asked to wait longer (`Retry-After`) than the retry layer may
    /// ([`max_retry_after`](evolution_retry::RetryConfigBuilder::max_retry_after)), so the call
    /// was not retried: it may succeed once that wait is over.
    #[error(
        "the Evolution API answered {status}: {message} (it asks to wait {wait}, longer than max_retry_after ({max}), so the call was not retried: try again after that wait, or raise max_retry_after)",
        wait = Seconds(*retry_after),
        max = Seconds(*max_retry_after)
    )]
    RetryAfterTooLong {
        /// The HTTP status (429 or 503, usually).
        status: StatusCode,
        /// The server's error message, or the status text.
        message: String,
        /// The server's error code, when it sent one.
        code: Option<String>,
        /// How long the server asked to wait.
        retry_after: Duration,
        /// The longest wait the retry layer was allowed to make.
        max_retry_after: Duration,
    },
    /// The request could not be sent or the answer could not be read.
    #[error("request to the Evolution API failed: {0}; check the network and the base URL")]
    Transport(#[source] BoxError),
    /// No answer in time.
    #[error(
        "no answer from the Evolution API within {0:?}: the server is slow or unreachable; raise the timeout or try again"
    )]
    Timeout(Duration),
    /// A stream's limit ran out: no first chunk in time, a stall between chunks, or a
    /// stream longer than its total limit; each says which and what to change.
    #[error("{0}")]
    StreamTimeout(crate::StreamTimeout),
    /// The answer was not what the OpenAI-compatible protocol promises.
    #[error(
        "unexpected answer from the Evolution API: {0}; check that the base URL points to an OpenAI-compatible endpoint"
    )]
    Decode(String),
}

fn api_hint(status: StatusCode) -> &'static str {
    match status.as_u16() {
        300..=399 => {
            " (redirects are not followed, as requests carry the token: check the base URL, and set it to the new address if you trust it)"
        }
        401 => " (the token was rejected even after a refresh: check the key's permissions)",
        403 => " (the key may not use this model or project: check its service account roles)",
        404 => " (check the base URL and the model name)",
        429 => " (rate limited: slow down or retry later)",
        500 | 502 | 503 | 504 => " (server error: retry later)",
        500..=599 => " (the server cannot serve this request: check the base URL)",
        _ => "",
    }
}

/// A duration in seconds for messages: `3600 s`, `1.5 s`.
struct Seconds(Duration);

impl std::fmt::Display for Seconds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} s", self.0.as_secs_f64())
    }
}

/// A shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn config(field: &'static str, message: impl Into<String>) -> Self {
        Self::Config {
            field,
            message: message.into(),
        }
    }

    /// A token manager's refusal of a setting (from its builder or `set_credentials`), as
    /// this client's [`Config`](Self::Config) error; anything else stays [`Auth`](Self::Auth).
    /// The token manager's `key_id` and `secret` are reported as `credentials` when that is
    /// `Some` (the backup key is set by one method, `backup_credentials`), else as they are.
    pub(crate) fn from_token(error: TokenError, credentials: Option<&'static str>) -> Self {
        match error {
            TokenError::InvalidConfiguration { setting, message } => {
                let setting = match (setting, credentials) {
                    ("key_id" | "secret", Some(credentials)) => credentials,
                    (setting, _) => setting,
                };
                Self::config(setting, message.to_string())
            }
            other => Self::Auth(other),
        }
    }

    /// Whether the key was rejected: by IAM (401/403), or by the API after a token refresh.
    pub fn is_auth(&self) -> bool {
        match self {
            Self::Auth(error) => error.is_auth(),
            Self::KeysRejected(_) => true,
            Self::Api { status, .. } => {
                *status == StatusCode::UNAUTHORIZED || *status == StatusCode::FORBIDDEN
            }
            _ => false,
        }
    }

    /// Whether the same call may succeed if made again later.
    ///
    /// What the API and the network did is judged by the retry layer's own rules, so that
    /// this answer and what the stack retries never disagree: an [`Api`](Self::Api) status
    /// by [`classify_status`] (408, 429, 500, 502, 503, 504), a [`Transport`](Self::Transport)
    /// error by [`classify_error`] (a failure to connect, a connection closed before the
    /// answer; not a body cut after the answer began, nor a builder or redirect error), a
    /// [`Timeout`](Self::Timeout) as the `Elapsed` it stands for (transient). Also `true`: a
    /// server asking for a long wait ([`RetryAfterTooLong`](Self::RetryAfterTooLong): after
    /// [`retry_after`](Self::retry_after)) and a transient IAM error. Not an exhausted quota,
    /// rejected keys, an untrusted certificate, an unreadable answer or the configuration.
    ///
    /// This says whether *you* may try again, not whether the stack would: for an IAM error
    /// it is [`TokenError::is_transient`], although the retry layer's rule for token errors
    /// ([`classify_token`](evolution_retry::classify_token)) hands IAM outages back at once,
    /// because the token manager has already retried them on its own schedule (IAM has one
    /// retry schedule). A caller trying later starts a new refresh, once the manager's failure
    /// backoff allows.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Auth(error) => error.is_transient(),
            Self::Api { status, .. } => classify_status(*status) == Some(Retryable::Transient),
            Self::Transport(error) => classify_error(&**error) == Retryable::Transient,
            // `from_service` makes it of an `Elapsed` (or of a reqwest timeout, which the
            // rule treats alike); the stream's and rig's idle limits are the same failure.
            Self::Timeout(_) | Self::StreamTimeout(_) => {
                classify_error(&Elapsed::new()) == Retryable::Transient
            }
            Self::RetryAfterTooLong { .. } => true,
            Self::Config { .. }
            | Self::Decode(_)
            | Self::KeysRejected(_)
            | Self::Unavailable(_)
            | Self::UntrustedCertificate { .. }
            | Self::QuotaExhausted { .. } => false,
        }
    }

    /// The HTTP status of an API error.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Self::Api { status, .. }
            | Self::QuotaExhausted { status, .. }
            | Self::RetryAfterTooLong { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// How long the server asked to wait, when that is why the call was not retried
    /// ([`RetryAfterTooLong`](Self::RetryAfterTooLong)), or until the soonest deployment of
    /// a pool is ready ([`Unavailable`](Self::Unavailable)).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RetryAfterTooLong { retry_after, .. } => Some(*retry_after),
            Self::Unavailable(unavailable) => Some(unavailable.ready_in),
            _ => None,
        }
    }

    /// Sorts out an error from the tower stack.
    pub(crate) fn from_service(error: BoxError, timeout: Duration) -> Self {
        let error = match error.downcast::<BothKeysRejected>() {
            Ok(both) => return Self::KeysRejected(both),
            Err(error) => error,
        };
        let error = match error.downcast::<evolution_pool::Unavailable>() {
            Ok(unavailable) => return Self::Unavailable(unavailable),
            Err(error) => error,
        };
        let error = match error.downcast::<TokenError>() {
            Ok(token) => return Self::Auth(*token),
            Err(error) => error,
        };
        let error = match error.downcast::<Error>() {
            Ok(ours) => return *ours,
            Err(error) => error,
        };
        if error.is::<Elapsed>() {
            return Self::Timeout(timeout);
        }
        if let Some(problem) = certificate_error(&*error) {
            return Self::UntrustedCertificate {
                problem: problem.to_string(),
                source: error,
            };
        }
        match error.downcast_ref::<reqwest::Error>() {
            Some(e) if e.is_timeout() => Self::Timeout(timeout),
            _ => Self::Transport(error),
        }
    }

    /// A redirect, which is not followed: its status and where it pointed (`location`
    /// resolved against `base_url`, without its user info, query and fragment, which may
    /// carry credentials).
    pub(crate) fn redirected(
        status: StatusCode,
        location: Option<&http::HeaderValue>,
        base_url: &str,
    ) -> Self {
        let target = location
            .and_then(|value| value.to_str().ok())
            .and_then(|location| url::Url::parse(base_url).ok()?.join(location).ok())
            .map(|mut target| {
                // Both fail only for URLs that cannot have user info: nothing to remove then.
                let _ = target.set_username("");
                let _ = target.set_password(None);
                target.set_query(None);
                target.set_fragment(None);
                target
            });
        let message = match target {
            Some(target) => format!("a redirect to {target}"),
            None => "a redirect without a Location".to_owned(),
        };
        Self::Api {
            status,
            message,
            code: None,
        }
    }

    /// An error answer: status plus the server's message from an OpenAI-style body; `too_long`
    /// when the retry layer gave up on it for its `Retry-After`.
    pub(crate) fn from_answer(
        status: StatusCode,
        body: &[u8],
        too_long: Option<RetryAfterTooLong>,
    ) -> Self {
        #[derive(serde::Deserialize)]
        struct Envelope {
            error: Detail,
        }
        #[derive(serde::Deserialize)]
        struct Detail {
            message: Option<String>,
            code: Option<serde_json::Value>,
        }
        let (message, code) = match serde_json::from_slice::<Envelope>(body) {
            Ok(Envelope { error }) => (
                error.message,
                error.code.and_then(|c| match c {
                    serde_json::Value::String(s) => Some(s),
                    serde_json::Value::Null => None,
                    other => Some(other.to_string()),
                }),
            ),
            Err(_) => (None, None),
        };
        let message = message.unwrap_or_else(|| {
            status
                .canonical_reason()
                .unwrap_or("unknown status")
                .to_owned()
        });
        // The same rule the retry layer applied to the same bytes.
        if is_quota_exhausted(body) {
            return Self::QuotaExhausted {
                status,
                message,
                code,
            };
        }
        match too_long {
            Some(too_long) => Self::RetryAfterTooLong {
                status,
                message,
                code,
                retry_after: too_long.retry_after(),
                max_retry_after: too_long.max_retry_after(),
            },
            None => Self::Api {
                status,
                message,
                code,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_redirect_names_its_target_resolved_and_without_its_query() {
        let base = "https://foundation-models.api.cloud.ru/v1";
        let relative = http::HeaderValue::from_static("/v2/chat/completions?sig=abc#x");
        let error = Error::redirected(StatusCode::PERMANENT_REDIRECT, Some(&relative), base);
        let message = error.to_string();
        assert!(
            message.contains(
                "a redirect to https://foundation-models.api.cloud.ru/v2/chat/completions ("
            ),
            "{message}"
        );
        assert!(!message.contains("sig=abc"), "{message}");
        assert!(message.contains("check the base URL"), "{message}");
        let none = Error::redirected(StatusCode::FOUND, None, base);
        assert!(
            none.to_string().contains("a redirect without a Location"),
            "{none}"
        );
        assert!(!none.is_retryable() && !none.is_auth());
        let with_user = "https://user:pass@foundation-models.api.cloud.ru/v1";
        let message = Error::redirected(StatusCode::FOUND, Some(&relative), with_user).to_string();
        assert!(
            !message.contains("user") && !message.contains("pass"),
            "{message}"
        );
    }

    fn api(status: StatusCode) -> Error {
        Error::Api {
            status,
            message: String::new(),
            code: None,
        }
    }

    #[test]
    fn is_retryable_agrees_with_the_retry_layer() {
        for code in 400..=599 {
            let status = StatusCode::from_u16(code).unwrap();
            assert_eq!(
                api(status).is_retryable(),
                classify_status(status) == Some(Retryable::Transient),
                "{code}"
            );
        }
    }

    /// A server at a local address that reads a request, writes `answer` and closes.
    async fn answers(answer: &'static [u8]) -> std::net::SocketAddr {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let _ = socket.read(&mut [0; 4096]).await;
                let _ = socket.write_all(answer).await;
            }
        });
        address
    }

    /// Transport failures as [`Error::from_service`] sorts them: `is_retryable` says what the
    /// retry layer's rule ([`classify_error`]) says of the same error. The third column says
    /// which answer each case stands for, so that the set keeps covering both.
    #[tokio::test]
    async fn is_retryable_agrees_with_the_retry_layer_on_transport_errors() {
        use http_body_util::BodyExt;
        use std::io;

        let http = reqwest::Client::new();
        let get = |address: std::net::SocketAddr| http.get(format!("http://{address}/")).send();
        let refused = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap()
        };
        // Never accepted: the kernel completes the connection, nobody reads or answers.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let silent = http
            .get(format!("http://{}/", listener.local_addr().unwrap()))
            .timeout(Duration::from_millis(50))
            .send();
        let cut = answers(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc").await;

        let connect = get(refused).await.unwrap_err();
        assert!(connect.is_connect(), "{connect:?}");
        let closed = get(answers(b"").await).await.unwrap_err();
        assert!(closed.is_request() && !closed.is_connect(), "{closed:?}");
        let timeout = silent.await.unwrap_err();
        assert!(timeout.is_timeout(), "{timeout:?}");
        // Read as the transport reads it (the body as an `http_body::Body`)...
        let answer: http::Response<reqwest::Body> = get(cut).await.unwrap().into();
        let body = answer.into_body().collect().await.unwrap_err();
        assert!(body.is_body(), "{body:?}");
        // ... and as reqwest's own readers do, which call the same failure a decode error.
        let decode = get(cut).await.unwrap().bytes().await.unwrap_err();
        assert!(decode.is_decode(), "{decode:?}");
        let builder = http.get("no scheme").build().unwrap_err();
        assert!(builder.is_builder(), "{builder:?}");
        let certificate = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::Expired),
        );

        let cases: Vec<(&str, BoxError, bool)> = vec![
            ("connect", connect.into(), true),
            ("closed before the answer", closed.into(), true),
            ("reqwest timeout", timeout.into(), true),
            ("body cut after the head", body.into(), false),
            ("decode", decode.into(), false),
            ("builder", builder.into(), false),
            (
                "io reset",
                io::Error::from(io::ErrorKind::ConnectionReset).into(),
                true,
            ),
            (
                "io other",
                io::Error::from(io::ErrorKind::PermissionDenied).into(),
                false,
            ),
            ("certificate", certificate.into(), false),
            ("elapsed", Elapsed::new().into(), true),
            ("unknown", "something else".into(), false),
        ];
        for (case, error, transient) in cases {
            let rule = classify_error(&*error) == Retryable::Transient;
            assert_eq!(
                rule, transient,
                "{case}: the case is not what it stands for"
            );
            let error = Error::from_service(error, Duration::from_secs(1));
            assert_eq!(error.is_retryable(), rule, "{case}: {error:?}");
        }
    }

    #[test]
    fn a_quota_body_is_quota_exhausted_whatever_the_wait() {
        let body = br#"{"error":{"message":"no quota left","code":"insufficient_quota"}}"#;
        let too_long = RetryAfterTooLong::new(Duration::from_secs(3600), Duration::from_secs(60));
        for too_long in [None, Some(too_long)] {
            let error = Error::from_answer(StatusCode::TOO_MANY_REQUESTS, body, too_long);
            assert!(matches!(error, Error::QuotaExhausted { .. }), "{error:?}");
            assert!(!error.is_retryable());
        }
    }

    #[test]
    fn waits_are_printed_in_seconds() {
        assert_eq!(Seconds(Duration::from_secs(3600)).to_string(), "3600 s");
        assert_eq!(Seconds(Duration::from_millis(1500)).to_string(), "1.5 s");
    }
}
