//! The score cache: a cross-encoder's score of a (query, passage) pair, kept so that the
//! same pair is not scored twice (a repeated search, the next page, a cascade re-run with
//! another keep). Keyed by the model, the windowing, the query text and the passage text —
//! hashed together with XXH3-128 — so a document whose text changes (an upsert) misses by
//! itself. Bounded in bytes; the least recently used pairs go first.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};

use lru::LruCache;
use parking_lot::Mutex;
use xxhash_rust::xxh3::Xxh3;

/// What one cached pair costs: its 16-byte key, its score, and the LRU's links and table slot.
pub const ENTRY_BYTES: usize = 64;

/// Cross-encoder scores by (model, windows, query, passage).
#[derive(Debug)]
pub struct ScoreCache {
    /// `None` when the cache holds nothing (a size below one entry).
    entries: Option<Mutex<LruCache<u128, f32>>>,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl ScoreCache {
    /// A cache of at most `bytes` (0: off, every lookup misses and nothing is kept).
    pub fn new(bytes: usize) -> ScoreCache {
        ScoreCache {
            entries: NonZeroUsize::new(bytes / ENTRY_BYTES).map(|n| Mutex::new(LruCache::new(n))),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// The key of one pair.
    pub fn key(model: &str, windows: bool, query: &str, passage: &str) -> u128 {
        let mut hash = Xxh3::new();
        // Lengths first, so that no two different pairs hash the same bytes.
        for part in [model, query, passage] {
            hash.update(&(part.len() as u64).to_le_bytes());
            hash.update(part.as_bytes());
        }
        hash.update(&[u8::from(windows)]);
        hash.digest128()
    }

    /// The score of each key, where cached.
    pub fn get(&self, keys: &[u128]) -> Vec<Option<f32>> {
        let Some(entries) = &self.entries else {
            self.misses.fetch_add(keys.len() as u64, Ordering::Relaxed);
            return vec![None; keys.len()];
        };
        let mut entries = entries.lock();
        let found: Vec<Option<f32>> = keys.iter().map(|key| entries.get(key).copied()).collect();
        let hits = found.iter().filter(|f| f.is_some()).count() as u64;
        self.hits.fetch_add(hits, Ordering::Relaxed);
        self.misses.fetch_add(keys.len() as u64 - hits, Ordering::Relaxed);
        found
    }

    /// Keeps these scores.
    pub fn put(&self, scored: impl IntoIterator<Item = (u128, f32)>) {
        if let Some(entries) = &self.entries {
            let mut entries = entries.lock();
            for (key, score) in scored {
                entries.put(key, score);
            }
        }
    }

    /// Pairs held now.
    pub fn len(&self) -> usize {
        self.entries.as_ref().map_or(0, |e| e.lock().len())
    }

    /// Whether it holds no pair.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Lookups that found a score and that did not, since it was made.
    pub fn counts(&self) -> (u64, u64) {
        (self.hits.load(Ordering::Relaxed), self.misses.load(Ordering::Relaxed))
    }
}
