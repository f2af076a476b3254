//! Per-thread copies of the current token.
//!
//! Handing out clones of one shared `Arc` makes every caller on every core write the
//! same reference count: on two busy threads that cache line bounces and the hot path
//! slows down several times. Each thread instead keeps its own copy of the current
//! token (same id, separate allocation) and clones that, so the hot path writes only
//! memory its thread owns.

use std::cell::RefCell;

use crate::AccessToken;

/// Copies kept per thread; more managers than this on one thread just share the
/// oldest slot's fate (evicted, then re-copied on next use).
const MAX_COPIES: usize = 8;

struct Copy {
    /// The manager the copy belongs to (address of its shared state).
    owner: usize,
    token: AccessToken,
}

thread_local! {
    static COPIES: RefCell<Vec<Copy>> = const { RefCell::new(Vec::new()) };
}

/// A clone of `token` whose reference count this thread owns.
pub(crate) fn local_copy(owner: usize, token: &AccessToken) -> AccessToken {
    COPIES
        .try_with(|copies| {
            let Ok(mut copies) = copies.try_borrow_mut() else {
                return token.clone();
            };
            if let Some(copy) = copies.iter().find(|c| c.owner == owner)
                && copy.token.same_as(token)
            {
                return copy.token.clone();
            }
            let fork = token.fork();
            match copies.iter_mut().find(|c| c.owner == owner) {
                Some(copy) => copy.token = fork.clone(),
                None => {
                    if copies.len() == MAX_COPIES {
                        copies.remove(0);
                    }
                    copies.push(Copy {
                        owner,
                        token: fork.clone(),
                    });
                }
            }
            fork
        })
        // During thread teardown the thread-local is gone: share the original.
        .unwrap_or_else(|_| token.clone())
}
