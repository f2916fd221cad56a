//! ScyllaDB store (see module docs in mod.rs).
