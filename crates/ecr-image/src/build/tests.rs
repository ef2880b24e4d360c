//! Unit tests for `build`.
