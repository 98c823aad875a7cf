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
//! Network filters turn on the `tcp` feature, set `RootContext::TCP` and get a
//! [`tcp::TcpContext`] per connection.
//!
//! Callbacks beyond the lifecycle and the headers (bodies, trailers, `on_log`, ticks, queues,
//! TCP, foreign functions) are cargo features, all in `default`. With one off, its trait method
//! does not exist (implementing it does not compile) and [`export_filter!`] does not export it,
//! so the host never calls it: a filter pays only for the callbacks it implements
//! (`sdk/README.md`, "Callbacks a filter exports").
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
mod action;
mod context;
mod dispatch;
mod error;
mod logger;
mod pairs;
mod registry;
mod text;

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

pub use action::Action;
pub use context::{Config, HttpContext, RootContext};
pub use error::{Error, Status};
/// Re-exported so filters and [`export_filter!`] name the same `log` and `serde`.
///
/// ```
/// filterkit::log::info!("the same crate as `log`");
/// ```
pub use log;
pub use text::{join, quote};

/// Exports a filter's Proxy-Wasm entry points (ABI 0.2.1) for the root context type `$root`:
/// the lifecycle, headers and callout callbacks, and each optional callback whose `filterkit`
/// feature is on.
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
            $crate::__if_tick! {
                #[unsafe(no_mangle)]
                pub extern "C" fn proxy_on_tick(context_id: u32) {
                    FILTER.on_tick(context_id)
                }
            }
            $crate::__if_queue! {
                #[unsafe(no_mangle)]
                pub extern "C" fn proxy_on_queue_ready(context_id: u32, queue_id: u32) {
                    FILTER.on_queue_ready(context_id, queue_id)
                }
            }
            #[unsafe(no_mangle)]
            pub extern "C" fn proxy_on_request_headers(context_id: u32, n: usize, eos: u32) -> u32 {
                FILTER.on_request_headers(context_id, n, eos)
            }
            $crate::__if_request_body! {
                #[unsafe(no_mangle)]
                pub extern "C" fn proxy_on_request_body(context_id: u32, size: usize, eos: u32) -> u32 {
                    FILTER.on_request_body(context_id, size, eos)
                }
            }
            $crate::__if_request_trailers! {
                #[unsafe(no_mangle)]
                pub extern "C" fn proxy_on_request_trailers(context_id: u32, n: usize) -> u32 {
                    FILTER.on_request_trailers(context_id, n)
                }
            }
            #[unsafe(no_mangle)]
            pub extern "C" fn proxy_on_response_headers(
                context_id: u32,
                n: usize,
                eos: u32,
            ) -> u32 {
                FILTER.on_response_headers(context_id, n, eos)
            }
            $crate::__if_response_body! {
                #[unsafe(no_mangle)]
                pub extern "C" fn proxy_on_response_body(
                    context_id: u32,
                    size: usize,
                    eos: u32,
                ) -> u32 {
                    FILTER.on_response_body(context_id, size, eos)
                }
            }
            $crate::__if_response_trailers! {
                #[unsafe(no_mangle)]
                pub extern "C" fn proxy_on_response_trailers(context_id: u32, n: usize) -> u32 {
                    FILTER.on_response_trailers(context_id, n)
                }
            }
            $crate::__if_stream_log! {
                #[unsafe(no_mangle)]
                pub extern "C" fn proxy_on_log(context_id: u32) {
                    FILTER.on_log(context_id)
                }
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
            $crate::__if_tcp! {
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
            }
            $crate::__if_foreign_function! {
                #[unsafe(no_mangle)]
                pub extern "C" fn proxy_on_foreign_function(
                    context_id: u32,
                    function_id: u32,
                    arguments_size: usize,
                ) {
                    FILTER.on_foreign_function(context_id, function_id, arguments_size)
                }
            }
        };
    };
}

// `export_filter!` expands in the filter's crate, where `cfg(feature = …)` would test the
// filter's own features. Each of these carries one of filterkit's features instead: it emits
// its tokens only when the feature is on, so a callback whose trait method does not exist is
// not exported either (and the host, finding no export, never calls it).
#[cfg(feature = "request-body")]
#[doc(hidden)]
#[macro_export]
macro_rules! __if_request_body {
    ($($tokens:tt)*) => { $($tokens)* };
}
#[cfg(not(feature = "request-body"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __if_request_body {
    ($($tokens:tt)*) => {};
}
#[cfg(feature = "request-trailers")]
#[doc(hidden)]
#[macro_export]
macro_rules! __if_request_trailers {
    ($($tokens:tt)*) => { $($tokens)* };
}
#[cfg(not(feature = "request-trailers"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __if_request_trailers {
    ($($tokens:tt)*) => {};
}
#[cfg(feature = "response-body")]
#[doc(hidden)]
#[macro_export]
macro_rules! __if_response_body {
    ($($tokens:tt)*) => { $($tokens)* };
}
#[cfg(not(feature = "response-body"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __if_response_body {
    ($($tokens:tt)*) => {};
}
#[cfg(feature = "response-trailers")]
#[doc(hidden)]
#[macro_export]
macro_rules! __if_response_trailers {
    ($($tokens:tt)*) => { $($tokens)* };
}
#[cfg(not(feature = "response-trailers"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __if_response_trailers {
    ($($tokens:tt)*) => {};
}
#[cfg(feature = "stream-log")]
#[doc(hidden)]
#[macro_export]
macro_rules! __if_stream_log {
    ($($tokens:tt)*) => { $($tokens)* };
}
#[cfg(not(feature = "stream-log"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __if_stream_log {
    ($($tokens:tt)*) => {};
}
#[cfg(feature = "tick")]
#[doc(hidden)]
#[macro_export]
macro_rules! __if_tick {
    ($($tokens:tt)*) => { $($tokens)* };
}
#[cfg(not(feature = "tick"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __if_tick {
    ($($tokens:tt)*) => {};
}
#[cfg(feature = "queue")]
#[doc(hidden)]
#[macro_export]
macro_rules! __if_queue {
    ($($tokens:tt)*) => { $($tokens)* };
}
#[cfg(not(feature = "queue"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __if_queue {
    ($($tokens:tt)*) => {};
}
#[cfg(feature = "tcp")]
#[doc(hidden)]
#[macro_export]
macro_rules! __if_tcp {
    ($($tokens:tt)*) => { $($tokens)* };
}
#[cfg(not(feature = "tcp"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __if_tcp {
    ($($tokens:tt)*) => {};
}
#[cfg(feature = "foreign-function")]
#[doc(hidden)]
#[macro_export]
macro_rules! __if_foreign_function {
    ($($tokens:tt)*) => { $($tokens)* };
}
#[cfg(not(feature = "foreign-function"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __if_foreign_function {
    ($($tokens:tt)*) => {};
}

#[doc(hidden)]
pub mod __private {
    pub use crate::dispatch::*;
}
