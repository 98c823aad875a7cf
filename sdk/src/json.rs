//! A small JSON deserializer for serde, built for plugin configurations.
//!
//! It reads RFC 8259 JSON into any `Deserialize` type, owned strings included, and reports the
//! first problem as a readable message. It is a few kilobytes of code where `serde_json` is tens
//! (see the README's "Size" section). Nesting deeper than 64 levels is an error, not a stack
//! overflow. Floating-point numbers are parsed by `core` only when a value needs one.
//!
//! ```
//! #[derive(serde::Deserialize)]
//! struct Config { name: String, retries: u8 }
//!
//! let config: Config = filterkit::json::from_slice(br#"{"name":"a\u00e9","retries":3}"#).unwrap();
//! assert_eq!((config.name.as_str(), config.retries), ("aé", 3));
//! let error = filterkit::json::from_slice::<Config>(br#"{"name":"a"}"#).err().unwrap();
//! assert_eq!(error.to_string(), "missing field `retries`");
//! ```

use alloc::borrow::ToOwned;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use crate::text::push_decimal;
use serde::de::{self, DeserializeSeed, Expected, IntoDeserializer, Unexpected, Visitor};

const MAX_DEPTH: u32 = 64;

/// Why some bytes could not be read as the requested type.
///
/// ```
/// let error = filterkit::json::from_slice::<Vec<u32>>(b"[1,").err().unwrap();
/// assert_eq!(error.to_string(), "not valid JSON: unexpected end of input at byte 3");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    message: String,
}

impl Error {
    fn at(message: &str, offset: usize) -> Error {
        let mut text = String::with_capacity(message.len() + 32);
        text.push_str("not valid JSON: ");
        text.push_str(message);
        text.push_str(" at byte ");
        push_decimal(&mut text, offset as u64);
        Error { message: text }
    }

    /// The message, e.g. ``missing field `name` ``.
    ///
    /// ```
    /// let error = filterkit::json::from_slice::<bool>(b"1").err().unwrap();
    /// assert_eq!(error.message(), "invalid type: integer `1`, expected a boolean");
    /// ```
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl core::error::Error for Error {}

impl de::Error for Error {
    fn custom<T: fmt::Display>(message: T) -> Error {
        Error {
            message: message.to_string(),
        }
    }

    // The two overrides below spell the messages as serde does, but without `Unexpected`'s
    // `Display`, which would bring float formatting and Unicode tables into every module.
    fn invalid_type(unexpected: Unexpected<'_>, expected: &dyn Expected) -> Error {
        Error::mismatch("invalid type: ", unexpected, expected)
    }

    fn invalid_value(unexpected: Unexpected<'_>, expected: &dyn Expected) -> Error {
        Error::mismatch("invalid value: ", unexpected, expected)
    }

    fn invalid_length(len: usize, expected: &dyn Expected) -> Error {
        let mut message = String::from("invalid length ");
        push_decimal(&mut message, len as u64);
        message.push_str(", expected ");
        let _ = fmt::write(&mut message, format_args!("{expected}"));
        Error { message }
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Error {
        Error::one_of("unknown variant `", variant, ", expected ", expected)
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Error {
        Error::one_of("unknown field `", field, ", expected ", expected)
    }

    fn missing_field(field: &'static str) -> Error {
        Error::one_of("missing field `", field, "", &[])
    }

    fn duplicate_field(field: &'static str) -> Error {
        Error::one_of("duplicate field `", field, "", &[])
    }
}

impl Error {
    /// serde's wording for an unknown name, without `core::fmt`.
    fn one_of(prefix: &str, name: &str, middle: &str, expected: &[&str]) -> Error {
        let mut message = String::from(prefix);
        message.push_str(name);
        message.push('`');
        if middle.is_empty() {
            return Error { message };
        }
        if expected.is_empty() {
            message.push_str(", there are no fields");
            return Error { message };
        }
        message.push_str(middle);
        if expected.len() > 2 {
            message.push_str("one of ");
        }
        for (idx, known) in expected.iter().enumerate() {
            if idx > 0 {
                message.push_str(if expected.len() == 2 { " or " } else { ", " });
            }
            message.push('`');
            message.push_str(known);
            message.push('`');
        }
        Error { message }
    }

    #[inline(never)]
    fn mismatch(prefix: &str, unexpected: Unexpected<'_>, expected: &dyn Expected) -> Error {
        let mut message = String::from(prefix);
        push_unexpected(&mut message, unexpected);
        message.push_str(", expected ");
        let _ = fmt::write(&mut message, format_args!("{expected}"));
        Error { message }
    }
}

/// Appends serde's words for what was found: its kind, and the value where serde shows one.
#[inline(never)]
fn push_unexpected(message: &mut String, unexpected: Unexpected<'_>) {
    match unexpected {
        Unexpected::Bool(true) => message.push_str("boolean `true`"),
        Unexpected::Bool(false) => message.push_str("boolean `false`"),
        Unexpected::Unsigned(value) => {
            message.push_str("integer ");
            message.push_str(&backticked(value, false));
        }
        Unexpected::Signed(value) => {
            message.push_str("integer ");
            message.push_str(&backticked(value.unsigned_abs(), value < 0));
        }
        Unexpected::Char(c) => {
            message.push_str("character ");
            message.push_str(&crate::text::quote(c.encode_utf8(&mut [0; 4])));
        }
        Unexpected::Str(text) => {
            message.push_str("string ");
            message.push_str(&crate::text::quote(text));
        }
        other => message.push_str(kind(other)),
    }
}

/// serde's name for a kind of value shown without its value (`push_unexpected` spells out the
/// others itself; their arms here only keep the match exhaustive).
#[inline(never)]
fn kind(unexpected: Unexpected<'_>) -> &str {
    match unexpected {
        Unexpected::Bool(_) => "boolean",
        Unexpected::Unsigned(_) | Unexpected::Signed(_) => "integer",
        Unexpected::Float(_) => "floating point number",
        Unexpected::Char(_) => "character",
        Unexpected::Str(_) => "string",
        Unexpected::Bytes(_) => "byte array",
        Unexpected::Unit => "null",
        Unexpected::Option => "option",
        Unexpected::NewtypeStruct => "newtype struct",
        Unexpected::Seq => "sequence",
        Unexpected::Map => "map",
        Unexpected::Enum => "enum",
        Unexpected::UnitVariant => "unit variant",
        Unexpected::NewtypeVariant => "newtype variant",
        Unexpected::TupleVariant => "tuple variant",
        Unexpected::StructVariant => "struct variant",
        Unexpected::Other(other) => other,
    }
}

fn backticked(value: u64, negative: bool) -> String {
    let mut text = String::from("`");
    if negative {
        text.push('-');
    }
    push_decimal(&mut text, value);
    text.push('`');
    text
}

/// The integer `digits` spell (with a minus sign before them if `negative`), if it fits 64
/// bits; `-0` is the float -0.0, as serde_json reads it, not the integer 0.
#[inline(never)]
fn integer_value(digits: &[u8], negative: bool) -> Option<Number> {
    let mut value: u64 = 0;
    for digit in digits {
        value = value
            .checked_mul(10)?
            .checked_add(u64::from(digit.wrapping_sub(b'0')))?;
    }
    if !negative {
        Some(Number::Unsigned(value))
    } else if value != 0 && value <= 1 << 63 {
        Some(Number::Signed((value as i64).wrapping_neg()))
    } else {
        None
    }
}

/// A string's text once its closing quote is reached: `chunk` is what follows the last escape,
/// `owned` what came before it (`None` without escapes). `start` is where the text began.
#[inline(never)]
fn finish_string(chunk: &[u8], owned: Option<Vec<u8>>, start: usize) -> Result<Text<'_>, Error> {
    match owned {
        None => core::str::from_utf8(chunk)
            .map(Text::Borrowed)
            .map_err(|_| Error::at("invalid UTF-8 in string", start)),
        Some(mut bytes) => {
            bytes.extend_from_slice(chunk);
            String::from_utf8(bytes)
                .map(Text::Owned)
                .map_err(|_| Error::at("invalid UTF-8 in string", start))
        }
    }
}

#[inline(never)]
fn push_char(bytes: &mut Vec<u8>, decoded: char) {
    let mut utf8 = [0; 4];
    bytes.extend_from_slice(decoded.encode_utf8(&mut utf8).as_bytes());
}

/// Reads one JSON value from `bytes` (surrounding whitespace allowed, nothing else after it).
///
/// ```
/// let pairs: Vec<(String, u32)> = filterkit::json::from_slice(br#" [["a", 1]] "#).unwrap();
/// assert_eq!(pairs, [("a".to_string(), 1)]);
/// ```
pub fn from_slice<'de, T: de::Deserialize<'de>>(bytes: &'de [u8]) -> Result<T, Error> {
    let mut parser = Parser {
        input: bytes,
        pos: 0,
        depth: 0,
    };
    let value = T::deserialize(&mut parser)?;
    parser.skip_whitespace();
    if parser.pos < bytes.len() {
        return Err(Error::at("trailing characters", parser.pos));
    }
    Ok(value)
}

struct Parser<'de> {
    input: &'de [u8],
    pos: usize,
    depth: u32,
}

enum Number {
    Unsigned(u64),
    Signed(i64),
    Float(f64),
}

enum Text<'de> {
    Borrowed(&'de str),
    Owned(String),
}

impl<'de> Parser<'de> {
    /// The input from the cursor on (checked slicing: a parser bug must not become a trap).
    fn rest(&self) -> &'de [u8] {
        self.input.get(self.pos..).unwrap_or_default()
    }

    /// The input from `start` to the cursor.
    fn slice(&self, start: usize) -> &'de [u8] {
        self.input.get(start..self.pos).unwrap_or_default()
    }

    fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.input.get(self.pos) {
            self.pos += 1;
        }
    }

    fn peek(&mut self) -> Result<u8, Error> {
        self.skip_whitespace();
        self.input
            .get(self.pos)
            .copied()
            .ok_or_else(|| Error::at("unexpected end of input", self.pos))
    }

    fn expect_literal(&mut self, literal: &[u8]) -> Result<(), Error> {
        if self.rest().starts_with(literal) {
            self.pos += literal.len();
            Ok(())
        } else {
            Err(Error::at("expected value", self.pos))
        }
    }

    fn enter(&mut self) -> Result<(), Error> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(Error::at("nesting too deep", self.pos));
        }
        self.pos += 1;
        Ok(())
    }

    fn parse_number(&mut self) -> Result<Number, Error> {
        let start = self.pos;
        if let Some(number) = self.scan_number()? {
            return Ok(number);
        }
        // Only here does `core`'s float parser end up in the module.
        let text = core::str::from_utf8(self.slice(start))
            .map_err(|_| Error::at("invalid number", start))?;
        match text.parse::<f64>() {
            // As serde_json: a number beyond f64's range is an error, not an infinity.
            Ok(value) if value.is_finite() => Ok(Number::Float(value)),
            Ok(_) => Err(Error::at("number out of range", start)),
            Err(_) => Err(Error::at("invalid number", start)),
        }
    }

    /// Moves past a number; returns it if it is an integer that fits 64 bits, else `None`.
    fn scan_number(&mut self) -> Result<Option<Number>, Error> {
        let start = self.pos;
        let negative = self.input.get(self.pos) == Some(&b'-');
        if negative {
            self.pos += 1;
        }
        let digits_start = self.pos;
        self.skip_digits();
        let digits = self.slice(digits_start);
        if digits.is_empty() || (digits.len() > 1 && digits.first() == Some(&b'0')) {
            return Err(Error::at("invalid number", start));
        }
        if self.scan_fraction_and_exponent(start)? {
            return Ok(None);
        }
        Ok(integer_value(digits, negative))
    }

    /// Moves past a number's fraction and exponent, if any; whether there was either.
    #[inline(never)]
    fn scan_fraction_and_exponent(&mut self, start: usize) -> Result<bool, Error> {
        let mut is_float = false;
        if self.input.get(self.pos) == Some(&b'.') {
            is_float = true;
            self.pos += 1;
            if !self.skip_digits() {
                return Err(Error::at("invalid number", start));
            }
        }
        if let Some(b'e' | b'E') = self.input.get(self.pos) {
            is_float = true;
            self.pos += 1;
            if let Some(b'+' | b'-') = self.input.get(self.pos) {
                self.pos += 1;
            }
            if !self.skip_digits() {
                return Err(Error::at("invalid number", start));
            }
        }
        Ok(is_float)
    }

    /// Moves past ASCII digits; whether there was at least one.
    fn skip_digits(&mut self) -> bool {
        let first = self.pos;
        while let Some(b'0'..=b'9') = self.input.get(self.pos) {
            self.pos += 1;
        }
        self.pos > first
    }

    fn parse_hex4(&mut self) -> Result<u32, Error> {
        let mut value = 0;
        for _ in 0..4 {
            let digit = match self.input.get(self.pos) {
                Some(c @ b'0'..=b'9') => c - b'0',
                Some(c @ b'a'..=b'f') => c - b'a' + 10,
                Some(c @ b'A'..=b'F') => c - b'A' + 10,
                _ => return Err(Error::at("invalid \\u escape", self.pos)),
            };
            value = value * 16 + u32::from(digit);
            self.pos += 1;
        }
        Ok(value)
    }

    /// Parses a string; the cursor is on the opening quote.
    ///
    /// Split into small functions on purpose: V8's optimising compiler needs memory that grows
    /// faster than a function's size, and Envoy keeps what it took (docs/benchmarks.md, "The
    /// floor"). `#[inline(never)]` keeps LLVM from merging them back.
    fn parse_string(&mut self) -> Result<Text<'de>, Error> {
        self.pos += 1;
        let start = self.pos;
        let mut owned: Option<Vec<u8>> = None;
        let mut chunk_start = start;
        loop {
            let Some(&byte) = self.input.get(self.pos) else {
                return Err(Error::at("unterminated string", start - 1));
            };
            match byte {
                b'"' => {
                    let chunk = self.slice(chunk_start);
                    self.pos += 1;
                    return finish_string(chunk, owned, start);
                }
                b'\\' => {
                    let bytes = owned.get_or_insert_with(Vec::new);
                    bytes.extend_from_slice(self.slice(chunk_start));
                    let decoded = self.parse_escape()?;
                    push_char(bytes, decoded);
                    chunk_start = self.pos;
                }
                0..=0x1F => return Err(Error::at("control character in string", self.pos)),
                _ => self.pos += 1,
            }
        }
    }

    /// Decodes the escape under the cursor (on its backslash) and moves past it.
    #[inline(never)]
    fn parse_escape(&mut self) -> Result<char, Error> {
        self.pos += 1;
        let escape = self.input.get(self.pos).copied();
        self.pos += 1;
        Ok(match escape {
            Some(b'"') => '"',
            Some(b'\\') => '\\',
            Some(b'/') => '/',
            Some(b'b') => '\u{8}',
            Some(b'f') => '\u{c}',
            Some(b'n') => '\n',
            Some(b'r') => '\r',
            Some(b't') => '\t',
            Some(b'u') => return self.parse_unicode_escape(),
            _ => return Err(Error::at("invalid escape", self.pos - 1)),
        })
    }

    /// The rest of a `\uXXXX` escape (the cursor after the `u`), with its low surrogate if it
    /// is a high one.
    #[inline(never)]
    fn parse_unicode_escape(&mut self) -> Result<char, Error> {
        let high = self.parse_hex4()?;
        let code = if (0xD800..0xDC00).contains(&high) {
            if !self.rest().starts_with(b"\\u") {
                return Err(Error::at("unpaired surrogate", self.pos));
            }
            self.pos += 2;
            let low = self.parse_hex4()?;
            if !(0xDC00..0xE000).contains(&low) {
                return Err(Error::at("unpaired surrogate", self.pos));
            }
            0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)
        } else {
            high
        };
        char::from_u32(code).ok_or_else(|| Error::at("unpaired surrogate", self.pos))
    }

    /// Skips one value of any type.
    fn skip_value(&mut self) -> Result<(), Error> {
        de::Deserializer::deserialize_ignored_any(self, de::IgnoredAny).map(|_| ())
    }

    /// Builds the "invalid type" error for the value under the cursor.
    fn invalid_type(&mut self, expected: &dyn Expected) -> Error {
        let result = match self.peek() {
            Ok(b'"') => return self.invalid_string(expected),
            Ok(b'{') => Unexpected::Map,
            Ok(b'[') => Unexpected::Seq,
            // A literal is described only once it is whole: `nonsense` is not JSON, not `null`.
            Ok(b't') if self.rest().starts_with(b"true") => Unexpected::Bool(true),
            Ok(b'f') if self.rest().starts_with(b"false") => Unexpected::Bool(false),
            Ok(b'n') if self.rest().starts_with(b"null") => Unexpected::Unit,
            Ok(b'-' | b'0'..=b'9') => match self.unexpected_number() {
                Ok(unexpected) => unexpected,
                Err(error) => return error,
            },
            Ok(_) => return Error::at("expected value", self.pos),
            Err(error) => return error,
        };
        de::Error::invalid_type(result, expected)
    }

    /// The "invalid type" error for the string under the cursor.
    #[inline(never)]
    fn invalid_string(&mut self, expected: &dyn Expected) -> Error {
        match self.parse_string() {
            Ok(Text::Borrowed(text)) => de::Error::invalid_type(Unexpected::Str(text), expected),
            Ok(Text::Owned(text)) => de::Error::invalid_type(Unexpected::Str(&text), expected),
            Err(error) => error,
        }
    }

    /// The number under the cursor, as an "invalid type" error describes it.
    #[inline(never)]
    fn unexpected_number(&mut self) -> Result<Unexpected<'static>, Error> {
        Ok(match self.scan_number()? {
            Some(Number::Unsigned(value)) => Unexpected::Unsigned(value),
            Some(Number::Signed(value)) => Unexpected::Signed(value),
            // Not parsed: describing it must not pull the float code into the module.
            _ => Unexpected::Other("floating point number"),
        })
    }

    fn after_element(&mut self, close: u8) -> Result<bool, Error> {
        match self.peek()? {
            b',' => {
                self.pos += 1;
                Ok(true)
            }
            c if c == close => Ok(false),
            _ => Err(Error::at(
                if close == b']' {
                    "expected `,` or `]`"
                } else {
                    "expected `,` or `}`"
                },
                self.pos,
            )),
        }
    }

    fn close(&mut self, close: u8) -> Result<(), Error> {
        if self.peek()? == close {
            self.pos += 1;
            self.depth = self.depth.saturating_sub(1);
            Ok(())
        } else {
            Err(Error::at(
                if close == b']' {
                    "expected `]`"
                } else {
                    "expected `}`"
                },
                self.pos,
            ))
        }
    }
}

impl<'de> de::Deserializer<'de> for &mut Parser<'de> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.peek()? {
            b'n' => {
                self.expect_literal(b"null")?;
                visitor.visit_unit()
            }
            b't' => {
                self.expect_literal(b"true")?;
                visitor.visit_bool(true)
            }
            b'f' => {
                self.expect_literal(b"false")?;
                visitor.visit_bool(false)
            }
            b'"' => match self.parse_string()? {
                Text::Borrowed(text) => visitor.visit_borrowed_str(text),
                Text::Owned(text) => visitor.visit_string(text),
            },
            b'-' | b'0'..=b'9' => match self.parse_number()? {
                Number::Unsigned(value) => visitor.visit_u64(value),
                Number::Signed(value) => visitor.visit_i64(value),
                Number::Float(value) => visitor.visit_f64(value),
            },
            b'[' => self.deserialize_seq(visitor),
            b'{' => self.deserialize_map(visitor),
            _ => Err(Error::at("expected value", self.pos)),
        }
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.peek()? {
            b't' => {
                self.expect_literal(b"true")?;
                visitor.visit_bool(true)
            }
            b'f' => {
                self.expect_literal(b"false")?;
                visitor.visit_bool(false)
            }
            _ => Err(self.invalid_type(&visitor)),
        }
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.peek()? {
            b'"' => match self.parse_string()? {
                Text::Borrowed(text) => visitor.visit_borrowed_str(text),
                Text::Owned(text) => visitor.visit_string(text),
            },
            _ => Err(self.invalid_type(&visitor)),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        if self.peek()? == b'n' {
            self.expect_literal(b"null")?;
            visitor.visit_none()
        } else {
            visitor.visit_some(self)
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.peek()? {
            b'n' => {
                self.expect_literal(b"null")?;
                visitor.visit_unit()
            }
            _ => Err(self.invalid_type(&visitor)),
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        if self.peek()? != b'[' {
            return Err(self.invalid_type(&visitor));
        }
        self.enter()?;
        let value = visitor.visit_seq(Elements {
            parser: &mut *self,
            first: true,
        })?;
        self.close(b']')?;
        Ok(value)
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        if self.peek()? != b'{' {
            return Err(self.invalid_type(&visitor));
        }
        self.enter()?;
        let value = visitor.visit_map(Elements {
            parser: &mut *self,
            first: true,
        })?;
        self.close(b'}')?;
        Ok(value)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_map(visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match self.peek()? {
            b'"' => {
                let variant = match self.parse_string()? {
                    Text::Borrowed(text) => text.to_owned(),
                    Text::Owned(text) => text,
                };
                visitor.visit_enum(variant.into_deserializer())
            }
            b'{' => {
                self.enter()?;
                let value = visitor.visit_enum(Variant { parser: &mut *self })?;
                self.close(b'}')?;
                Ok(value)
            }
            _ => Err(self.invalid_type(&visitor)),
        }
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.peek()? {
            b'[' => {
                self.enter()?;
                if self.peek()? != b']' {
                    loop {
                        self.skip_value()?;
                        if !self.after_element(b']')? {
                            break;
                        }
                    }
                }
                self.close(b']')?;
            }
            b'{' => {
                self.enter()?;
                if self.peek()? != b'}' {
                    loop {
                        if self.peek()? != b'"' {
                            return Err(Error::at("expected string key", self.pos));
                        }
                        self.parse_string()?;
                        self.expect_colon()?;
                        self.skip_value()?;
                        if !self.after_element(b'}')? {
                            break;
                        }
                    }
                }
                self.close(b'}')?;
            }
            b'"' => {
                self.parse_string()?;
            }
            b'-' | b'0'..=b'9' => {
                self.scan_number()?;
            }
            b'n' => self.expect_literal(b"null")?,
            b't' => self.expect_literal(b"true")?,
            b'f' => self.expect_literal(b"false")?,
            _ => return Err(Error::at("expected value", self.pos)),
        }
        visitor.visit_unit()
    }

    fn deserialize_u64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_integer(visitor)
    }

    fn deserialize_u32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_integer(visitor)
    }

    fn deserialize_u16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_integer(visitor)
    }

    fn deserialize_u8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_integer(visitor)
    }

    fn deserialize_i64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_integer(visitor)
    }

    fn deserialize_i32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_integer(visitor)
    }

    fn deserialize_i16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_integer(visitor)
    }

    fn deserialize_i8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_integer(visitor)
    }

    serde::forward_to_deserialize_any! {
        i128 u128 f32 f64 char bytes byte_buf
    }
}

impl<'de> Parser<'de> {
    /// Integers without the float code: a fraction or exponent is an "invalid type" error.
    fn deserialize_integer<V: Visitor<'de>>(&mut self, visitor: V) -> Result<V::Value, Error> {
        if !matches!(self.peek()?, b'-' | b'0'..=b'9') {
            return Err(self.invalid_type(&visitor));
        }
        let start = self.pos;
        match self.scan_number()? {
            Some(Number::Unsigned(value)) => visitor.visit_u64(value),
            Some(Number::Signed(value)) => visitor.visit_i64(value),
            _ => {
                self.pos = start;
                Err(self.invalid_type(&visitor))
            }
        }
    }

    fn expect_colon(&mut self) -> Result<(), Error> {
        if self.peek()? == b':' {
            self.pos += 1;
            Ok(())
        } else {
            Err(Error::at("expected `:`", self.pos))
        }
    }
}

struct Elements<'a, 'de> {
    parser: &'a mut Parser<'de>,
    first: bool,
}

impl<'de> Elements<'_, 'de> {
    fn has_next(&mut self, close: u8) -> Result<bool, Error> {
        if self.first {
            self.first = false;
            Ok(self.parser.peek()? != close)
        } else {
            self.parser.after_element(close)
        }
    }
}

impl<'de> de::SeqAccess<'de> for Elements<'_, 'de> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        if !self.has_next(b']')? {
            return Ok(None);
        }
        seed.deserialize(&mut *self.parser).map(Some)
    }
}

impl<'de> de::MapAccess<'de> for Elements<'_, 'de> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        if !self.has_next(b'}')? {
            return Ok(None);
        }
        if self.parser.peek()? != b'"' {
            return Err(Error::at("expected string key", self.parser.pos));
        }
        seed.deserialize(MapKey {
            parser: &mut *self.parser,
        })
        .map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        self.parser.expect_colon()?;
        seed.deserialize(&mut *self.parser)
    }
}

/// A map key: a string, which a numeric key type reads as the number it spells (`{"404": …}`
/// into a `BTreeMap<u16, _>`), as serde_json does.
struct MapKey<'a, 'de> {
    parser: &'a mut Parser<'de>,
}

impl<'de> MapKey<'_, 'de> {
    /// The key's text read as a JSON number; integer types never reach the float parser.
    fn number<V: Visitor<'de>>(self, visitor: V, float: bool) -> Result<V::Value, Error> {
        let text = self.parser.parse_string()?;
        let text: &str = match &text {
            Text::Borrowed(text) => text,
            Text::Owned(text) => text,
        };
        let mut key = Parser {
            input: text.as_bytes(),
            pos: 0,
            depth: 0,
        };
        let number = if float {
            key.parse_number().ok()
        } else {
            key.scan_number().ok().flatten()
        };
        match number {
            Some(Number::Unsigned(value)) if key.pos == text.len() => visitor.visit_u64(value),
            Some(Number::Signed(value)) if key.pos == text.len() => visitor.visit_i64(value),
            Some(Number::Float(value)) if key.pos == text.len() => visitor.visit_f64(value),
            _ => Err(de::Error::invalid_type(Unexpected::Str(text), &visitor)),
        }
    }
}

/// Methods of [`MapKey`] that read the key as the parser reads any string.
macro_rules! forward_key_to_parser {
    ($($method:ident($($arg:ident: $ty:ty),*))*) => {
        $(
            fn $method<V: Visitor<'de>>(self, $($arg: $ty,)* visitor: V) -> Result<V::Value, Error> {
                self.parser.$method($($arg,)* visitor)
            }
        )*
    };
}

/// Methods of [`MapKey`] that read the key as a number.
macro_rules! key_as_number {
    ($float:expr => $($method:ident)*) => {
        $(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
                self.number(visitor, $float)
            }
        )*
    };
}

impl<'de> de::Deserializer<'de> for MapKey<'_, 'de> {
    type Error = Error;

    key_as_number! { false =>
        deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64
        deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64
    }

    key_as_number! { true => deserialize_f32 deserialize_f64 }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    forward_key_to_parser! {
        deserialize_any() deserialize_bool() deserialize_i128() deserialize_u128()
        deserialize_char() deserialize_str() deserialize_string() deserialize_bytes()
        deserialize_byte_buf() deserialize_option() deserialize_unit()
        deserialize_unit_struct(name: &'static str)
        deserialize_seq() deserialize_tuple(len: usize)
        deserialize_tuple_struct(name: &'static str, len: usize)
        deserialize_map()
        deserialize_struct(name: &'static str, fields: &'static [&'static str])
        deserialize_enum(name: &'static str, variants: &'static [&'static str])
        deserialize_identifier() deserialize_ignored_any()
    }
}

struct Variant<'a, 'de> {
    parser: &'a mut Parser<'de>,
}

impl<'de> de::EnumAccess<'de> for Variant<'_, 'de> {
    type Error = Error;
    type Variant = Self;

    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Self), Error> {
        if self.parser.peek()? != b'"' {
            return Err(Error::at("expected string key", self.parser.pos));
        }
        let variant = seed.deserialize(&mut *self.parser)?;
        self.parser.expect_colon()?;
        Ok((variant, self))
    }
}

impl<'de> de::VariantAccess<'de> for Variant<'_, 'de> {
    type Error = Error;

    fn unit_variant(self) -> Result<(), Error> {
        de::Deserialize::deserialize(&mut *self.parser)
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, Error> {
        seed.deserialize(&mut *self.parser)
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, Error> {
        de::Deserializer::deserialize_seq(&mut *self.parser, visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        de::Deserializer::deserialize_map(&mut *self.parser, visitor)
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use alloc::collections::BTreeMap;
    use alloc::format;
    use alloc::string::String;
    use alloc::vec::Vec;
    use serde::Deserialize;

    use super::from_slice;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code, reason = "fields are only read through Debug")]
    struct Sample {
        name: String,
        count: Option<i32>,
        ratio: Option<f64>,
        tags: Option<Vec<String>>,
        mode: Option<Mode>,
        extra: Option<BTreeMap<String, bool>>,
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code, reason = "fields are only read through Debug")]
    enum Mode {
        Fast,
        Limit(u8),
    }

    fn check(input: &str, expect: expect_test::Expect) {
        let actual = match from_slice::<Sample>(input.as_bytes()) {
            Ok(value) => format!("{value:?}"),
            Err(error) => format!("error: {error}"),
        };
        expect.assert_eq(&actual);
    }

    use expect_test::expect;

    #[test]
    fn reads_values() {
        check(
            r#"{"name":"a","count":-3,"ratio":1.5e1,"tags":["x","\ud83d\ude00\n"],"mode":"Fast","extra":{"k":true}}"#,
            expect![[
                r#"Sample { name: "a", count: Some(-3), ratio: Some(15.0), tags: Some(["x", "😀\n"]), mode: Some(Fast), extra: Some({"k": true}) }"#
            ]],
        );
        check(
            r#" { "name" : "" , "mode" : {"Limit": 7} } "#,
            expect![[
                r#"Sample { name: "", count: None, ratio: None, tags: None, mode: Some(Limit(7)), extra: None }"#
            ]],
        );
    }

    #[test]
    fn reports_problems() {
        check(r#"{}"#, expect!["error: missing field `name`"]);
        check(
            r#"{"name":1}"#,
            expect!["error: invalid type: integer `1`, expected a string"],
        );
        check(
            r#"{"name":"a","nme":1}"#,
            expect![
                "error: unknown field `nme`, expected one of `name`, `count`, `ratio`, `tags`, `mode`, `extra`"
            ],
        );
        check(
            r#"{"name":"a"} x"#,
            expect!["error: not valid JSON: trailing characters at byte 13"],
        );
        check(
            r#"{"name":"a""#,
            expect!["error: not valid JSON: unexpected end of input at byte 11"],
        );
        check(
            r#"{"name":"a\x"}"#,
            expect!["error: not valid JSON: invalid escape at byte 11"],
        );
        check(
            "{\"name\":\"a\u{1}\"}",
            expect!["error: not valid JSON: control character in string at byte 10"],
        );
        check(
            r#"{"name":"a","count":01}"#,
            expect!["error: not valid JSON: invalid number at byte 20"],
        );
        check(
            r#"{"name":"a","count":3000000000}"#,
            expect!["error: invalid value: integer `3000000000`, expected i32"],
        );
        check(
            r#"[1]"#,
            expect!["error: invalid type: sequence, expected struct Sample"],
        );
        check(
            "",
            expect!["error: not valid JSON: unexpected end of input at byte 0"],
        );
        check(
            r#"{"name":"\ud800"}"#,
            expect!["error: not valid JSON: unpaired surrogate at byte 15"],
        );
        check(
            &"[".repeat(100),
            expect!["error: invalid type: sequence, expected struct Sample"],
        );
    }

    #[test]
    fn limits_nesting() {
        let deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
        let error = from_slice::<serde::de::IgnoredAny>(deep.as_bytes()).unwrap_err();
        assert_eq!(
            error.message(),
            "not valid JSON: nesting too deep at byte 64"
        );
    }

    #[test]
    fn rejects_invalid_utf8() {
        let error = from_slice::<String>(b"\"\xff\"").unwrap_err();
        assert_eq!(
            error.message(),
            "not valid JSON: invalid UTF-8 in string at byte 1"
        );
    }
}
