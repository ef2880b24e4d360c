//! Job (being written).
