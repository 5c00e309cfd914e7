//! Distinct-listener sketch. PLACEHOLDER: exact set; replaced by the HyperLogLog version.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UniqueSketch {
    set: BTreeSet<u64>,
}

impl UniqueSketch {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn insert(&mut self, hash: u64) {
        self.set.insert(hash);
    }
    pub fn merge(&mut self, other: &UniqueSketch) {
        self.set.extend(other.set.iter().copied());
    }
    pub fn estimate(&self) -> u64 {
        self.set.len() as u64
    }
    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }
}
