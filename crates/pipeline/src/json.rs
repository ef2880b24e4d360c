//! A JSON line parser with the semantics of Python's `json.loads` (the reference tools parse
//! every line with it), specialised to pull a few top-level string fields out of an object.
//!
//! What "Python semantics" means here, beyond RFC 8259:
//! - `NaN`, `Infinity` and `-Infinity` are accepted as values; numbers of any size are accepted.
//! - Strings may not hold raw control characters (U+0000..U+001F), as in Python's strict mode.
//! - `\uXXXX` escapes combine surrogate pairs; a lone surrogate is accepted in a value that is not
//!   tokenized, but is an error in a tokenized field (Python's tokenizer cannot encode it).
//! - A duplicated key: the last value wins.
//! - A leading byte-order mark is an error ("Unexpected UTF-8 BOM"), as Python's `json.loads`
//!   rejects one in a `str`.
//! - Whitespace is exactly space, tab, `\n` and `\r`; anything after the value is "Extra data".
//!
//! Error messages follow Python's wording, with a 1-based column counted in characters.

use std::borrow::Cow;

/// A field's value as the tokenizer needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field<'a> {
    /// The key is absent.
    Missing,
    /// A string.
    Text(Cow<'a, str>),
    /// A list whose items are all strings (Megatron takes them as pre-split sentences).
    List(Vec<Cow<'a, str>>),
    /// Any other value; the name of its JSON type.
    Other(&'static str),
}

/// A parse error at a byte offset of the line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonError {
    /// Byte offset into the line.
    pub offset: usize,
    /// Python's message.
    pub message: String,
}

impl JsonError {
    /// The 1-based column in characters, as Python reports it.
    pub fn column(&self, line: &str) -> u64 {
        let end = self.offset.min(line.len());
        let mut end = end;
        while !line.is_char_boundary(end) {
            end -= 1;
        }
        line[..end].chars().count() as u64 + 1
    }
}

type PResult<T> = Result<T, JsonError>;

const MAX_DEPTH: usize = 900;

/// Parses `line` as one JSON value and returns, for each of `keys`, the top-level field of that
/// name. The whole line is validated.
pub fn extract_fields<'a>(line: &'a str, keys: &[String]) -> PResult<Vec<Field<'a>>> {
    let mut parser = Parser {
        s: line.as_bytes(),
        src: line,
        pos: 0,
    };
    if line.starts_with('\u{feff}') {
        return Err(parser.err("Unexpected UTF-8 BOM (decode using utf-8-sig)"));
    }
    let mut fields = vec![Field::Missing; keys.len()];
    parser.ws();
    match parser.peek() {
        Some(b'{') => parser.top_object(keys, &mut fields)?,
        _ => {
            let kind = parser.value(0)?;
            parser.ws();
            if parser.pos < parser.s.len() {
                return Err(parser.err("Extra data"));
            }
            return Err(JsonError {
                offset: 0,
                message: format!("the line is a JSON {kind}, not an object"),
            });
        }
    }
    parser.ws();
    if parser.pos < parser.s.len() {
        return Err(parser.err("Extra data"));
    }
    Ok(fields)
}

struct Parser<'a> {
    s: &'a [u8],
    src: &'a str,
    pos: usize,
}

/// The kind of value a string scan should produce.
enum Want {
    Skip,
    Keep,
}

impl<'a> Parser<'a> {
    fn err(&self, message: &str) -> JsonError {
        JsonError {
            offset: self.pos,
            message: message.to_owned(),
        }
    }

    fn err_at(&self, offset: usize, message: &str) -> JsonError {
        JsonError {
            offset,
            message: message.to_owned(),
        }
    }

    #[inline]
    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    #[inline]
    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    fn top_object(&mut self, keys: &[String], fields: &mut [Field<'a>]) -> PResult<()> {
        self.pos += 1; // '{'
        self.ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(());
        }
        loop {
            if self.peek() != Some(b'"') {
                return Err(self.err("Expecting property name enclosed in double quotes"));
            }
            let key = self.string(Want::Keep, true)?.expect("kept");
            self.ws();
            if self.peek() != Some(b':') {
                return Err(self.err("Expecting ':' delimiter"));
            }
            self.pos += 1;
            self.ws();
            match keys.iter().position(|k| *k == key) {
                Some(index) => fields[index] = self.field()?,
                None => {
                    self.value(1)?;
                }
            }
            self.ws();
            match self.peek() {
                Some(b',') => {
                    self.pos += 1;
                    self.ws();
                }
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(());
                }
                _ => return Err(self.err("Expecting ',' delimiter")),
            }
        }
    }

    /// A selected field: strings and lists of strings are kept.
    fn field(&mut self) -> PResult<Field<'a>> {
        match self.peek() {
            Some(b'"') => Ok(Field::Text(self.string(Want::Keep, false)?.expect("kept"))),
            Some(b'[') => {
                let start = self.pos;
                self.pos += 1;
                self.ws();
                let mut items = Vec::new();
                let mut all_strings = true;
                if self.peek() == Some(b']') {
                    self.pos += 1;
                    return Ok(Field::List(items));
                }
                loop {
                    if all_strings && self.peek() == Some(b'"') {
                        items.push(self.string(Want::Keep, false)?.expect("kept"));
                    } else {
                        all_strings = false;
                        self.value(2)?;
                    }
                    self.ws();
                    match self.peek() {
                        Some(b',') => {
                            self.pos += 1;
                            self.ws();
                        }
                        Some(b']') => {
                            self.pos += 1;
                            break;
                        }
                        _ => return Err(self.err("Expecting ',' delimiter")),
                    }
                }
                let _ = start;
                Ok(if all_strings {
                    Field::List(items)
                } else {
                    Field::Other("list with non-string items")
                })
            }
            _ => Ok(Field::Other(self.value(1)?)),
        }
    }

    /// Validates one value and returns its JSON type name.
    fn value(&mut self, depth: usize) -> PResult<&'static str> {
        /// The bare words Python's decoder takes, with the type name each reports.
        const LITERALS: [(&[u8], &str); 6] = [
            (b"null", "null"),
            (b"true", "boolean"),
            (b"false", "boolean"),
            (b"NaN", "number"),
            (b"Infinity", "number"),
            (b"-Infinity", "number"),
        ];
        if depth > MAX_DEPTH {
            return Err(self.err("maximum recursion depth exceeded while decoding a JSON value"));
        }
        match self.peek() {
            Some(b'"') => {
                self.string(Want::Skip, true)?;
                Ok("string")
            }
            Some(b'{') => {
                self.pos += 1;
                self.ws();
                if self.peek() == Some(b'}') {
                    self.pos += 1;
                    return Ok("object");
                }
                loop {
                    if self.peek() != Some(b'"') {
                        return Err(self.err("Expecting property name enclosed in double quotes"));
                    }
                    self.string(Want::Skip, true)?;
                    self.ws();
                    if self.peek() != Some(b':') {
                        return Err(self.err("Expecting ':' delimiter"));
                    }
                    self.pos += 1;
                    self.ws();
                    self.value(depth + 1)?;
                    self.ws();
                    match self.peek() {
                        Some(b',') => {
                            self.pos += 1;
                            self.ws();
                        }
                        Some(b'}') => {
                            self.pos += 1;
                            return Ok("object");
                        }
                        _ => return Err(self.err("Expecting ',' delimiter")),
                    }
                }
            }
            Some(b'[') => {
                self.pos += 1;
                self.ws();
                if self.peek() == Some(b']') {
                    self.pos += 1;
                    return Ok("list");
                }
                loop {
                    self.value(depth + 1)?;
                    self.ws();
                    match self.peek() {
                        Some(b',') => {
                            self.pos += 1;
                            self.ws();
                        }
                        Some(b']') => {
                            self.pos += 1;
                            return Ok("list");
                        }
                        _ => return Err(self.err("Expecting ',' delimiter")),
                    }
                }
            }
            _ => {
                // Strings, objects and lists (nearly every value) never get here.
                let rest = &self.s[self.pos..];
                if let Some((literal, kind)) =
                    LITERALS.iter().find(|(word, _)| rest.starts_with(word))
                {
                    self.pos += literal.len();
                    Ok(kind)
                } else if matches!(self.peek(), Some(b'-' | b'0'..=b'9')) {
                    self.number()
                } else {
                    Err(self.err("Expecting value"))
                }
            }
        }
    }

    /// Python's NUMBER_RE: `(-?(?:0|[1-9]\d*))(\.\d+)?([eE][-+]?\d+)?`.
    fn number(&mut self) -> PResult<&'static str> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => {
                while let Some(b'0'..=b'9') = self.peek() {
                    self.pos += 1;
                }
            }
            _ => return Err(self.err_at(start, "Expecting value")),
        }
        if self.peek() == Some(b'.') && matches!(self.s.get(self.pos + 1), Some(b'0'..=b'9')) {
            self.pos += 1;
            while let Some(b'0'..=b'9') = self.peek() {
                self.pos += 1;
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            let mut p = self.pos + 1;
            if let Some(b'+' | b'-') = self.s.get(p) {
                p += 1;
            }
            if matches!(self.s.get(p), Some(b'0'..=b'9')) {
                self.pos = p;
                while let Some(b'0'..=b'9') = self.peek() {
                    self.pos += 1;
                }
            }
        }
        Ok("number")
    }

    /// Scans a string starting at its opening quote. With `Want::Keep`, returns the decoded text
    /// (borrowed when it has no escape). A lone surrogate is allowed only when `lone_ok`.
    fn string(&mut self, want: Want, lone_ok: bool) -> PResult<Option<Cow<'a, str>>> {
        let quote = self.pos;
        self.pos += 1;
        let content_start = self.pos;
        let mut owned: Option<String> = None;
        let mut chunk_start = self.pos;
        loop {
            // Fast scan to the next quote, backslash or control character.
            let stop = find_string_stop(&self.s[self.pos..]);
            let Some(stop) = stop else {
                return Err(self.err_at(quote, "Unterminated string starting at"));
            };
            self.pos += stop;
            match self.s[self.pos] {
                b'"' => {
                    let end = self.pos;
                    self.pos += 1;
                    return Ok(match want {
                        Want::Skip => None,
                        Want::Keep => Some(match owned {
                            None => Cow::Borrowed(&self.src[content_start..end]),
                            Some(mut text) => {
                                text.push_str(&self.src[chunk_start..end]);
                                Cow::Owned(text)
                            }
                        }),
                    });
                }
                b'\\' => {
                    let backslash = self.pos;
                    let text = owned.get_or_insert_with(String::new);
                    text.push_str(&self.src[chunk_start..backslash]);
                    let Some(&esc) = self.s.get(self.pos + 1) else {
                        return Err(self.err_at(quote, "Unterminated string starting at"));
                    };
                    self.pos += 2;
                    match esc {
                        b'"' => text.push('"'),
                        b'\\' => text.push('\\'),
                        b'/' => text.push('/'),
                        b'b' => text.push('\u{8}'),
                        b'f' => text.push('\u{c}'),
                        b'n' => text.push('\n'),
                        b'r' => text.push('\r'),
                        b't' => text.push('\t'),
                        b'u' => {
                            let unit = self.hex4(backslash)?;
                            let ch = if (0xD800..0xDC00).contains(&unit) {
                                // A high surrogate: combine with a following low one if present.
                                let low = if self.s.get(self.pos) == Some(&b'\\')
                                    && self.s.get(self.pos + 1) == Some(&b'u')
                                {
                                    let save = self.pos;
                                    self.pos += 2;
                                    let low = self.hex4(save)?;
                                    if (0xDC00..0xE000).contains(&low) {
                                        Some(low)
                                    } else {
                                        self.pos = save;
                                        None
                                    }
                                } else {
                                    None
                                };
                                match low {
                                    Some(low) => char::from_u32(
                                        0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00),
                                    ),
                                    None => None,
                                }
                            } else {
                                char::from_u32(unit)
                            };
                            match ch {
                                Some(ch) => text.push(ch),
                                None if lone_ok => text.push('\u{fffd}'),
                                None => {
                                    return Err(self.err_at(
                                        backslash,
                                        &format!(
                                            "lone surrogate \\u{unit:04x} in a tokenized field; Python's tokenizer cannot encode it either"
                                        ),
                                    ));
                                }
                            }
                        }
                        _ => return Err(self.err_at(backslash, "Invalid \\escape")),
                    }
                    chunk_start = self.pos;
                }
                _ => return Err(self.err("Invalid control character at")),
            }
        }
    }

    fn hex4(&mut self, backslash: usize) -> PResult<u32> {
        let digits = self
            .s
            .get(self.pos..self.pos + 4)
            .filter(|d| d.iter().all(u8::is_ascii_hexdigit));
        let Some(digits) = digits else {
            return Err(self.err_at(backslash + 1, "Invalid \\uXXXX escape"));
        };
        let value = u32::from_str_radix(std::str::from_utf8(digits).expect("ascii"), 16)
            .expect("hex digits");
        self.pos += 4;
        Ok(value)
    }
}

/// The first `"`, `\\` or control character (below 0x20) of `bytes`, eight bytes at a time.
///
/// For each test the lowest flagged byte of a word is a true match (a borrow only flags bytes
/// above a true match), so the lowest flagged byte over all three tests is the first stop.
#[inline]
fn find_string_stop(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let mut chunks = bytes.chunks_exact(8);
    let mut at = 0;
    for chunk in &mut chunks {
        let word = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
        let quote = word ^ (ONES * u64::from(b'"'));
        let backslash = word ^ (ONES * u64::from(b'\\'));
        let found = (quote.wrapping_sub(ONES) & !quote
            | backslash.wrapping_sub(ONES) & !backslash
            | word.wrapping_sub(ONES * 0x20) & !word)
            & HIGHS;
        if found != 0 {
            return Some(at + (found.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
        .map(|i| at + i)
}
