//! A small JSON checker and rewriter for untrusted bodies: one pass over the bytes that
//! validates the document (RFC 8259 grammar, UTF-8, nesting at most [`MAX_DEPTH`]) and writes
//! a compact copy with the configured fields redacted or removed.
//!
//! It never panics and never recurses deeper than [`MAX_DEPTH`], whatever the input (the
//! native tests compare it with serde_json on mutated documents). Numbers and strings are
//! copied as written (escapes kept), so nothing is lost by a round trip through floats.

use alloc::string::String;
use alloc::vec::Vec;

/// Objects and arrays nested deeper than this are refused: the checker recurses once per
/// level, and the filter's stack is small.
pub const MAX_DEPTH: usize = 64;

/// A field path: object member names from the root. Arrays are transparent: `items.card`
/// matches `card` in every object of the array `items`.
pub type Path = Vec<String>;

/// What to do with the fields at some paths.
#[derive(Debug, Default)]
pub struct Rules {
    /// Values replaced by `replacement` (written as a JSON string).
    pub redact: Vec<Path>,
    /// Members removed with their values.
    pub remove: Vec<Path>,
    /// The replacement text for redacted values.
    pub replacement: String,
}

/// Why a body is not JSON: what was expected, at which byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// What went wrong, e.g. `expected value`.
    pub reason: &'static str,
    /// The byte offset where it went wrong.
    pub at: usize,
}

/// The rewritten document, or `None` when no rule matched (the body can go on untouched).
#[inline(never)]
pub fn rewrite(input: &[u8], rules: &Rules) -> Result<Option<Vec<u8>>, Invalid> {
    if let Err(error) = core::str::from_utf8(input) {
        return Err(Invalid {
            reason: "not UTF-8",
            at: error.valid_up_to(),
        });
    }
    let mut rewriter = Rewriter {
        input,
        position: 0,
        output: Vec::with_capacity(input.len()),
        rules,
        path: Vec::new(),
        changed: false,
    };
    rewriter.skip_whitespace();
    rewriter.value(0)?;
    rewriter.skip_whitespace();
    if rewriter.position != input.len() {
        return rewriter.fail("trailing characters");
    }
    Ok(rewriter.changed.then_some(rewriter.output))
}

/// Writes `text` as a JSON string literal.
pub fn write_string(output: &mut Vec<u8>, text: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    output.push(b'"');
    for byte in text.bytes() {
        match byte {
            b'"' => output.extend_from_slice(b"\\\""),
            b'\\' => output.extend_from_slice(b"\\\\"),
            b'\n' => output.extend_from_slice(b"\\n"),
            b'\r' => output.extend_from_slice(b"\\r"),
            b'\t' => output.extend_from_slice(b"\\t"),
            0..=0x1f => output.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(byte >> 4)],
                HEX[usize::from(byte & 0xf)],
            ]),
            _ => output.push(byte),
        }
    }
    output.push(b'"');
}

enum Action {
    Keep,
    Redact,
    Remove,
}

struct Rewriter<'a> {
    input: &'a [u8],
    position: usize,
    output: Vec<u8>,
    rules: &'a Rules,
    /// The member names from the root to the value being read.
    path: Vec<String>,
    changed: bool,
}

impl Rewriter<'_> {
    fn fail<T>(&self, reason: &'static str) -> Result<T, Invalid> {
        Err(Invalid {
            reason,
            at: self.position,
        })
    }

    fn peek(&self) -> Option<u8> {
        self.input.get(self.position).copied()
    }

    fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.position += 1;
        }
    }

    fn expect_byte(&mut self, byte: u8, reason: &'static str) -> Result<(), Invalid> {
        if self.peek() == Some(byte) {
            self.position += 1;
            Ok(())
        } else {
            self.fail(reason)
        }
    }

    /// Reads one value at the current position and writes it; `depth` counts the objects and
    /// arrays around it.
    fn value(&mut self, depth: usize) -> Result<(), Invalid> {
        match self.peek() {
            Some(b'{') => self.object(depth + 1),
            Some(b'[') => self.array(depth + 1),
            Some(b'"') => {
                let start = self.position;
                self.string()?;
                self.output
                    .extend_from_slice(&self.input[start..self.position]);
                Ok(())
            }
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            Some(_) => self.fail("expected value"),
            None => self.fail("unexpected end of input"),
        }
    }

    #[inline(never)]
    fn literal(&mut self, word: &'static [u8]) -> Result<(), Invalid> {
        if self.input[self.position..].starts_with(word) {
            self.position += word.len();
            self.output.extend_from_slice(word);
            Ok(())
        } else {
            self.fail("expected value")
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.position;
        while let Some(b'0'..=b'9') = self.peek() {
            self.position += 1;
        }
        self.position - start
    }

    #[inline(never)]
    fn number(&mut self) -> Result<(), Invalid> {
        let start = self.position;
        if self.peek() == Some(b'-') {
            self.position += 1;
        }
        match self.peek() {
            Some(b'0') => self.position += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return self.fail("invalid number"),
        }
        if self.peek() == Some(b'.') {
            self.position += 1;
            if self.digits() == 0 {
                return self.fail("invalid number");
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.position += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.position += 1;
            }
            if self.digits() == 0 {
                return self.fail("invalid number");
            }
        }
        self.output
            .extend_from_slice(&self.input[start..self.position]);
        Ok(())
    }

    /// Checks a string literal (the input is known to be UTF-8) and moves past it.
    fn string(&mut self) -> Result<(), Invalid> {
        self.expect_byte(b'"', "expected string")?;
        loop {
            match self.peek() {
                None => return self.fail("unterminated string"),
                Some(b'"') => {
                    self.position += 1;
                    return Ok(());
                }
                Some(0..=0x1f) => return self.fail("control character in string"),
                Some(b'\\') => {
                    self.position += 1;
                    match self.peek() {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                            self.position += 1;
                        }
                        Some(b'u') => {
                            self.position += 1;
                            let code = self.hex4()?;
                            if (0xdc00..=0xdfff).contains(&code) {
                                return self.fail("lone surrogate in escape");
                            }
                            // A high surrogate must be followed by its low half (RFC 8259
                            // allows the syntax, but no UTF-8 text can hold it).
                            if (0xd800..=0xdbff).contains(&code) {
                                if !self.input[self.position..].starts_with(b"\\u") {
                                    return self.fail("lone surrogate in escape");
                                }
                                self.position += 2;
                                if !(0xdc00..=0xdfff).contains(&self.hex4()?) {
                                    return self.fail("lone surrogate in escape");
                                }
                            }
                        }
                        _ => return self.fail("invalid escape"),
                    }
                }
                Some(_) => self.position += 1,
            }
        }
    }

    /// Four hex digits of a `\u` escape.
    fn hex4(&mut self) -> Result<u32, Invalid> {
        let mut code = 0;
        for _ in 0..4 {
            let Some(digit) = self.peek().and_then(|byte| char::from(byte).to_digit(16)) else {
                return self.fail("invalid escape");
            };
            code = code * 16 + digit;
            self.position += 1;
        }
        Ok(code)
    }

    // Out of line (and `object`, `number`, `literal`): inlined into `value` they made one 2.5 KB
    // function, and V8 needs memory superlinear in a function's size to compile it
    // (docs/benchmarks.md, "The floor").
    #[inline(never)]
    fn array(&mut self, depth: usize) -> Result<(), Invalid> {
        if depth > MAX_DEPTH {
            return self.fail("nested too deeply");
        }
        self.position += 1;
        self.output.push(b'[');
        self.skip_whitespace();
        if self.peek() == Some(b']') {
            self.position += 1;
            self.output.push(b']');
            return Ok(());
        }
        loop {
            self.skip_whitespace();
            self.value(depth)?;
            self.skip_whitespace();
            match self.peek() {
                Some(b',') => {
                    self.position += 1;
                    self.output.push(b',');
                }
                Some(b']') => {
                    self.position += 1;
                    self.output.push(b']');
                    return Ok(());
                }
                _ => return self.fail("expected `,` or `]`"),
            }
        }
    }

    #[inline(never)]
    fn object(&mut self, depth: usize) -> Result<(), Invalid> {
        if depth > MAX_DEPTH {
            return self.fail("nested too deeply");
        }
        self.position += 1;
        self.output.push(b'{');
        self.skip_whitespace();
        if self.peek() == Some(b'}') {
            self.position += 1;
            self.output.push(b'}');
            return Ok(());
        }
        let mut written = 0;
        loop {
            self.skip_whitespace();
            let key_start = self.position;
            self.string()?;
            let key_raw = &self.input[key_start..self.position];
            self.skip_whitespace();
            self.expect_byte(b':', "expected `:`")?;
            self.skip_whitespace();
            self.path.push(decode_key(key_raw));
            let action = self.action();
            let member_start = self.output.len();
            if written > 0 {
                self.output.push(b',');
            }
            self.output.extend_from_slice(key_raw);
            self.output.push(b':');
            let value_start = self.output.len();
            let read = self.value(depth);
            self.path.pop();
            read?;
            match action {
                Action::Keep => written += 1,
                Action::Redact => {
                    self.output.truncate(value_start);
                    write_string(&mut self.output, &self.rules.replacement);
                    self.changed = true;
                    written += 1;
                }
                Action::Remove => {
                    self.output.truncate(member_start);
                    self.changed = true;
                }
            }
            self.skip_whitespace();
            match self.peek() {
                Some(b',') => self.position += 1,
                Some(b'}') => {
                    self.position += 1;
                    self.output.push(b'}');
                    return Ok(());
                }
                _ => return self.fail("expected `,` or `}`"),
            }
        }
    }

    /// What the rules say about the member at the current path (removal wins).
    fn action(&self) -> Action {
        let matches = |paths: &[Path]| paths.contains(&self.path);
        if matches(&self.rules.remove) {
            Action::Remove
        } else if matches(&self.rules.redact) {
            Action::Redact
        } else {
            Action::Keep
        }
    }
}

/// The member name a string literal (quotes included, already checked, so its surrogate
/// escapes come in pairs) stands for.
fn decode_key(raw: &[u8]) -> String {
    let inner = raw.get(1..raw.len().saturating_sub(1)).unwrap_or_default();
    let text = core::str::from_utf8(inner).unwrap_or_default();
    let mut key = String::new();
    let mut chars = text.chars();
    let hex4 = |chars: &mut core::str::Chars<'_>| {
        (0..4).fold(0, |code, _| {
            code * 16 + chars.next().and_then(|c| c.to_digit(16)).unwrap_or(0)
        })
    };
    while let Some(c) = chars.next() {
        if c != '\\' {
            key.push(c);
            continue;
        }
        let escaped = match chars.next() {
            Some('u') => {
                let mut code = hex4(&mut chars);
                if (0xd800..=0xdbff).contains(&code) {
                    // Skip the `\u` of the low half.
                    chars.next();
                    chars.next();
                    let low = hex4(&mut chars);
                    code = 0x10000 + ((code - 0xd800) << 10) + (low.wrapping_sub(0xdc00) & 0x3ff);
                }
                char::from_u32(code).unwrap_or('\u{fffd}')
            }
            Some('b') => '\u{8}',
            Some('f') => '\u{c}',
            Some('n') => '\n',
            Some('r') => '\r',
            Some('t') => '\t',
            Some(other) => other,
            None => break,
        };
        key.push(escaped);
    }
    key
}
