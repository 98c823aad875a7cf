//! ext-authz: asks an authorization service whether a request may go upstream.
//!
//! Before a request goes on, the filter sends a check to the service, over plain HTTP
//! (`proxy_http_call`, like Envoy's ext_authz `http_service`) or over gRPC
//! (`envoy.service.auth.v3.Authorization/Check`, the API OPA-Envoy and Authorino serve), and
//! holds the request, its body included, until the answer. An allow lets it go on with the
//! headers the service adds; a deny answers the client with the service's status (403 by
//! default), headers and body; a timeout, an unknown cluster or a transport error fails closed
//! (`status_on_error`) or open (`failure_mode_allow`), as configured.
//!
//! Start reading at [`Config`], then [`ExtAuthz::on_http_request_headers`]. The protobuf
//! messages are encoded and decoded by hand in `proto.rs` (a handful of fields, no codegen).
#![no_std]
#![deny(unsafe_code)]

extern crate alloc;

mod proto;

use alloc::rc::Rc;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::time::Duration;

use filterkit::http::{self, CallResponse, LocalReply};
use filterkit::metrics::Counter;
use filterkit::{Action, HttpContext, RootContext, grpc, join, quote};
use serde::Deserialize;

pub use proto::{CheckResponse, DecodeError, HeaderOption, HttpRequest};
pub use proto::{decode_check_response, encode_check_request};

/// The gRPC service and method of Envoy's external authorization API.
pub const GRPC_SERVICE: &str = "envoy.service.auth.v3.Authorization";
/// See [`GRPC_SERVICE`].
pub const GRPC_METHOD: &str = "Check";
/// The header `failure_mode_allow_header_add` puts on a request let through on a failure
/// (Envoy's ext_authz name).
pub const FAILURE_MODE_ALLOWED_HEADER: &str = "x-envoy-auth-failure-mode-allowed";

/// How the filter talks to the authorization service.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// A plain HTTP request: 200 allows, a 5xx is a failure, any other status denies.
    #[default]
    Http,
    /// `envoy.service.auth.v3.Authorization/Check` over gRPC.
    Grpc,
}

/// The plugin configuration. Only `cluster` is required.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The Envoy cluster of the authorization service (HTTP/2 for `grpc`).
    pub cluster: String,
    /// `http` (default) or `grpc`.
    #[serde(default)]
    pub mode: Mode,
    /// How long to wait for the answer, in milliseconds (default 200, as Envoy's ext_authz).
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u32,
    /// `http`: the check's `:authority` (default: the cluster name).
    #[serde(default)]
    pub authority: Option<String>,
    /// `http`: put before the request's path in the check's `:path` (default none).
    #[serde(default)]
    pub path_prefix: String,
    /// The request headers the check carries (default: all of them). Names are
    /// case-insensitive.
    #[serde(default)]
    pub headers_to_send: Option<Vec<String>>,
    /// `http`: the headers of an allowing answer copied onto the request that goes upstream.
    /// (In `grpc` mode the service's `ok_response` says which headers to set or remove.)
    #[serde(default)]
    pub headers_to_upstream: Vec<String>,
    /// On a failure (timeout, unknown cluster, transport error, an answer that does not
    /// decode) let the request through instead of answering `status_on_error`.
    #[serde(default)]
    pub failure_mode_allow: bool,
    /// With `failure_mode_allow`, mark such requests with
    /// `x-envoy-auth-failure-mode-allowed: true`.
    #[serde(default)]
    pub failure_mode_allow_header_add: bool,
    /// The status answered on a failure when failing closed (default 403, as Envoy).
    #[serde(default = "default_status")]
    pub status_on_error: u32,
    /// `grpc`: the status of a denial that names none (default 403).
    #[serde(default = "default_status")]
    pub status_on_deny: u32,
}

fn default_timeout_ms() -> u32 {
    200
}

fn default_status() -> u32 {
    403
}

/// The longest wait accepted: a check that takes longer is a misconfiguration.
pub const MAX_TIMEOUT_MS: u32 = 600_000;

/// RFC 9110 `tchar`.
fn is_token_char(byte: u8) -> bool {
    matches!(byte,
        b'0'..=b'9' | b'a'..=b'z' | b'A'..=b'Z'
        | b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+' | b'-' | b'.' | b'^' | b'_' | b'`' | b'|' | b'~')
}

fn has_control(text: &str) -> bool {
    text.chars().any(char::is_control)
}

fn decimal(value: u32) -> String {
    value.to_string()
}

fn check_header_names(field: &str, names: &[String]) -> Result<(), String> {
    for name in names {
        if name.is_empty() || !name.bytes().all(is_token_char) {
            return Err(join(&[
                field,
                ": header name ",
                &quote(name),
                " is not a valid HTTP token",
            ]));
        }
    }
    Ok(())
}

fn check_status(field: &str, status: u32) -> Result<(), String> {
    if (200..=599).contains(&status) {
        return Ok(());
    }
    Err(join(&[
        field,
        " ",
        &decimal(status),
        " is not an HTTP status from 200 to 599",
    ]))
}

impl filterkit::Config for Config {
    fn validate(&self) -> Result<(), String> {
        if self.cluster.is_empty() || has_control(&self.cluster) {
            return Err(join(&[
                "cluster ",
                &quote(&self.cluster),
                " is not a cluster name",
            ]));
        }
        if self.timeout_ms == 0 || self.timeout_ms > MAX_TIMEOUT_MS {
            return Err(join(&[
                "timeout_ms ",
                &decimal(self.timeout_ms),
                " is not from 1 to ",
                &decimal(MAX_TIMEOUT_MS),
            ]));
        }
        if let Some(authority) = &self.authority
            && (authority.is_empty() || has_control(authority) || authority.contains(' '))
        {
            return Err(join(&["authority ", &quote(authority), " is not a host"]));
        }
        let prefix = &self.path_prefix;
        if !prefix.is_empty()
            && (!prefix.starts_with('/') || has_control(prefix) || prefix.contains([' ', '?', '#']))
        {
            return Err(join(&[
                "path_prefix ",
                &quote(prefix),
                " must start with / and hold no space, ? or #",
            ]));
        }
        check_header_names(
            "headers_to_send",
            self.headers_to_send.as_deref().unwrap_or(&[]),
        )?;
        check_header_names("headers_to_upstream", &self.headers_to_upstream)?;
        check_status("status_on_error", self.status_on_error)?;
        check_status("status_on_deny", self.status_on_deny)?;
        if self.failure_mode_allow_header_add && !self.failure_mode_allow {
            return Err("failure_mode_allow_header_add needs failure_mode_allow".into());
        }
        if self.mode == Mode::Grpc {
            let http_only = [
                ("authority", self.authority.is_some()),
                ("path_prefix", !self.path_prefix.is_empty()),
                ("headers_to_upstream", !self.headers_to_upstream.is_empty()),
            ];
            if let Some((field, _)) = http_only.iter().find(|(_, set)| *set) {
                return Err(join(&[field, " applies to mode \"http\" only"]));
            }
        }
        Ok(())
    }
}

/// The outcome counters, in Envoy's stats as `wasmcustom.ext_authz.<root_id>.<outcome>` (the
/// names of Envoy's own ext_authz stats).
#[derive(Debug, Clone, Copy)]
struct Counters {
    ok: Counter,
    denied: Counter,
    error: Counter,
    failure_mode_allowed: Counter,
}

impl Counters {
    fn define() -> Result<Counters, filterkit::Error> {
        let root_id = filterkit::properties::plugin_root_id()?.unwrap_or_default();
        let define =
            |outcome: &str| Counter::define(&join(&["ext_authz.", &root_id, ".", outcome]));
        Ok(Counters {
            ok: define("ok")?,
            denied: define("denied")?,
            error: define("error")?,
            failure_mode_allowed: define("failure_mode_allowed")?,
        })
    }
}

fn count(counter: Option<Counter>) {
    if let Some(counter) = counter
        && let Err(error) = counter.increment(1)
    {
        log::warn!("cannot count: {error}");
    }
}

/// One per root_id: the SDK keeps its configuration, the root its counters.
#[derive(Default)]
pub struct ExtAuthzRoot {
    counters: Option<Counters>,
}

impl RootContext for ExtAuthzRoot {
    type Config = Config;
    type Http = ExtAuthz;

    fn on_configure(&mut self, _config: &Rc<Config>) -> bool {
        // Counting is not worth refusing the configuration for.
        self.counters = Counters::define()
            .inspect_err(|error| log::warn!("cannot define the counters: {error}"))
            .ok();
        true
    }

    fn create_http_context(&mut self, _context_id: u32, config: Rc<Config>) -> ExtAuthz {
        ExtAuthz {
            config,
            state: State::Idle,
            response_headers_to_add: Vec::new(),
            counters: self.counters,
        }
    }
}

/// Where a stream is in its check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Idle,
    /// The check is out; the request (and its body) waits.
    Checking,
    Allowed,
    /// Answered locally: nothing of the request goes upstream.
    Denied,
}

/// One per HTTP stream.
pub struct ExtAuthz {
    config: Rc<Config>,
    state: State,
    /// `grpc`: headers the service asked to add to the response.
    response_headers_to_add: Vec<(String, String)>,
    counters: Option<Counters>,
}

/// Headers never sent to an HTTP authorization service: they describe the original
/// request's framing, not the request.
const NOT_SENT_OVER_HTTP: &[&str] = &[
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "te",
    "upgrade",
    "expect",
    "host",
];

/// Headers of an HTTP denial not copied into the local reply: Envoy writes its own.
const NOT_COPIED_TO_CLIENT: &[&str] = &[
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "date",
    "server",
];

fn is_listed(list: &[&str], name: &str) -> bool {
    list.iter().any(|listed| listed.eq_ignore_ascii_case(name))
}

/// Pairs as text; a header whose name or value is not UTF-8 is left out.
fn text_pairs(pairs: http::Pairs) -> Vec<(String, String)> {
    pairs
        .into_iter()
        .filter_map(|(name, value)| {
            Some((
                String::from_utf8(name).ok()?,
                String::from_utf8(value).ok()?,
            ))
        })
        .collect()
}

impl ExtAuthz {
    fn sends(&self, name: &str) -> bool {
        match &self.config.headers_to_send {
            Some(names) => names.iter().any(|listed| listed.eq_ignore_ascii_case(name)),
            None => true,
        }
    }

    /// Sends the check; `Err` when the host refused it (unknown cluster, bad headers).
    fn send_check(&mut self) -> Result<(), filterkit::Error> {
        let request = text_pairs(http::request_headers().pairs()?);
        let header = |name: &str| {
            request
                .iter()
                .find(|(key, _)| key == name)
                .map_or("", |(_, value)| value.as_str())
        };
        let config = &self.config;
        let timeout = Duration::from_millis(u64::from(config.timeout_ms));
        match config.mode {
            Mode::Http => {
                let path = join(&[&config.path_prefix, header(":path")]);
                let authority = config.authority.as_deref().unwrap_or(&config.cluster);
                let method = match header(":method") {
                    "" => "GET",
                    method => method,
                };
                let mut headers: Vec<(&str, &str)> = alloc::vec![
                    (":method", method),
                    (":path", &path),
                    (":authority", authority)
                ];
                headers.extend(
                    request
                        .iter()
                        .filter(|(name, _)| {
                            !name.starts_with(':')
                                && !is_listed(NOT_SENT_OVER_HTTP, name)
                                && self.sends(name)
                        })
                        .map(|(name, value)| (name.as_str(), value.as_str())),
                );
                http::call(
                    &config.cluster,
                    &headers,
                    b"",
                    timeout,
                    ExtAuthz::on_http_answer,
                )?;
            }
            Mode::Grpc => {
                let headers: Vec<(&str, &str)> = request
                    .iter()
                    .filter(|(name, _)| self.sends(name))
                    .map(|(name, value)| (name.as_str(), value.as_str()))
                    .collect();
                let source_address = filterkit::properties::source_address().ok().flatten();
                let message = encode_check_request(&HttpRequest {
                    id: header("x-request-id"),
                    method: header(":method"),
                    headers: &headers,
                    path: header(":path"),
                    host: header(":authority"),
                    scheme: header(":scheme"),
                    source_address: source_address.as_deref(),
                });
                grpc::call(
                    &config.cluster,
                    GRPC_SERVICE,
                    GRPC_METHOD,
                    &[],
                    &message,
                    timeout,
                    ExtAuthz::on_grpc_answer,
                )?;
            }
        }
        Ok(())
    }

    /// Runs with this stream made effective by the SDK, so host calls act on it.
    fn on_http_answer(&mut self, response: CallResponse) {
        // As Envoy's ext_authz: a 5xx is a failure, not a denial. Envoy answers a call that
        // timed out or found no upstream with its own 504 or 503.
        let status = match response.status() {
            Some(status @ 500..=599) => {
                return self.fail(&join(&["the service answered ", &decimal(status)]));
            }
            Some(status) => status,
            None => return self.fail("the call failed (reset)"),
        };
        let answer = response
            .headers()
            .pairs()
            .map(text_pairs)
            .unwrap_or_default();
        if status == 200 {
            let request = http::request_headers();
            for name in &self.config.headers_to_upstream {
                let Some((_, value)) = answer
                    .iter()
                    .find(|(key, _)| key.eq_ignore_ascii_case(name))
                else {
                    continue;
                };
                if let Err(error) = request.set(name, value) {
                    log::warn!("cannot copy header {name} upstream: {error}");
                }
            }
            return self.allow();
        }
        let body = response.body().unwrap_or_default();
        let headers: Vec<(&str, &str)> = answer
            .iter()
            .filter(|(name, _)| !name.starts_with(':') && !is_listed(NOT_COPIED_TO_CLIENT, name))
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect();
        self.deny(status, &headers, &body);
    }

    fn on_grpc_answer(&mut self, reply: grpc::Reply) {
        if !reply.is_ok() {
            let code = decimal(reply.status_code);
            return self.fail(&join(&["the call ended with grpc-status ", &code]));
        }
        let Some(Ok(answer)) = reply.message.as_deref().map(decode_check_response) else {
            return self.fail("the answer is not a CheckResponse");
        };
        if answer.code != 0 {
            let status = match u32::try_from(answer.denied_status) {
                Ok(status @ 200..=599) => status,
                _ => self.config.status_on_deny,
            };
            let headers: Vec<(&str, &str)> = answer
                .headers
                .iter()
                .map(|option| (option.name.as_str(), option.value.as_str()))
                .collect();
            return self.deny(status, &headers, &answer.body);
        }
        let request = http::request_headers();
        for option in &answer.headers {
            if option.name.starts_with(':') || option.name == "host" {
                continue;
            }
            let exists = matches!(request.get(&option.name), Ok(Some(_)));
            let result = if option.append || (option.if_absent && !exists) {
                request.add(&option.name, &option.value)
            } else if option.if_absent || (option.if_exists && !exists) {
                Ok(())
            } else {
                request.set(&option.name, &option.value)
            };
            if let Err(error) = result {
                log::warn!("cannot set header {} upstream: {error}", option.name);
            }
        }
        for name in &answer.headers_to_remove {
            if !name.starts_with(':') && name != "host" && request.remove(name).is_err() {
                log::warn!("cannot remove header {name}");
            }
        }
        self.response_headers_to_add = answer
            .response_headers_to_add
            .into_iter()
            .map(|option| (option.name, option.value))
            .collect();
        self.allow();
    }

    fn allow(&mut self) {
        count(self.counters.map(|counters| counters.ok));
        self.state = State::Allowed;
        if let Err(error) = http::resume_request() {
            log::warn!("cannot resume the request: {error}");
        }
    }

    fn deny(&mut self, status: u32, headers: &[(&str, &str)], body: &[u8]) {
        count(self.counters.map(|counters| counters.denied));
        self.state = State::Denied;
        log::debug!("request denied: status={status}");
        let mut reply = LocalReply::new(status)
            .body(body)
            .details("ext_authz_denied");
        for (name, value) in headers {
            reply = reply.header(name, value);
        }
        if let Err(error) = reply.send() {
            log::warn!("cannot send the denial: {error}");
        }
    }

    /// A failure after the check went out: the request waits, so resume or answer it.
    fn fail(&mut self, reason: &str) {
        if self.fail_now(reason) == Action::Continue
            && let Err(error) = http::resume_request()
        {
            log::warn!("cannot resume the request: {error}");
        }
    }

    /// Fails open (the request goes on: [`Action::Continue`]) or closed (a local reply).
    fn fail_now(&mut self, reason: &str) -> Action {
        let config = &self.config;
        log::warn!(
            "authorization failed: cluster={} reason={reason} failure_mode_allow={}",
            config.cluster,
            config.failure_mode_allow
        );
        count(self.counters.map(|counters| counters.error));
        if config.failure_mode_allow {
            count(self.counters.map(|counters| counters.failure_mode_allowed));
            self.state = State::Allowed;
            if config.failure_mode_allow_header_add
                && let Err(error) = http::request_headers().set(FAILURE_MODE_ALLOWED_HEADER, "true")
            {
                log::warn!("cannot mark the request: {error}");
            }
            return Action::Continue;
        }
        self.state = State::Denied;
        if let Err(error) = LocalReply::new(config.status_on_error)
            .details("ext_authz_error")
            .send()
        {
            log::warn!("cannot send the error reply: {error}");
        }
        Action::Pause
    }

    /// Body and trailers wait while the check is out, and never go upstream after a denial.
    fn hold(&self) -> Action {
        match self.state {
            State::Checking | State::Denied => Action::Pause,
            State::Idle | State::Allowed => Action::Continue,
        }
    }
}

impl HttpContext for ExtAuthz {
    fn on_http_request_headers(&mut self, _n_headers: usize, _end_of_stream: bool) -> Action {
        match self.send_check() {
            Ok(()) => {
                self.state = State::Checking;
                Action::Pause
            }
            Err(error) => {
                let reason = join(&["the call was refused: ", &error.to_string()]);
                self.fail_now(&reason)
            }
        }
    }

    fn on_http_request_body(&mut self, _body_size: usize, _end_of_stream: bool) -> Action {
        self.hold()
    }

    fn on_http_request_trailers(&mut self, _n_trailers: usize) -> Action {
        self.hold()
    }

    fn on_http_response_headers(&mut self, _n_headers: usize, _end_of_stream: bool) -> Action {
        let response = http::response_headers();
        for (name, value) in &self.response_headers_to_add {
            if let Err(error) = response.add(name, value) {
                log::warn!("cannot add response header {name}: {error}");
            }
        }
        Action::Continue
    }
}

filterkit::export_filter!(ExtAuthzRoot);
