//! Unit tests for the image definitions.
