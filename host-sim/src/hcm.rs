//! What Envoy's HTTP connection manager does around the filters, without Wasm: the request
//! headers the first filter sees, the local reply Envoy builds, and what the HCM and the
//! codec add to a response on its way to the client. Each rule was seen in Envoy 1.40 (see
//! host-sim/README.md) or read in Envoy's `source/common/http/utility.cc`
//! (`Utility::prepareLocalReply`, `encodeLocalReply`) and `conn_manager_utility.cc`.

use crate::headers::HeaderMap;
use crate::host::LocalReply;

/// The HTTP version the client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP/1.1.
    Http1,
    /// HTTP/2.
    Http2,
}

/// A request as the client sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientRequest {
    /// Method.
    pub method: String,
    /// Path.
    pub path: String,
    /// Authority (HTTP/1.1 `host`).
    pub authority: String,
    /// The client's headers, in order.
    pub headers: Vec<(String, String)>,
    /// Whether the body is non-empty and sent with `content-length` (no trailers).
    pub body_len: Option<usize>,
    /// HTTP/1.1 or HTTP/2.
    pub protocol: Protocol,
    /// The value Envoy generates for `x-request-id` (random in Envoy).
    pub request_id: String,
}

/// The request headers as the HCM hands them to the first filter. HTTP/1.1: `:authority`,
/// `:path`, `:method`, `:scheme`, then the client's headers (`content-length` kept,
/// `transfer-encoding` removed by the codec); HTTP/2: `:method`, `:path`, `:scheme`,
/// `:authority` first. Then `x-forwarded-proto` and `x-request-id` (added when absent).
pub fn request_headers(request: &ClientRequest) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let pseudo: [(&[u8], &[u8]); 4] = match request.protocol {
        Protocol::Http1 => [
            (b":authority", request.authority.as_bytes()),
            (b":path", request.path.as_bytes()),
            (b":method", request.method.as_bytes()),
            (b":scheme", b"http"),
        ],
        Protocol::Http2 => [
            (b":method", request.method.as_bytes()),
            (b":path", request.path.as_bytes()),
            (b":scheme", b"http"),
            (b":authority", request.authority.as_bytes()),
        ],
    };
    for (key, value) in pseudo {
        headers.add(key, value);
    }
    for (key, value) in &request.headers {
        let key = key.to_ascii_lowercase();
        if key == "transfer-encoding" || key == "host" {
            continue;
        }
        headers.add(key.as_bytes(), value.as_bytes());
    }
    if let Some(len) = request.body_len
        && headers.get(b"content-length").is_none()
    {
        headers.add(b"content-length", len.to_string().as_bytes());
    }
    if headers.get(b"x-forwarded-proto").is_none() {
        headers.add(b"x-forwarded-proto", b"http");
    }
    if headers.get(b"x-request-id").is_none() {
        headers.add(b"x-request-id", request.request_id.as_bytes());
    }
    headers
}

/// The headers the upstream server receives for headers that left the filter chain (the
/// router adds `x-envoy-expected-rq-timeout-ms` and, for a body without a length, chunked
/// transfer encoding); pseudo-headers are the request line and `host`, so they are not here.
pub fn upstream_headers(passed: &HeaderMap, chunked: bool) -> Vec<(String, String)> {
    let mut headers: Vec<(String, String)> = passed
        .to_vec()
        .into_iter()
        .filter(|(key, _)| !key.starts_with(':'))
        .collect();
    headers.push(("x-envoy-expected-rq-timeout-ms".into(), "15000".into()));
    if chunked {
        headers.push(("transfer-encoding".into(), "chunked".into()));
    }
    headers
}

/// Whether Envoy treats the request as gRPC (`Grpc::Common::hasGrpcContentType`).
pub fn is_grpc(request: &HeaderMap) -> bool {
    request.get(b"content-type").is_some_and(|value| {
        value == b"application/grpc"
            || value.starts_with(b"application/grpc+")
            || value.starts_with(b"application/grpc;")
    })
}

/// Envoy's `Grpc::Utility::httpToGrpcStatus`.
pub fn http_to_grpc_status(code: u32) -> u32 {
    match code {
        400 => 13,
        401 => 16,
        403 => 7,
        404 => 12,
        429 | 502 | 503 | 504 => 14,
        _ => 2,
    }
}

/// Envoy's `PercentEncoding::encode` for `grpc-message`.
pub fn percent_encode(value: &[u8]) -> String {
    let mut out = String::new();
    for &byte in value {
        if !(b' '..b'~').contains(&byte) || byte == b'%' {
            out.push_str(&format!("%{byte:02X}"));
        } else {
            out.push(char::from(byte));
        }
    }
    out
}

/// The local reply Envoy builds (`Utility::prepareLocalReply`): `:status`, the filter's
/// headers, then for a gRPC request a trailers-only answer (`:status 200`,
/// `content-type: application/grpc`, `grpc-status` unless the filter set one, the body
/// percent-encoded into `grpc-message`, no body, no `content-length`); otherwise a non-empty
/// body gets `content-length` and `content-type: text/plain` when the filter gave none, an
/// empty one neither. A HEAD request's reply keeps the headers and has no body. Returns the
/// headers and the body to send.
pub fn local_reply(reply: &LocalReply, grpc: bool, head: bool) -> (HeaderMap, Vec<u8>) {
    let mut headers = HeaderMap::new();
    headers.add(b":status", reply.status_code.to_string().as_bytes());
    for (key, value) in &reply.headers {
        headers.add(key.to_ascii_lowercase().as_bytes(), value.as_bytes());
    }
    if grpc {
        headers.set(b":status", b"200");
        headers.set(b"content-type", b"application/grpc");
        if headers.get(b"grpc-status").is_none() {
            let status = reply
                .grpc_status
                .unwrap_or_else(|| http_to_grpc_status(reply.status_code));
            headers.set(b"grpc-status", status.to_string().as_bytes());
        }
        if !reply.body.is_empty() && !head {
            headers.set(b"grpc-message", percent_encode(&reply.body).as_bytes());
        }
        headers.remove(b"content-length");
        return (headers, Vec::new());
    }
    if reply.body.is_empty() {
        headers.remove(b"content-length");
        headers.remove(b"content-type");
    } else {
        headers.set(b"content-length", reply.body.len().to_string().as_bytes());
        if headers.get(b"content-type").is_none() {
            headers.add(b"content-type", b"text/plain");
        }
    }
    let body = if head { Vec::new() } else { reply.body.clone() };
    (headers, body)
}

/// What reaches the client for response headers that left the first filter: the HCM adds
/// `date` and `server: envoy`, and `connection: close` over HTTP/1.1 when the request had not
/// ended yet (`close`: Envoy's drain on `!remoteDecodeComplete`); then the HTTP/1.1 codec
/// frames a response without
/// `content-length`: `content-length: 0` when it ends with the headers (except for HEAD,
/// which gets `transfer-encoding: chunked`, as seen in Envoy 1.40), chunked otherwise.
pub fn client_headers(
    passed: &HeaderMap,
    end_stream: bool,
    protocol: Protocol,
    head: bool,
    close: bool,
    date: &str,
) -> HeaderMap {
    let mut headers = passed.clone();
    headers.set(b"date", date.as_bytes());
    headers.set(b"server", b"envoy");
    if close && protocol == Protocol::Http1 {
        headers.set(b"connection", b"close");
    }
    if protocol == Protocol::Http1
        && headers.get(b"content-length").is_none()
        && headers.get(b"transfer-encoding").is_none()
    {
        let status = headers.get(b":status").unwrap_or_default();
        let no_body_status = status.starts_with(b"1") || status == b"204" || status == b"304";
        if !no_body_status {
            if end_stream && !head {
                headers.add(b"content-length", b"0");
            } else {
                headers.add(b"transfer-encoding", b"chunked");
            }
        }
    }
    headers
}

/// The response headers the last filter sees for what the upstream answered: `:status`, the
/// upstream's headers, the `content-length` the upstream server sent (none with trailers:
/// the codec removes `transfer-encoding`), and the router's `x-envoy-upstream-service-time`.
pub fn upstream_response_headers(
    status: u32,
    headers: &[(String, String)],
    body_len: Option<usize>,
    service_time_ms: u64,
) -> HeaderMap {
    let mut map = HeaderMap::new();
    map.add(b":status", status.to_string().as_bytes());
    for (key, value) in headers {
        let key = key.to_ascii_lowercase();
        if key == "transfer-encoding" {
            continue;
        }
        map.add(key.as_bytes(), value.as_bytes());
    }
    if let Some(len) = body_len
        && map.get(b"content-length").is_none()
    {
        map.add(b"content-length", len.to_string().as_bytes());
    }
    map.add(
        b"x-envoy-upstream-service-time",
        service_time_ms.to_string().as_bytes(),
    );
    map
}
