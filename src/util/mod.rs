//! Leaf helpers shared by every layer. Imports nothing project-internal.

pub mod fs;
