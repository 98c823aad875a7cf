//! The state of one TCP connection context (Envoy's network filter `envoy.filters.network.wasm`
//! in front of `tcp_proxy`), as the host functions see it: the two data buffers (buffer types 2
//! and 3) and the connection's properties. [`crate::sim`]'s `tcp` module drives it.

use std::collections::BTreeMap;

use crate::abi::BufferType;
use crate::attributes::UPSTREAM_PORT;
use crate::property::PropertyValue;

/// A property path from its dotted name.
fn path(name: &str) -> Vec<Vec<u8>> {
    name.split('.')
        .map(|segment| segment.as_bytes().to_vec())
        .collect()
}

/// Who closed a connection, and how the filter heard of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CloseType {
    /// `CloseType::Unknown` (0): what `proxy_on_upstream_connection_close` always gets.
    Unknown = 0,
    /// Envoy closed the downstream connection (`ConnectionEvent::LocalClose`).
    Local = 1,
    /// The client closed it (`ConnectionEvent::RemoteClose`).
    Remote = 2,
}

/// One plugin's network filter on a connection. A connection through several plugins has one
/// context each; the first (the lead) holds what they share: the chain, Envoy's read and write
/// buffers, what passed, and the close. The other filters' buffers hold the data only while
/// their callback runs.
#[derive(Debug, Default)]
pub(crate) struct ConnectionData {
    /// The VM the connection was created on ([`crate::Sim`]'s generation).
    pub(crate) generation: u32,
    pub(crate) plugin: usize,
    pub(crate) root: u32,
    /// The first filter's context (its own id for the first filter).
    pub(crate) lead: u32,
    /// On the lead: every filter's context, in the filter chain's order.
    pub(crate) chain: Vec<u32>,
    /// `proxy_on_new_connection` ran (Envoy's `initialized_` per read filter).
    pub(crate) initialized: bool,
    /// Envoy created no filter for it (FAIL_OPEN on a failed VM): bytes pass untouched.
    pub(crate) without_filter: bool,
    /// Envoy's read buffer: bytes from the client the filter has not let through yet.
    pub(crate) read_buffer: Vec<u8>,
    /// The client half-closed (end of stream read).
    pub(crate) read_end: bool,
    /// Upstream bytes the filter has not let through yet.
    pub(crate) write_buffer: Vec<u8>,
    /// The upstream half-closed.
    pub(crate) write_end: bool,
    /// Buffer 2 / 3 is readable: set for the data callback, kept while the filter holds the
    /// data (Envoy keeps `network_*_data_buffer_` unless the callback answered Continue).
    pub(crate) downstream_available: bool,
    pub(crate) upstream_available: bool,
    /// `proxy_on_new_connection` stopped iteration: Envoy delivers no data to the filter
    /// until `proxy_continue_stream(DOWNSTREAM)`.
    pub(crate) new_connection_paused: bool,
    /// `proxy_on_upstream_data` stopped iteration: nothing more reaches the client (there is
    /// no continue for the upstream direction); later reads still call the filter.
    pub(crate) upstream_paused: bool,
    /// What passed the filter towards upstream, and whether the end of stream did.
    pub(crate) upstream_bytes: Vec<u8>,
    pub(crate) upstream_end_sent: bool,
    /// What passed the filter towards the client, and whether the end of stream did.
    pub(crate) downstream_bytes: Vec<u8>,
    pub(crate) downstream_end_sent: bool,
    /// Why the downstream connection closed, once it did.
    pub(crate) closed: Option<(CloseType, &'static str)>,
    pub(crate) properties: BTreeMap<Vec<Vec<u8>>, PropertyValue>,
}

impl ConnectionData {
    /// Buffer 2 or 3 as Envoy's `getBuffer` finds it: the data while the callback (or a
    /// pause) holds it, mutable; otherwise empty and immutable (Envoy wraps a null buffer).
    pub(crate) fn buffer(&self, buffer: BufferType) -> (&[u8], bool) {
        match buffer {
            BufferType::DownstreamData if self.downstream_available => (&self.read_buffer, true),
            BufferType::UpstreamData if self.upstream_available => (&self.write_buffer, true),
            _ => (&[][..], false),
        }
    }

    /// tcp_proxy connected upstream: from now on `upstream.address` answers (seen in Envoy
    /// 1.40 in every callback after `proxy_on_new_connection`: differential
    /// `tcp-upstream-address-by-callback`), unless the test set it.
    pub(crate) fn upstream_connected(&mut self) {
        self.properties
            .entry(path("upstream.address"))
            .or_insert_with(|| PropertyValue::String(format!("127.0.0.1:{UPSTREAM_PORT}")));
    }

    /// The mutable buffer for `proxy_set_buffer_bytes`.
    pub(crate) fn buffer_mut(&mut self, buffer: BufferType) -> Option<&mut Vec<u8>> {
        match buffer {
            BufferType::DownstreamData if self.downstream_available => Some(&mut self.read_buffer),
            BufferType::UpstreamData if self.upstream_available => Some(&mut self.write_buffer),
            _ => None,
        }
    }
}

/// The connection properties Envoy 1.40 answers in `proxy_on_new_connection` (seen there:
/// `source.address` and `destination.address` as `ip:port` strings, `source.port` int64,
/// `connection.id` uint64, `connection.mtls` bool, `connection.requested_server_name` empty;
/// `upstream.address` NOT_FOUND before tcp_proxy connects: [`ConnectionData::upstream_connected`]).
/// The test can override any.
pub(crate) fn default_properties(connection_id: u64) -> BTreeMap<Vec<Vec<u8>>, PropertyValue> {
    [
        (
            "source.address",
            PropertyValue::String("127.0.0.1:50000".into()),
        ),
        ("source.port", PropertyValue::Int(50000)),
        (
            "destination.address",
            PropertyValue::String("127.0.0.1:10000".into()),
        ),
        ("destination.port", PropertyValue::Int(10000)),
        ("connection.id", PropertyValue::Uint(connection_id)),
        ("connection.mtls", PropertyValue::Bool(false)),
        (
            "connection.requested_server_name",
            PropertyValue::String(String::new()),
        ),
    ]
    .into_iter()
    .map(|(name, value)| (path(name), value))
    .collect()
}
