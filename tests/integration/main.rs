//! One integration binary; a module per feature.

mod shell_conformance;
