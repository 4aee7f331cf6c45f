//! The per-worker sans-IO pipeline.
