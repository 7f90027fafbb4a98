//! Fuzz target bodies for `cargo fuzz`; see [`bodies`].

pub mod bodies;
