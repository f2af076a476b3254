//! Per-thread shards for the [`Stats`](crate::Stats) cells written on every call.
//!
//! Every call adds to the same few counters; from several cores at once, one shared cache
//! line would travel between them on each write. Each thread writes to its own shard
//! instead (threads take shards round-robin), and a snapshot sums them.

use std::cell::Cell;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

/// `T` on cache lines of its own (128 bytes: adjacent-line prefetch pairs 64-byte lines).
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct Padded<T>(pub(crate) T);

/// One `T` per shard.
#[derive(Debug)]
pub(crate) struct Sharded<T> {
    shards: Box<[Padded<T>]>,
}

impl<T: Default> Default for Sharded<T> {
    fn default() -> Self {
        Self {
            shards: (0..shard_count()).map(|_| Padded::default()).collect(),
        }
    }
}

impl<T> Sharded<T> {
    /// This thread's shard.
    pub(crate) fn local(&self) -> &T {
        // `shard_count()` is a power of two, and `shards.len()` is that count.
        &self.shards[thread_index() & (self.shards.len() - 1)].0
    }

    /// Every shard, to sum.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &T> {
        self.shards.iter().map(|padded| &padded.0)
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
