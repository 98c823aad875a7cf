//! Routes the host's callbacks to the filter's contexts; [`crate::export_filter!`] calls these.
//!
//! The dispatcher state is one [`Filter`] per VM (a static that [`crate::export_filter!`]
//! declares, typed by the filter's root) holding the roots, streams and connections; the
//! pending callouts live one layer down, in `registry`, which routes each answer to the
//! context that made the call. A context is taken out of the state while
//! its callback runs, so the callback may call anything in the SDK (including registering
//! callouts) without a nested borrow.

use alloc::boxed::Box;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec::Vec;
use core::any::Any;

use crate::abi::{self, GuestCell};
use crate::registry::{self, Fit, GrpcSignal, GrpcStep, HttpAnswer, Route, Slots};
#[cfg(feature = "tcp")]
use crate::tcp::PeerType;
use crate::tcp::TcpContext;
use crate::{Action, Config, HttpContext, RootContext, logger};

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
///
/// It is `Sync` only on wasm32, where a VM has one thread; natively it cannot be shared
/// between threads (`tests/it/dispatch.rs` checks).
pub struct Filter<R: RootContext>(GuestCell<Inner<R>>);

impl<R: RootContext> Default for Filter<R> {
    fn default() -> Self {
        Filter::new()
    }
}

use abi::read_buffer;

/// Logs `message` followed by `key=value` for each pair, without `core::fmt`.
fn log_line(level: u32, message: &str, fields: &[(&str, u32)]) {
    let mut line = String::with_capacity(message.len() + 16 * fields.len());
    line.push_str(message);
    for (key, value) in fields {
        line.push(' ');
        line.push_str(key);
        line.push('=');
        crate::text::push_decimal(&mut line, u64::from(*value));
    }
    let _ = abi::log(level, line.as_bytes());
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
            crate::text::push_decimal(&mut problem, raw.into());
            Err(problem)
        }
    }
}

/// Parses and validates a plugin configuration, or says what is wrong with it.
fn parse_config<C: Config>(bytes: &[u8]) -> Result<C, String> {
    let config = if is_blank(bytes) {
        C::empty().ok_or_else(empty_config)?
    } else {
        crate::json::from_slice::<C>(bytes).map_err(json_problem)?
    };
    config.validate()?;
    Ok(config)
}

// Out of line, not generic: `parse_config` is compiled once per configuration type, and V8
// needs memory superlinear in a function's size to compile it (docs/benchmarks.md).
#[inline(never)]
fn is_blank(bytes: &[u8]) -> bool {
    bytes.iter().all(u8::is_ascii_whitespace)
}

#[inline(never)]
fn empty_config() -> String {
    String::from("plugin configuration is empty")
}

#[inline(never)]
fn json_problem(error: crate::json::Error) -> String {
    String::from(error.message())
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

/// A continuation was written for another type of context than the one that made the call.
fn log_wrong_context(context_id: u32, token: u32) {
    log_line(
        logger::ERROR,
        "callout continuation not run: it takes another context type",
        &[("context_id", context_id), ("token", token)],
    );
}

/// `proxy_on_memory_allocate`.
pub fn on_memory_allocate(size: usize) -> *mut u8 {
    abi::memory_allocate(size)
}

impl<R: RootContext> Filter<R> {
    /// Whether the root serves a network filter: without the `tcp` feature never, and the
    /// connection plumbing compiles away.
    #[cfg(feature = "tcp")]
    const TCP: bool = R::TCP;
    #[cfg(not(feature = "tcp"))]
    const TCP: bool = false;

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
        let previous = registry::enter(context_id);
        let result = f(&mut root);
        registry::leave(previous);
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
        let previous = registry::enter(context_id);
        let result = f(&mut stream);
        registry::leave(previous);
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
        if !Self::TCP {
            return default;
        }
        let Some(mut connection) = self
            .0
            .with(|inner| inner.connections.remove(context_id))
            .flatten()
        else {
            return default;
        };
        let previous = registry::enter(context_id);
        let result = f(&mut *connection);
        registry::leave(previous);
        self.0
            .with(|inner| inner.connections.insert(context_id, connection));
        result
    }

    fn is_connection(&self, context_id: u32) -> bool {
        // Without TCP support the connection plumbing compiles away.
        Self::TCP && self.0.with(|inner| inner.connections.contains(context_id)) == Some(true)
    }

    /// `proxy_on_new_connection`.
    #[cfg(feature = "tcp")]
    pub fn on_new_connection(&self, context_id: u32) -> u32 {
        self.on_connection(context_id, Action::Continue, |connection| {
            connection.on_new_connection()
        })
        .as_raw()
    }

    /// `proxy_on_downstream_data`.
    #[cfg(feature = "tcp")]
    pub fn on_downstream_data(&self, context_id: u32, data_size: usize, eos: u32) -> u32 {
        self.on_connection(context_id, Action::Continue, |connection| {
            connection.on_downstream_data(data_size, eos != 0)
        })
        .as_raw()
    }

    /// `proxy_on_upstream_data`.
    #[cfg(feature = "tcp")]
    pub fn on_upstream_data(&self, context_id: u32, data_size: usize, eos: u32) -> u32 {
        self.on_connection(context_id, Action::Continue, |connection| {
            connection.on_upstream_data(data_size, eos != 0)
        })
        .as_raw()
    }

    /// `proxy_on_downstream_connection_close`.
    #[cfg(feature = "tcp")]
    pub fn on_downstream_connection_close(&self, context_id: u32, peer: u32) {
        self.on_connection(context_id, (), |connection| {
            connection.on_downstream_close(PeerType::from_raw(peer))
        });
    }

    /// `proxy_on_upstream_connection_close`.
    #[cfg(feature = "tcp")]
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
            if !R::CALLOUTS {
                registry::disable_callouts();
            }
            let root = Root::<R> {
                context: Box::default(),
                config: None,
            };
            self.0.with(|inner| inner.roots.insert(context_id, root));
            return;
        }
        let created = self.on_root(parent_context_id, None, |root| {
            let config = root.config.clone()?;
            #[cfg(feature = "tcp")]
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
    #[cfg(feature = "tick")]
    pub fn on_tick(&self, context_id: u32) {
        let _ = logger::refresh_level();
        self.on_root(context_id, (), |root| root.context.on_tick());
    }

    /// `proxy_on_queue_ready`.
    #[cfg(feature = "queue")]
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
    #[cfg(feature = "request-body")]
    pub fn on_request_body(&self, context_id: u32, body_size: usize, eos: u32) -> u32 {
        self.on_stream(context_id, Action::Continue, |stream| {
            stream.on_http_request_body(body_size, eos != 0)
        })
        .as_raw()
    }

    /// `proxy_on_request_trailers`.
    #[cfg(feature = "request-trailers")]
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
    #[cfg(feature = "response-body")]
    pub fn on_response_body(&self, context_id: u32, body_size: usize, eos: u32) -> u32 {
        self.on_stream(context_id, Action::Continue, |stream| {
            stream.on_http_response_body(body_size, eos != 0)
        })
        .as_raw()
    }

    /// `proxy_on_response_trailers`.
    #[cfg(feature = "response-trailers")]
    pub fn on_response_trailers(&self, context_id: u32, n_trailers: usize) -> u32 {
        self.on_stream(context_id, Action::Continue, |stream| {
            stream.on_http_response_trailers(n_trailers)
        })
        .as_raw()
    }

    /// `proxy_on_log`.
    #[cfg(feature = "stream-log")]
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
                if Self::TCP {
                    inner.connections.remove(context_id)
                } else {
                    None
                },
                inner.roots.remove(context_id),
            )
        });
        let previous = registry::enter(context_id);
        drop(removed);
        registry::leave(previous);
        if !R::CALLOUTS {
            return;
        }
        let n_dropped = registry::with_globals(|globals| {
            globals
                .callouts
                .retain(|pending| pending.context_id != context_id)
                + globals
                    .grpc
                    .retain(|pending| pending.context_id != context_id)
        })
        .unwrap_or(0);
        if n_dropped > 0 {
            log_line(
                logger::INFO,
                "context deleted with pending callouts, continuations dropped",
                &[("context_id", context_id), ("n_callouts", n_dropped as u32)],
            );
        }
    }

    /// Runs `f` with context `context_id` (a stream, a connection or a root) as `&mut dyn Any`;
    /// `None` if there is no such context.
    fn on_any<T>(&self, context_id: u32, f: impl FnOnce(&mut dyn Any) -> T) -> Option<T> {
        if self.is_stream(context_id) {
            self.on_stream(context_id, None, |stream| Some(f(stream as &mut dyn Any)))
        } else if self.is_connection(context_id) {
            self.on_connection(context_id, None, |connection| {
                Some(f(connection as &mut dyn Any))
            })
        } else {
            self.on_root(context_id, None, |root| {
                Some(f(&mut *root.context as &mut dyn Any))
            })
        }
    }

    /// Runs `f` with the context `owner` that made callout `token`, during a callback the host
    /// made on `callback_context_id` (Envoy: the owner's root context). An owner of 0 (a call
    /// made outside any callback, as in a doc example) means the callback's context.
    fn on_owner<T>(
        &self,
        callback_context_id: u32,
        owner: u32,
        token: u32,
        f: impl FnOnce(&mut dyn Any, Route) -> T,
    ) -> Option<T> {
        let route = Route {
            callback_context_id,
            owner: if owner == 0 {
                callback_context_id
            } else {
                owner
            },
        };
        let result = self.on_any(route.owner, |context| f(context, route));
        if result.is_none() {
            log_line(
                logger::INFO,
                "callout answer dropped: context deleted",
                &[("context_id", route.owner), ("token", token)],
            );
        }
        result
    }

    /// `proxy_on_http_call_response`: runs the continuation registered with the call's token
    /// with the context that made the call.
    pub fn on_http_call_response(
        &self,
        context_id: u32,
        token: u32,
        n_headers: usize,
        body_size: usize,
        n_trailers: usize,
    ) {
        // Without callouts the continuation plumbing compiles away.
        if !R::CALLOUTS {
            return;
        }
        let Some(pending) =
            registry::with_globals(|globals| globals.callouts.remove(token)).flatten()
        else {
            return;
        };
        let answer = HttpAnswer {
            token,
            n_headers,
            body_size,
            n_trailers,
        };
        let continuation = pending.run;
        let fit = self.on_owner(context_id, pending.context_id, token, |context, route| {
            continuation(context, answer, route)
        });
        if fit == Some(Fit::WrongContext) {
            log_wrong_context(pending.context_id, token);
        }
    }

    /// Runs the handler registered with `token` with the context that made the call, then
    /// puts it back unless the call is over or the handler cancelled it.
    fn on_grpc_signal(&self, context_id: u32, token: u32, signal: GrpcSignal) {
        if !R::CALLOUTS {
            return;
        }
        let Some(pending) = registry::with_globals(|globals| globals.grpc.remove(token)).flatten()
        else {
            return;
        };
        let owner = pending.context_id;
        let mut handler = pending.run;
        let step = self.on_owner(context_id, owner, token, |context, route| {
            handler(context, signal, route)
        });
        match step {
            Some(GrpcStep::Continue) => {}
            Some(GrpcStep::WrongContext) => {
                log_wrong_context(owner, token);
                return;
            }
            Some(GrpcStep::Finished) | None => return,
        }
        registry::with_globals(|globals| {
            if globals.cancelled_grpc_token == token {
                globals.cancelled_grpc_token = 0;
            } else {
                globals.grpc.insert(
                    token,
                    registry::Pending {
                        context_id: owner,
                        run: handler,
                    },
                );
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
    #[cfg(feature = "foreign-function")]
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
