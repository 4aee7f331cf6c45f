//! The immutable policy snapshot the data path reads.
