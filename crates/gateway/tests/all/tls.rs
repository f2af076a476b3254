//! TLS on the listener: a certificate from a CA of the test's own, served over HTTPS (HTTP/2
//! by ALPN), and unusable files refused by `Gateway::new` naming the flag to fix.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use evolution_client::EvolutionInference;
use evolution_gateway::{ConfigError, Gateway, GatewayConfig, TlsFiles};
use evolution_testkit::emulator;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use tokio::io::AsyncReadExt;

use crate::support::{Answer, LIMIT, Served, chat_body, client_builder, config};

/// A directory under the system temp dir, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "evolution-gateway-tls-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).expect("create a scratch directory");
        Self(path)
    }

    fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, contents).expect("write a scratch file");
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A CA's certificate, and a leaf for 127.0.0.1 and localhost it signed, with its key: PEM.
struct Pki {
    ca: String,
    leaf: String,
    leaf_key: String,
}

fn pki() -> Pki {
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "evolution-rs gateway test CA");
    let ca = ca_params
        .clone()
        .self_signed(&ca_key)
        .expect("a self-signed CA");
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate().expect("leaf key");
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .expect("leaf params")
        .signed_by(&leaf_key, &issuer)
        .expect("leaf signed by the CA");
    Pki {
        ca: pem("CERTIFICATE", ca.der()),
        leaf: pem("CERTIFICATE", leaf.der()),
        leaf_key: pem("PRIVATE KEY", &leaf_key.serialize_der()),
    }
}

/// `der` as a PEM block (rcgen's own `pem` feature is not in the workspace).
fn pem(label: &str, der: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut base64 = String::new();
    for chunk in der.chunks(3) {
        let bytes = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = u32::from_be_bytes([0, bytes[0], bytes[1], bytes[2]]);
        for i in 0..4 {
            if i <= chunk.len() {
                base64.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                base64.push('=');
            }
        }
    }
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in base64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn tls_config(scratch: &Scratch, pki: &Pki) -> GatewayConfig {
    GatewayConfig {
        tls: Some(TlsFiles {
            cert: scratch.write("cert.pem", &pki.leaf),
            key: scratch.write("key.pem", &pki.leaf_key),
        }),
        ..config()
    }
}

/// A client that does not call anything: `Gateway::new` only needs one.
fn idle_client() -> EvolutionInference {
    EvolutionInference::builder()
        .model("m")
        .key_id("k")
        .secret("s")
        .base_url("http://127.0.0.1:9/v1")
        .build()
        .unwrap()
}

#[tokio::test]
async fn https_with_the_cas_certificate_serves_chat_over_http2() {
    let emu = emulator().await;
    let scratch = Scratch::new();
    let pki = pki();
    let gateway = Served::with(
        client_builder(&emu).build().unwrap(),
        tls_config(&scratch, &pki),
    )
    .await;
    assert!(gateway.url.starts_with("https://127.0.0.1:"));
    let https = reqwest::Client::builder()
        .no_proxy()
        .timeout(LIMIT)
        .tls_certs_only([reqwest::Certificate::from_pem(pki.ca.as_bytes()).unwrap()])
        .build()
        .unwrap();

    let health = https.get(gateway.at("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(health.version(), reqwest::Version::HTTP_2);
    let chat = Answer::of(
        https
            .post(gateway.at("/v1/chat/completions"))
            .json(&chat_body("over tls"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(chat.status, 200, "{chat:?}");
    assert!(chat.header("x-request-id").is_some());
    assert_eq!(emu.stats().chat_requests, 1);

    // A client that does not trust the CA gets no answer.
    let untrusting = reqwest::Client::builder().no_proxy().build().unwrap();
    let refused = untrusting.get(gateway.at("/healthz")).send().await;
    assert!(refused.is_err(), "{refused:?}");
    // Nor does plain HTTP.
    let plain = reqwest::Client::builder()
        .no_proxy()
        .timeout(LIMIT)
        .build()
        .unwrap()
        .get(format!("http://{}/healthz", gateway.addr))
        .send()
        .await;
    assert!(plain.is_err(), "{plain:?}");
}

#[tokio::test(start_paused = true)]
async fn a_connection_that_never_starts_the_handshake_is_closed_after_the_header_timeout() {
    let scratch = Scratch::new();
    let config = GatewayConfig {
        header_read_timeout: Duration::from_secs(4),
        ..tls_config(&scratch, &pki())
    };
    let gateway = Served::with(idle_client(), config).await;

    let mut stream = tokio::net::TcpStream::connect(gateway.addr).await.unwrap();
    let started = tokio::time::Instant::now();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(60), stream.read_to_end(&mut answer))
        .await
        .expect("the gateway closes the connection");

    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_secs(4), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
}

fn tls_error(files: TlsFiles) -> String {
    let config = GatewayConfig {
        tls: Some(files),
        ..config()
    };
    match Gateway::new(idle_client(), config) {
        Err(ConfigError::Tls(message)) => message,
        other => panic!("expected ConfigError::Tls, got {other:?}"),
    }
}

#[test]
fn unusable_tls_files_are_refused_naming_the_flag() {
    let scratch = Scratch::new();
    let pki = pki();
    let cert = scratch.write("cert.pem", &pki.leaf);
    let key = scratch.write("key.pem", &pki.leaf_key);
    let missing = scratch.0.join("missing.pem");
    let not_pem = scratch.write("not.pem", "not a PEM file\n");

    let message = tls_error(TlsFiles {
        cert: missing.clone(),
        key: key.clone(),
    });
    assert!(message.contains("--tls-cert"), "{message}");
    assert!(message.contains("missing.pem"), "{message}");

    let message = tls_error(TlsFiles {
        cert: not_pem.clone(),
        key: key.clone(),
    });
    assert!(message.contains("--tls-cert"), "{message}");

    let message = tls_error(TlsFiles {
        cert: cert.clone(),
        key: missing,
    });
    assert!(message.contains("--tls-key"), "{message}");

    let message = tls_error(TlsFiles {
        cert: cert.clone(),
        key: not_pem,
    });
    assert!(message.contains("--tls-key"), "{message}");

    // A key of another certificate.
    let other = scratch.write(
        "other-key.pem",
        &pem("PRIVATE KEY", &KeyPair::generate().unwrap().serialize_der()),
    );
    let message = tls_error(TlsFiles {
        cert,
        key: other.clone(),
    });
    assert!(message.contains("does not fit"), "{message}");
    // No key material in any message.
    assert!(!message.contains("PRIVATE KEY"), "{message}");
}
