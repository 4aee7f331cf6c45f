//! The brute-force first-match oracle.

use super::{Classifier, Key, Rule};

pub struct Linear {
    rules: Vec<Rule>,
}

impl Classifier for Linear {
    fn build(rules: &[Rule]) -> Self {
        Linear {
            rules: rules.to_vec(),
        }
    }

    fn classify(&self, key: &Key) -> Option<u32> {
        self.classify_from(key, 0)
    }

    fn classify_from(&self, key: &Key, from: u32) -> Option<u32> {
        let start = from as usize;
        self.rules
            .get(start..)?
            .iter()
            .position(|r| r.matches(key))
            .map(|i| (i + start) as u32)
    }
}
