//! The client-level scenario and the observation, as `tests/differential/README.md` specifies
//! them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::scenario::{ScenarioFailurePolicy, ScenarioPlugin};

pub(super) type Pairs = Vec<(String, String)>;

/// A client-level scenario.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Exchange {
    /// What the scenario checks.
    #[serde(default)]
    pub description: String,
    /// The guest's name (the command line's module wins).
    #[serde(default)]
    pub module: Option<String>,
    /// The plugins, in filter-chain order.
    pub plugins: Vec<ScenarioPlugin>,
    /// The VM id.
    #[serde(default)]
    pub vm_id: String,
    /// The VM configuration.
    #[serde(default)]
    pub vm_configuration: String,
    /// Worker threads (default 1).
    #[serde(default)]
    pub workers: Option<usize>,
    /// What Envoy does after a trap.
    #[serde(default)]
    pub failure_policy: Option<ScenarioFailurePolicy>,
    /// FAIL_RELOAD's backoff base (default 1000 ms).
    #[serde(default)]
    pub reload_backoff_ms: Option<u64>,
    /// The listener's buffer limit (default 1 MiB).
    #[serde(default)]
    pub buffer_limit_bytes: Option<usize>,
    /// What the upstream answers every request.
    #[serde(default)]
    pub upstream: Answer,
    /// Callout clusters by name.
    #[serde(default)]
    pub clusters: BTreeMap<String, Cluster>,
    /// The requests, one after another.
    #[serde(default)]
    pub requests: Vec<Request>,
    /// TCP connections through the network filter, one after another (instead of requests).
    #[serde(default)]
    pub connections: Vec<super::tcp::ClientConnection>,
    /// Headers left out of the comparison (the runner's business).
    #[serde(default)]
    pub volatile_headers: Vec<String>,
}

/// An HTTP answer (the upstream, or an HTTP cluster); unset fields take the defaults.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Answer {
    /// Status (default 200).
    pub status: Option<u32>,
    /// Headers, in order.
    pub headers: Option<Pairs>,
    /// Body text.
    pub body: Option<String>,
    /// Trailers.
    pub trailers: Option<Pairs>,
    /// Delay before the response headers.
    pub delay_ms: Option<u64>,
}

impl Answer {
    pub(super) fn over(&self, base: &Answer) -> Answer {
        Answer {
            status: self.status.or(base.status),
            headers: self.headers.clone().or_else(|| base.headers.clone()),
            body: self.body.clone().or_else(|| base.body.clone()),
            trailers: self.trailers.clone().or_else(|| base.trailers.clone()),
            delay_ms: self.delay_ms.or(base.delay_ms),
        }
    }
}

/// A callout cluster.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cluster {
    /// `http` or `grpc`.
    pub kind: ClusterKind,
    /// HTTP status.
    pub status: Option<u32>,
    /// HTTP headers.
    #[serde(default)]
    pub headers: Pairs,
    /// HTTP body.
    #[serde(default)]
    pub body: String,
    /// HTTP trailers.
    #[serde(default)]
    pub trailers: Pairs,
    /// Delay before the answer.
    #[serde(default)]
    pub delay_ms: u64,
    /// gRPC response message (text).
    #[serde(default)]
    pub message: String,
    /// gRPC response message (base64), wins over `message`.
    #[serde(default)]
    pub message_base64: Option<String>,
    /// gRPC status (0 = success).
    #[serde(default)]
    pub grpc_status: u32,
    /// gRPC status message.
    #[serde(default)]
    pub grpc_message: String,
    /// gRPC initial metadata (streams).
    #[serde(default)]
    pub initial_metadata: Pairs,
    /// gRPC trailing metadata (streams).
    #[serde(default)]
    pub trailing_metadata: Pairs,
}

/// A cluster's protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClusterKind {
    /// HTTP/1.1, for `proxy_http_call`.
    Http,
    /// gRPC, for `proxy_grpc_call` / `proxy_grpc_stream`.
    Grpc,
}

/// A client request.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    /// Its name in the observation.
    pub name: String,
    /// Method (default GET).
    #[serde(default)]
    pub method: Option<String>,
    /// Path (default `/`).
    #[serde(default)]
    pub path: Option<String>,
    /// Authority (default `example.com`).
    #[serde(default)]
    pub authority: Option<String>,
    /// Headers, in order.
    #[serde(default)]
    pub headers: Pairs,
    /// Body text.
    #[serde(default)]
    pub body: String,
    /// Trailers.
    #[serde(default)]
    pub trailers: Pairs,
    /// HTTP/2 instead of HTTP/1.1.
    #[serde(default)]
    pub http2: bool,
    /// Virtual time to let pass first.
    #[serde(default)]
    pub wait_before_ms: u64,
    /// Overrides of the upstream answer for this request.
    #[serde(default)]
    pub upstream: Answer,
}

/// What a client saw (the README's observation).
#[derive(Debug, Serialize)]
pub struct Observation {
    /// `accepted` or `rejected`.
    pub configuration: &'static str,
    /// One per request.
    pub responses: Vec<Response>,
    /// One per TCP connection (absent in HTTP scenarios).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub connections: Vec<super::tcp::ConnectionObservation>,
    /// Counters and gauges by name.
    pub metrics: BTreeMap<String, u64>,
}

/// One response as the client saw it.
#[derive(Debug, Serialize)]
pub struct Response {
    /// The request's name.
    pub name: String,
    /// Status, `null` when no response head arrived.
    pub status: Option<u32>,
    /// Headers in wire order, without `:status`.
    pub headers: Pairs,
    /// Body text (`base64:` when not UTF-8).
    pub body: String,
    /// Trailers.
    pub trailers: Pairs,
    /// Whether the stream was reset.
    pub reset: bool,
    /// What the upstream received.
    pub upstream_request: Option<UpstreamRequest>,
}

/// What the upstream server received.
#[derive(Debug, Serialize)]
pub struct UpstreamRequest {
    /// Method.
    pub method: String,
    /// Path.
    pub path: String,
    /// `host`.
    pub authority: String,
    /// Headers in wire order, without `host`.
    pub headers: Pairs,
    /// Body text.
    pub body: String,
    /// Trailers.
    pub trailers: Pairs,
}

/// Text, or `base64:` for bytes that are not UTF-8.
pub(super) fn text(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) => text.to_string(),
        Err(_) => format!("base64:{}", base64_encode(bytes)),
    }
}

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64_encode(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(BASE64[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

pub(super) fn base64_decode(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut acc = 0u32;
    let mut bits = 0;
    for byte in text.bytes() {
        let Some(value) = BASE64.iter().position(|c| *c == byte) else {
            continue;
        };
        acc = (acc << 6) | value as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}
