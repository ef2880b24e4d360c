//! Unit tests for `ecr`.
