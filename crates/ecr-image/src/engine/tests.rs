//! Unit tests for `engine`.
