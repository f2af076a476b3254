//! How a command fails: one line on stderr and an exit code.

use std::process::ExitCode;

/// A failure, sorted by exit code.
#[derive(Debug)]
pub(crate) enum Failure {
    /// Exit 2: something to fix in the configuration.
    Config(String),
    /// Exit 3: the key was rejected.
    Auth(String),
    /// Exit 4: any other API or network error.
    Other(String),
}

impl Failure {
    pub(crate) fn exit(self) -> ExitCode {
        let (code, message) = match self {
            Self::Config(message) => (2, message),
            Self::Auth(message) => (3, message),
            Self::Other(message) => (4, message),
        };
        eprintln!("error: {message}");
        ExitCode::from(code)
    }
}

impl From<evolution_client::Error> for Failure {
    fn from(error: evolution_client::Error) -> Self {
        let message = one_line(&error);
        match error {
            evolution_client::Error::Config { .. } => Self::Config(message),
            ref e if e.is_auth() => Self::Auth(message),
            _ => Self::Other(message),
        }
    }
}

/// The error and its sources on one line (messages never hold secrets).
pub(crate) fn one_line(error: &dyn std::error::Error) -> String {
    let mut line = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        source = cause.source();
    }
    line.replace('\n', " ")
}
