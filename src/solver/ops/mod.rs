//! One module per op kind: what each vertex kind does once its inputs are
//! ready. The scheduler decides *when*; these decide *what*.

pub mod exec;
pub mod file;
pub mod merge;
pub mod source;
