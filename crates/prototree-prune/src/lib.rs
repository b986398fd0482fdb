//! prototree-prune
