//! Unit tests of the pure parts of `fsx`.

mod layout;
