//! Building a [`Metrics`] handle: constant labels, the opt-in `key_id` label, and the
//! switch of the OpenTelemetry GenAI series.

use std::collections::HashSet;
use std::sync::Arc;

use metrics::{Label, SharedString};

use crate::Metrics;
use crate::names::RESERVED_LABELS;

/// Builds a [`Metrics`] handle. See [`Metrics::builder`].
///
/// ```
/// use evolution_metrics::Metrics;
///
/// let metrics = Metrics::builder()
///     .label("client", "billing")
///     .key_id_label(true)
///     .gen_ai(false)
///     .build()?;
/// # drop(metrics);
/// # Ok::<(), evolution_metrics::ConfigError>(())
/// ```
#[derive(Debug, Clone)]
pub struct MetricsBuilder {
    labels: Vec<(String, String)>,
    key_id_label: bool,
    gen_ai: bool,
}

impl Default for MetricsBuilder {
    fn default() -> Self {
        Self {
            labels: Vec::new(),
            key_id_label: false,
            gen_ai: true,
        }
    }
}

impl MetricsBuilder {
    /// A builder with no constant labels, no `key_id` label, and the GenAI series on.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a label set on every series of this handle, such as `client="billing"`, so that
    /// several clients in one process are told apart. Defaults to none.
    ///
    /// The name must be a Prometheus label name (`[a-zA-Z_][a-zA-Z0-9_]*`, not starting with
    /// `__`), not one this crate sets itself ([`names::RESERVED_LABELS`](crate::names::RESERVED_LABELS)),
    /// and given once; the value must not be empty. [`build`](Self::build) checks.
    /// Keep the value constant: one value is one more copy of every series.
    pub fn label(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.push((name.into(), value.into()));
        self
    }

    /// Whether token series (`evolution_token_*`) carry the IAM key id as a `key_id` label.
    /// Defaults to `false`.
    ///
    /// A key id is not a secret, but it identifies an account: it is left out unless asked
    /// for. Secrets and tokens never become labels, whatever the configuration; there is no
    /// way to pass one. Request series never carry `key_id`: the layer that records them
    /// sits above the primary/backup fallback and does not know which key served a call.
    pub fn key_id_label(mut self, enabled: bool) -> Self {
        self.key_id_label = enabled;
        self
    }

    /// Whether [`Operation`](crate::Operation)s record the OpenTelemetry GenAI series
    /// (`gen_ai.client.*`, see [`names::gen_ai`](crate::names::gen_ai)) beside the
    /// `evolution_*` ones. Defaults to `true`.
    ///
    /// Off, no `gen_ai.*` series is recorded at all; the `evolution_*` series and [`Stats`](crate::Stats)
    /// are the same either way.
    pub fn gen_ai(mut self, enabled: bool) -> Self {
        self.gen_ai = enabled;
        self
    }

    /// Checks the labels and builds the handle, registering the metric descriptions with
    /// the current recorder ([`Metrics::describe`]).
    pub fn build(self) -> Result<Metrics, ConfigError> {
        let mut seen = HashSet::new();
        let mut labels = Vec::with_capacity(self.labels.len());
        for (name, value) in self.labels {
            if !is_label_name(&name) {
                return Err(ConfigError::InvalidLabelName { name });
            }
            if RESERVED_LABELS.contains(&name.as_str()) {
                return Err(ConfigError::ReservedLabelName { name });
            }
            if value.is_empty() {
                return Err(ConfigError::EmptyLabelValue { name });
            }
            if !seen.insert(name.clone()) {
                return Err(ConfigError::DuplicateLabel { name });
            }
            // Shared strings: cloning them per call is a reference count, not a copy.
            labels.push(Label::new(shared(name), shared(value)));
        }
        Metrics::describe();
        Ok(Metrics::from_parts(labels, self.key_id_label, self.gen_ai))
    }
}

fn shared(text: String) -> SharedString {
    SharedString::from(Arc::<str>::from(text))
}

fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    (first.is_ascii_alphabetic() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with("__")
}

/// A [`MetricsBuilder`] was given a label it cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The name is not a Prometheus label name.
    #[error(
        "invalid metric label name `{name}`: use letters, digits and underscores, not starting with a digit or `__`"
    )]
    InvalidLabelName {
        /// The name given.
        name: String,
    },
    /// The name is one this crate sets itself, or one Prometheus reserves.
    #[error("metric label name `{name}` is reserved by evolution-metrics: choose another name")]
    ReservedLabelName {
        /// The name given.
        name: String,
    },
    /// The same name was given twice.
    #[error("metric label `{name}` is given twice: give each constant label once")]
    DuplicateLabel {
        /// The name given.
        name: String,
    },
    /// The value is empty (Prometheus treats an empty label as an absent one).
    #[error("metric label `{name}` has an empty value: give it a value or leave it out")]
    EmptyLabelValue {
        /// The name given.
        name: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(name: &str, value: &str) -> ConfigError {
        MetricsBuilder::new()
            .label(name, value)
            .build()
            .unwrap_err()
    }

    #[test]
    fn rejects_bad_labels() {
        assert!(matches!(
            error("9lives", "x"),
            ConfigError::InvalidLabelName { .. }
        ));
        assert!(matches!(
            error("has-dash", "x"),
            ConfigError::InvalidLabelName { .. }
        ));
        assert!(matches!(
            error("__meta", "x"),
            ConfigError::InvalidLabelName { .. }
        ));
        assert!(matches!(
            error("", "x"),
            ConfigError::InvalidLabelName { .. }
        ));
        for reserved in RESERVED_LABELS {
            assert!(matches!(
                error(reserved, "x"),
                ConfigError::ReservedLabelName { .. }
            ));
        }
        assert!(matches!(
            error("client", ""),
            ConfigError::EmptyLabelValue { .. }
        ));
        let duplicate = MetricsBuilder::new()
            .label("client", "a")
            .label("client", "b")
            .build()
            .unwrap_err();
        assert_eq!(
            duplicate,
            ConfigError::DuplicateLabel {
                name: "client".into()
            }
        );
    }

    #[test]
    fn accepts_good_labels() {
        let metrics = MetricsBuilder::new()
            .label("client", "billing")
            .label("_region2", "ru-central")
            .build()
            .unwrap();
        let labels: Vec<_> = metrics.constant_labels().collect();
        assert_eq!(labels, [("client", "billing"), ("_region2", "ru-central")]);
    }
}
