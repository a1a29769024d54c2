//! One module per op kind: what each vertex kind does once its inputs are
//! ready. The scheduler decides *when*; these decide *what*. Each module
//! owns its error enum; none may import `cli` or `dockerfile`.

pub mod exec;
pub mod exec_mounts;
pub mod file;
pub mod image;
pub mod merge;
pub mod source;
