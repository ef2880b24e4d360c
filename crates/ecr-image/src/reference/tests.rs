//! Unit tests for `reference`.
