//! Pools that cannot be built, each with its own error.

use evolution_pool::{BuildError, MAX_DEPLOYMENTS, Pool, PoolMember, Strategy};

use crate::{Deployments, Stack};

fn names(count: usize) -> Vec<&'static str> {
    (0..count)
        .map(|i| &*Box::leak(format!("d{i}").into_boxed_str()))
        .collect()
}

fn build(members: Vec<PoolMember<Stack>>, strategy: Strategy) -> Result<Pool<Stack>, BuildError> {
    Pool::builder(members).strategy(strategy).build()
}

#[test]
fn an_empty_pool_is_refused() {
    let error = build(Vec::new(), Strategy::Ordered).unwrap_err();
    assert_eq!(error, BuildError::Empty);
    assert_eq!(
        error.to_string(),
        "the pool has no deployment: add at least one"
    );
}

#[test]
fn at_most_64_deployments() {
    let deployments = Deployments::new(&names(MAX_DEPLOYMENTS));
    let pool = build(deployments.members(), Strategy::RoundRobin).unwrap();
    assert_eq!(pool.names().count(), 64);

    let deployments = Deployments::new(&names(MAX_DEPLOYMENTS + 1));
    let error = build(deployments.members(), Strategy::Ordered).unwrap_err();
    assert_eq!(error, BuildError::TooMany(65));
    assert_eq!(
        error.to_string(),
        "the pool has 65 deployments; at most 64 are supported"
    );
}

#[test]
fn names_must_differ() {
    let deployments = Deployments::new(&["a", "b", "a"]);
    let error = build(deployments.members(), Strategy::Ordered).unwrap_err();
    assert_eq!(error, BuildError::DuplicateName("a".into()));
    assert_eq!(
        error.to_string(),
        "two deployments are named `a`: names label metrics and logs, so they must differ"
    );
}

#[test]
fn names_must_not_be_empty() {
    for name in ["", "  "] {
        let deployments = Deployments::new(&["a", name]);
        let error = build(deployments.members(), Strategy::Ordered).unwrap_err();
        assert_eq!(error, BuildError::EmptyName);
        assert_eq!(error.to_string(), "a deployment has an empty name");
    }
}

#[test]
fn weighted_needs_a_positive_weight() {
    let deployments = Deployments::new(&["a", "b"]);
    let error = build(deployments.weighted(&[0, 0]), Strategy::Weighted).unwrap_err();
    assert_eq!(error, BuildError::NoWeight);
    assert_eq!(
        error.to_string(),
        "every deployment has weight 0: give at least one a positive weight"
    );
    // Weights matter only to the weighted strategy.
    build(deployments.weighted(&[0, 0]), Strategy::RoundRobin).unwrap();
    build(deployments.weighted(&[0, 1]), Strategy::Weighted).unwrap();
}
