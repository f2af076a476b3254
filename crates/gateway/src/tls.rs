//! TLS on the listener, with rustls and the crypto provider the rest of the workspace uses
//! (aws-lc-rs, reqwest's).

use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::config::{ConfigError, TlsFiles};

/// An acceptor for the certificate and key in `files`; offers HTTP/2 and HTTP/1.1 by ALPN.
pub(crate) fn acceptor(files: &TlsFiles) -> Result<TlsAcceptor, ConfigError> {
    let cert_path = files.cert.display();
    let key_path = files.key.display();
    let chain = CertificateDer::pem_file_iter(&files.cert)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(|error| {
            ConfigError::Tls(format!(
                "cannot read certificates from {cert_path} (--tls-cert): {error}"
            ))
        })?;
    if chain.is_empty() {
        return Err(ConfigError::Tls(format!(
            "{cert_path} (--tls-cert) holds no PEM certificate"
        )));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|error| {
        ConfigError::Tls(format!(
            "cannot read a private key from {key_path} (--tls-key; PKCS#8, PKCS#1 or SEC1 PEM): {error}"
        ))
    })?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| ConfigError::Tls(error.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|error| {
            ConfigError::Tls(format!(
                "the key in {key_path} does not fit the certificate in {cert_path}: {error}"
            ))
        })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
