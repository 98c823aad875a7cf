//! The native backend: an in-process fake host, one per thread, so tests run in parallel.
//!
//! It follows Envoy where that is cheap (first value of repeated headers, `NOT_FOUND` for an
//! unknown property, `CAS_MISMATCH`, `EMPTY` queues, `BAD_ARGUMENT` for a counter increment
//! that is not positive) and records what the guest did for [`crate::testing`] to show.

extern crate std;

use alloc::collections::{BTreeMap, VecDeque};
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::RefCell;

use crate::pairs;

/// Header (name, value) pairs as bytes.
type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// A local reply the guest asked for.
///
/// ```
/// let vm = filterkit::testing::Vm::<filterkit::testing::NoFilter>::new();
/// filterkit::http::LocalReply::new(404).body(b"none").send().unwrap();
/// assert_eq!(vm.local_responses()[0].body, b"none");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalResponse {
    /// HTTP status code.
    pub status_code: u32,
    /// Response code details.
    pub details: String,
    /// Headers, lossily decoded.
    pub headers: Vec<(String, String)>,
    /// Body bytes.
    pub body: Vec<u8>,
    /// gRPC status, -1 for none.
    pub grpc_status: i32,
}

/// An http callout the guest dispatched.
///
/// ```
/// use std::time::Duration;
/// let vm = filterkit::testing::Vm::<filterkit::testing::NoFilter>::new();
/// let headers = [(":method", "GET"), (":path", "/"), (":authority", "x")];
/// let token = filterkit::http::call("c", &headers, b"", Duration::ZERO, |_: &mut (), _| {}).unwrap();
/// assert_eq!(vm.http_calls()[0].token, token);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpCall {
    /// The token the fake host returned.
    pub token: u32,
    /// The cluster.
    pub upstream: String,
    /// Request headers, lossily decoded.
    pub headers: Vec<(String, String)>,
    /// Request body.
    pub body: Vec<u8>,
    /// Request trailers, lossily decoded.
    pub trailers: Vec<(String, String)>,
    /// Timeout in milliseconds (0 = none).
    pub timeout_milliseconds: u32,
}

/// A unary gRPC call or a stream the guest started.
///
/// ```
/// use std::time::Duration;
/// let vm = filterkit::testing::Vm::<filterkit::testing::NoFilter>::new();
/// let token = filterkit::grpc::call("authz", "pkg.Auth", "Check", &[("x-id", b"7".as_slice())],
///     b"\x08\x01", Duration::from_secs(1), |_: &mut (), _| {}).unwrap();
/// let call = &vm.grpc_calls()[0];
/// assert_eq!((call.token, call.service.as_str(), call.method.as_str()), (token, "pkg.Auth", "Check"));
/// assert_eq!(call.initial_metadata, [("x-id".to_string(), "7".to_string())]);
/// assert_eq!((call.message.as_deref(), call.timeout_milliseconds), (Some(b"\x08\x01".as_slice()), 1000));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrpcCall {
    /// The token the fake host returned.
    pub token: u32,
    /// The cluster.
    pub upstream: String,
    /// The service, e.g. `envoy.service.auth.v3.Authorization`.
    pub service: String,
    /// The method, e.g. `Check`.
    pub method: String,
    /// Initial metadata, lossily decoded.
    pub initial_metadata: Vec<(String, String)>,
    /// The request message of a unary call; `None` for a stream (`grpc::Stream::open`).
    pub message: Option<Vec<u8>>,
    /// Timeout in milliseconds (0 = none, and for streams).
    pub timeout_milliseconds: u32,
}

/// A shared queue: owning vm_id, name, items.
pub(crate) type Queue = (Vec<u8>, Vec<u8>, VecDeque<Vec<u8>>);

const OK: u32 = 0;
const NOT_FOUND: u32 = 1;
const BAD_ARGUMENT: u32 = 2;
const EMPTY: u32 = 7;
const CAS_MISMATCH: u32 = 8;

/// Everything the fake host knows and everything the guest did to it.
#[derive(Default)]
pub(crate) struct Host {
    pub(crate) log_level: u32,
    pub(crate) logs: Vec<(u32, String)>,
    pub(crate) now_nanoseconds: u64,
    pub(crate) tick_period_milliseconds: u32,
    pub(crate) buffers: BTreeMap<u32, Vec<u8>>,
    pub(crate) maps: BTreeMap<u32, Pairs>,
    pub(crate) properties: BTreeMap<Vec<u8>, Vec<u8>>,
    pub(crate) shared_data: BTreeMap<Vec<u8>, (Vec<u8>, u32)>,
    pub(crate) queues: Vec<Queue>,
    pub(crate) local_responses: Vec<LocalResponse>,
    pub(crate) http_calls: Vec<HttpCall>,
    pub(crate) grpc_calls: Vec<GrpcCall>,
    pub(crate) stream_actions: Vec<String>,
    pub(crate) status: (u32, Vec<u8>),
    pub(crate) effective_context: u32,
    pub(crate) metrics: Vec<(u32, String, u64)>,
    pub(crate) next_token: u32,
    pub(crate) done_calls: u32,
    /// When set, every host function but `proxy_log` answers with this raw status.
    pub(crate) forced_status: Option<u32>,
}

std::thread_local! {
    static HOST: RefCell<Host> = RefCell::new(Host::default());
}

/// Runs `f` on this thread's fake host.
pub(crate) fn with_host<T>(f: impl FnOnce(&mut Host) -> T) -> T {
    HOST.with(|host| f(&mut host.borrow_mut()))
}

fn call<T>(f: impl FnOnce(&mut Host) -> Result<T, u32>) -> Result<T, u32> {
    with_host(|host| match host.forced_status {
        Some(raw) => Err(raw),
        None => f(host),
    })
}

fn status(f: impl FnOnce(&mut Host) -> u32) -> u32 {
    with_host(|host| host.forced_status.unwrap_or_else(|| f(host)))
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

pub(super) fn log(level: u32, message: &[u8]) -> u32 {
    // Not subject to `forced_status`: tests of error paths need to see what was logged.
    with_host(|host| {
        if level >= host.log_level {
            host.logs.push((level, lossy(message)));
        }
        OK
    })
}

pub(super) fn get_log_level() -> Result<u32, u32> {
    call(|host| Ok(host.log_level))
}

pub(super) fn get_current_time_nanoseconds() -> Result<u64, u32> {
    call(|host| Ok(host.now_nanoseconds))
}

#[cfg(feature = "tick")]
pub(super) fn set_tick_period_milliseconds(period: u32) -> u32 {
    status(|host| {
        host.tick_period_milliseconds = period;
        OK
    })
}

pub(super) fn get_buffer_bytes(
    buffer_type: u32,
    start: usize,
    max_size: usize,
) -> Result<Vec<u8>, u32> {
    call(|host| {
        let buffer = host.buffers.get(&buffer_type).ok_or(NOT_FOUND)?;
        let start = start.min(buffer.len());
        let end = start.saturating_add(max_size).min(buffer.len());
        Ok(buffer[start..end].to_vec())
    })
}

pub(super) fn set_buffer_bytes(buffer_type: u32, start: usize, size: usize, data: &[u8]) -> u32 {
    status(|host| {
        let buffer = host.buffers.entry(buffer_type).or_default();
        // Envoy supports prepend, replace from the start, and append only.
        if start == 0 {
            let end = size.min(buffer.len());
            buffer.splice(0..end, data.iter().copied());
            OK
        } else if start >= buffer.len() {
            buffer.extend_from_slice(data);
            OK
        } else {
            BAD_ARGUMENT
        }
    })
}

pub(super) fn get_buffer_status(buffer_type: u32) -> Result<(usize, u32), u32> {
    call(|host| {
        let buffer = host.buffers.get(&buffer_type).ok_or(NOT_FOUND)?;
        Ok((buffer.len(), 0))
    })
}

fn map(host: &mut Host, map_type: u32) -> Result<&mut Pairs, u32> {
    host.maps.get_mut(&map_type).ok_or(BAD_ARGUMENT)
}

pub(super) fn get_header_map_pairs(map_type: u32) -> Result<Vec<u8>, u32> {
    call(|host| {
        let Some(map) = host.maps.get(&map_type) else {
            return Ok(pairs::serialize::<&[u8], &[u8]>(&[]));
        };
        let borrowed: Vec<(&[u8], &[u8])> = map
            .iter()
            .map(|(key, value)| (key.as_slice(), value.as_slice()))
            .collect();
        Ok(pairs::serialize(&borrowed))
    })
}

pub(super) fn set_header_map_pairs(map_type: u32, serialized: &[u8]) -> u32 {
    status(|host| match pairs::deserialize(serialized) {
        Some(decoded) => {
            host.maps.insert(map_type, decoded);
            OK
        }
        None => BAD_ARGUMENT,
    })
}

pub(super) fn get_header_map_value(map_type: u32, key: &[u8]) -> Result<Vec<u8>, u32> {
    call(|host| {
        let map = map(host, map_type)?;
        map.iter()
            .find(|(name, _)| name.as_slice() == key)
            .map(|(_, value)| value.clone())
            .ok_or(NOT_FOUND)
    })
}

pub(super) fn replace_header_map_value(map_type: u32, key: &[u8], value: &[u8]) -> u32 {
    status(|host| match map(host, map_type) {
        Ok(map) => {
            map.retain(|(name, _)| name.as_slice() != key);
            map.push((key.to_vec(), value.to_vec()));
            OK
        }
        Err(raw) => raw,
    })
}

pub(super) fn remove_header_map_value(map_type: u32, key: &[u8]) -> u32 {
    status(|host| match map(host, map_type) {
        Ok(map) => {
            map.retain(|(name, _)| name.as_slice() != key);
            OK
        }
        Err(raw) => raw,
    })
}

pub(super) fn add_header_map_value(map_type: u32, key: &[u8], value: &[u8]) -> u32 {
    status(|host| match map(host, map_type) {
        Ok(map) => {
            map.push((key.to_vec(), value.to_vec()));
            OK
        }
        Err(raw) => raw,
    })
}

pub(super) fn get_header_map_size(map_type: u32) -> Result<usize, u32> {
    get_header_map_pairs(map_type).map(|serialized| serialized.len())
}

pub(super) fn get_property(path: &[u8]) -> Result<Vec<u8>, u32> {
    call(|host| host.properties.get(path).cloned().ok_or(NOT_FOUND))
}

pub(super) fn set_property(path: &[u8], value: &[u8]) -> u32 {
    status(|host| {
        host.properties.insert(path.to_vec(), value.to_vec());
        OK
    })
}

pub(super) fn get_shared_data(key: &[u8]) -> Result<(Vec<u8>, u32), u32> {
    call(|host| host.shared_data.get(key).cloned().ok_or(NOT_FOUND))
}

pub(super) fn set_shared_data(key: &[u8], value: &[u8], cas: u32) -> u32 {
    status(|host| {
        let current = host.shared_data.get(key).map_or(0, |(_, cas)| *cas);
        if cas != 0 && cas != current {
            return CAS_MISMATCH;
        }
        host.shared_data.insert(
            key.to_vec(),
            (value.to_vec(), current.wrapping_add(1).max(1)),
        );
        OK
    })
}

pub(super) fn register_shared_queue(name: &[u8]) -> Result<u32, u32> {
    call(|host| {
        let vm_id = Vec::new();
        if let Some(idx) = host
            .queues
            .iter()
            .position(|(vm, queue, _)| *vm == vm_id && queue.as_slice() == name)
        {
            return Ok(idx as u32 + 1);
        }
        host.queues.push((vm_id, name.to_vec(), VecDeque::new()));
        Ok(host.queues.len() as u32)
    })
}

pub(super) fn resolve_shared_queue(vm_id: &[u8], name: &[u8]) -> Result<u32, u32> {
    call(|host| {
        host.queues
            .iter()
            .position(|(vm, queue, _)| vm.as_slice() == vm_id && queue.as_slice() == name)
            .map(|idx| idx as u32 + 1)
            .ok_or(NOT_FOUND)
    })
}

fn queue(host: &mut Host, queue_id: u32) -> Result<&mut VecDeque<Vec<u8>>, u32> {
    let idx = (queue_id as usize).checked_sub(1).ok_or(NOT_FOUND)?;
    host.queues
        .get_mut(idx)
        .map(|(_, _, items)| items)
        .ok_or(NOT_FOUND)
}

pub(super) fn dequeue_shared_queue(queue_id: u32) -> Result<Vec<u8>, u32> {
    call(|host| queue(host, queue_id)?.pop_front().ok_or(EMPTY))
}

pub(super) fn enqueue_shared_queue(queue_id: u32, value: &[u8]) -> u32 {
    status(|host| match queue(host, queue_id) {
        Ok(items) => {
            items.push_back(value.to_vec());
            OK
        }
        Err(raw) => raw,
    })
}

fn stream_name(stream_type: u32) -> &'static str {
    match stream_type {
        0 => "request",
        1 => "response",
        2 => "downstream",
        3 => "upstream",
        _ => "unknown",
    }
}

pub(super) fn continue_stream(stream_type: u32) -> u32 {
    status(|host| {
        let line = alloc::format!("continue {}", stream_name(stream_type));
        host.stream_actions.push(line);
        OK
    })
}

pub(super) fn close_stream(stream_type: u32) -> u32 {
    status(|host| {
        let line = alloc::format!("close {}", stream_name(stream_type));
        host.stream_actions.push(line);
        OK
    })
}

fn decode_pairs(serialized: &[u8]) -> Option<Vec<(String, String)>> {
    let decoded = pairs::deserialize(serialized)?;
    Some(
        decoded
            .iter()
            .map(|(key, value)| (lossy(key), lossy(value)))
            .collect(),
    )
}

pub(super) fn send_local_response(
    status_code: u32,
    details: &[u8],
    body: &[u8],
    serialized_headers: &[u8],
    grpc_status: i32,
) -> u32 {
    status(|host| {
        let Some(headers) = decode_pairs(serialized_headers) else {
            return BAD_ARGUMENT;
        };
        host.local_responses.push(LocalResponse {
            status_code,
            details: lossy(details),
            headers,
            body: body.to_vec(),
            grpc_status,
        });
        OK
    })
}

pub(super) fn http_call(
    upstream: &[u8],
    serialized_headers: &[u8],
    body: &[u8],
    serialized_trailers: &[u8],
    timeout_milliseconds: u32,
) -> Result<u32, u32> {
    call(|host| {
        let headers = decode_pairs(serialized_headers).ok_or(BAD_ARGUMENT)?;
        let trailers = decode_pairs(serialized_trailers).ok_or(BAD_ARGUMENT)?;
        // Envoy refuses a call without these pseudo-headers at once.
        for required in [":method", ":path", ":authority"] {
            if !headers.iter().any(|(name, _)| name == required) {
                return Err(BAD_ARGUMENT);
            }
        }
        host.next_token += 1;
        let token = host.next_token;
        host.http_calls.push(HttpCall {
            token,
            upstream: lossy(upstream),
            headers,
            body: body.to_vec(),
            trailers,
            timeout_milliseconds,
        });
        Ok(token)
    })
}

pub(super) fn grpc_call(
    upstream: &[u8],
    service: &[u8],
    method: &[u8],
    serialized_initial_metadata: &[u8],
    message: &[u8],
    timeout_milliseconds: u32,
) -> Result<u32, u32> {
    call(|host| {
        let initial_metadata = decode_pairs(serialized_initial_metadata).ok_or(BAD_ARGUMENT)?;
        host.next_token += 1;
        let token = host.next_token;
        host.grpc_calls.push(GrpcCall {
            token,
            upstream: lossy(upstream),
            service: lossy(service),
            method: lossy(method),
            initial_metadata,
            message: Some(message.to_vec()),
            timeout_milliseconds,
        });
        Ok(token)
    })
}

pub(super) fn grpc_stream(
    upstream: &[u8],
    service: &[u8],
    method: &[u8],
    serialized_initial_metadata: &[u8],
) -> Result<u32, u32> {
    call(|host| {
        let initial_metadata = decode_pairs(serialized_initial_metadata).ok_or(BAD_ARGUMENT)?;
        host.next_token += 1;
        let token = host.next_token;
        host.grpc_calls.push(GrpcCall {
            token,
            upstream: lossy(upstream),
            service: lossy(service),
            method: lossy(method),
            initial_metadata,
            message: None,
            timeout_milliseconds: 0,
        });
        Ok(token)
    })
}

pub(super) fn grpc_send(_token: u32, _message: &[u8], _end_stream: u32) -> u32 {
    status(|_| OK)
}

pub(super) fn grpc_cancel(_token: u32) -> u32 {
    status(|_| OK)
}

pub(super) fn grpc_close(_token: u32) -> u32 {
    status(|_| OK)
}

pub(super) fn get_status() -> Result<(u32, Vec<u8>), u32> {
    call(|host| Ok(host.status.clone()))
}

pub(super) fn set_effective_context(context_id: u32) -> u32 {
    status(|host| {
        host.effective_context = context_id;
        OK
    })
}

pub(super) fn call_foreign_function(_name: &[u8], _arguments: &[u8]) -> Result<Vec<u8>, u32> {
    call(|_| Err(NOT_FOUND))
}

pub(super) fn define_metric(metric_type: u32, name: &[u8]) -> Result<u32, u32> {
    call(|host| {
        if metric_type > 2 {
            return Err(BAD_ARGUMENT);
        }
        let name = lossy(name);
        if let Some(idx) = host
            .metrics
            .iter()
            .position(|(kind, known, _)| *kind == metric_type && *known == name)
        {
            return Ok(idx as u32 + 1);
        }
        host.metrics.push((metric_type, name, 0));
        Ok(host.metrics.len() as u32)
    })
}

fn metric(host: &mut Host, metric_id: u32) -> Result<&mut (u32, String, u64), u32> {
    let idx = (metric_id as usize).checked_sub(1).ok_or(NOT_FOUND)?;
    host.metrics.get_mut(idx).ok_or(NOT_FOUND)
}

pub(super) fn increment_metric(metric_id: u32, offset: i64) -> u32 {
    status(|host| match metric(host, metric_id) {
        Ok((0, _, value)) if offset > 0 => {
            *value = value.wrapping_add(offset as u64);
            OK
        }
        Ok((1, _, value)) => {
            *value = value.wrapping_add_signed(offset);
            OK
        }
        Ok(_) => BAD_ARGUMENT,
        Err(raw) => raw,
    })
}

pub(super) fn record_metric(metric_id: u32, value: u64) -> u32 {
    status(|host| match metric(host, metric_id) {
        Ok((_, _, current)) => {
            *current = value;
            OK
        }
        Err(raw) => raw,
    })
}

pub(super) fn get_metric(metric_id: u32) -> Result<u64, u32> {
    call(|host| match metric(host, metric_id)? {
        (2, _, _) => Err(BAD_ARGUMENT),
        (_, _, value) => Ok(*value),
    })
}

pub(super) fn done() -> u32 {
    status(|host| {
        host.done_calls += 1;
        OK
    })
}
