//! Build progress: the events the solver reports about each vertex of
//! the build graph, and a [`Summary`] of what ran and what the cache
//! answered. This is a LEAF module: it imports nothing project-internal
//! except `util`, so that the solver, the cache and the CLI can all depend
//! on it without cycles.
//!
//! The solver holds a [`Sender`] (cloned freely across tasks and blocking
//! threads) and reports [`Event`]s; the renderers that show them on stderr
//! the way `docker buildx build` does come next.

mod clock;
mod event;
mod sender;
mod summary;

#[cfg(test)]
mod tests;

pub use clock::{Clock, ManualClock, SystemClock};
pub use event::{Event, SourceLocation, Stream, Timestamp};
pub use sender::Sender;
pub use summary::{Recorder, Summary};
