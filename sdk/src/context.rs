//! The traits a filter implements: [`Config`], [`RootContext`], [`HttpContext`].

use alloc::rc::Rc;
use alloc::string::String;

use crate::Action;

/// A plugin configuration type: parsed from the plugin's JSON, then validated.
///
/// ```
/// use filterkit::Config;
///
/// #[derive(serde::Deserialize)]
/// struct Limits { max: u32 }
///
/// impl Config for Limits {
///     fn empty() -> Option<Limits> { Some(Limits { max: 10 }) }
///     fn validate(&self) -> Result<(), String> {
///         if self.max == 0 { Err("max must be positive".into()) } else { Ok(()) }
///     }
/// }
/// assert_eq!(Limits::empty().map(|limits| limits.max), Some(10));
/// assert!(Limits { max: 0 }.validate().is_err());
/// ```
pub trait Config: serde::de::DeserializeOwned + 'static {
    /// The configuration to use when the plugin has none (zero bytes or absent). `None`, the
    /// default, rejects an empty configuration with "plugin configuration is empty".
    ///
    /// ```
    /// use filterkit::Config;
    /// #[derive(serde::Deserialize)]
    /// struct Required { key: String }
    /// impl Config for Required {}
    /// assert!(Required::empty().is_none());
    /// ```
    fn empty() -> Option<Self> {
        None
    }

    /// Checks what serde cannot; the message names the problem and the offending value.
    ///
    /// ```
    /// use filterkit::Config;
    /// #[derive(serde::Deserialize)]
    /// struct Anything { key: String }
    /// impl Config for Anything {}
    /// assert_eq!(Anything { key: String::new() }.validate(), Ok(()));
    /// ```
    fn validate(&self) -> Result<(), String> {
        Ok(())
    }
}

/// The root context: one per plugin (root_id) in the VM, owner of that plugin's configuration.
///
/// The SDK has already parsed and validated the configuration when `on_configure` runs; each
/// stream of this root gets it through [`RootContext::create_http_context`].
///
/// ```
/// use std::rc::Rc;
/// use filterkit::{HttpContext, RootContext};
///
/// #[derive(serde::Deserialize)]
/// struct Settings { enabled: bool }
/// impl filterkit::Config for Settings {}
///
/// #[derive(Default)]
/// struct Root { configured: u32 }
/// impl RootContext for Root {
///     type Config = Settings;
///     type Http = Stream;
///     fn on_configure(&mut self, _config: &Rc<Settings>) -> bool {
///         self.configured += 1;
///         true
///     }
///     fn create_http_context(&mut self, _context_id: u32, config: Rc<Settings>) -> Stream {
///         Stream { enabled: config.enabled }
///     }
/// }
/// struct Stream { enabled: bool }
/// impl HttpContext for Stream {}
///
/// let vm = filterkit::testing::Vm::<Root>::new();
/// assert!(vm.configure("r", br#"{"enabled":true}"#));
/// assert!(!vm.configure("r", br#"{"enabled":1}"#));
/// ```
pub trait RootContext: Default + 'static {
    /// The typed plugin configuration.
    type Config: Config;
    /// The per-stream context this root creates.
    type Http: HttpContext;

    /// Called once when the VM starts, with the VM configuration bytes (often empty).
    ///
    /// ```
    /// # use std::rc::Rc;
    /// # #[derive(serde::Deserialize)] struct C; impl filterkit::Config for C {}
    /// # struct S; impl filterkit::HttpContext for S {}
    /// #[derive(Default)]
    /// struct Root;
    /// impl filterkit::RootContext for Root {
    ///     type Config = C;
    ///     type Http = S;
    ///     fn on_vm_start(&mut self, vm_configuration: &[u8]) -> bool {
    ///         vm_configuration.is_empty()
    ///     }
    ///     fn create_http_context(&mut self, _: u32, _: Rc<C>) -> S { S }
    /// }
    /// assert!(filterkit::testing::Vm::<Root>::new().start(b""));
    /// ```
    fn on_vm_start(&mut self, vm_configuration: &[u8]) -> bool {
        let _ = vm_configuration;
        true
    }

    /// Called with the new configuration once it parsed and validated; `false` rejects it.
    ///
    /// ```
    /// # use std::rc::Rc;
    /// # #[derive(serde::Deserialize)] struct C { n: u32 } impl filterkit::Config for C {}
    /// # struct S; impl filterkit::HttpContext for S {}
    /// #[derive(Default)]
    /// struct Root;
    /// impl filterkit::RootContext for Root {
    ///     type Config = C;
    ///     type Http = S;
    ///     fn on_configure(&mut self, config: &Rc<C>) -> bool { config.n < 10 }
    ///     fn create_http_context(&mut self, _: u32, _: Rc<C>) -> S { S }
    /// }
    /// assert!(!filterkit::testing::Vm::<Root>::new().configure("r", br#"{"n":11}"#));
    /// ```
    fn on_configure(&mut self, config: &Rc<Self::Config>) -> bool {
        let _ = config;
        true
    }

    /// Creates the context of a new HTTP stream, handing it this root's configuration.
    ///
    /// ```
    /// # use std::rc::Rc;
    /// # #[derive(serde::Deserialize)] struct C; impl filterkit::Config for C {}
    /// struct Stream { id: u32 }
    /// impl filterkit::HttpContext for Stream {}
    /// #[derive(Default)]
    /// struct Root;
    /// impl filterkit::RootContext for Root {
    ///     type Config = C;
    ///     type Http = Stream;
    ///     fn create_http_context(&mut self, context_id: u32, _: Rc<C>) -> Stream {
    ///         Stream { id: context_id }
    ///     }
    /// }
    /// let vm = filterkit::testing::Vm::<Root>::new();
    /// assert!(vm.configure("r", b"null"));
    /// assert_eq!(vm.create_stream(), 2);
    /// ```
    fn create_http_context(&mut self, context_id: u32, config: Rc<Self::Config>) -> Self::Http;

    /// Whether this root serves a network filter (`envoy.filters.network.wasm`), whose streams
    /// are TCP connections from [`RootContext::create_tcp_context`]; needs the `tcp` feature.
    /// `false` (the default) compiles the TCP plumbing away (it would add about 1.2 KB to a shipped HTTP filter).
    ///
    /// ```
    /// # use std::rc::Rc;
    /// # #[derive(serde::Deserialize)] struct C; impl filterkit::Config for C {}
    /// # struct S; impl filterkit::HttpContext for S {}
    /// #[derive(Default)]
    /// struct HttpOnly;
    /// impl filterkit::RootContext for HttpOnly {
    ///     type Config = C;
    ///     type Http = S;
    ///     fn create_http_context(&mut self, _: u32, _: Rc<C>) -> S { S }
    /// }
    /// assert!(!<HttpOnly as filterkit::RootContext>::TCP);
    /// ```
    #[cfg(feature = "tcp")]
    const TCP: bool = false;

    /// Whether the filter makes callouts ([`crate::http::call`], [`crate::grpc::call`],
    /// [`crate::grpc::Stream::open`]). `true` (the default) links the dispatch of their
    /// answers; `false` compiles it away (about 4 KB of a shipped filter: add-header 31,200 →
    /// 27,098 bytes) and makes any callout fail with [`crate::Error::CalloutsDisabled`] before
    /// it is sent.
    ///
    /// ```
    /// # use std::rc::Rc;
    /// # #[derive(serde::Deserialize)] struct C; impl filterkit::Config for C {}
    /// # struct S; impl filterkit::HttpContext for S {}
    /// #[derive(Default)]
    /// struct Quiet;
    /// impl filterkit::RootContext for Quiet {
    ///     type Config = C;
    ///     type Http = S;
    ///     const CALLOUTS: bool = false;
    ///     fn create_http_context(&mut self, _: u32, _: Rc<C>) -> S { S }
    /// }
    /// let vm = filterkit::testing::Vm::<Quiet>::new();
    /// assert!(vm.configure("r", b"null"));
    /// let sent = filterkit::http::call("c", &[], b"", std::time::Duration::ZERO, |_: &mut S, _| {});
    /// assert_eq!(sent, Err(filterkit::Error::CalloutsDisabled));
    /// ```
    const CALLOUTS: bool = true;

    /// For a network filter (with [`RootContext::TCP`] set): the context of a new TCP
    /// connection. `None` makes the stream an HTTP stream
    /// ([`RootContext::create_http_context`]).
    ///
    /// ```
    /// use std::rc::Rc;
    /// use filterkit::tcp::TcpContext;
    /// # #[derive(serde::Deserialize)] struct C; impl filterkit::Config for C {}
    /// # struct S; impl filterkit::HttpContext for S {}
    /// struct Connection;
    /// impl TcpContext for Connection {}
    /// #[derive(Default)]
    /// struct Root;
    /// impl filterkit::RootContext for Root {
    ///     type Config = C;
    ///     type Http = S;
    ///     const TCP: bool = true;
    ///     fn create_http_context(&mut self, _: u32, _: Rc<C>) -> S { S }
    ///     fn create_tcp_context(&mut self, _: u32, _: Rc<C>) -> Option<Box<dyn TcpContext>> {
    ///         Some(Box::new(Connection))
    ///     }
    /// }
    /// let vm = filterkit::testing::Vm::<Root>::new();
    /// assert!(vm.configure("r", b"null"));
    /// let connection = vm.create_stream();
    /// assert_eq!(vm.downstream_data(connection, b"hello", false), filterkit::Action::Continue);
    /// ```
    #[cfg(feature = "tcp")]
    fn create_tcp_context(
        &mut self,
        context_id: u32,
        config: Rc<Self::Config>,
    ) -> Option<alloc::boxed::Box<dyn crate::tcp::TcpContext>> {
        let _ = (context_id, config);
        None
    }

    /// Called every tick period (see [`crate::time::set_tick_period`]).
    ///
    /// ```
    /// # use std::rc::Rc;
    /// # #[derive(serde::Deserialize)] struct C; impl filterkit::Config for C {}
    /// # struct S; impl filterkit::HttpContext for S {}
    /// #[derive(Default)]
    /// struct Root;
    /// impl filterkit::RootContext for Root {
    ///     type Config = C;
    ///     type Http = S;
    ///     fn on_tick(&mut self) { log::info!("tick"); }
    ///     fn create_http_context(&mut self, _: u32, _: Rc<C>) -> S { S }
    /// }
    /// let vm = filterkit::testing::Vm::<Root>::new();
    /// assert!(vm.configure("r", b"null"));
    /// vm.tick();
    /// assert_eq!(vm.logs(), ["info: tick"]);
    /// ```
    #[cfg(feature = "tick")]
    fn on_tick(&mut self) {}

    /// Called when a shared queue this root registered has items.
    ///
    /// ```
    /// # use std::rc::Rc;
    /// # #[derive(serde::Deserialize)] struct C; impl filterkit::Config for C {}
    /// # struct S; impl filterkit::HttpContext for S {}
    /// #[derive(Default)]
    /// struct Root { seen: Vec<u32> }
    /// impl filterkit::RootContext for Root {
    ///     type Config = C;
    ///     type Http = S;
    ///     fn on_queue_ready(&mut self, queue_id: u32) { self.seen.push(queue_id); }
    ///     fn create_http_context(&mut self, _: u32, _: Rc<C>) -> S { S }
    /// }
    /// let mut root = Root::default();
    /// filterkit::RootContext::on_queue_ready(&mut root, 3);
    /// assert_eq!(root.seen, [3]);
    /// ```
    #[cfg(feature = "queue")]
    fn on_queue_ready(&mut self, queue_id: u32) {
        let _ = queue_id;
    }

    /// The host called this root's foreign function `function_id` with `arguments`
    /// (`proxy_on_foreign_function`; the arguments are the host's buffer 8, `CallData`).
    ///
    /// proxy-wasm-rust-sdk has the same callback on every context. No built-in Envoy
    /// extension calls it today (Envoy's own foreign functions are called *by* the guest,
    /// [`crate::host::call_foreign_function`]); it exists for hosts that push events this way.
    ///
    /// ```
    /// # use std::rc::Rc;
    /// # #[derive(serde::Deserialize)] struct C; impl filterkit::Config for C {}
    /// # struct S; impl filterkit::HttpContext for S {}
    /// #[derive(Default)]
    /// struct Root;
    /// impl filterkit::RootContext for Root {
    ///     type Config = C;
    ///     type Http = S;
    ///     fn on_foreign_function(&mut self, function_id: u32, arguments: &[u8]) {
    ///         log::info!("function {function_id} got {} bytes", arguments.len());
    ///     }
    ///     fn create_http_context(&mut self, _: u32, _: Rc<C>) -> S { S }
    /// }
    /// let vm = filterkit::testing::Vm::<Root>::new();
    /// assert!(vm.configure("r", b"null"));
    /// vm.foreign_function(vm.root("r"), 7, b"args");
    /// assert_eq!(vm.logs(), ["info: function 7 got 4 bytes"]);
    /// ```
    #[cfg(feature = "foreign-function")]
    fn on_foreign_function(&mut self, function_id: u32, arguments: &[u8]) {
        let _ = (function_id, arguments);
    }

    /// Called when the host wants to shut the root down; `false` means "later", and the root
    /// then calls [`crate::host::done`] itself.
    ///
    /// ```
    /// # use std::rc::Rc;
    /// # #[derive(serde::Deserialize)] struct C; impl filterkit::Config for C {}
    /// # struct S; impl filterkit::HttpContext for S {}
    /// #[derive(Default)]
    /// struct Root;
    /// impl filterkit::RootContext for Root {
    ///     type Config = C;
    ///     type Http = S;
    ///     fn on_done(&mut self) -> bool { true }
    ///     fn create_http_context(&mut self, _: u32, _: Rc<C>) -> S { S }
    /// }
    /// assert!(filterkit::RootContext::on_done(&mut Root));
    /// ```
    fn on_done(&mut self) -> bool {
        true
    }
}

/// The context of one HTTP stream. Every callback has a default that continues.
///
/// Header and body access goes through [`crate::http`]; it is valid inside the callback that the
/// host is running.
///
/// ```
/// use filterkit::{Action, HttpContext, http};
///
/// struct DenyDelete;
/// impl HttpContext for DenyDelete {
///     fn on_http_request_headers(&mut self, _n_headers: usize, _end_of_stream: bool) -> Action {
///         match http::request_headers().get_str(":method") {
///             Ok(Some(method)) if method == "DELETE" => {
///                 let _ = http::LocalReply::new(405).body(b"no deletes\n").send();
///                 Action::Pause
///             }
///             _ => Action::Continue,
///         }
///     }
/// }
/// ```
pub trait HttpContext: 'static {
    /// Request headers arrived (`n_headers` of them; `end_of_stream` if there is no body).
    ///
    /// ```
    /// struct S;
    /// impl filterkit::HttpContext for S {
    ///     fn on_http_request_headers(&mut self, n_headers: usize, _: bool) -> filterkit::Action {
    ///         log::debug!("{n_headers} request headers");
    ///         filterkit::Action::Continue
    ///     }
    /// }
    /// assert_eq!(S.on_http_request_headers(3, true), filterkit::Action::Continue);
    /// # use filterkit::HttpContext;
    /// ```
    fn on_http_request_headers(&mut self, n_headers: usize, end_of_stream: bool) -> Action {
        let _ = (n_headers, end_of_stream);
        Action::Continue
    }

    /// A request body chunk arrived; `body_size` is the size buffered so far.
    ///
    /// Returning [`Action::Pause`] until `end_of_stream` buffers the whole body:
    ///
    /// ```
    /// use filterkit::{Action, http};
    /// struct S;
    /// impl filterkit::HttpContext for S {
    ///     fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
    ///         if !end_of_stream {
    ///             return Action::Pause;
    ///         }
    ///         let body = http::request_body().read(0, body_size).unwrap_or_default();
    ///         log::info!("request body has {} bytes", body.len());
    ///         Action::Continue
    ///     }
    /// }
    /// ```
    #[cfg(feature = "request-body")]
    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let _ = (body_size, end_of_stream);
        Action::Continue
    }

    /// Request trailers arrived.
    ///
    /// ```
    /// struct S;
    /// impl filterkit::HttpContext for S {
    ///     fn on_http_request_trailers(&mut self, _n_trailers: usize) -> filterkit::Action {
    ///         filterkit::Action::Continue
    ///     }
    /// }
    /// ```
    #[cfg(feature = "request-trailers")]
    fn on_http_request_trailers(&mut self, n_trailers: usize) -> Action {
        let _ = n_trailers;
        Action::Continue
    }

    /// Response headers arrived.
    ///
    /// ```
    /// use filterkit::{Action, http};
    /// struct S;
    /// impl filterkit::HttpContext for S {
    ///     fn on_http_response_headers(&mut self, _: usize, _: bool) -> Action {
    ///         let _ = http::response_headers().set("server", "filterkit");
    ///         Action::Continue
    ///     }
    /// }
    /// ```
    fn on_http_response_headers(&mut self, n_headers: usize, end_of_stream: bool) -> Action {
        let _ = (n_headers, end_of_stream);
        Action::Continue
    }

    /// A response body chunk arrived; `body_size` is the size buffered so far.
    ///
    /// ```
    /// use filterkit::{Action, http};
    /// struct S;
    /// impl filterkit::HttpContext for S {
    ///     fn on_http_response_body(&mut self, _: usize, end_of_stream: bool) -> Action {
    ///         if end_of_stream {
    ///             let _ = http::response_body().append(b"\n-- filtered\n");
    ///         }
    ///         Action::Continue
    ///     }
    /// }
    /// ```
    #[cfg(feature = "response-body")]
    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let _ = (body_size, end_of_stream);
        Action::Continue
    }

    /// Response trailers arrived.
    ///
    /// ```
    /// struct S;
    /// impl filterkit::HttpContext for S {
    ///     fn on_http_response_trailers(&mut self, _: usize) -> filterkit::Action {
    ///         filterkit::Action::Continue
    ///     }
    /// }
    /// ```
    #[cfg(feature = "response-trailers")]
    fn on_http_response_trailers(&mut self, n_trailers: usize) -> Action {
        let _ = n_trailers;
        Action::Continue
    }

    /// The stream is complete and about to be logged by the host.
    ///
    /// ```
    /// struct S;
    /// impl filterkit::HttpContext for S {
    ///     fn on_log(&mut self) { log::info!("stream done"); }
    /// }
    /// ```
    #[cfg(feature = "stream-log")]
    fn on_log(&mut self) {}

    /// The host called foreign function `function_id` on this stream with `arguments`
    /// (`proxy_on_foreign_function`); see [`RootContext::on_foreign_function`].
    ///
    /// ```
    /// struct S;
    /// impl filterkit::HttpContext for S {
    ///     fn on_foreign_function(&mut self, function_id: u32, arguments: &[u8]) {
    ///         log::info!("function {function_id}: {arguments:?}");
    ///     }
    /// }
    /// ```
    #[cfg(feature = "foreign-function")]
    fn on_foreign_function(&mut self, function_id: u32, arguments: &[u8]) {
        let _ = (function_id, arguments);
    }

    /// The host is done with the stream; `false` means "later" (then call [`crate::host::done`]).
    ///
    /// ```
    /// struct S;
    /// impl filterkit::HttpContext for S {
    ///     fn on_done(&mut self) -> bool { true }
    /// }
    /// ```
    fn on_done(&mut self) -> bool {
        true
    }
}

/// The HTTP context of a network filter, which has none: every callback continues.
impl HttpContext for () {}

/// A filter without configuration: `null` or an empty configuration.
impl Config for () {
    fn empty() -> Option<()> {
        Some(())
    }
}
