//! The idempotency window: the positions of the last [`IDEMPOTENCY_WINDOW`] event ids, so that
//! the writer recognises a retried append, and an id reused in its stream, by the ids the caller
//! chose.
//!
//! The writer inserts every event it stages and looks up every client-chosen id, so both
//! must be cheap on a table far larger than the CPU caches. A general hash map costs two cache
//! misses per operation (control bytes and entry) plus one more to evict the oldest id. Here:
//!
//! - `ring` holds the ids themselves, by position modulo the window: written in order, so
//!   inserting costs no random access there.
//! - `buckets` is a table of cache-line buckets of 8 slots; a slot packs an id's position with a
//!   16-bit fingerprint of its hash. Each id may live in one of two buckets (two-choice hashing),
//!   and the table has twice as many slots as the window has ids. A slot whose position has left
//!   the window is free to reuse, so nothing is ever evicted.
//! - A lookup checks the fingerprints of both buckets and confirms a match against `ring`; a
//!   false match costs one extra read and is never returned.
//! - `overflow` takes an id whose two buckets are both full of live ids. That is rare enough
//!   never to happen in practice, but it keeps the window exact whatever the ids are.

use std::collections::HashMap;
use std::hash::BuildHasher;

use uuid::Uuid;

use crate::cast::usize_of;

/// How many recent event ids the writer remembers for idempotent retries with any expected
/// version. Retries with an exact expected version are recognised at any age.
pub const IDEMPOTENCY_WINDOW: usize = 1 << 18;

/// Slots per bucket: one 64-byte cache line.
const SLOTS: usize = 8;
/// Buckets in the table: two slots per id in the window.
const BUCKETS: usize = 2 * IDEMPOTENCY_WINDOW / SLOTS;
/// Bits of a slot that hold the fingerprint; the rest hold position + 1 (0 is an empty slot).
const FINGERPRINT_BITS: u32 = 16;
const FINGERPRINT_MASK: u64 = (1 << FINGERPRINT_BITS) - 1;
/// Positions must fit a slot beside the fingerprint: a log of more than 2^48 events (at a million
/// a second, nine years) would stop the writer with a failed assertion.
const POSITION_MAX: u64 = (1 << (64 - FINGERPRINT_BITS)) - 2;
/// Overflowed ids kept before the first pass that drops those outside the window.
const PRUNE_MIN: usize = 512;
/// Ids whose first buckets [`IdWindow::insert_all`] reads together before inserting them.
const READ_AHEAD: usize = 16;

const _: () = assert!(IDEMPOTENCY_WINDOW.is_power_of_two() && BUCKETS.is_power_of_two());

#[derive(Clone, Copy, Default)]
#[repr(C, align(64))]
struct Bucket([u64; SLOTS]);

pub(crate) struct IdWindow<S = foldhash::fast::RandomState> {
    ring: Box<[Uuid]>,
    buckets: Box<[Bucket]>,
    overflow: HashMap<Uuid, u64, S>,
    /// Size of `overflow` at which it is next cleared of ids outside the window; doubled after
    /// each pass, so that pruning costs O(1) per insert however the ids collide.
    prune_at: usize,
    hasher: S,
    /// Position of the newest id inserted.
    newest: Option<u64>,
}

impl<S> std::fmt::Debug for IdWindow<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdWindow").field("newest", &self.newest).field("overflow", &self.overflow.len()).finish()
    }
}

impl Default for IdWindow {
    fn default() -> IdWindow {
        IdWindow::with_hasher(foldhash::fast::RandomState::default())
    }
}

impl<S: BuildHasher + Clone> IdWindow<S> {
    /// Allocated whole up front (8 MiB): a full window is the steady state of any busy log.
    fn with_hasher(hasher: S) -> IdWindow<S> {
        IdWindow {
            ring: vec![Uuid::nil(); IDEMPOTENCY_WINDOW].into_boxed_slice(),
            buckets: vec![Bucket::default(); BUCKETS].into_boxed_slice(),
            overflow: HashMap::with_hasher(hasher.clone()),
            prune_at: PRUNE_MIN,
            hasher,
            newest: None,
        }
    }

    /// Records each `(id, position)` in turn, as [`IdWindow::insert`] does. The table is far
    /// larger than the caches, so each insert waits for a cache miss (and often a TLB miss) on its
    /// bucket; reading the first buckets of [`READ_AHEAD`] ids in one tight loop lets those misses
    /// overlap, and the inserts that follow find their buckets cached.
    pub(crate) fn insert_all<I>(&mut self, ids: I)
    where
        I: Iterator<Item = (Uuid, u64)> + Clone,
    {
        let mut ahead = ids.clone();
        let mut ids = ids;
        loop {
            let mut read = 0;
            let mut sum = 0u64;
            for (id, _) in ahead.by_ref().take(READ_AHEAD) {
                sum = sum.wrapping_add(self.buckets[self.places(&id).0].0[0]);
                read += 1;
            }
            if read == 0 {
                return;
            }
            // Keeps the reads, which exist only for their effect on the cache.
            std::hint::black_box(sum);
            for (id, position) in ids.by_ref().take(read) {
                self.insert(id, position);
            }
        }
    }

    /// Records `id` at `position`. Positions must be inserted in increasing order (the writer
    /// assigns them so); the window is then the last [`IDEMPOTENCY_WINDOW`] positions inserted.
    pub(crate) fn insert(&mut self, id: Uuid, position: u64) {
        assert!(self.newest.is_none_or(|n| position > n), "id window positions go forward");
        assert!(position <= POSITION_MAX, "position {position} beyond the id window's range");
        self.newest = Some(position);
        self.ring[ring_index(position)] = id;
        let (first, second, fingerprint) = self.places(&id);
        let slot = ((position + 1) << FINGERPRINT_BITS) | fingerprint;
        for b in [first, second] {
            if let Some(free) = self.buckets[b].0.iter().position(|&s| !self.live(s)) {
                self.buckets[b].0[free] = slot;
                return;
            }
        }
        self.overflow.insert(id, position);
        if self.overflow.len() > self.prune_at {
            let newest = position;
            self.overflow.retain(|_, p| newest - *p < IDEMPOTENCY_WINDOW as u64);
            self.prune_at = PRUNE_MIN.max(2 * self.overflow.len());
        }
    }

    /// Position of `id` if it is among the last window of ids inserted (the newest, if it was
    /// inserted more than once).
    pub(crate) fn get(&self, id: &Uuid) -> Option<u64> {
        let newest = self.newest?;
        let (first, second, fingerprint) = self.places(id);
        // Both buckets are read before either is examined, so that their cache misses overlap.
        let (a, b) = (self.buckets[first].0, self.buckets[second].0);
        let in_buckets = a
            .into_iter()
            .chain(b)
            .filter(|&s| s & FINGERPRINT_MASK == fingerprint && self.live(s))
            .map(|s| (s >> FINGERPRINT_BITS) - 1)
            .filter(|&p| self.ring[ring_index(p)] == *id)
            .max();
        let overflowed = self.overflow.get(id).copied().filter(|&p| newest - p < IDEMPOTENCY_WINDOW as u64);
        in_buckets.max(overflowed)
    }

    /// Whether a slot holds a position inside the window.
    fn live(&self, slot: u64) -> bool {
        match (slot, self.newest) {
            (0, _) | (_, None) => false,
            (slot, Some(newest)) => newest - ((slot >> FINGERPRINT_BITS) - 1) < IDEMPOTENCY_WINDOW as u64,
        }
    }

    /// The id's two buckets and its fingerprint, from independent bits of one hash.
    fn places(&self, id: &Uuid) -> (usize, usize, u64) {
        let h = self.hasher.hash_one(id.as_bytes());
        let first = usize_of(h) & (BUCKETS - 1);
        let second = usize_of(h >> 24) & (BUCKETS - 1);
        (first, second, h >> (64 - FINGERPRINT_BITS))
    }
}

fn ring_index(position: u64) -> usize {
    usize_of(position % IDEMPOTENCY_WINDOW as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u64) -> Uuid {
        Uuid::from_u64_pair(n.wrapping_mul(0x9e37_79b9_7f4a_7c15), n)
    }

    /// The window holds exactly the last IDEMPOTENCY_WINDOW ids as it slides, and an id seen
    /// again is found at its newest position.
    #[test]
    fn holds_exactly_the_last_window_of_ids() {
        let w = IDEMPOTENCY_WINDOW as u64;
        let mut window = IdWindow::default();
        assert_eq!(window.get(&id(0)), None);
        for n in 0..2 * w + w / 2 {
            window.insert(id(n), n);
            if n == w - 1 || n == w || n == 2 * w + 7 || n % 50_021 == 0 {
                assert_eq!(window.get(&id(n)), Some(n));
                if n + 1 >= w {
                    assert_eq!(window.get(&id(n + 1 - w)), Some(n + 1 - w), "the oldest id in the window");
                }
                if n >= w {
                    assert_eq!(window.get(&id(n - w)), None, "the id just outside the window");
                }
            }
        }
        let newest = 2 * w + w / 2 - 1;
        for n in newest + 1 - w..=newest {
            assert_eq!(window.get(&id(n)), Some(n), "every id in the window is found");
        }
        // An id used again (in another stream, say) is found where it was used last.
        let again = id(newest - 10);
        window.insert(again, newest + 1);
        assert_eq!(window.get(&again), Some(newest + 1));
        assert_eq!(window.get(&Uuid::nil()), None);
    }

    /// A hasher that sends every id to the same two buckets with the same fingerprint.
    #[derive(Clone, Default)]
    struct Collide;
    impl BuildHasher for Collide {
        type Hasher = Constant;
        fn build_hasher(&self) -> Constant {
            Constant
        }
    }
    struct Constant;
    impl std::hash::Hasher for Constant {
        fn finish(&self) -> u64 {
            0xabcd_0000_0000_0000 | 5
        }
        fn write(&mut self, _: &[u8]) {}
    }

    /// Inserting a run of ids at once leaves the window as inserting them one by one does.
    #[test]
    fn insert_all_is_insert_in_turn() {
        let mut one_by_one = IdWindow::default();
        let mut all = IdWindow::with_hasher(one_by_one.hasher.clone());
        // Runs of every length around the read-ahead, then a long run in which ids come again.
        let mut next = 0u64;
        for len in (0..3 * READ_AHEAD as u64).chain([1000]) {
            let run: Vec<(Uuid, u64)> = (next..next + len).map(|n| (id(n % 700), n)).collect();
            next += len;
            for &(id, position) in &run {
                one_by_one.insert(id, position);
            }
            all.insert_all(run.iter().copied());
        }
        assert_eq!(all.newest, one_by_one.newest);
        assert!(all.buckets.iter().zip(one_by_one.buckets.iter()).all(|(a, b)| a.0 == b.0));
        assert_eq!(all.ring, one_by_one.ring);
        assert!((next - 700..next).all(|n| all.get(&id(n % 700)) == Some(n)), "each id at its newest position");
    }

    /// Ids that all share their buckets and fingerprint (as hostile or unlucky client ids might)
    /// are told apart by the ring, spill to the overflow map once both buckets are full of live
    /// ids, and the window stays exact as it slides past them.
    #[test]
    fn colliding_ids_stay_exact() {
        let w = IDEMPOTENCY_WINDOW as u64;
        let mut window = IdWindow::with_hasher(Collide);
        let spilled = 3 * SLOTS as u64;
        for n in 0..spilled {
            window.insert(id(n), n);
        }
        assert_eq!(window.overflow.len(), SLOTS);
        for n in 0..spilled {
            assert_eq!(window.get(&id(n)), Some(n));
        }
        assert_eq!(window.get(&id(spilled)), None, "a fingerprint match is confirmed against the ring");
        // Slide the window past the first ids: they are forgotten and their slots reused.
        window.insert(id(spilled), w + 1);
        assert_eq!(window.get(&id(0)), None);
        assert_eq!(window.get(&id(1)), None);
        assert_eq!(window.get(&id(2)), Some(2));
        assert_eq!(window.get(&id(spilled)), Some(w + 1));
    }

    /// Ids that overflow the buckets leave the window like any other: found while inside it,
    /// forgotten after, pruned once the overflow map grows, and a newer use of the same id wins.
    #[test]
    fn overflowed_ids_slide_out_of_the_window() {
        let w = IDEMPOTENCY_WINDOW as u64;
        let mut window = IdWindow::with_hasher(Collide);
        let first = 2 * SLOTS as u64 + 600;
        for n in 0..first {
            window.insert(id(n), n);
        }
        assert_eq!(window.overflow.len(), 600);
        assert!((0..first).all(|n| window.get(&id(n)) == Some(n)));

        // Positions up to 100 leave the window; an overflowed id among them is forgotten.
        window.insert(id(first), w + 100);
        assert_eq!(window.get(&id(50)), None);
        assert_eq!(window.get(&id(200)), Some(200));
        // Reused: the old copy sits in the overflow map, the new one in a bucket.
        window.insert(id(300), w + 101);
        assert_eq!(window.get(&id(300)), Some(w + 101));

        // Much later, enough new colliding ids to prune: the old ones go, the new ones stay.
        let later = 3 * w;
        for n in 0..1100 {
            window.insert(id(10_000 + n), later + n);
        }
        assert!(window.overflow.len() < 1100, "ids outside the window were pruned");
        assert!(window.overflow.values().all(|&p| p >= later));
        assert!((0..1100).all(|n| window.get(&id(10_000 + n)) == Some(later + n)));
        assert!((0..first).all(|n| window.get(&id(n)).is_none()));
    }
}
