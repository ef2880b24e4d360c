//! Staging (being written).
