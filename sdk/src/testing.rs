//! Running filters natively: a fake host and a driver that plays Envoy's part.
//!
//! Only on native targets. Each thread has its own fake host and its own dispatcher state, like
//! its own VM, so tests run in parallel. [`Vm`] calls the same entry points that
//! [`crate::export_filter!`] exports on wasm32, in the order Envoy does.
//!
//! ```
//! use filterkit::testing::{NoFilter, Vm};
//! let vm = Vm::<NoFilter>::new();
//! assert!(vm.configure("my_root_id", b""));
//! let stream = vm.create_stream();
//! assert_eq!(vm.request_headers(stream, &[(":path", "/")]), filterkit::Action::Continue);
//! ```

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::time::Duration;

use crate::abi::fake::with_host;
use crate::http::{BufferType, MapType};
use crate::{Action, HttpContext, RootContext, dispatch};

pub use crate::abi::fake::{GrpcCall, HttpCall, LocalResponse};

/// A filter that does nothing, for examples that only need the fake host.
///
/// ```
/// let vm = filterkit::testing::Vm::<filterkit::testing::NoFilter>::new();
/// assert!(vm.configure("r", b""));
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct NoFilter;

impl RootContext for NoFilter {
    type Config = ();
    type Http = NoFilter;

    fn create_http_context(&mut self, _context_id: u32, _config: alloc::rc::Rc<()>) -> NoFilter {
        NoFilter
    }
}

impl HttpContext for NoFilter {}

/// A fresh fake host and VM running the filter `R`, as Envoy would drive it.
///
/// Creating one resets this thread's fake host and dispatcher. The host's log level starts at
/// info, like Envoy's.
///
/// What it models of Envoy: root contexts created on first use with `plugin_root_id` set, one
/// `on_configure` per [`Vm::configure`] (false keeps the previous configuration), the first of
/// repeated header values, `BAD_ARGUMENT` for maps the callback cannot see, and a local reply
/// forcing its callback's result to Stop: after [`http::LocalReply::send`] the callback's
/// [`Action`] is [`Action::Pause`] whatever the filter returned.
///
/// What it does not model — `filterkit-host-sim` (`filter-sim`) running the built `.wasm` is
/// the oracle for these: Envoy's throwaway `on_configure` instance that vets a configuration
/// before the real one gets it; the local reply then passing through the response callbacks
/// (the same filter's included); `proxy_continue_stream` / `proxy_close_stream` being deferred
/// until the callback returns, and Pause holding back later callbacks; body buffering and
/// Envoy's buffer limits; timeouts, ticks and callout failures on a clock; several workers.
///
/// Like Envoy, it skips a callback the filter does not export (its SDK feature is off, see
/// `sdk/README.md`): [`Vm::response_body`] then only sets the body and returns
/// [`Action::Continue`], [`Vm::end_stream`] calls no `on_log`.
///
/// [`http::LocalReply::send`]: crate::http::LocalReply::send
///
/// ```
/// let vm = filterkit::testing::Vm::<filterkit::testing::NoFilter>::new();
/// vm.set_log_level(0);
/// log::trace!("visible at trace");
/// assert_eq!(vm.logs(), ["trace: visible at trace"]);
/// ```
pub struct Vm<R: RootContext> {
    roots: core::cell::RefCell<Vec<(String, u32)>>,
    next_context_id: core::cell::Cell<u32>,
    current_root: core::cell::Cell<u32>,
    filter: dispatch::Filter<R>,
}

fn action(raw: u32) -> Action {
    if raw == 0 {
        Action::Continue
    } else {
        Action::Pause
    }
}

/// Runs one HTTP stream callback as Envoy does: a local reply sent during the callback forces
/// its result to Stop ([`Action::Pause`]) whatever the filter returned, and the reply is
/// there (in [`Vm::local_responses`]) once the callback has returned.
fn stream_callback(callback: impl FnOnce() -> u32) -> Action {
    let replies_before = with_host(|host| host.local_responses.len());
    let raw = callback();
    if with_host(|host| host.local_responses.len()) > replies_before {
        Action::Pause
    } else {
        action(raw)
    }
}

/// The answer to a callback whose feature is off: the filter does not export it, so, as in
/// Envoy, nothing runs and the data goes on.
#[cfg(not(all(
    feature = "request-body",
    feature = "request-trailers",
    feature = "response-body",
    feature = "response-trailers",
    feature = "tcp"
)))]
fn not_exported<T>(context_id: u32, arguments: T) -> Action {
    let _ = (context_id, arguments);
    Action::Continue
}

fn owned_pairs(pairs: &[(&str, &str)]) -> Vec<(Vec<u8>, Vec<u8>)> {
    pairs
        .iter()
        .map(|(name, value)| (name.as_bytes().to_vec(), value.as_bytes().to_vec()))
        .collect()
}

impl<R: RootContext> Default for Vm<R> {
    fn default() -> Self {
        Vm::new()
    }
}

impl<R: RootContext> Vm<R> {
    /// Resets this thread's fake host and dispatcher.
    ///
    /// ```
    /// let vm = filterkit::testing::Vm::<filterkit::testing::NoFilter>::new();
    /// assert!(vm.logs().is_empty());
    /// ```
    pub fn new() -> Vm<R> {
        with_host(|host| {
            *host = Default::default();
            host.log_level = 2;
        });
        crate::registry::reset();
        crate::logger::install();
        Vm {
            roots: core::cell::RefCell::new(Vec::new()),
            next_context_id: core::cell::Cell::new(1),
            current_root: core::cell::Cell::new(0),
            filter: dispatch::Filter::new(),
        }
    }

    fn allocate_context_id(&self) -> u32 {
        let id = self.next_context_id.get();
        self.next_context_id.set(id + 1);
        id
    }

    fn root_id_of(&self, root_context_id: u32) -> String {
        self.roots
            .borrow()
            .iter()
            .find(|(_, id)| *id == root_context_id)
            .map(|(root_id, _)| root_id.clone())
            .unwrap_or_default()
    }

    fn enter_root(&self, root_context_id: u32) {
        let root_id = self.root_id_of(root_context_id);
        self.set_property(&["plugin_root_id"], root_id.as_bytes());
    }

    /// The root context of `root_id`, created (as Envoy does) on first use.
    ///
    /// ```
    /// let vm = filterkit::testing::Vm::<filterkit::testing::NoFilter>::new();
    /// assert_eq!(vm.root("a"), 1);
    /// assert_eq!(vm.root("b"), 2);
    /// assert_eq!(vm.root("a"), 1);
    /// ```
    pub fn root(&self, root_id: &str) -> u32 {
        if let Some((_, id)) = self
            .roots
            .borrow()
            .iter()
            .find(|(known, _)| known == root_id)
        {
            return *id;
        }
        let id = self.allocate_context_id();
        self.roots.borrow_mut().push((root_id.to_string(), id));
        self.enter_root(id);
        self.filter.on_context_create(id, 0);
        id
    }

    /// Creates the root context of root_id `""` and runs `on_vm_start` with `vm_configuration`.
    ///
    /// ```
    /// let vm = filterkit::testing::Vm::<filterkit::testing::NoFilter>::new();
    /// assert!(vm.start(b"{}"));
    /// ```
    pub fn start(&self, vm_configuration: &[u8]) -> bool {
        let id = self.root("");
        self.set_buffer(BufferType::VmConfiguration, vm_configuration);
        self.enter_root(id);
        self.filter.on_vm_start(id, vm_configuration.len()) != 0
    }

    /// Configures the root of `root_id` with `plugin_configuration` (`on_configure`); later
    /// streams belong to this root.
    ///
    /// ```
    /// let vm = filterkit::testing::Vm::<filterkit::testing::NoFilter>::new();
    /// assert!(!vm.configure("r", b"{}"));
    /// assert_eq!(vm.logs(), [
    ///     "error: invalid plugin configuration for root_id=r: invalid type: map, expected unit",
    /// ]);
    /// ```
    pub fn configure(&self, root_id: &str, plugin_configuration: &[u8]) -> bool {
        let id = self.root(root_id);
        self.current_root.set(id);
        self.set_buffer(BufferType::PluginConfiguration, plugin_configuration);
        self.enter_root(id);
        self.filter.on_configure(id, plugin_configuration.len()) != 0
    }

    /// Creates a stream of the root configured last; returns its context id.
    ///
    /// ```
    /// let vm = filterkit::testing::Vm::<filterkit::testing::NoFilter>::new();
    /// assert!(vm.configure("r", b""));
    /// assert_eq!(vm.create_stream(), 2);
    /// ```
    pub fn create_stream(&self) -> u32 {
        self.create_stream_in(self.current_root.get())
    }

    /// Creates a stream of the root context `root_context_id`.
    ///
    /// ```
    /// let vm = filterkit::testing::Vm::<filterkit::testing::NoFilter>::new();
    /// assert!(vm.configure("a", b""));
    /// assert!(vm.configure("b", b""));
    /// assert_eq!(vm.create_stream_in(vm.root("a")), 3);
    /// ```
    pub fn create_stream_in(&self, root_context_id: u32) -> u32 {
        let id = self.allocate_context_id();
        self.enter_root(root_context_id);
        self.filter.on_context_create(id, root_context_id);
        id
    }

    /// Delivers request headers to stream `context_id` (not end of stream).
    ///
    /// ```
    /// let vm = filterkit::testing::Vm::<filterkit::testing::NoFilter>::new();
    /// assert!(vm.configure("r", b""));
    /// let s = vm.create_stream();
    /// assert_eq!(vm.request_headers(s, &[(":method", "GET")]), filterkit::Action::Continue);
    /// ```
    pub fn request_headers(&self, context_id: u32, headers: &[(&str, &str)]) -> Action {
        self.set_headers(MapType::RequestHeaders, headers);
        stream_callback(|| self.filter.on_request_headers(context_id, headers.len(), 0))
    }

    /// Delivers a request body (everything buffered so far) to stream `context_id`.
    ///
    /// ```
    /// let vm = filterkit::testing::Vm::<filterkit::testing::NoFilter>::new();
    /// assert!(vm.configure("r", b""));
    /// let s = vm.create_stream();
    /// assert_eq!(vm.request_body(s, b"data", true), filterkit::Action::Continue);
    /// ```
    pub fn request_body(&self, context_id: u32, body: &[u8], end_of_stream: bool) -> Action {
        self.set_buffer(BufferType::HttpRequestBody, body);
        #[cfg(feature = "request-body")]
        return stream_callback(|| {
            self.filter
                .on_request_body(context_id, body.len(), end_of_stream.into())
        });
        #[cfg(not(feature = "request-body"))]
        not_exported(context_id, end_of_stream)
    }

    /// Delivers request trailers to stream `context_id`.
    ///
    /// ```
    /// let vm = filterkit::testing::Vm::<filterkit::testing::NoFilter>::new();
    /// assert!(vm.configure("r", b""));
    /// let s = vm.create_stream();
    /// assert_eq!(vm.request_trailers(s, &[("x-checksum", "1")]), filterkit::Action::Continue);
    /// ```
    pub fn request_trailers(&self, context_id: u32, trailers: &[(&str, &str)]) -> Action {
        self.set_headers(MapType::RequestTrailers, trailers);
        #[cfg(feature = "request-trailers")]
        return stream_callback(|| self.filter.on_request_trailers(context_id, trailers.len()));
        #[cfg(not(feature = "request-trailers"))]
        not_exported(context_id, ())
    }

    /// Delivers response headers to stream `context_id` (not end of stream).
    ///
    /// ```
    /// let vm = filterkit::testing::Vm::<filterkit::testing::NoFilter>::new();
    /// assert!(vm.configure("r", b""));
    /// let s = vm.create_stream();
    /// assert_eq!(vm.response_headers(s, &[(":status", "200")]), filterkit::Action::Continue);
    /// ```
    pub fn response_headers(&self, context_id: u32, headers: &[(&str, &str)]) -> Action {
        self.set_headers(MapType::ResponseHeaders, headers);
        stream_callback(|| {
            self.filter
                .on_response_headers(context_id, headers.len(), 0)
        })
    }

    /// Delivers a response body (everything buffered so far) to stream `context_id`.
    ///
    /// ```
    /// let vm = filterkit::testing::Vm::<filterkit::testing::NoFilter>::new();
    /// assert!(vm.configure("r", b""));
    /// let s = vm.create_stream();
    /// assert_eq!(vm.response_body(s, b"ok", true), filterkit::Action::Continue);
    /// ```
    pub fn response_body(&self, context_id: u32, body: &[u8], end_of_stream: bool) -> Action {
        self.set_buffer(BufferType::HttpResponseBody, body);
        #[cfg(feature = "response-body")]
        return stream_callback(|| {
            self.filter
                .on_response_body(context_id, body.len(), end_of_stream.into())
        });
        #[cfg(not(feature = "response-body"))]
        not_exported(context_id, end_of_stream)
    }

    /// Delivers response trailers to stream `context_id`.
    ///
    /// ```
    /// let vm = filterkit::testing::Vm::<filterkit::testing::NoFilter>::new();
    /// assert!(vm.configure("r", b""));
    /// let s = vm.create_stream();
    /// assert_eq!(vm.response_trailers(s, &[("grpc-status", "0")]), filterkit::Action::Continue);
    /// ```
    pub fn response_trailers(&self, context_id: u32, trailers: &[(&str, &str)]) -> Action {
        self.set_headers(MapType::ResponseTrailers, trailers);
        #[cfg(feature = "response-trailers")]
        return stream_callback(|| self.filter.on_response_trailers(context_id, trailers.len()));
        #[cfg(not(feature = "response-trailers"))]
        not_exported(context_id, ())
    }

    /// Delivers a new connection and downstream data (everything received so far) to
    /// connection `context_id`.
    ///
    /// ```
    /// let vm = filterkit::testing::Vm::<filterkit::testing::NoFilter>::new();
    /// assert!(vm.configure("r", b""));
    /// let s = vm.create_stream();
    /// assert_eq!(vm.downstream_data(s, b"x", false), filterkit::Action::Continue);
    /// ```
    pub fn downstream_data(&self, context_id: u32, data: &[u8], end_of_stream: bool) -> Action {
        self.set_buffer(BufferType::DownstreamData, data);
        #[cfg(feature = "tcp")]
        {
            self.filter.on_new_connection(context_id);
            action(
                self.filter
                    .on_downstream_data(context_id, data.len(), end_of_stream.into()),
            )
        }
        #[cfg(not(feature = "tcp"))]
        not_exported(context_id, end_of_stream)
    }

    /// Ends stream `context_id`: `on_log`, `on_done`, `on_delete`.
    ///
    /// ```
    /// let vm = filterkit::testing::Vm::<filterkit::testing::NoFilter>::new();
    /// assert!(vm.configure("r", b""));
    /// let s = vm.create_stream();
    /// vm.end_stream(s);
    /// ```
    pub fn end_stream(&self, context_id: u32) {
        #[cfg(feature = "stream-log")]
        self.filter.on_log(context_id);
        self.filter.on_done(context_id);
        self.filter.on_delete(context_id);
    }

    /// Answers the http callout `token` (headers, body), as the host does when it completes;
    /// an empty `headers` is a failed call.
    ///
    /// ```
    /// use std::time::Duration;
    /// use filterkit::{Action, HttpContext, http};
    /// #[derive(Default)]
    /// struct Root;
    /// impl filterkit::RootContext for Root {
    ///     type Config = ();
    ///     type Http = Stream;
    ///     fn create_http_context(&mut self, _: u32, _: std::rc::Rc<()>) -> Stream { Stream }
    /// }
    /// struct Stream;
    /// impl HttpContext for Stream {
    ///     fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
    ///         let headers = [(":method", "GET"), (":path", "/"), (":authority", "a")];
    ///         let _ = http::call("auth", &headers, b"", Duration::from_secs(1), |_: &mut Stream, response| {
    ///             log::info!("status={:?}", response.status());
    ///         });
    ///         Action::Pause
    ///     }
    /// }
    /// let vm = filterkit::testing::Vm::<Root>::new();
    /// assert!(vm.configure("r", b""));
    /// let s = vm.create_stream();
    /// assert_eq!(vm.request_headers(s, &[]), Action::Pause);
    /// vm.respond_to_call(s, vm.http_calls()[0].token, &[(":status", "200")], b"");
    /// assert_eq!(vm.logs(), ["info: status=Some(200)"]);
    /// ```
    pub fn respond_to_call(
        &self,
        context_id: u32,
        token: u32,
        headers: &[(&str, &str)],
        body: &[u8],
    ) {
        self.set_headers(MapType::HttpCallResponseHeaders, headers);
        self.set_buffer(BufferType::HttpCallResponseBody, body);
        self.filter
            .on_http_call_response(context_id, token, headers.len(), body.len(), 0);
    }

    /// Delivers a gRPC stream's initial metadata for `token` to context `context_id`
    /// (`on_grpc_receive_initial_metadata`).
    ///
    /// ```
    /// use filterkit::grpc::{Event, Stream};
    /// use filterkit::testing::{NoFilter, Vm};
    /// let vm = Vm::<NoFilter>::new();
    /// assert!(vm.configure("r", b""));
    /// // Opened outside any callback, so owned by no context: name the root explicitly.
    /// let stream = Stream::open("c", "pkg.Chat", "Talk", &[], |_: &mut NoFilter, event: Event| {
    ///     log::info!("{event:?}");
    /// }).unwrap();
    /// vm.grpc_initial_metadata(vm.root("r"), stream.token(), &[("x", "1")]);
    /// assert_eq!(vm.logs(), ["info: InitialMetadata([([120], [49])])"]);
    /// ```
    pub fn grpc_initial_metadata(&self, context_id: u32, token: u32, metadata: &[(&str, &str)]) {
        self.set_headers(MapType::GrpcReceiveInitialMetadata, metadata);
        self.filter
            .on_grpc_receive_initial_metadata(context_id, token, metadata.len());
    }

    /// Delivers a gRPC stream's trailing metadata for `token` to context `context_id`
    /// (`on_grpc_receive_trailing_metadata`); [`Vm::grpc_close`] normally follows.
    ///
    /// ```
    /// let vm = filterkit::testing::Vm::<filterkit::testing::NoFilter>::new();
    /// vm.grpc_trailing_metadata(1, 7, &[("grpc-message", "ignored: no such token")]);
    /// ```
    pub fn grpc_trailing_metadata(&self, context_id: u32, token: u32, metadata: &[(&str, &str)]) {
        self.set_headers(MapType::GrpcReceiveTrailingMetadata, metadata);
        self.filter
            .on_grpc_receive_trailing_metadata(context_id, token, metadata.len());
    }

    /// Calls foreign function `function_id` on context `context_id` with `arguments`
    /// (`on_foreign_function`; the arguments go in buffer 8, `CallData`).
    ///
    /// ```
    /// let vm = filterkit::testing::Vm::<filterkit::testing::NoFilter>::new();
    /// assert!(vm.configure("r", b""));
    /// vm.foreign_function(vm.root("r"), 1, b"{}");
    /// ```
    pub fn foreign_function(&self, context_id: u32, function_id: u32, arguments: &[u8]) {
        self.set_buffer(BufferType::CallData, arguments);
        #[cfg(feature = "foreign-function")]
        self.filter
            .on_foreign_function(context_id, function_id, arguments.len());
        #[cfg(not(feature = "foreign-function"))]
        let _ = (context_id, function_id);
    }

    /// Delivers one gRPC message for `token` to context `context_id` (`on_grpc_receive`).
    ///
    /// ```
    /// let vm = filterkit::testing::Vm::<filterkit::testing::NoFilter>::new();
    /// vm.grpc_message(1, 7, b"ignored: no such token");
    /// ```
    pub fn grpc_message(&self, context_id: u32, token: u32, message: &[u8]) {
        self.set_buffer(BufferType::GrpcReceiveBuffer, message);
        self.filter
            .on_grpc_receive(context_id, token, message.len());
    }

    /// Closes the gRPC call or stream `token` with `status_code` (`on_grpc_close`).
    ///
    /// ```
    /// let vm = filterkit::testing::Vm::<filterkit::testing::NoFilter>::new();
    /// vm.grpc_close(1, 7, 14);
    /// ```
    pub fn grpc_close(&self, context_id: u32, token: u32, status_code: u32) {
        self.filter.on_grpc_close(context_id, token, status_code);
    }

    /// Fires one tick on every root context.
    ///
    /// ```
    /// let vm = filterkit::testing::Vm::<filterkit::testing::NoFilter>::new();
    /// vm.tick();
    /// ```
    pub fn tick(&self) {
        let roots: Vec<u32> = self.roots.borrow().iter().map(|(_, id)| *id).collect();
        for id in roots {
            self.enter_root(id);
            #[cfg(feature = "tick")]
            self.filter.on_tick(id);
        }
    }

    /// Sets a header map, replacing it.
    ///
    /// ```
    /// use filterkit::http::MapType;
    /// let vm = filterkit::testing::Vm::<filterkit::testing::NoFilter>::new();
    /// vm.set_headers(MapType::RequestHeaders, &[("a", "1")]);
    /// assert_eq!(vm.headers(MapType::RequestHeaders), ["a: 1"]);
    /// ```
    pub fn set_headers(&self, map_type: MapType, headers: &[(&str, &str)]) {
        let pairs = owned_pairs(headers);
        with_host(|host| host.maps.insert(map_type.as_raw(), pairs));
    }

    /// Sets a header map from raw bytes (for non-UTF-8 values).
    ///
    /// ```
    /// use filterkit::http::MapType;
    /// let vm = filterkit::testing::Vm::<filterkit::testing::NoFilter>::new();
    /// vm.set_header_bytes(MapType::RequestHeaders, &[(b"a", b"\xff")]);
    /// assert_eq!(vm.headers(MapType::RequestHeaders), ["a: \u{fffd}"]);
    /// ```
    pub fn set_header_bytes(&self, map_type: MapType, headers: &[(&[u8], &[u8])]) {
        let pairs = headers
            .iter()
            .map(|(name, value)| (name.to_vec(), value.to_vec()))
            .collect();
        with_host(|host| host.maps.insert(map_type.as_raw(), pairs));
    }

    /// A header map's pairs as `name: value` lines, lossily decoded.
    ///
    /// ```
    /// use filterkit::http::MapType;
    /// let vm = filterkit::testing::Vm::<filterkit::testing::NoFilter>::new();
    /// assert!(vm.headers(MapType::ResponseHeaders).is_empty());
    /// vm.set_headers(MapType::ResponseHeaders, &[(":status", "200")]);
    /// assert_eq!(vm.headers(MapType::ResponseHeaders), [":status: 200"]);
    /// ```
    pub fn headers(&self, map_type: MapType) -> Vec<String> {
        with_host(|host| {
            host.maps
                .get(&map_type.as_raw())
                .map(|pairs| {
                    pairs
                        .iter()
                        .map(|(name, value)| {
                            alloc::format!(
                                "{}: {}",
                                String::from_utf8_lossy(name),
                                String::from_utf8_lossy(value)
                            )
                        })
                        .collect()
                })
                .unwrap_or_default()
        })
    }

    /// Sets a host buffer.
    ///
    /// ```
    /// let vm = filterkit::testing::Vm::<filterkit::testing::NoFilter>::new();
    /// vm.set_buffer(filterkit::http::BufferType::HttpRequestBody, b"x");
    /// assert_eq!(filterkit::http::request_body().read(0, 9), Ok(b"x".to_vec()));
    /// ```
    pub fn set_buffer(&self, buffer_type: BufferType, bytes: &[u8]) {
        with_host(|host| host.buffers.insert(buffer_type.as_raw(), bytes.to_vec()));
    }

    /// Sets a property (already encoded, e.g. `&200i64.to_le_bytes()`).
    ///
    /// ```
    /// let vm = filterkit::testing::Vm::<filterkit::testing::NoFilter>::new();
    /// vm.set_property(&["plugin_name"], b"p");
    /// assert_eq!(filterkit::properties::plugin_name(), Ok(Some("p".to_string())));
    /// ```
    pub fn set_property(&self, path: &[&str], value: &[u8]) {
        let key = path.join("\0").into_bytes();
        with_host(|host| host.properties.insert(key, value.to_vec()));
    }

    /// Sets the host's log level (0 trace … 5 critical); lower records are dropped.
    ///
    /// ```
    /// let vm = filterkit::testing::Vm::<filterkit::testing::NoFilter>::new();
    /// vm.set_log_level(4);
    /// log::warn!("dropped");
    /// assert!(vm.logs().is_empty());
    /// ```
    pub fn set_log_level(&self, level: u32) {
        with_host(|host| host.log_level = level);
    }

    /// Sets the host's clock.
    ///
    /// ```
    /// let vm = filterkit::testing::Vm::<filterkit::testing::NoFilter>::new();
    /// vm.set_now(std::time::Duration::from_secs(3));
    /// assert_eq!(filterkit::time::now(), Ok(std::time::Duration::from_secs(3)));
    /// ```
    pub fn set_now(&self, now: Duration) {
        with_host(|host| host.now_nanoseconds = now.as_nanos() as u64);
    }

    /// Makes every host function except `proxy_log` answer `raw_status` (or behave again with
    /// `None`), to test error paths.
    ///
    /// ```
    /// use filterkit::{Error, Status};
    /// let vm = filterkit::testing::Vm::<filterkit::testing::NoFilter>::new();
    /// vm.fail_host_calls(Some(10));
    /// assert_eq!(
    ///     filterkit::http::request_headers().get("a"),
    ///     Err(Error::Host { function: "proxy_get_header_map_value", status: Status::InternalFailure }),
    /// );
    /// ```
    pub fn fail_host_calls(&self, raw_status: Option<u32>) {
        with_host(|host| host.forced_status = raw_status);
    }

    /// The log lines so far, as `level: message`.
    ///
    /// ```
    /// let vm = filterkit::testing::Vm::<filterkit::testing::NoFilter>::new();
    /// log::error!("x={}", 1);
    /// assert_eq!(vm.logs(), ["error: x=1"]);
    /// ```
    pub fn logs(&self) -> Vec<String> {
        const NAMES: [&str; 6] = ["trace", "debug", "info", "warn", "error", "critical"];
        with_host(|host| {
            host.logs
                .iter()
                .map(|(level, message)| {
                    let name = NAMES.get(*level as usize).copied().unwrap_or("unknown");
                    alloc::format!("{name}: {message}")
                })
                .collect()
        })
    }

    /// The local replies the guest sent.
    ///
    /// ```
    /// let vm = filterkit::testing::Vm::<filterkit::testing::NoFilter>::new();
    /// assert!(vm.local_responses().is_empty());
    /// ```
    pub fn local_responses(&self) -> Vec<LocalResponse> {
        with_host(|host| host.local_responses.clone())
    }

    /// The http callouts the guest dispatched.
    ///
    /// ```
    /// let vm = filterkit::testing::Vm::<filterkit::testing::NoFilter>::new();
    /// assert!(vm.http_calls().is_empty());
    /// ```
    pub fn http_calls(&self) -> Vec<HttpCall> {
        with_host(|host| host.http_calls.clone())
    }

    /// The gRPC calls and streams the guest started, with what they sent.
    ///
    /// ```
    /// let vm = filterkit::testing::Vm::<filterkit::testing::NoFilter>::new();
    /// assert!(vm.grpc_calls().is_empty());
    /// ```
    pub fn grpc_calls(&self) -> Vec<GrpcCall> {
        with_host(|host| host.grpc_calls.clone())
    }

    /// The `continue`/`close` calls the guest made, e.g. `continue request`.
    ///
    /// ```
    /// let vm = filterkit::testing::Vm::<filterkit::testing::NoFilter>::new();
    /// filterkit::http::resume_response().unwrap();
    /// assert_eq!(vm.stream_actions(), ["continue response"]);
    /// ```
    pub fn stream_actions(&self) -> Vec<String> {
        with_host(|host| host.stream_actions.clone())
    }

    /// The tick period the guest asked for.
    ///
    /// ```
    /// let vm = filterkit::testing::Vm::<filterkit::testing::NoFilter>::new();
    /// assert_eq!(vm.tick_period(), std::time::Duration::ZERO);
    /// ```
    pub fn tick_period(&self) -> Duration {
        with_host(|host| Duration::from_millis(host.tick_period_milliseconds.into()))
    }
}
