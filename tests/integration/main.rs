//! One integration binary; a module per feature.

mod conformance;
mod shell_conformance;
