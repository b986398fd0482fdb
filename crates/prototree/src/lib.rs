//! prototree
