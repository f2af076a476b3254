//! [`NoRetry`]: a request the retry layer sends once.

/// A request extension: the retry layer sends this request once, whatever its answer. The
/// answer (or failure) comes back as it was.
///
/// For requests that must not be repeated by a retry: a multipart upload a caller built
/// once, say, or a call that is not idempotent. Resends that are not retries still apply
/// below the retry layer: the one resend with a fresh token after a `401` for a revoked
/// token, and a switch to another key (a backup key or another deployment of a pool) when a
/// key is refused; in both, the server refused the request rather than processing it.
///
/// ```
/// use evolution_retry::NoRetry;
///
/// let mut request = http::Request::new(bytes::Bytes::from_static(b"{}"));
/// request.extensions_mut().insert(NoRetry);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NoRetry;
