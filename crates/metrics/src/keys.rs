//! Metric keys built once per [`Metrics`](crate::Metrics) handle for the per-call series.
//!
//! The `counter!`/`histogram!` macros build a [`Key`] per call: a `Vec` of labels, its hash,
//! and, in most recorders, a shared copy made on lookup. For the few series every call
//! touches, the keys are built once here, shared (`to_retained`), and handed to the current
//! recorder directly, which is all the macros do after building the key. Rare events
//! (token refreshes, retries, switches) keep using the macros.

use metrics::{Key, Label, Level, Metadata};

use crate::Outcome;
use crate::names::{
    AUTH_ERRORS_TOTAL, LABEL_OUTCOME, LABEL_STATUS, LABEL_TYPE, REQUEST_ATTEMPTS,
    REQUEST_DURATION_SECONDS, REQUESTS_TOTAL, TIME_PER_OUTPUT_CHUNK_SECONDS,
    TIME_TO_FIRST_CHUNK_SECONDS, TOKENS_TOTAL,
};
use crate::outcome::status_label;

/// The metadata the macros would give, for this crate.
pub(crate) static METADATA: Metadata<'static> =
    Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

/// Statuses whose `evolution_requests_total` key is built up front.
const COMMON_STATUSES: [u16; 16] = [
    200, 201, 204, 400, 401, 403, 404, 408, 409, 413, 422, 429, 500, 502, 503, 504,
];

#[derive(Debug)]
pub(crate) struct RequestKeys {
    pub(crate) duration: Key,
    pub(crate) attempts: Key,
    pub(crate) auth_errors: Key,
    /// `evolution_tokens_total{type="input"}` and `{type="output"}`.
    pub(crate) tokens: [Key; 2],
    pub(crate) first_chunk: Key,
    pub(crate) per_chunk: Key,
    /// `evolution_requests_total{outcome, status="none"}`, by [`Outcome::index`].
    without_status: Vec<Key>,
    /// `evolution_requests_total{outcome=from_status(status), status}`, by `COMMON_STATUSES`.
    common: Vec<Key>,
    constant: Vec<Label>,
}

impl RequestKeys {
    pub(crate) fn new(constant: &[Label]) -> Self {
        let key = |name: &'static str, extra: &[Label]| {
            let labels: Vec<Label> = constant.iter().chain(extra).cloned().collect();
            Key::from_parts(name, labels).to_retained()
        };
        Self {
            duration: key(REQUEST_DURATION_SECONDS, &[]),
            attempts: key(REQUEST_ATTEMPTS, &[]),
            auth_errors: key(AUTH_ERRORS_TOTAL, &[]),
            first_chunk: key(TIME_TO_FIRST_CHUNK_SECONDS, &[]),
            per_chunk: key(TIME_PER_OUTPUT_CHUNK_SECONDS, &[]),
            tokens: ["input", "output"]
                .map(|kind| key(TOKENS_TOTAL, &[Label::from_static_parts(LABEL_TYPE, kind)])),
            without_status: Outcome::ALL
                .iter()
                .map(|&outcome| key(REQUESTS_TOTAL, &requests_labels(outcome, None)))
                .collect(),
            common: COMMON_STATUSES
                .iter()
                .map(|&code| {
                    let status = http::StatusCode::from_u16(code).expect("a valid status");
                    let outcome = Outcome::from_status(status);
                    key(REQUESTS_TOTAL, &requests_labels(outcome, Some(status)))
                })
                .collect(),
            constant: constant.to_vec(),
        }
    }

    /// Calls `f` with the `evolution_requests_total` key for `outcome` and `status`: a
    /// prebuilt one when there is one, else one built now.
    pub(crate) fn with_requests_key<T>(
        &self,
        outcome: Outcome,
        status: Option<http::StatusCode>,
        f: impl FnOnce(&Key) -> T,
    ) -> T {
        let prebuilt = match status {
            None => self.without_status.get(outcome.index()),
            Some(status) if Outcome::from_status(status) == outcome => COMMON_STATUSES
                .iter()
                .position(|&code| code == status.as_u16())
                .and_then(|i| self.common.get(i)),
            Some(_) => None,
        };
        match prebuilt {
            Some(key) => f(key),
            None => {
                let labels: Vec<Label> = self
                    .constant
                    .iter()
                    .cloned()
                    .chain(requests_labels(outcome, status))
                    .collect();
                f(&Key::from_parts(REQUESTS_TOTAL, labels))
            }
        }
    }
}

fn requests_labels(outcome: Outcome, status: Option<http::StatusCode>) -> [Label; 2] {
    [
        Label::from_static_parts(LABEL_OUTCOME, outcome.as_str()),
        Label::from_static_parts(LABEL_STATUS, status_label(status)),
    ]
}

#[cfg(test)]
mod tests {
    use http::StatusCode;

    use super::*;

    /// Prebuilt or not, the key is the one the labels describe.
    #[test]
    fn requests_keys_match_their_labels() {
        let constant = [Label::new("client", "billing")];
        let keys = RequestKeys::new(&constant);
        let statuses = (100..=999).map(|code| Some(StatusCode::from_u16(code).unwrap()));
        for status in statuses.chain([None]) {
            for outcome in Outcome::ALL {
                let expected = Key::from_parts(
                    REQUESTS_TOTAL,
                    vec![
                        Label::new("client", "billing"),
                        Label::from_static_parts(LABEL_OUTCOME, outcome.as_str()),
                        Label::from_static_parts(LABEL_STATUS, status_label(status)),
                    ],
                );
                keys.with_requests_key(outcome, status, |key| {
                    assert_eq!(key, &expected);
                    assert_eq!(key.get_hash(), expected.get_hash());
                });
            }
        }
    }
}
