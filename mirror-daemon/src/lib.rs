//! mirror-daemon library.
