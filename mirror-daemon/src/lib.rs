//! mirror-daemon library.

pub mod http;
