//! Rows about time limits: the per-attempt limit (everything one attempt waits for: the token,
//! the shared cache's lock, the resend after a 401, the resend to the backup key), the caller's
//! overall deadline, and the worst case of a call with the default settings.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use evolution_client::{DEFAULT_REQUEST_TIMEOUT, Error, RetryConfig, stack};
use evolution_emulator::{DEMO_MODEL, Fault, Route};
use evolution_token::store::InMemoryStore;
use evolution_token::{Credentials, TokenError, TokenManager};
use secrecy::ExposeSecret;
use tokio::time::Instant;
use tower::ServiceExt;

use crate::{
    ATTEMPTS, FETCH_ATTEMPTS, KEY, SECRET, builder, echo, emulator, says, seen, token_error,
};

/// A server slower than `request_timeout` (5 s): each attempt is abandoned at 5 s and retried;
/// two slow answers are ridden out, a server that is always slow ends in `Error::Timeout`.
#[tokio::test(start_paused = true)]
async fn per_attempt_timeout() {
    let emu = emulator().await;
    let llm = builder(&emu)
        .request_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    llm.token_manager().get_token().await.unwrap();

    emu.push_fault(Route::Chat, Fault::delay(Duration::from_secs(120)));
    emu.push_fault(Route::Chat, Fault::delay(Duration::from_secs(120)));
    let started = Instant::now();
    assert_eq!(
        llm.invoke("slow twice").await.unwrap(),
        echo(KEY, "slow twice")
    );
    let elapsed = started.elapsed();
    // Two timeouts of 5 s and two backoffs of at most 1 s and 2 s.
    assert!(
        elapsed >= Duration::from_secs(10) && elapsed <= Duration::from_secs(13),
        "{elapsed:?}"
    );
    assert_eq!(seen(&emu), (1, 3));

    emu.set_latency(Route::Chat, Duration::from_secs(120));
    let started = Instant::now();
    let error = llm.invoke("always slow").await.unwrap_err();
    assert!(
        matches!(error, Error::Timeout(limit) if limit == Duration::from_secs(5)),
        "{error:?}"
    );
    assert!(error.is_retryable());
    says(
        &error.to_string(),
        &[
            "no answer from the Evolution API within 5s",
            "the server is slow or unreachable; raise the timeout or try again",
        ],
    );
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_secs(15) && elapsed <= Duration::from_secs(18),
        "{elapsed:?}"
    );
    assert_eq!(seen(&emu), (1, 3 + ATTEMPTS));
    assert_eq!(llm.stats().retries, 2 + (ATTEMPTS - 1));
}

/// `total_timeout` bounds the whole call, retries and token fetch included: the caller gets
/// `Error::Timeout(total)` at the deadline, never later.
#[tokio::test(start_paused = true)]
async fn overall_deadline() {
    let total = Duration::from_secs(10);

    // One attempt that would take 120 s.
    let emu = emulator().await;
    let llm = builder(&emu).total_timeout(total).build().unwrap();
    llm.token_manager().get_token().await.unwrap();
    emu.set_latency(Route::Chat, Duration::from_secs(120));
    let started = Instant::now();
    let error = llm.invoke("hi").await.unwrap_err();
    assert!(
        matches!(error, Error::Timeout(limit) if limit == total),
        "{error:?}"
    );
    assert!(error.is_retryable());
    says(
        &error.to_string(),
        &[
            "no answer from the Evolution API within 10s",
            "raise the timeout",
        ],
    );
    let elapsed = started.elapsed();
    assert!(
        elapsed >= total && elapsed <= total + Duration::from_millis(5),
        "{elapsed:?}"
    );
    assert_eq!(seen(&emu), (1, 1));

    // Attempts of 4 s with retries: the retries stop or are cut at the deadline.
    let emu = emulator().await;
    let llm = builder(&emu)
        .total_timeout(total)
        .request_timeout(Duration::from_secs(4))
        .build()
        .unwrap();
    llm.token_manager().get_token().await.unwrap();
    emu.set_latency(Route::Chat, Duration::from_secs(120));
    let started = Instant::now();
    let error = llm.invoke("hi").await.unwrap_err();
    assert!(
        matches!(error, Error::Timeout(limit) if limit == total),
        "{error:?}"
    );
    let elapsed = started.elapsed();
    assert!(elapsed <= total + Duration::from_millis(5), "{elapsed:?}");
    let (iam, chat) = seen(&emu);
    assert_eq!(iam, 1);
    assert!((2..=ATTEMPTS).contains(&chat), "{chat} attempts in 10 s");

    // IAM slower than the deadline: the deadline still holds, and the error says that IAM
    // is what did not answer.
    let emu = emulator().await;
    emu.set_latency(Route::Iam, Duration::from_secs(8));
    let llm = builder(&emu)
        .total_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let started = Instant::now();
    let error = llm.invoke("hi").await.unwrap_err();
    assert!(
        matches!(token_error(&error), TokenError::Deadline { limit, .. } if *limit == Duration::from_secs(5)),
        "{error:?}"
    );
    assert!(started.elapsed() <= Duration::from_secs(5) + Duration::from_millis(5));
    assert_eq!(seen(&emu), (1, 0));
    // The refresh was not cancelled with the caller: it finishes and the next call uses it.
    tokio::time::sleep(Duration::from_secs(4)).await;
    llm.invoke("later").await.unwrap();
    assert_eq!(seen(&emu), (1, 1));
}

/// With `total_timeout` set, a call that fails because every *attempt* timed out names the
/// attempt limit, not the total: three 2 s attempts fail within about 7 s and the error must
/// send the user to `request_timeout`. (Both timeouts fail with the same `Elapsed` type; the
/// client tells them apart by the time spent.)
#[tokio::test(start_paused = true)]
async fn per_attempt_timeouts_under_a_total_timeout_name_the_attempt_limit() {
    let emu = emulator().await;
    let llm = builder(&emu)
        .request_timeout(Duration::from_secs(2))
        .total_timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    llm.token_manager().get_token().await.unwrap();
    emu.set_latency(Route::Chat, Duration::from_secs(120));
    let started = Instant::now();
    let error = llm.invoke("hi").await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(seen(&emu), (1, ATTEMPTS));
    assert!(
        matches!(error, Error::Timeout(limit) if limit == Duration::from_secs(2)),
        "{error:?}: {error}"
    );
}

/// Longer than any test: an IAM (or API) that accepts the request and never answers.
const BLACKHOLE: Duration = Duration::from_secs(24 * 60 * 60);

/// A blackholed IAM (accepts, never answers) with `request_timeout` 5 s, shorter than the
/// token fetch's own schedule (3 IAM requests of 10 s): the wait for the token is part of the
/// attempt, so the attempt ends at 5 s with an error that says IAM did not answer, not after
/// the fetch's ~30 s. The refresh goes on in the background: the IAM request is not repeated.
#[tokio::test(start_paused = true)]
async fn blackholed_iam_ends_the_attempt_at_request_timeout() {
    let emu = emulator().await;
    emu.set_latency(Route::Iam, BLACKHOLE);
    let limit = Duration::from_secs(5);
    let llm = builder(&emu)
        .request_timeout(limit)
        .no_retry()
        .build()
        .unwrap();

    let started = Instant::now();
    let error = llm.invoke("hi").await.unwrap_err();
    assert_eq!(started.elapsed(), limit, "{error}");
    assert!(
        matches!(token_error(&error), TokenError::Deadline { limit: l, auth_url } if *l == limit && **auth_url == emu.auth_url()),
        "{error:?}"
    );
    says(
        &error.to_string(),
        &[
            &format!("IAM at {} did not answer within 5s", emu.auth_url()),
            "the time limit of this request",
            "check the network and the auth URL",
        ],
    );
    assert!(error.is_retryable() && !error.is_auth(), "{error:?}");
    assert_eq!(seen(&emu), (1, 0));

    // With the default retries: three attempts of 5 s and two backoffs of at most 1 s and
    // 2 s. Each attempt joins the same refresh, whose first IAM request timed out at 10 s
    // (`fetch_timeout`) and whose second went out at most 2 s after it.
    let emu = emulator().await;
    emu.set_latency(Route::Iam, BLACKHOLE);
    let llm = builder(&emu).request_timeout(limit).build().unwrap();
    let started = Instant::now();
    let error = llm.invoke("hi").await.unwrap_err();
    let elapsed = started.elapsed();
    assert!(
        elapsed >= 3 * limit && elapsed <= 3 * limit + Duration::from_secs(3),
        "{elapsed:?}: {error}"
    );
    assert!(
        matches!(token_error(&error), TokenError::Deadline { limit: l, .. } if *l == limit),
        "{error:?}"
    );
    assert_eq!(seen(&emu), (2, 0));
    assert_eq!(llm.stats().retries, ATTEMPTS - 1);
}

/// The resend after a 401 waits for a new token inside the same attempt: with IAM
/// blackholed after the revocation, the attempt still ends at `request_timeout`.
#[tokio::test(start_paused = true)]
async fn the_401_resend_shares_the_attempts_deadline() {
    let emu = emulator().await;
    let limit = Duration::from_secs(5);
    let llm = builder(&emu)
        .request_timeout(limit)
        .no_retry()
        .build()
        .unwrap();
    let token = llm.token_manager().get_token().await.unwrap();
    assert!(emu.revoke_token(token.secret().expose_secret()));
    emu.set_latency(Route::Chat, Duration::from_secs(2));
    emu.set_latency(Route::Iam, BLACKHOLE);

    let started = Instant::now();
    let error = llm.invoke("hi").await.unwrap_err();
    assert_eq!(started.elapsed(), limit, "{error}");
    assert!(
        matches!(token_error(&error), TokenError::Deadline { limit: l, .. } if *l == limit),
        "{error:?}"
    );
    says(
        &error.to_string(),
        &[&format!(
            "IAM at {} did not answer within 5s",
            emu.auth_url()
        )],
    );
    assert_eq!(seen(&emu), (2, 1));
    assert_eq!(emu.stats().chat_status(401), 1);
}

/// The resend to the backup key after the primary key is rejected is part of the same
/// attempt: API answers take 3 s, so the primary's 401 and the backup's answer take 6 s
/// together, longer than the 5 s attempt.
#[tokio::test(start_paused = true)]
async fn the_fallback_resend_shares_the_attempts_deadline() {
    const BACKUP: &str = "deadline-backup";
    const BACKUP_SECRET: &str = "deadline-backup-secret";
    let emu = emulator().await;
    emu.add_key(BACKUP, BACKUP_SECRET);
    let limit = Duration::from_secs(5);
    let llm = builder(&emu)
        .backup_credentials(BACKUP, BACKUP_SECRET)
        .request_timeout(limit)
        .no_retry()
        .build()
        .unwrap();
    llm.token_manager().get_token().await.unwrap();
    emu.revoke_key(KEY);
    emu.disable_key(KEY);
    emu.set_latency(Route::Chat, Duration::from_secs(3));

    let started = Instant::now();
    let error = llm.invoke("hi").await.unwrap_err();
    assert_eq!(started.elapsed(), limit, "{error}");
    assert!(
        matches!(error, Error::Timeout(limit) if limit == Duration::from_secs(5)),
        "{error:?}"
    );
    says(
        &error.to_string(),
        &[
            "no answer from the Evolution API within 5s",
            "raise the timeout",
        ],
    );
    assert!(!llm.using_primary(), "the switch to the backup key stands");
    // The primary's first token, its refresh refused by IAM, the backup's token; the
    // primary's 401 and the backup's abandoned request.
    assert_eq!(seen(&emu), (3, 2));
    assert_eq!(emu.stats().iam_requests_for(BACKUP), 1);
}

/// `total_timeout` sits above the retry layer, so it cuts a backoff sleep too: a 503 asking
/// for 30 s (`Retry-After`, under the 60 s cap) with a retry deadline of an hour is
/// abandoned at the 5 s total, without a second API request.
#[tokio::test(start_paused = true)]
async fn total_timeout_cuts_a_backoff_sleep() {
    let emu = emulator().await;
    let total = Duration::from_secs(5);
    let retry = RetryConfig::builder()
        .deadline(Duration::from_secs(3600))
        .build()
        .unwrap();
    let llm = builder(&emu)
        .total_timeout(total)
        .retry(retry)
        .build()
        .unwrap();
    llm.token_manager().get_token().await.unwrap();
    emu.push_fault(
        Route::Chat,
        Fault::status(503).with_header("retry-after", "30"),
    );

    let started = Instant::now();
    let error = llm.invoke("hi").await.unwrap_err();
    assert_eq!(started.elapsed(), total, "{error}");
    assert!(
        matches!(error, Error::Timeout(limit) if limit == total),
        "{error:?}"
    );
    says(&error.to_string(), &["within 5s", "raise the timeout"]);
    assert_eq!(seen(&emu), (1, 1));
    assert_eq!(emu.stats().chat_status(503), 1);
}

/// A request to the emulator's chat endpoint, for one key's stack used on its own.
fn chat_request(emu: &evolution_emulator::Emulator) -> http::Request<Bytes> {
    let body =
        format!(r#"{{"model":"{DEMO_MODEL}","messages":[{{"role":"user","content":"hi"}}]}}"#);
    http::Request::post(format!("{}/chat/completions", emu.base_url()))
        .body(Bytes::from(body))
        .unwrap()
}

fn token_manager(
    emu: &evolution_emulator::Emulator,
    store: Option<Arc<InMemoryStore>>,
) -> TokenManager {
    let mut tokens = TokenManager::builder(Credentials::new(KEY, SECRET)).auth_url(emu.auth_url());
    if let Some(store) = store {
        tokens = tokens.shared_cache(store);
    }
    tokens.build().unwrap()
}

/// `stack::authenticated`, one key's stack used on its own, bounds the wait for a token
/// by its per-attempt limit too.
#[tokio::test(start_paused = true)]
async fn one_keys_stack_bounds_the_wait_for_a_token() {
    let emu = emulator().await;
    emu.set_latency(Route::Iam, BLACKHOLE);
    let limit = Duration::from_secs(5);
    let service = stack::authenticated(reqwest::Client::new(), token_manager(&emu, None), limit);

    let started = Instant::now();
    let error = service.oneshot(chat_request(&emu)).await.unwrap_err();
    assert_eq!(started.elapsed(), limit, "{error}");
    assert!(
        matches!(error.downcast_ref(), Some(TokenError::Deadline { limit: l, .. }) if *l == limit),
        "{error:?}"
    );
    says(&error.to_string(), &["IAM at", "did not answer within 5s"]);
    assert_eq!(seen(&emu), (1, 0));
}

/// With a shared token cache, a replica whose refresh waits for another replica's lock
/// (that one is stuck on a blackholed IAM) waits no longer than the attempt's limit,
/// not the lock's TTL (about 32 s) and its own IAM exchange after it.
#[tokio::test(start_paused = true)]
async fn the_wait_for_the_shared_cache_lock_is_bounded_by_the_attempt() {
    let emu = emulator().await;
    emu.set_latency(Route::Iam, BLACKHOLE);
    let store = Arc::new(InMemoryStore::new());
    let holder = token_manager(&emu, Some(store.clone()));
    let stuck = tokio::spawn(async move { holder.get_token().await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        seen(&emu),
        (1, 0),
        "the other replica holds the lock and waits on IAM"
    );

    let limit = Duration::from_secs(5);
    let service = stack::authenticated(
        reqwest::Client::new(),
        token_manager(&emu, Some(store)),
        limit,
    );
    let started = Instant::now();
    let error = service.oneshot(chat_request(&emu)).await.unwrap_err();
    assert_eq!(started.elapsed(), limit, "{error}");
    assert!(
        matches!(error.downcast_ref(), Some(TokenError::Deadline { limit: l, .. }) if *l == limit),
        "{error:?}"
    );
    says(&error.to_string(), &["IAM at", "did not answer within 5s"]);
    assert_eq!(seen(&emu), (1, 0), "this replica never reached IAM");
    stuck.abort();
}

/// The longest a call (`invoke`, `chat`, `models`) can take with the default settings,
/// from the defaults: every attempt uses its whole `request_timeout` (the wait for a token,
/// the resend after a 401 and the resend to a backup key included), every wait between
/// attempts is the backoff's ceiling or, if the server asks for longer with `Retry-After`,
/// up to `max_retry_after`, and reading the answer's body takes `request_timeout` once more.
/// With nothing ever answering, no body is read and no `Retry-After` comes.
fn default_worst_case(answered: bool) -> Duration {
    let retry = RetryConfig::default();
    let attempts = retry.max_attempts();
    let waits: Duration = (0..attempts - 1)
        .map(|retry_index| {
            let backoff = retry.backoff().ceiling(retry_index);
            if answered {
                backoff.max(retry.max_retry_after())
            } else {
                backoff
            }
        })
        .sum();
    let body = if answered {
        DEFAULT_REQUEST_TIMEOUT
    } else {
        Duration::ZERO
    };
    attempts * DEFAULT_REQUEST_TIMEOUT + waits + body
}

/// The figures the README states: 6 minutes at most, 3 minutes and 3 seconds when nothing
/// answers at all.
#[test]
fn the_default_worst_case_is_finite_and_as_documented() {
    assert_eq!(default_worst_case(true), Duration::from_secs(360));
    assert_eq!(default_worst_case(false), Duration::from_secs(183));
}

/// With every setting at its default, a blackholed IAM ends the call within the computed
/// worst case. The token fetch's own limit (3 IAM requests of `fetch_timeout` 10 s) is
/// shorter than an attempt, so each attempt ends with the fetch's `TokenError::Timeout`,
/// after about 30 s. The retry layer does not retry what the fetch already retried: one
/// fetch schedule, 3 IAM requests.
#[tokio::test(start_paused = true)]
async fn default_worst_case_with_a_blackholed_iam() {
    let emu = emulator().await;
    emu.set_latency(Route::Iam, BLACKHOLE);
    let llm = builder(&emu).build().unwrap();

    let started = Instant::now();
    let error = llm.invoke("hi").await.unwrap_err();
    let elapsed = started.elapsed();
    assert!(elapsed <= default_worst_case(false), "{elapsed:?}: {error}");
    assert!(
        matches!(token_error(&error), TokenError::Timeout { attempts: 3, .. }),
        "{error:?}"
    );
    says(
        &error.to_string(),
        &[&format!(
            "IAM at {} did not answer within 10s",
            emu.auth_url()
        )],
    );
    assert_eq!(seen(&emu), (FETCH_ATTEMPTS, 0));
}

/// With every setting at its default, an API that accepts and never answers ends the call
/// with `Error::Timeout(60 s)` after three attempts, within the computed worst case.
#[tokio::test(start_paused = true)]
async fn default_worst_case_with_a_blackholed_api() {
    let emu = emulator().await;
    let llm = builder(&emu).build().unwrap();
    llm.token_manager().get_token().await.unwrap();
    emu.set_latency(Route::Chat, BLACKHOLE);

    let started = Instant::now();
    let error = llm.invoke("hi").await.unwrap_err();
    let elapsed = started.elapsed();
    assert!(
        elapsed >= ATTEMPTS as u32 * DEFAULT_REQUEST_TIMEOUT
            && elapsed <= default_worst_case(false),
        "{elapsed:?}: {error}"
    );
    assert!(
        matches!(error, Error::Timeout(limit) if limit == DEFAULT_REQUEST_TIMEOUT),
        "{error:?}"
    );
    assert_eq!(seen(&emu), (1, ATTEMPTS));
}
