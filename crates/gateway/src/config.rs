//! What the gateway is told: where to listen, who may call, and its limits.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::keys::GatewayKeys;

/// Default address: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Default largest request body: 4 MiB (a long conversation with a few images as base64
/// fits; a mistaken upload does not).
pub const DEFAULT_MAX_BODY_BYTES: usize = 4 * 1024 * 1024;
/// Default most requests in flight (streams count until they end); more are shed with 503.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 1024;
/// Default time given to in-flight calls and streams after SIGTERM.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// Default time a client has to send a request's headers (slowloris).
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The gateway's settings. [`Default`] is loopback on port 8080, no keys, and the limits
/// above.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Where to listen. Without [`keys`](Self::keys), only a loopback address is accepted.
    pub listen: SocketAddr,
    /// The keys clients must present; none: every caller is accepted.
    pub keys: GatewayKeys,
    /// Largest request body, in bytes; more is a 413.
    pub max_body_bytes: usize,
    /// Most requests in flight at once (a stream counts until it ends); more are a 503 with
    /// `Retry-After`.
    pub max_in_flight: usize,
    /// After a shutdown signal, how long in-flight calls and streams may run on.
    pub drain_timeout: Duration,
    /// How long a client may take to send a request's headers.
    pub header_read_timeout: Duration,
    /// The model filled in when a request names none (`EVOLUTION_MODEL`).
    pub default_model: Option<String>,
    /// TLS on the listener: PEM certificate chain and private key files.
    pub tls: Option<TlsFiles>,
}

/// The PEM files of the listener's TLS.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN.parse().expect("a valid default address"),
            keys: GatewayKeys::none(),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            default_model: None,
            tls: None,
        }
    }
}

/// A configuration the gateway refuses to start with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// Without keys, anyone who reaches the port could spend the Evolution quota.
    #[error(
        "refusing to listen on {0} without gateway keys: anyone who can reach it could use your Evolution keys. Set EVOLUTION_GATEWAY_KEYS or --keys-file, or listen on loopback (127.0.0.1)"
    )]
    OpenWithoutKeys(SocketAddr),
    /// A limit of zero.
    #[error("{0} must be at least 1")]
    Zero(&'static str),
    /// The TLS files are unusable.
    #[error("TLS: {0}")]
    Tls(String),
    /// The client's base URL is not a URI the gateway can send to.
    #[error("the base URL (EVOLUTION_BASE_URL) is not a valid URI: {0}")]
    BaseUrl(String),
}

impl GatewayConfig {
    /// Checks what can be checked before binding.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the setting to fix.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.keys.is_empty() && !self.listen.ip().is_loopback() {
            return Err(ConfigError::OpenWithoutKeys(self.listen));
        }
        if self.max_body_bytes == 0 {
            return Err(ConfigError::Zero("--max-body-bytes"));
        }
        if self.max_in_flight == 0 {
            return Err(ConfigError::Zero("--max-in-flight"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_public_address_needs_keys() {
        let open = GatewayConfig {
            listen: "0.0.0.0:8080".parse().unwrap(),
            ..GatewayConfig::default()
        };
        assert!(matches!(
            open.validate(),
            Err(ConfigError::OpenWithoutKeys(_))
        ));
        let keyed = GatewayConfig {
            keys: GatewayKeys::parse_list("k").unwrap(),
            ..open
        };
        keyed.validate().unwrap();
        GatewayConfig::default().validate().unwrap();
        let v6_loopback = GatewayConfig {
            listen: "[::1]:8080".parse().unwrap(),
            ..GatewayConfig::default()
        };
        v6_loopback.validate().unwrap();
    }
}
