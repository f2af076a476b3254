//! A server whose TLS certificate the client does not trust: no retry can fix that, so it
//! is fatal, in the tower policy and in the reqwest-middleware strategy alike.

use evolution_retry::{RetryConfig, Retryable, classify_error};
use reqwest_middleware::ClientBuilder;

#[path = "../../../token/tests/support/untrusted_tls.rs"]
mod untrusted_tls;

use untrusted_tls::UntrustedTls;

#[tokio::test]
async fn an_untrusted_certificate_is_fatal() {
    let server = UntrustedTls::start().await;
    let error = reqwest::Client::new()
        .get(server.origin())
        .send()
        .await
        .unwrap_err();
    // reqwest reports it as a failure to connect, which is otherwise transient.
    assert!(error.is_connect(), "{error:?}");
    assert!(evolution_token::is_certificate_error(&error));
    assert_eq!(classify_error(&error), Retryable::Fatal);
    let wrapped = reqwest_middleware::Error::Reqwest(error);
    assert_eq!(classify_error(&wrapped), Retryable::Fatal);
    assert_eq!(server.connections(), 1);
}

#[tokio::test]
async fn the_middleware_does_not_retry_an_untrusted_certificate() {
    let server = UntrustedTls::start().await;
    let client = ClientBuilder::new(reqwest::Client::new())
        .with(RetryConfig::default().into_middleware())
        .build();
    let error = client.get(server.origin()).send().await.unwrap_err();
    assert!(evolution_token::is_certificate_error(&error), "{error:?}");
    assert_eq!(server.connections(), 1);
}
