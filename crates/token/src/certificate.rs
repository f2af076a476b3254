//! Telling a TLS certificate failure apart from other transport errors.
//!
//! A certificate that does not chain to a trusted root (or is expired, or names another
//! host) fails the same way on every attempt, so it must not be retried like a network
//! fault, and the user must hear that it is about trust, not reachability.

use std::error::Error;
use std::io;

/// Whether `error`, or an error in its source chain, is a TLS certificate the client does
/// not accept: rustls's `InvalidCertificate` (unknown issuer, expired, wrong host name,
/// revoked, ...). No retry can fix one.
///
/// The search looks inside `std::io::Error`s too, whose own `source()` skips the error
/// they wrap: that is where hyper and reqwest put the TLS error of a failed connection.
/// [`TokenError::UntrustedCertificate`](crate::TokenError::UntrustedCertificate) is one.
///
/// ```
/// use evolution_token::is_certificate_error;
///
/// let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
/// assert!(!is_certificate_error(&refused));
/// ```
pub fn is_certificate_error(error: &(dyn Error + 'static)) -> bool {
    certificate_error(error).is_some()
}

/// The error that says what is wrong with the certificate (its `Display` reads like
/// "invalid peer certificate: UnknownIssuer"), found as [`is_certificate_error`] finds it.
pub fn certificate_error<'a>(
    error: &'a (dyn Error + 'static),
) -> Option<&'a (dyn Error + 'static)> {
    let mut next = Some(error);
    while let Some(error) = next {
        if let Some(tls @ rustls::Error::InvalidCertificate(_)) = error.downcast_ref() {
            return Some(tls);
        }
        next = match error
            .downcast_ref::<io::Error>()
            .and_then(io::Error::get_ref)
        {
            Some(wrapped) => Some(wrapped),
            None => error.source(),
        };
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("wrapper")]
    struct Wrapper(#[source] io::Error);

    #[test]
    fn finds_the_certificate_error_inside_nested_io_errors() {
        let tls = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let inner = io::Error::new(io::ErrorKind::InvalidData, tls);
        let error = Wrapper(io::Error::other(inner));
        assert!(is_certificate_error(&error));
        let problem = certificate_error(&error).unwrap().to_string();
        assert!(problem.contains("UnknownIssuer"), "{problem}");
    }

    #[test]
    fn other_tls_and_io_errors_are_not_certificate_errors() {
        let handshake = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::HandshakeNotComplete,
        );
        assert!(!is_certificate_error(&Wrapper(handshake)));
        assert!(!is_certificate_error(&io::Error::from(
            io::ErrorKind::ConnectionReset
        )));
    }
}
