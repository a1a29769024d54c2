//! Image-level value types shared by every layer. A leaf: imports nothing
//! project-internal except `util`.

pub mod platform;

pub use platform::Platform;
