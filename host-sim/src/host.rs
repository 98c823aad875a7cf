//! The host side: the state each simulated VM keeps and every host function the guest can
//! import, with the statuses Envoy returns (proxy-wasm-cpp-host `src/exports.cc` and Envoy's
//! `source/extensions/common/wasm/context.cc`).
//!
//! Each host function is registered by `host!`: its body returns an [`Answer`] (the status and
//! what the trace records with it), and [`run`] records that answer once.
//!
//! Every guest pointer and length is treated as hostile: reads and writes go through
//! [`read_guest`] and [`write_guest`], which use checked arithmetic against the current memory
//! size, and sizes are capped.

use std::collections::{BTreeMap, HashMap, VecDeque};

use wasmtime::{Caller, Linker, Memory, TypedFunc};

use crate::abi::{self, BufferType, MapType, Status};
use crate::attributes::{self, StreamView};
use crate::connection::ConnectionData;
use crate::headers::{HeaderMap, parse_pairs};
use crate::property::PropertyValue;
use crate::trace::{FirstArg, HostRecord, Trace};

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
    pub(crate) shared_data: HashMap<Vec<u8>, (Vec<u8>, u32)>,
    pub(crate) cas: u32,
    pub(crate) queues: BTreeMap<u32, Queue>,
    pub(crate) next_queue_token: u32,
    /// `proxy_on_queue_ready` calls due: (worker, root context, token).
    pub(crate) queue_ready: Vec<(usize, u32, u32)>,
    /// Which worker VM this is (0 when there is one).
    pub(crate) worker: usize,
    pub(crate) metrics: BTreeMap<u32, Metric>,
    pub(crate) metric_values: BTreeMap<String, MetricValue>,
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
    pub(crate) now_ns: u64,
    pub(crate) epoch_ns: u64,
    pub(crate) log_level: u32,
    pub(crate) logs: Vec<LogEntry>,
    pub(crate) trace: Trace,
    pub(crate) after: Vec<After>,
    pub(crate) stop_next_iteration: bool,
    pub(crate) failed: bool,
    pub(crate) random_state: u64,
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
            shared_data: HashMap::new(),
            cas: 0,
            queues: BTreeMap::new(),
            next_queue_token: 0,
            queue_ready: Vec::new(),
            worker: 0,
            metrics: BTreeMap::new(),
            metric_values: BTreeMap::new(),
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
            now_ns: 0,
            epoch_ns: 1_767_225_600_000_000_000,
            log_level: 2,
            logs: Vec::new(),
            trace: Trace::new(trace),
            after: Vec::new(),
            stop_next_iteration: false,
            failed: false,
            random_state: 0x853c_49e6_748f_ea9b,
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
        self.trace.log(context_id, level, message);
        self.logs.push(LogEntry {
            level,
            root_id,
            context_id,
            message: String::from_utf8_lossy(message).into_owned(),
        });
    }

    fn next_cas(&mut self) -> u32 {
        self.cas = self.cas.wrapping_add(1);
        if self.cas == 0 {
            self.cas = 1;
        }
        self.cas
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

type C<'a> = Caller<'a, HostState>;
type R = wasmtime::Result<u32>;

const OK: u32 = Status::Ok as u32;
const NOT_FOUND: u32 = Status::NotFound as u32;
const BAD_ARGUMENT: u32 = Status::BadArgument as u32;
const PARSE_FAILURE: u32 = Status::ParseFailure as u32;
const IMA: u32 = Status::InvalidMemoryAccess as u32;
const EMPTY: u32 = Status::Empty as u32;
const CAS_MISMATCH: u32 = Status::CasMismatch as u32;
const UNIMPLEMENTED: u32 = Status::Unimplemented as u32;

const WASI_SUCCESS: u32 = 0;
const WASI_EBADF: u32 = 8;
const WASI_EFAULT: u32 = 21;
const WASI_EINVAL: u32 = 28;
const WASI_ENOENT: u32 = 44;
const WASI_ENOSYS: u32 = 52;
const WASI_ENOTSUP: u32 = 58;
const WASI_ENOTDIR: u32 = 20;

/// The most bytes `random_get` hands out at once (`PROXY_WASM_HOST_WASI_RANDOM_GET_MAX_SIZE_BYTES`).
const RANDOM_GET_MAX: u32 = 64 * 1024;

/// Reads `len` bytes at `ptr` from guest memory; `None` when any byte is out of bounds.
pub(crate) fn read_guest(data: &[u8], ptr: u32, len: u32) -> Option<&[u8]> {
    let start = ptr as usize;
    let end = start.checked_add(len as usize)?;
    data.get(start..end)
}

/// Writes bytes at `ptr`; `false` when any byte is out of bounds.
pub(crate) fn write_guest(data: &mut [u8], ptr: u32, bytes: &[u8]) -> bool {
    let start = ptr as usize;
    let Some(end) = start.checked_add(bytes.len()) else {
        return false;
    };
    match data.get_mut(start..end) {
        Some(slot) => {
            slot.copy_from_slice(bytes);
            true
        }
        None => false,
    }
}

fn memory(c: &C<'_>) -> wasmtime::Result<Memory> {
    c.data()
        .memory
        .ok_or_else(|| wasmtime::Error::new(HostTrap("module has no memory".into())))
}

fn read(c: &C<'_>, ptr: u32, len: u32) -> wasmtime::Result<Option<Vec<u8>>> {
    let memory = memory(c)?;
    Ok(read_guest(memory.data(c), ptr, len).map(<[u8]>::to_vec))
}

fn write(c: &mut C<'_>, ptr: u32, bytes: &[u8]) -> wasmtime::Result<bool> {
    let memory = memory(c)?;
    Ok(write_guest(memory.data_mut(c), ptr, bytes))
}

fn set_u32(c: &mut C<'_>, ptr: u32, value: u32) -> wasmtime::Result<bool> {
    write(c, ptr, &value.to_le_bytes())
}

fn set_u64(c: &mut C<'_>, ptr: u32, value: u64) -> wasmtime::Result<bool> {
    write(c, ptr, &value.to_le_bytes())
}

/// `WasmBase::allocMemory`: calls the guest's allocator (with Envoy's restricted import list)
/// and checks that the block it returns lies in memory. `None` = Envoy's nullptr.
fn alloc(c: &mut C<'_>, size: u32) -> wasmtime::Result<Option<u32>> {
    let Some(malloc) = c.data().malloc.clone() else {
        return Ok(None);
    };
    let saved = c.data().restricted;
    c.data_mut().restricted = Restriction::Malloc;
    let result = malloc.call(&mut *c, size);
    c.data_mut().restricted = saved;
    let address = result?;
    if address == 0 {
        return Ok(None);
    }
    let memory = memory(c)?;
    if read_guest(memory.data(&*c), address, size).is_none() {
        return Ok(None);
    }
    Ok(Some(address))
}

/// `WasmBase::copyToPointerSize`: allocates a copy in the guest, then writes its address and
/// size. Empty strings give address 0 without allocating.
fn copy_out(c: &mut C<'_>, bytes: &[u8], ptr_ptr: u32, size_ptr: u32) -> wasmtime::Result<bool> {
    let mut address = 0;
    if !bytes.is_empty() {
        let Ok(size) = u32::try_from(bytes.len()) else {
            return Ok(false);
        };
        match alloc(c, size)? {
            Some(at) => address = at,
            None => return Ok(false),
        }
        if !write(c, address, bytes)? {
            return Ok(false);
        }
    }
    if !set_u32(c, ptr_ptr, address)? {
        return Ok(false);
    }
    set_u32(c, size_ptr, bytes.len() as u32)
}

/// Traps when the import is called while Envoy would refuse it (VM start, inside malloc).
fn enter(c: &C<'_>, module: &str, name: &str) -> wasmtime::Result<()> {
    let allowed = match c.data().restricted {
        Restriction::None => true,
        Restriction::Start => abi::allowed_during_start(module, name),
        Restriction::Malloc => matches!(
            name,
            "proxy_log" | "fd_write" | "clock_time_get" | "poll_oneoff"
        ),
    };
    if !allowed {
        return Err(wasmtime::Error::new(HostTrap("restricted_callback".into())));
    }
    match &c.data().allowed {
        Some(list) if !list.iter().any(|allowed| allowed == name) => {
            Err(wasmtime::Error::new(HostTrap(format!(
                "strict mode: the guest called {module}.{name}, which is not in the allowed host functions"
            ))))
        }
        _ => Ok(()),
    }
}

/// The status a test injected for this host function, recorded in the trace as
/// `# injected <name> <STATUS>`; the call then has no effect and writes nothing.
fn injected(c: &mut C<'_>, name: &str) -> Option<u32> {
    let state = c.data_mut();
    let status = *state.injected.get(name)?;
    let ctx = state.context();
    state.trace.note(
        "injected",
        ctx,
        &[],
        &[name.as_bytes(), status.name().as_bytes()],
    );
    Some(status as u32)
}

/// What a host call answers the guest and what the trace records with it (besides the
/// function's name): built by the call's body, recorded once by [`run`].
///
/// The recorded byte strings are the call's own buffers, moved in rather than copied, so an
/// answer costs no allocation.
struct Answer {
    status: u32,
    n_nums: u8,
    nums: [u64; 4],
    /// `bytes[..n_strs]` are the byte-string arguments, then comes the result if `has_result`
    /// (no call records three arguments and a result); this keeps an answer small enough to
    /// return by value.
    n_strs: u8,
    has_result: bool,
    bytes: [Vec<u8>; 3],
    /// Whether the trace records the call at all (`proxy_log` records a log line instead).
    recorded: bool,
}

/// An answer with `status` and nothing else recorded yet.
fn answer(status: u32) -> Answer {
    Answer {
        status,
        n_nums: 0,
        nums: [0; 4],
        n_strs: 0,
        has_result: false,
        bytes: Default::default(),
        recorded: true,
    }
}

impl Answer {
    /// The numeric arguments recorded (the trace keeps the first four).
    fn nums<T: Copy + Into<u64>>(mut self, nums: &[T]) -> Answer {
        for (slot, value) in self.nums.iter_mut().zip(nums) {
            *slot = (*value).into();
        }
        self.n_nums = nums.len().min(4) as u8;
        self
    }

    /// The byte-string arguments recorded (the trace keeps the first three).
    fn strs<const N: usize>(mut self, strs: [Vec<u8>; N]) -> Answer {
        debug_assert!(!self.has_result, "arguments come before the result");
        self.n_strs = N.min(3) as u8;
        for (slot, value) in self.bytes.iter_mut().zip(strs) {
            *slot = value;
        }
        self
    }

    /// The bytes the call returns, recorded after the status (after [`Answer::strs`]); recorded
    /// also when writing them into guest memory failed, so the trace shows what was lost.
    fn result(mut self, bytes: Vec<u8>) -> Answer {
        self.bytes[usize::from(self.n_strs)] = bytes;
        self.has_result = true;
        self
    }

    /// Records nothing (the call's effect shows in the trace otherwise).
    fn unrecorded(mut self) -> Answer {
        self.recorded = false;
        self
    }
}

/// How a host call's body ends early: with an answer, or by trapping the guest. Both convert
/// with `?`: `read(c, ptr, size)?.ok_or_else(|| answer(IMA).nums(&[ptr, size]))?`.
enum Stop {
    Answer(Answer),
    Trap(wasmtime::Error),
}

impl From<Answer> for Stop {
    fn from(answer: Answer) -> Stop {
        Stop::Answer(answer)
    }
}

impl From<wasmtime::Error> for Stop {
    fn from(error: wasmtime::Error) -> Stop {
        Stop::Trap(error)
    }
}

/// Reads two byte strings from guest memory; when either is out of bounds, the
/// INVALID_MEMORY_ACCESS answer records both pointers and sizes.
fn read_pair(
    c: &C<'_>,
    (first_ptr, first_size): (u32, u32),
    (second_ptr, second_size): (u32, u32),
) -> Result<(Vec<u8>, Vec<u8>), Stop> {
    match (
        read(c, first_ptr, first_size)?,
        read(c, second_ptr, second_size)?,
    ) {
        (Some(first), Some(second)) => Ok((first, second)),
        _ => Err(answer(IMA)
            .nums(&[first_ptr, first_size, second_ptr, second_size])
            .into()),
    }
}

/// The buffer a code names as the current context sees it ([`buffer_ref`]): its type, bytes
/// and whether they are mutable; or the answer recording `nums`, BAD_ARGUMENT for an unknown
/// code, NOT_FOUND for a buffer that does not exist now.
fn buffer_from_code<'a>(
    state: &'a HostState,
    buffer: u32,
    nums: &[u32],
) -> Result<(BufferType, &'a [u8], bool), Answer> {
    let buffer_type =
        BufferType::from_code(buffer).ok_or_else(|| answer(BAD_ARGUMENT).nums(nums))?;
    let (bytes, mutable) = buffer_ref(state, state.context(), buffer_type)
        .ok_or_else(|| answer(NOT_FOUND).nums(nums))?;
    Ok((buffer_type, bytes, mutable))
}

/// A header map type code, or the BAD_ARGUMENT answer recording it.
fn map_from_code(map: u32) -> Result<MapType, Answer> {
    MapType::from_code(map).ok_or_else(|| answer(BAD_ARGUMENT).nums(&[map]))
}

/// The answer to a call whose only possible failure was writing to guest memory.
fn wrote(written: bool) -> u32 {
    if written { OK } else { IMA }
}

/// Runs a host call's body, records its answer once (unless it traps) and returns the status.
fn run<'a>(
    c: &mut C<'a>,
    name: &'static str,
    first: FirstArg,
    body: impl FnOnce(&mut C<'a>) -> Result<Answer, Stop>,
) -> R {
    let answer = match body(c) {
        Ok(answer) | Err(Stop::Answer(answer)) => answer,
        Err(Stop::Trap(error)) => return Err(error),
    };
    let state = c.data_mut();
    if answer.recorded && state.trace.enabled() {
        let [one, two, three] = &answer.bytes;
        let bytes: [&[u8]; 3] = [one, two, three];
        let n_strs = usize::from(answer.n_strs);
        let ctx = state.context();
        state.trace.host(HostRecord {
            name,
            first,
            ctx,
            nums: &answer.nums[..usize::from(answer.n_nums)],
            strs: &bytes[..n_strs],
            status: answer.status,
            result: answer.has_result.then(|| bytes[n_strs]),
        });
    }
    Ok(answer.status)
}

/// Registers a host function: `host!(linker, module, name, first, |c, arg: u32, ...| body)`.
/// The function traps when Envoy would refuse the call right now ([`enter`]); otherwise the
/// body's answer (see [`run`]) is recorded once and its status returned to the guest.
macro_rules! host {
    ($linker:expr, $module:expr, $name:expr, $first:expr,
     |$c:ident $(, $arg:ident : $ty:ty)* $(,)?| $body:expr) => {
        $linker.func_wrap(
            $module,
            $name,
            move |mut caller: C<'_>, $($arg: $ty),*| -> R {
                enter(&caller, $module, $name)?;
                if let Some(status) = injected(&mut caller, $name) {
                    return Ok(status);
                }
                run(&mut caller, $name, $first, |$c| $body)
            },
        )?
    };
}

/// Which map a context can reach for writing (`Context::getMap`); `None` = BAD_ARGUMENT.
fn map_mut(state: &mut HostState, ctx: u32, map: MapType) -> Option<&mut HeaderMap> {
    let stream = state.streams.get_mut(&ctx)?;
    if stream.access_log_phase {
        return None;
    }
    match map {
        MapType::RequestHeaders if stream.avail & avail::REQUEST_HEADERS != 0 => {
            Some(&mut stream.request_headers)
        }
        MapType::RequestTrailers => trailers_mut(
            &mut stream.avail,
            &mut stream.request_trailers,
            avail::REQUEST_TRAILERS,
            avail::REQUEST_BODY,
            stream.end_of_stream,
        ),
        MapType::ResponseHeaders if stream.avail & avail::RESPONSE_HEADERS != 0 => {
            Some(&mut stream.response_headers)
        }
        MapType::ResponseTrailers => trailers_mut(
            &mut stream.avail,
            &mut stream.response_trailers,
            avail::RESPONSE_TRAILERS,
            avail::RESPONSE_BODY,
            stream.end_of_stream,
        ),
        _ => None,
    }
}

/// One direction's trailers for writing: available in the trailers callback, and Envoy adds
/// them when asked from the last body callback.
fn trailers_mut<'a>(
    available: &mut u8,
    trailers: &'a mut Option<HeaderMap>,
    trailers_bit: u8,
    body_bit: u8,
    end_of_stream: bool,
) -> Option<&'a mut HeaderMap> {
    if *available & trailers_bit != 0 {
        trailers.as_mut()
    } else if *available & body_bit != 0 && end_of_stream {
        *available |= trailers_bit;
        Some(trailers.get_or_insert_with(HeaderMap::new))
    } else {
        None
    }
}

/// Which map a context can read (`Context::getConstMap`); `None` = not available.
fn map_ref(state: &HostState, ctx: u32, map: MapType) -> Option<&HeaderMap> {
    match map {
        MapType::HttpCallResponseHeaders => {
            return state
                .http_call_response
                .as_ref()
                .map(|response| &response.headers);
        }
        MapType::HttpCallResponseTrailers => {
            return state
                .http_call_response
                .as_ref()
                .and_then(|response| response.trailers.as_ref());
        }
        MapType::GrpcReceiveInitialMetadata => return state.grpc_initial_metadata.as_ref(),
        MapType::GrpcReceiveTrailingMetadata => return state.grpc_trailing_metadata.as_ref(),
        _ => {}
    }
    let stream = state.streams.get(&ctx)?;
    if stream.access_log_phase {
        return match map {
            MapType::RequestHeaders => Some(&stream.request_headers),
            MapType::ResponseHeaders => Some(&stream.response_headers),
            MapType::ResponseTrailers => stream.response_trailers.as_ref(),
            _ => None,
        };
    }
    match map {
        MapType::RequestHeaders if stream.avail & avail::REQUEST_HEADERS != 0 => {
            Some(&stream.request_headers)
        }
        MapType::RequestTrailers if stream.avail & avail::REQUEST_TRAILERS != 0 => {
            stream.request_trailers.as_ref()
        }
        MapType::ResponseHeaders if stream.avail & avail::RESPONSE_HEADERS != 0 => {
            Some(&stream.response_headers)
        }
        MapType::ResponseTrailers if stream.avail & avail::RESPONSE_TRAILERS != 0 => {
            stream.response_trailers.as_ref()
        }
        _ => None,
    }
}

/// A buffer as `Context::getBuffer` finds it: `None` = NOT_FOUND; `Some((bytes, mutable))`.
fn buffer_ref(state: &HostState, ctx: u32, buffer: BufferType) -> Option<(&[u8], bool)> {
    match buffer {
        BufferType::HttpRequestBody => Some(match state.streams.get(&ctx) {
            Some(stream) if stream.avail & avail::REQUEST_BODY != 0 => (&stream.request_body, true),
            _ => (&[][..], false),
        }),
        BufferType::HttpResponseBody => Some(match state.streams.get(&ctx) {
            Some(stream) if stream.avail & avail::RESPONSE_BODY != 0 => {
                (&stream.response_body, true)
            }
            _ => (&[][..], false),
        }),
        BufferType::DownstreamData | BufferType::UpstreamData => Some(
            state
                .connections
                .get(&ctx)
                .map_or((&[][..], false), |connection| connection.buffer(buffer)),
        ),
        BufferType::HttpCallResponseBody => state
            .http_call_response
            .as_ref()
            .map(|response| (response.body.as_slice(), false)),
        BufferType::GrpcReceiveBuffer => {
            Some((state.grpc_receive_buffer.as_deref().unwrap_or(&[]), false))
        }
        BufferType::VmConfiguration => Some((&state.vm_configuration, false)),
        BufferType::PluginConfiguration => state
            .temp_plugin
            .map(|plugin| (state.plugins[plugin].configuration.as_slice(), false)),
        BufferType::CallData => Some((&state.call_data, false)),
    }
}

/// What Envoy's `StreamInfo` and the readable maps say about a stream right now (`None` for a
/// root context, which has no stream info).
fn stream_view(state: &HostState, ctx: u32) -> Option<StreamView<'_>> {
    let stream = state.streams.get(&ctx)?;
    let reply = stream
        .local_reply
        .as_ref()
        .map(|reply| (reply.status_code, reply.details.as_str()))
        .or(stream
            .chain_local_reply
            .as_ref()
            .map(|(code, details)| (*code, details.as_str())));
    let (response_code, response_code_details) = match reply {
        Some((code, details)) => (Some(code), Some(details)),
        None if stream.response_started => (
            stream
                .response_headers
                .get(b":status")
                .and_then(|code| std::str::from_utf8(code).ok()?.parse().ok()),
            Some("via_upstream"),
        ),
        None => (None, None),
    };
    let epoch = state.epoch_ns as i64;
    Some(StreamView {
        request_headers: map_ref(state, ctx, MapType::RequestHeaders),
        response_headers: map_ref(state, ctx, MapType::ResponseHeaders),
        response_trailers: map_ref(state, ctx, MapType::ResponseTrailers),
        response_code,
        response_code_details,
        bytes_received: (stream.upstream_body.len()
            + stream.request_held.len()
            + stream.request_body.len()) as u64,
        bytes_sent: stream.downstream_body.len() as u64,
        start_ns: epoch + stream.started_ns as i64,
        now_ns: epoch + state.now_ns as i64,
        complete: stream.access_log_phase,
        connection_id: u64::from(ctx),
        source_port: 40000 + (ctx % 20000) as u16,
        destination_port: attributes::LISTENER_PORT,
        // A chain is `exchange`'s routed request; a lone stream models `cargo xtask run`'s
        // direct-response route, which has no upstream.
        routed: stream.chained && reply.is_none(),
        upstream_selected: stream.upstream_selected && reply.is_none(),
    })
}

fn lookup_property(state: &HostState, ctx: u32, path: &[u8]) -> Result<Vec<u8>, u32> {
    let segments: Vec<&[u8]> = if path.is_empty() {
        Vec::new()
    } else {
        path.split(|byte| *byte == 0).collect()
    };
    let Some(first) = segments.first() else {
        return Err(NOT_FOUND);
    };
    let plugin = state.plugin_of(ctx);
    let simple = |value: &str| {
        if segments.len() == 1 {
            Ok(value.as_bytes().to_vec())
        } else {
            Err(NOT_FOUND)
        }
    };
    match *first {
        b"plugin_root_id" => {
            return match plugin {
                Some(plugin) => simple(&state.plugins[plugin].root_id),
                None => simple(""),
            };
        }
        b"plugin_name" => {
            if let Some(plugin) = plugin {
                return simple(&state.plugins[plugin].name);
            }
            return Err(NOT_FOUND);
        }
        b"plugin_vm_id" => return simple(&state.vm_id),
        _ => {}
    }
    let stream = state.streams.get(&ctx);
    let maps = stream
        .map(|stream| &stream.properties)
        .into_iter()
        .chain(
            state
                .connections
                .get(&ctx)
                .map(|connection| &connection.properties),
        )
        .chain([&state.properties]);
    for map in maps {
        // Only prefixes as long as a stored path can match (a hostile path may have many
        // segments).
        let deepest = map
            .keys()
            .map(Vec::len)
            .max()
            .unwrap_or(0)
            .min(segments.len());
        for split in (1..=deepest).rev() {
            let (head, rest) = segments.split_at(split);
            let key: Vec<Vec<u8>> = head.iter().map(|segment| segment.to_vec()).collect();
            if let Some(mut value) = map.get(&key) {
                for segment in rest {
                    match value.child(segment) {
                        Some(child) => value = child,
                        None => return Err(NOT_FOUND),
                    }
                }
                return Ok(value.encode());
            }
        }
    }
    let view = stream_view(state, ctx);
    match attributes::lookup(&segments, view.as_ref()) {
        Ok(Some(value)) => return Ok(value),
        Ok(None) => {}
        Err(status) => return Err(status as u32),
    }
    let state_value = stream.and_then(|stream| {
        stream
            .filter_state
            .iter()
            .find(|(key, _)| key.as_slice() == *first)
    });
    match state_value {
        Some((_, value)) if segments.len() == 1 => Ok(value.clone()),
        _ => Err(NOT_FOUND),
    }
}

/// Registers every import Envoy could provide (validation has already refused imports the
/// module's ABI version does not get).
pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    add_env(linker)?;
    for module in abi::WASI_MODULES {
        add_wasi(linker, module)?;
    }
    Ok(())
}

#[allow(
    clippy::too_many_lines,
    reason = "one registration per host function, in one place"
)]
fn add_env(l: &mut Linker<HostState>) -> wasmtime::Result<()> {
    const E: &str = "env";
    use FirstArg::{Buffer, Level, Map, Plain, Stream};

    host!(
        l,
        E,
        "proxy_log",
        Level,
        |c, level: u32, ptr: u32, size: u32| {
            if level > 5 {
                return Ok(answer(BAD_ARGUMENT).nums(&[level]));
            }
            let message =
                read(c, ptr, size)?.ok_or_else(|| answer(IMA).nums(&[level, ptr, size]))?;
            let ctx = c.data().context();
            c.data_mut().push_log(ctx, level, &message);
            Ok(answer(OK).unrecorded())
        }
    );

    host!(l, E, "proxy_get_log_level", Plain, |c, ptr: u32| {
        let level = c.data().log_level;
        Ok(answer(wrote(set_u32(c, ptr, level)?)))
    });

    host!(
        l,
        E,
        "proxy_get_status",
        Plain,
        |c, code_ptr: u32, ptr_ptr: u32, size_ptr: u32| {
            let state = c.data();
            let root = state.root_of(state.context());
            let (code, message) = match state.root_contexts.get(&root) {
                Some(plugin) => {
                    let plugin = &state.plugins[*plugin];
                    (plugin.status_code, plugin.status_message.clone())
                }
                None => (0, Vec::new()),
            };
            let written = set_u32(c, code_ptr, code)? && copy_out(c, &message, ptr_ptr, size_ptr)?;
            Ok(answer(wrote(written)).nums(&[code]).result(message))
        }
    );

    host!(
        l,
        E,
        "proxy_set_property",
        Plain,
        |c, key_ptr: u32, key_size: u32, value_ptr: u32, value_size: u32| {
            let (key, value) = read_pair(c, (key_ptr, key_size), (value_ptr, value_size))?;
            let ctx = c.data().context();
            let status = match c.data_mut().streams.get_mut(&ctx) {
                Some(stream) => {
                    match stream
                        .filter_state
                        .iter_mut()
                        .find(|(name, _)| *name == key)
                    {
                        Some(slot) => slot.1 = value.clone(),
                        None => stream.filter_state.push((key.clone(), value.clone())),
                    }
                    OK
                }
                // Root contexts have no stream info: Envoy answers NOT_FOUND.
                None => NOT_FOUND,
            };
            Ok(answer(status).strs([key, value]))
        }
    );

    host!(
        l,
        E,
        "proxy_get_property",
        Plain,
        |c, path_ptr: u32, path_size: u32, ptr_ptr: u32, size_ptr: u32| {
            let path = read(c, path_ptr, path_size)?
                .ok_or_else(|| answer(IMA).nums(&[path_ptr, path_size]))?;
            let ctx = c.data().context();
            match lookup_property(c.data(), ctx, &path) {
                Ok(value) => {
                    let status = wrote(copy_out(c, &value, ptr_ptr, size_ptr)?);
                    Ok(answer(status).strs([path]).result(value))
                }
                Err(status) => Ok(answer(status).strs([path])),
            }
        }
    );

    host!(
        l,
        E,
        "proxy_get_configuration",
        Plain,
        |c, ptr_ptr: u32, size_ptr: u32| {
            let state = c.data();
            let value = match state.temp_plugin {
                Some(plugin) => state.plugins[plugin].configuration.clone(),
                None => state.vm_configuration.clone(),
            };
            Ok(answer(wrote(copy_out(c, &value, ptr_ptr, size_ptr)?)).result(value))
        }
    );

    for (name, stream_type) in [
        ("proxy_continue_request", 0u32),
        ("proxy_continue_response", 1),
    ] {
        host!(l, E, name, Plain, |c| {
            Ok(answer(continue_stream(c.data_mut(), stream_type)))
        });
    }

    host!(
        l,
        E,
        "proxy_continue_stream",
        Stream,
        |c, stream_type: u32| {
            let status = if stream_type > 3 {
                BAD_ARGUMENT
            } else {
                continue_stream(c.data_mut(), stream_type)
            };
            Ok(answer(status).nums(&[stream_type]))
        }
    );

    host!(l, E, "proxy_close_stream", Stream, |c, stream_type: u32| {
        if stream_type > 3 {
            return Ok(answer(BAD_ARGUMENT).nums(&[stream_type]));
        }
        let state = c.data_mut();
        let ctx = state.context();
        if state.streams.contains_key(&ctx) && stream_type < 2 {
            state.after.push(After::Close {
                context_id: ctx,
                stream_type,
            });
        }
        if state.connections.contains_key(&ctx) && stream_type >= 2 {
            state.after.push(After::CloseConnection {
                context_id: ctx,
                stream_type,
            });
        }
        Ok(answer(OK).nums(&[stream_type]))
    });

    host!(l, E, "proxy_clear_route_cache", Plain, |_c| Ok(answer(OK)));

    host!(
        l,
        E,
        "proxy_send_local_response",
        Plain,
        |c,
         code: u32,
         details_ptr: u32,
         details_size: u32,
         body_ptr: u32,
         body_size: u32,
         headers_ptr: u32,
         headers_size: u32,
         grpc_status: u32| {
            let details = read(c, details_ptr, details_size)?;
            let body = read(c, body_ptr, body_size)?;
            let headers = read(c, headers_ptr, headers_size)?;
            let (Some(details), Some(body), Some(headers)) = (details, body, headers) else {
                return Ok(answer(IMA).nums(&[code]));
            };
            let pairs = parse_pairs(&headers);
            let reply = LocalReply {
                status_code: code,
                details: String::from_utf8_lossy(&details)
                    .chars()
                    .map(|ch| if ch.is_whitespace() { '_' } else { ch })
                    .collect(),
                body: body.clone(),
                headers: pairs
                    .iter()
                    .map(|(key, value)| {
                        (
                            String::from_utf8_lossy(key).to_ascii_lowercase(),
                            String::from_utf8_lossy(value).into_owned(),
                        )
                    })
                    .collect(),
                grpc_status: (grpc_status <= 16).then_some(grpc_status),
            };
            let state = c.data_mut();
            let ctx = state.context();
            // Envoy only acts when the context has decoder callbacks (a stream context).
            if state.streams.contains_key(&ctx) {
                state.after.push(After::LocalReply {
                    context_id: ctx,
                    reply,
                });
            }
            state.stop_next_iteration = true;
            Ok(answer(OK).nums(&[code]).strs([details, body]))
        }
    );

    host!(l, E, "proxy_set_effective_context", Plain, |c, id: u32| {
        let status = if c.data().context_exists(id) {
            c.data_mut().effective = id;
            OK
        } else {
            BAD_ARGUMENT
        };
        Ok(answer(status).nums(&[id]))
    });

    host!(l, E, "proxy_done", Plain, |c| {
        let state = c.data_mut();
        let ctx = state.context();
        match state.root_contexts.get(&ctx).copied() {
            Some(plugin) if state.plugins[plugin].pending_done => {
                state.plugins[plugin].pending_done = false;
                state.after.push(After::DeleteRoot { context_id: ctx });
                Ok(answer(OK))
            }
            _ => Ok(answer(NOT_FOUND)),
        }
    });

    host!(
        l,
        E,
        "proxy_call_foreign_function",
        Plain,
        |c,
         name_ptr: u32,
         name_size: u32,
         args_ptr: u32,
         args_size: u32,
         results_ptr: u32,
         results_size_ptr: u32| {
            let name = read(c, name_ptr, name_size)?
                .ok_or_else(|| answer(IMA).nums(&[name_ptr, name_size]))?;
            let Some(args) = read(c, args_ptr, args_size)? else {
                return Ok(answer(IMA).strs([name]));
            };
            let function = c
                .data()
                .foreign_functions
                .get(&*String::from_utf8_lossy(&name))
                .cloned();
            let Some(function) = function else {
                return Ok(answer(NOT_FOUND).strs([name, args]));
            };
            let (mut status, output) = match function(&args) {
                Ok(output) => (OK, Some(output)),
                Err(status) => (status as u32, None),
            };
            let mut address = 0;
            let size = output.as_ref().map_or(0, Vec::len) as u32;
            if let Some(output) = output
                .as_ref()
                .filter(|output| results_ptr != 0 && !output.is_empty())
            {
                match alloc(c, size)? {
                    Some(at) if write(c, at, output)? => address = at,
                    _ => status = IMA,
                }
            }
            let written = (results_ptr == 0 || set_u32(c, results_ptr, address)?)
                && (results_size_ptr == 0 || set_u32(c, results_size_ptr, size)?);
            if !written {
                status = IMA;
            }
            let answer = answer(status).strs([name, args]);
            Ok(match output {
                Some(output) => answer.result(output),
                None => answer,
            })
        }
    );

    host!(
        l,
        E,
        "proxy_get_shared_data",
        Plain,
        |c, key_ptr: u32, key_size: u32, ptr_ptr: u32, size_ptr: u32, cas_ptr: u32| {
            let key = read(c, key_ptr, key_size)?
                .ok_or_else(|| answer(IMA).nums(&[key_ptr, key_size]))?;
            let Some((value, cas)) = c.data().shared_data.get(&key).cloned() else {
                return Ok(answer(NOT_FOUND).strs([key]));
            };
            let written = copy_out(c, &value, ptr_ptr, size_ptr)? && set_u32(c, cas_ptr, cas)?;
            Ok(answer(wrote(written)).strs([key]).result(value))
        }
    );

    host!(
        l,
        E,
        "proxy_set_shared_data",
        Plain,
        |c, key_ptr: u32, key_size: u32, value_ptr: u32, value_size: u32, cas: u32| {
            let (key, value) = read_pair(c, (key_ptr, key_size), (value_ptr, value_size))?;
            let state = c.data_mut();
            let status = match state.shared_data.get(&key).map(|(_, current)| *current) {
                Some(current) if cas != 0 && cas != current => CAS_MISMATCH,
                _ => {
                    let next = state.next_cas();
                    state.shared_data.insert(key.clone(), (value.clone(), next));
                    OK
                }
            };
            Ok(answer(status).nums(&[cas]).strs([key, value]))
        }
    );

    host!(
        l,
        E,
        "proxy_register_shared_queue",
        Plain,
        |c, name_ptr: u32, name_size: u32, token_ptr: u32| {
            let name = read(c, name_ptr, name_size)?
                .ok_or_else(|| answer(IMA).nums(&[name_ptr, name_size]))?;
            let state = c.data_mut();
            let ctx = state.context();
            let root = state.root_of(ctx);
            let name_text = String::from_utf8_lossy(&name).into_owned();
            let vm_id = state.vm_id.clone();
            let existing = state
                .queues
                .iter()
                .find(|(_, queue)| queue.vm_id == vm_id && queue.name == name_text)
                .map(|(token, _)| *token);
            let token = match existing {
                Some(token) => token,
                None => {
                    state.next_queue_token += 1;
                    state.next_queue_token
                }
            };
            let queue = state.queues.entry(token).or_default();
            queue.vm_id = vm_id;
            queue.name = name_text;
            queue.context_id = root;
            queue.worker = state.worker;
            let status = wrote(set_u32(c, token_ptr, token)?);
            Ok(answer(status).nums(&[token]).strs([name]))
        }
    );

    host!(
        l,
        E,
        "proxy_resolve_shared_queue",
        Plain,
        |c, vm_ptr: u32, vm_size: u32, name_ptr: u32, name_size: u32, token_ptr: u32| {
            let (vm_id, name) = read_pair(c, (vm_ptr, vm_size), (name_ptr, name_size))?;
            let state = c.data();
            let vm_text = if vm_id.is_empty() {
                state.vm_id.clone()
            } else {
                String::from_utf8_lossy(&vm_id).into_owned()
            };
            let name_text = String::from_utf8_lossy(&name);
            let token = state
                .queues
                .iter()
                .find(|(_, queue)| queue.vm_id == vm_text && queue.name == name_text)
                .map(|(token, _)| *token);
            let status = match token {
                None => NOT_FOUND,
                Some(token) => wrote(set_u32(c, token_ptr, token)?),
            };
            Ok(answer(status).strs([vm_id, name]))
        }
    );

    host!(
        l,
        E,
        "proxy_dequeue_shared_queue",
        Plain,
        |c, token: u32, ptr_ptr: u32, size_ptr: u32| {
            let item = match c.data_mut().queues.get_mut(&token) {
                None => Err(NOT_FOUND),
                Some(queue) => queue.items.pop_front().ok_or(EMPTY),
            };
            match item {
                Err(status) => Ok(answer(status).nums(&[token])),
                Ok(item) => {
                    let status = wrote(copy_out(c, &item, ptr_ptr, size_ptr)?);
                    Ok(answer(status).nums(&[token]).result(item))
                }
            }
        }
    );

    host!(
        l,
        E,
        "proxy_enqueue_shared_queue",
        Plain,
        |c, token: u32, ptr: u32, size: u32| {
            let data = read(c, ptr, size)?.ok_or_else(|| answer(IMA).nums(&[token, ptr, size]))?;
            let state = c.data_mut();
            let status = match state.queues.get_mut(&token) {
                None => NOT_FOUND,
                Some(queue) => {
                    queue.items.push_back(data.clone());
                    let ready = (queue.worker, queue.context_id, token);
                    state.queue_ready.push(ready);
                    OK
                }
            };
            Ok(answer(status).nums(&[token]).strs([data]))
        }
    );

    host!(
        l,
        E,
        "proxy_get_header_map_value",
        Map,
        |c, map: u32, key_ptr: u32, key_size: u32, ptr_ptr: u32, size_ptr: u32| {
            let map_type = map_from_code(map)?;
            let key = read(c, key_ptr, key_size)?
                .ok_or_else(|| answer(IMA).nums(&[map, key_ptr, key_size]))?;
            let state = c.data();
            let ctx = state.context();
            let abi_010 = state.abi == abi::AbiVersion::V0_1_0;
            let in_log = state
                .streams
                .get(&ctx)
                .is_some_and(|stream| stream.access_log_phase);
            let value = match map_ref(state, ctx, map_type) {
                None if in_log && abi_010 => Ok(Vec::new()),
                None if in_log => Err(NOT_FOUND),
                None => Err(BAD_ARGUMENT),
                // Envoy's request header map answers the legacy `host` with `:authority`
                // (seen in Envoy 1.40).
                Some(headers) => match headers.get(&key).or_else(|| {
                    (map == 0 && key.eq_ignore_ascii_case(b"host"))
                        .then(|| headers.get(b":authority"))
                        .flatten()
                }) {
                    Some(value) => Ok(value.to_vec()),
                    None if abi_010 => Ok(Vec::new()),
                    None => Err(NOT_FOUND),
                },
            };
            match value {
                Err(status) => Ok(answer(status).nums(&[map]).strs([key])),
                Ok(value) => {
                    let status = wrote(copy_out(c, &value, ptr_ptr, size_ptr)?);
                    Ok(answer(status).nums(&[map]).strs([key]).result(value))
                }
            }
        }
    );

    for (name, kind) in [
        ("proxy_add_header_map_value", 0u8),
        ("proxy_replace_header_map_value", 1u8),
    ] {
        host!(
            l,
            E,
            name,
            Map,
            |c, map: u32, key_ptr: u32, key_size: u32, value_ptr: u32, value_size: u32| {
                let map_type = map_from_code(map)?;
                let (Some(key), Some(value)) =
                    (read(c, key_ptr, key_size)?, read(c, value_ptr, value_size)?)
                else {
                    return Ok(answer(IMA).nums(&[map, key_ptr, key_size, value_ptr]));
                };
                let state = c.data_mut();
                let ctx = state.context();
                let status = match map_mut(state, ctx, map_type) {
                    None => BAD_ARGUMENT,
                    Some(headers) => {
                        if kind == 0 {
                            headers.add(&key, &value);
                        } else {
                            headers.replace(&key, &value);
                        }
                        OK
                    }
                };
                Ok(answer(status).nums(&[map]).strs([key, value]))
            }
        );
    }

    host!(
        l,
        E,
        "proxy_remove_header_map_value",
        Map,
        |c, map: u32, key_ptr: u32, key_size: u32| {
            let map_type = map_from_code(map)?;
            let key = read(c, key_ptr, key_size)?
                .ok_or_else(|| answer(IMA).nums(&[map, key_ptr, key_size]))?;
            let state = c.data_mut();
            let ctx = state.context();
            let status = match map_mut(state, ctx, map_type) {
                None => BAD_ARGUMENT,
                Some(headers) => {
                    headers.remove(&key);
                    OK
                }
            };
            Ok(answer(status).nums(&[map]).strs([key]))
        }
    );

    host!(
        l,
        E,
        "proxy_get_header_map_pairs",
        Map,
        |c, map: u32, ptr_ptr: u32, size_ptr: u32| {
            let map_type = map_from_code(map)?;
            let state = c.data();
            let ctx = state.context();
            // Envoy answers OK with an empty map when the map is not available.
            let serialized = match map_ref(state, ctx, map_type) {
                Some(headers) if !headers.is_empty() => headers.serialize(),
                _ => Vec::new(),
            };
            Ok(answer(wrote(copy_out(c, &serialized, ptr_ptr, size_ptr)?)).nums(&[map]))
        }
    );

    host!(
        l,
        E,
        "proxy_set_header_map_pairs",
        Map,
        |c, map: u32, ptr: u32, size: u32| {
            let map_type = map_from_code(map)?;
            let data = read(c, ptr, size)?.ok_or_else(|| answer(IMA).nums(&[map, ptr, size]))?;
            let pairs = parse_pairs(&data);
            let state = c.data_mut();
            let ctx = state.context();
            let status = match map_mut(state, ctx, map_type) {
                None => BAD_ARGUMENT,
                Some(headers) => {
                    headers.clear();
                    for (key, value) in &pairs {
                        headers.add(key, value);
                    }
                    OK
                }
            };
            Ok(answer(status).nums(&[u64::from(map), pairs.len() as u64]))
        }
    );

    host!(
        l,
        E,
        "proxy_get_header_map_size",
        Map,
        |c, map: u32, result_ptr: u32| {
            let map_type = map_from_code(map)?;
            let state = c.data_mut();
            let ctx = state.context();
            // Envoy reads the size through the mutable map (`getMap`), so http-call and gRPC maps
            // are BAD_ARGUMENT here.
            let size = map_mut(state, ctx, map_type).map(|headers| headers.byte_size() as u32);
            let status = match size {
                None => BAD_ARGUMENT,
                Some(size) => wrote(set_u32(c, result_ptr, size)?),
            };
            Ok(answer(status).nums(&[map, size.unwrap_or(0)]))
        }
    );

    host!(
        l,
        E,
        "proxy_get_buffer_status",
        Buffer,
        |c, buffer: u32, length_ptr: u32, flags_ptr: u32| {
            let (_, bytes, _) = buffer_from_code(c.data(), buffer, &[buffer])?;
            let length = bytes.len() as u32;
            let written = set_u32(c, length_ptr, length)? && set_u32(c, flags_ptr, 0)?;
            Ok(answer(wrote(written)).nums(&[buffer, length]))
        }
    );

    host!(
        l,
        E,
        "proxy_get_buffer_bytes",
        Buffer,
        |c, buffer: u32, start: u32, length: u32, ptr_ptr: u32, size_ptr: u32| {
            let nums = [buffer, start, length];
            let (_, bytes, _) = buffer_from_code(c.data(), buffer, &nums)?;
            // Envoy clamps the range to the buffer instead of failing.
            let begin = (start as usize).min(bytes.len());
            let end = begin.saturating_add(length as usize).min(bytes.len());
            let bytes = bytes[begin..end].to_vec();
            let status = wrote(copy_out(c, &bytes, ptr_ptr, size_ptr)?);
            Ok(answer(status).nums(&nums).result(bytes))
        }
    );

    host!(
        l,
        E,
        "proxy_set_buffer_bytes",
        Buffer,
        |c, buffer: u32, start: u32, length: u32, ptr: u32, size: u32| {
            let nums = [buffer, start, length];
            let (buffer_type, _, mutable) = buffer_from_code(c.data(), buffer, &nums)?;
            let ctx = c.data().context();
            let data = read(c, ptr, size)?
                .ok_or_else(|| answer(IMA).nums(&[buffer, start, length, ptr]))?;
            let status = if !mutable {
                BAD_ARGUMENT
            } else {
                let state = c.data_mut();
                let body = match buffer_type {
                    BufferType::DownstreamData | BufferType::UpstreamData => state
                        .connections
                        .get_mut(&ctx)
                        .and_then(|connection| connection.buffer_mut(buffer_type))
                        .expect("a mutable data buffer belongs to a connection"),
                    _ => {
                        let stream = state
                            .streams
                            .get_mut(&ctx)
                            .expect("a mutable body buffer belongs to a stream");
                        if buffer_type == BufferType::HttpRequestBody {
                            &mut stream.request_body
                        } else {
                            &mut stream.response_body
                        }
                    }
                };
                // Envoy's `Buffer::copyFrom`: start 0 drains `length` bytes (as many as
                // there are) and prepends the data; a start at or past the end appends;
                // any other start is refused.
                if start == 0 {
                    let drained = (length as usize).min(body.len());
                    body.splice(0..drained, data.iter().copied());
                    OK
                } else if start as usize >= body.len() {
                    body.extend_from_slice(&data);
                    OK
                } else {
                    BAD_ARGUMENT
                }
            };
            Ok(answer(status).nums(&nums).strs([data]))
        }
    );

    host!(
        l,
        E,
        "proxy_http_call",
        Plain,
        |c,
         uri_ptr: u32,
         uri_size: u32,
         headers_ptr: u32,
         headers_size: u32,
         body_ptr: u32,
         body_size: u32,
         trailers_ptr: u32,
         trailers_size: u32,
         timeout: u32,
         token_ptr: u32| {
            let uri = read(c, uri_ptr, uri_size)?;
            let body = read(c, body_ptr, body_size)?;
            let headers = read(c, headers_ptr, headers_size)?;
            let trailers = read(c, trailers_ptr, trailers_size)?;
            let (Some(uri), Some(body), Some(headers), Some(trailers)) =
                (uri, body, headers, trailers)
            else {
                return Ok(answer(IMA).nums(&[uri_ptr, uri_size]));
            };
            if !set_u32(c, token_ptr, 0)? {
                return Ok(answer(IMA).strs([uri]));
            }
            let headers = HeaderMap::from_pairs(parse_pairs(&headers));
            let trailers = HeaderMap::from_pairs(parse_pairs(&trailers));
            let cluster = String::from_utf8_lossy(&uri).into_owned();
            let state = c.data_mut();
            let valid = (timeout as i32) >= 0
                && state.clusters.contains(&cluster)
                && headers.get(b":path").is_some()
                && headers.get(b":method").is_some()
                && headers.get(b":authority").is_some();
            if !valid {
                return Ok(answer(BAD_ARGUMENT).nums(&[timeout]).strs([uri]));
            }
            let mut headers = headers;
            if !body.is_empty() {
                headers.replace(b"content-length", body.len().to_string().as_bytes());
            }
            state.next_http_call += 4;
            let token = state.next_http_call;
            let origin_context_id = state.context();
            let context_id = state.root_of(origin_context_id);
            let deadline = (timeout > 0).then(|| state.now_ns + u64::from(timeout) * 1_000_000);
            state.http_callouts.insert(
                token,
                HttpCallout {
                    token,
                    context_id,
                    origin_context_id,
                    cluster,
                    headers,
                    body,
                    trailers,
                    timeout_ms: timeout,
                    deadline,
                },
            );
            let _ = set_u32(c, token_ptr, token)?;
            Ok(answer(OK).nums(&[timeout, token]).strs([uri]))
        }
    );

    host!(
        l,
        E,
        "proxy_grpc_call",
        Plain,
        |c,
         service_ptr: u32,
         service_size: u32,
         name_ptr: u32,
         name_size: u32,
         method_ptr: u32,
         method_size: u32,
         metadata_ptr: u32,
         metadata_size: u32,
         request_ptr: u32,
         request_size: u32,
         timeout: u32,
         token_ptr: u32| {
            let strings = [
                (service_ptr, service_size),
                (name_ptr, name_size),
                (method_ptr, method_size),
                (metadata_ptr, metadata_size),
            ];
            grpc_open(
                c,
                strings,
                Some((request_ptr, request_size, timeout)),
                token_ptr,
            )
        }
    );

    host!(
        l,
        E,
        "proxy_grpc_stream",
        Plain,
        |c,
         service_ptr: u32,
         service_size: u32,
         name_ptr: u32,
         name_size: u32,
         method_ptr: u32,
         method_size: u32,
         metadata_ptr: u32,
         metadata_size: u32,
         token_ptr: u32| {
            let strings = [
                (service_ptr, service_size),
                (name_ptr, name_size),
                (method_ptr, method_size),
                (metadata_ptr, metadata_size),
            ];
            grpc_open(c, strings, None, token_ptr)
        }
    );

    host!(
        l,
        E,
        "proxy_grpc_send",
        Plain,
        |c, token: u32, ptr: u32, size: u32, end_stream: u32| {
            let message =
                read(c, ptr, size)?.ok_or_else(|| answer(IMA).nums(&[token, ptr, size]))?;
            let state = c.data_mut();
            let status = if token & 3 != 2 {
                BAD_ARGUMENT
            } else {
                match state.grpc_callouts.get_mut(&token) {
                    None => NOT_FOUND,
                    Some(callout) => {
                        callout.messages.push(message.clone());
                        OK
                    }
                }
            };
            Ok(answer(status).nums(&[token, end_stream]).strs([message]))
        }
    );

    for name in ["proxy_grpc_close", "proxy_grpc_cancel"] {
        host!(l, E, name, Plain, |c, token: u32| {
            let state = c.data_mut();
            let status = match token & 3 {
                1 | 2 => match state.grpc_callouts.get_mut(&token) {
                    None => NOT_FOUND,
                    Some(callout) => {
                        if callout.is_stream && name == "proxy_grpc_close" && !callout.remote_closed
                        {
                            callout.local_closed = true;
                        } else {
                            state.grpc_callouts.remove(&token);
                        }
                        OK
                    }
                },
                _ => BAD_ARGUMENT,
            };
            Ok(answer(status).nums(&[token]))
        });
    }

    host!(
        l,
        E,
        "proxy_set_tick_period_milliseconds",
        Plain,
        |c, period: u32| {
            let state = c.data_mut();
            let root = state.root_of(state.context());
            if let Some(plugin) = state.root_contexts.get(&root).copied() {
                let now = state.now_ns;
                let plugin = &mut state.plugins[plugin];
                plugin.tick_period_ms = period;
                plugin.next_tick = (period > 0).then(|| now + u64::from(period) * 1_000_000);
            }
            Ok(answer(OK).nums(&[period]))
        }
    );

    host!(
        l,
        E,
        "proxy_get_current_time_nanoseconds",
        Plain,
        |c, ptr: u32| {
            let now = c.data().epoch_ns + c.data().now_ns;
            Ok(answer(wrote(set_u64(c, ptr, now)?)).nums(&[now]))
        }
    );

    host!(
        l,
        E,
        "proxy_define_metric",
        Plain,
        |c, kind: u32, name_ptr: u32, name_size: u32, id_ptr: u32| {
            let name = read(c, name_ptr, name_size)?
                .ok_or_else(|| answer(IMA).nums(&[kind, name_ptr, name_size]))?;
            if kind > 2 {
                return Ok(answer(BAD_ARGUMENT).nums(&[kind]).strs([name]));
            }
            let state = c.data_mut();
            let counter = match kind {
                0 => &mut state.next_counter,
                1 => &mut state.next_gauge,
                _ => &mut state.next_histogram,
            };
            *counter += 4;
            let id = *counter;
            let name_text = String::from_utf8_lossy(&name).into_owned();
            state
                .metric_values
                .entry(name_text.clone())
                .or_insert(MetricValue {
                    kind,
                    value: 0,
                    count: 0,
                });
            state.metrics.insert(
                id,
                Metric {
                    kind,
                    name: name_text,
                },
            );
            let status = wrote(set_u32(c, id_ptr, id)?);
            Ok(answer(status).nums(&[kind, id]).strs([name]))
        }
    );

    host!(
        l,
        E,
        "proxy_increment_metric",
        Plain,
        |c, id: u32, offset: i64| {
            let state = c.data_mut();
            let metric = state.metrics.get(&id).cloned();
            let status = match (id & 3, metric) {
                (0, None) | (1, None) => NOT_FOUND,
                (0, Some(metric)) => {
                    if offset > 0 {
                        let value = state.metric_values.entry(metric.name).or_default();
                        value.value = value.value.wrapping_add(offset as u64);
                        OK
                    } else {
                        BAD_ARGUMENT
                    }
                }
                (1, Some(metric)) => {
                    let value = state.metric_values.entry(metric.name).or_default();
                    value.value = value.value.wrapping_add(offset as u64);
                    OK
                }
                _ => BAD_ARGUMENT,
            };
            Ok(answer(status).nums(&[u64::from(id), offset as u64]))
        }
    );

    host!(
        l,
        E,
        "proxy_record_metric",
        Plain,
        |c, id: u32, value: u64| {
            let state = c.data_mut();
            let status = match state.metrics.get(&id).cloned() {
                None => NOT_FOUND,
                Some(metric) => {
                    let slot = state.metric_values.entry(metric.name).or_default();
                    match metric.kind {
                        0 => slot.value = slot.value.wrapping_add(value),
                        1 => slot.value = value,
                        _ => {
                            slot.value = value;
                            slot.count += 1;
                        }
                    }
                    OK
                }
            };
            Ok(answer(status).nums(&[u64::from(id), value]))
        }
    );

    host!(l, E, "proxy_get_metric", Plain, |c, id: u32, ptr: u32| {
        let state = c.data();
        let value = match (id & 3, state.metrics.get(&id)) {
            (0 | 1, None) => Err(NOT_FOUND),
            (0 | 1, Some(metric)) => Ok(state
                .metric_values
                .get(&metric.name)
                .map_or(0, |value| value.value)),
            _ => Err(BAD_ARGUMENT),
        };
        let status = match value {
            Err(status) => status,
            Ok(value) => wrote(set_u64(c, ptr, value)?),
        };
        Ok(answer(status).nums(&[id]))
    });

    // Envoy's own extension (`wasm.cc` `resolve_dns`): the token is written before the
    // resolution starts; a VM's first token is 2 (seen in Envoy 1.40, which also resolved
    // `localhost` inline, calling `envoy_on_resolve_dns` before the call returned). host-sim
    // resolves nothing, so no `envoy_on_resolve_dns` follows.
    host!(
        l,
        E,
        "envoy_resolve_dns",
        Plain,
        |c, address_ptr: u32, address_size: u32, token_ptr: u32| {
            let address = read(c, address_ptr, address_size)?.ok_or_else(|| answer(IMA))?;
            let state = c.data_mut();
            state.next_dns_token = state.next_dns_token.wrapping_add(1).max(1);
            let token = state.next_dns_token;
            let status = wrote(set_u32(c, token_ptr, token)?);
            Ok(answer(status).nums(&[token]).strs([address]))
        }
    );

    l.func_wrap(E, "pthread_equal", |c: C<'_>, left: u32, right: u32| -> R {
        enter(&c, E, "pthread_equal")?;
        Ok(u32::from(left == right))
    })?;

    l.func_wrap(
        E,
        "emscripten_notify_memory_growth",
        |c: C<'_>, _memory_index: u32| -> wasmtime::Result<()> {
            enter(&c, E, "emscripten_notify_memory_growth")?;
            Ok(())
        },
    )?;

    Ok(())
}

/// `proxy_grpc_call` (with a request and a timeout) and `proxy_grpc_stream` (without):
/// reads the service, name, method and metadata, starts the call and writes its token.
fn grpc_open(
    c: &mut C<'_>,
    strings: [(u32, u32); 4],
    call: Option<(u32, u32, u32)>,
    token_ptr: u32,
) -> Result<Answer, Stop> {
    let [(service_ptr, service_size), name, method, metadata] = strings;
    let service = read(c, service_ptr, service_size)?;
    let name = read(c, name.0, name.1)?;
    let method = read(c, method.0, method.1)?;
    let metadata = read(c, metadata.0, metadata.1)?;
    let (request, timeout) = match call {
        Some((ptr, size, timeout)) => (read(c, ptr, size)?.map(Some), Some(timeout)),
        None => (Some(None), None),
    };
    let (Some(service), Some(name), Some(method), Some(metadata), Some(request)) =
        (service, name, method, metadata, request)
    else {
        return Ok(answer(IMA).nums(&[service_ptr, service_size]));
    };
    let started = grpc_start(
        c.data_mut(),
        &service,
        &name,
        &method,
        &metadata,
        request,
        timeout.unwrap_or(0),
    );
    let status = match started {
        Ok(token) => wrote(set_u32(c, token_ptr, token)?),
        Err(status) => status,
    };
    let answer = answer(status).strs([service, name, method]);
    Ok(match timeout {
        Some(timeout) => answer.nums(&[timeout]),
        None => answer,
    })
}

fn grpc_start(
    state: &mut HostState,
    service: &[u8],
    name: &[u8],
    method: &[u8],
    metadata: &[u8],
    request: Option<Vec<u8>>,
    timeout: u32,
) -> Result<u32, u32> {
    let cluster = String::from_utf8_lossy(service).into_owned();
    if service.is_empty() {
        // An empty `grpc_service` parses as an empty GrpcService proto, which Envoy cannot
        // build a client for.
        return Err(BAD_ARGUMENT);
    }
    if !state.clusters.contains(&cluster) {
        return Err(PARSE_FAILURE);
    }
    let is_stream = request.is_none();
    let token = if is_stream {
        state.next_grpc_stream += 4;
        state.next_grpc_stream
    } else {
        state.next_grpc_call += 4;
        state.next_grpc_call
    };
    let origin_context_id = state.context();
    let context_id = state.root_of(origin_context_id);
    let now = state.now_ns;
    state.grpc_callouts.insert(
        token,
        GrpcCallout {
            token,
            context_id,
            origin_context_id,
            cluster,
            service: String::from_utf8_lossy(name).into_owned(),
            method: String::from_utf8_lossy(method).into_owned(),
            initial_metadata: HeaderMap::from_pairs(parse_pairs(metadata)),
            messages: request.into_iter().collect(),
            is_stream,
            local_closed: false,
            timeout_ms: timeout,
            deadline: (!is_stream && timeout > 0).then(|| now + u64::from(timeout) * 1_000_000),
            remote_closed: false,
        },
    );
    Ok(token)
}

/// `Context::continueStream`: defers the continuation and, as Envoy does, forgets the request
/// maps and body of the current callback.
fn continue_stream(state: &mut HostState, stream_type: u32) -> u32 {
    let ctx = state.context();
    match stream_type {
        0 | 1 => {
            if state.streams.contains_key(&ctx) {
                state.after.push(After::Continue {
                    context_id: ctx,
                    stream_type,
                });
            }
            OK
        }
        2 => {
            if state.connections.contains_key(&ctx) {
                state
                    .after
                    .push(After::ContinueConnection { context_id: ctx });
            }
            OK
        }
        3 => UNIMPLEMENTED,
        _ => BAD_ARGUMENT,
    }
}

#[allow(
    clippy::too_many_lines,
    reason = "one registration per WASI function, in one place"
)]
fn add_wasi(l: &mut Linker<HostState>, m: &'static str) -> wasmtime::Result<()> {
    use FirstArg::Plain;

    fn stdio(fd: u32) -> bool {
        fd == 1 || fd == 2
    }

    /// `errno` when the answer's write to guest memory succeeded, EFAULT when it did not.
    fn unless_fault(written: bool, errno: u32) -> u32 {
        if written { errno } else { WASI_EFAULT }
    }

    /// Logs what the guest writes to stdout (info) or stderr (error), then writes how many
    /// bytes it took; answers the errno.
    fn writev(
        c: &mut C<'_>,
        fd: u32,
        iovs: u32,
        iovs_len: u32,
        nwritten_ptr: u32,
    ) -> wasmtime::Result<u32> {
        let level = match fd {
            1 => 2,
            2 => 4,
            _ => return Ok(WASI_EBADF),
        };
        let memory = memory(c)?;
        let data = memory.data(&*c);
        let mut text = Vec::new();
        for idx in 0..iovs_len {
            let Some(at) = idx
                .checked_mul(8)
                .and_then(|offset| iovs.checked_add(offset))
            else {
                return Ok(WASI_EFAULT);
            };
            let Some(iovec) = read_guest(data, at, 8) else {
                return Ok(WASI_EFAULT);
            };
            let buf = u32::from_le_bytes(iovec[0..4].try_into().expect("4 bytes"));
            let buf_len = u32::from_le_bytes(iovec[4..8].try_into().expect("4 bytes"));
            if buf_len != 0 {
                let Some(bytes) = read_guest(data, buf, buf_len) else {
                    return Ok(WASI_EFAULT);
                };
                if text.len() + bytes.len() > 16 * 1024 * 1024 {
                    return Ok(WASI_EFAULT);
                }
                text.extend_from_slice(bytes);
            }
        }
        let written = text.len() as u32;
        if !text.is_empty() {
            if text.last() == Some(&b'\n') {
                text.pop();
            }
            let ctx = c.data().context();
            c.data_mut().push_log(ctx, level, &text);
        }
        Ok(unless_fault(
            set_u32(c, nwritten_ptr, written)?,
            WASI_SUCCESS,
        ))
    }

    // fd_pwrite is answered as fd_write: stdout and stderr have no offset.
    host!(
        l,
        m,
        "fd_write",
        Plain,
        |c, fd: u32, iovs: u32, iovs_len: u32, nwritten_ptr: u32| {
            Ok(answer(writev(c, fd, iovs, iovs_len, nwritten_ptr)?).nums(&[fd]))
        }
    );
    host!(
        l,
        m,
        "fd_pwrite",
        Plain,
        |c, fd: u32, iovs: u32, iovs_len: u32, _offset: u64, nwritten_ptr: u32| {
            Ok(answer(writev(c, fd, iovs, iovs_len, nwritten_ptr)?).nums(&[fd]))
        }
    );

    // Fixed answers.
    macro_rules! fixed {
        ($name:literal, ($($arg:ident : $ty:ty),*), $errno:expr) => {
            host!(l, m, $name, Plain, |_c $(, $arg: $ty)*| {
                $(let _ = $arg;)*
                Ok(answer($errno))
            });
        };
    }
    fixed!("fd_read", (a: u32, b: u32, d: u32, e: u32), WASI_ENOSYS);
    fixed!("path_open", (a: u32, b: u32, d: u32, e: u32, f: u32, g: i64, h: i64, i: u32, j: u32), WASI_ENOENT);
    fixed!("fd_prestat_get", (a: u32, b: u32), WASI_EBADF);
    fixed!("fd_prestat_dir_name", (a: u32, b: u32, d: u32), WASI_ENOSYS);
    fixed!("fd_filestat_get", (a: u32, b: u32), WASI_EBADF);
    fixed!("path_filestat_get", (a: u32, b: u32, d: u32, e: u32, f: u32), WASI_ENOTSUP);
    fixed!("fd_fdstat_set_flags", (a: u32, b: u32), WASI_ENOSYS);
    fixed!("args_get", (a: u32, b: u32), WASI_SUCCESS);
    fixed!("fd_advise", (a: u32, b: u64, d: u64, e: u32), WASI_SUCCESS);
    fixed!("fd_pread", (a: u32, b: u32, d: u32, e: u64, f: u32), WASI_ENOSYS);
    fixed!("path_create_directory", (a: u32, b: u32, d: u32), WASI_ENOTSUP);
    fixed!("path_filestat_set_times", (a: u32, b: u32, d: u32, e: u32, f: u64, g: u64, h: u32), WASI_ENOTSUP);
    fixed!("path_link", (a: u32, b: u32, d: u32, e: u32, f: u32, g: u32), WASI_ENOTSUP);
    fixed!("path_remove_directory", (a: u32, b: u32, d: u32), WASI_ENOTSUP);
    fixed!("path_rename", (a: u32, b: u32, d: u32, e: u32, f: u32, g: u32), WASI_ENOTSUP);
    fixed!("path_symlink", (a: u32, b: u32, d: u32, e: u32), WASI_ENOTSUP);
    fixed!("path_unlink_file", (a: u32, b: u32, d: u32), WASI_ENOTSUP);
    fixed!("sock_shutdown", (a: u32, b: u32), WASI_ENOTSUP);
    fixed!("sched_yield", (), WASI_SUCCESS);
    fixed!("fd_seek", (a: u32, b: i64, d: u32, e: u32), WASI_SUCCESS);
    fixed!("fd_close", (a: u32), WASI_SUCCESS);

    // Answers that depend on the fd being stdout or stderr.
    macro_rules! stdio_only {
        ($name:literal, ($fd:ident $(, $arg:ident : $ty:ty)*), $ok:expr) => {
            host!(l, m, $name, Plain, |_c, $fd: u32 $(, $arg: $ty)*| {
                $(let _ = $arg;)*
                let errno = if stdio($fd) { $ok } else { WASI_EBADF };
                Ok(answer(errno).nums(&[$fd]))
            });
        };
    }
    stdio_only!("fd_allocate", (fd, a: u64, b: u64), WASI_SUCCESS);
    stdio_only!("fd_datasync", (fd), WASI_SUCCESS);
    stdio_only!("fd_fdstat_set_rights", (fd, a: u64, b: u64), WASI_SUCCESS);
    stdio_only!("fd_filestat_set_size", (fd, a: u64), WASI_SUCCESS);
    stdio_only!("fd_filestat_set_times", (fd, a: u64, b: u64, d: u32), WASI_SUCCESS);
    stdio_only!("fd_sync", (fd), WASI_SUCCESS);

    host!(l, m, "fd_renumber", Plain, |_c, fd: u32, to: u32| {
        let errno = if stdio(fd) && stdio(to) {
            WASI_ENOTSUP
        } else {
            WASI_EBADF
        };
        Ok(answer(errno).nums(&[fd, to]))
    });

    host!(l, m, "fd_fdstat_get", Plain, |c, fd: u32, stat_ptr: u32| {
        if !stdio(fd) {
            return Ok(answer(WASI_EBADF).nums(&[fd]));
        }
        // Envoy ignores a failed write here and still answers success.
        let mut stat = [0u8; 24];
        stat[8..16].copy_from_slice(&64u64.to_le_bytes());
        let _ = write(c, stat_ptr, &stat)?;
        Ok(answer(WASI_SUCCESS).nums(&[fd]))
    });

    host!(
        l,
        m,
        "environ_sizes_get",
        Plain,
        |c, count_ptr: u32, size_ptr: u32| {
            let env = &c.data().environment;
            let count = env.len() as u32;
            let size: usize = env
                .iter()
                .map(|(key, value)| key.len() + value.len() + 2)
                .sum();
            let written = set_u32(c, count_ptr, count)? && set_u32(c, size_ptr, size as u32)?;
            Ok(answer(unless_fault(written, WASI_SUCCESS)))
        }
    );

    host!(
        l,
        m,
        "environ_get",
        Plain,
        |c, array_ptr: u32, buf_ptr: u32| {
            let (mut array_ptr, mut buf_ptr) = (array_ptr, buf_ptr);
            let env = c.data().environment.clone();
            for (key, value) in env {
                if !set_u32(c, array_ptr, buf_ptr)? {
                    return Ok(answer(WASI_EFAULT));
                }
                let entry = format!("{key}={value}\0");
                if !write(c, buf_ptr, entry.as_bytes())? {
                    return Ok(answer(WASI_EFAULT));
                }
                buf_ptr = buf_ptr.wrapping_add(entry.len() as u32);
                array_ptr = array_ptr.wrapping_add(4);
            }
            Ok(answer(WASI_SUCCESS))
        }
    );

    host!(
        l,
        m,
        "args_sizes_get",
        Plain,
        |c, argc_ptr: u32, size_ptr: u32| {
            let written = set_u32(c, argc_ptr, 0)? && set_u32(c, size_ptr, 0)?;
            Ok(answer(unless_fault(written, WASI_SUCCESS)))
        }
    );

    host!(
        l,
        m,
        "clock_time_get",
        Plain,
        |c, clock: u32, _precision: u64, ptr: u32| {
            let state = c.data();
            let errno = match clock {
                0 => unless_fault(
                    set_u64(c, ptr, state.epoch_ns + state.now_ns)?,
                    WASI_SUCCESS,
                ),
                1 => unless_fault(set_u64(c, ptr, state.now_ns)?, WASI_SUCCESS),
                _ => WASI_ENOTSUP,
            };
            Ok(answer(errno).nums(&[clock]))
        }
    );

    host!(l, m, "clock_res_get", Plain, |c, clock: u32, ptr: u32| {
        let errno = if clock > 1 {
            WASI_ENOTSUP
        } else {
            unless_fault(set_u64(c, ptr, 1)?, WASI_SUCCESS)
        };
        Ok(answer(errno).nums(&[clock]))
    });

    host!(
        l,
        m,
        "fd_readdir",
        Plain,
        |c, _fd: u32, _buf: u32, _len: u32, _cookie: u64, nread_ptr: u32| {
            Ok(answer(unless_fault(
                set_u32(c, nread_ptr, 0)?,
                WASI_ENOTDIR,
            )))
        }
    );

    host!(l, m, "fd_tell", Plain, |c, fd: u32, ptr: u32| {
        let errno = if stdio(fd) {
            unless_fault(set_u64(c, ptr, 0)?, WASI_SUCCESS)
        } else {
            WASI_EBADF
        };
        Ok(answer(errno).nums(&[fd]))
    });

    host!(
        l,
        m,
        "path_readlink",
        Plain,
        |c, _fd: u32, _path: u32, _len: u32, _buf: u32, _buf_len: u32, ptr: u32| {
            Ok(answer(unless_fault(set_u32(c, ptr, 0)?, WASI_ENOTSUP)))
        }
    );

    host!(
        l,
        m,
        "sock_accept",
        Plain,
        |c, _fd: u32, _flags: u32, ptr: u32| {
            // Envoy writes a 64-bit zero here (`setDatatype(retptr0, 0UL)`).
            Ok(answer(unless_fault(set_u64(c, ptr, 0)?, WASI_ENOTSUP)))
        }
    );

    host!(
        l,
        m,
        "sock_recv",
        Plain,
        |c, _fd: u32, _data: u32, _len: u32, _flags: u32, ptr0: u32, ptr1: u32| {
            Ok(answer(unless_fault(
                set_u32(c, ptr0, 0)? && write(c, ptr1, &0u16.to_le_bytes())?,
                WASI_ENOTSUP,
            )))
        }
    );

    host!(
        l,
        m,
        "sock_send",
        Plain,
        |c, _fd: u32, _data: u32, _len: u32, _flags: u32, ptr0: u32| {
            Ok(answer(unless_fault(set_u32(c, ptr0, 0)?, WASI_ENOTSUP)))
        }
    );

    host!(l, m, "random_get", Plain, |c, ptr: u32, len: u32| {
        if len > RANDOM_GET_MAX {
            return Ok(answer(WASI_EINVAL).nums(&[len]));
        }
        if len == 0 {
            return Ok(answer(WASI_SUCCESS).nums(&[len]));
        }
        // Deterministic bytes (a test needs reproducible runs), from a xorshift generator.
        let mut bytes = vec![0u8; len as usize];
        let state = c.data_mut();
        for byte in &mut bytes {
            state.random_state ^= state.random_state << 13;
            state.random_state ^= state.random_state >> 7;
            state.random_state ^= state.random_state << 17;
            *byte = state.random_state as u8;
        }
        Ok(answer(unless_fault(write(c, ptr, &bytes)?, WASI_SUCCESS)).nums(&[len]))
    });

    host!(
        l,
        m,
        "poll_oneoff",
        Plain,
        |c, _in: u32, _out: u32, _n: u32, nevents_ptr: u32| {
            Ok(answer(unless_fault(
                set_u32(c, nevents_ptr, 0)?,
                WASI_SUCCESS,
            )))
        }
    );

    l.func_wrap(
        m,
        "proc_exit",
        move |mut c: C<'_>, code: u32| -> wasmtime::Result<()> {
            enter(&c, m, "proc_exit")?;
            // Envoy only logs (at trace level) and returns.
            run(&mut c, "proc_exit", Plain, |_| Ok(answer(0).nums(&[code])))?;
            Ok(())
        },
    )?;

    Ok(())
}
