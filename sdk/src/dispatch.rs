//! Routes the host's callbacks to the filter's contexts; [`crate::export_filter!`] calls these.
//!
//! The dispatcher state is one [`Filter`] per VM (a static that [`crate::export_filter!`]
//! declares, typed by the filter's root) holding the roots and streams, plus one untyped
//! [`Globals`] holding the pending http callouts. A context is taken out of the state while
//! its callback runs, so the callback may call anything in the SDK (including registering
//! callouts) without a nested borrow.

use alloc::boxed::Box;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec::Vec;
use core::any::Any;

use crate::abi::{self, GuestCell};
use crate::http::CallResponse;
use crate::tcp::{PeerType, TcpContext};
use crate::{Action, Config, HttpContext, RootContext, logger};

/// A continuation waiting for an http callout's response; it downcasts the context itself.
pub(crate) type Continuation = Box<dyn FnOnce(&mut dyn Any, CallResponse)>;

pub(crate) struct Callout {
    pub(crate) context_id: u32,
    pub(crate) continuation: Continuation,
}

/// Values by context id or token, in two sorted `Vec`s: ids mostly grow, so inserts append,
/// and the id search is one non-generic function instead of `BTreeMap`'s monomorphized nodes.
pub(crate) struct Slots<T> {
    ids: Vec<u32>,
    values: Vec<T>,
}

fn position(ids: &[u32], id: u32) -> Result<usize, usize> {
    ids.binary_search(&id)
}

impl<T> Slots<T> {
    const fn new() -> Slots<T> {
        Slots {
            ids: Vec::new(),
            values: Vec::new(),
        }
    }

    pub(crate) fn insert(&mut self, id: u32, value: T) {
        match position(&self.ids, id) {
            Ok(idx) => {
                if let Some(slot) = self.values.get_mut(idx) {
                    *slot = value;
                }
            }
            Err(idx) => {
                self.ids.insert(idx, id);
                self.values.insert(idx, value);
            }
        }
    }

    pub(crate) fn remove(&mut self, id: u32) -> Option<T> {
        let idx = position(&self.ids, id).ok()?;
        self.ids.remove(idx);
        Some(self.values.remove(idx))
    }

    fn contains(&self, id: u32) -> bool {
        position(&self.ids, id).is_ok()
    }

    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&T) -> bool) {
        let mut idx = 0;
        while let Some(value) = self.values.get(idx) {
            if keep(value) {
                idx += 1;
            } else {
                self.ids.remove(idx);
                self.values.remove(idx);
            }
        }
    }
}

/// What the host told a gRPC handler, before anything is read: the handler (in `grpc.rs`)
/// reads the message or metadata itself, so a filter that never opens a gRPC stream does not
/// link the metadata decoding.
#[derive(Clone, Copy)]
pub(crate) enum GrpcSignal {
    InitialMetadata { n_elements: usize },
    Message { size: usize },
    TrailingMetadata { n_elements: usize },
    Close { status_code: u32 },
}

/// A gRPC call's or stream's event handler; it downcasts the context itself.
pub(crate) type GrpcHandler = Box<dyn FnMut(&mut dyn Any, GrpcSignal)>;

pub(crate) struct Globals {
    pub(crate) callouts: Slots<Callout>,
    /// gRPC handlers by token, with the id of the context that made the call.
    pub(crate) grpc: Slots<(u32, GrpcHandler)>,
    /// The token of the last cancelled gRPC stream, so a handler that cancels its own stream
    /// is not put back after it returns.
    pub(crate) cancelled_grpc_token: u32,
    pub(crate) current_context_id: u32,
}

impl Globals {
    const fn new() -> Globals {
        Globals {
            callouts: Slots::new(),
            grpc: Slots::new(),
            cancelled_grpc_token: 0,
            current_context_id: 0,
        }
    }
}

#[cfg(target_arch = "wasm32")]
static GLOBALS: GuestCell<Globals> = GuestCell::new(Globals::new());

#[cfg(not(target_arch = "wasm32"))]
std::thread_local! {
    static GLOBALS: GuestCell<Globals> = const { GuestCell::new(Globals::new()) };
}

/// Runs `f` on the VM's dispatcher state; `None` on a nested call (never in practice).
pub(crate) fn with_globals<T>(f: impl FnOnce(&mut Globals) -> T) -> Option<T> {
    #[cfg(target_arch = "wasm32")]
    {
        GLOBALS.with(f)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        GLOBALS.with(|globals| globals.with(f))
    }
}

/// Forgets every context and callout (the fake host's "new VM").
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn reset() {
    with_globals(|globals| *globals = Globals::new());
}

struct Root<R: RootContext> {
    context: Box<R>,
    config: Option<Rc<R::Config>>,
}

struct Inner<R: RootContext> {
    roots: Slots<Root<R>>,
    streams: Slots<Box<R::Http>>,
    connections: Slots<Box<dyn TcpContext>>,
}

/// The filter's contexts in one VM; [`crate::export_filter!`] declares one as a static and
/// routes every callback to it.
pub struct Filter<R: RootContext>(GuestCell<Inner<R>>);

impl<R: RootContext> Default for Filter<R> {
    fn default() -> Self {
        Filter::new()
    }
}

fn enter(context_id: u32) {
    with_globals(|globals| globals.current_context_id = context_id);
}

pub(crate) fn read_buffer(buffer_type: u32, size: usize) -> Vec<u8> {
    if size == 0 {
        return Vec::new();
    }
    abi::get_buffer_bytes(buffer_type, 0, size)
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// The plugin configuration's bytes. A host that cannot hand them over (an error status, not
/// `NOT_FOUND`, which means there are none) rejects the configuration: taking it as empty would
/// silently run the filter without its settings.
fn read_config(size: usize) -> Result<Vec<u8>, String> {
    if size == 0 {
        return Ok(Vec::new());
    }
    let buffer_type = crate::http::BufferType::PluginConfiguration.as_raw();
    match abi::get_buffer_bytes(buffer_type, 0, size) {
        Ok(bytes) => Ok(bytes.unwrap_or_default()),
        // Built by hand: `error.to_string()` would cost this module about 2 KB of `core::fmt`.
        Err(error) => {
            let mut problem = String::from("proxy_get_buffer_bytes returned status ");
            let raw = match error {
                crate::Error::Host { status, .. } => status.as_raw(),
                _ => 0,
            };
            crate::json::push_decimal(&mut problem, raw.into());
            Err(problem)
        }
    }
}

/// Parses and validates a plugin configuration, or says what is wrong with it.
fn parse_config<C: Config>(bytes: &[u8]) -> Result<C, String> {
    let config = if bytes.iter().all(u8::is_ascii_whitespace) {
        C::empty().ok_or_else(|| String::from("plugin configuration is empty"))?
    } else {
        crate::json::from_slice::<C>(bytes).map_err(|error| String::from(error.message()))?
    };
    config.validate()?;
    Ok(config)
}

/// Logs the one line that says why a configuration was rejected.
fn log_invalid_config(problem: &str) {
    let root_id = crate::properties::plugin_root_id()
        .ok()
        .flatten()
        .unwrap_or_default();
    let mut line = String::with_capacity(64 + root_id.len() + problem.len());
    line.push_str("invalid plugin configuration for root_id=");
    line.push_str(&root_id);
    line.push_str(": ");
    line.push_str(problem);
    let _ = abi::log(logger::ERROR, line.as_bytes());
}

/// `proxy_on_memory_allocate`.
pub fn on_memory_allocate(size: usize) -> *mut u8 {
    abi::memory_allocate(size)
}

impl<R: RootContext> Filter<R> {
    /// No contexts yet.
    pub const fn new() -> Filter<R> {
        Filter(GuestCell::new(Inner {
            roots: Slots::new(),
            streams: Slots::new(),
            connections: Slots::new(),
        }))
    }

    /// Runs `f` on root `context_id` taken out of the state, then puts it back.
    fn on_root<T>(&self, context_id: u32, default: T, f: impl FnOnce(&mut Root<R>) -> T) -> T {
        let Some(mut root) = self
            .0
            .with(|inner| inner.roots.remove(context_id))
            .flatten()
        else {
            return default;
        };
        enter(context_id);
        let result = f(&mut root);
        self.0.with(|inner| inner.roots.insert(context_id, root));
        result
    }

    /// Runs `f` on stream `context_id` taken out of the state, then puts it back.
    fn on_stream<T>(&self, context_id: u32, default: T, f: impl FnOnce(&mut R::Http) -> T) -> T {
        let Some(mut stream) = self
            .0
            .with(|inner| inner.streams.remove(context_id))
            .flatten()
        else {
            return default;
        };
        enter(context_id);
        let result = f(&mut stream);
        self.0
            .with(|inner| inner.streams.insert(context_id, stream));
        result
    }

    /// Runs `f` on connection `context_id` taken out of the state, then puts it back.
    fn on_connection<T>(
        &self,
        context_id: u32,
        default: T,
        f: impl FnOnce(&mut dyn TcpContext) -> T,
    ) -> T {
        if !R::TCP {
            return default;
        }
        let Some(mut connection) = self
            .0
            .with(|inner| inner.connections.remove(context_id))
            .flatten()
        else {
            return default;
        };
        enter(context_id);
        let result = f(&mut *connection);
        self.0
            .with(|inner| inner.connections.insert(context_id, connection));
        result
    }

    fn is_connection(&self, context_id: u32) -> bool {
        // Without TCP support the connection plumbing compiles away.
        R::TCP && self.0.with(|inner| inner.connections.contains(context_id)) == Some(true)
    }

    /// `proxy_on_new_connection`.
    pub fn on_new_connection(&self, context_id: u32) -> u32 {
        self.on_connection(context_id, Action::Continue, |connection| {
            connection.on_new_connection()
        })
        .as_raw()
    }

    /// `proxy_on_downstream_data`.
    pub fn on_downstream_data(&self, context_id: u32, data_size: usize, eos: u32) -> u32 {
        self.on_connection(context_id, Action::Continue, |connection| {
            connection.on_downstream_data(data_size, eos != 0)
        })
        .as_raw()
    }

    /// `proxy_on_upstream_data`.
    pub fn on_upstream_data(&self, context_id: u32, data_size: usize, eos: u32) -> u32 {
        self.on_connection(context_id, Action::Continue, |connection| {
            connection.on_upstream_data(data_size, eos != 0)
        })
        .as_raw()
    }

    /// `proxy_on_downstream_connection_close`.
    pub fn on_downstream_connection_close(&self, context_id: u32, peer: u32) {
        self.on_connection(context_id, (), |connection| {
            connection.on_downstream_close(PeerType::from_raw(peer))
        });
    }

    /// `proxy_on_upstream_connection_close`.
    pub fn on_upstream_connection_close(&self, context_id: u32, peer: u32) {
        self.on_connection(context_id, (), |connection| {
            connection.on_upstream_close(PeerType::from_raw(peer))
        });
    }

    fn is_stream(&self, context_id: u32) -> bool {
        self.0.with(|inner| inner.streams.contains(context_id)) == Some(true)
    }

    /// `proxy_on_context_create`.
    pub fn on_context_create(&self, context_id: u32, parent_context_id: u32) {
        if parent_context_id == 0 {
            logger::install();
            let root = Root::<R> {
                context: Box::default(),
                config: None,
            };
            self.0.with(|inner| inner.roots.insert(context_id, root));
            return;
        }
        let created = self.on_root(parent_context_id, None, |root| {
            let config = root.config.clone()?;
            if R::TCP
                && let Some(connection) =
                    root.context.create_tcp_context(context_id, config.clone())
            {
                return Some(Err(connection));
            }
            Some(Ok(Box::new(
                root.context.create_http_context(context_id, config),
            )))
        });
        match created {
            Some(Ok(stream)) => {
                self.0
                    .with(|inner| inner.streams.insert(context_id, stream));
            }
            Some(Err(connection)) => {
                self.0
                    .with(|inner| inner.connections.insert(context_id, connection));
            }
            None => {}
        }
    }

    /// `proxy_on_vm_start`.
    pub fn on_vm_start(&self, context_id: u32, size: usize) -> u32 {
        let vm_configuration = read_buffer(crate::http::BufferType::VmConfiguration.as_raw(), size);
        self.on_root(context_id, true, |root| {
            root.context.on_vm_start(&vm_configuration)
        })
        .into()
    }

    /// `proxy_on_configure`.
    pub fn on_configure(&self, context_id: u32, size: usize) -> u32 {
        let _ = logger::refresh_level();
        self.on_root(context_id, false, |root| {
            let config = match read_config(size).and_then(|bytes| parse_config(&bytes)) {
                Ok(config) => Rc::new(config),
                Err(problem) => {
                    log_invalid_config(&problem);
                    return false;
                }
            };
            if !root.context.on_configure(&config) {
                return false;
            }
            root.config = Some(config);
            true
        })
        .into()
    }

    /// `proxy_on_tick`.
    pub fn on_tick(&self, context_id: u32) {
        let _ = logger::refresh_level();
        self.on_root(context_id, (), |root| root.context.on_tick());
    }

    /// `proxy_on_queue_ready`.
    pub fn on_queue_ready(&self, context_id: u32, queue_id: u32) {
        self.on_root(context_id, (), |root| root.context.on_queue_ready(queue_id));
    }

    /// `proxy_on_request_headers`.
    pub fn on_request_headers(&self, context_id: u32, n_headers: usize, eos: u32) -> u32 {
        self.on_stream(context_id, Action::Continue, |stream| {
            stream.on_http_request_headers(n_headers, eos != 0)
        })
        .as_raw()
    }

    /// `proxy_on_request_body`.
    pub fn on_request_body(&self, context_id: u32, body_size: usize, eos: u32) -> u32 {
        self.on_stream(context_id, Action::Continue, |stream| {
            stream.on_http_request_body(body_size, eos != 0)
        })
        .as_raw()
    }

    /// `proxy_on_request_trailers`.
    pub fn on_request_trailers(&self, context_id: u32, n_trailers: usize) -> u32 {
        self.on_stream(context_id, Action::Continue, |stream| {
            stream.on_http_request_trailers(n_trailers)
        })
        .as_raw()
    }

    /// `proxy_on_response_headers`.
    pub fn on_response_headers(&self, context_id: u32, n_headers: usize, eos: u32) -> u32 {
        self.on_stream(context_id, Action::Continue, |stream| {
            stream.on_http_response_headers(n_headers, eos != 0)
        })
        .as_raw()
    }

    /// `proxy_on_response_body`.
    pub fn on_response_body(&self, context_id: u32, body_size: usize, eos: u32) -> u32 {
        self.on_stream(context_id, Action::Continue, |stream| {
            stream.on_http_response_body(body_size, eos != 0)
        })
        .as_raw()
    }

    /// `proxy_on_response_trailers`.
    pub fn on_response_trailers(&self, context_id: u32, n_trailers: usize) -> u32 {
        self.on_stream(context_id, Action::Continue, |stream| {
            stream.on_http_response_trailers(n_trailers)
        })
        .as_raw()
    }

    /// `proxy_on_log`.
    pub fn on_log(&self, context_id: u32) {
        if self.is_connection(context_id) {
            self.on_connection(context_id, (), |connection| connection.on_log());
        } else {
            self.on_stream(context_id, (), |stream| stream.on_log());
        }
    }

    /// `proxy_on_done`.
    pub fn on_done(&self, context_id: u32) -> u32 {
        if self.is_stream(context_id) {
            self.on_stream(context_id, true, |stream| stream.on_done())
                .into()
        } else if self.is_connection(context_id) {
            self.on_connection(context_id, true, |connection| connection.on_done())
                .into()
        } else {
            self.on_root(context_id, true, |root| root.context.on_done())
                .into()
        }
    }

    /// `proxy_on_delete`.
    pub fn on_delete(&self, context_id: u32) {
        // Dropped outside the borrow: a context's `Drop` may call into the SDK.
        let removed = self.0.with(|inner| {
            (
                inner.streams.remove(context_id),
                if R::TCP {
                    inner.connections.remove(context_id)
                } else {
                    None
                },
                inner.roots.remove(context_id),
            )
        });
        drop(removed);
        with_globals(|globals| {
            globals
                .callouts
                .retain(|callout| callout.context_id != context_id);
            globals.grpc.retain(|(owner, _)| *owner != context_id);
        });
    }

    /// `proxy_on_http_call_response`: runs the continuation registered with the call's token.
    pub fn on_http_call_response(
        &self,
        context_id: u32,
        token: u32,
        n_headers: usize,
        body_size: usize,
        n_trailers: usize,
    ) {
        let Some(callout) = with_globals(|globals| globals.callouts.remove(token)).flatten() else {
            return;
        };
        let response = CallResponse {
            token,
            n_headers,
            body_size,
            n_trailers,
        };
        let continuation = callout.continuation;
        if self.is_stream(context_id) {
            self.on_stream(context_id, (), |stream| {
                continuation(stream as &mut dyn Any, response)
            });
        } else {
            self.on_root(context_id, (), |root| {
                continuation(&mut *root.context as &mut dyn Any, response)
            });
        }
    }

    /// Runs the handler registered with `token` with context `context_id`, then puts it back
    /// unless this was the close or it cancelled its own stream.
    fn on_grpc_signal(&self, context_id: u32, token: u32, signal: GrpcSignal) {
        let Some((owner, mut handler)) =
            with_globals(|globals| globals.grpc.remove(token)).flatten()
        else {
            return;
        };
        if self.is_stream(context_id) {
            self.on_stream(context_id, (), |stream| {
                handler(stream as &mut dyn Any, signal)
            });
        } else {
            self.on_root(context_id, (), |root| {
                handler(&mut *root.context as &mut dyn Any, signal)
            });
        }
        if let GrpcSignal::Close { .. } = signal {
            return;
        }
        with_globals(|globals| {
            if globals.cancelled_grpc_token == token {
                globals.cancelled_grpc_token = 0;
            } else {
                globals.grpc.insert(token, (owner, handler));
            }
        });
    }

    /// `proxy_on_grpc_receive_initial_metadata`: the stream's initial metadata.
    pub fn on_grpc_receive_initial_metadata(&self, context_id: u32, token: u32, n_elements: usize) {
        self.on_grpc_signal(
            context_id,
            token,
            GrpcSignal::InitialMetadata { n_elements },
        );
    }

    /// `proxy_on_grpc_receive`: one message for the handler registered with `token`.
    pub fn on_grpc_receive(&self, context_id: u32, token: u32, size: usize) {
        self.on_grpc_signal(context_id, token, GrpcSignal::Message { size });
    }

    /// `proxy_on_grpc_receive_trailing_metadata`: the stream's trailing metadata.
    pub fn on_grpc_receive_trailing_metadata(
        &self,
        context_id: u32,
        token: u32,
        n_elements: usize,
    ) {
        self.on_grpc_signal(
            context_id,
            token,
            GrpcSignal::TrailingMetadata { n_elements },
        );
    }

    /// `proxy_on_grpc_close`: the last event for the handler registered with `token`.
    pub fn on_grpc_close(&self, context_id: u32, token: u32, status_code: u32) {
        self.on_grpc_signal(context_id, token, GrpcSignal::Close { status_code });
    }

    /// `proxy_on_foreign_function`: the host calls `function_id` on context `context_id`.
    pub fn on_foreign_function(&self, context_id: u32, function_id: u32, arguments_size: usize) {
        let arguments = read_buffer(crate::http::BufferType::CallData.as_raw(), arguments_size);
        if self.is_stream(context_id) {
            self.on_stream(context_id, (), |stream| {
                stream.on_foreign_function(function_id, &arguments)
            });
        } else if self.is_connection(context_id) {
            self.on_connection(context_id, (), |connection| {
                connection.on_foreign_function(function_id, &arguments)
            });
        } else {
            self.on_root(context_id, (), |root| {
                root.context.on_foreign_function(function_id, &arguments)
            });
        }
    }
}
