//! An IAM whose certificate does not chain to a trusted root: no retry, a message that
//! says the certificate is not trusted and what to check.

use evolution_token::{Credentials, TokenError, TokenErrorKind, TokenManager};

use crate::{KEY, SECRET};

#[path = "../support/untrusted_tls.rs"]
mod untrusted_tls;

pub(crate) use untrusted_tls::UntrustedTls;

#[tokio::test]
async fn an_untrusted_iam_certificate_fails_at_once() {
    let iam = UntrustedTls::start().await;
    let auth_url = format!("{}/api/v1/auth/token", iam.origin());
    let tokens = TokenManager::builder(Credentials::new(KEY, SECRET))
        .auth_url(&auth_url)
        .build()
        .unwrap();

    let error = tokens.get_token().await.unwrap_err();
    match &error {
        TokenError::UntrustedCertificate { auth_url: url, .. } => assert_eq!(&**url, auth_url),
        other => panic!("expected UntrustedCertificate, got {other:?}"),
    }
    assert_eq!(error.kind(), TokenErrorKind::UntrustedCertificate);
    assert!(!error.is_transient() && !error.is_auth(), "{error:?}");
    assert!(evolution_token::is_certificate_error(&error));
    let message = error.to_string();
    for part in [
        &format!("the TLS certificate of IAM at {auth_url} is not trusted"),
        "check the auth URL",
        "SSL_CERT_FILE",
    ] {
        assert!(message.contains(part), "{part:?} missing: {message}");
    }
    assert!(!message.contains(SECRET), "{message}");
    // One handshake: a certificate cannot fix itself, so the fetch does not retry.
    assert_eq!(iam.connections(), 1);
}
