//! filterkit: a lean `#![no_std]` Proxy-Wasm SDK with its own ABI 0.2.1 bindings.
//!
//! A filter is a [`RootContext`] (one per plugin root_id, holding that root_id's typed
//! [`Config`]) that creates one [`HttpContext`] per HTTP stream. The callbacks have the names
//! proxy-wasm users know; what is different is what the SDK does for you:
//!
//! - the plugin configuration is parsed with serde ([`json`]) into `RootContext::Config` and
//!   checked by [`Config::validate`]; a bad one is rejected with exactly one error log line
//!   `invalid plugin configuration for root_id=<id>: <problem>`, and each stream receives its
//!   root's config as an `Rc`;
//! - host calls return [`Error`] values, never trap; header values are bytes, with `&str`
//!   helpers that return errors instead of panicking on non-UTF-8 ([`http::HeaderMap`]);
//! - `log` macros go to `proxy_log` at the host's log level;
//! - local replies ([`http::LocalReply`]), body access ([`http::Buffer`]), typed metrics
//!   ([`metrics`]), http and gRPC callouts with a continuation ([`http::call`], [`grpc`]),
//!   shared data with compare-and-swap retries ([`shared`]), ticks ([`time`]) and typed
//!   properties ([`properties`]).
//!
//! Network filters set [`RootContext::TCP`] and get a [`tcp::TcpContext`] per connection.
//!
//! What it does not do: there is no `std`. A filter crate is `#![no_std]` too (the SDK brings
//! the allocator and the panic handler on wasm32, so a filter that linked `std` would have two
//! panic handlers) and exports its entry points with [`export_filter!`]. Filters are built one
//! package at a time for wasm32 (`cargo build -p <filter>`), as `cargo xtask build` does.
//!
//! Start reading at [`RootContext`]; the ABI boundary, the only `unsafe` code, is `src/abi/`.
//! Natively every host function goes to an in-process fake host ([`testing`]), which is how the
//! examples below run.
//!
//! ```
//! use std::rc::Rc;
//! use filterkit::{Action, Config, HttpContext, RootContext, http};
//!
//! #[derive(serde::Deserialize)]
//! #[serde(deny_unknown_fields)]
//! struct Greeting { text: String }
//!
//! impl Config for Greeting {
//!     fn validate(&self) -> Result<(), String> {
//!         if self.text.is_empty() { Err("text is empty".into()) } else { Ok(()) }
//!     }
//! }
//!
//! #[derive(Default)]
//! struct Root;
//! impl RootContext for Root {
//!     type Config = Greeting;
//!     type Http = Stream;
//!     fn create_http_context(&mut self, _context_id: u32, config: Rc<Greeting>) -> Stream {
//!         Stream { config }
//!     }
//! }
//!
//! struct Stream { config: Rc<Greeting> }
//! impl HttpContext for Stream {
//!     fn on_http_response_headers(&mut self, _n_headers: usize, _end_of_stream: bool) -> Action {
//!         if let Err(error) = http::response_headers().add("x-greeting", &self.config.text) {
//!             log::warn!("cannot add header: {error}");
//!         }
//!         Action::Continue
//!     }
//! }
//!
//! filterkit::export_filter!(Root);
//!
//! // Natively, drive it through the fake host:
//! let vm = filterkit::testing::Vm::<Root>::new();
//! assert!(vm.configure("my_root_id", br#"{"text":"hi"}"#));
//! let stream = vm.create_stream();
//! assert_eq!(vm.response_headers(stream, &[(":status", "200")]), Action::Continue);
//! assert_eq!(vm.headers(http::MapType::ResponseHeaders), [":status: 200", "x-greeting: hi"]);
//! assert!(!vm.configure("other", br#"{"text":""}"#));
//! assert_eq!(vm.logs(), ["error: invalid plugin configuration for root_id=other: text is empty"]);
//! ```
#![no_std]
#![deny(missing_docs)]

extern crate alloc;
#[cfg(not(target_arch = "wasm32"))]
extern crate std;

mod abi;
mod dispatch;
mod error;
mod logger;
mod pairs;
mod registry;

pub mod grpc;
pub mod host;
pub mod http;
pub mod json;
pub mod metrics;
pub mod properties;
pub mod shared;
pub mod tcp;
#[cfg(not(target_arch = "wasm32"))]
pub mod testing;
pub mod time;

use alloc::rc::Rc;
use alloc::string::String;

pub use error::{Error, Status};
/// Re-exported so filters and [`export_filter!`] name the same `log` and `serde`.
///
/// ```
/// filterkit::log::info!("the same crate as `log`");
/// ```
pub use log;

/// What a stream callback tells the host to do next.
///
/// ```
/// use filterkit::Action;
/// assert_ne!(Action::Continue, Action::Pause);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Let the stream go on to the next filter.
    Continue,
    /// Stop here until [`http::resume_request`] / [`http::resume_response`] (or buffer the body,
    /// when returned from a body callback).
    Pause,
}

impl Action {
    fn as_raw(self) -> u32 {
        match self {
            Action::Continue => 0,
            Action::Pause => 1,
        }
    }
}

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
    /// are TCP connections from [`RootContext::create_tcp_context`]. `false` (the default)
    /// compiles the TCP plumbing away (it would add about 1.2 KB to a shipped HTTP filter).
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
    const TCP: bool = false;

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
    fn create_tcp_context(
        &mut self,
        context_id: u32,
        config: Rc<Self::Config>,
    ) -> Option<alloc::boxed::Box<dyn tcp::TcpContext>> {
        let _ = (context_id, config);
        None
    }

    /// Called every tick period (see [`time::set_tick_period`]).
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
    fn on_queue_ready(&mut self, queue_id: u32) {
        let _ = queue_id;
    }

    /// The host called this root's foreign function `function_id` with `arguments`
    /// (`proxy_on_foreign_function`; the arguments are the host's buffer 8, `CallData`).
    ///
    /// proxy-wasm-rust-sdk has the same callback on every context. No built-in Envoy
    /// extension calls it today (Envoy's own foreign functions are called *by* the guest,
    /// [`host::call_foreign_function`]); it exists for hosts that push events this way.
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
    fn on_foreign_function(&mut self, function_id: u32, arguments: &[u8]) {
        let _ = (function_id, arguments);
    }

    /// Called when the host wants to shut the root down; `false` means "later", and the root
    /// then calls [`host::done`] itself.
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
/// Header and body access goes through [`http`]; it is valid inside the callback that the
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
    fn on_foreign_function(&mut self, function_id: u32, arguments: &[u8]) {
        let _ = (function_id, arguments);
    }

    /// The host is done with the stream; `false` means "later" (then call [`host::done`]).
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

/// Exports a filter's Proxy-Wasm entry points (ABI 0.2.1) for the root context type `$root`.
///
/// This macro is the only place a filter crate gets exported symbols from; it carries the one
/// `#[allow(unsafe_code)]` that `#[unsafe(no_mangle)]` needs, so filter crates can
/// `#![deny(unsafe_code)]`. Natively it only checks that `$root` is a [`RootContext`].
///
/// ```
/// # use std::rc::Rc;
/// # #[derive(serde::Deserialize)] struct C; impl filterkit::Config for C {}
/// # struct S; impl filterkit::HttpContext for S {}
/// #[derive(Default)]
/// struct MyRoot;
/// impl filterkit::RootContext for MyRoot {
///     type Config = C;
///     type Http = S;
///     fn create_http_context(&mut self, _: u32, _: Rc<C>) -> S { S }
/// }
/// filterkit::export_filter!(MyRoot);
/// ```
#[macro_export]
macro_rules! export_filter {
    ($root:ty) => {
        #[cfg(not(target_arch = "wasm32"))]
        const _: fn() -> $crate::__private::Filter<$root> = $crate::__private::Filter::new;

        #[cfg(target_arch = "wasm32")]
        #[allow(
            unsafe_code,
            reason = "exported Proxy-Wasm entry points need #[unsafe(no_mangle)]"
        )]
        const _: () = {
            use $crate::__private as p;
            static FILTER: p::Filter<$root> = p::Filter::new();

            #[unsafe(no_mangle)]
            pub extern "C" fn proxy_abi_version_0_2_1() {}
            #[unsafe(no_mangle)]
            pub extern "C" fn proxy_on_memory_allocate(size: usize) -> *mut u8 {
                p::on_memory_allocate(size)
            }
            #[unsafe(no_mangle)]
            pub extern "C" fn proxy_on_context_create(context_id: u32, parent_context_id: u32) {
                FILTER.on_context_create(context_id, parent_context_id)
            }
            #[unsafe(no_mangle)]
            pub extern "C" fn proxy_on_vm_start(context_id: u32, size: usize) -> u32 {
                FILTER.on_vm_start(context_id, size)
            }
            #[unsafe(no_mangle)]
            pub extern "C" fn proxy_on_configure(context_id: u32, size: usize) -> u32 {
                FILTER.on_configure(context_id, size)
            }
            #[unsafe(no_mangle)]
            pub extern "C" fn proxy_on_tick(context_id: u32) {
                FILTER.on_tick(context_id)
            }
            #[unsafe(no_mangle)]
            pub extern "C" fn proxy_on_queue_ready(context_id: u32, queue_id: u32) {
                FILTER.on_queue_ready(context_id, queue_id)
            }
            #[unsafe(no_mangle)]
            pub extern "C" fn proxy_on_request_headers(context_id: u32, n: usize, eos: u32) -> u32 {
                FILTER.on_request_headers(context_id, n, eos)
            }
            #[unsafe(no_mangle)]
            pub extern "C" fn proxy_on_request_body(context_id: u32, size: usize, eos: u32) -> u32 {
                FILTER.on_request_body(context_id, size, eos)
            }
            #[unsafe(no_mangle)]
            pub extern "C" fn proxy_on_request_trailers(context_id: u32, n: usize) -> u32 {
                FILTER.on_request_trailers(context_id, n)
            }
            #[unsafe(no_mangle)]
            pub extern "C" fn proxy_on_response_headers(
                context_id: u32,
                n: usize,
                eos: u32,
            ) -> u32 {
                FILTER.on_response_headers(context_id, n, eos)
            }
            #[unsafe(no_mangle)]
            pub extern "C" fn proxy_on_response_body(
                context_id: u32,
                size: usize,
                eos: u32,
            ) -> u32 {
                FILTER.on_response_body(context_id, size, eos)
            }
            #[unsafe(no_mangle)]
            pub extern "C" fn proxy_on_response_trailers(context_id: u32, n: usize) -> u32 {
                FILTER.on_response_trailers(context_id, n)
            }
            #[unsafe(no_mangle)]
            pub extern "C" fn proxy_on_log(context_id: u32) {
                FILTER.on_log(context_id)
            }
            #[unsafe(no_mangle)]
            pub extern "C" fn proxy_on_done(context_id: u32) -> u32 {
                FILTER.on_done(context_id)
            }
            #[unsafe(no_mangle)]
            pub extern "C" fn proxy_on_delete(context_id: u32) {
                FILTER.on_delete(context_id)
            }
            #[unsafe(no_mangle)]
            pub extern "C" fn proxy_on_http_call_response(
                context_id: u32,
                token: u32,
                n_headers: usize,
                body_size: usize,
                n_trailers: usize,
            ) {
                FILTER.on_http_call_response(context_id, token, n_headers, body_size, n_trailers)
            }
            #[unsafe(no_mangle)]
            pub extern "C" fn proxy_on_grpc_receive_initial_metadata(
                context_id: u32,
                token: u32,
                n_elements: usize,
            ) {
                FILTER.on_grpc_receive_initial_metadata(context_id, token, n_elements)
            }
            #[unsafe(no_mangle)]
            pub extern "C" fn proxy_on_grpc_receive_trailing_metadata(
                context_id: u32,
                token: u32,
                n_elements: usize,
            ) {
                FILTER.on_grpc_receive_trailing_metadata(context_id, token, n_elements)
            }
            #[unsafe(no_mangle)]
            pub extern "C" fn proxy_on_grpc_receive(context_id: u32, token: u32, size: usize) {
                FILTER.on_grpc_receive(context_id, token, size)
            }
            #[unsafe(no_mangle)]
            pub extern "C" fn proxy_on_grpc_close(context_id: u32, token: u32, status_code: u32) {
                FILTER.on_grpc_close(context_id, token, status_code)
            }
            #[unsafe(no_mangle)]
            pub extern "C" fn proxy_on_new_connection(context_id: u32) -> u32 {
                FILTER.on_new_connection(context_id)
            }
            #[unsafe(no_mangle)]
            pub extern "C" fn proxy_on_downstream_data(
                context_id: u32,
                size: usize,
                eos: u32,
            ) -> u32 {
                FILTER.on_downstream_data(context_id, size, eos)
            }
            #[unsafe(no_mangle)]
            pub extern "C" fn proxy_on_upstream_data(
                context_id: u32,
                size: usize,
                eos: u32,
            ) -> u32 {
                FILTER.on_upstream_data(context_id, size, eos)
            }
            #[unsafe(no_mangle)]
            pub extern "C" fn proxy_on_downstream_connection_close(context_id: u32, peer: u32) {
                FILTER.on_downstream_connection_close(context_id, peer)
            }
            #[unsafe(no_mangle)]
            pub extern "C" fn proxy_on_upstream_connection_close(context_id: u32, peer: u32) {
                FILTER.on_upstream_connection_close(context_id, peer)
            }
            #[unsafe(no_mangle)]
            pub extern "C" fn proxy_on_foreign_function(
                context_id: u32,
                function_id: u32,
                arguments_size: usize,
            ) {
                FILTER.on_foreign_function(context_id, function_id, arguments_size)
            }
        };
    };
}

#[doc(hidden)]
pub mod __private {
    pub use crate::dispatch::*;
}

/// Quotes `text` for an error or log message: `"text"`, with `"`, `\\` and every character
/// outside printable ASCII escaped (`\n`, `\u{7f}`), so hostile input cannot forge log lines.
///
/// Cheaper than `format!("{text:?}")`, whose Unicode tables would add kilobytes to a module.
///
/// ```
/// assert_eq!(filterkit::quote("bad name"), r#""bad name""#);
/// assert_eq!(filterkit::quote("a\r\nb\u{e9}"), r#""a\r\nb\u{e9}""#);
/// ```
pub fn quote(text: &str) -> String {
    let mut quoted = String::with_capacity(text.len() + 2);
    quoted.push('"');
    for c in text.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            '\n' => quoted.push_str("\\n"),
            '\r' => quoted.push_str("\\r"),
            '\t' => quoted.push_str("\\t"),
            ' '..='~' => quoted.push(c),
            _ => {
                quoted.push_str("\\u{");
                let code = u32::from(c);
                let mut started = false;
                for shift in (0..6).rev() {
                    let digit = (code >> (shift * 4)) & 0xF;
                    if digit != 0 || started || shift == 0 {
                        started = true;
                        quoted.push(char::from(b"0123456789abcdef"[digit as usize]));
                    }
                }
                quoted.push('}');
            }
        }
    }
    quoted.push('"');
    quoted
}

/// Joins `parts` into one `String`: the cheap way to build a message.
///
/// `format!` is fine to use, but its padding and width code adds about 2 KB to a module that
/// otherwise does not need it; `join` is a loop of `push_str`.
///
/// ```
/// let name = "bad name";
/// let message = filterkit::join(&["header name ", &filterkit::quote(name), " is not a token"]);
/// assert_eq!(message, r#"header name "bad name" is not a token"#);
/// ```
pub fn join(parts: &[&str]) -> String {
    let mut joined = String::new();
    for part in parts {
        joined.push_str(part);
    }
    joined
}

/// The HTTP context of a network filter, which has none: every callback continues.
impl HttpContext for () {}

/// A filter without configuration: `null` or an empty configuration.
impl Config for () {
    fn empty() -> Option<()> {
        Some(())
    }
}
