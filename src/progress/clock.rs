//! Where the `progress` module gets "now" from. Part of the `progress` LEAF
//! module: imports nothing project-internal except `util`.
//!
//! The clock is injectable so that tests can stamp events and drive the
//! tty renderer's running timers deterministically: rendered output must
//! never depend on how fast the test machine is.

use std::fmt::Debug;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::event::Timestamp;

/// A source of the current time.
pub trait Clock: Debug + Send + Sync {
    fn now(&self) -> Timestamp;
}

/// The real wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// A clock that only moves when told to; for tests.
#[derive(Debug, Default)]
pub struct ManualClock {
    nanos: AtomicU64,
}

impl ManualClock {
    pub fn new(start: Timestamp) -> Self {
        ManualClock {
            nanos: AtomicU64::new(start.unix_nanos()),
        }
    }

    pub fn set(&self, to: Timestamp) {
        self.nanos.store(to.unix_nanos(), Ordering::SeqCst);
    }

    pub fn advance(&self, by: Duration) {
        let now = self.now().after(by);
        self.set(now);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_unix_nanos(self.nanos.load(Ordering::SeqCst))
    }
}
