//! prototree-data
