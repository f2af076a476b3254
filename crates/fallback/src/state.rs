//! The switch state shared by a [`Fallback`](crate::Fallback), its clones, its layer and its
//! [`FallbackHandle`](crate::FallbackHandle).
//!
//! Which side serves is one atomic word, so routing a request while all is well is one load.
//! Every change of that word happens under a short `std::sync::Mutex` (never held across an
//! `.await`, never held while observers run) that also keeps the rarely read parts: the failback
//! clock, the probe flag, the key ids and the observers. A change names the generation it
//! saw, so any number of concurrent failures of one generation make exactly one switch.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use evolution_token::TokenManager;
use tokio::time::Instant;

use crate::event::{FallbackEvent, FallbackObserver};
use crate::failback::Failback;
use crate::policy::SwitchReason;
use crate::side::Side;

/// Where a side's key id comes from, for errors and logs. Never a secret.
#[derive(Clone)]
pub(crate) enum KeyId {
    Fixed(Arc<str>),
    /// Read when needed, so a key replaced with `TokenManager::set_credentials` is named right.
    Tokens(TokenManager),
}

impl KeyId {
    fn current(&self) -> Arc<str> {
        match self {
            Self::Fixed(id) => Arc::clone(id),
            Self::Tokens(tokens) => tokens.key_id(),
        }
    }
}

/// The routing word: generation, preferred side, active side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Snapshot {
    /// Bumped by every change; a change is applied only by someone who saw the current one.
    pub(crate) generation: u64,
    /// The side traffic returns to on failback (the primary until a rotation).
    pub(crate) preferred: Side,
    /// The side new requests go to.
    pub(crate) active: Side,
}

impl Snapshot {
    const INITIAL: Self = Self {
        generation: 0,
        preferred: Side::Primary,
        active: Side::Primary,
    };

    fn encode(self) -> u64 {
        (self.generation << 2) | (bit(self.preferred) << 1) | bit(self.active)
    }

    fn decode(word: u64) -> Self {
        Self {
            generation: word >> 2,
            preferred: side(word >> 1),
            active: side(word),
        }
    }

    /// Whether traffic is on the backup of the preferred side.
    pub(crate) fn fallen_back(self) -> bool {
        self.active != self.preferred
    }

    fn next(self, preferred: Side, active: Side) -> Self {
        Self {
            generation: self.generation.wrapping_add(1),
            preferred,
            active,
        }
    }
}

/// A side as one bit of the routing word.
fn bit(side: Side) -> u64 {
    match side {
        Side::Primary => 0,
        Side::Backup => 1,
    }
}

/// The side a bit of the routing word names (its lowest bit; the rest is ignored).
fn side(bit: u64) -> Side {
    if bit & 1 == 0 {
        Side::Primary
    } else {
        Side::Backup
    }
}

/// Where one request goes first.
#[derive(Debug)]
pub(crate) struct Route {
    /// The state the request was routed under.
    pub(crate) seen: Snapshot,
    /// The side it goes to first.
    pub(crate) side: Side,
    /// Set when this request is the failback probe of the preferred side.
    pub(crate) probe: Option<ProbeGuard>,
}

type Observers = Arc<[Arc<dyn FallbackObserver>]>;

/// The parts read only on the slow paths.
struct Slow {
    failback: Failback,
    /// When the current stay on the backup started (the switch or the last failed probe).
    since: Option<Instant>,
    /// A probe was asked for by hand.
    probe_requested: bool,
    /// A probe is running: no second one starts.
    probing: bool,
    key_ids: [Option<KeyId>; 2],
    observers: Observers,
}

impl Slow {
    fn probe_due(&self, now: Instant) -> bool {
        if self.probing {
            return false;
        }
        if self.probe_requested {
            return true;
        }
        match (self.failback, self.since) {
            (Failback::After(interval), Some(since)) => now >= since + interval,
            (Failback::After(_), None) => true,
            (Failback::Never, _) => false,
        }
    }

    fn key_id(&self, side: Side) -> Option<Arc<str>> {
        self.key_ids[side.index()].as_ref().map(KeyId::current)
    }

    /// Resets the failback clock for a new stay on the backup (or none).
    fn restart(&mut self, fallen_back: bool) {
        self.since = fallen_back.then(Instant::now);
        self.probe_requested = false;
        self.probing = false;
    }
}

pub(crate) struct Shared {
    word: AtomicU64,
    switches: AtomicU64,
    slow: Mutex<Slow>,
}

impl Shared {
    pub(crate) fn new() -> Self {
        Self {
            word: AtomicU64::new(Snapshot::INITIAL.encode()),
            switches: AtomicU64::new(0),
            slow: Mutex::new(Slow {
                failback: Failback::default(),
                since: None,
                probe_requested: false,
                probing: false,
                key_ids: [None, None],
                observers: Arc::new([]),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Slow> {
        // Nothing under this lock can leave the state half-changed, so a poisoned lock is usable.
        self.slow.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The lock, if the state is still the one `seen` under it: of the reports made under one
    /// generation (many requests failing at once) only the first changes anything.
    fn lock_if_current(&self, seen: Snapshot) -> Option<MutexGuard<'_, Slow>> {
        let slow = self.lock();
        (self.snapshot() == seen).then_some(slow)
    }

    pub(crate) fn snapshot(&self) -> Snapshot {
        Snapshot::decode(self.word.load(Ordering::Acquire))
    }

    pub(crate) fn switches(&self) -> u64 {
        self.switches.load(Ordering::Relaxed)
    }

    pub(crate) fn set_failback(&self, failback: Failback) {
        self.lock().failback = failback;
    }

    pub(crate) fn set_key_ids(&self, primary: KeyId, backup: KeyId) {
        self.lock().key_ids = [Some(primary), Some(backup)];
    }

    pub(crate) fn add_observer(&self, observer: Arc<dyn FallbackObserver>) {
        let mut slow = self.lock();
        let mut all = slow.observers.to_vec();
        all.push(observer);
        slow.observers = all.into();
    }

    pub(crate) fn key_id(&self, side: Side) -> Option<Arc<str>> {
        self.lock().key_id(side)
    }

    /// Picks the side for a new request. One atomic load unless traffic is on the backup.
    pub(crate) fn route(self: &Arc<Self>) -> Route {
        let seen = self.snapshot();
        if !seen.fallen_back() {
            return Route {
                seen,
                side: seen.active,
                probe: None,
            };
        }
        let mut slow = self.lock();
        let seen = self.snapshot();
        if seen.fallen_back() && slow.probe_due(Instant::now()) {
            slow.probing = true;
            slow.probe_requested = false;
            return Route {
                seen,
                side: seen.preferred,
                probe: Some(ProbeGuard {
                    shared: Arc::clone(self),
                    seen,
                    armed: true,
                }),
            };
        }
        Route {
            seen,
            side: seen.active,
            probe: None,
        }
    }

    /// Makes `next` the routing word: the one transition behind a switch, a failback and a
    /// rotation. Takes the lock's guard, so the word only changes under it, and releases it
    /// before returning, so the caller logs and tells the observers without holding it.
    ///
    /// The failback clock restarts: running if `next` is on the backup, stopped if not.
    fn change(&self, mut slow: MutexGuard<'_, Slow>, next: Snapshot) -> Changed {
        self.word.store(next.encode(), Ordering::Release);
        slow.restart(next.fallen_back());
        Changed {
            switches: self.switches.fetch_add(1, Ordering::Relaxed) + 1,
            key: slow.key_id(next.active),
            observers: Arc::clone(&slow.observers),
        }
    }

    /// The preferred side failed with `reason` under `seen`: move to the other side, unless
    /// another request (or a rotation) already changed the state. Returns whether it switched.
    pub(crate) fn switch_away(&self, seen: Snapshot, reason: SwitchReason) -> bool {
        let Some(slow) = self.lock_if_current(seen) else {
            return false;
        };
        if seen.fallen_back() {
            return false;
        }
        let from = seen.active;
        let to = from.other();
        let failed_key = slow.key_id(from);
        let changed = self.change(slow, seen.next(seen.preferred, to));
        tracing::warn!(
            %from,
            %to,
            reason = reason.as_str(),
            failed_key_id = failed_key.as_deref(),
            new_key_id = changed.key.as_deref(),
            switches = changed.switches,
            "fallback: the {from} key failed ({reason}); switched to the {to} key"
        );
        changed.emit(&FallbackEvent::Switched { from, to, reason });
        true
    }

    /// The preferred side answered well while traffic was on the backup under `seen`: go back.
    pub(crate) fn fail_back(&self, seen: Snapshot) -> bool {
        let Some(slow) = self.lock_if_current(seen) else {
            return false;
        };
        if !seen.fallen_back() {
            return false;
        }
        let to = seen.preferred;
        let changed = self.change(slow, seen.next(to, to));
        tracing::info!(
            %to,
            key_id = changed.key.as_deref(),
            switches = changed.switches,
            "fallback: the {to} key works again; failed back to it"
        );
        changed.emit(&FallbackEvent::FailedBack { to });
        true
    }

    fn probe_failed(&self, seen: Snapshot, reason: Option<SwitchReason>) {
        let Some(mut slow) = self.lock_if_current(seen) else {
            return;
        };
        slow.restart(true);
        let side = seen.preferred;
        let key = slow.key_id(side);
        let observers = Arc::clone(&slow.observers);
        drop(slow);
        tracing::info!(
            %side,
            key_id = key.as_deref(),
            reason = reason.map(SwitchReason::as_str),
            "fallback: failback probe of the {side} key failed; staying on the {}", side.other()
        );
        emit(&observers, &FallbackEvent::ProbeFailed { side, reason });
    }

    /// A probe ended without an answer (its future was dropped): let the next request probe.
    fn probe_abandoned(&self, seen: Snapshot) {
        if let Some(mut slow) = self.lock_if_current(seen) {
            slow.probing = false;
        }
    }

    /// Swaps the roles of the sides; the new preferred side serves at once.
    pub(crate) fn rotate(&self) -> Side {
        let slow = self.lock();
        let seen = self.snapshot();
        let to = seen.preferred.other();
        let changed = self.change(slow, seen.next(to, to));
        tracing::info!(
            %to,
            key_id = changed.key.as_deref(),
            switches = changed.switches,
            "fallback: rotated by hand; the {to} key is now preferred"
        );
        changed.emit(&FallbackEvent::Rotated { to });
        to
    }

    /// Lets the next request probe the preferred side, whatever the failback setting.
    pub(crate) fn probe_now(&self) {
        self.lock().probe_requested = true;
    }
}

/// What a change of the routing word leaves to report once the lock is released.
struct Changed {
    /// The number of changes so far, this one included.
    switches: u64,
    /// The key id of the side that now serves.
    key: Option<Arc<str>>,
    observers: Observers,
}

impl Changed {
    fn emit(&self, event: &FallbackEvent) {
        emit(&self.observers, event);
    }
}

fn emit(observers: &Observers, event: &FallbackEvent) {
    for observer in observers.iter() {
        observer.on_event(event);
    }
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let snapshot = self.snapshot();
        f.debug_struct("Shared")
            .field("active", &snapshot.active)
            .field("preferred", &snapshot.preferred)
            .field("switches", &self.switches())
            .finish_non_exhaustive()
    }
}

/// Marks the request probing the preferred side. Dropping it unresolved (the caller gave up)
/// lets another request probe.
pub(crate) struct ProbeGuard {
    shared: Arc<Shared>,
    seen: Snapshot,
    armed: bool,
}

impl ProbeGuard {
    pub(crate) fn succeeded(mut self) {
        self.armed = false;
        self.shared.fail_back(self.seen);
    }

    pub(crate) fn failed(mut self, reason: Option<SwitchReason>) {
        self.armed = false;
        self.shared.probe_failed(self.seen, reason);
    }
}

impl Drop for ProbeGuard {
    fn drop(&mut self) {
        if self.armed {
            self.shared.probe_abandoned(self.seen);
        }
    }
}

impl fmt::Debug for ProbeGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProbeGuard")
            .field("seen", &self.seen)
            .finish_non_exhaustive()
    }
}
