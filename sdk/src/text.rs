//! Building messages without `core::fmt`: quoting, joining, decimals.

use alloc::string::String;

/// Quotes `text` for an error or log message: `"text"`, with `"`, `\\` and every character
/// outside printable ASCII escaped (`\n`, `\u{7f}`), so hostile input cannot forge log lines.
///
/// Cheaper than `format!("{text:?}")`, whose Unicode tables would add kilobytes to a module.
///
/// ```
/// assert_eq!(filterkit::quote("bad name"), r#""bad name""#);
/// assert_eq!(filterkit::quote("a\r\nb\u{e9}"), r#""a\r\nb\u{e9}""#);
/// ```
pub fn quote(text: &str) -> String {
    let mut quoted = String::with_capacity(text.len() + 2);
    quoted.push('"');
    let mut chars = text.chars();
    while let Some(c) = next_char(&mut chars) {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            '\n' => quoted.push_str("\\n"),
            '\r' => quoted.push_str("\\r"),
            '\t' => quoted.push_str("\\t"),
            ' '..='~' => quoted.push(c),
            _ => push_unicode_escape(&mut quoted, c),
        }
    }
    quoted.push('"');
    quoted
}

/// `chars.next()`, out of line: UTF-8 decoding inlined into every loop over a `str`'s characters
/// is most of such a loop's code, and V8 compiles a large function at a cost above its size.
#[inline(never)]
pub(crate) fn next_char(chars: &mut core::str::Chars<'_>) -> Option<char> {
    chars.next()
}

/// Appends `\u{…}` for `c`, in lowercase hex without leading zeros. Out of line: a small
/// function costs V8 less to compile than its share of a large one (docs/benchmarks.md).
#[inline(never)]
fn push_unicode_escape(quoted: &mut String, c: char) {
    quoted.push_str("\\u{");
    let code = u32::from(c);
    let mut started = false;
    for shift in (0..6).rev() {
        let digit = (code >> (shift * 4)) & 0xF;
        if digit != 0 || started || shift == 0 {
            started = true;
            quoted.push(char::from(b"0123456789abcdef"[digit as usize]));
        }
    }
    quoted.push('}');
}

/// Joins `parts` into one `String`: the cheap way to build a message.
///
/// `format!` is fine to use, but its padding and width code adds about 2 KB to a module that
/// otherwise does not need it; `join` is a loop of `push_str`.
///
/// ```
/// let name = "bad name";
/// let message = filterkit::join(&["header name ", &filterkit::quote(name), " is not a token"]);
/// assert_eq!(message, r#"header name "bad name" is not a token"#);
/// ```
pub fn join(parts: &[&str]) -> String {
    let mut joined = String::new();
    for part in parts {
        joined.push_str(part);
    }
    joined
}

/// Appends `value` in decimal without going through `core::fmt`.
pub(crate) fn push_decimal(text: &mut String, value: u64) {
    // Most significant digit first, by recursion (at most 20 levels): no buffer to index.
    if value >= 10 {
        push_decimal(text, value / 10);
    }
    text.push(char::from(b'0' + (value % 10) as u8));
}
