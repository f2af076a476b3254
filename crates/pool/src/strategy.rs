//! [`Strategy`]: which deployment a call goes to first, and the order it fails over in.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::time::Instant;

use crate::member::Member;

/// How a [`Pool`](crate::Pool) chooses a deployment for each call.
///
/// Whatever the strategy, a deployment that is cooling down, whose circuit is open or that
/// is at its rate limit is skipped, and a call that fails over moves to a deployment it has
/// not tried yet, chosen the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Strategy {
    /// The first healthy deployment, in the order given: failover, as a primary and backups.
    #[default]
    Ordered,
    /// Each call starts at the next deployment.
    RoundRobin,
    /// A random deployment, each as likely as its weight.
    Weighted,
    /// The less loaded of two random deployments (power of two choices), the load being a
    /// peak-EWMA of the response latency times the calls in flight, as tower's `balance`.
    LeastLoaded,
}

impl Strategy {
    /// The name used in configuration files: `ordered`, `round_robin`, `weighted`,
    /// `least_loaded`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ordered => "ordered",
            Self::RoundRobin => "round_robin",
            Self::Weighted => "weighted",
            Self::LeastLoaded => "least_loaded",
        }
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A strategy name that is none of the four.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown strategy `{0}`: use ordered, round_robin, weighted or least_loaded")]
pub struct UnknownStrategy(pub String);

impl FromStr for Strategy {
    type Err = UnknownStrategy;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name.trim() {
            "ordered" => Ok(Self::Ordered),
            "round_robin" => Ok(Self::RoundRobin),
            "weighted" => Ok(Self::Weighted),
            "least_loaded" => Ok(Self::LeastLoaded),
            other => Err(UnknownStrategy(other.to_owned())),
        }
    }
}

/// A set of deployment indexes (a pool holds at most [`MAX_DEPLOYMENTS`](crate::MAX_DEPLOYMENTS)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Set(u64);

impl Set {
    pub(crate) fn contains(self, index: usize) -> bool {
        self.0 & (1 << index) != 0
    }

    pub(crate) fn insert(&mut self, index: usize) {
        self.0 |= 1 << index;
    }

    pub(crate) fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }
}

/// One call's walk through the deployments: each is offered at most once per round.
#[derive(Debug)]
pub(crate) struct Walk {
    /// Where round-robin and ordered walks start.
    start: usize,
}

impl Walk {
    /// A new walk; round-robin takes the next starting point from `cursor`.
    pub(crate) fn new(strategy: Strategy, cursor: &AtomicUsize, len: usize) -> Self {
        let start = match strategy {
            Strategy::RoundRobin => cursor.fetch_add(1, Ordering::Relaxed) % len,
            _ => 0,
        };
        Self { start }
    }

    /// The next deployment not in `skip`, or `None` when every one is.
    pub(crate) fn next<S>(
        &self,
        strategy: Strategy,
        members: &[Member<S>],
        skip: Set,
    ) -> Option<usize> {
        let len = members.len();
        match strategy {
            Strategy::Ordered | Strategy::RoundRobin => (0..len)
                .map(|step| (self.start + step) % len)
                .find(|&index| !skip.contains(index)),
            Strategy::Weighted => {
                let total: u64 = members
                    .iter()
                    .enumerate()
                    .filter(|(index, _)| !skip.contains(*index))
                    .map(|(_, member)| u64::from(member.weight))
                    .sum();
                if total == 0 {
                    return (0..len).find(|&index| !skip.contains(index));
                }
                let mut point = rand::random_range(0..total);
                for (index, member) in members.iter().enumerate() {
                    if skip.contains(index) {
                        continue;
                    }
                    let weight = u64::from(member.weight);
                    if point < weight {
                        return Some(index);
                    }
                    point -= weight;
                }
                None
            }
            Strategy::LeastLoaded => {
                let open: u32 = (0..len).filter(|&i| !skip.contains(i)).count() as u32;
                match open {
                    0 => None,
                    1 => (0..len).find(|&index| !skip.contains(index)),
                    _ => {
                        // Two distinct random deployments among the open ones.
                        let a = rand::random_range(0..open);
                        let mut b = rand::random_range(0..open - 1);
                        if b >= a {
                            b += 1;
                        }
                        let nth = |n: u32| {
                            (0..len)
                                .filter(|&index| !skip.contains(index))
                                .nth(n as usize)
                        };
                        let (a, b) = (nth(a)?, nth(b)?);
                        let now = Instant::now();
                        if members[b].load.cost(now) < members[a].load.cost(now) {
                            Some(b)
                        } else {
                            Some(a)
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for strategy in [
            Strategy::Ordered,
            Strategy::RoundRobin,
            Strategy::Weighted,
            Strategy::LeastLoaded,
        ] {
            assert_eq!(strategy.as_str().parse::<Strategy>(), Ok(strategy));
        }
        assert_eq!(
            "fastest".parse::<Strategy>().unwrap_err().to_string(),
            "unknown strategy `fastest`: use ordered, round_robin, weighted or least_loaded"
        );
    }
}
