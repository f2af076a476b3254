//! [`Side`]: which of the two services of a [`Fallback`](crate::Fallback).

use std::fmt;

/// One of the two services of a [`Fallback`](crate::Fallback).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// The first service, given to [`Fallback::new`](crate::Fallback::new) or to the layer.
    Primary,
    /// The second service.
    Backup,
}

impl Side {
    /// The other side.
    pub fn other(self) -> Self {
        match self {
            Self::Primary => Self::Backup,
            Self::Backup => Self::Primary,
        }
    }

    /// `"primary"` or `"backup"`, stable for metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Primary => "primary",
            Self::Backup => "backup",
        }
    }

    /// The side's place in a pair: 0 for the primary, 1 for the backup.
    pub(crate) fn index(self) -> usize {
        match self {
            Self::Primary => 0,
            Self::Backup => 1,
        }
    }
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
