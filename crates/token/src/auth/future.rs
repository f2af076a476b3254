//! Future types

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use futures_util::future::BoxFuture;
use http::{Request, Response, StatusCode, header::AUTHORIZATION};
use pin_project_lite::pin_project;
use tower_service::Service;

use super::Shared;
use crate::deadline::Until;
use crate::{AccessToken, BoxError, TokenError, TokenManager};

type TokenFuture = BoxFuture<'static, Result<AccessToken, TokenError>>;

pin_project! {
    /// Response future of [`Auth`](super::Auth).
    pub struct ResponseFuture<S, B>
    where
        S: Service<Request<B>>,
    {
        shared: Arc<Shared<S>>,
        // This call's own service, only on the slow paths: the instance driven to readiness
        // when the call had to wait for a token, or a clone for the resend after a 401.
        // Boxed: the fast path then carries a pointer, not a service, in every move of the
        // futures that nest this one.
        inner: Option<Box<S>>,
        #[pin]
        state: State<S::Future, B>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, B> {
        // Slow path only: no usable token was cached.
        Token { fetch: TokenFuture, request: Option<Request<B>>, resend: bool },
        // Waiting for the inner service to accept the resend.
        Ready { request: Option<Request<B>>, token: AccessToken },
        Calling {
            #[pin]
            future: F,
            token: AccessToken,
            // A copy kept for the one resend after a 401; `None` on the resend itself.
            retry: Option<Request<B>>,
        },
    }
}

impl<S, B> ResponseFuture<S, B>
where
    S: Service<Request<B>> + Clone,
    B: Clone,
{
    /// Sends `request` with `ready`, which was driven to readiness, if a token is cached;
    /// otherwise takes `ready` along (leaving a clone) to send once a token arrives.
    pub(super) fn new(ready: &mut S, shared: Arc<Shared<S>>, request: Request<B>) -> Self {
        let (inner, state) = match shared.tokens.cached() {
            Some(token) => {
                let (future, retry) = send(ready, request, &token, true);
                let state = State::Calling {
                    future,
                    token,
                    retry,
                };
                (None, state)
            }
            None => {
                let clone = ready.clone();
                let state = State::Token {
                    fetch: fetch(&shared.tokens),
                    request: Some(request),
                    resend: false,
                };
                (Some(Box::new(std::mem::replace(ready, clone))), state)
            }
        };
        Self {
            shared,
            inner,
            state,
        }
    }
}

/// While the token is not there yet: the error that ends the wait if the deadline of a
/// [`Deadline`](crate::Deadline) above has passed. The refresh is not cancelled with the
/// wait: it runs in its own task.
fn past_deadline<S>(shared: &Shared<S>) -> Option<BoxError> {
    // No timer of its own: the `Deadline` above polls this future when its time is up (before
    // its own timer), and finds the deadline passed then.
    let until = Until::passed()?;
    Some(Box::new(TokenError::Deadline {
        limit: until.limit,
        auth_url: Arc::from(shared.tokens.auth_url()),
    }))
}

fn fetch(tokens: &TokenManager) -> TokenFuture {
    let tokens = tokens.clone();
    Box::pin(async move { tokens.get_token().await })
}

/// Sets the header and calls `inner`, keeping a copy of the request if a resend may follow.
fn send<S, B>(
    inner: &mut S,
    mut request: Request<B>,
    token: &AccessToken,
    keep_copy: bool,
) -> (S::Future, Option<Request<B>>)
where
    S: Service<Request<B>>,
    B: Clone,
{
    // Copied before the header is set: the copy's headers are often empty, and then
    // copying them allocates nothing. The resend sets its own header. A plain `clone()`
    // copies the extensions too (per-call context of outer layers and of the caller): http
    // 1.x only stores `Clone` extensions, and an empty extension map is copied for free.
    let copy = keep_copy.then(|| request.clone());
    request
        .headers_mut()
        .insert(AUTHORIZATION, token.bearer_header());
    (inner.call(request), copy)
}

impl<S, B, ResBody> Future for ResponseFuture<S, B>
where
    S: Service<Request<B>, Response = Response<ResBody>> + Clone,
    S::Error: Into<BoxError>,
    B: Clone,
{
    type Output = Result<Response<ResBody>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Token {
                    fetch,
                    request,
                    resend,
                } => {
                    let token = match fetch.as_mut().poll(cx) {
                        Poll::Ready(token) => token?,
                        Poll::Pending => {
                            return match past_deadline(this.shared) {
                                Some(error) => Poll::Ready(Err(error)),
                                None => Poll::Pending,
                            };
                        }
                    };
                    let request = request.take().expect("polled after completion");
                    if *resend {
                        this.state.set(State::Ready {
                            request: Some(request),
                            token,
                        });
                    } else {
                        // The instance `Auth::poll_ready` made ready, taken along by `new`.
                        let inner = this.inner.as_mut().expect("taken along by `new`");
                        let (future, retry) = send(inner, request, &token, true);
                        this.state.set(State::Calling {
                            future,
                            token,
                            retry,
                        });
                    }
                }
                StateProj::Ready { request, token } => {
                    let inner = this
                        .inner
                        .get_or_insert_with(|| Box::new(this.shared.service.clone()));
                    ready!(inner.poll_ready(cx)).map_err(Into::into)?;
                    let request = request.take().expect("polled after completion");
                    let token = token.clone();
                    let (future, retry) = send(inner, request, &token, false);
                    this.state.set(State::Calling {
                        future,
                        token,
                        retry,
                    });
                }
                StateProj::Calling {
                    future,
                    token,
                    retry,
                } => {
                    let response = ready!(future.poll(cx)).map_err(Into::into)?;
                    if response.status() != StatusCode::UNAUTHORIZED {
                        return Poll::Ready(Ok(response));
                    }
                    let Some(request) = retry.take() else {
                        // Already resent once: the caller gets the 401.
                        return Poll::Ready(Ok(response));
                    };
                    tracing::debug!(
                        key_id = token.key_id(),
                        "401 from the API: invalidating the token and resending once"
                    );
                    let tokens = &this.shared.tokens;
                    tokens.invalidate_if_current(token);
                    // The resend drives a fresh clone of the service to readiness.
                    *this.inner = None;
                    let state = match tokens.cached() {
                        Some(token) => State::Ready {
                            request: Some(request),
                            token,
                        },
                        None => State::Token {
                            fetch: fetch(tokens),
                            request: Some(request),
                            resend: true,
                        },
                    };
                    this.state.set(state);
                }
            }
        }
    }
}

impl<S, B> std::fmt::Debug for ResponseFuture<S, B>
where
    S: Service<Request<B>>,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
