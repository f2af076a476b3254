//! Issue 19's scenarios from the command line: `evolution bench` and `evolution token` over
//! a pool file (`--config`), against the emulator. The rate limits shared by two processes
//! through a real redis-server are in `pool_redis.rs`.
//!
//! Every command runs with the inherited `EVOLUTION_*` variables removed, in an empty
//! temporary directory (so no `.env` is read).

#[path = "support/pool.rs"]
mod support;

use evolution_emulator::{Emulator, Fault};

use self::support::{Scratch, bench, evolution};

/// Three keys: one disabled at IAM, one answering 429 with `Retry-After: 30`, one healthy.
async fn mixed_keys() -> Emulator {
    Emulator::builder()
        .key("disabled", "secret-1")
        .key("limited", "secret-2")
        .key("healthy", "secret-3")
        .disable_key("disabled")
        .key_fault(
            "limited",
            Fault::status(429).with_header("retry-after", "30"),
        )
        .start()
        .await
        .unwrap()
}

const MIXED: &str = r#"
strategy = "round_robin"

[[deployment]]
name = "disabled"
key_id = "disabled"
secret_env = "DISABLED_SECRET"

[[deployment]]
name = "limited"
key_id = "limited"
secret_env = "LIMITED_SECRET"

[[deployment]]
name = "healthy"
key_id = "healthy"
secret_env = "HEALTHY_SECRET"
"#;

const SECRETS: [(&str, &str); 3] = [
    ("DISABLED_SECRET", "secret-1"),
    ("LIMITED_SECRET", "secret-2"),
    ("HEALTHY_SECRET", "secret-3"),
];

#[tokio::test(flavor = "multi_thread")]
async fn mixed_keys_every_call_of_a_bench_succeeds() {
    let emu = mixed_keys().await;
    let scratch = Scratch::new();
    let config = scratch.file("pool.toml", MIXED);
    let report = bench(
        &emu,
        &config,
        &SECRETS,
        &["--requests", "90", "--concurrency", "3"],
    )
    .await;
    assert_eq!(report["ok"], 90, "{report}");
    assert_eq!(report["errors"], 0, "{report}");
    let stats = emu.stats();
    assert_eq!(stats.chat_requests_for("healthy"), 90);
    assert_eq!(
        stats.iam_requests_for("disabled"),
        1,
        "cooled after one refusal"
    );
    // One 429 (or one per caller racing it), then cooling for 30 s: not one per call.
    assert!(stats.api_requests_for("limited") <= 3, "{stats:?}");
    let deployments = report["deployments"].as_array().unwrap();
    let states: Vec<(&str, &str, u64)> = deployments
        .iter()
        .map(|d| {
            (
                d["name"].as_str().unwrap(),
                d["state"].as_str().unwrap(),
                d["served"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        states,
        [
            ("disabled", "cooling", 0),
            ("limited", "cooling", 0),
            ("healthy", "healthy", 90)
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn token_checks_every_key_of_the_file() {
    let emu = mixed_keys().await;
    let scratch = Scratch::new();
    let config = scratch.file("pool.toml", MIXED);
    let output = evolution(&emu, &config, &SECRETS, &["token"]).await;
    // The disabled key fails the command (exit 3, a rejected key) after every key was tried.
    assert_eq!(output.status.code(), Some(3), "{output:?}");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let names: Vec<&str> = report
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["deployment"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["disabled", "limited", "healthy"]);
    assert!(
        report[0]["error"].as_str().unwrap().contains("401"),
        "{report}"
    );
    assert_eq!(report[1]["key_id"], "limited");
    assert_eq!(report[2]["key_id"], "healthy");
    let stderr = String::from_utf8_lossy(&output.stderr);
    for (_, secret) in SECRETS {
        assert!(
            !stderr.contains(secret) && !String::from_utf8_lossy(&output.stdout).contains(secret)
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mistake_in_the_file_names_the_file_the_deployment_and_the_field() {
    let emu = mixed_keys().await;
    let scratch = Scratch::new();
    let config = scratch.file(
        "pool.toml",
        "[[deployment]]\nname = \"main\"\nkey_id = \"k\"\nsecret_env = \"NOT_SET_ANYWHERE\"\n",
    );
    let output = evolution(&emu, &config, &[], &["token"]).await;
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&*config.to_string_lossy()), "{stderr}");
    assert!(
        stderr.contains("deployment `main`, field `secret_env`"),
        "{stderr}"
    );
    assert!(stderr.contains("NOT_SET_ANYWHERE"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn token_checks_static_api_keys_with_the_api() {
    let emu = Emulator::builder()
        .key("iam", "secret-1")
        .api_key("good-api-key")
        .start()
        .await
        .unwrap();
    let scratch = Scratch::new();
    let config = scratch.file(
        "pool.toml",
        r#"
[[deployment]]
name = "iam"
key_id = "iam"
secret_env = "IAM_SECRET"

[[deployment]]
name = "good"
api_key_env = "GOOD_KEY"

[[deployment]]
name = "revoked"
api_key_env = "REVOKED_KEY"
"#,
    );
    let secrets = [
        ("IAM_SECRET", "secret-1"),
        ("GOOD_KEY", "good-api-key"),
        ("REVOKED_KEY", "revoked-api-key"),
    ];
    let output = evolution(&emu, &config, &secrets, &["token"]).await;
    assert_eq!(output.status.code(), Some(3), "{output:?}");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report[0]["key_id"], "iam");
    assert_eq!(report[1]["api_key"], true);
    assert!(
        report[1]["checked"]
            .as_str()
            .unwrap()
            .ends_with("/models: 200 OK"),
        "{report}"
    );
    assert!(
        report[2]["error"].as_str().unwrap().contains("401"),
        "{report}"
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    for (_, secret) in secrets {
        assert!(
            !stdout.contains(secret) && !stderr.contains(secret),
            "{stdout}{stderr}"
        );
    }
    // Each API key was checked by the API itself: one request each, none to IAM.
    assert_eq!(emu.stats().models_requests, 2);
}
