//! The state each simulated VM keeps: contexts, streams, callouts, shared data, queues,
//! metrics, logs and the trace, and what the host functions read and change.

use std::collections::{BTreeMap, HashMap, VecDeque};

use wasmtime::{Memory, TypedFunc};

use super::World;
use crate::abi::{self, Status};
use crate::connection::ConnectionData;
use crate::headers::HeaderMap;
use crate::property::PropertyValue;

/// An error a host function raises to trap the guest (not a host-sim bug).
#[derive(Debug)]
pub(crate) struct HostTrap(pub(crate) String);

impl std::fmt::Display for HostTrap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for HostTrap {}

/// A log line the guest wrote (through `proxy_log` or `fd_write`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    /// Proxy-Wasm level: 0 trace, 1 debug, 2 info, 3 warn, 4 error, 5 critical.
    pub level: u32,
    /// The root_id of the plugin whose context logged.
    pub root_id: String,
    /// The context that logged.
    pub context_id: u32,
    /// The message (invalid UTF-8 replaced).
    pub message: String,
}

impl LogEntry {
    /// The level's name (`info`, `error`, ...).
    pub fn level_name(&self) -> &'static str {
        crate::trace::level_name(u64::from(self.level))
    }
}

/// A local reply the filter sent (`proxy_send_local_response`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalReply {
    /// HTTP status code.
    pub status_code: u32,
    /// Response code details (whitespace replaced by `_`, as Envoy does).
    pub details: String,
    /// Body.
    pub body: Vec<u8>,
    /// Additional headers the filter asked for.
    pub headers: Vec<(String, String)>,
    /// gRPC status, if in Envoy's known range (0..=16); -1 and others mean none.
    pub grpc_status: Option<u32>,
}

/// An outbound HTTP call the filter made (`proxy_http_call`), waiting for the test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpCallout {
    /// The token the guest got.
    pub token: u32,
    /// The root context that will receive `proxy_on_http_call_response` (Envoy's `http_call`
    /// runs on the caller's root context).
    pub context_id: u32,
    /// The context that made the call: a stream, or the root context itself.
    pub origin_context_id: u32,
    /// The cluster name.
    pub cluster: String,
    /// Request headers (lowercased).
    pub headers: HeaderMap,
    /// Request body.
    pub body: Vec<u8>,
    /// Request trailers.
    pub trailers: HeaderMap,
    /// The timeout in milliseconds (0 = none).
    pub timeout_ms: u32,
    /// Virtual time (ns since the sim started) when it times out.
    pub(crate) deadline: Option<u64>,
}

/// A gRPC call or stream the filter started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrpcCallout {
    /// The token the guest got (calls: 4n+1, streams: 4n+2, as Envoy numbers them).
    pub token: u32,
    /// The root context that will receive the gRPC callbacks (Envoy's `grpc_call` and
    /// `grpc_stream` run on the caller's root context).
    pub context_id: u32,
    /// The context that made the call: a stream, or the root context itself.
    pub origin_context_id: u32,
    /// The cluster (the `grpc_service` argument).
    pub cluster: String,
    /// Service name.
    pub service: String,
    /// Method name.
    pub method: String,
    /// Initial metadata.
    pub initial_metadata: HeaderMap,
    /// Messages sent (the request for a call; each `proxy_grpc_send` for a stream).
    pub messages: Vec<Vec<u8>>,
    /// Whether this is a stream (`proxy_grpc_stream`).
    pub is_stream: bool,
    /// Whether the guest closed the stream with `proxy_grpc_close` (Envoy's `local_closed_`;
    /// `proxy_grpc_send` with end_of_stream only half-closes the gRPC stream and does not set
    /// it, as in Envoy's `grpcSend`).
    pub local_closed: bool,
    /// Timeout in milliseconds (calls only).
    pub timeout_ms: u32,
    /// Virtual time (ns since the sim started) when a call times out.
    pub(crate) deadline: Option<u64>,
    /// The remote side closed a stream the guest has not closed (Envoy's `remote_closed_`):
    /// no more events; `proxy_grpc_close` then forgets it.
    pub(crate) remote_closed: bool,
}

/// A metric the guest defined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Metric {
    pub(crate) kind: u32,
    pub(crate) name: String,
}

/// A value recorded for a metric name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MetricValue {
    /// 0 counter, 1 gauge, 2 histogram.
    pub kind: u32,
    /// Counter total or gauge value; for a histogram, the last recorded value.
    pub value: u64,
    /// For a histogram, how many values were recorded.
    pub count: u64,
}

/// A shared queue.
#[derive(Debug, Default)]
pub(crate) struct Queue {
    /// The worker whose root context registered the queue last (Envoy wakes that one).
    pub(crate) worker: usize,
    pub(crate) vm_id: String,
    pub(crate) name: String,
    pub(crate) context_id: u32,
    pub(crate) items: VecDeque<Vec<u8>>,
}

/// One plugin (root_id) loaded in the VM.
#[derive(Debug, Clone)]
pub(crate) struct PluginState {
    pub(crate) root_id: String,
    pub(crate) name: String,
    pub(crate) configuration: Vec<u8>,
    pub(crate) root_context_id: u32,
    pub(crate) allow_on_headers_stop_iteration: bool,
    pub(crate) tick_period_ms: u32,
    pub(crate) next_tick: Option<u64>,
    pub(crate) status_code: u32,
    pub(crate) status_message: Vec<u8>,
    pub(crate) pending_done: bool,
}

/// Which maps a stream's context can reach right now.
pub(crate) mod avail {
    pub(crate) const REQUEST_HEADERS: u8 = 1;
    pub(crate) const REQUEST_TRAILERS: u8 = 2;
    pub(crate) const RESPONSE_HEADERS: u8 = 4;
    pub(crate) const RESPONSE_TRAILERS: u8 = 8;
    pub(crate) const REQUEST_BODY: u8 = 16;
    pub(crate) const RESPONSE_BODY: u8 = 32;
}

/// The state of one HTTP stream (a stream context).
#[derive(Debug, Default)]
pub(crate) struct StreamData {
    /// The VM the stream was created on ([`crate::Sim`]'s generation).
    pub(crate) generation: u32,
    pub(crate) plugin: usize,
    pub(crate) root: u32,
    pub(crate) created: bool,
    pub(crate) request_headers: HeaderMap,
    pub(crate) request_trailers: Option<HeaderMap>,
    pub(crate) response_headers: HeaderMap,
    pub(crate) response_trailers: Option<HeaderMap>,
    pub(crate) avail: u8,
    pub(crate) access_log_phase: bool,
    pub(crate) end_of_stream: bool,
    /// The body buffer the guest sees (cumulative while buffering).
    pub(crate) request_body: Vec<u8>,
    pub(crate) response_body: Vec<u8>,
    /// What passed the filter.
    pub(crate) upstream_body: Vec<u8>,
    pub(crate) downstream_body: Vec<u8>,
    pub(crate) request_buffering: bool,
    pub(crate) response_buffering: bool,
    pub(crate) local_reply: Option<LocalReply>,
    /// The local reply a chain routes (`sim::chain`): its status and details are the
    /// stream's `response.code` and `response.code_details`.
    pub(crate) chain_local_reply: Option<(u32, String)>,
    pub(crate) reset: Option<&'static str>,
    pub(crate) filter_state: Vec<(Vec<u8>, Vec<u8>)>,
    pub(crate) properties: BTreeMap<Vec<Vec<u8>>, PropertyValue>,
    /// Request processing is stopped (headers StopAllIteration*, body or trailers stop).
    pub(crate) request_paused: bool,
    pub(crate) response_paused: bool,
    /// Events Envoy holds while the filter is paused, delivered on continue.
    pub(crate) request_queue: Vec<Queued>,
    pub(crate) response_queue: Vec<Queued>,
    /// Body data held by a StopIterationAndWatermark answer, released on continue.
    pub(crate) request_held: Vec<u8>,
    pub(crate) response_held: Vec<u8>,
    /// No more callbacks for this stream (local reply sent, reset, or failed).
    pub(crate) ended: bool,
    pub(crate) response_started: bool,
    /// The filter let the response headers through (Envoy's `non_100_response_headers_encoded_`).
    pub(crate) response_headers_sent: bool,
    /// The filter let the request headers through.
    pub(crate) request_headers_sent: bool,
    /// The last request / response event reached the filter (end of stream or trailers).
    pub(crate) request_in_ended: bool,
    pub(crate) response_in_ended: bool,
    /// The stream is one filter of a chain: what passes is recorded for the next filter,
    /// and local replies are left to the chain (`sim::chain`).
    pub(crate) chained: bool,
    /// What passed the filter since the chain last looked: request, response.
    pub(crate) passed: [Vec<Passed>; 2],
    /// A local reply the filter (or Envoy for it) asked for, for the chain to route.
    pub(crate) chain_reply: Option<LocalReply>,
    /// The filter continued; what Envoy held for it (request, response) is delivered once
    /// the headers it let through went down the chain.
    pub(crate) held_pending: [bool; 2],
    /// When the stream was created (virtual ns since the sim started): `request.time`.
    pub(crate) started_ns: u64,
    /// The request headers left the chain: the router picked the upstream host (`sim::chain`).
    pub(crate) upstream_selected: bool,
    /// The filter's request-headers callback is running (`proxy_continue_stream(RESPONSE)`
    /// there crashes Envoy 1.40).
    pub(crate) in_request_headers_callback: bool,
}

/// An event that passed a filter, in order, for the next filter of a chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Passed {
    Headers(HeaderMap, bool),
    Body(Vec<u8>, bool),
    Trailers(HeaderMap),
}

/// An event Envoy holds for a paused filter.
#[derive(Debug, Clone)]
pub(crate) enum Queued {
    Body(Vec<u8>, bool),
    Trailers(HeaderMap),
}

/// Work Envoy defers until the outermost VM call returns (`addAfterVmCallAction`).
#[derive(Debug)]
pub(crate) enum After {
    LocalReply {
        context_id: u32,
        reply: LocalReply,
    },
    Continue {
        context_id: u32,
        stream_type: u32,
    },
    Close {
        context_id: u32,
        stream_type: u32,
    },
    /// `proxy_continue_stream(DOWNSTREAM)` on a TCP connection (`continueReading`).
    ContinueConnection {
        context_id: u32,
    },
    /// `proxy_close_stream(DOWNSTREAM or UPSTREAM)` on a TCP connection: both close the
    /// downstream connection (`wasm_downstream_close` / `wasm_upstream_close`).
    CloseConnection {
        context_id: u32,
        stream_type: u32,
    },
    /// A root context that finished with `proxy_done` is deleted (cpp-host `WasmBase::done`
    /// defers the deletion until the callback returns).
    DeleteRoot {
        context_id: u32,
    },
}

/// A function the test registers for `proxy_call_foreign_function`.
pub type ForeignFunction = Box<dyn Fn(&[u8]) -> Result<Vec<u8>, Status> + Send + Sync>;

/// Everything one VM's store holds.
pub(crate) struct HostState {
    /// What every VM of the simulation shares; only the active VM's store holds it.
    pub(crate) world: World,
    pub(crate) memory: Option<Memory>,
    pub(crate) malloc: Option<TypedFunc<u32, u32>>,
    pub(crate) abi: abi::AbiVersion,
    /// Set while `_initialize` / `main` / `malloc` run: only some imports may be called.
    pub(crate) restricted: Restriction,
    pub(crate) current: u32,
    pub(crate) effective: u32,
    pub(crate) vm_id: String,
    pub(crate) vm_configuration: Vec<u8>,
    pub(crate) plugins: Vec<PluginState>,
    pub(crate) root_contexts: HashMap<u32, usize>,
    pub(crate) streams: HashMap<u32, StreamData>,
    /// TCP connection contexts (network filter).
    pub(crate) connections: HashMap<u32, ConnectionData>,
    /// The plugin whose configuration is readable (buffer 7): set around `proxy_on_configure`
    /// and the root context's creation, like Envoy's `temp_plugin_`.
    pub(crate) temp_plugin: Option<usize>,
    pub(crate) call_data: Vec<u8>,
    pub(crate) http_call_response: Option<HttpResponseData>,
    pub(crate) grpc_receive_buffer: Option<Vec<u8>>,
    pub(crate) grpc_initial_metadata: Option<HeaderMap>,
    pub(crate) grpc_trailing_metadata: Option<HeaderMap>,
    /// Which worker VM this is (0 when there is one).
    pub(crate) worker: usize,
    pub(crate) metrics: BTreeMap<u32, Metric>,
    pub(crate) next_counter: u32,
    pub(crate) next_gauge: u32,
    pub(crate) next_histogram: u32,
    pub(crate) clusters: Vec<String>,
    pub(crate) http_callouts: BTreeMap<u32, HttpCallout>,
    pub(crate) next_http_call: u32,
    /// The last `envoy_resolve_dns` token (Envoy's `nextDnsToken`: 2, 3, ... as seen).
    pub(crate) next_dns_token: u32,
    pub(crate) grpc_callouts: BTreeMap<u32, GrpcCallout>,
    pub(crate) next_grpc_call: u32,
    pub(crate) next_grpc_stream: u32,
    pub(crate) foreign_functions: HashMap<String, std::sync::Arc<ForeignFunction>>,
    pub(crate) properties: BTreeMap<Vec<Vec<u8>>, PropertyValue>,
    pub(crate) environment: Vec<(String, String)>,
    pub(crate) epoch_ns: u64,
    pub(crate) log_level: u32,
    pub(crate) after: Vec<After>,
    pub(crate) stop_next_iteration: bool,
    pub(crate) failed: bool,
    /// Host functions whose every call answers this status without effect
    /// ([`crate::SimBuilder::inject`]).
    pub(crate) injected: HashMap<String, Status>,
    /// Strict mode: the only host functions the guest may call ([`crate::SimBuilder::strict`]).
    pub(crate) allowed: Option<Vec<String>>,
    /// The memory cap (V8's in Envoy), enforced by wasmtime through [`HostState::limits`].
    pub(crate) limits: wasmtime::StoreLimits,
}

/// The response handed to `proxy_on_http_call_response`.
#[derive(Debug, Clone, Default)]
pub(crate) struct HttpResponseData {
    pub(crate) headers: HeaderMap,
    pub(crate) body: Vec<u8>,
    pub(crate) trailers: Option<HeaderMap>,
}

/// Which imports may be called right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Restriction {
    None,
    /// `WasmBase::startVm`'s list.
    Start,
    /// `WasmBase::allocMemory`'s list (inside `malloc`).
    Malloc,
}

impl HostState {
    pub(crate) fn new(abi: abi::AbiVersion, trace: bool) -> HostState {
        HostState {
            world: World::new(trace),
            memory: None,
            malloc: None,
            abi,
            restricted: Restriction::None,
            current: 0,
            effective: 0,
            vm_id: String::new(),
            vm_configuration: Vec::new(),
            plugins: Vec::new(),
            root_contexts: HashMap::new(),
            streams: HashMap::new(),
            connections: HashMap::new(),
            temp_plugin: None,
            call_data: Vec::new(),
            http_call_response: None,
            grpc_receive_buffer: None,
            grpc_initial_metadata: None,
            grpc_trailing_metadata: None,
            worker: 0,
            metrics: BTreeMap::new(),
            next_counter: 0,
            next_gauge: 1,
            next_histogram: 2,
            clusters: Vec::new(),
            http_callouts: BTreeMap::new(),
            next_http_call: 0,
            next_dns_token: 1,
            grpc_callouts: BTreeMap::new(),
            next_grpc_call: 1,
            next_grpc_stream: 2,
            foreign_functions: HashMap::new(),
            properties: BTreeMap::new(),
            environment: Vec::new(),
            epoch_ns: 1_767_225_600_000_000_000,
            log_level: 2,
            after: Vec::new(),
            stop_next_iteration: false,
            failed: false,
            injected: HashMap::new(),
            allowed: None,
            limits: memory_limits(MAX_MEMORY_BYTES),
        }
    }

    /// `contextOrEffectiveContext()`.
    pub(crate) fn context(&self) -> u32 {
        if self.effective != 0 && self.context_exists(self.effective) {
            self.effective
        } else {
            self.current
        }
    }

    pub(crate) fn context_exists(&self, id: u32) -> bool {
        self.root_contexts.contains_key(&id)
            || self.streams.contains_key(&id)
            || self.connections.contains_key(&id)
    }

    /// The plugin a context belongs to.
    pub(crate) fn plugin_of(&self, id: u32) -> Option<usize> {
        self.root_contexts
            .get(&id)
            .copied()
            .or_else(|| self.streams.get(&id).map(|stream| stream.plugin))
            .or_else(|| {
                self.connections
                    .get(&id)
                    .map(|connection| connection.plugin)
            })
    }

    /// The root context of a context.
    pub(crate) fn root_of(&self, id: u32) -> u32 {
        match (self.streams.get(&id), self.connections.get(&id)) {
            (Some(stream), _) => stream.root,
            (None, Some(connection)) => connection.root,
            (None, None) => id,
        }
    }

    pub(crate) fn push_log(&mut self, context_id: u32, level: u32, message: &[u8]) {
        let root_id = self
            .plugin_of(context_id)
            .map(|plugin| self.plugins[plugin].root_id.clone())
            .unwrap_or_default();
        self.world.trace.log(context_id, level, message);
        self.world.logs.push(LogEntry {
            level,
            root_id,
            context_id,
            message: String::from_utf8_lossy(message).into_owned(),
        });
    }
}

/// Envoy's Wasm memory cap: proxy-wasm-cpp-host's `PROXY_WASM_HOST_MAX_WASM_MEMORY_SIZE_BYTES`
/// (1 GiB), which it gives V8 as `wasm_max_mem_pages`: `memory.grow` past it answers -1, and a
/// module whose initial memory is larger does not instantiate.
pub(crate) const MAX_MEMORY_BYTES: usize = 1 << 30;

/// wasmtime limits capping each linear memory at `bytes`.
pub(crate) fn memory_limits(bytes: usize) -> wasmtime::StoreLimits {
    wasmtime::StoreLimitsBuilder::new()
        .memory_size(bytes)
        .build()
}
