//! Small static files kept in memory (`--file-cache`): a hit answers from
//! memory with no `openat2`, `fstat`, `sendfile` or `close`, the body
//! appended to the head so both leave in one `send`.
//!
//! # What is cached, and for how long
//!
//! Regular files up to `max_file` bytes, keyed by the virtual host and the
//! *normalised* path ([`files::Normal`]: decoded, `..` refused), never by
//! the raw request path: a path reaches the cache only after it resolved
//! beneath the root through `openat2(RESOLVE_BENEATH)`, so traversal and
//! symlink rules are those of an uncached request. An entry is trusted for
//! `valid_ms`; the first request after that resolves the path again and
//! compares device, inode, size and mtime (to the nanosecond) — unchanged,
//! the entry lives on; changed or gone, it is dropped and the request
//! answered as if uncached. That is nginx's `open_file_cache_valid`: a file
//! changed on disk is served stale for at most that long.
//!
//! # Concurrency
//!
//! One `RwLock` around the map, read-locked by lookups: readers never wait
//! for each other, only behind an insertion or eviction (a miss, at most
//! once per file per validity period). Recency is an atomic tick per entry
//! written under the read lock, so a hit takes no write lock. Exactly one
//! reader revalidates a stale entry (a compare-and-swap on its check time);
//! the others keep serving it meanwhile.
//!
//! # Bound and eviction
//!
//! The total of bodies, keys and a fixed per-entry overhead stays within
//! `bytes`; an insertion that would pass it evicts least-recently-used
//! entries first (a scan for the oldest tick: misses are rare next to hits
//! when the working set fits, which is what a cache is sized for).

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use super::files::Normal;

/// Bookkeeping counted against the bound for each entry besides its body
/// and key (the map slot, the `Arc`, the entry's fields).
const ENTRY_OVERHEAD: usize = 128;

/// The cache's bounds.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Total bytes (bodies, keys, overhead); 0 turns the cache off.
    pub bytes: usize,
    /// Largest file kept.
    pub max_file: u64,
    /// How long an entry is trusted before the file is checked again.
    pub valid_ms: u64,
}

/// Which file: the virtual host (empty for the default root) and the path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    /// Normalised host name of the virtual host serving it, or `""`.
    pub host: String,
    /// The normalised request path.
    pub path: Normal,
}

impl Key {
    fn cost(&self) -> usize {
        self.host.len() + self.path.rel.len() + ENTRY_OVERHEAD
    }
}

/// A file as the cache holds it.
#[derive(Debug)]
pub struct Cached {
    /// The whole file.
    pub body: Box<[u8]>,
    /// Last modification, Unix seconds (Last-Modified, conditionals).
    pub mtime: i64,
    /// The Content-Type.
    pub mime: &'static str,
    /// Device, inode and nanosecond mtime at the time it was read.
    identity: (u64, u64, i64),
    last_used: AtomicU64,
    checked_ms: AtomicU64,
}

impl Cached {
    /// Whether a file resolved now is the one this entry holds.
    pub fn same_as(&self, size: u64, mtime: i64, identity: (u64, u64, i64)) -> bool {
        self.body.len() as u64 == size && self.mtime == mtime && self.identity == identity
    }
}

/// What a lookup found.
pub enum Lookup {
    /// Trusted: answer from it.
    Fresh(Arc<Cached>),
    /// Past its validity, and this caller won the right to check it: resolve
    /// the path, then [`FileCache::confirm`] or [`FileCache::remove`].
    Check(Arc<Cached>),
    /// Not cached.
    Miss,
}

/// The cache; one per server process, shared by its threads.
pub struct FileCache {
    limits: Limits,
    map: RwLock<Map>,
    tick: AtomicU64,
}

#[derive(Default)]
struct Map {
    entries: HashMap<Key, Arc<Cached>>,
    bytes: usize,
}

impl FileCache {
    /// A cache within `limits`; `None` when it is off (`bytes` 0).
    pub fn new(limits: Limits) -> Option<FileCache> {
        (limits.bytes > 0).then(|| FileCache {
            limits,
            map: RwLock::new(Map::default()),
            tick: AtomicU64::new(0),
        })
    }

    /// Find `key`; `now_ms` is a monotonic clock in milliseconds.
    pub fn lookup(&self, key: &Key, now_ms: u64) -> Lookup {
        let map = self.map.read().unwrap_or_else(|e| e.into_inner());
        let Some(entry) = map.entries.get(key) else {
            return Lookup::Miss;
        };
        let tick = self.tick.fetch_add(1, Ordering::Relaxed);
        entry.last_used.store(tick, Ordering::Relaxed);
        let checked = entry.checked_ms.load(Ordering::Relaxed);
        let stale = now_ms.saturating_sub(checked) >= self.limits.valid_ms;
        let mine = stale
            && entry
                .checked_ms
                .compare_exchange(checked, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok();
        if mine {
            Lookup::Check(entry.clone())
        } else {
            Lookup::Fresh(entry.clone())
        }
    }

    /// Whether a file of this size would be kept.
    pub fn admits(&self, size: u64) -> bool {
        size <= self.limits.max_file && (size as usize) < self.limits.bytes
    }

    /// Read `file` (already resolved for `key`, `size` bytes) into the
    /// cache, evicting least-recently-used entries to make room. `None`
    /// when it is too large or could not be read whole.
    pub fn insert(
        &self,
        key: Key,
        file: &File,
        resolved: (u64, i64, &'static str, (u64, u64, i64)),
        now_ms: u64,
    ) -> Option<Arc<Cached>> {
        let (size, mtime, mime, identity) = resolved;
        if !self.admits(size) {
            return None;
        }
        let mut body = vec![0u8; size as usize].into_boxed_slice();
        file.read_exact_at(&mut body, 0).ok()?;
        let cost = key.cost() + body.len();
        if cost > self.limits.bytes {
            return None;
        }
        let entry = Arc::new(Cached {
            body,
            mtime,
            mime,
            identity,
            last_used: AtomicU64::new(self.tick.fetch_add(1, Ordering::Relaxed)),
            checked_ms: AtomicU64::new(now_ms),
        });
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        if let Some(old) = map.entries.remove(&key) {
            map.bytes -= key.cost() + old.body.len();
        }
        while map.bytes + cost > self.limits.bytes {
            map.evict_oldest();
        }
        map.bytes += cost;
        map.entries.insert(key, entry.clone());
        Some(entry)
    }

    /// Drop `key` if it still holds `entry` (the file changed or is gone).
    pub fn remove(&self, key: &Key, entry: &Arc<Cached>) {
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        if map.entries.get(key).is_some_and(|e| Arc::ptr_eq(e, entry)) {
            map.entries.remove(key);
            map.bytes -= key.cost() + entry.body.len();
        }
    }

    /// Entries and bytes held now (bodies, keys and overhead).
    pub fn usage(&self) -> (usize, usize) {
        let map = self.map.read().unwrap_or_else(|e| e.into_inner());
        (map.entries.len(), map.bytes)
    }
}

impl Map {
    fn evict_oldest(&mut self) {
        let oldest = self
            .entries
            .iter()
            .min_by_key(|(_, e)| e.last_used.load(Ordering::Relaxed))
            .map(|(k, _)| k.clone());
        if let Some(key) = oldest {
            let entry = self.entries.remove(&key).expect("just found");
            self.bytes -= key.cost() + entry.body.len();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> Key {
        Key {
            host: String::new(),
            path: Normal {
                rel: name.as_bytes().to_vec(),
                wants_dir: false,
            },
        }
    }

    struct Files(tempfile::TempDir);

    impl Files {
        fn new() -> Files {
            Files(tempfile::tempdir().unwrap())
        }

        fn put(&self, name: &str, len: usize) -> File {
            let p = self.0.path().join(name);
            std::fs::write(&p, vec![name.as_bytes()[0]; len]).unwrap();
            File::open(p).unwrap()
        }
    }

    fn add(c: &FileCache, f: &Files, name: &str, len: usize) -> bool {
        let file = f.put(name, len);
        c.insert(key(name), &file, (len as u64, 1, "t/p", (1, 1, 0)), 0)
            .is_some()
    }

    fn cached(c: &FileCache, name: &str) -> bool {
        !matches!(c.lookup(&key(name), 0), Lookup::Miss)
    }

    fn cache(bytes: usize) -> FileCache {
        FileCache::new(Limits {
            bytes,
            max_file: 4096,
            valid_ms: 1000,
        })
        .unwrap()
    }

    #[test]
    fn least_recently_used_goes_first() {
        let f = Files::new();
        let each = 1000 + key("a").cost();
        let c = cache(3 * each);
        for n in ["a", "b", "c"] {
            assert!(add(&c, &f, n, 1000));
        }
        assert!(cached(&c, "a")); // a is now the most recent; b the oldest
        assert!(add(&c, &f, "d", 1000));
        assert!(!cached(&c, "b"), "b was the least recently used");
        for n in ["a", "c", "d"] {
            assert!(cached(&c, n), "{n} evicted out of order");
        }
        assert!(c.usage().1 <= 3 * each);
    }

    #[test]
    fn the_byte_bound_holds_and_large_files_stay_out() {
        let f = Files::new();
        let c = cache(10_000);
        for i in 0..50 {
            add(&c, &f, &format!("f{i}"), 700);
            assert!(c.usage().1 <= 10_000, "{:?} after {i}", c.usage());
        }
        assert!(!add(&c, &f, "big", 5000), "above max_file");
        assert_eq!(c.usage().0, 10_000 / (700 + key("f10").cost()));
    }

    #[test]
    fn one_caller_checks_a_stale_entry() {
        let f = Files::new();
        let c = cache(10_000);
        add(&c, &f, "a", 10);
        assert!(matches!(c.lookup(&key("a"), 500), Lookup::Fresh(_)));
        let Lookup::Check(entry) = c.lookup(&key("a"), 1000) else {
            panic!("a stale entry was not handed out for checking");
        };
        assert!(matches!(c.lookup(&key("a"), 1001), Lookup::Fresh(_)));
        c.remove(&key("a"), &entry);
        assert!(!cached(&c, "a"));
        assert_eq!(c.usage(), (0, 0));
    }
}
