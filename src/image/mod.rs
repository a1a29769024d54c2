//! Image-level value types shared by every layer. A leaf: imports nothing
//! project-internal except `util`.

pub mod config;
pub mod platform;
pub mod reference;

pub use config::Image;
pub use platform::Platform;
pub use reference::Reference;
