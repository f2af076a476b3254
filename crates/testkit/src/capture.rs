//! A `tracing` subscriber writing into memory, for tests that search the logs.

use std::io::Write;
use std::sync::{Arc, Mutex};

use tracing::Dispatch;
use tracing::dispatcher::DefaultGuard;
use tracing::level_filters::LevelFilter;
use tracing_subscriber::fmt::format::{DefaultFields, Format};
use tracing_subscriber::fmt::{MakeWriter, SubscriberBuilder};

/// Everything the subscribers writing here write, from every thread.
///
/// A clone shares the buffer: the subscriber writes into one, the test reads the other.
#[derive(Clone, Debug, Default)]
pub struct Capture(Arc<Mutex<Vec<u8>>>);

impl Capture {
    /// A `fmt` subscriber at TRACE writing here, for the test to adjust and `finish()`.
    pub fn fmt(&self) -> SubscriberBuilder<DefaultFields, Format, LevelFilter, Capture> {
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(self.clone())
    }

    /// Makes [`Capture::fmt`]'s subscriber this thread's default until the guard drops.
    ///
    /// With one scoped dispatcher in the process, tracing decides whether a log line is
    /// wanted by asking the default of whichever thread meets it first: a test running on
    /// another thread (no subscriber) would switch our lines off. With two registered, it
    /// asks every one, so the guard registers a second, silent one. Lines met before this
    /// call stay marked unwanted until `tracing::callsite::rebuild_interest_cache()`.
    pub fn set_default(&self) -> CaptureGuard {
        let second = Dispatch::new(tracing::subscriber::NoSubscriber::default());
        let guard = tracing::subscriber::set_default(self.fmt().finish());
        CaptureGuard {
            _guard: guard,
            _second: second,
        }
    }

    /// What was written so far.
    pub fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).expect("the logs are UTF-8")
    }
}

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Capture {
    type Writer = Capture;

    fn make_writer(&'a self) -> Capture {
        self.clone()
    }
}

/// The scoped subscriber of [`Capture::set_default`]; dropping it restores the previous one.
#[derive(Debug)]
pub struct CaptureGuard {
    // Dropped in this order: the default first, then the silent second dispatcher, as when a
    // test held both as locals.
    _guard: DefaultGuard,
    _second: Dispatch,
}
