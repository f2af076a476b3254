//! The pool's configuration file: what a good file gives, and each mistake's exact error.

use std::ops::Deref;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use evolution_client::config_file::{ConfigFileError, PoolConfig};
use evolution_client::pool::Strategy;
use evolution_client::{Error, EvolutionInference};
use secrecy::ExposeSecret;

/// Secrets of the files and variables below: no error or `Debug` may show them.
const SECRETS: [&str; 3] = [
    "iam-secret-never-shown",
    "api-key-never-shown",
    "sk-123/inline+",
];

/// A file of the temporary directory, removed when dropped.
struct TempFile(PathBuf);

impl Deref for TempFile {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for TempFile {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Writes `text` to a file of its own for test `name`, with permission bits `mode`.
fn write(name: &str, text: &str, mode: u32) -> TempFile {
    let path = std::env::temp_dir().join(format!(
        "evolution-config-file-{}-{name}.toml",
        std::process::id()
    ));
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    TempFile(path)
}

/// The variables the files name, without touching the process's environment.
fn env(name: &str) -> Option<String> {
    match name {
        "MAIN_SECRET" => Some("iam-secret-never-shown".to_owned()),
        "SPARE_KEY" => Some(" api-key-never-shown\n".to_owned()),
        "EMPTY_SECRET" => Some("  ".to_owned()),
        _ => None,
    }
}

fn load(name: &str, text: &str, mode: u32) -> (TempFile, Result<PoolConfig, ConfigFileError>) {
    let path = write(name, text, mode);
    let loaded = PoolConfig::load_with(&path, env);
    (path, loaded)
}

/// The error's message, checked for secrets, with the file's path written `FILE`.
fn mistake(name: &str, text: &str, mode: u32) -> String {
    let (path, loaded) = load(name, text, mode);
    let error = loaded.expect_err(name);
    let message = error.to_string();
    for secret in SECRETS {
        assert!(!message.contains(secret), "{message}");
        assert!(!format!("{error:?}").contains(secret), "{error:?}");
    }
    assert_eq!(error.path(), &*path);
    message.replace(&path.display().to_string(), "FILE")
}

const MAIN: &str = r#"
[[deployment]]
name = "main"
key_id = "key-1"
secret_env = "MAIN_SECRET"
"#;

#[test]
fn a_good_file_gives_its_deployments_and_strategy() {
    let text = format!(
        r#"strategy = "weighted"
{MAIN}rpm = 600
tpm = 100000
weight = 3

[[deployment]]
name = "spare"
api_key_env = "SPARE_KEY"
base_url = "https://other.example/v1"
model = "other-model"

[[deployment]]
name = "inline"
api_key = "sk-123/inline+"

[gateway]
listen = "0.0.0.0:8080"
"#
    );
    let (path, loaded) = load("good", &text, 0o600);
    let config = loaded.unwrap();
    assert_eq!(config.path(), &*path);
    assert_eq!(config.strategy(), Some(Strategy::Weighted));
    assert_eq!(config.ignored_keys(), ["gateway"]);
    let names: Vec<_> = config.deployments().iter().map(|d| d.name()).collect();
    assert_eq!(names, ["main", "spare", "inline"]);
    let [main, spare, inline] = config.deployments() else {
        unreachable!()
    };
    assert_eq!(main.credentials().key_id(), "key-1");
    assert_eq!(
        main.credentials().secret().expose_secret(),
        "iam-secret-never-shown"
    );
    assert!(spare.credentials().is_api_key());
    assert_eq!(
        spare.credentials().secret().expose_secret(),
        "api-key-never-shown"
    );
    assert_eq!(
        inline.credentials().secret().expose_secret(),
        "sk-123/inline+"
    );
    let debug = format!("{config:?}");
    for secret in SECRETS {
        assert!(!debug.contains(secret), "{debug}");
    }
}

#[test]
fn a_file_without_a_strategy_leaves_the_builders() {
    let (_, loaded) = load("no_strategy", MAIN, 0o600);
    assert_eq!(loaded.unwrap().strategy(), None);
}

#[test]
fn a_good_file_builds_a_client() {
    // `MAIN_SECRET` is not in the environment: `secret` instead, in a private file.
    let text = "strategy = \"least_loaded\"\n[[deployment]]\nname = \"main\"\nkey_id = \"k\"\nsecret = \"s\"\n";
    let path = write("builds", text, 0o600);
    let built = EvolutionInference::builder()
        .model("m")
        .base_url("https://api.example/v1")
        .config_file(&*path)
        .build()
        .unwrap();
    let names: Vec<&str> = built.deployments().iter().map(|d| d.name()).collect();
    assert_eq!(names, ["main"]);
    assert_eq!(built.token_manager().key_id().as_ref(), "k");
}

#[test]
fn the_builder_reports_the_files_mistakes_as_config_file() {
    let path = write("builder", "strategy = \"fastest\"\n", 0o600);
    let error = EvolutionInference::builder()
        .model("m")
        .base_url("https://api.example/v1")
        .config_file(&*path)
        .build()
        .unwrap_err();
    let Error::Config { field, .. } = &error else {
        panic!("{error:?}")
    };
    assert_eq!(*field, "config_file");
    assert_eq!(
        error.to_string(),
        format!(
            "invalid configuration of `config_file`: {}:1:12: field `strategy`: unknown strategy `fastest`: use ordered, round_robin, weighted or least_loaded",
            path.display()
        )
    );
}

#[test]
fn the_file_and_the_top_level() {
    let missing = std::env::temp_dir().join("evolution-config-file-missing/pool.toml");
    let error = PoolConfig::load_with(&missing, env).unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "{}: cannot read it (No such file or directory (os error 2)): check the path and that this user may read the file",
            missing.display()
        )
    );
    assert_eq!((error.line(), error.field()), (None, None));

    let cases: &[(&str, &str, &str)] = &[
        (
            "syntax",
            "strategy = \"round_robin\n",
            "FILE:1:24: not valid TOML: invalid basic string, expected `\"`",
        ),
        (
            "strategy_type",
            "strategy = 1\n",
            "FILE:1:12: field `strategy`: must be a string (in quotes), not an integer: use ordered, round_robin, weighted or least_loaded",
        ),
        (
            "strategy_near_miss",
            "stratgy = \"weighted\"\n",
            "FILE:1:1: field `stratgy`: unknown key: did you mean `strategy`?",
        ),
        (
            "deployments_near_miss",
            "[[deployments]]\nname = \"main\"\n",
            "FILE:1:3: field `deployments`: unknown key: did you mean `deployment`?",
        ),
        (
            "no_deployment",
            "strategy = \"ordered\"\n[gateway]\n",
            "FILE: field `deployment`: no deployment: add a `[[deployment]]` section with a name and a key for each key",
        ),
        (
            "empty_deployments",
            "deployment = []\n",
            "FILE:1:14: field `deployment`: no deployment: add a `[[deployment]]` section with a name and a key for each key",
        ),
        (
            "one_bracket",
            "[deployment]\nname = \"main\"\n",
            "FILE:1:1: field `deployment`: must be an array of tables, not a table: write `[[deployment]]`, with two brackets, above each deployment",
        ),
        (
            "deployment_not_a_table",
            "deployment = [\"main\"]\n",
            "FILE:1:15: deployment #1: must be a table, not a string: write each deployment as a `[[deployment]]` section",
        ),
    ];
    for (name, text, expected) in cases {
        assert_eq!(mistake(name, text, 0o600), *expected, "{name}");
    }
}

#[test]
fn at_most_64_deployments() {
    let deployment =
        |n: usize| format!("[[deployment]]\nname = \"d{n}\"\napi_key_env = \"SPARE_KEY\"\n");
    let text: String = (1..=64).map(deployment).collect();
    let (_, loaded) = load("64", &text, 0o600);
    assert_eq!(loaded.unwrap().deployments().len(), 64);
    let text: String = (1..=65).map(deployment).collect();
    assert_eq!(
        mistake("65", &text, 0o600),
        "FILE:193:1: deployment #65: 65 deployments, more than the 64 a pool holds: split them between clients"
    );
}

#[test]
fn names() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "missing_name",
            "[[deployment]]\nkey_id = \"k\"\n",
            "FILE:1:1: deployment #1, field `name`: missing: give each deployment a name, its label in metrics and logs",
        ),
        (
            "empty_name",
            "[[deployment]]\nname = \" \"\n",
            "FILE:2:8: deployment #1, field `name`: must not be empty",
        ),
        (
            "name_type",
            "[[deployment]]\nname = 5\n",
            "FILE:2:8: deployment #1, field `name`: must be a string (in quotes), not an integer",
        ),
    ];
    for (name, text, expected) in cases {
        assert_eq!(mistake(name, text, 0o600), *expected, "{name}");
    }
    let duplicate = format!("{MAIN}{}", MAIN.replace("key-1", "key-2"));
    let path = write("duplicate", &duplicate, 0o600);
    let error = PoolConfig::load_with(&path, env).unwrap_err();
    assert_eq!(
        error.message(),
        "`main` is also the name of deployment #1: names label metrics and logs, so each must be different"
    );
    assert_eq!(
        (error.deployment_position(), error.deployment_name()),
        (Some(2), None)
    );
    assert_eq!(
        (error.field(), error.line(), error.column()),
        (Some("name"), Some(8), Some(8))
    );
}

#[test]
fn unknown_keys_in_a_deployment() {
    let misspelled = MAIN.replace("secret_env", "secret_evn");
    assert_eq!(
        mistake("secret_evn", &misspelled, 0o600),
        "FILE:5:1: deployment `main`, field `secret_evn`: unknown key: did you mean `secret_env`?"
    );
    assert_eq!(
        mistake("region", &format!("{MAIN}region = \"ru-1\"\n"), 0o600),
        "FILE:6:1: deployment `main`, field `region`: unknown key: the keys of a deployment are name, key_id, secret_env, secret, api_key_env, api_key, base_url, model, rpm, tpm, weight"
    );
}

#[test]
fn keys() {
    let named = |rest: &str| format!("[[deployment]]\nname = \"main\"\n{rest}");
    let cases = [
        (
            "no_key",
            named(""),
            "FILE:1:1: deployment `main`, field `key_id`: missing: give the deployment a key, `key_id` with `secret_env` (or `secret`) for an IAM access key, or `api_key_env` (or `api_key`) for an API key",
        ),
        (
            "no_secret",
            named("key_id = \"k\"\n"),
            "FILE:1:1: deployment `main`, field `secret_env`: missing: `key_id` needs `secret_env` (the variable holding the secret) or `secret`",
        ),
        (
            "no_key_id",
            named("secret_env = \"MAIN_SECRET\"\n"),
            "FILE:1:1: deployment `main`, field `key_id`: missing: `secret_env` (or `secret`) needs `key_id`, the id of the access key",
        ),
        (
            "both_secrets",
            named("key_id = \"k\"\nsecret_env = \"MAIN_SECRET\"\nsecret = \"sk-123/inline+\"\n"),
            "FILE:5:10: deployment `main`, field `secret`: both `secret_env` and `secret` are set: keep one, preferably `secret_env`",
        ),
        (
            "both_api_keys",
            named("api_key_env = \"SPARE_KEY\"\napi_key = \"sk-123/inline+\"\n"),
            "FILE:4:11: deployment `main`, field `api_key`: both `api_key_env` and `api_key` are set: keep one, preferably `api_key_env`",
        ),
        (
            "iam_and_api_key",
            named("key_id = \"k\"\nsecret_env = \"MAIN_SECRET\"\napi_key_env = \"SPARE_KEY\"\n"),
            "FILE:5:15: deployment `main`, field `api_key_env`: both `key_id` and `api_key_env` are set: a deployment has one key: keep `key_id` with `secret_env` for an IAM access key, or `api_key_env` for an API key",
        ),
        (
            "unset_variable",
            named("key_id = \"k\"\nsecret_env = \"NOT_SET_ANYWHERE\"\n"),
            "FILE:4:14: deployment `main`, field `secret_env`: the variable NOT_SET_ANYWHERE is not set: set it to the secret, or name another variable",
        ),
        (
            "empty_variable",
            named("api_key_env = \"EMPTY_SECRET\"\n"),
            "FILE:3:15: deployment `main`, field `api_key_env`: the variable EMPTY_SECRET is empty: set it to the secret",
        ),
        (
            // A secret put where its variable's name goes is not quoted back.
            "secret_as_variable",
            named("key_id = \"k\"\nsecret_env = \"sk-123/inline+\"\n"),
            "FILE:4:14: deployment `main`, field `secret_env`: not a variable name (letters, digits and `_`): give the name of the environment variable that holds the secret",
        ),
        (
            "secret_type",
            named("key_id = \"k\"\nsecret = 12345\n"),
            "FILE:4:10: deployment `main`, field `secret`: must be a string (in quotes), not an integer",
        ),
    ];
    for (name, text, expected) in cases {
        assert_eq!(mistake(name, &text, 0o600), expected, "{name}");
    }
}

#[test]
fn an_inline_secret_needs_a_private_file() {
    let iam = "[[deployment]]\nname = \"main\"\nkey_id = \"k\"\nsecret = \"sk-123/inline+\"\n";
    let api = "[[deployment]]\nname = \"main\"\napi_key = \"sk-123/inline+\"\n";
    for (mode, shown) in [
        (0o644, "644"),
        (0o640, "640"),
        (0o604, "604"),
        (0o660, "660"),
    ] {
        let expected = format!(
            "FILE:4:10: deployment `main`, field `secret`: a secret written in a file that group or others may read (mode {shown}): run `chmod 600 FILE`, or give the name of a variable holding it in `secret_env`"
        );
        assert_eq!(mistake(&format!("iam_{shown}"), iam, mode), expected);
    }
    assert_eq!(
        mistake("api_644", api, 0o644),
        "FILE:3:11: deployment `main`, field `api_key`: a secret written in a file that group or others may read (mode 644): run `chmod 600 FILE`, or give the name of a variable holding it in `api_key_env`"
    );
    for (name, text) in [("iam_600", iam), ("api_400", api)] {
        let mode = if name == "iam_600" { 0o600 } else { 0o400 };
        let (_, loaded) = load(name, text, mode);
        assert_eq!(loaded.unwrap().deployments().len(), 1, "{name}");
    }
    // Variables, not secrets, in a file anyone may read.
    let (_, loaded) = load("variables_644", MAIN, 0o644);
    assert_eq!(loaded.unwrap().deployments().len(), 1);
}

#[test]
fn numbers_and_urls() {
    let with = |line: &str| format!("{MAIN}{line}\n");
    let range = "must be a whole number from 1 to 4294967295";
    let cases = [
        ("rpm_negative", "rpm = -5", format!("FILE:6:7: deployment `main`, field `rpm`: {range}, not -5: leave it out for no limit")),
        ("rpm_zero", "rpm = 0", format!("FILE:6:7: deployment `main`, field `rpm`: {range}, not 0: leave it out for no limit")),
        ("tpm_huge", "tpm = 4294967296", format!("FILE:6:7: deployment `main`, field `tpm`: {range}, not 4294967296: leave it out for no limit")),
        ("tpm_float", "tpm = 1.5", format!("FILE:6:7: deployment `main`, field `tpm`: {range}, not a float: leave it out for no limit")),
        ("rpm_string", "rpm = \"600\"", format!("FILE:6:7: deployment `main`, field `rpm`: {range}, not a string: leave it out for no limit")),
        ("weight_zero", "weight = 0", format!("FILE:6:10: deployment `main`, field `weight`: {range}, not 0: leave it out for 1")),
        ("model_empty", "model = \"\"", "FILE:6:9: deployment `main`, field `model`: must not be empty".to_owned()),
        ("base_url_relative", "base_url = \"api.example/v1\"", "FILE:6:12: deployment `main`, field `base_url`: not a URL (relative URL without a base): use an https:// URL ending in /v1".to_owned()),
        ("base_url_scheme", "base_url = \"ftp://api.example/v1\"", "FILE:6:12: deployment `main`, field `base_url`: the scheme is `ftp`: use an https:// URL ending in /v1".to_owned()),
    ];
    for (name, line, expected) in cases {
        assert_eq!(mistake(name, &with(line), 0o600), expected, "{name}");
    }
    let (_, loaded) = load("largest", &with("rpm = 4294967295"), 0o600);
    assert!(loaded.is_ok(), "{loaded:?}");
}

#[test]
fn files_that_are_not_toml_text() {
    let path = write("binary", "", 0o600);
    std::fs::write(&path, [0xff, 0xfe, 0x00]).unwrap();
    let error = PoolConfig::load_with(&path, env).unwrap_err();
    assert_eq!(
        error.message(),
        "not UTF-8 text: is it the pool's TOML file?"
    );
    let path = write("large", &"# comment\n".repeat(110_000), 0o600);
    let error = PoolConfig::load_with(&path, env).unwrap_err();
    assert_eq!(
        error.message(),
        "larger than 1 MiB: is it the pool's TOML file?"
    );
}

/// `EVOLUTION_CONFIG` is read by `from_env`, and `from_config` names its own file: checked in
/// a child process (this binary, running [`child_reads_evolution_config`]), as the process's
/// environment is not the tests' to change.
#[test]
fn from_env_reads_evolution_config() {
    let unknown = write("env_unknown", "strategy = \"fastest\"\n", 0o600);
    let near_miss = write("env_near_miss", "stratgy = \"weighted\"\n", 0o600);
    let good = write(
        "env_good",
        "[[deployment]]\nname = \"only\"\nkey_id = \"k\"\nsecret = \"s\"\n",
        0o600,
    );
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "config_file::child_reads_evolution_config",
            "--exact",
            "--ignored",
            "--test-threads=1",
        ])
        .current_dir(unknown.parent().unwrap())
        .env("EVOLUTION_CHILD_OF", "from_env_reads_evolution_config")
        .env("EVOLUTION_CONFIG", &*unknown)
        .env("EVOLUTION_CHILD_NEAR_MISS", &*near_miss)
        .env("EVOLUTION_MODEL", "m")
        .env("EVOLUTION_BASE_URL", "https://api.example/v1")
        .env("EVOLUTION_CHILD_GOOD", &*good)
        .env_remove("EVOLUTION_KEY_ID")
        .env_remove("EVOLUTION_SECRET")
        .env_remove("EVOLUTION_API_KEY")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
#[ignore = "the child half of from_env_reads_evolution_config, which sets its environment"]
fn child_reads_evolution_config() {
    if std::env::var("EVOLUTION_CHILD_OF").as_deref() != Ok("from_env_reads_evolution_config") {
        return;
    }
    let unknown = std::env::var("EVOLUTION_CONFIG").unwrap();
    let error = EvolutionInference::from_env().unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "invalid configuration of `config_file`: {unknown}:1:12: field `strategy`: unknown strategy `fastest`: use ordered, round_robin, weighted or least_loaded"
        )
    );
    let near_miss = std::env::var("EVOLUTION_CHILD_NEAR_MISS").unwrap();
    let error = EvolutionInference::from_config(&near_miss).unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "invalid configuration of `config_file`: {near_miss}:1:1: field `stratgy`: unknown key: did you mean `strategy`?"
        )
    );
    // No EVOLUTION_KEY_ID or EVOLUTION_SECRET: the file's deployments carry the keys.
    let good = std::env::var("EVOLUTION_CHILD_GOOD").unwrap();
    let llm = EvolutionInference::from_config(&good).unwrap();
    assert_eq!(llm.deployments()[0].name(), "only");
}

#[test]
fn local_fraction_is_a_share_of_each_limit() {
    let (_path, loaded) = load("fraction", &format!("local_fraction = 0.25\n{MAIN}"), 0o600);
    assert_eq!(loaded.unwrap().local_fraction(), Some(0.25));
    let (_path, loaded) = load(
        "fraction_one",
        &format!("local_fraction = 1\n{MAIN}"),
        0o600,
    );
    assert_eq!(loaded.unwrap().local_fraction(), Some(1.0));
    for (name, value) in [("zero", "0.0"), ("above", "1.5"), ("negative", "-0.5")] {
        assert_eq!(
            mistake(name, &format!("local_fraction = {value}\n{MAIN}"), 0o600),
            "FILE:1:18: field `local_fraction`: must be above 0 and at most 1: the share of each limit a replica keeps while Redis is unreachable, e.g. 0.5",
            "{name}"
        );
    }
    assert_eq!(
        mistake("text", &format!("local_fraction = \"half\"\n{MAIN}"), 0o600),
        "FILE:1:18: field `local_fraction`: must be a number, not a string: the share of each limit a replica keeps while Redis is unreachable, e.g. 0.5"
    );
}

#[test]
fn the_builder_refuses_a_local_fraction_out_of_range() {
    let error = EvolutionInference::builder()
        .model("m")
        .base_url("https://api.example/v1")
        .key_id("k")
        .secret("s")
        .rate_limit_local_fraction(0.0)
        .build()
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "invalid configuration of `rate_limit_local_fraction`: must be above 0 and at most 1 (the share of each limit a replica keeps while Redis is unreachable)"
    );
}
