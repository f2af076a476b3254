//! Whole stacks against the emulator: per key an `AuthLayer` (own `TokenManager`) over reqwest,
//! `Fallback` above them. The emulator's answer names the key that served it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use evolution_emulator::{DEMO_MODEL, Emulator, Fault, Route};
use evolution_fallback::{BothKeysRejected, EndpointFailure, Failback, Fallback, SwitchPolicy};
use evolution_testkit::transport;
use evolution_token::{AuthLayer, BoxError, Credentials, TokenManager};
use http::{Request, Response, StatusCode};
use tower::util::BoxCloneSyncService;
use tower::{Layer, Service, ServiceExt};

type Side = BoxCloneSyncService<Request<Bytes>, Response<Bytes>, BoxError>;

const PRIMARY: &str = "primary-key";
const BACKUP: &str = "backup-key";

struct Setup {
    emu: Emulator,
    primary: TokenManager,
    backup: TokenManager,
}

impl Setup {
    async fn start() -> Self {
        let emu = Emulator::builder()
            .key(PRIMARY, "p-secret-do-not-print")
            .key(BACKUP, "b-secret-do-not-print")
            .start()
            .await
            .expect("emulator starts");
        let tokens = |key: &str, secret: &str| {
            TokenManager::builder(Credentials::new(key, secret))
                .auth_url(emu.auth_url())
                .build()
                .expect("valid configuration")
        };
        let primary = tokens(PRIMARY, "p-secret-do-not-print");
        let backup = tokens(BACKUP, "b-secret-do-not-print");
        Self {
            emu,
            primary,
            backup,
        }
    }

    fn fallback(&self) -> Fallback<Side, Side> {
        Fallback::new(side(&self.primary), side(&self.backup))
            .key_ids_from(&self.primary, &self.backup)
    }

    fn request(&self, content: &str) -> Request<Bytes> {
        let body = serde_json::json!({
            "model": DEMO_MODEL,
            "messages": [{ "role": "user", "content": content }],
        });
        Request::post(format!("{}/chat/completions", self.emu.base_url()))
            .header("content-type", "application/json")
            .body(Bytes::from(serde_json::to_vec(&body).unwrap()))
            .unwrap()
    }
}

/// One key's stack.
fn side(tokens: &TokenManager) -> Side {
    BoxCloneSyncService::new(AuthLayer::new(tokens.clone()).layer(transport()))
}

/// Sends one chat request; the answer's content, e.g. `"[backup-key] echo: hi"`.
async fn ask<S>(service: &S, request: Request<Bytes>) -> Result<String, BoxError>
where
    S: Service<Request<Bytes>, Response = Response<Bytes>, Error = BoxError> + Clone,
{
    let response = service.clone().oneshot(request).await?;
    if response.status() != StatusCode::OK {
        return Err(format!("status {}", response.status()).into());
    }
    let body: serde_json::Value = serde_json::from_slice(response.body())?;
    Ok(body["choices"][0]["message"]["content"]
        .as_str()
        .expect("a content string")
        .to_owned())
}

fn served_by(content: &str) -> &str {
    content
        .strip_prefix('[')
        .and_then(|rest| rest.split_once(']'))
        .map(|(key, _)| key)
        .expect("the answer names its key")
}

#[tokio::test]
async fn primary_disabled_at_iam_every_call_uses_the_backup() {
    let setup = Setup::start().await;
    setup.emu.disable_key(PRIMARY);
    let service = setup.fallback();
    let handle = service.handle();

    for n in 0..5 {
        let content = ask(&service, setup.request(&format!("call {n}")))
            .await
            .unwrap();
        assert_eq!(content, format!("[{BACKUP}] echo: call {n}"));
    }
    assert!(!handle.using_primary());
    assert_eq!(handle.switches(), 1);
    let stats = setup.emu.stats();
    assert_eq!(
        stats.iam_requests_for(PRIMARY),
        1,
        "only the first call tried it"
    );
    assert_eq!(stats.chat_requests_for(PRIMARY), 0);
    assert_eq!(stats.chat_requests_for(BACKUP), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn primary_revoked_under_64_concurrent_callers_no_call_fails() {
    const CALLERS: usize = 64;
    const CALLS: usize = 12;
    let setup = Arc::new(Setup::start().await);
    let service = setup.fallback();
    let handle = service.handle();
    // Boxed as the client boxes its stack: a spawned `async` block that awaits a tower
    // middleware over `BoxError` services directly trips rust-lang/rust#64552.
    let service = BoxCloneSyncService::new(service);
    let done = Arc::new(AtomicUsize::new(0));
    // Every caller makes its first calls on the primary, then waits for the revocation,
    // so that the rest of its calls are certainly made after it.
    let (revoked_tx, revoked_rx) = tokio::sync::watch::channel(false);

    let callers: Vec<_> = (0..CALLERS)
        .map(|caller| {
            let (setup, service, done) = (setup.clone(), service.clone(), done.clone());
            let mut revoked = revoked_rx.clone();
            tokio::spawn(async move {
                let mut served = Vec::new();
                for call in 0..CALLS {
                    if call == 2 {
                        revoked.wait_for(|revoked| *revoked).await.unwrap();
                    }
                    let request = setup.request(&format!("{caller}/{call}"));
                    let content = ask(&service, request).await.unwrap_or_else(|error| {
                        panic!("caller {caller} call {call} failed: {error}")
                    });
                    served.push(served_by(&content).to_owned());
                    done.fetch_add(1, Ordering::Relaxed);
                }
                served
            })
        })
        .collect();

    // Mid-run: the primary's tokens are revoked and the key disabled, so its refresh fails too.
    while done.load(Ordering::Relaxed) < CALLERS * 2 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    setup.emu.disable_key(PRIMARY);
    setup.emu.revoke_key(PRIMARY);
    revoked_tx.send_replace(true);

    for caller in callers {
        let served = caller.await.expect("no call failed");
        assert!(served[..2].iter().all(|key| key == PRIMARY), "{served:?}");
        assert_eq!(served.last().map(String::as_str), Some(BACKUP));
    }
    assert_eq!(handle.switches(), 1, "exactly one switch");
    assert!(!handle.using_primary());
    let stats = setup.emu.stats();
    assert!(stats.chat_requests_for(PRIMARY) >= (CALLERS * 2) as u64);
    assert!(stats.chat_requests_for(BACKUP) > 0);
}

async fn failback_scenario(failback: Failback) -> (String, u64) {
    let interval = Duration::from_secs(60);
    let setup = Setup::start().await;
    setup.emu.disable_key(PRIMARY);
    let service = setup.fallback().failback(failback);
    let handle = service.handle();

    let content = ask(&service, setup.request("while disabled"))
        .await
        .unwrap();
    assert_eq!(served_by(&content), BACKUP);
    setup.emu.enable_key(PRIMARY);

    tokio::time::advance(interval - Duration::from_secs(1)).await;
    let content = ask(&service, setup.request("too early")).await.unwrap();
    assert_eq!(served_by(&content), BACKUP);

    tokio::time::advance(Duration::from_secs(2)).await;
    let mut last = String::new();
    for n in 0..3 {
        last = ask(&service, setup.request(&format!("after {n}")))
            .await
            .unwrap();
    }
    (served_by(&last).to_owned(), handle.switches())
}

#[tokio::test(start_paused = true)]
async fn after_the_interval_calls_go_back_to_the_re_enabled_primary() {
    let (served, switches) = failback_scenario(Failback::After(Duration::from_secs(60))).await;
    assert_eq!(served, PRIMARY);
    assert_eq!(switches, 2);
}

#[tokio::test(start_paused = true)]
async fn with_failback_never_calls_stay_on_the_backup() {
    let (served, switches) = failback_scenario(Failback::Never).await;
    assert_eq!(served, BACKUP);
    assert_eq!(switches, 1);
}

#[tokio::test]
async fn rotate_moves_traffic() {
    let setup = Setup::start().await;
    let service = setup.fallback();
    let handle = service.handle();

    let content = ask(&service, setup.request("one")).await.unwrap();
    assert_eq!(served_by(&content), PRIMARY);
    handle.rotate();
    let content = ask(&service, setup.request("two")).await.unwrap();
    assert_eq!(served_by(&content), BACKUP);
    handle.rotate();
    let content = ask(&service, setup.request("three")).await.unwrap();
    assert_eq!(served_by(&content), PRIMARY);
    assert_eq!(handle.switches(), 2);
}

#[tokio::test]
async fn both_keys_disabled_fail_fast_with_one_error_naming_both() {
    const CALLS: u64 = 5;
    let setup = Setup::start().await;
    setup.emu.disable_key(PRIMARY);
    setup.emu.disable_key(BACKUP);
    let service = setup.fallback();
    let started = tokio::time::Instant::now();

    for _ in 0..CALLS {
        let error = ask(&service, setup.request("hi")).await.unwrap_err();
        let both = error
            .downcast_ref::<BothKeysRejected>()
            .unwrap_or_else(|| panic!("a BothKeysRejected, got {error}"));
        let message = both.to_string();
        assert!(message.contains(PRIMARY), "{message}");
        assert!(message.contains(BACKUP), "{message}");
        assert!(!message.contains("secret-do-not-print"), "{message}");
        assert!(both.primary().token_error().unwrap().is_auth());
        assert!(both.backup().token_error().unwrap().is_auth());
    }
    assert!(started.elapsed() < Duration::from_secs(5), "quickly");

    // No storm: one IAM request per side, for the first call; the later calls get each
    // key's refusal from its token manager's failure backoff. Nothing reached the API.
    let stats = setup.emu.stats();
    assert_eq!(stats.iam_requests_for(PRIMARY), 1);
    assert_eq!(stats.iam_requests_for(BACKUP), 1);
    assert_eq!(stats.chat_requests, 0);
    assert_eq!(service.handle().switches(), 1);
}

#[tokio::test]
async fn a_403_from_the_api_switches() {
    let setup = Setup::start().await;
    let service = setup.fallback();
    setup.emu.push_fault(Route::Chat, Fault::status(403));
    let content = ask(&service, setup.request("hi")).await.unwrap();
    assert_eq!(served_by(&content), BACKUP);
    assert_eq!(service.handle().switches(), 1);
}

async fn after_a_503<Pol>(
    service: Fallback<Side, Side, Pol>,
    setup: &Setup,
) -> Result<String, BoxError>
where
    Pol: SwitchPolicy + Clone,
{
    setup.emu.push_fault(Route::Chat, Fault::status(503));
    ask(&service, setup.request("hi")).await
}

#[tokio::test]
async fn a_5xx_from_the_primary_does_not_switch_by_default() {
    let setup = Setup::start().await;
    let service = setup.fallback();
    let error = after_a_503(service.clone(), &setup).await.unwrap_err();
    assert_eq!(error.to_string(), "status 503 Service Unavailable");
    assert!(service.handle().using_primary());
    assert_eq!(setup.emu.stats().chat_requests_for(BACKUP), 0);
}

#[tokio::test]
async fn a_5xx_from_the_primary_switches_with_endpoint_fallback() {
    let setup = Setup::start().await;
    let service = setup.fallback().policy(EndpointFailure);
    let content = after_a_503(service.clone(), &setup).await.unwrap();
    assert_eq!(served_by(&content), BACKUP);
    assert!(!service.handle().using_primary());
}
