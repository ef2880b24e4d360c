//! A BPE word encoder that repeats, step for step, what the `tokenizers` crate's `BPE` model does
//! for one word (`BPE::merge_word` then `Word::merge_all`, without dropout, prefixes or
//! suffixes), on ids only and without allocating per token.
//!
//! It is built from the model the `tokenizers` crate loaded (its own serialization, so the merge
//! ranks are the ones it uses). The rules it must match exactly:
//! - a character in the vocabulary is a symbol; otherwise, with byte fallback, its UTF-8 bytes as
//!   `<0xXX>` tokens if all exist (a pending unknown token is *not* flushed first, as upstream);
//!   otherwise the unknown token, fused with a preceding unknown one when `fuse_unk` is set;
//! - merges are applied lowest rank first, ties broken by leftmost position, and a queued merge
//!   is skipped when its left symbol is gone, is last, or the pair now there maps to another id.
//!
//! Short words skip the priority queue: they repeatedly merge the leftmost lowest-rank adjacent
//! pair. That is the same sequence of merges, because a queued entry that went stale can never
//! become valid again: a merge result's token string is the concatenation of its parts, so when
//! the symbols at a position change, the pair there spans more characters and spells a
//! different token, hence a different id (ids are checked to be unique when loading).

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use rustc_hash::FxHashMap;

/// The serialized `tokenizers` BPE model, as far as the fast encoder reads it (merges as
/// `[a, b]` pairs, as `tokenizers` writes them; other fields are ignored).
#[derive(serde::Deserialize)]
struct ModelJson {
    vocab: FxHashMap<String, u32>,
    merges: Vec<(String, String)>,
    #[serde(default)]
    byte_fallback: bool,
    #[serde(default)]
    fuse_unk: bool,
    #[serde(default)]
    unk_token: Option<String>,
}

/// The merge table and symbol lookups of a BPE model.
pub(crate) struct FastBpe {
    vocab: FxHashMap<String, u32>,
    ascii: [Option<u32>; 128],
    /// Single-character tokens beyond ASCII, by character (cheaper than hashing a string).
    chars: FxHashMap<char, u32>,
    bytes: Option<[u32; 256]>,
    merges: Merges,
    unk: Option<u32>,
    fuse_unk: bool,
}

/// The merges, `(left id, right id)` to `(rank, merged id)`.
///
/// With every id below 2^16 (Llama's 32000) the pairs live in a compact open-addressing table:
/// one `u64` slot holds the pair (high half) and the rank (low half), probed linearly from a
/// Fibonacci hash, so a lookup is usually one cache line, and the whole table (twice the merge
/// count, rounded up to a power of two, 1 MiB for Llama-2) stays in a core's L2 cache. The merged
/// id is `results[rank]`. Larger vocabularies use a hash map.
enum Merges {
    Compact {
        slots: Vec<u64>,
        shift: u32,
        results: Vec<u32>,
    },
    Map(FxHashMap<u64, (u32, u32)>),
}

const EMPTY_SLOT: u64 = u64::MAX;

impl Merges {
    fn new(list: &[(u32, u32, u32)]) -> Merges {
        let compact =
            list.len() < (1 << 30) && list.iter().all(|&(a, b, _)| a < 0xFFFF && b < 0xFFFF);
        if !compact {
            return Merges::Map(
                list.iter()
                    .enumerate()
                    .map(|(rank, &(a, b, id))| (pair(a, b), (rank as u32, id)))
                    .collect(),
            );
        }
        let size = (list.len() * 2).next_power_of_two().max(16);
        let bits = size.trailing_zeros();
        let mut slots = vec![EMPTY_SLOT; size];
        let mut results = Vec::with_capacity(list.len());
        for (rank, &(a, b, id)) in list.iter().enumerate() {
            let key = (a << 16) | b;
            let mut at = Self::home(key, 64 - bits);
            // A pair listed twice keeps its last rank, as a map built in order does.
            loop {
                let slot = slots[at];
                if slot == EMPTY_SLOT {
                    slots[at] = (u64::from(key) << 32) | rank as u64;
                    break;
                }
                if (slot >> 32) as u32 == key {
                    slots[at] = (u64::from(key) << 32) | rank as u64;
                    break;
                }
                at = (at + 1) & (size - 1);
            }
            results.push(id);
        }
        Merges::Compact {
            slots,
            shift: 64 - bits,
            results,
        }
    }

    #[inline]
    fn home(key: u32, shift: u32) -> usize {
        (u64::from(key).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> shift) as usize
    }

    /// `(rank, merged id)` of the pair `(a, b)`.
    #[inline]
    fn get(&self, a: u32, b: u32) -> Option<(u32, u32)> {
        match self {
            Merges::Compact {
                slots,
                shift,
                results,
            } => {
                if a >= 0xFFFF || b >= 0xFFFF {
                    return None;
                }
                let key = (a << 16) | b;
                let mask = slots.len() - 1;
                let mut at = Self::home(key, *shift);
                loop {
                    let slot = slots[at];
                    if slot == EMPTY_SLOT {
                        return None;
                    }
                    if (slot >> 32) as u32 == key {
                        let rank = slot as u32;
                        return Some((rank, results[rank as usize]));
                    }
                    at = (at + 1) & mask;
                }
            }
            Merges::Map(map) => map.get(&pair(a, b)).copied(),
        }
    }
}

#[derive(Clone, Copy)]
struct Symbol {
    id: u32,
    prev: i32,
    next: i32,
    len: u32,
}

/// Reusable buffers for [`FastBpe::encode_word`].
#[derive(Default)]
pub(crate) struct Scratch {
    symbols: Vec<Symbol>,
    heap: BinaryHeap<Reverse<(u32, u32, u32)>>,
    ids: Vec<u32>,
    ranks: Vec<(u32, u32)>,
}

/// Words of at most this many initial symbols are merged by scanning instead of a heap.
const SHORT_WORD: usize = 48;

#[inline]
fn pair(a: u32, b: u32) -> u64 {
    (u64::from(a) << 32) | u64::from(b)
}

impl FastBpe {
    /// Builds from the serialized `tokenizers` BPE model (`{"vocab": .., "merges": [[a, b], ..],
    /// "byte_fallback": .., "fuse_unk": .., "unk_token": ..}`), as JSON text: read into typed
    /// fields, which is several times cheaper than through a `serde_json::Value`.
    pub(crate) fn from_model_json(model: &[u8]) -> Result<FastBpe, String> {
        let model: ModelJson = serde_json::from_slice(model)
            .map_err(|e| format!("could not read the serialized BPE model: {e}"))?;
        let vocab = model.vocab;
        let mut seen_ids = rustc_hash::FxHashSet::default();
        for &id in vocab.values() {
            if !seen_ids.insert(id) {
                return Err(format!("vocabulary id {id} is used by two tokens"));
            }
        }
        let mut merges = Vec::with_capacity(model.merges.len());
        let mut joined = String::new();
        for (a, b) in &model.merges {
            let a_id = *vocab.get(a).ok_or("merge token out of vocabulary")?;
            let b_id = *vocab.get(b).ok_or("merge token out of vocabulary")?;
            joined.clear();
            joined.push_str(a);
            joined.push_str(b);
            let new_id = *vocab
                .get(joined.as_str())
                .ok_or("merge result out of vocabulary")?;
            merges.push((a_id, b_id, new_id));
        }
        let merges = Merges::new(&merges);
        let chars = vocab
            .iter()
            .filter_map(|(token, &id)| {
                let mut chars = token.chars();
                match (chars.next(), chars.next()) {
                    (Some(c), None) if !c.is_ascii() => Some((c, id)),
                    _ => None,
                }
            })
            .collect();
        let mut ascii = [None; 128];
        for (c, slot) in ascii.iter_mut().enumerate() {
            let ch = char::from(c as u8);
            *slot = vocab.get(ch.encode_utf8(&mut [0; 4]) as &str).copied();
        }
        let bytes = if model.byte_fallback {
            let mut table = [0u32; 256];
            let mut complete = true;
            for (b, slot) in table.iter_mut().enumerate() {
                match vocab.get(format!("<0x{b:02X}>").as_str()) {
                    Some(&id) => *slot = id,
                    None => complete = false,
                }
            }
            if !complete {
                // Partial byte tables: upstream falls back per character; keep it simple and
                // let the caller use the reference path.
                return Err("byte_fallback with an incomplete <0xXX> table".into());
            }
            Some(table)
        } else {
            None
        };
        let unk = match &model.unk_token {
            Some(token) => Some(
                *vocab
                    .get(token)
                    .ok_or("the unknown token is not in the vocabulary")?,
            ),
            None => None,
        };
        let fuse_unk = model.fuse_unk;
        Ok(FastBpe {
            vocab,
            ascii,
            chars,
            bytes,
            merges,
            unk,
            fuse_unk,
        })
    }

    /// Whether an ASCII character always stands alone: no token of two or more characters
    /// contains it, and it never becomes the unknown token. BPE can then never merge across it.
    pub(crate) fn isolated_ascii(&self) -> [bool; 128] {
        let mut in_multi = [false; 128];
        for token in self.vocab.keys() {
            if token.chars().nth(1).is_some() {
                for b in token.bytes().filter(u8::is_ascii) {
                    in_multi[usize::from(b)] = true;
                }
            }
        }
        let mut isolated = [false; 128];
        for c in 0..128 {
            let known = self.ascii[c].is_some() || self.bytes.is_some();
            isolated[c] = known && !in_multi[c] && c != usize::from(b' ');
        }
        isolated
    }

    /// Which adjacent ASCII pairs BPE can never merge across: `table[a][b]` is set when `a` and
    /// `b` are single-character tokens (so they start as their own symbols, never as bytes or
    /// the unknown token), neither is a space, and no vocabulary token contains `ab`. A merged
    /// symbol's text is the concatenation of the characters it covers, so a symbol that spans
    /// such a pair would be a token containing `ab`: the word then encodes as its two sides
    /// encoded apart (merges on one side never change the pairs of the other, and equal ranks
    /// are the same pair, so the order among sides does not matter). A table of bytes (16 KiB,
    /// in the first-level cache) is read with one load, unlike a bit in a `u128`.
    pub(crate) fn separable_ascii(&self) -> Box<[[bool; 128]; 128]> {
        let mut joined = [[false; 128]; 128];
        for token in self.vocab.keys() {
            for pair in token.as_bytes().windows(2) {
                if pair[0] < 128 && pair[1] < 128 {
                    joined[usize::from(pair[0])][usize::from(pair[1])] = true;
                }
            }
        }
        let mut separable = Box::new([[false; 128]; 128]);
        let standalone = |c: usize| self.ascii[c].is_some() && c != usize::from(b' ');
        for a in (0..128).filter(|&a| standalone(a)) {
            for b in (0..128).filter(|&b| standalone(b)) {
                separable[a][b] = !joined[a][b];
            }
        }
        separable
    }

    /// Merges a short word by scanning: leftmost lowest-rank pair first.
    fn merge_short(&self, out: &mut Vec<u32>, scratch: &mut Scratch) {
        let ids = &mut scratch.ids;
        ids.clear();
        ids.extend(scratch.symbols.iter().map(|s| s.id));
        let ranks = &mut scratch.ranks;
        ranks.clear();
        let lookup = |a: u32, b: u32| self.merges.get(a, b).unwrap_or((u32::MAX, 0));
        for w in ids.windows(2) {
            ranks.push(lookup(w[0], w[1]));
        }
        loop {
            let mut best = u32::MAX;
            let mut at = 0;
            for (i, &(rank, _)) in ranks.iter().enumerate() {
                if rank < best {
                    best = rank;
                    at = i;
                }
            }
            if best == u32::MAX {
                break;
            }
            ids[at] = ranks[at].1;
            ids.remove(at + 1);
            ranks.remove(at);
            if at > 0 {
                ranks[at - 1] = lookup(ids[at - 1], ids[at]);
            }
            if at < ranks.len() {
                ranks[at] = lookup(ids[at], ids[at + 1]);
            }
        }
        out.extend_from_slice(ids);
    }

    #[inline]
    fn push(symbols: &mut Vec<Symbol>, id: u32, len: u32) {
        let index = symbols.len() as i32;
        if let Some(last) = symbols.last_mut() {
            last.next = index;
        }
        symbols.push(Symbol {
            id,
            prev: index - 1,
            next: -1,
            len,
        });
    }

    /// Appends the ids of one word to `out`.
    pub(crate) fn encode_word(&self, word: &str, out: &mut Vec<u32>, scratch: &mut Scratch) {
        let symbols = &mut scratch.symbols;
        symbols.clear();
        let mut unk: Option<(u32, u32)> = None;
        for (i, ch) in word.char_indices() {
            let len = ch.len_utf8();
            let id = if (ch as u32) < 128 {
                self.ascii[ch as usize]
            } else {
                self.chars.get(&ch).copied()
            };
            if let Some(id) = id {
                if let Some((unk_id, unk_len)) = unk.take() {
                    Self::push(symbols, unk_id, unk_len);
                }
                Self::push(symbols, id, len as u32);
                continue;
            }
            if let Some(table) = &self.bytes {
                for &b in &word.as_bytes()[i..i + len] {
                    Self::push(symbols, table[usize::from(b)], 1);
                }
                continue;
            }
            if let Some(unk_id) = self.unk {
                unk = match unk {
                    Some((id, prev_len)) if self.fuse_unk => Some((id, prev_len + len as u32)),
                    Some((id, prev_len)) => {
                        Self::push(symbols, id, prev_len);
                        Some((unk_id, len as u32))
                    }
                    None => Some((unk_id, len as u32)),
                };
            }
        }
        if let Some((unk_id, unk_len)) = unk {
            Self::push(symbols, unk_id, unk_len);
        }

        if symbols.len() <= SHORT_WORD {
            self.merge_short(out, scratch);
            return;
        }
        // merge_all.
        let symbols = &mut scratch.symbols;
        let heap = &mut scratch.heap;
        heap.clear();
        for index in 0..symbols.len().saturating_sub(1) {
            if let Some((rank, new_id)) = self.merges.get(symbols[index].id, symbols[index + 1].id)
            {
                heap.push(Reverse((rank, index as u32, new_id)));
            }
        }
        while let Some(Reverse((_, pos, new_id))) = heap.pop() {
            let pos = pos as usize;
            if symbols[pos].len == 0 || symbols[pos].next == -1 {
                continue;
            }
            let next_pos = symbols[pos].next as usize;
            let right = symbols[next_pos];
            match self.merges.get(symbols[pos].id, right.id) {
                Some((_, id)) if id == new_id => {}
                _ => continue,
            }
            symbols[pos].id = new_id;
            symbols[pos].len += right.len;
            symbols[pos].next = right.next;
            symbols[next_pos].len = 0;
            if right.next > -1 && (right.next as usize) < symbols.len() {
                symbols[right.next as usize].prev = pos as i32;
            }
            let current = symbols[pos];
            if current.prev >= 0 {
                let prev = current.prev as usize;
                if let Some((rank, id)) = self.merges.get(symbols[prev].id, current.id) {
                    heap.push(Reverse((rank, prev as u32, id)));
                }
            }
            let next = current.next;
            if next >= 0
                && (next as usize) < symbols.len()
                && let Some((rank, id)) = self.merges.get(current.id, symbols[next as usize].id)
            {
                heap.push(Reverse((rank, pos as u32, id)));
            }
        }
        out.extend(symbols.iter().filter(|s| s.len > 0).map(|s| s.id));
    }
}
