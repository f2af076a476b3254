//! `x-request-id`: echoed when the client sends one, made up when it does not, on every
//! answer (errors and shed answers included).

use std::collections::BTreeSet;

use evolution_testkit::emulator;

use crate::support::{GATEWAY_KEY, Served, chat_body, client_builder, http, keyed_config};

#[tokio::test]
async fn a_client_request_id_is_echoed_and_forwarded() {
    let emu = emulator().await;
    let gateway = Served::with(client_builder(&emu).build().unwrap(), keyed_config()).await;

    let response = http()
        .post(gateway.at("/v1/chat/completions"))
        .bearer_auth(GATEWAY_KEY)
        .header("x-request-id", "client-id-42")
        .json(&chat_body("hi"))
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-request-id"], "client-id-42");
}

#[tokio::test]
async fn without_one_each_answer_gets_a_fresh_id() {
    let emu = emulator().await;
    let gateway = Served::with(client_builder(&emu).build().unwrap(), keyed_config()).await;

    let mut ids = BTreeSet::new();
    for _ in 0..3 {
        let response = http()
            .post(gateway.at("/v1/chat/completions"))
            .bearer_auth(GATEWAY_KEY)
            .json(&chat_body("hi"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let id = response.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(!id.trim().is_empty());
        ids.insert(id);
    }
    assert_eq!(ids.len(), 3, "{ids:?}");
}

#[tokio::test]
async fn error_answers_carry_the_id_too() {
    let emu = emulator().await;
    let config = evolution_gateway::GatewayConfig {
        max_body_bytes: 16,
        ..keyed_config()
    };
    let gateway = Served::with(client_builder(&emu).build().unwrap(), config).await;

    let unauthorized = http()
        .post(gateway.at("/v1/chat/completions"))
        .header("x-request-id", "id-401")
        .json(&chat_body("hi"))
        .send()
        .await
        .unwrap();
    let not_found = http()
        .get(gateway.at("/v2/nothing"))
        .header("x-request-id", "id-404")
        .send()
        .await
        .unwrap();
    let too_large = http()
        .post(gateway.at("/v1/chat/completions"))
        .bearer_auth(GATEWAY_KEY)
        .header("x-request-id", "id-413")
        .json(&chat_body("more than sixteen bytes"))
        .send()
        .await
        .unwrap();
    let generated = http().get(gateway.at("/v2/nothing")).send().await.unwrap();

    for (response, status, id) in [
        (&unauthorized, 401, "id-401"),
        (&not_found, 404, "id-404"),
        (&too_large, 413, "id-413"),
    ] {
        assert_eq!(response.status(), status);
        assert_eq!(response.headers()["x-request-id"], id);
    }
    assert_eq!(generated.status(), 404);
    assert!(
        !generated.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .is_empty()
    );
}
