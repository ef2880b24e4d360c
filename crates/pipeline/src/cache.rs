//! The per-worker cache of encoded pieces: keys and ids live in two flat arenas and the table
//! holds offsets, so an insert does not allocate and clearing is O(1) in allocations.
//! When the arenas pass their budget the cache starts over, bounding memory per worker.

use std::hash::BuildHasher;

use hashbrown::HashTable;
use rustc_hash::FxBuildHasher;

#[derive(Clone, Copy)]
struct Entry {
    hash: u64,
    key_start: u32,
    key_len: u32,
    ids_start: u32,
    ids_len: u32,
}

/// Piece text to ids.
pub(crate) struct PieceCache {
    table: HashTable<Entry>,
    keys: Vec<u8>,
    ids: Vec<u32>,
    budget_bytes: usize,
}

impl PieceCache {
    pub(crate) fn new(budget_bytes: usize) -> Self {
        PieceCache {
            table: HashTable::new(),
            keys: Vec::new(),
            ids: Vec::new(),
            budget_bytes,
        }
    }

    #[inline]
    pub(crate) fn hash(piece: &str) -> u64 {
        FxBuildHasher.hash_one(piece.as_bytes())
    }

    #[inline]
    pub(crate) fn get(&self, hash: u64, piece: &str) -> Option<&[u32]> {
        let keys = &self.keys;
        self.table
            .find(hash, |e| {
                e.hash == hash
                    && &keys[e.key_start as usize..(e.key_start + e.key_len) as usize]
                        == piece.as_bytes()
            })
            .map(|e| &self.ids[e.ids_start as usize..(e.ids_start + e.ids_len) as usize])
    }

    pub(crate) fn insert(&mut self, hash: u64, piece: &str, ids: &[u32]) {
        let used = self.keys.len() + 4 * self.ids.len() + 24 * self.table.len();
        if used + piece.len() + 4 * ids.len() > self.budget_bytes {
            self.table.clear();
            self.keys.clear();
            self.ids.clear();
        }
        let entry = Entry {
            hash,
            key_start: self.keys.len() as u32,
            key_len: piece.len() as u32,
            ids_start: self.ids.len() as u32,
            ids_len: ids.len() as u32,
        };
        self.keys.extend_from_slice(piece.as_bytes());
        self.ids.extend_from_slice(ids);
        self.table.insert_unique(hash, entry, |e| e.hash);
    }
}
