//! add-header: the seed's demo filter, on filterkit.
//!
//! On every response it adds `resp-header-demo: added by our filter` and, when the plugin
//! configuration names one, a configured header (`{"name":"hello","value":"hello details"}`;
//! the name is lowercased). Requests are untouched. An empty configuration adds only the demo
//! header; a bad one is rejected by `on_configure` with one error log line naming the problem.
#![no_std]
#![deny(unsafe_code)]

extern crate alloc;

use alloc::rc::Rc;
use alloc::string::String;
// The schemars derive calls `to_string` as if `std`'s prelude were there.
#[cfg(feature = "schema")]
use alloc::string::ToString;

use filterkit::{Action, HttpContext, RootContext, http, join, quote};
use serde::Deserialize;

/// The demo header every response gets.
pub const DEMO_HEADER: (&str, &str) = ("resp-header-demo", "added by our filter");

/// The configured header, as the plugin configuration spells it.
#[derive(Debug, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Header {
    /// Header name: an RFC 9110 token, sent lowercased.
    #[cfg_attr(
        feature = "schema",
        schemars(pattern(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$"))
    )]
    pub name: String,
    /// Header value: no control characters except horizontal tab.
    pub value: String,
}

/// The plugin configuration: one header to add to every response besides the demo one.
// Its JSON Schema (config.schema.json, `schema` feature, native builds only) is `Header`'s.
#[derive(Debug, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(from = "Header")]
pub struct Config {
    /// `None` when the configuration is empty.
    pub header: Option<Header>,
}

impl From<Header> for Config {
    fn from(header: Header) -> Config {
        Config {
            header: Some(Header {
                name: header.name.to_ascii_lowercase(),
                value: header.value,
            }),
        }
    }
}

/// RFC 9110 `tchar`.
fn is_token_char(byte: u8) -> bool {
    matches!(byte,
        b'0'..=b'9' | b'a'..=b'z' | b'A'..=b'Z'
        | b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+' | b'-' | b'.' | b'^' | b'_' | b'`' | b'|' | b'~')
}

impl filterkit::Config for Config {
    fn empty() -> Option<Config> {
        Some(Config { header: None })
    }

    fn validate(&self) -> Result<(), String> {
        let Some(header) = &self.header else {
            return Ok(());
        };
        if header.name.is_empty() || !header.name.bytes().all(is_token_char) {
            return Err(join(&[
                "header name ",
                &quote(&header.name),
                " is not a valid HTTP token",
            ]));
        }
        // `is_control` is Unicode's Cc: C0 controls (CR, LF, NUL…), DEL and C1 controls.
        if header.value.chars().any(|c| c.is_control() && c != '\t') {
            return Err(join(&[
                "header value ",
                &quote(&header.value),
                " contains a control character",
            ]));
        }
        Ok(())
    }
}

/// One per root_id: holds nothing itself, the SDK keeps its configuration.
#[derive(Default)]
pub struct AddHeaderRoot;

impl RootContext for AddHeaderRoot {
    type Config = Config;
    type Http = AddHeader;
    // Makes no callouts: their dispatch is compiled away.
    const CALLOUTS: bool = false;

    fn create_http_context(&mut self, _context_id: u32, config: Rc<Config>) -> AddHeader {
        AddHeader { config }
    }
}

/// One per HTTP stream.
pub struct AddHeader {
    config: Rc<Config>,
}

impl HttpContext for AddHeader {
    fn on_http_response_headers(&mut self, _n_headers: usize, _end_of_stream: bool) -> Action {
        let headers = http::response_headers();
        if let Err(error) = headers.add(DEMO_HEADER.0, DEMO_HEADER.1) {
            log::warn!("cannot add the demo header: {error}");
        }
        if let Some(header) = &self.config.header
            && let Err(error) = headers.add(&header.name, &header.value)
        {
            log::warn!("cannot add the configured header: {error}");
        }
        Action::Continue
    }
}

filterkit::export_filter!(AddHeaderRoot);
