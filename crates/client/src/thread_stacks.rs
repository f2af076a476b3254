//! Instances of the stack kept per thread, so that a call need not clone one.
//!
//! A tower service is called through `&mut`, so a client shared by many tasks would clone
//! its stack for every call (and drop the clone after): a dozen reference counts, each
//! written from every core that makes calls. Instead the client keeps a few instances, and
//! a call borrows the one of its thread's shard for the moment it takes to drive it to
//! readiness and call it; the response future owns what it needs after that. If the shard
//! is busy or the instance is not ready at once, the call falls back to a fresh clone.
//!
//! The shards are an [`evolution_metrics::Sharded`], the same per-thread shards the
//! metrics' counters use: one shard count and one thread numbering for the workspace.
//! (Not `stack.rs`, which assembles the stack these are instances of.)

use std::sync::Mutex;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use evolution_metrics::Sharded;
use futures_util::future::Either;
use http::Request;
use tower::util::Oneshot;
use tower::{Service, ServiceExt};

use crate::stack::Stack;

pub(crate) struct Stacks {
    /// Cloned for a call that cannot borrow a shard, and for [`Stacks::stack`].
    template: Stack,
    /// One instance per shard, each thread borrowing its own shard's.
    shards: Sharded<Mutex<Stack>>,
}

impl Stacks {
    pub(crate) fn new(template: Stack) -> Self {
        let shards = Sharded::new(|| Mutex::new(template.clone()));
        Self { template, shards }
    }

    /// A clone of the stack, for callers that need their own.
    pub(crate) fn stack(&self) -> Stack {
        self.template.clone()
    }

    /// Calls the stack with `request`.
    ///
    /// Not an `async fn`: it returns the stack's own response future (or a clone's), so
    /// the caller's future holds one of them, not a copy of it besides.
    pub(crate) fn call(&self, request: Request<Bytes>) -> StackCall {
        // Held only while the instance is polled for readiness and called.
        if let Ok(mut stack) = self.shards.local().try_lock() {
            // Readiness is asked once, with a waker that does nothing: an instance that is
            // not ready at once is left alone, and the clone below waits on its own. Every
            // layer of `Stack` is always ready, so this only guards against a future one
            // that is not; such a layer must not hold a reservation made in a `Pending`
            // `poll_ready`, or the shard would keep it until its next call.
            let mut cx = Context::from_waker(Waker::noop());
            if let Poll::Ready(Ok(())) = stack.poll_ready(&mut cx) {
                return Either::Left(stack.call(request));
            }
        }
        Either::Right(self.template.clone().oneshot(request))
    }
}

/// The future of [`Stacks::call`]: the borrowed instance's response future, or a clone's.
pub(crate) type StackCall =
    Either<<Stack as Service<Request<Bytes>>>::Future, Oneshot<Stack, Request<Bytes>>>;

#[cfg(test)]
mod tests {
    use evolution_emulator::{DEMO_KEY_ID, DEMO_MODEL, DEMO_SECRET, Emulator};

    use crate::EvolutionInference;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_call_that_finds_every_instance_busy_uses_a_clone() {
        let emu = Emulator::builder().start().await.unwrap();
        let client = EvolutionInference::builder()
            .model(DEMO_MODEL)
            .key_id(DEMO_KEY_ID)
            .secret(DEMO_SECRET)
            .base_url(emu.base_url())
            .auth_url(emu.auth_url())
            .build()
            .unwrap();
        let answer = client.invoke("borrowed").await.unwrap();
        assert!(answer.ends_with("borrowed"), "{answer}");

        let held: Vec<_> = client
            .inner
            .stacks
            .shards
            .iter()
            .map(|shard| shard.lock().unwrap())
            .collect();
        let answer = client.invoke("cloned").await.unwrap();
        assert!(answer.ends_with("cloned"), "{answer}");
        drop(held);

        let stats = emu.stats();
        assert_eq!((stats.iam_requests, stats.chat_requests), (1, 2));
    }
}
