//! [`ConfigFileError`]: a mistake in a configuration file, and where it is.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::Error;

/// A mistake in a configuration file. Its message names the file, the line and column, the
/// deployment and the field, and says what to do; it never holds a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigFileError(pub(super) Box<Details>);

// Boxed: the error is returned through every step of the parse, which its size would slow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Details {
    pub(super) path: PathBuf,
    /// Line and column, from 1.
    pub(super) position: Option<(usize, usize)>,
    /// The deployment's position in the file, from 1, and its name once known.
    pub(super) deployment: Option<(usize, Option<String>)>,
    pub(super) field: Option<String>,
    pub(super) message: String,
}

impl ConfigFileError {
    pub(super) fn new(path: &Path, message: impl Into<String>) -> Self {
        Self(Box::new(Details {
            path: path.to_owned(),
            position: None,
            deployment: None,
            field: None,
            message: message.into(),
        }))
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.0.path
    }

    /// The line of the mistake, from 1, when it is in the text.
    pub fn line(&self) -> Option<usize> {
        self.0.position.map(|(line, _)| line)
    }

    /// The column of the mistake, from 1 (in characters), when it is in the text.
    pub fn column(&self) -> Option<usize> {
        self.0.position.map(|(_, column)| column)
    }

    /// The position of the deployment in the file, from 1, when the mistake is in one.
    pub fn deployment_position(&self) -> Option<usize> {
        self.0.deployment.as_ref().map(|(position, _)| *position)
    }

    /// The name of the deployment, when the mistake is in one that has a name.
    pub fn deployment_name(&self) -> Option<&str> {
        self.0
            .deployment
            .as_ref()
            .and_then(|(_, name)| name.as_deref())
    }

    /// The key to fix, when there is one.
    pub fn field(&self) -> Option<&str> {
        self.0.field.as_deref()
    }

    /// What is wrong and what to do, without the file, deployment and field.
    pub fn message(&self) -> &str {
        &self.0.message
    }
}

impl fmt::Display for ConfigFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.path.display())?;
        if let Some((line, column)) = self.0.position {
            write!(f, ":{line}:{column}")?;
        }
        match &self.0.deployment {
            Some((_, Some(name))) => write!(f, ": deployment `{name}`")?,
            Some((position, None)) => write!(f, ": deployment #{position}")?,
            None => {}
        }
        if let Some(field) = &self.0.field {
            let separator = if self.0.deployment.is_some() {
                ","
            } else {
                ":"
            };
            write!(f, "{separator} field `{field}`")?;
        }
        write!(f, ": {}", self.0.message)
    }
}

impl std::error::Error for ConfigFileError {}

impl From<ConfigFileError> for Error {
    fn from(error: ConfigFileError) -> Self {
        Error::config("config_file", error.to_string())
    }
}
