//! Unit tests for `dockerfile`.
