//! `dashboards/evolution.json` parses, queries only series the client exports, shows every
//! one of them, and can be filtered by the `client` label; `dashboards/gateway.json` does the
//! same for the gateway's series and the `instance` label.

use std::collections::BTreeSet;
use std::path::Path;

use evolution_client::metrics::names;
use serde_json::Value;

/// Every series evolution-metrics exports.
const SERIES: [&str; 17] = [
    names::REQUESTS_TOTAL,
    names::REQUEST_DURATION_SECONDS,
    names::REQUEST_ATTEMPTS,
    names::RETRIES_TOTAL,
    names::TOKEN_REFRESHES_TOTAL,
    names::TOKEN_REFRESH_DURATION_SECONDS,
    names::TOKEN_EXPIRES_IN_SECONDS,
    names::FALLBACK_ACTIVE,
    names::FALLBACK_SWITCHES_TOTAL,
    names::AUTH_ERRORS_TOTAL,
    names::DEPLOYMENT_REQUESTS_TOTAL,
    names::DEPLOYMENT_STATE,
    names::DEPLOYMENT_COOLDOWNS_TOTAL,
    names::DEPLOYMENT_IN_FLIGHT,
    names::RATE_LIMITED_TOTAL,
    names::TOKENS_TOTAL,
    names::TIME_TO_FIRST_CHUNK_SECONDS,
];

fn dashboard() -> Value {
    load("evolution.json")
}

fn load(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../dashboards")
        .join(name);
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("read {name}: {error}"));
    serde_json::from_str(&text).unwrap_or_else(|error| panic!("{name} is not JSON: {error}"))
}

/// Every PromQL expression of every panel (rows included).
fn expressions(panels: &Value, out: &mut Vec<String>) {
    for panel in panels.as_array().into_iter().flatten() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            out.push(
                target["expr"]
                    .as_str()
                    .expect("a target has an expr")
                    .to_owned(),
            );
        }
        expressions(&panel["panels"], out);
    }
}

/// The `evolution_*` series an expression reads, histogram suffixes removed.
fn series(expr: &str) -> impl Iterator<Item = String> + '_ {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|word| word.starts_with("evolution_"))
        .map(|word| {
            ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| word.strip_suffix(suffix))
                .unwrap_or(word)
                .to_owned()
        })
}

#[test]
fn queries_exactly_the_exported_series() {
    let dashboard = dashboard();
    let mut exprs = Vec::new();
    expressions(&dashboard["panels"], &mut exprs);
    assert!(!exprs.is_empty());

    let used: BTreeSet<String> = exprs.iter().flat_map(|expr| series(expr)).collect();
    let exported: BTreeSet<String> = SERIES.iter().map(|name| (*name).to_owned()).collect();
    assert_eq!(
        used, exported,
        "series the dashboard reads vs. series the client exports"
    );

    for expr in &exprs {
        assert!(
            expr.contains("client=~\"$client\""),
            "not filtered by the client variable: {expr}"
        );
    }
}

#[test]
fn has_a_client_variable() {
    let dashboard = dashboard();
    let variables = dashboard["templating"]["list"]
        .as_array()
        .expect("templating.list");
    let client = variables
        .iter()
        .find(|variable| variable["name"] == "client")
        .expect("a `client` variable");
    assert_eq!(client["includeAll"], true);
    // "All" must also match clients without the label.
    assert_eq!(client["allValue"], ".*");
    assert!(
        variables
            .iter()
            .any(|variable| variable["type"] == "datasource")
    );
}

/// Every series the gateway exports itself.
const GATEWAY_SERIES: [&str; 4] = [
    evolution_gateway::telemetry::REQUESTS_TOTAL,
    evolution_gateway::telemetry::REQUEST_DURATION_SECONDS,
    evolution_gateway::telemetry::TIME_TO_FIRST_CHUNK_SECONDS,
    evolution_gateway::telemetry::REQUESTS_IN_FLIGHT,
];

#[test]
fn the_gateway_dashboard_queries_exactly_the_gateway_series() {
    let dashboard = load("gateway.json");
    let mut exprs = Vec::new();
    expressions(&dashboard["panels"], &mut exprs);
    assert!(!exprs.is_empty());

    let used: BTreeSet<String> = exprs.iter().flat_map(|expr| series(expr)).collect();
    let exported: BTreeSet<String> = GATEWAY_SERIES
        .iter()
        .map(|name| (*name).to_owned())
        .collect();
    assert_eq!(
        used, exported,
        "series the gateway dashboard reads vs. series the gateway exports"
    );
    for expr in &exprs {
        assert!(
            expr.contains("instance=~\"$instance\""),
            "not filtered by the instance variable: {expr}"
        );
    }
    let variables = dashboard["templating"]["list"]
        .as_array()
        .expect("templating.list");
    let instance = variables
        .iter()
        .find(|variable| variable["name"] == "instance")
        .expect("an `instance` variable");
    assert_eq!(instance["allValue"], ".*");
    assert_ne!(dashboard["uid"], dashboard_uid_of_the_client());
}

fn dashboard_uid_of_the_client() -> Value {
    dashboard()["uid"].clone()
}
