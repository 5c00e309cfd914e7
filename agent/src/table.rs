//! A hash table for keys that are 64-bit hashes already, which can be told to bring a key's
//! slot into the CPU cache ahead of the lookup.
//!
//! The listener cache is probed once per log line at a random place in a table of tens of
//! thousands of entries, bigger than the core's cache: a miss to memory per line, about a
//! sixth of a line's cost. The ingestor knows the next line's key while it still works on
//! the current line, so it [`prefetch`](KeyTable::prefetch)es that key's slot: by the time
//! the lookup comes, the slot is there. (The standard `HashMap` does not say where a key
//! lives, so it cannot be asked to.)
//!
//! Open addressing with linear probing, at most three quarters full. A slot is one cache
//! line (for values of up to 56 bytes), so one prefetch brings a key and its value. Entries
//! go only in bulk, by [`KeyTable::retain`], which rebuilds the table.

/// Marks an empty slot; a key of 0 is stored as 1 (two keys out of 2⁶⁴ share a slot key).
const EMPTY: u64 = 0;

#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Slot<V> {
    key: u64,
    value: V,
}

pub struct KeyTable<V> {
    /// A power of two in length.
    slots: Vec<Slot<V>>,
    len: usize,
}

impl<V: Copy + Default> Default for KeyTable<V> {
    fn default() -> Self {
        KeyTable::with_slots(16)
    }
}

impl<V: Copy + Default> KeyTable<V> {
    fn with_slots(n: usize) -> KeyTable<V> {
        debug_assert!(n.is_power_of_two());
        KeyTable {
            slots: vec![
                Slot {
                    key: EMPTY,
                    value: V::default()
                };
                n
            ],
            len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Asks the CPU to load the slot where a lookup of `key` starts. Only a hint: nothing
    /// changes if the table changes before the lookup.
    #[inline]
    pub fn prefetch(&self, key: u64) {
        prefetch(&self.slots[self.home(slot_key(key))]);
    }

    #[inline]
    pub fn get(&self, key: u64) -> Option<&V> {
        self.find(slot_key(key)).map(|i| &self.slots[i].value)
    }

    #[inline]
    pub fn get_mut(&mut self, key: u64) -> Option<&mut V> {
        self.find(slot_key(key)).map(|i| &mut self.slots[i].value)
    }

    /// Sets the value of `key`, adding it if it is not there.
    pub fn insert(&mut self, key: u64, value: V) {
        if (self.len + 1) * 4 > self.slots.len() * 3 {
            self.rebuild(self.slots.len() * 2, |_| true);
        }
        let key = slot_key(key);
        let i = self.probe(key);
        if self.slots[i].key == EMPTY {
            self.len += 1;
        }
        self.slots[i] = Slot { key, value };
    }

    /// Keeps the entries `keep` says yes to, in a table of the same size.
    pub fn retain(&mut self, keep: impl FnMut(&V) -> bool) {
        self.rebuild(self.slots.len(), keep);
    }

    #[cfg(test)]
    fn values(&self) -> impl Iterator<Item = &V> {
        self.slots
            .iter()
            .filter(|s| s.key != EMPTY)
            .map(|s| &s.value)
    }

    #[inline]
    fn home(&self, key: u64) -> usize {
        // The keys are hashes: their low bits are as good as any.
        key as usize & (self.slots.len() - 1)
    }

    #[inline]
    fn find(&self, key: u64) -> Option<usize> {
        let i = self.probe(key);
        (self.slots[i].key != EMPTY).then_some(i)
    }

    /// The slot holding `key`, or the empty one where it would go (there always is one).
    #[inline]
    fn probe(&self, key: u64) -> usize {
        let mut i = self.home(key);
        while self.slots[i].key != key && self.slots[i].key != EMPTY {
            i = (i + 1) & (self.slots.len() - 1);
        }
        i
    }

    fn rebuild(&mut self, slots: usize, mut keep: impl FnMut(&V) -> bool) {
        let old = std::mem::replace(&mut self.slots, Self::with_slots(slots).slots);
        self.len = 0;
        for Slot { key, value } in old {
            if key != EMPTY && keep(&value) {
                // Keys are distinct: the probe ends at a free slot.
                let i = self.probe(key);
                self.slots[i] = Slot { key, value };
                self.len += 1;
            }
        }
    }
}

#[inline]
fn slot_key(key: u64) -> u64 {
    key.max(1)
}

/// Brings the cache line at `value` into the CPU cache.
#[inline]
#[allow(unsafe_code)]
fn prefetch<T>(value: &T) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        // SAFETY: a prefetch reads nothing the program sees and never faults; the address is
        // of a live reference.
        unsafe { _mm_prefetch::<_MM_HINT_T0>((value as *const T).cast::<i8>()) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = value;
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u64, u32),
        Get(u64),
        Bump(u64),
        RetainEven,
    }

    fn op() -> impl Strategy<Value = Op> {
        // Few distinct keys (so operations meet), some sharing low bits (so slots collide),
        // and 0 and 1, which share a slot key.
        let key = prop_oneof![
            0u64..40,
            (0u64..40).prop_map(|k| k << 40),
            Just(0u64),
            Just(1u64),
        ];
        prop_oneof![
            4 => (key.clone(), any::<u32>()).prop_map(|(k, v)| Op::Insert(k, v)),
            3 => key.clone().prop_map(Op::Get),
            2 => key.prop_map(Op::Bump),
            1 => Just(Op::RetainEven),
        ]
    }

    proptest! {
        /// The table behaves as a map from the slot key (0 and 1 being one key).
        #[test]
        fn behaves_as_a_map(ops in prop::collection::vec(op(), 0..400)) {
            let mut table = KeyTable::<u32>::default();
            let mut model = HashMap::<u64, u32>::new();
            for op in ops {
                match op {
                    Op::Insert(k, v) => {
                        table.insert(k, v);
                        model.insert(k.max(1), v);
                    }
                    Op::Get(k) => prop_assert_eq!(table.get(k), model.get(&k.max(1))),
                    Op::Bump(k) => {
                        if let Some(v) = table.get_mut(k) {
                            *v = v.wrapping_add(1);
                        }
                        if let Some(v) = model.get_mut(&k.max(1)) {
                            *v = v.wrapping_add(1);
                        }
                    }
                    Op::RetainEven => {
                        table.retain(|v| v % 2 == 0);
                        model.retain(|_, v| *v % 2 == 0);
                    }
                }
                prop_assert_eq!(table.len(), model.len());
            }
            let mut values: Vec<u32> = table.values().copied().collect();
            let mut expected: Vec<u32> = model.values().copied().collect();
            values.sort_unstable();
            expected.sort_unstable();
            prop_assert_eq!(values, expected);
        }
    }

    #[test]
    fn a_listener_entry_and_its_key_are_one_cache_line() {
        assert_eq!(size_of::<Slot<[u64; 7]>>(), 64);
        assert_eq!(align_of::<Slot<[u64; 7]>>(), 64);
    }

    #[test]
    fn grows_and_stays_at_most_three_quarters_full() {
        let mut table = KeyTable::<u64>::default();
        let key = |k: u64| k.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        for k in 0..100_000u64 {
            table.insert(key(k), k);
        }
        assert_eq!(table.len(), 100_000);
        assert!(table.slots.len() * 3 >= 100_000 * 4);
        for k in (0..100_000u64).step_by(997) {
            table.prefetch(key(k));
            assert_eq!(table.get(key(k)), Some(&k));
        }
        assert_eq!(table.get(u64::MAX), None);
    }
}
