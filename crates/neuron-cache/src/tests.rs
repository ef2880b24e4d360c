//! Unit tests of `neuron-cache`, on generated cache trees (hostile ones included).

mod flags;
mod parse;
mod prune;
mod scan;
mod tree;
