//! Unit tests for `push`.
