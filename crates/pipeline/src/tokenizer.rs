//! Loading a HuggingFace tokenizer directory, and encoding text to ids exactly as the reference
//! tools do, fast.
//!
//! The reference is the `tokenizers` crate (the library behind Python's fast tokenizers, which
//! Megatron's `preprocess_data.py` uses). [`Tokenizer`] always holds that reference; it adds a
//! faster path that gives the same ids for tokenizers of the SentencePiece-BPE shape of
//! Llama/Llama-2/Mistral:
//!
//! - normalizer `Sequence[Prepend("▁"), Replace(" " -> "▁")]` and no pre-tokenizer (Llama's
//!   `tokenizer.json`), or no normalizer and a `Metaspace(▁, split=false)` pre-tokenizer (what
//!   transformers 5 rebuilds for `LlamaTokenizer`); a BPE model without dropout, word prefixes
//!   or suffixes, nor `ignore_merges`;
//! - every added token matched on the raw text (`normalized: false`, no strip, not single-word);
//! - for `--mode megatron`, no post-processor or a `TemplateProcessing` one.
//!
//! HuggingFace's BPE treats such a document as one "word" of up to hundreds of kilobytes, which is
//! slow. The fast path cuts the normalized text before every `▁` that follows another character
//! and runs the same BPE model on each piece, with a per-worker cache of pieces. That is exact
//! when **no vocabulary token has a `▁` right after another character**: BPE only merges pairs
//! whose concatenation is a vocabulary token, so no merge can then span a cut, the pieces evolve
//! independently, and (with `▁` itself in the vocabulary) no unknown-token fusion spans a cut
//! either. The property holds for Llama-2; it is checked when the tokenizer loads, and any
//! tokenizer that does not have this shape or property uses the reference encoder instead
//! ([`Tokenizer::fallback_reason`] says why).
//!
//! By the same argument the text is also cut between two ASCII characters that no vocabulary
//! token holds side by side (`d,` or `(f` in Llama-2), which makes the pieces short and
//! frequent: most are cache hits, and a one-character piece is looked up in a table. Pieces are
//! found on the raw text and keyed by their raw bytes, so the text is never copied whole.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use tokenizers::AddedToken;
use tokenizers::models::ModelWrapper;
use tokenizers::normalizers::NormalizerWrapper;
use tokenizers::pre_tokenizers::metaspace::{Metaspace, PrependScheme};

use crate::bpe::{FastBpe, Scratch};
use crate::cache::PieceCache;
use crate::error::{Error, Result};

/// The character SentencePiece uses for a space.
const META: char = '\u{2581}';
const META_STR: &str = "\u{2581}";

/// Which reference tool's semantics to reproduce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// NeMo's `preprocess_data_for_megatron.py` (what the blueprint runs): no special tokens
    /// added by the tokenizer, EOS appended to non-empty documents with `append_eod`, empty
    /// documents skipped, `need_pad_id` adds `<pad>`. The text pipeline is tokenizer.json's as
    /// written (transformers 4, the blueprint's stack, whose legacy Llama tokenizers agree).
    #[default]
    Nemo,
    /// Megatron-LM's `tools/preprocess_data.py`: `tokenizer(text).input_ids` (the
    /// post-processor's BOS included), empty documents kept as zero-length documents, a list
    /// value taken as pre-split sentences. For a `LlamaTokenizer` class, the text pipeline is the
    /// one transformers 5 (Megatron-LM's current stack) rebuilds: a `Metaspace` pre-tokenizer
    /// instead of tokenizer.json's normalizer.
    Megatron,
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mode::Nemo => "nemo",
            Mode::Megatron => "megatron",
        })
    }
}

/// Which encoder a [`Tokenizer`] uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// The piece-wise cached path (exact, checked at load).
    Fast,
    /// The `tokenizers` crate's own `encode`.
    Reference,
}

/// A loaded tokenizer: the reference `tokenizers` object, and the fast plan when it applies.
#[derive(Clone)]
pub struct Tokenizer {
    hf: Arc<tokenizers::Tokenizer>,
    fast: Option<Arc<FastPlan>>,
    fallback_reason: Option<String>,
    add_special_tokens: bool,
    eos_id: Option<u32>,
    vocab_size: usize,
    path: PathBuf,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("path", &self.path)
            .field("engine", &self.engine())
            .field("fallback_reason", &self.fallback_reason)
            .field("add_special_tokens", &self.add_special_tokens)
            .field("eos_id", &self.eos_id)
            .field("vocab_size", &self.vocab_size)
            .finish()
    }
}

/// How text between added tokens becomes the BPE model's input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Prefix {
    /// tokenizer.json's legacy normalizer: `▁` + text with spaces as `▁` (non-empty text).
    Legacy,
    /// A `Metaspace(▁, split=false)` pre-tokenizer: spaces as `▁`, then `▁` prepended unless
    /// the piece already starts with one; `first_only` restricts that to a piece at offset 0.
    Metaspace { prepend: bool, first_only: bool },
}

struct FastPlan {
    prefix_rule: Prefix,
    /// Added tokens, matched leftmost-longest on the raw text like `tokenizers` does.
    added: Option<AhoCorasick>,
    added_ids: Vec<u32>,
    /// Ids the post-processor puts before and after the sequence (`megatron` mode only).
    prefix: Vec<u32>,
    suffix: Vec<u32>,
    /// The BPE model, replicated on ids.
    bpe: FastBpe,
    /// ASCII characters that BPE never merges with a neighbour (cut before and after them).
    isolated: [bool; 128],
    /// ASCII pairs that BPE never merges across ([`FastBpe::separable_ascii`]): the text is cut
    /// between them as well.
    separable: Box<[[bool; 128]; 128]>,
    /// The id of each one-byte piece that encodes to a single id (`▁` for a space).
    single: [Option<u32>; 128],
}

/// Reads the `tokenizer_config.json` value of a special token: a string or `{"content": ..}`.
fn config_token(config: &serde_json::Value, name: &str) -> Option<String> {
    match config.get(name)? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Object(o) => o.get("content")?.as_str().map(str::to_owned),
        _ => None,
    }
}

fn read_json(path: &Path) -> Result<Option<serde_json::Value>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::LoadTokenizer {
                path: path.to_owned(),
                reason: "not valid JSON".into(),
                source: Some(Box::new(e)),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("read", path, e)),
    }
}

impl Tokenizer {
    /// Loads `dir/tokenizer.json` (plus `tokenizer_config.json` and `special_tokens_map.json`
    /// when present, for the EOS and pad tokens), or a `tokenizer.json` file given directly.
    ///
    /// `need_pad_id` adds the special token `<pad>` when the tokenizer has no pad token, as NeMo
    /// does: the vocabulary grows by one and literal `<pad>` in text becomes that id.
    pub fn from_path(path: &Path, mode: Mode, need_pad_id: bool) -> Result<Self> {
        let (dir, file) = if path.is_dir() {
            (path.to_owned(), path.join("tokenizer.json"))
        } else {
            (
                path.parent().map(Path::to_owned).unwrap_or_default(),
                path.to_owned(),
            )
        };
        if !file.is_file() {
            return Err(Error::LoadTokenizer {
                path: path.to_owned(),
                reason: "no tokenizer.json there; stage the tokenizer first (a HuggingFace `save_pretrained` directory)"
                    .into(),
                source: None,
            });
        }
        let bytes = std::fs::read(&file).map_err(|e| Error::io("read", &file, e))?;
        let raw: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| Error::LoadTokenizer {
                path: file.clone(),
                reason: "not valid JSON".into(),
                source: Some(Box::new(e)),
            })?;
        let mut hf =
            tokenizers::Tokenizer::from_bytes(&bytes).map_err(|e| Error::LoadTokenizer {
                path: file.clone(),
                reason: "the tokenizers library rejected it".into(),
                source: Some(e),
            })?;
        // transformers never truncates or pads in these tools' calls; tokenizer.json may ask to.
        hf.with_truncation(None).map_err(|e| Error::LoadTokenizer {
            path: file.clone(),
            reason: "could not disable truncation".into(),
            source: Some(e),
        })?;
        hf.with_padding(None);

        let mut config =
            read_json(&dir.join("tokenizer_config.json"))?.unwrap_or(serde_json::Value::Null);
        if let Some(map) = read_json(&dir.join("special_tokens_map.json"))? {
            // tokenizer_config.json wins; special_tokens_map.json fills gaps.
            if let (Some(cfg), Some(map)) = (config.as_object_mut(), map.as_object()) {
                for (k, v) in map {
                    if cfg.get(k).is_none_or(serde_json::Value::is_null) {
                        cfg.insert(k.clone(), v.clone());
                    }
                }
            } else if config.is_null() {
                config = map;
            }
        }

        let class = config.get("tokenizer_class").and_then(|c| c.as_str());
        if mode == Mode::Megatron && matches!(class, Some("LlamaTokenizer" | "LlamaTokenizerFast"))
        {
            // Megatron-LM today runs transformers 5, whose `LlamaTokenizer` ignores
            // tokenizer.json's normalizer and pre-tokenizer and installs
            // `Metaspace(▁, prepend_scheme, split=false)` instead (prepend "always" with
            // `legacy: true`, "first" otherwise, "never" with `add_prefix_space: false`).
            // Text that starts with a space (or follows a special token with one) differs.
            let add_prefix_space = config
                .get("add_prefix_space")
                .and_then(|v| v.as_bool())
                .unwrap_or(true);
            let legacy = config
                .get("legacy")
                .and_then(|v| v.as_bool())
                .unwrap_or(false);
            let scheme = match (add_prefix_space, legacy) {
                (false, _) => PrependScheme::Never,
                (true, true) => PrependScheme::Always,
                (true, false) => PrependScheme::First,
            };
            hf.with_normalizer(None::<NormalizerWrapper>)
                .map_err(|e| Error::LoadTokenizer {
                    path: file.clone(),
                    reason: "could not reset the normalizer".into(),
                    source: Some(e),
                })?;
            hf.with_pre_tokenizer(Some(Metaspace::new(META, scheme, false)));
        }
        let eos_id = config_token(&config, "eos_token").and_then(|t| hf.token_to_id(&t));
        if need_pad_id {
            let pad = config_token(&config, "pad_token").and_then(|t| hf.token_to_id(&t));
            if pad.is_none() {
                hf.add_special_tokens([AddedToken::from("<pad>", true)])
                    .map_err(|e| Error::LoadTokenizer {
                        path: file.clone(),
                        reason: "could not add the <pad> token".into(),
                        source: Some(e),
                    })?;
            }
        }
        let vocab_size = hf.get_vocab_size(true);
        let add_special_tokens = mode == Mode::Megatron;
        let (fast, fallback_reason) = match FastPlan::build(&raw, &hf, add_special_tokens) {
            Ok(plan) => (Some(Arc::new(plan)), None),
            Err(reason) => {
                tracing::info!(%reason, "the fast tokenizer path does not apply; using the reference encoder");
                (None, Some(reason))
            }
        };
        Ok(Tokenizer {
            hf: Arc::new(hf),
            fast,
            fallback_reason,
            add_special_tokens,
            eos_id,
            vocab_size,
            path: file,
        })
    }

    /// The encoder in use.
    pub fn engine(&self) -> Engine {
        if self.fast.is_some() {
            Engine::Fast
        } else {
            Engine::Reference
        }
    }

    /// Forces the reference encoder (for comparisons).
    pub fn force_reference(&mut self) {
        if self.fast.take().is_some() {
            self.fallback_reason = Some("the reference encoder was requested".into());
        }
    }

    /// Why the fast path does not apply, if it does not.
    pub fn fallback_reason(&self) -> Option<&str> {
        self.fallback_reason.as_deref()
    }

    /// `len(tokenizer)`: vocabulary including added tokens (and `<pad>` if it was added).
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// The end-of-document id (the EOS token of `tokenizer_config.json`), if any.
    pub fn eos_id(&self) -> Option<u32> {
        self.eos_id
    }

    /// The id of a token string, added tokens included.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.hf.token_to_id(token)
    }

    /// The underlying `tokenizers` object (the reference).
    pub fn reference(&self) -> &tokenizers::Tokenizer {
        &self.hf
    }

    /// Whether special tokens are added (the post-processor runs): `megatron` mode.
    pub fn adds_special_tokens(&self) -> bool {
        self.add_special_tokens
    }

    /// A per-thread encoder with its own cache.
    pub fn encoder(&self) -> Encoder {
        Encoder {
            tokenizer: self.clone(),
            cache: PieceCache::new(CACHE_BUDGET_BYTES),
            normalized: String::new(),
            piece: String::new(),
            scratch: Scratch::default(),
        }
    }

    /// Encodes with the reference `tokenizers` encoder (no fast path).
    pub fn encode_reference(&self, text: &str) -> std::result::Result<Vec<u32>, tokenizers::Error> {
        Ok(self
            .hf
            .encode_fast(text, self.add_special_tokens)?
            .get_ids()
            .to_vec())
    }
}

impl FastPlan {
    /// Checks the tokenizer's shape and vocabulary property; `Err` says why the fast path does
    /// not apply.
    fn build(
        raw: &serde_json::Value,
        hf: &tokenizers::Tokenizer,
        add_special: bool,
    ) -> Result<FastPlan, String> {
        use serde_json::json;
        let expected_normalizer = json!({
            "type": "Sequence",
            "normalizers": [
                {"type": "Prepend", "prepend": META_STR},
                {"type": "Replace", "pattern": {"String": " "}, "content": META_STR},
            ]
        });
        let normalizer = hf
            .get_normalizer()
            .map(|n| serde_json::to_value(n).unwrap_or_default());
        let pre_tokenizer = hf
            .get_pre_tokenizer()
            .map(|p| serde_json::to_value(p).unwrap_or_default());
        let prefix_rule = match (normalizer, pre_tokenizer) {
            (Some(n), None) if n == expected_normalizer => Prefix::Legacy,
            (None, Some(p))
                if p.get("type").and_then(|t| t.as_str()) == Some("Metaspace")
                    && p.get("replacement").and_then(|r| r.as_str()) == Some(META_STR)
                    && p.get("split").and_then(|r| r.as_bool()) == Some(false) =>
            {
                match p.get("prepend_scheme").and_then(|r| r.as_str()) {
                    Some("always") => Prefix::Metaspace {
                        prepend: true,
                        first_only: false,
                    },
                    Some("first") => Prefix::Metaspace {
                        prepend: true,
                        first_only: true,
                    },
                    Some("never") => Prefix::Metaspace {
                        prepend: false,
                        first_only: false,
                    },
                    _ => return Err("unknown Metaspace prepend_scheme".into()),
                }
            }
            _ => {
                return Err("the normalizer and pre-tokenizer are neither Sequence[Prepend(▁), Replace(' ', ▁)] alone nor Metaspace(▁, split=false) alone".into());
            }
        };
        let model = raw.get("model").ok_or("no model")?;
        if model.get("type").and_then(|t| t.as_str()) != Some("BPE") {
            return Err("the model is not BPE".into());
        }
        let ModelWrapper::BPE(bpe) = hf.get_model() else {
            return Err("the model is not BPE".into());
        };
        if bpe.dropout.is_some_and(|d| d > 0.0) {
            return Err("BPE dropout is set".into());
        }
        if bpe
            .continuing_subword_prefix
            .as_deref()
            .is_some_and(|p| !p.is_empty())
            || bpe
                .end_of_word_suffix
                .as_deref()
                .is_some_and(|s| !s.is_empty())
        {
            return Err("BPE has a subword prefix or suffix".into());
        }
        if bpe.ignore_merges {
            return Err("BPE ignore_merges is set".into());
        }
        let vocab = bpe.get_vocab();
        if !vocab.contains_key(META_STR) {
            return Err("▁ is not a vocabulary token".into());
        }
        for token in vocab.keys() {
            let mut previous: Option<char> = None;
            for c in token.chars() {
                if c == META && previous.is_some_and(|p| p != META) {
                    return Err(format!(
                        "vocabulary token {token:?} has ▁ after another character"
                    ));
                }
                previous = Some(c);
            }
        }
        // Added tokens.
        let mut added: Vec<(String, u32)> = Vec::new();
        for (id, token) in hf.get_added_tokens_decoder() {
            if token.normalized || token.lstrip || token.rstrip || token.single_word {
                return Err(format!(
                    "added token {:?} is normalized, stripped or single-word; only raw-text added tokens are supported",
                    token.content
                ));
            }
            if token.content.is_empty() {
                return Err("an added token is empty".into());
            }
            added.push((token.content, id));
        }
        added.sort();
        let (added, added_ids) = if added.is_empty() {
            (None, Vec::new())
        } else {
            let automaton = AhoCorasickBuilder::new()
                .match_kind(MatchKind::LeftmostLongest)
                .build(added.iter().map(|(c, _)| c.as_str()))
                .map_err(|e| format!("could not build the added-token matcher: {e}"))?;
            (Some(automaton), added.iter().map(|(_, id)| *id).collect())
        };
        // Post-processor.
        let (mut prefix, mut suffix) = (Vec::new(), Vec::new());
        if add_special {
            match raw.get("post_processor") {
                None | Some(serde_json::Value::Null) => {}
                Some(pp)
                    if pp.get("type").and_then(|t| t.as_str()) == Some("TemplateProcessing") =>
                {
                    let items = pp
                        .get("single")
                        .and_then(|s| s.as_array())
                        .ok_or("template without `single`")?;
                    let specials = pp
                        .get("special_tokens")
                        .ok_or("template without `special_tokens`")?;
                    let mut seen_sequence = false;
                    for item in items {
                        if let Some(seq) = item.get("Sequence") {
                            if seq.get("id").and_then(|i| i.as_str()) != Some("A") || seen_sequence
                            {
                                return Err("unsupported template sequence".into());
                            }
                            seen_sequence = true;
                        } else if let Some(special) = item.get("SpecialToken") {
                            let name = special
                                .get("id")
                                .and_then(|i| i.as_str())
                                .ok_or("template special without id")?;
                            let ids = specials
                                .get(name)
                                .and_then(|s| s.get("ids"))
                                .and_then(|i| i.as_array())
                                .ok_or("template special token without ids")?;
                            let target = if seen_sequence {
                                &mut suffix
                            } else {
                                &mut prefix
                            };
                            for id in ids {
                                target.push(
                                    id.as_u64()
                                        .and_then(|i| u32::try_from(i).ok())
                                        .ok_or("bad special id")?,
                                );
                            }
                        } else {
                            return Err("unsupported template item".into());
                        }
                    }
                    if !seen_sequence {
                        return Err("template without sequence A".into());
                    }
                }
                Some(_) => return Err("the post-processor is not a TemplateProcessing".into()),
            }
        }
        let model_json = serde_json::to_vec(hf.get_model())
            .map_err(|e| format!("could not serialize the model: {e}"))?;
        let bpe = FastBpe::from_model_json(&model_json)?;
        let isolated = bpe.isolated_ascii();
        let separable = bpe.separable_ascii();
        let mut single = [None; 128];
        let mut scratch = Scratch::default();
        for (byte, slot) in (0u8..128).zip(single.iter_mut()) {
            let mut piece = String::new();
            normalize_into(char::from(byte).encode_utf8(&mut [0; 4]), &mut piece);
            let mut ids = Vec::new();
            bpe.encode_word(&piece, &mut ids, &mut scratch);
            if let [id] = ids[..] {
                *slot = Some(id);
            }
        }
        Ok(FastPlan {
            prefix_rule,
            added,
            added_ids,
            prefix,
            suffix,
            bpe,
            isolated,
            separable,
            single,
        })
    }
}

/// Encodes text on one thread; holds a cache of pieces. Create one per worker with
/// [`Tokenizer::encoder`].
pub struct Encoder {
    tokenizer: Tokenizer,
    cache: PieceCache,
    /// The first piece of a text, normalized (it is keyed that way).
    normalized: String,
    /// A piece normalized for the BPE model after a cache miss.
    piece: String,
    scratch: Scratch,
}

/// Pieces longer than this are not cached (they rarely repeat).
const MAX_CACHED_PIECE: usize = 128;
/// Start the cache over past this many bytes, bounding memory per worker.
const CACHE_BUDGET_BYTES: usize = 40 << 20;

impl Encoder {
    /// The tokenizer this encoder uses.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// Appends the ids of `text` to `out`, exactly as `tokenizer.encode(text, add_special_tokens)`
    /// of the `tokenizers` crate would produce them.
    pub fn encode(
        &mut self,
        text: &str,
        out: &mut Vec<u32>,
    ) -> std::result::Result<(), tokenizers::Error> {
        let Some(plan) = self.tokenizer.fast.clone() else {
            let encoding = self
                .tokenizer
                .hf
                .encode_fast(text, self.tokenizer.add_special_tokens)?;
            out.extend_from_slice(encoding.get_ids());
            return Ok(());
        };
        out.extend_from_slice(&plan.prefix);
        match &plan.added {
            None => self.encode_plain(&plan, text, true, out),
            Some(automaton) => {
                let mut last = 0;
                for m in automaton.find_iter(text) {
                    if m.start() > last {
                        self.encode_plain(&plan, &text[last..m.start()], last == 0, out);
                    }
                    out.push(plan.added_ids[m.pattern().as_usize()]);
                    last = m.end();
                }
                if last < text.len() {
                    self.encode_plain(&plan, &text[last..], last == 0, out);
                }
            }
        }
        out.extend_from_slice(&plan.suffix);
        Ok(())
    }

    /// Cuts text without added tokens into the pieces of its normalized form (prepend ▁,
    /// spaces to ▁) and encodes them through the cache. A cut falls before every ▁ that follows
    /// another character, around every isolated ASCII character and between the two characters
    /// of every separable ASCII pair.
    ///
    /// The text is not normalized as a whole: each piece is found on the raw text and its raw
    /// bytes are the cache key, since a raw piece's normalized form is the same string with
    /// spaces as ▁ (and a normalized key, without spaces, stands for itself). Only the first
    /// piece, which carries the prepended ▁ that has no raw counterpart, is keyed by its
    /// normalized form.
    fn encode_plain(&mut self, plan: &FastPlan, text: &str, at_start: bool, out: &mut Vec<u32>) {
        if text.is_empty() {
            return;
        }
        let prepend = match plan.prefix_rule {
            Prefix::Legacy => true,
            Prefix::Metaspace {
                prepend,
                first_only,
            } => {
                prepend
                    && (!first_only || at_start)
                    && !text.starts_with(' ')
                    && !text.starts_with(META)
            }
        };
        let bytes = text.as_bytes();
        let mut start = 0;
        // Whether the piece that starts at `start` begins with the prepended ▁.
        let mut prefixed = prepend;
        // Whether the previous normalized character is ▁.
        let mut previous_meta = prepend;
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            let meta_len = if b == b' ' {
                1
            } else if b == 0xE2
                && bytes.get(i + 1) == Some(&0x96)
                && bytes.get(i + 2) == Some(&0x81)
            {
                3
            } else {
                0
            };
            if meta_len > 0 {
                if !previous_meta && i > start {
                    self.encode_raw(plan, &text[start..i], prefixed, out);
                    prefixed = false;
                    start = i;
                }
                previous_meta = true;
                i += meta_len;
                continue;
            }
            previous_meta = false;
            if b < 128 {
                if plan.isolated[usize::from(b)] {
                    if i > start || prefixed {
                        self.encode_raw(plan, &text[start..i], prefixed, out);
                        prefixed = false;
                    }
                    self.encode_raw(plan, &text[i..i + 1], false, out);
                    start = i + 1;
                } else if i > start
                    && let Some(&a) = bytes.get(i - 1)
                    && a < 128
                    && plan.separable[usize::from(a)][usize::from(b)]
                {
                    self.encode_raw(plan, &text[start..i], prefixed, out);
                    prefixed = false;
                    start = i;
                }
            }
            i += 1;
        }
        if start < bytes.len() || prefixed {
            self.encode_raw(plan, &text[start..], prefixed, out);
        }
    }

    /// Encodes one raw piece: its normalized form is `▁` (when `prefixed`) and the piece with
    /// spaces as `▁`.
    #[inline]
    fn encode_raw(&mut self, plan: &FastPlan, raw: &str, prefixed: bool, out: &mut Vec<u32>) {
        if prefixed {
            let mut normalized = std::mem::take(&mut self.normalized);
            normalized.clear();
            normalized.push(META);
            normalize_into(raw, &mut normalized);
            self.encode_piece(plan, &normalized, out);
            self.normalized = normalized;
        } else {
            self.encode_piece(plan, raw, out);
        }
    }

    /// Encodes a piece through the cache; `key` is raw or normalized text (see
    /// [`Encoder::encode_plain`]).
    #[inline]
    fn encode_piece(&mut self, plan: &FastPlan, key: &str, out: &mut Vec<u32>) {
        if let &[byte] = key.as_bytes()
            && let Some(id) = plan.single.get(usize::from(byte)).copied().flatten()
        {
            out.push(id);
            return;
        }
        let cacheable = key.len() <= MAX_CACHED_PIECE;
        let hash = if cacheable {
            let hash = PieceCache::hash(key);
            if let Some(ids) = self.cache.get(hash, key) {
                // Most pieces are one id: a push, not a call to `memcpy`.
                match *ids {
                    [id] => out.push(id),
                    _ => out.extend_from_slice(ids),
                }
                return;
            }
            hash
        } else {
            0
        };
        let start = out.len();
        self.encode_uncached(plan, key, out);
        if cacheable {
            self.cache.insert(hash, key, &out[start..]);
        }
    }

    /// Runs the BPE model on a raw or normalized piece.
    fn encode_uncached(&mut self, plan: &FastPlan, key: &str, out: &mut Vec<u32>) {
        if key.as_bytes().contains(&b' ') {
            let mut piece = std::mem::take(&mut self.piece);
            piece.clear();
            normalize_into(key, &mut piece);
            plan.bpe.encode_word(&piece, out, &mut self.scratch);
            self.piece = piece;
        } else {
            plan.bpe.encode_word(key, out, &mut self.scratch);
        }
    }
}

/// Appends `text` with every space replaced by `▁`.
fn normalize_into(text: &str, normalized: &mut String) {
    let mut from = 0;
    for at in memchr::memchr_iter(b' ', text.as_bytes()) {
        normalized.push_str(&text[from..at]);
        normalized.push(META);
        from = at + 1;
    }
    normalized.push_str(&text[from..]);
}
