//! Persistent structures a snapshot shares with the one it was derived from: a copy costs a
//! handful of reference counts, and a change copies only the chunks it touches.
//!
//! - [`Slots`]: a two-level array of `Arc` chunks (64 × 64 entries per branch). Writing one
//!   entry copies its branch (64 pointers) and its leaf (64 entries) if another snapshot still
//!   shares them; cloning the array copies one pointer per 4,096 entries.
//! - [`ShardedMap`]: a hash map cut into [`SHARDS`] shards kept in a [`Slots`]; writing a key
//!   copies its shard (about `len / SHARDS` entries) the first time a snapshot touches it.
//! - [`FreeSlots`]: a persistent stack of free slot numbers, so a removed session's slot is
//!   used again and the slot array stays as dense as the peak number of sessions.

use rustc_hash::FxHashMap;
use std::hash::Hash;
use std::sync::Arc;

const LEAF: usize = 64;
const BRANCH: usize = 64;

type Leaf<T> = Vec<Option<T>>;
type Branch<T> = Vec<Arc<Leaf<T>>>;

/// A sparse array indexed by `u32`, shared chunk by chunk between snapshots.
pub(super) struct Slots<T> {
    branches: Vec<Arc<Branch<T>>>,
}

impl<T> Clone for Slots<T> {
    fn clone(&self) -> Self {
        Slots {
            branches: self.branches.clone(),
        }
    }
}

impl<T> Default for Slots<T> {
    fn default() -> Self {
        Slots {
            branches: Vec::new(),
        }
    }
}

impl<T: Clone> Slots<T> {
    #[inline]
    pub(super) fn get(&self, i: u32) -> Option<&T> {
        let i = i as usize;
        let branch = self.branches.get(i / (LEAF * BRANCH))?;
        let leaf = branch.get(i / LEAF % BRANCH)?;
        leaf[i % LEAF].as_ref()
    }

    /// Writes entry `i`, copying only the chunks another snapshot shares.
    pub(super) fn set(&mut self, i: u32, value: Option<T>) {
        let i = i as usize;
        let b = i / (LEAF * BRANCH);
        while self.branches.len() <= b {
            self.branches.push(Arc::new(Vec::new()));
        }
        let branch = Arc::make_mut(&mut self.branches[b]);
        let l = i / LEAF % BRANCH;
        while branch.len() <= l {
            branch.push(Arc::new(vec![None; LEAF]));
        }
        Arc::make_mut(&mut branch[l])[i % LEAF] = value;
    }

    /// Entry `i` for writing (made with `T::default()` if empty), copying only the chunks
    /// another snapshot shares.
    pub(super) fn get_or_insert(&mut self, i: u32) -> &mut T
    where
        T: Default,
    {
        let i = i as usize;
        let b = i / (LEAF * BRANCH);
        while self.branches.len() <= b {
            self.branches.push(Arc::new(Vec::new()));
        }
        let branch = Arc::make_mut(&mut self.branches[b]);
        let l = i / LEAF % BRANCH;
        while branch.len() <= l {
            branch.push(Arc::new(vec![None; LEAF]));
        }
        Arc::make_mut(&mut branch[l])[i % LEAF].get_or_insert_with(T::default)
    }

    /// Entries in slot order.
    pub(super) fn iter(&self) -> impl Iterator<Item = &T> {
        self.branches
            .iter()
            .flat_map(|b| b.iter())
            .flat_map(|l| l.iter())
            .filter_map(Option::as_ref)
    }
}

/// Shards of a [`ShardedMap`]: enough that a shard stays small (≈250 entries) at a million
/// sessions, few enough that an empty map costs little.
pub(super) const SHARDS: u32 = 4096;

/// A key's shard: a multiplicative mix, independent of the hash the shard's own table uses,
/// so keys of one shard still spread over its buckets.
pub(super) trait ShardKey: Copy + Eq + Hash {
    fn mix(&self) -> u64;
}

impl ShardKey for u32 {
    #[inline]
    fn mix(&self) -> u64 {
        u64::from(*self).wrapping_mul(0x9e37_79b9_7f4a_7c15)
    }
}

impl ShardKey for (u8, u128) {
    #[inline]
    fn mix(&self) -> u64 {
        let folded = (self.1 as u64) ^ ((self.1 >> 64) as u64).rotate_left(17) ^ u64::from(self.0);
        folded.wrapping_mul(0x9e37_79b9_7f4a_7c15)
    }
}

/// A hash map whose shards are shared between snapshots.
pub(super) struct ShardedMap<K, V> {
    shards: Slots<Arc<FxHashMap<K, V>>>,
    len: usize,
}

impl<K, V> Clone for ShardedMap<K, V> {
    fn clone(&self) -> Self {
        ShardedMap {
            shards: self.shards.clone(),
            len: self.len,
        }
    }
}

impl<K, V> Default for ShardedMap<K, V> {
    fn default() -> Self {
        ShardedMap {
            shards: Slots::default(),
            len: 0,
        }
    }
}

impl<K: ShardKey, V: Copy> ShardedMap<K, V> {
    #[inline]
    fn shard(key: &K) -> u32 {
        (key.mix() >> (64 - SHARDS.trailing_zeros())) as u32
    }

    #[inline]
    pub(super) fn get(&self, key: &K) -> Option<V> {
        self.shards.get(Self::shard(key))?.get(key).copied()
    }

    /// The key's shard, copied first if another snapshot shares it.
    fn shard_mut(&mut self, key: &K) -> &mut FxHashMap<K, V> {
        Arc::make_mut(self.shards.get_or_insert(Self::shard(key)))
    }

    pub(super) fn insert(&mut self, key: K, value: V) {
        if self.shard_mut(&key).insert(key, value).is_none() {
            self.len += 1;
        }
    }

    pub(super) fn remove(&mut self, key: &K) -> Option<V> {
        self.shards.get(Self::shard(key))?.get(key)?;
        let old = self.shard_mut(key).remove(key);
        if old.is_some() {
            self.len -= 1;
        }
        old
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }
}

struct FreeNode {
    slot: u32,
    next: Option<Arc<FreeNode>>,
}

/// Free slot numbers, last freed first; shared between snapshots like the rest.
#[derive(Clone, Default)]
pub(super) struct FreeSlots {
    head: Option<Arc<FreeNode>>,
}

impl FreeSlots {
    pub(super) fn push(&mut self, slot: u32) {
        let next = self.head.take();
        self.head = Some(Arc::new(FreeNode { slot, next }));
    }

    pub(super) fn pop(&mut self) -> Option<u32> {
        let head = self.head.take()?;
        self.head = head.next.clone();
        Some(head.slot)
    }
}

impl Drop for FreeSlots {
    /// Unlinks the list node by node: dropping a long chain recursively would overflow the
    /// stack.
    fn drop(&mut self) {
        let mut next = self.head.take();
        while let Some(node) = next {
            match Arc::try_unwrap(node) {
                Ok(mut n) => next = n.next.take(),
                Err(_) => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_leaves_the_shared_copy_unchanged() {
        let mut a: Slots<u32> = Slots::default();
        for i in 0..10_000 {
            a.set(i, Some(i));
        }
        let mut b = a.clone();
        b.set(5, Some(50));
        b.set(9_999, None);
        assert_eq!((a.get(5), a.get(9_999)), (Some(&5), Some(&9_999)));
        assert_eq!(
            (b.get(5), b.get(9_999), b.get(6)),
            (Some(&50), None, Some(&6))
        );
        assert_eq!(b.iter().count(), 9_999);
        // Only the touched leaves were copied.
        let shared = a.branches[0]
            .iter()
            .zip(b.branches[0].iter())
            .filter(|(x, y)| Arc::ptr_eq(x, y))
            .count();
        assert_eq!(shared, BRANCH - 1);
    }

    #[test]
    fn a_sharded_map_copies_only_the_touched_shard() {
        let mut a: ShardedMap<u32, u32> = ShardedMap::default();
        for i in 0..50_000 {
            a.insert(i, i + 1);
        }
        let mut b = a.clone();
        b.insert(7, 70);
        assert_eq!(b.remove(&8), Some(9));
        assert_eq!(b.remove(&8), None);
        b.insert(60_000, 1);
        assert_eq!(
            (a.get(&7), a.get(&8), a.get(&60_000)),
            (Some(8), Some(9), None)
        );
        assert_eq!(
            (b.get(&7), b.get(&8), b.get(&60_000)),
            (Some(70), None, Some(1))
        );
        assert_eq!((a.len(), b.len()), (50_000, 50_000));
        let shared = a
            .shards
            .iter()
            .zip(b.shards.iter())
            .filter(|(x, y)| Arc::ptr_eq(x, y))
            .count();
        assert!(shared >= SHARDS as usize - 3, "{shared}");
    }

    #[test]
    fn free_slots_pop_last_freed_first_and_a_long_list_drops() {
        let mut f = FreeSlots::default();
        for i in 0..1_000_000 {
            f.push(i);
        }
        let g = f.clone();
        assert_eq!((f.pop(), f.pop()), (Some(999_999), Some(999_998)));
        drop(f);
        drop(g);
        assert_eq!(FreeSlots::default().pop(), None);
    }
}
