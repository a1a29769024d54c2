//! Leaf helpers shared by every layer. Imports nothing project-internal.

pub mod chmod;
pub mod fs;
pub mod redact;
