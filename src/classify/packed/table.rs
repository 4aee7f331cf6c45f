//! One tuple's table: an open-addressed hash from the masked key to a bucket, and the buckets'
//! rules packed in one arena.
//!
//! Owns the memory layout a lookup walks: a probe hashes once, reads one or two adjacent slots
//! and then scans a short run of packed rules that sit next to each other. It never allocates on
//! lookup; inserts and removals keep the layout valid without rebuilding it.

use super::space::{Addr, Entry, Probe, Tuple};

/// Odd constant for multiply-shift hashing (the 64-bit golden ratio): the product's top bits
/// depend on every bit of the masked addresses.
const K1: u64 = 0x9e37_79b9_7f4a_7c15;

/// Slots per bucket at least: the table grows before more than `1 / LOAD_DIVISOR` of its slots
/// are taken. Measured on ClassBench with the thread's CPU time: a quarter against a half made
/// ipc1_1K's lookup 20 % faster, acl1_10K's 8 %; an eighth gained ipc1 another 6 % and lost
/// acl1_10K 4 % (its slots no longer fit the cache), so a quarter it is.
const LOAD_DIVISOR: usize = 4;

/// A bucket: the masked fields it stands for, and where its rules sit in the arena.
#[derive(Clone, Copy, Debug, Default)]
struct Slot<A> {
    src: A,
    dst: A,
    start: u32,
    len: u32,
    /// Arena room reserved for the bucket; 0 marks an empty slot.
    cap: u32,
}

#[derive(Debug)]
pub(super) struct Table<A> {
    pub tuple: Tuple,
    /// Stable while the table lives, unlike its position in the search order.
    pub id: u32,
    src_mask: A,
    dst_mask: A,
    /// Lowest and highest priority held: the first orders and prunes the search, the second
    /// lets `classify_from` skip tables that only hold rules before `from`.
    pub min_index: u32,
    pub max_index: u32,
    rules: usize,
    slots: Vec<Slot<A>>,
    /// `64 - log2(slots.len())`: the hash's top bits pick the slot.
    shift: u32,
    occupied: usize,
    /// Rules of all buckets, each bucket a contiguous run sorted by priority.
    arena: Vec<Entry<A>>,
    /// Arena entries no bucket uses any more (left behind when a bucket moved).
    dead: usize,
    /// Four bits per slot, set where a bucket's hash falls (`h >> (shift - 2)`): most
    /// probes of a tuple space find no bucket, and this answers them from a few bytes that stay
    /// in the cache instead of a load from the slot array. Bits of emptied buckets stay set (a
    /// false positive only costs the slot load) until the next rehash.
    filter: Vec<u64>,
}

impl<A: Addr> Table<A> {
    pub fn new(tuple: Tuple, id: u32) -> Self {
        Table {
            tuple,
            id,
            src_mask: A::mask(tuple.src_len),
            dst_mask: A::mask(tuple.dst_len),
            min_index: u32::MAX,
            max_index: 0,
            rules: 0,
            slots: vec![Slot::default(); 4],
            shift: 62,
            occupied: 0,
            arena: Vec::new(),
            dead: 0,
            filter: vec![0; 1],
        }
    }

    pub fn is_empty(&self) -> bool {
        self.rules == 0
    }

    pub fn rule_count(&self) -> usize {
        self.rules
    }

    #[inline]
    fn hash(&self, src: A, dst: A) -> usize {
        (self.product(src, dst) >> self.shift) as usize
    }

    #[inline]
    fn product(&self, src: A, dst: A) -> u64 {
        A::pair(src, dst).wrapping_mul(K1)
    }

    /// Whether a bucket may sit at these masked fields (false: certainly none).
    #[inline]
    fn may_hold(&self, src: A, dst: A) -> bool {
        let bit = (self.product(src, dst) >> (self.shift - 2)) as usize;
        self.filter[bit >> 6] >> (bit & 63) & 1 == 1
    }

    fn mark(&mut self, src: A, dst: A) {
        let bit = (self.product(src, dst) >> (self.shift - 2)) as usize;
        self.filter[bit >> 6] |= 1 << (bit & 63);
    }

    /// The slot for these masked fields: the one holding them, or the empty one where they
    /// would go. The table is never full: growth keeps it at most a quarter occupied, where a
    /// probe runs on past its first slot seldom enough that the branch is predicted well (at half
    /// occupied, the mispredicted continuation cost ipc1 a fifth of its lookup time).
    #[inline]
    fn slot_of(&self, src: A, dst: A) -> usize {
        let wrap = self.slots.len() - 1;
        let mut i = self.hash(src, dst);
        loop {
            let s = &self.slots[i];
            // One branch, nearly always taken on the first slot (hit or empty), so it is
            // predicted well whether the key is in the table or not.
            if (s.cap == 0) | ((s.src == src) & (s.dst == dst)) {
                return i;
            }
            i = (i + 1) & wrap;
        }
    }

    fn entry_slot(&self, e: &Entry<A>) -> usize {
        self.slot_of(e.src & self.src_mask, e.dst & self.dst_mask)
    }

    /// How many rules already share `e`'s bucket here.
    pub fn bucket_len(&self, e: &Entry<A>) -> usize {
        self.slots[self.entry_slot(e)].len as usize
    }

    /// The best rule of the key's bucket with priority in `from..best`, or `best`.
    #[inline]
    pub fn lookup(&self, p: &Probe<A>, from: u32, best: u64) -> u64 {
        let (src, dst) = (p.src & self.src_mask, p.dst & self.dst_mask);
        if !self.may_hold(src, dst) {
            return best;
        }
        let s = &self.slots[self.slot_of(src, dst)];
        // An empty slot has an empty run: a miss needs no branch of its own.
        let run = self
            .arena
            .get(s.start as usize..(s.start + s.len) as usize)
            .unwrap_or_default();
        for e in run {
            if u64::from(e.index) >= best {
                break;
            }
            if e.index >= from && e.matches(p) {
                return u64::from(e.index);
            }
        }
        best
    }

    /// How many rules the key's bucket holds.
    pub fn bucket_len_of(&self, p: &Probe<A>) -> usize {
        let s = &self.slots[self.slot_of(p.src & self.src_mask, p.dst & self.dst_mask)];
        s.len as usize
    }

    pub fn insert(&mut self, e: Entry<A>) {
        if (self.occupied + 1) * LOAD_DIVISOR > self.slots.len() {
            self.grow();
        }
        let i = self.entry_slot(&e);
        if self.slots[i].cap == 0 {
            self.slots[i] = Slot {
                src: e.src & self.src_mask,
                dst: e.dst & self.dst_mask,
                start: self.arena.len() as u32,
                len: 0,
                cap: 0,
            };
            self.occupied += 1;
            self.mark(e.src & self.src_mask, e.dst & self.dst_mask);
        }
        let mut s = self.slots[i];
        if s.len == s.cap {
            // Move the bucket to the arena's end with room to grow; its old run goes dead.
            let cap = (s.cap * 2).max(2);
            let start = self.arena.len();
            self.arena
                .extend_from_within(s.start as usize..(s.start + s.len) as usize);
            self.arena.resize(start + cap as usize, e);
            self.dead += s.cap as usize;
            s.start = start as u32;
            s.cap = cap;
        }
        let run = &mut self.arena[s.start as usize..(s.start + s.len + 1) as usize];
        let at = run[..s.len as usize].partition_point(|x| x.index < e.index);
        run[at..].rotate_right(1);
        run[at] = e;
        s.len += 1;
        self.slots[i] = s;
        self.rules += 1;
        self.min_index = self.min_index.min(e.index);
        self.max_index = self.max_index.max(e.index);
    }

    /// Removes the rule with `e`'s fields and priority; false if it is not here.
    pub fn remove(&mut self, e: &Entry<A>) -> bool {
        let i = self.entry_slot(e);
        let mut s = self.slots[i];
        let run = &mut self.arena[s.start as usize..(s.start + s.len) as usize];
        let Some(at) = run.iter().position(|x| x.index == e.index) else {
            return false;
        };
        run[at..].rotate_left(1);
        s.len -= 1;
        self.slots[i] = s;
        self.rules -= 1;
        // An emptied bucket keeps its slot (linear probing has no cheap delete); it costs a
        // lookup nothing and the next compaction drops it.
        if e.index == self.min_index || e.index == self.max_index {
            self.recompute_bounds();
        }
        if self.dead > self.arena.len() / 2 {
            self.compact();
        }
        true
    }

    fn recompute_bounds(&mut self) {
        let (mut lo, mut hi) = (u32::MAX, 0);
        for s in self.slots.iter().filter(|s| s.len > 0) {
            lo = lo.min(self.arena[s.start as usize].index);
            hi = hi.max(self.arena[(s.start + s.len - 1) as usize].index);
        }
        (self.min_index, self.max_index) = (lo, hi);
    }

    fn grow(&mut self) {
        self.rehash(self.slots.len() * 2);
    }

    /// Lays the buckets out again, tightly, in slot order, and drops emptied buckets: after a
    /// build this leaves no dead arena and each bucket exactly as long as it is.
    pub fn compact(&mut self) {
        let want = (self.live_buckets() * LOAD_DIVISOR)
            .next_power_of_two()
            .max(4);
        self.rehash(want);
    }

    /// Every rule the table holds, bucket by bucket.
    pub fn entries(&self) -> impl Iterator<Item = &Entry<A>> {
        self.slots
            .iter()
            .flat_map(|s| &self.arena[s.start as usize..(s.start + s.len) as usize])
    }

    /// The fields of `e` this table hashes on.
    pub fn bucket_key(&self, e: &Entry<A>) -> (A, A) {
        (e.src & self.src_mask, e.dst & self.dst_mask)
    }

    fn live_buckets(&self) -> usize {
        self.slots.iter().filter(|s| s.len > 0).count()
    }

    fn rehash(&mut self, size: usize) {
        let old_slots = std::mem::replace(&mut self.slots, vec![Slot::default(); size]);
        let old_arena = std::mem::take(&mut self.arena);
        self.shift = 64 - size.trailing_zeros();
        self.filter = vec![0; (4 * size).div_ceil(64)];
        self.occupied = 0;
        self.dead = 0;
        self.arena.reserve(self.rules);
        for s in old_slots.into_iter().filter(|s| s.len > 0) {
            let i = self.slot_of(s.src, s.dst);
            let start = self.arena.len() as u32;
            self.arena
                .extend_from_slice(&old_arena[s.start as usize..(s.start + s.len) as usize]);
            self.slots[i] = Slot {
                start,
                cap: s.len,
                ..s
            };
            self.occupied += 1;
            self.mark(s.src, s.dst);
        }
    }
}
