//! The per-worker cache of encoded pieces. When it passes its budget it starts over, bounding
//! memory per worker.
//!
//! Pieces of up to 16 bytes (nearly all of them) live in an open-addressing table of 32-byte
//! slots that hold the key, a hash tag and up to three ids inline (more ids live in the arena):
//! a lookup of a rare piece, which misses the processor's caches, costs one memory access
//! instead of three (control bytes, bucket, record).
//!
//! Longer pieces: each entry's key and ids live together in one flat arena of `u32` words (the
//! key's bytes packed four to a word, then the ids), and a hash table holds offsets, so an
//! insert does not allocate and clearing is O(1) in allocations.

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
    /// The short pieces' table: a power of two of slots, at most half full.
    short: Vec<Slot>,
    short_len: usize,
    /// `64 - log2(short.len())`: a hash's high bits are its home slot.
    short_shift: u32,
    table: HashTable<Entry>,
    arena: Vec<u32>,
    budget_bytes: usize,
}

/// Pieces of at most this many bytes go to the short table.
const SHORT_KEY: usize = 16;
/// Ids held inline in a slot.
const INLINE_IDS: usize = 3;
/// The short table's first size.
const SHORT_MIN_SLOTS: usize = 1 << 12;

/// A short piece: its bytes packed into words (zero-padded), `meta` = key length (bits 0-7; 0
/// marks an empty slot) | ids length (bits 8-15) | the hash's bits 16-31 as a tag, and the ids,
/// or with more than [`INLINE_IDS`] of them their offset in the arena.
#[derive(Clone, Copy, Default)]
struct Slot {
    key: [u32; 4],
    meta: u32,
    ids: [u32; INLINE_IDS],
}

const META_MATCH: u32 = 0xFFFF_00FF;

#[inline]
fn pack(key: &[u8]) -> [u32; 4] {
    let mut packed = [0; 4];
    for (slot, word) in packed.iter_mut().zip(words(key)) {
        *slot = word;
    }
    packed
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
            short: Vec::new(),
            short_len: 0,
            short_shift: 64,
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
        let key = piece.as_bytes();
        if key.len() <= SHORT_KEY {
            return self.get_short(hash, key);
        }
        let arena = &self.arena;
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

    #[inline]
    fn get_short(&self, hash: u64, key: &[u8]) -> Option<&[u32]> {
        if self.short.is_empty() {
            return None;
        }
        let packed = pack(key);
        let want = key.len() as u32 | (hash as u32 & 0xFFFF_0000);
        let mask = self.short.len() - 1;
        let mut at = (hash >> self.short_shift) as usize;
        loop {
            let slot = &self.short[at];
            if slot.meta == 0 {
                return None;
            }
            if slot.meta & META_MATCH == want && slot.key == packed {
                let len = (slot.meta >> 8 & 0xFF) as usize;
                return Some(if len <= INLINE_IDS {
                    &slot.ids[..len]
                } else {
                    let start = slot.ids[0] as usize;
                    &self.arena[start..start + len]
                });
            }
            at = (at + 1) & mask;
        }
    }

    /// Puts a slot into the short table, which has room (the key is not there yet).
    fn place(short: &mut [Slot], shift: u32, hash: u64, slot: Slot) {
        let mask = short.len() - 1;
        let mut at = (hash >> shift) as usize;
        while short[at].meta != 0 {
            at = (at + 1) & mask;
        }
        short[at] = slot;
    }

    /// Doubles the short table (or makes its first one), re-placing every slot by the hash of
    /// its key.
    fn grow_short(&mut self) {
        let slots = (self.short.len() * 2).max(SHORT_MIN_SLOTS);
        let shift = 64 - slots.trailing_zeros();
        let mut short = vec![Slot::default(); slots];
        for slot in self.short.iter().filter(|s| s.meta != 0) {
            let mut bytes = [0u8; SHORT_KEY];
            for (chunk, word) in bytes.chunks_exact_mut(4).zip(slot.key) {
                chunk.copy_from_slice(&word.to_le_bytes());
            }
            let hash = FxBuildHasher.hash_one(&bytes[..(slot.meta & 0xFF) as usize]);
            Self::place(&mut short, shift, hash, *slot);
        }
        self.short = short;
        self.short_shift = shift;
    }

    /// Remembers `ids` for `piece`; a piece or ids longer than 65535 are not kept.
    pub(crate) fn insert(&mut self, hash: u64, piece: &str, ids: &[u32]) {
        let (Ok(key_len), Ok(ids_len)) = (u16::try_from(piece.len()), u16::try_from(ids.len()))
        else {
            return;
        };
        let record = word_count(piece.len()) + ids.len();
        let used = 32 * self.short.len() + 4 * self.arena.len() + 24 * self.table.len();
        if used + 4 * record + 24 > self.budget_bytes
            || self.arena.len() + record > u32::MAX as usize
        {
            self.short = Vec::new();
            self.short_len = 0;
            self.short_shift = 64;
            self.table.clear();
            self.arena.clear();
        }
        if piece.len() <= SHORT_KEY && ids.len() <= 0xFF {
            if (self.short_len + 1) * 2 > self.short.len() {
                self.grow_short();
            }
            let mut slot = Slot {
                key: pack(piece.as_bytes()),
                meta: piece.len() as u32 | (ids.len() as u32) << 8 | (hash as u32 & 0xFFFF_0000),
                ids: [0; INLINE_IDS],
            };
            if ids.len() <= INLINE_IDS {
                slot.ids[..ids.len()].copy_from_slice(ids);
            } else {
                slot.ids[0] = self.arena.len() as u32;
                self.arena.extend_from_slice(ids);
            }
            Self::place(&mut self.short, self.short_shift, hash, slot);
            self.short_len += 1;
            return;
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
