use std::time::Duration;

use evolution_emulator::{Fault, Route};
use evolution_token::{Credentials, TokenError, TokenManager};

use crate::{KEY, builder, emulator, manager};

#[tokio::test(start_paused = true)]
async fn transient_iam_errors_are_retried_inside_the_fetch() {
    let emu = emulator().await;
    emu.push_fault(Route::Iam, Fault::status(503));
    emu.push_fault(Route::Iam, Fault::status(503));
    let tokens = manager(&emu);
    tokens.get_token().await.unwrap();
    assert_eq!(emu.stats().iam_requests, 3);
}

#[tokio::test(start_paused = true)]
async fn iam_429_and_5xx_bursts_end_in_unavailable_after_bounded_attempts() {
    let emu = emulator().await;
    for code in [429, 500, 502, 504] {
        emu.push_fault(Route::Iam, Fault::status(code));
    }
    let tokens = builder(&emu).fetch_attempts(4).build().unwrap();
    let error = tokens.get_token().await.unwrap_err();
    match error {
        TokenError::Unavailable {
            status, attempts, ..
        } => {
            assert_eq!(status.as_u16(), 504);
            assert_eq!(attempts, 4);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(emu.stats().iam_requests, 4);
}

#[tokio::test(start_paused = true)]
async fn wrong_secret_is_invalid_credentials_after_one_request() {
    let emu = emulator().await;
    let tokens = TokenManager::builder(Credentials::new(KEY, "wrong"))
        .auth_url(emu.auth_url())
        .build()
        .unwrap();
    let error = tokens.get_token().await.unwrap_err();
    assert!(matches!(&error, TokenError::InvalidCredentials { key_id } if &**key_id == KEY));
    assert!(!error.is_transient());
    assert!(error.is_auth());
    assert!(
        error
            .to_string()
            .contains("check the key id and the secret")
    );
    assert_eq!(emu.stats().iam_requests, 1);
}

#[tokio::test(start_paused = true)]
async fn forbidden_key_is_not_retried() {
    let emu = emulator().await;
    emu.push_fault(Route::Iam, Fault::status(403));
    let error = manager(&emu).get_token().await.unwrap_err();
    assert!(matches!(error, TokenError::Forbidden { .. }));
    assert_eq!(emu.stats().iam_requests, 1);
}

#[tokio::test(start_paused = true)]
async fn slow_iam_times_out_per_attempt() {
    let emu = emulator().await;
    for _ in 0..2 {
        emu.push_fault(Route::Iam, Fault::delay(Duration::from_secs(60)));
    }
    let tokens = builder(&emu)
        .fetch_timeout(Duration::from_secs(2))
        .fetch_attempts(2)
        .build()
        .unwrap();
    let started = tokio::time::Instant::now();
    let error = tokens.get_token().await.unwrap_err();
    assert!(
        matches!(error, TokenError::Timeout { attempts: 2, .. }),
        "{error:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(error.is_transient());
}

#[tokio::test]
async fn unreachable_iam_is_a_network_error() {
    // A port nobody listens on: bind, read the port, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let tokens = TokenManager::builder(Credentials::new(KEY, "s"))
        .auth_url(format!("http://127.0.0.1:{port}/api/v1/auth/token"))
        .fetch_attempts(2)
        .build()
        .unwrap();
    let error = tokens.get_token().await.unwrap_err();
    assert!(
        matches!(error, TokenError::Network { attempts: 2, .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("check the network"));
}

#[tokio::test]
async fn configuration_errors_name_what_to_fix() {
    let cases: [(&str, &str, &str, &str); 5] = [
        ("", "s", "https://iam.example/token", "key id is empty"),
        (
            "k",
            " ",
            "https://iam.example/token",
            "secret for key id `k` is empty",
        ),
        ("k", "s", "not a url", "is not a valid URL"),
        ("k", "s", "http://iam.example/token", "plain http"),
        ("k", "s", "ftp://iam.example/token", "scheme `ftp`"),
    ];
    for (key, secret, url, expected) in cases {
        let error = TokenManager::builder(Credentials::new(key, secret))
            .auth_url(url)
            .build()
            .unwrap_err();
        assert!(matches!(error, TokenError::InvalidConfiguration { .. }));
        assert!(error.to_string().contains(expected), "{error}");
    }
    let error = TokenManager::builder(Credentials::new("k", "s"))
        .refresh_buffer(Duration::from_secs(60))
        .refresh_ahead(Duration::from_secs(10))
        .build()
        .unwrap_err();
    assert!(error.to_string().contains("refresh_ahead"), "{error}");
    let error = TokenManager::builder(Credentials::new("k", "s"))
        .fetch_attempts(0)
        .build()
        .unwrap_err();
    assert!(error.to_string().contains("fetch_attempts"), "{error}");
    // Plain http is fine to loopback and when explicitly allowed.
    TokenManager::builder(Credentials::new("k", "s"))
        .auth_url("http://localhost:8080/token")
        .build()
        .unwrap();
    TokenManager::builder(Credentials::new("k", "s"))
        .auth_url("http://iam.internal/token")
        .allow_insecure_http(true)
        .build()
        .unwrap();
}
