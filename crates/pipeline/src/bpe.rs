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

/// The merge table and symbol lookups of a BPE model.
pub(crate) struct FastBpe {
    vocab: FxHashMap<Box<str>, u32>,
    ascii: [Option<u32>; 128],
    bytes: Option<[u32; 256]>,
    merges: FxHashMap<u64, (u32, u32)>,
    unk: Option<u32>,
    fuse_unk: bool,
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
    /// "byte_fallback": .., "fuse_unk": .., "unk_token": ..}`).
    pub(crate) fn from_model_json(model: &serde_json::Value) -> Result<FastBpe, String> {
        let vocab_json = model
            .get("vocab")
            .and_then(|v| v.as_object())
            .ok_or("model without vocab")?;
        let mut vocab: FxHashMap<Box<str>, u32> = FxHashMap::default();
        let mut seen_ids = rustc_hash::FxHashSet::default();
        for (token, id) in vocab_json {
            let id = id
                .as_u64()
                .and_then(|i| u32::try_from(i).ok())
                .ok_or("bad vocab id")?;
            if !seen_ids.insert(id) {
                return Err(format!("vocabulary id {id} is used by two tokens"));
            }
            vocab.insert(token.as_str().into(), id);
        }
        let merges_json = model
            .get("merges")
            .and_then(|m| m.as_array())
            .ok_or("model without merges")?;
        let mut merges: FxHashMap<u64, (u32, u32)> = FxHashMap::default();
        for (rank, merge) in merges_json.iter().enumerate() {
            let (a, b) = match merge {
                serde_json::Value::Array(parts) if parts.len() == 2 => (
                    parts[0].as_str().ok_or("bad merge")?,
                    parts[1].as_str().ok_or("bad merge")?,
                ),
                _ => return Err("merges are not [a, b] pairs".into()),
            };
            let a_id = *vocab.get(a).ok_or("merge token out of vocabulary")?;
            let b_id = *vocab.get(b).ok_or("merge token out of vocabulary")?;
            let new_id = *vocab
                .get(format!("{a}{b}").as_str())
                .ok_or("merge result out of vocabulary")?;
            merges.insert(pair(a_id, b_id), (rank as u32, new_id));
        }
        let mut ascii = [None; 128];
        for (c, slot) in ascii.iter_mut().enumerate() {
            let ch = char::from(c as u8);
            *slot = vocab.get(ch.encode_utf8(&mut [0; 4]) as &str).copied();
        }
        let byte_fallback = model
            .get("byte_fallback")
            .and_then(|b| b.as_bool())
            .unwrap_or(false);
        let bytes = if byte_fallback {
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
        let unk = match model.get("unk_token").and_then(|u| u.as_str()) {
            Some(token) => Some(
                *vocab
                    .get(token)
                    .ok_or("the unknown token is not in the vocabulary")?,
            ),
            None => None,
        };
        let fuse_unk = model
            .get("fuse_unk")
            .and_then(|b| b.as_bool())
            .unwrap_or(false);
        Ok(FastBpe {
            vocab,
            ascii,
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

    /// Merges a short word by scanning: leftmost lowest-rank pair first.
    fn merge_short(&self, out: &mut Vec<u32>, scratch: &mut Scratch) {
        let ids = &mut scratch.ids;
        ids.clear();
        ids.extend(scratch.symbols.iter().map(|s| s.id));
        let ranks = &mut scratch.ranks;
        ranks.clear();
        let lookup = |a: u32, b: u32| {
            self.merges
                .get(&pair(a, b))
                .copied()
                .unwrap_or((u32::MAX, 0))
        };
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
                self.vocab.get(&word[i..i + len]).copied()
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
            if let Some(&(rank, new_id)) = self
                .merges
                .get(&pair(symbols[index].id, symbols[index + 1].id))
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
            match self.merges.get(&pair(symbols[pos].id, right.id)) {
                Some(&(_, id)) if id == new_id => {}
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
                if let Some(&(rank, id)) = self.merges.get(&pair(symbols[prev].id, current.id)) {
                    heap.push(Reverse((rank, prev as u32, id)));
                }
            }
            let next = current.next;
            if next >= 0
                && (next as usize) < symbols.len()
                && let Some(&(rank, id)) = self
                    .merges
                    .get(&pair(current.id, symbols[next as usize].id))
            {
                heap.push(Reverse((rank, pos as u32, id)));
            }
        }
        out.extend(symbols.iter().filter(|s| s.len > 0).map(|s| s.id));
    }
}
