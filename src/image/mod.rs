//! Image-level value types shared by every layer. A leaf: imports nothing
//! project-internal except `util`.

pub mod config;
pub mod platform;

pub use config::Image;
pub use platform::Platform;
