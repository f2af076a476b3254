//! Settings `Gateway::new` refuses, each with the error naming what to fix.

use evolution_client::EvolutionInference;
use evolution_gateway::{ConfigError, Gateway, GatewayConfig, GatewayKeys};

fn client() -> EvolutionInference {
    EvolutionInference::builder()
        .model("m")
        .key_id("k")
        .secret("config-test-secret-0042")
        .base_url("http://127.0.0.1:9/v1")
        .build()
        .unwrap()
}

fn refused(config: GatewayConfig) -> ConfigError {
    match Gateway::new(client(), config) {
        Err(error) => error,
        Ok(gateway) => panic!("accepted: {gateway:?}"),
    }
}

#[test]
fn a_public_address_needs_keys() {
    for listen in ["0.0.0.0:8080", "[::]:8080", "192.0.2.1:80"] {
        let error = refused(GatewayConfig {
            listen: listen.parse().unwrap(),
            ..GatewayConfig::default()
        });
        assert!(
            matches!(error, ConfigError::OpenWithoutKeys(_)),
            "{error:?}"
        );
        assert!(
            error.to_string().contains("EVOLUTION_GATEWAY_KEYS"),
            "{error}"
        );

        let keyed = GatewayConfig {
            listen: listen.parse().unwrap(),
            keys: GatewayKeys::parse_list("k1,k2").unwrap(),
            ..GatewayConfig::default()
        };
        let gateway = Gateway::new(client(), keyed).unwrap();
        assert_eq!(gateway.config().keys.len(), 2);
        assert!(!gateway.is_tls());
    }
}

#[test]
fn zero_limits_are_refused_naming_the_flag() {
    let error = refused(GatewayConfig {
        max_body_bytes: 0,
        ..GatewayConfig::default()
    });
    assert!(
        matches!(error, ConfigError::Zero("--max-body-bytes")),
        "{error:?}"
    );
    let error = refused(GatewayConfig {
        max_in_flight: 0,
        ..GatewayConfig::default()
    });
    assert!(
        matches!(error, ConfigError::Zero("--max-in-flight")),
        "{error:?}"
    );
}

#[test]
fn the_gateways_debug_shows_no_key() {
    let gateway = Gateway::new(
        client(),
        GatewayConfig {
            keys: GatewayKeys::parse_list("debug-visible-key-0042").unwrap(),
            ..GatewayConfig::default()
        },
    )
    .unwrap();
    let debug = format!("{gateway:?}");
    assert!(!debug.contains("debug-visible-key-0042"), "{debug}");
    assert!(!debug.contains("config-test-secret-0042"), "{debug}");
}
