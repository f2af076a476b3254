//! The simplest transport under a layer: reqwest as a `Service<Request<Bytes>>`.

use bytes::Bytes;
use http::{Request, Response};
use tower::{Service, service_fn};

/// The error of [`transport`], as between the workspace's services.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// reqwest as a `Service<Request<Bytes>>`: the status, the headers (the retry layer reads
/// `Retry-After` from them) and the whole body of each answer.
///
/// For tests of one layer against the emulator without the client's own stack. Add what a
/// test records with `ServiceExt::map_request`.
pub fn transport() -> impl Service<
    Request<Bytes>,
    Response = Response<Bytes>,
    Error = BoxError,
    Future = impl Send + 'static,
> + Clone
+ Send
+ Sync
+ 'static {
    let client = reqwest::Client::new();
    service_fn(move |request: Request<Bytes>| {
        let client = client.clone();
        async move {
            let response = client.execute(reqwest::Request::try_from(request)?).await?;
            let status = response.status();
            let headers = response.headers().clone();
            let body = response.bytes().await?;
            let mut answer = Response::new(body);
            *answer.status_mut() = status;
            *answer.headers_mut() = headers;
            Ok::<_, BoxError>(answer)
        }
    })
}
