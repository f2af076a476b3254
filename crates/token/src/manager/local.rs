//! Per-thread copies of the current token.
//!
//! Handing out clones of one shared `Arc` makes every caller on every core write the
//! same reference count: on two busy threads that cache line bounces and the hot path
//! slows down several times. Each thread instead keeps its own copy of the current
//! token (same id, separate allocation) and clones that, so the hot path writes only
//! memory its thread owns.
//!
//! A copy is tied to its manager by a `Weak`: the hot path only compares addresses (the
//! `Weak` keeps a dropped manager's address from being reused), and whenever a thread
//! makes a new copy it first drops the copies of managers that are gone. A dropped
//! manager's token copy stays until that thread's next new copy, or its end.

use std::cell::RefCell;
use std::sync::{Arc, Weak};

use crate::AccessToken;

/// Copies kept per thread; more managers than this on one thread just share the
/// oldest slot's fate (evicted, then re-copied on next use).
const MAX_COPIES: usize = 8;

struct LocalCopy<O> {
    /// The manager the copy belongs to (its shared state).
    owner: Weak<O>,
    token: AccessToken,
}

thread_local! {
    static COPIES: Copies<super::Shared> = const { Copies::new() };
}

/// A clone of `token`, the current token of the manager sharing `owner`, whose reference
/// count this thread owns.
pub(super) fn local_copy(owner: &Arc<super::Shared>, token: &AccessToken) -> AccessToken {
    COPIES
        .try_with(|copies| copies.local_copy(owner, token))
        // During thread teardown the thread-local is gone: share the original.
        .unwrap_or_else(|_| token.clone())
}

/// The copies of one thread, for managers whose shared state is an `O`.
struct Copies<O>(RefCell<Vec<LocalCopy<O>>>);

impl<O> Copies<O> {
    const fn new() -> Self {
        Self(RefCell::new(Vec::new()))
    }

    /// A clone of `token`, the current token of `owner`, whose reference count this
    /// thread owns.
    fn local_copy(&self, owner: &Arc<O>, token: &AccessToken) -> AccessToken {
        let Ok(mut copies) = self.0.try_borrow_mut() else {
            return token.clone();
        };
        let mine = |copy: &LocalCopy<O>| std::ptr::eq(copy.owner.as_ptr(), Arc::as_ptr(owner));
        if let Some(copy) = copies.iter().find(|c| mine(c))
            && copy.token.same_as(token)
        {
            return copy.token.clone();
        }
        // A new copy: the slow path, once per token and thread.
        copies.retain(|copy| copy.owner.strong_count() > 0);
        let fork = token.fork();
        match copies.iter_mut().find(|c| mine(c)) {
            Some(copy) => copy.token = fork.clone(),
            None => {
                if copies.len() == MAX_COPIES {
                    copies.remove(0);
                }
                copies.push(LocalCopy {
                    owner: Arc::downgrade(owner),
                    token: fork.clone(),
                });
            }
        }
        fork
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.0.borrow().len()
    }
}

#[cfg(test)]
mod tests {
    use secrecy::SecretString;
    use tokio::time::{Duration, Instant};

    use super::*;

    fn token(value: &str) -> AccessToken {
        let now = Instant::now();
        let expires = now + Duration::from_secs(600);
        AccessToken::new(SecretString::from(value), Arc::from("key"), now, expires).unwrap()
    }

    #[test]
    fn one_copy_per_manager_replaced_when_its_token_changes() {
        let copies = Copies::new();
        let (one, two) = (Arc::new(1), Arc::new(2));
        let (first, second) = (token("first"), token("second"));
        for _ in 0..3 {
            assert!(copies.local_copy(&one, &first).same_as(&first));
        }
        assert!(copies.local_copy(&two, &second).same_as(&second));
        assert_eq!(copies.len(), 2);
        let refreshed = token("refreshed");
        assert!(copies.local_copy(&one, &refreshed).same_as(&refreshed));
        assert_eq!(copies.len(), 2);
    }

    #[test]
    fn a_dropped_managers_copy_goes_with_the_next_new_copy() {
        let copies = Copies::new();
        let gone = Arc::new(1);
        let old = token("old");
        copies.local_copy(&gone, &old);
        drop(gone);
        // A manager made now cannot take the old one's address: the `Weak` keeps it.
        let live = Arc::new(2);
        let new = token("new");
        assert!(copies.local_copy(&live, &new).same_as(&new));
        assert_eq!(copies.len(), 1, "the dropped manager's copy was released");
    }

    #[test]
    fn at_most_max_copies_the_oldest_goes_first() {
        let copies = Copies::new();
        let owners: Vec<_> = (0..=MAX_COPIES).map(Arc::new).collect();
        let tokens: Vec<_> = (0..=MAX_COPIES).map(|i| token(&format!("t{i}"))).collect();
        for (owner, token) in owners.iter().zip(&tokens) {
            copies.local_copy(owner, token);
        }
        assert_eq!(copies.len(), MAX_COPIES);
        // The first owner's copy was evicted; asking again still gives its token.
        assert!(
            copies
                .local_copy(&owners[0], &tokens[0])
                .same_as(&tokens[0])
        );
    }
}
