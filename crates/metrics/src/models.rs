//! [`ModelLabels`]: the bounded set of model names one handle puts in GenAI labels.

use std::collections::HashSet;
use std::sync::{Arc, PoisonError, RwLock};

use metrics::SharedString;

use crate::names::gen_ai::{MAX_MODEL_LEN, MAX_MODELS, OTHER};

/// The first [`MAX_MODELS`] model names seen, shared so that a label value is a reference
/// count, not a copy. A name past the bound, or longer than [`MAX_MODEL_LEN`], is
/// [`OTHER`].
///
/// Looked up once per operation (and once more when the answer names its model), under a
/// read lock; the write lock is taken only for the first sightings of at most
/// [`MAX_MODELS`] names.
#[derive(Debug, Default)]
pub(crate) struct ModelLabels {
    seen: RwLock<HashSet<Arc<str>>>,
}

impl ModelLabels {
    /// The label value for `model`; `None` for an empty name (the attribute is left out).
    pub(crate) fn value(&self, model: &str) -> Option<SharedString> {
        if model.is_empty() {
            return None;
        }
        if model.len() > MAX_MODEL_LEN {
            return Some(SharedString::const_str(OTHER));
        }
        // A panic elsewhere while holding the lock leaves the set whole: ignore the poison.
        if let Some(name) = self
            .seen
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(model)
        {
            return Some(SharedString::from(Arc::clone(name)));
        }
        let mut seen = self.seen.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(name) = seen.get(model) {
            return Some(SharedString::from(Arc::clone(name)));
        }
        if seen.len() >= MAX_MODELS {
            return Some(SharedString::const_str(OTHER));
        }
        let name = Arc::<str>::from(model);
        seen.insert(Arc::clone(&name));
        Some(SharedString::from(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_first_names_then_other() {
        let labels = ModelLabels::default();
        for i in 0..MAX_MODELS {
            let name = format!("model-{i}");
            assert_eq!(labels.value(&name).as_deref(), Some(name.as_str()));
        }
        // Seen names keep their value; new ones past the bound do not get one.
        assert_eq!(labels.value("model-0").as_deref(), Some("model-0"));
        assert_eq!(labels.value("one-too-many").as_deref(), Some(OTHER));
        assert_eq!(labels.value("").as_deref(), None);
    }

    #[test]
    fn long_names_are_other_and_take_no_place() {
        let labels = ModelLabels::default();
        let long = "m".repeat(MAX_MODEL_LEN + 1);
        assert_eq!(labels.value(&long).as_deref(), Some(OTHER));
        assert!(labels.seen.read().unwrap().is_empty());
        let longest = "m".repeat(MAX_MODEL_LEN);
        assert_eq!(labels.value(&longest).as_deref(), Some(longest.as_str()));
    }
}
