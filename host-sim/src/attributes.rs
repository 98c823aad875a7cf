//! Envoy's standard attributes (`request.*`, `response.*`, `source.*`, `destination.*`,
//! `connection.*`, `upstream.*`, `xds.*`, `metadata`, `connection_id`) as `proxy_get_property`
//! answers them, computed from a stream's state.
//!
//! Envoy's rules (`source/extensions/common/wasm/context.cc` `Context::findValue` and
//! `source/extensions/filters/common/expr/context.cc`): a top-level token needs the stream's
//! `StreamInfo`, so a root context finds none of them (only `plugin_*` and `xds.node`). The
//! `request` wrapper reads the request headers only while the context can read them (the
//! request-headers and later request callbacks, and the access-log phase), otherwise it sees
//! no headers but still the stream info (time, protocol, sizes); `response` likewise with the
//! response headers and trailers. The wrappers themselves (`request`, `response`, `source`,
//! `connection`, `upstream`, `xds`, `filter_state`) are maps without a key list, so reading one
//! whole is SERIALIZATION_FAILURE (`xds` even on a root context). Envoy 1.40 no longer has the
//! old top-level `node`, `cluster_name`, `route_name`, `listener_direction` tokens (seen:
//! NOT_FOUND everywhere); they are under `xds.` now.
//!
//! [`ATTRIBUTES`] is the table: each attribute, its type, when it exists, and whether its
//! behaviour was seen in Envoy 1.40 (`seen`) or only read in Envoy's source.

use crate::headers::HeaderMap;
use crate::property::PropertyValue;

/// What a stream knows when the guest asks (Envoy's `StreamInfo` plus the maps the context can
/// read right now).
#[derive(Debug, Clone, Copy)]
pub(crate) struct StreamView<'a> {
    /// The request headers, when the context can read them now.
    pub(crate) request_headers: Option<&'a HeaderMap>,
    /// The response headers, when the context can read them now.
    pub(crate) response_headers: Option<&'a HeaderMap>,
    /// The response trailers, when the context can read them now.
    pub(crate) response_trailers: Option<&'a HeaderMap>,
    /// The response code once a response started (upstream or local reply).
    pub(crate) response_code: Option<u32>,
    /// Envoy's `responseCodeDetails`.
    pub(crate) response_code_details: Option<&'a str>,
    /// Request body bytes received from downstream.
    pub(crate) bytes_received: u64,
    /// Response body bytes sent downstream.
    pub(crate) bytes_sent: u64,
    /// When the stream started, in ns since the Unix epoch.
    pub(crate) start_ns: i64,
    /// Now, in ns since the Unix epoch.
    pub(crate) now_ns: i64,
    /// In the access-log phase (`proxy_on_log`): the request is complete.
    pub(crate) complete: bool,
    /// Envoy's downstream connection id.
    pub(crate) connection_id: u64,
    /// The downstream client's port (the address is 127.0.0.1).
    pub(crate) source_port: u16,
    /// The listener's port (the address is 127.0.0.1).
    pub(crate) destination_port: u16,
    /// A routed request without a local reply (`exchange`'s chains; a lone stream models a
    /// direct-response route): the route's cluster is known from the request headers on.
    pub(crate) routed: bool,
    /// Also, the request headers reached the router, which picked the upstream host.
    pub(crate) upstream_selected: bool,
}

/// The type `proxy_get_property` encodes an attribute with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    String,
    Int,
    Uint,
    Bool,
    Timestamp,
    Duration,
    Map,
    Message,
}

/// One standard attribute.
pub(crate) struct Attribute {
    /// The path, segments joined by `.` (the guest separates them with NUL).
    pub(crate) path: &'static str,
    pub(crate) kind: Kind,
    /// When it exists, in words (for the README and readers).
    #[cfg_attr(
        not(test),
        allow(dead_code, reason = "documentation, checked by the unit test")
    )]
    pub(crate) when: &'static str,
    /// Seen in Envoy 1.40 (a probe guest logging every attribute in every callback); `false`
    /// means read in Envoy's source only.
    #[cfg_attr(
        not(test),
        allow(dead_code, reason = "documentation, checked by the unit test")
    )]
    pub(crate) seen: bool,
    pub(crate) value: fn(&StreamView<'_>) -> Option<PropertyValue>,
}

/// The port the simulated listener has (Envoy's listener in the tests is on 127.0.0.1).
pub(crate) const LISTENER_PORT: u16 = 10000;

/// The port `upstream.address` names (the upstream's address is 127.0.0.1).
pub(crate) const UPSTREAM_PORT: u16 = 10001;

/// Top-level names whose value is a map without a key list: reading one whole is
/// SERIALIZATION_FAILURE (seen for all but `destination`, which is the same wrapper as `source`).
pub(crate) const WRAPPERS: [&str; 8] = [
    "request",
    "response",
    "source",
    "destination",
    "connection",
    "upstream",
    "xds",
    "filter_state",
];

fn string(value: &[u8]) -> PropertyValue {
    PropertyValue::String(String::from_utf8_lossy(value).into_owned())
}

fn request_header(view: &StreamView<'_>, name: &str) -> Option<PropertyValue> {
    view.request_headers?.get(name.as_bytes()).map(string)
}

fn headers_map(map: Option<&HeaderMap>) -> PropertyValue {
    // Envoy's `HeadersWrapper` lists each name once and joins repeated values with `,`.
    let mut entries: Vec<(String, PropertyValue)> = Vec::new();
    if let Some(map) = map {
        for (name, _) in map.iter() {
            let name = String::from_utf8_lossy(name).into_owned();
            if entries.iter().any(|(key, _)| *key == name) {
                continue;
            }
            let joined = map.get_all(name.as_bytes()).join(&b","[..]);
            entries.push((name, string(&joined)));
        }
    }
    PropertyValue::Map(entries)
}

fn byte_size(map: Option<&HeaderMap>) -> i64 {
    map.map_or(0, |map| map.byte_size() as i64)
}

fn path_query(view: &StreamView<'_>) -> Option<(String, Option<String>)> {
    let path = view.request_headers?.get(b":path")?;
    let path = String::from_utf8_lossy(path).into_owned();
    Some(match path.split_once('?') {
        Some((path, query)) => (path.to_string(), Some(query.to_string())),
        None => (path, None),
    })
}

/// Envoy's `Grpc::Utility::httpToGrpcStatus`.
fn http_to_grpc_status(code: u32) -> i64 {
    match code {
        400 => 13,
        401 => 16,
        403 => 7,
        404 => 12,
        429 | 502 | 503 | 504 => 14,
        _ => 2,
    }
}

/// A request id in UUID form, stable per connection (Envoy's connection manager generates a
/// random one into `x-request-id`; host-sim's streams do not carry that header).
fn generated_request_id(connection_id: u64) -> String {
    format!("00000000-0000-4000-8000-{connection_id:012x}")
}

/// Envoy's `Node` as its `xds.node` message: here only `user_agent_name: "envoy"` (field 6),
/// the start of what Envoy 1.40 serializes (it adds the build version and extensions).
const NODE_MESSAGE: &[u8] = b"\x32\x05envoy";

/// The table. Values are `None` when Envoy answers NOT_FOUND.
pub(crate) static ATTRIBUTES: &[Attribute] = &[
    Attribute {
        path: "request.path",
        kind: Kind::String,
        when: "request headers readable",
        seen: true,
        value: |view| request_header(view, ":path"),
    },
    Attribute {
        path: "request.url_path",
        kind: Kind::String,
        when: "request headers readable",
        seen: true,
        value: |view| path_query(view).map(|(path, _)| PropertyValue::String(path)),
    },
    Attribute {
        path: "request.host",
        kind: Kind::String,
        when: "request headers readable",
        seen: true,
        value: |view| request_header(view, ":authority"),
    },
    Attribute {
        path: "request.scheme",
        kind: Kind::String,
        when: "request headers readable",
        seen: true,
        value: |view| request_header(view, ":scheme"),
    },
    Attribute {
        path: "request.method",
        kind: Kind::String,
        when: "request headers readable",
        seen: true,
        value: |view| request_header(view, ":method"),
    },
    Attribute {
        path: "request.referer",
        kind: Kind::String,
        when: "request headers readable and a referer header",
        seen: true,
        value: |view| request_header(view, "referer"),
    },
    Attribute {
        path: "request.useragent",
        kind: Kind::String,
        when: "request headers readable and a user-agent header",
        seen: true,
        value: |view| request_header(view, "user-agent"),
    },
    Attribute {
        path: "request.id",
        kind: Kind::String,
        when: "request headers readable (Envoy reads `x-request-id`, which its connection manager adds; host-sim generates one when the header is absent)",
        seen: true,
        value: |view| {
            view.request_headers?;
            request_header(view, "x-request-id").or_else(|| {
                Some(PropertyValue::String(generated_request_id(
                    view.connection_id,
                )))
            })
        },
    },
    Attribute {
        path: "request.query",
        kind: Kind::String,
        when: "request headers readable (empty without a query)",
        seen: true,
        value: |view| {
            let (_, query) = path_query(view)?;
            let query = query.unwrap_or_default();
            let query = query.split('#').next().unwrap_or_default().to_string();
            Some(PropertyValue::String(query))
        },
    },
    Attribute {
        path: "request.headers",
        kind: Kind::Map,
        when: "any stream callback (empty while the request headers are not readable)",
        seen: true,
        value: |view| Some(headers_map(view.request_headers)),
    },
    Attribute {
        path: "request.headers_bytes",
        kind: Kind::Int,
        when: "any stream callback (0 while the request headers are not readable)",
        seen: true,
        value: |view| Some(PropertyValue::Int(byte_size(view.request_headers))),
    },
    Attribute {
        path: "request.time",
        kind: Kind::Timestamp,
        when: "any stream callback",
        seen: true,
        value: |view| Some(PropertyValue::TimestampNanos(view.start_ns)),
    },
    Attribute {
        path: "request.size",
        kind: Kind::Int,
        when: "any stream callback: content-length when the headers are readable and have it, else the body bytes received",
        seen: true,
        value: |view| {
            if let Some(length) = view
                .request_headers
                .and_then(|headers| headers.get(b"content-length"))
            {
                // An invalid content-length is NOT_FOUND (Envoy's source).
                return std::str::from_utf8(length)
                    .ok()?
                    .parse::<i64>()
                    .ok()
                    .map(PropertyValue::Int);
            }
            Some(PropertyValue::Int(view.bytes_received as i64))
        },
    },
    Attribute {
        path: "request.total_size",
        kind: Kind::Int,
        when: "any stream callback",
        seen: true,
        value: |view| {
            Some(PropertyValue::Int(
                view.bytes_received as i64 + byte_size(view.request_headers),
            ))
        },
    },
    Attribute {
        path: "request.duration",
        kind: Kind::Duration,
        when: "access-log phase (the request is complete)",
        seen: true,
        value: |view| {
            view.complete
                .then(|| PropertyValue::DurationNanos(view.now_ns - view.start_ns))
        },
    },
    Attribute {
        path: "request.protocol",
        kind: Kind::String,
        when: "any stream callback",
        seen: true,
        value: |_| Some("HTTP/1.1".into()),
    },
    Attribute {
        path: "response.code",
        kind: Kind::Int,
        when: "once a response started (upstream or local reply)",
        seen: true,
        value: |view| {
            view.response_code
                .map(|code| PropertyValue::Int(i64::from(code)))
        },
    },
    Attribute {
        path: "response.code_details",
        kind: Kind::String,
        when: "once a response started (`via_upstream` or the local reply's details; Envoy's probe saw `direct_response`, the router's `via_upstream` is from its source)",
        seen: true,
        value: |view| view.response_code_details.map(PropertyValue::from),
    },
    Attribute {
        path: "response.flags",
        kind: Kind::Int,
        when: "any stream callback (0: host-sim has no failure flags)",
        seen: true,
        value: |_| Some(PropertyValue::Int(0)),
    },
    Attribute {
        path: "response.grpc_status",
        kind: Kind::Int,
        when: "once a response started: grpc-status from trailers or headers (source only), else from the HTTP code (seen: 200 gives 2)",
        seen: true,
        value: |view| {
            let from_map = |map: Option<&HeaderMap>| {
                let value = map?.get(b"grpc-status")?;
                std::str::from_utf8(value).ok()?.parse::<i64>().ok()
            };
            from_map(view.response_trailers)
                .or_else(|| from_map(view.response_headers))
                .or_else(|| view.response_code.map(http_to_grpc_status))
                .map(PropertyValue::Int)
        },
    },
    Attribute {
        path: "response.headers",
        kind: Kind::Map,
        when: "any stream callback (empty while the response headers are not readable)",
        seen: true,
        value: |view| Some(headers_map(view.response_headers)),
    },
    Attribute {
        path: "response.headers_bytes",
        kind: Kind::Int,
        when: "any stream callback (0 while the response headers are not readable)",
        seen: true,
        value: |view| Some(PropertyValue::Int(byte_size(view.response_headers))),
    },
    Attribute {
        path: "response.trailers",
        kind: Kind::Map,
        when: "any stream callback (empty while the response trailers are not readable)",
        seen: true,
        value: |view| Some(headers_map(view.response_trailers)),
    },
    Attribute {
        path: "response.size",
        kind: Kind::Int,
        when: "any stream callback: response body bytes sent",
        seen: true,
        value: |view| Some(PropertyValue::Int(view.bytes_sent as i64)),
    },
    Attribute {
        path: "response.total_size",
        kind: Kind::Int,
        when: "any stream callback",
        seen: true,
        value: |view| {
            Some(PropertyValue::Int(
                view.bytes_sent as i64
                    + byte_size(view.response_headers)
                    + byte_size(view.response_trailers),
            ))
        },
    },
    Attribute {
        path: "source.address",
        kind: Kind::String,
        when: "any stream callback",
        seen: true,
        value: |view| Some(format!("127.0.0.1:{}", view.source_port).into()),
    },
    Attribute {
        path: "source.port",
        kind: Kind::Int,
        when: "any stream callback",
        seen: true,
        value: |view| Some(PropertyValue::Int(i64::from(view.source_port))),
    },
    Attribute {
        path: "destination.address",
        kind: Kind::String,
        when: "any stream callback",
        seen: true,
        value: |view| Some(format!("127.0.0.1:{}", view.destination_port).into()),
    },
    Attribute {
        path: "destination.port",
        kind: Kind::Int,
        when: "any stream callback",
        seen: true,
        value: |view| Some(PropertyValue::Int(i64::from(view.destination_port))),
    },
    Attribute {
        path: "connection.id",
        kind: Kind::Uint,
        when: "any stream callback",
        seen: true,
        value: |view| Some(PropertyValue::Uint(view.connection_id)),
    },
    Attribute {
        path: "connection.mtls",
        kind: Kind::Bool,
        when: "any stream callback (false: plaintext)",
        seen: true,
        value: |_| Some(PropertyValue::Bool(false)),
    },
    Attribute {
        path: "connection.requested_server_name",
        kind: Kind::String,
        when: "any stream callback (empty: no TLS)",
        seen: true,
        value: |_| Some("".into()),
    },
    Attribute {
        path: "connection_id",
        kind: Kind::Uint,
        when: "any stream callback",
        seen: true,
        value: |view| Some(PropertyValue::Uint(view.connection_id)),
    },
    Attribute {
        path: "upstream.request_attempt_count",
        kind: Kind::Uint,
        when: "any stream callback (0 until the router picked the upstream host, then 1; always 0 on Envoy's direct-response route)",
        seen: true,
        value: |view| Some(PropertyValue::Uint(view.upstream_selected.into())),
    },
    Attribute {
        path: "upstream.address",
        kind: Kind::String,
        when: "once the request headers reached the router, which picked the upstream host (the differential scenario attributes-upstream-by-phase: from the first request body callback on); NOT_FOUND before, for a local reply and on a direct-response route",
        seen: true,
        value: |view| {
            view.upstream_selected
                .then(|| format!("127.0.0.1:{UPSTREAM_PORT}").into())
        },
    },
    Attribute {
        path: "upstream.port",
        kind: Kind::Int,
        when: "as upstream.address",
        seen: true,
        value: |view| {
            view.upstream_selected
                .then_some(PropertyValue::Int(UPSTREAM_PORT.into()))
        },
    },
    Attribute {
        path: "xds.cluster_name",
        kind: Kind::String,
        when: "a routed request without a local reply, from the request headers on (`upstream`, the cluster of the differential bootstrap's route); NOT_FOUND on a direct-response route",
        seen: true,
        value: |view| view.routed.then(|| "upstream".into()),
    },
    Attribute {
        path: "xds.node",
        kind: Kind::Message,
        when: "every context, root contexts included",
        seen: true,
        value: |_| Some(PropertyValue::Message(NODE_MESSAGE.to_vec())),
    },
    Attribute {
        path: "xds.route_name",
        kind: Kind::String,
        when: "any stream callback (seen with a named route; `cargo xtask run`'s route is unnamed, so empty, from the source)",
        seen: true,
        value: |_| Some("".into()),
    },
    Attribute {
        path: "xds.virtual_host_name",
        kind: Kind::String,
        when: "any stream callback (`direct`, the virtual host of `cargo xtask run`'s bootstrap)",
        seen: true,
        value: |_| Some("direct".into()),
    },
    Attribute {
        path: "xds.filter_chain_name",
        kind: Kind::String,
        when: "any stream callback (empty: an unnamed filter chain)",
        seen: true,
        value: |_| Some("".into()),
    },
    Attribute {
        path: "xds.listener_direction",
        kind: Kind::Int,
        when: "any stream callback (0: UNSPECIFIED)",
        seen: true,
        value: |_| Some(PropertyValue::Int(0)),
    },
    Attribute {
        path: "metadata",
        kind: Kind::Message,
        when: "any stream callback (the stream's dynamic metadata: empty)",
        seen: true,
        value: |_| Some(PropertyValue::Message(Vec::new())),
    },
];

fn attribute_kind(path: &str) -> Option<Kind> {
    ATTRIBUTES
        .iter()
        .find(|attribute| attribute.path == path)
        .map(|attribute| attribute.kind)
}

/// The attribute at `path` (NUL-separated segments) for a stream (`None`: a root context).
///
/// `Ok(Some(bytes))` is the answer, `Ok(None)` means "not a standard attribute" (the caller
/// looks further: test properties, filter state), `Err(status)` is the status Envoy gives.
pub(crate) fn lookup(
    segments: &[&[u8]],
    view: Option<&StreamView<'_>>,
) -> Result<Option<Vec<u8>>, crate::Status> {
    use crate::Status;
    let Some(first) = segments.first() else {
        return Ok(None);
    };
    let Ok(first) = std::str::from_utf8(first) else {
        return Ok(None);
    };
    let is_wrapper = WRAPPERS.contains(&first);
    let top_level = ATTRIBUTES.iter().any(|attribute| attribute.path == first);
    if !is_wrapper && !top_level {
        return Ok(None);
    }
    // `xds.node` is the only one a root context can read: every other token needs the
    // stream's info.
    let node = segments.len() >= 2 && first == "xds" && segments[1] == b"node";
    let Some(view) = view.filter(|_| !node) else {
        return if node {
            Ok(Some(NODE_MESSAGE.to_vec()))
        } else if first == "xds" && segments.len() == 1 {
            // The xDS wrapper exists without stream info (seen).
            Err(Status::SerializationFailure)
        } else {
            Err(Status::NotFound)
        };
    };
    let (name, rest) = if is_wrapper {
        let Some(second) = segments.get(1) else {
            return Err(Status::SerializationFailure);
        };
        let Ok(second) = std::str::from_utf8(second) else {
            return Err(Status::NotFound);
        };
        (format!("{first}.{second}"), &segments[2..])
    } else {
        (first.to_string(), &segments[1..])
    };
    let value = ATTRIBUTES
        .iter()
        .find(|attribute| attribute.path == name)
        .and_then(|attribute| (attribute.value)(view))
        .ok_or(Status::NotFound)?;
    let mut value = &value;
    for segment in rest {
        // Header maps are looked up by lowercased name (Envoy's `LowerCaseString`).
        let segment = if attribute_kind(&name) == Some(Kind::Map) {
            segment.to_ascii_lowercase()
        } else {
            segment.to_vec()
        };
        value = value.child(&segment).ok_or(Status::NotFound)?;
    }
    Ok(Some(value.encode()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_paths_are_unique_and_under_known_wrappers() {
        for (idx, attribute) in ATTRIBUTES.iter().enumerate() {
            assert!(
                ATTRIBUTES[..idx]
                    .iter()
                    .all(|other| other.path != attribute.path),
                "{} twice",
                attribute.path
            );
            if let Some((wrapper, _)) = attribute.path.split_once('.') {
                assert!(WRAPPERS.contains(&wrapper), "{}", attribute.path);
            }
            assert!(!attribute.when.is_empty());
        }
    }

    /// The table as the README shows it.
    #[test]
    fn table() {
        let rows: String = ATTRIBUTES
            .iter()
            .map(|attribute| {
                let origin = if attribute.seen { "seen" } else { "source" };
                format!("{} {:?} {origin}\n", attribute.path, attribute.kind)
            })
            .collect();
        expect_test::expect![[r#"
            request.path String seen
            request.url_path String seen
            request.host String seen
            request.scheme String seen
            request.method String seen
            request.referer String seen
            request.useragent String seen
            request.id String seen
            request.query String seen
            request.headers Map seen
            request.headers_bytes Int seen
            request.time Timestamp seen
            request.size Int seen
            request.total_size Int seen
            request.duration Duration seen
            request.protocol String seen
            response.code Int seen
            response.code_details String seen
            response.flags Int seen
            response.grpc_status Int seen
            response.headers Map seen
            response.headers_bytes Int seen
            response.trailers Map seen
            response.size Int seen
            response.total_size Int seen
            source.address String seen
            source.port Int seen
            destination.address String seen
            destination.port Int seen
            connection.id Uint seen
            connection.mtls Bool seen
            connection.requested_server_name String seen
            connection_id Uint seen
            upstream.request_attempt_count Uint seen
            upstream.address String seen
            upstream.port Int seen
            xds.cluster_name String seen
            xds.node Message seen
            xds.route_name String seen
            xds.virtual_host_name String seen
            xds.filter_chain_name String seen
            xds.listener_direction Int seen
            metadata Message seen
        "#]]
        .assert_eq(&rows);
    }

    #[test]
    fn values_have_the_table_types() {
        let request = HeaderMap::from_pairs([(":path", "/a?b"), ("content-length", "3")]);
        let response = HeaderMap::from_pairs([(":status", "503")]);
        let view = StreamView {
            request_headers: Some(&request),
            response_headers: Some(&response),
            response_trailers: Some(&response),
            response_code: Some(503),
            response_code_details: Some("via_upstream"),
            bytes_received: 3,
            bytes_sent: 0,
            start_ns: 1,
            now_ns: 2,
            complete: true,
            connection_id: 7,
            source_port: 40007,
            destination_port: LISTENER_PORT,
            routed: true,
            upstream_selected: true,
        };
        for attribute in ATTRIBUTES {
            let Some(value) = (attribute.value)(&view) else {
                continue;
            };
            let kind = match value {
                PropertyValue::String(_) => Kind::String,
                PropertyValue::Int(_) => Kind::Int,
                PropertyValue::Uint(_) => Kind::Uint,
                PropertyValue::Bool(_) => Kind::Bool,
                PropertyValue::TimestampNanos(_) => Kind::Timestamp,
                PropertyValue::DurationNanos(_) => Kind::Duration,
                PropertyValue::Map(_) => Kind::Map,
                PropertyValue::Message(_) => Kind::Message,
                other => panic!("{}: unexpected {other:?}", attribute.path),
            };
            assert_eq!(kind, attribute.kind, "{}", attribute.path);
        }
    }
}
