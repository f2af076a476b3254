//! Buffering the body of an error answer, so that the retry layer can classify it.
//!
//! A 429 may say "slow down" (retry) or "the quota is exhausted" (do not); only the body tells.
//! The retry layer decides before anyone reads the body, so the transport reads it first: the
//! whole of it when it is at most [`MAX_ERROR_BODY_BYTES`] (error bodies are a few hundred
//! bytes), into an [`ErrorBody`] extension, and answers with a body replaying the same bytes.
//! A longer or broken body is passed on as it came, without the extension. Successful answers
//! (and their streams) are never touched.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use evolution_retry::{ErrorBody, MAX_ERROR_BODY_BYTES};
use evolution_token::BoxError;
use futures_util::{StreamExt, stream};
use http::{Response, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, BodyStream, Full, StreamBody};

use crate::Body;

/// Whether an answer's body is buffered: 4xx and 5xx.
pub(crate) fn is_error(status: StatusCode) -> bool {
    status.is_client_error() || status.is_server_error()
}

/// [`buffer`] as a nameable future. Boxed: error answers are rare and small, and the
/// transport's response future stays the size it was for the rest.
pub(crate) struct Buffering(Pin<Box<dyn Future<Output = Response<Body>> + Send>>);

impl Buffering {
    pub(crate) fn new(response: Response<Body>) -> Self {
        Self(Box::pin(buffer(response)))
    }
}

impl Future for Buffering {
    type Output = Response<Body>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Response<Body>> {
        self.0.as_mut().poll(cx)
    }
}

impl fmt::Debug for Buffering {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Buffering")
    }
}

/// `response` with its body buffered into an [`ErrorBody`] extension when it is short enough.
pub(crate) async fn buffer(response: Response<Body>) -> Response<Body> {
    let (mut parts, mut body) = response.into_parts();
    let mut read = BytesMut::new();
    loop {
        match body.frame().await {
            None => break,
            Some(Ok(frame)) => {
                let Ok(data) = frame.into_data() else {
                    // Trailers of an error answer: nobody reads them.
                    continue;
                };
                if read.len() + data.len() > MAX_ERROR_BODY_BYTES {
                    read.extend_from_slice(&data);
                    return Response::from_parts(parts, replay(read.freeze(), Ok(body)));
                }
                read.extend_from_slice(&data);
            }
            Some(Err(error)) => {
                return Response::from_parts(parts, replay(read.freeze(), Err(error)));
            }
        }
    }
    let read = read.freeze();
    parts.extensions.insert(ErrorBody::new(read.clone()));
    let whole = Full::new(read).map_err(|never| match never {}).boxed();
    Response::from_parts(parts, whole)
}

/// The bytes already read, then the rest of the body, or the error that cut it.
fn replay(read: Bytes, rest: Result<Body, BoxError>) -> Body {
    let head = stream::iter([Ok::<_, BoxError>(Frame::data(read))]);
    match rest {
        Ok(rest) => BodyExt::boxed(StreamBody::new(head.chain(BodyStream::new(rest)))),
        Err(error) => BodyExt::boxed(StreamBody::new(head.chain(stream::iter([Err(error)])))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(frames: Vec<Result<Bytes, BoxError>>) -> Response<Body> {
        let frames = frames.into_iter().map(|frame| frame.map(Frame::data));
        let body = BodyExt::boxed(StreamBody::new(stream::iter(frames)));
        Response::builder().status(429).body(body).unwrap()
    }

    async fn read_all(response: Response<Body>) -> Result<Bytes, BoxError> {
        Ok(response.into_body().collect().await?.to_bytes())
    }

    #[tokio::test]
    async fn a_short_body_is_kept_and_replayed() {
        let response = buffer(answer(vec![
            Ok(Bytes::from_static(b"{\"error\":")),
            Ok(Bytes::from_static(b"{}}")),
        ]))
        .await;
        let kept = response.extensions().get::<ErrorBody>().unwrap().clone();
        assert_eq!(kept.bytes(), &b"{\"error\":{}}"[..]);
        assert_eq!(read_all(response).await.unwrap(), kept.bytes());
    }

    #[tokio::test]
    async fn a_long_body_is_passed_on_whole_without_the_extension() {
        let chunk = Bytes::from(vec![b'x'; MAX_ERROR_BODY_BYTES / 2 + 1]);
        let response = buffer(answer(vec![
            Ok(chunk.clone()),
            Ok(chunk.clone()),
            Ok(chunk),
        ]))
        .await;
        assert!(response.extensions().get::<ErrorBody>().is_none());
        assert_eq!(
            read_all(response).await.unwrap().len(),
            3 * (MAX_ERROR_BODY_BYTES / 2 + 1)
        );
    }

    #[tokio::test]
    async fn a_broken_body_replays_what_came_then_the_error() {
        let response = buffer(answer(vec![
            Ok(Bytes::from_static(b"{\"err")),
            Err("connection reset".into()),
        ]))
        .await;
        assert!(response.extensions().get::<ErrorBody>().is_none());
        let mut body = response.into_body();
        let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(first, &b"{\"err"[..]);
        let error = body.frame().await.unwrap().unwrap_err();
        assert_eq!(error.to_string(), "connection reset");
    }

    #[test]
    fn only_errors_are_buffered() {
        assert!(is_error(StatusCode::TOO_MANY_REQUESTS));
        assert!(is_error(StatusCode::BAD_GATEWAY));
        assert!(!is_error(StatusCode::OK));
        assert!(!is_error(StatusCode::PERMANENT_REDIRECT));
    }
}
