//! Picks the fault (if any) for each request: the route's scripted queue first, then the seeded
//! random faults.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::fault::Fault;
use crate::route::Route;
use crate::sync::lock;

/// Per-route FIFO queues of scripted faults plus an optional seeded random fault source.
///
/// The hot path (no fault queued, no random faults) is two relaxed atomic loads.
#[derive(Debug)]
pub(crate) struct Injector {
    queues: [Mutex<VecDeque<Fault>>; Route::COUNT],
    queued: [AtomicUsize; Route::COUNT],
    random_on: [AtomicBool; Route::COUNT],
    random: Mutex<Random>,
}

#[derive(Debug)]
struct Random {
    probability: f64,
    rng: StdRng,
    faults: Vec<Fault>,
}

impl Injector {
    pub(crate) fn new() -> Self {
        Injector {
            queues: Default::default(),
            queued: Default::default(),
            random_on: Default::default(),
            random: Mutex::new(Random {
                probability: 0.0,
                rng: StdRng::seed_from_u64(0),
                faults: default_random_faults(),
            }),
        }
    }

    /// The fault for the next request to `route`, if any.
    pub(crate) fn next(&self, route: Route) -> Option<Fault> {
        let i = route.index();
        if self.queued[i].load(Ordering::Acquire) > 0 {
            let mut queue = lock(&self.queues[i]);
            let fault = queue.pop_front();
            self.queued[i].store(queue.len(), Ordering::Release);
            if fault.is_some() {
                return fault;
            }
        }
        if self.random_on[i].load(Ordering::Relaxed) {
            let mut random = lock(&self.random);
            let random = &mut *random;
            if random.faults.is_empty() || random.rng.random::<f64>() >= random.probability {
                return None;
            }
            let pick = random.rng.random_range(0..random.faults.len());
            return Some(random.faults[pick].clone());
        }
        None
    }

    pub(crate) fn push(&self, route: Route, fault: Fault) {
        let i = route.index();
        let mut queue = lock(&self.queues[i]);
        queue.push_back(fault);
        self.queued[i].store(queue.len(), Ordering::Release);
    }

    pub(crate) fn clear(&self, route: Route) {
        let i = route.index();
        let mut queue = lock(&self.queues[i]);
        queue.clear();
        self.queued[i].store(0, Ordering::Release);
    }

    pub(crate) fn pending(&self, route: Route) -> usize {
        lock(&self.queues[route.index()]).len()
    }

    /// Start (or, with `probability` 0, stop) random faults on `routes`, reseeding the generator.
    pub(crate) fn set_probability(&self, probability: f64, seed: u64, routes: &[Route]) {
        let probability = if probability.is_nan() {
            0.0
        } else {
            probability.clamp(0.0, 1.0)
        };
        let mut random = lock(&self.random);
        random.probability = probability;
        random.rng = StdRng::seed_from_u64(seed);
        for route in Route::ALL {
            let on = probability > 0.0 && routes.contains(&route);
            self.random_on[route.index()].store(on, Ordering::Relaxed);
        }
    }

    /// Replace the set random faults are drawn from.
    pub(crate) fn set_random_faults(&self, faults: Vec<Fault>) {
        lock(&self.random).faults = faults;
    }
}

/// The random fault set: the transient failures a resilient client must ride out.
fn default_random_faults() -> Vec<Fault> {
    vec![
        Fault::status(500),
        Fault::status(502),
        Fault::status(503),
        Fault::status(429),
        Fault::close(),
    ]
}
