//! Unit tests for `dockerignore`.
