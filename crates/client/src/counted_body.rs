//! A response body that gives its call's metrics verdict when it ends.
//!
//! [`EvolutionInference::send`](crate::EvolutionInference::send) hands the body to its
//! caller unread, so it cannot say whether the answer was whole the way `chat` does once it
//! has parsed it. The body says it instead, at the end: `ok` once its last frame has been
//! read, `body_error` if a frame fails, and `cancelled` if it is dropped before its end
//! (what the [`PendingCall`] records when dropped).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use evolution_metrics::PendingCall;
use evolution_token::BoxError;
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::BodyExt;
use pin_project_lite::pin_project;

use crate::Body;

/// `body`, recording `call` when it ends; `body` itself when there is no call to record.
pub(crate) fn counted(body: Body, call: Option<PendingCall>) -> Body {
    match call {
        None => body,
        Some(call) => CountedBody {
            body,
            call: Some(call),
        }
        .boxed(),
    }
}

pin_project! {
    struct CountedBody {
        #[pin]
        body: Body,
        // `None` once recorded.
        call: Option<PendingCall>,
    }
}

impl HttpBody for CountedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        let frame = match this.body.as_mut().poll_frame(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(frame) => frame,
        };
        // A reader such as hyper stops at `is_end_stream()` without asking for the `None`
        // after the last frame, so the end is looked for after each frame too.
        let ended = match &frame {
            None => Some(true),
            Some(Ok(_)) if this.body.is_end_stream() => Some(true),
            Some(Ok(_)) => None,
            Some(Err(_)) => Some(false),
        };
        if let Some(whole) = ended
            && let Some(call) = this.call.take()
        {
            if whole {
                call.ok();
            } else {
                call.body_error();
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use evolution_metrics::{Metrics, capture};
    use futures_util::stream;
    use http::{Request, Response};
    use http_body_util::{Full, StreamBody};
    use tower::{ServiceBuilder, ServiceExt, service_fn};

    use super::*;

    /// A success call of `metrics`, waiting for its verdict.
    async fn pending(metrics: &Metrics) -> PendingCall {
        let service = ServiceBuilder::new()
            .layer(metrics.layer())
            .service(service_fn(|_request: Request<()>| async {
                Ok::<_, Infallible>(Response::new(()))
            }));
        let (response, call) = capture(service.oneshot(Request::new(()))).await;
        response.unwrap();
        call.expect("a success head is pending")
    }

    fn full(data: &'static [u8]) -> Body {
        Full::new(Bytes::from_static(data))
            .map_err(|never| match never {})
            .boxed()
    }

    /// (total, successes) in `metrics`.
    fn counts(metrics: &Metrics) -> (u64, u64) {
        let stats = metrics.stats();
        (stats.total_requests, stats.successes)
    }

    #[tokio::test]
    async fn a_body_read_to_its_end_is_ok() {
        let metrics = Metrics::new();
        let mut body = counted(full(b"{}"), Some(pending(&metrics).await));
        assert_eq!(counts(&metrics), (0, 0), "not before the end");
        // One frame, after which the body says it has ended: a reader that stops there,
        // as hyper does, never asks for the `None`.
        let frame = body.frame().await.unwrap().unwrap();
        assert_eq!(frame.into_data().unwrap(), "{}");
        assert!(body.is_end_stream());
        assert_eq!(counts(&metrics), (1, 1));
    }

    #[tokio::test]
    async fn a_failed_frame_is_a_body_error() {
        let metrics = Metrics::new();
        let frames: Vec<Result<Frame<Bytes>, BoxError>> = vec![
            Ok(Frame::data(Bytes::from_static(b"{\"cho"))),
            Err("cut".into()),
        ];
        let body = StreamBody::new(stream::iter(frames)).boxed();
        let body = counted(body, Some(pending(&metrics).await));
        assert!(body.collect().await.is_err());
        assert_eq!(counts(&metrics), (1, 0));
    }

    #[tokio::test]
    async fn a_body_dropped_before_its_end_is_cancelled() {
        let metrics = Metrics::new();
        drop(counted(full(b"{}"), Some(pending(&metrics).await)));
        assert_eq!(counts(&metrics), (1, 0));
    }

    #[test]
    fn a_body_without_a_call_is_left_as_it_is() {
        assert_eq!(counted(full(b"{}"), None).size_hint().exact(), Some(2));
    }
}
