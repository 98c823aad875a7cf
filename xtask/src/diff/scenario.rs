//! The differential scenario file (`host-sim/tests/differential/*.json`), read on its own:
//! xtask never depends on host-sim, so this is a second reading of the README's format, and
//! it refuses fields it does not know so the two readings cannot drift apart silently.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use serde::Deserialize;
use serde_json::Value;

/// A header or trailer list: `[name, value]` pairs in order.
pub type Pairs = Vec<(String, String)>;

/// One scenario: the plugins, what the upstream and callout clusters answer, the requests.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    #[serde(default)]
    pub description: String,
    /// The guest, when the command line names none (see [`crate::diff::module`]).
    #[serde(default)]
    pub module: Option<String>,
    /// In filter-chain order, all in one VM.
    pub plugins: Vec<Plugin>,
    #[serde(default)]
    pub vm_id: String,
    #[serde(default)]
    pub vm_configuration: String,
    #[serde(default = "one")]
    pub workers: u32,
    #[serde(default)]
    pub failure_policy: FailurePolicy,
    #[serde(default = "default_reload_backoff_ms")]
    pub reload_backoff_ms: u64,
    #[serde(default = "default_buffer_limit_bytes")]
    pub buffer_limit_bytes: u32,
    #[serde(default)]
    pub upstream: UpstreamResponse,
    #[serde(default)]
    pub clusters: BTreeMap<String, Cluster>,
    #[serde(default)]
    pub requests: Vec<Request>,
    /// A TCP scenario's connections (README: "TCP scenarios"), instead of `requests`.
    #[serde(default)]
    pub connections: Vec<Connection>,
    #[serde(default)]
    pub volatile_headers: Vec<String>,
}

fn one() -> u32 {
    1
}

fn default_reload_backoff_ms() -> u64 {
    1000
}

/// Envoy's default `per_connection_buffer_limit_bytes`: 1 MiB.
fn default_buffer_limit_bytes() -> u32 {
    1024 * 1024
}

fn default_status() -> u16 {
    200
}

/// One `envoy.filters.http.wasm` filter.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plugin {
    #[serde(default)]
    pub root_id: String,
    #[serde(default)]
    pub configuration: Value,
    #[serde(default)]
    pub allow_on_headers_stop_iteration: bool,
}

impl Plugin {
    /// The plugin configuration as the guest reads it: a JSON string as is, `null` (absent)
    /// as empty, any other value serialized.
    pub fn configuration_text(&self) -> String {
        match &self.configuration {
            Value::Null => String::new(),
            Value::String(text) => text.clone(),
            other => other.to_string(),
        }
    }
}

/// What happens when a plugin fails (a VM that traps, or fails to start).
#[derive(Debug, Default, Clone, Copy, Deserialize, PartialEq, Eq)]
pub enum FailurePolicy {
    #[default]
    #[serde(rename = "fail_closed")]
    Closed,
    #[serde(rename = "fail_open")]
    Open,
    #[serde(rename = "fail_reload")]
    Reload,
}

impl FailurePolicy {
    /// The enum value in Envoy's `PluginConfig.failure_policy`.
    pub fn envoy_name(self) -> &'static str {
        match self {
            FailurePolicy::Closed => "FAIL_CLOSED",
            FailurePolicy::Open => "FAIL_OPEN",
            FailurePolicy::Reload => "FAIL_RELOAD",
        }
    }
}

/// What the upstream (or an HTTP callout cluster) answers.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct UpstreamResponse {
    #[serde(default = "default_status")]
    pub status: u16,
    #[serde(default)]
    pub headers: Pairs,
    #[serde(default)]
    pub body: String,
    #[serde(default)]
    pub trailers: Pairs,
    /// Delays the response headers.
    #[serde(default)]
    pub delay_ms: u64,
}

impl Default for UpstreamResponse {
    fn default() -> Self {
        UpstreamResponse {
            status: default_status(),
            headers: Vec::new(),
            body: String::new(),
            trailers: Vec::new(),
            delay_ms: 0,
        }
    }
}

/// A request's `upstream`: the fields it sets replace the scenario's for that request.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamOverride {
    pub status: Option<u16>,
    pub headers: Option<Pairs>,
    pub body: Option<String>,
    pub trailers: Option<Pairs>,
    pub delay_ms: Option<u64>,
}

impl UpstreamResponse {
    /// This response with a request's overrides applied.
    pub fn with(&self, changes: Option<&UpstreamOverride>) -> UpstreamResponse {
        let mut response = self.clone();
        let Some(changes) = changes else {
            return response;
        };
        if let Some(status) = changes.status {
            response.status = status;
        }
        if let Some(headers) = &changes.headers {
            response.headers = headers.clone();
        }
        if let Some(body) = &changes.body {
            response.body = body.clone();
        }
        if let Some(trailers) = &changes.trailers {
            response.trailers = trailers.clone();
        }
        if let Some(delay_ms) = changes.delay_ms {
            response.delay_ms = delay_ms;
        }
        response
    }
}

/// A callout cluster: `http` (HTTP/1.1) for `proxy_http_call`, `grpc` (HTTP/2) for gRPC calls.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Cluster {
    Http(UpstreamResponse),
    Grpc(GrpcResponse),
}

/// What a gRPC cluster answers every call.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrpcResponse {
    /// The response message as text.
    #[serde(default)]
    pub message: String,
    /// The response message as base64, for bytes; wins over `message`.
    #[serde(default)]
    pub message_base64: Option<String>,
    #[serde(default)]
    pub grpc_status: u32,
    #[serde(default)]
    pub grpc_message: String,
    #[serde(default)]
    pub initial_metadata: Pairs,
    #[serde(default)]
    pub trailing_metadata: Pairs,
    #[serde(default)]
    pub delay_ms: u64,
}

impl GrpcResponse {
    /// The message bytes (`message_base64` decoded, else `message`).
    pub fn message_bytes(&self) -> Result<Vec<u8>> {
        use base64::Engine as _;
        match &self.message_base64 {
            Some(encoded) => base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .with_context(|| format!("message_base64 {encoded:?} is not base64")),
            None => Ok(self.message.clone().into_bytes()),
        }
    }
}

/// One request, sent on a new connection after the previous one's response.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    pub name: String,
    #[serde(default = "default_method")]
    pub method: String,
    #[serde(default = "default_path")]
    pub path: String,
    #[serde(default = "default_authority")]
    pub authority: String,
    #[serde(default)]
    pub headers: Pairs,
    #[serde(default)]
    pub body: String,
    #[serde(default)]
    pub trailers: Pairs,
    #[serde(default)]
    pub http2: bool,
    #[serde(default)]
    pub wait_before_ms: u64,
    #[serde(default)]
    pub upstream: Option<UpstreamOverride>,
}

fn default_method() -> String {
    "GET".to_owned()
}

fn default_path() -> String {
    "/".to_owned()
}

fn default_authority() -> String {
    "example.com".to_owned()
}

/// One TCP connection through the network filters and tcp_proxy.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Connection {
    pub name: String,
    #[serde(default)]
    pub client: Vec<Step>,
    #[serde(default)]
    pub upstream: TcpUpstream,
}

/// One client step: `send` text, `half_close`, then let `wait_ms` pass (in that order).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    #[serde(default)]
    pub send: Option<String>,
    #[serde(default)]
    pub half_close: bool,
    #[serde(default)]
    pub wait_ms: Option<u64>,
}

/// What the TCP upstream writes after every chunk it reads (`echo` first, then `reply`); it
/// half-closes when it reads the end of the stream.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpUpstream {
    #[serde(default)]
    pub echo: bool,
    #[serde(default)]
    pub reply: String,
    /// Half-closes right after answering its first chunk (and keeps reading).
    #[serde(default)]
    pub half_close_after_first: bool,
}

impl Scenario {
    /// Reads and parses a scenario file.
    pub fn read(path: &Path) -> Result<Scenario> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Scenario::parse(&text).with_context(|| format!("reading {}", path.display()))
    }

    /// Parses a scenario from JSON.
    pub fn parse(json: &str) -> Result<Scenario> {
        serde_json::from_str(json).context("not a differential scenario")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_readme_example_parses_with_its_defaults() {
        let readme = include_str!("../../../host-sim/tests/differential/README.md");
        let example = readme
            .split("```json\n")
            .nth(1)
            .and_then(|rest| rest.split("```").next())
            .expect("the README shows a scenario first");
        let scenario = Scenario::parse(example).unwrap();
        assert_eq!(
            scenario.plugins[0].configuration_text(),
            r#"{"any":"json"}"#
        );
        assert_eq!(
            scenario.requests[0].upstream.as_ref().unwrap().status,
            Some(201)
        );
        assert!(matches!(scenario.clusters["authz"], Cluster::Grpc(_)));
        let Cluster::Http(slow) = &scenario.clusters["slow"] else {
            panic!("slow is an http cluster");
        };
        assert_eq!((slow.status, slow.delay_ms), (200, 60000));
    }

    #[test]
    fn unknown_fields_are_refused_everywhere() {
        for json in [
            r#"{"plugins": [], "colour": 1}"#,
            r#"{"plugins": [{"root_id": "a", "colour": 1}]}"#,
            r#"{"plugins": [], "clusters": {"c": {"kind": "http", "colour": 1}}}"#,
            r#"{"plugins": [], "clusters": {"c": {"kind": "grpc", "status": 200}}}"#,
            r#"{"plugins": [], "requests": [{"name": "r", "upstream": {"colour": 1}}]}"#,
            r#"{"plugins": [], "connections": [{"name": "c", "client": [{"colour": 1}]}]}"#,
            r#"{"plugins": [], "connections": [{"name": "c", "upstream": {"colour": 1}}]}"#,
        ] {
            let error = Scenario::parse(json).unwrap_err();
            assert!(
                format!("{:#}", error).contains("unknown field"),
                "{json}: {error:#}"
            );
        }
    }
}
