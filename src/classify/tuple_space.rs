//! Tuple space search with priority pruning.

use super::{Classifier, Key, Linear, Rule};

pub struct TupleSpace {
    inner: Linear,
}

impl Classifier for TupleSpace {
    fn build(rules: &[Rule]) -> Self {
        TupleSpace {
            inner: Linear::build(rules),
        }
    }

    fn classify(&self, key: &Key) -> Option<u32> {
        self.inner.classify(key)
    }

    fn classify_from(&self, key: &Key, from: u32) -> Option<u32> {
        self.inner.classify_from(key, from)
    }
}
