//! json-guard: checks JSON request bodies before they reach the upstream, on filterkit.
//!
//! A request with a body is held (its headers too) while the body is buffered, up to
//! `max_body_bytes`: a larger body is answered `413` (as soon as `content-length` says so,
//! else when the buffered size passes the limit, so chunked bodies are caught too), a body
//! that is not JSON `400`. Configured fields are redacted (their value replaced by a string)
//! or removed, and the body goes on with `content-length` set to its final size.
//!
//! The plugin must be configured with `allow_on_headers_stop_iteration: true`: holding the
//! headers is what lets the upstream see the final `content-length` (and nothing at all of a
//! refused request). `max_body_bytes` may not exceed Envoy's buffer limit (the listener's
//! `per_connection_buffer_limit_bytes`, 1 MiB unless raised), which the configuration
//! states in `buffer_limit_bytes`: beyond it Envoy would answer 413 itself.
#![no_std]
#![deny(unsafe_code)]

extern crate alloc;

pub mod rewrite;

use alloc::format;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec::Vec;

use filterkit::{Action, HttpContext, RootContext, http, join, quote};
use serde::Deserialize;

use rewrite::Rules;

/// Envoy's default `per_connection_buffer_limit_bytes`, which the project's generated Envoy
/// configuration keeps.
pub const ENVOY_DEFAULT_BUFFER_LIMIT: u32 = 1024 * 1024;

/// The plugin configuration.
#[derive(Debug, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The largest body accepted, in bytes (at least 1, at most `buffer_limit_bytes`).
    pub max_body_bytes: u32,
    /// Envoy's buffer limit for this listener (`per_connection_buffer_limit_bytes`); default
    /// Envoy's 1 MiB. Raise it only together with the listener's.
    #[serde(default = "default_buffer_limit")]
    pub buffer_limit_bytes: u32,
    /// Fields whose value is replaced by `replacement`: dotted paths of member names from
    /// the root (`user.password`); arrays are transparent (`items.card`).
    #[serde(default)]
    pub redact: Vec<String>,
    /// Fields removed, as paths like `redact`'s.
    #[serde(default)]
    pub remove: Vec<String>,
    /// The string redacted values become; default `[redacted]`.
    #[serde(default = "default_replacement")]
    pub replacement: String,
}

fn default_buffer_limit() -> u32 {
    ENVOY_DEFAULT_BUFFER_LIMIT
}

fn default_replacement() -> String {
    String::from("[redacted]")
}

/// More paths than this is a configuration mistake (each member is compared with each).
const MAX_PATHS: usize = 64;

fn parse_path(path: &str) -> Result<Vec<String>, String> {
    let segments: Vec<String> = path.split('.').map(String::from).collect();
    if segments.iter().any(String::is_empty) {
        return Err(join(&[
            "field path ",
            &quote(path),
            " has an empty member name",
        ]));
    }
    Ok(segments)
}

impl Config {
    /// The rules the rewriter applies.
    pub fn rules(&self) -> Result<Rules, String> {
        let parse_all = |paths: &[String]| {
            paths
                .iter()
                .map(|path| parse_path(path))
                .collect::<Result<_, _>>()
        };
        Ok(Rules {
            redact: parse_all(&self.redact)?,
            remove: parse_all(&self.remove)?,
            replacement: self.replacement.clone(),
        })
    }
}

impl filterkit::Config for Config {
    fn validate(&self) -> Result<(), String> {
        if self.max_body_bytes == 0 {
            return Err(String::from("max_body_bytes must be at least 1"));
        }
        if self.max_body_bytes > self.buffer_limit_bytes {
            return Err(format!(
                "max_body_bytes {} is above Envoy's buffer limit {}: raise the listener's \
                 per_connection_buffer_limit_bytes and set buffer_limit_bytes to it",
                self.max_body_bytes, self.buffer_limit_bytes
            ));
        }
        if self.redact.len() + self.remove.len() > MAX_PATHS {
            return Err(format!("more than {MAX_PATHS} field paths"));
        }
        self.rules().map(|_| ())
    }
}

/// One per root_id: the parsed rules, shared by its streams.
#[derive(Default)]
pub struct JsonGuardRoot {
    rules: Option<Rc<Rules>>,
}

impl RootContext for JsonGuardRoot {
    type Config = Config;
    type Http = JsonGuard;
    // Makes no callouts: their dispatch is compiled away.
    const CALLOUTS: bool = false;

    fn on_configure(&mut self, config: &Rc<Config>) -> bool {
        // `validate` has parsed the paths already, so this cannot fail.
        self.rules = config.rules().ok().map(Rc::new);
        self.rules.is_some()
    }

    fn create_http_context(&mut self, _context_id: u32, config: Rc<Config>) -> JsonGuard {
        JsonGuard {
            max_body_bytes: config.max_body_bytes as usize,
            rules: self.rules.clone(),
            buffering: false,
        }
    }
}

/// One per HTTP stream.
pub struct JsonGuard {
    max_body_bytes: usize,
    rules: Option<Rc<Rules>>,
    /// The body is being buffered: the request is held until its end.
    buffering: bool,
}

/// Answers the request locally; the request stays held (the reply ends it).
fn refuse(status: u32, details: &str, body: &str) -> Action {
    if let Err(error) = http::LocalReply::new(status)
        .body(body.as_bytes())
        .details(details)
        .send()
    {
        log::warn!("cannot send the {status} reply: {error}");
    }
    Action::Pause
}

impl JsonGuard {
    fn too_large(&mut self) -> Action {
        self.buffering = false;
        let body = format!("request body larger than {} bytes\n", self.max_body_bytes);
        refuse(413, "json_guard_body_too_large", &body)
    }

    /// The whole body is buffered: check it, rewrite it, let it go with its length. When
    /// trailers follow, the body goes on without `content-length` instead (framed by chunked
    /// encoding upstream): Envoy drops the trailers of an HTTP/1.1 request it sends with a
    /// `content-length`.
    fn finish(&mut self, body_size: usize, trailers: bool) -> Action {
        self.buffering = false;
        let Some(rules) = self.rules.clone() else {
            return Action::Continue;
        };
        let buffer = http::request_body();
        let body = match buffer.read(0, body_size) {
            Ok(body) => body,
            Err(error) => {
                log::warn!("cannot read the request body: {error}");
                return refuse(500, "json_guard_body_unreadable", "cannot read the body\n");
            }
        };
        if body.is_empty() {
            return Action::Continue;
        }
        let length = match rewrite::rewrite(&body, &rules) {
            Err(invalid) => {
                let message = format!("invalid JSON: {} at byte {}\n", invalid.reason, invalid.at);
                return refuse(400, "json_guard_invalid_json", &message);
            }
            Ok(None) => body.len(),
            Ok(Some(rewritten)) => {
                if let Err(error) = buffer.replace(0, body.len(), &rewritten) {
                    // Never forward the original: it holds what had to be redacted.
                    log::warn!("cannot rewrite the request body: {error}");
                    return refuse(
                        500,
                        "json_guard_rewrite_failed",
                        "cannot rewrite the body\n",
                    );
                }
                rewritten.len()
            }
        };
        set_framing(trailers, length);
        Action::Continue
    }
}

/// `content-length: length`, or none when trailers follow (see `JsonGuard::finish`). Out of
/// line: V8 compiles a large function at a cost above its size (docs/benchmarks.md).
#[inline(never)]
fn set_framing(trailers: bool, length: usize) {
    let headers = http::request_headers();
    let framed = if trailers {
        headers.remove("content-length")
    } else {
        headers.set("content-length", format!("{length}"))
    };
    if let Err(error) = framed {
        log::warn!("cannot set content-length: {error}");
    }
}

impl HttpContext for JsonGuard {
    fn on_http_request_headers(&mut self, _n_headers: usize, end_of_stream: bool) -> Action {
        if end_of_stream {
            return Action::Continue;
        }
        let declared = http::request_headers()
            .get_str("content-length")
            .ok()
            .flatten()
            .and_then(|length| length.trim().parse::<u64>().ok());
        if declared.is_some_and(|length| length > self.max_body_bytes as u64) {
            return self.too_large();
        }
        self.buffering = true;
        Action::Pause
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if !self.buffering {
            return Action::Continue;
        }
        if body_size > self.max_body_bytes {
            return self.too_large();
        }
        if end_of_stream {
            self.finish(body_size, false)
        } else {
            Action::Pause
        }
    }

    fn on_http_request_trailers(&mut self, _n_trailers: usize) -> Action {
        if !self.buffering {
            return Action::Continue;
        }
        match http::request_body().len() {
            Ok(body_size) => self.finish(body_size, true),
            Err(error) => {
                log::warn!("cannot read the request body size: {error}");
                refuse(500, "json_guard_body_unreadable", "cannot read the body\n")
            }
        }
    }
}

filterkit::export_filter!(JsonGuardRoot);
