//! neuron-cache (being written).
