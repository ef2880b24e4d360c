//! The per-worker cache of encoded pieces: each entry's key and ids live together in one flat
//! arena of `u32` words (the key's bytes packed four to a word, then the ids), and the table
//! holds offsets, so an insert does not allocate, a hit reads one record, and clearing is O(1)
//! in allocations. When the arena passes its budget the cache starts over, bounding memory per
//! worker.

use std::hash::BuildHasher;

use hashbrown::HashTable;
use rustc_hash::FxBuildHasher;

#[derive(Clone, Copy)]
struct Entry {
    hash: u64,
    at: u32,
    key_len: u16,
    ids_len: u16,
}

/// Piece text to ids.
pub(crate) struct PieceCache {
    table: HashTable<Entry>,
    arena: Vec<u32>,
    budget_bytes: usize,
}

/// The `u32` words of `key`'s bytes, little-endian, the last one zero-padded (built without a
/// variable-length copy, which would be a call to `memcpy` for a few bytes).
#[inline]
fn words(key: &[u8]) -> impl Iterator<Item = u32> + '_ {
    let chunks = key.chunks_exact(4);
    let rest = chunks.remainder();
    let tail = (!rest.is_empty()).then(|| {
        rest.iter()
            .enumerate()
            .fold(0u32, |word, (i, &b)| word | u32::from(b) << (8 * i))
    });
    chunks
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .chain(tail)
}

#[inline]
fn word_count(key_len: usize) -> usize {
    key_len.div_ceil(4)
}

impl PieceCache {
    pub(crate) fn new(budget_bytes: usize) -> Self {
        PieceCache {
            table: HashTable::new(),
            arena: Vec::new(),
            budget_bytes,
        }
    }

    #[inline]
    pub(crate) fn hash(piece: &str) -> u64 {
        FxBuildHasher.hash_one(piece.as_bytes())
    }

    #[inline]
    pub(crate) fn get(&self, hash: u64, piece: &str) -> Option<&[u32]> {
        let arena = &self.arena;
        let key = piece.as_bytes();
        self.table
            .find(hash, |e| {
                e.hash == hash
                    && usize::from(e.key_len) == key.len()
                    && arena[e.at as usize..]
                        .iter()
                        .zip(words(key))
                        .all(|(&stored, word)| stored == word)
            })
            .map(|e| {
                let ids = e.at as usize + word_count(usize::from(e.key_len));
                &arena[ids..ids + usize::from(e.ids_len)]
            })
    }

    /// Remembers `ids` for `piece`; a piece or ids longer than 65535 are not kept.
    pub(crate) fn insert(&mut self, hash: u64, piece: &str, ids: &[u32]) {
        let (Ok(key_len), Ok(ids_len)) = (u16::try_from(piece.len()), u16::try_from(ids.len()))
        else {
            return;
        };
        let record = word_count(piece.len()) + ids.len();
        let used = 4 * self.arena.len() + 24 * self.table.len();
        if used + 4 * record + 24 > self.budget_bytes
            || self.arena.len() + record > u32::MAX as usize
        {
            self.table.clear();
            self.arena.clear();
        }
        let entry = Entry {
            hash,
            at: self.arena.len() as u32,
            key_len,
            ids_len,
        };
        self.arena.extend(words(piece.as_bytes()));
        self.arena.extend_from_slice(ids);
        self.table.insert_unique(hash, entry, |e| e.hash);
    }
}
