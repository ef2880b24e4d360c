//! Unit tests for `context`.
