//! Per-thread shards: [`Sharded`], one value per shard, each thread using its own.
//!
//! Every call adds to the same few [`Stats`](crate::Stats) counters; from several cores at
//! once, one shared cache line would travel between them on each write. Each thread writes
//! to its own shard instead (threads take shards round-robin), and a snapshot sums them.
//! `evolution-client` keeps its per-thread stack instances in a [`Sharded`] too, so the
//! shard count and the thread numbering are written once, here: metrics is the lowest crate
//! both use.

use std::cell::Cell;
use std::fmt;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

/// `T` on cache lines of its own (128 bytes: adjacent-line prefetch pairs 64-byte lines).
#[derive(Debug, Default)]
#[repr(align(128))]
struct Padded<T>(T);

/// One `T` per shard, each on cache lines of its own; a thread uses the shard of its
/// number, taken in turn when the thread first asks.
///
/// There are four shards per core, at least 4 and at most 64: a power of two, so that
/// threads taken in turn spread evenly. Two threads may share a shard (a runtime can have
/// more threads than shards), so `T` must be safe to share: atomics, or a lock that
/// [`local`](Self::local)'s caller only tries.
///
/// Workspace plumbing, not part of the metrics API: public (and hidden from the docs) for
/// `evolution-client`, which must not keep a second copy of the count and the numbering.
pub struct Sharded<T> {
    shards: Box<[Padded<T>]>,
}

impl<T> Sharded<T> {
    /// A shard set whose shards `make` fills, one call per shard.
    pub fn new(mut make: impl FnMut() -> T) -> Self {
        Self {
            shards: (0..shard_count()).map(|_| Padded(make())).collect(),
        }
    }

    /// This thread's shard.
    pub fn local(&self) -> &T {
        // `shard_count()` is a power of two, and `shards.len()` is that count.
        &self.shards[thread_index() & (self.shards.len() - 1)].0
    }

    /// Every shard, to sum.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.shards.iter().map(|padded| &padded.0)
    }
}

impl<T: Default> Default for Sharded<T> {
    fn default() -> Self {
        Self::new(T::default)
    }
}

impl<T: fmt::Debug> fmt::Debug for Sharded<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// Four shards per core, at least 4 and at most 64: a power of two, so that threads taken
/// in turn spread evenly.
fn shard_count() -> usize {
    static COUNT: OnceLock<usize> = OnceLock::new();
    *COUNT.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        (cores * 4).next_power_of_two().clamp(4, 64)
    })
}

/// A number of this thread's own, taken in turn when the thread first asks.
fn thread_index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static INDEX: Cell<Option<usize>> = const { Cell::new(None) };
    }
    INDEX.with(|index| {
        index.get().unwrap_or_else(|| {
            let next = NEXT.fetch_add(1, Ordering::Relaxed);
            index.set(Some(next));
            next
        })
    })
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU64;

    use super::*;

    #[test]
    fn threads_write_to_their_own_shards_and_the_sum_sees_all() {
        let cells: Sharded<AtomicU64> = Sharded::default();
        std::thread::scope(|scope| {
            for _ in 0..8 {
                scope.spawn(|| {
                    for _ in 0..1000 {
                        cells.local().fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
        });
        let total: u64 = cells.iter().map(|cell| cell.load(Ordering::Relaxed)).sum();
        assert_eq!(total, 8000);
        assert!(cells.shards.len().is_power_of_two() && cells.shards.len() >= 4);
    }
}
