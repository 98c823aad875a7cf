//! HTTP streams: headers, bodies, local replies, stream control and http callouts.
//!
//! Everything here is valid inside the callback the host is running (the request headers in
//! `on_http_request_headers` and later, the response headers in `on_http_response_headers`…).
//! Outside of that the host answers `BAD_ARGUMENT`, which arrives as an [`Error`].
//!
//! ```
//! use filterkit::http;
//! let vm = filterkit::testing::Vm::<filterkit::testing::NoFilter>::new();
//! vm.set_headers(http::MapType::RequestHeaders, &[(":path", "/admin")]);
//! if http::request_headers().get_str(":path") == Ok(Some("/admin".to_string())) {
//!     http::LocalReply::new(403).body(b"forbidden\n").send().unwrap();
//! }
//! assert_eq!(vm.local_responses()[0].status_code, 403);
//! ```

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;
use core::any::Any;
use core::time::Duration;

use crate::registry::{self, Fit, HttpAnswer};
use crate::{Error, abi, pairs};

/// Header (name, value) pairs as bytes, in order, repeated names included.
///
/// ```
/// let pairs: filterkit::http::Pairs = vec![(b"a".to_vec(), b"1".to_vec())];
/// assert_eq!(pairs.len(), 1);
/// ```
pub type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// Which header map a [`HeaderMap`] handle reads and writes (the ABI's map types).
///
/// ```
/// use filterkit::http::{HeaderMap, MapType};
/// assert_eq!(filterkit::http::response_headers(), HeaderMap::new(MapType::ResponseHeaders));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum MapType {
    /// Request headers (0).
    RequestHeaders,
    /// Request trailers (1).
    RequestTrailers,
    /// Response headers (2).
    ResponseHeaders,
    /// Response trailers (3).
    ResponseTrailers,
    /// gRPC initial metadata (4).
    GrpcReceiveInitialMetadata,
    /// gRPC trailing metadata (5).
    GrpcReceiveTrailingMetadata,
    /// Headers of an http callout's response (6).
    HttpCallResponseHeaders,
    /// Trailers of an http callout's response (7).
    HttpCallResponseTrailers,
}

impl MapType {
    /// The raw map type of the ABI.
    ///
    /// ```
    /// assert_eq!(filterkit::http::MapType::ResponseHeaders.as_raw(), 2);
    /// ```
    pub fn as_raw(self) -> u32 {
        self as u32
    }
}

/// A handle to one of the host's header maps. Names and values are bytes; the `_str`
/// helpers check UTF-8 and return [`Error::NotUtf8`] instead of panicking.
///
/// ```
/// use filterkit::http::{self, MapType};
/// let vm = filterkit::testing::Vm::<filterkit::testing::NoFilter>::new();
/// vm.set_headers(MapType::RequestHeaders, &[(":path", "/a"), ("x-id", "1"), ("x-id", "2")]);
/// let headers = http::request_headers();
/// assert_eq!(headers.get_str("x-id"), Ok(Some("1".to_string())));
/// assert_eq!(headers.get(":missing"), Ok(None));
/// headers.add("x-id", "3").unwrap();
/// headers.remove(":path").unwrap();
/// assert_eq!(vm.headers(MapType::RequestHeaders), ["x-id: 1", "x-id: 2", "x-id: 3"]);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeaderMap {
    map_type: MapType,
}

/// The request headers of the current stream.
///
/// ```
/// let _method = filterkit::http::request_headers().get_str(":method");
/// ```
pub fn request_headers() -> HeaderMap {
    HeaderMap::new(MapType::RequestHeaders)
}

/// The request trailers of the current stream.
///
/// ```
/// let _trailers = filterkit::http::request_trailers().pairs();
/// ```
pub fn request_trailers() -> HeaderMap {
    HeaderMap::new(MapType::RequestTrailers)
}

/// The response headers of the current stream.
///
/// ```
/// let _ = filterkit::http::response_headers().add("x-served-by", "filterkit");
/// ```
pub fn response_headers() -> HeaderMap {
    HeaderMap::new(MapType::ResponseHeaders)
}

/// The response trailers of the current stream.
///
/// ```
/// let _ = filterkit::http::response_trailers().get("grpc-status");
/// ```
pub fn response_trailers() -> HeaderMap {
    HeaderMap::new(MapType::ResponseTrailers)
}

impl HeaderMap {
    /// A handle to the map `map_type`.
    ///
    /// ```
    /// use filterkit::http::{HeaderMap, MapType};
    /// let _ = HeaderMap::new(MapType::HttpCallResponseHeaders).get_str(":status");
    /// ```
    pub fn new(map_type: MapType) -> HeaderMap {
        HeaderMap { map_type }
    }

    /// The first value of `name` (names are lowercase in Envoy), or `None`.
    ///
    /// ```
    /// let vm = filterkit::testing::Vm::<filterkit::testing::NoFilter>::new();
    /// vm.set_headers(filterkit::http::MapType::RequestHeaders, &[("x", "\u{e9}")]);
    /// assert_eq!(filterkit::http::request_headers().get("x"), Ok(Some(vec![0xc3, 0xa9])));
    /// ```
    pub fn get(&self, name: &str) -> Result<Option<Vec<u8>>, Error> {
        abi::get_header_map_value(self.map_type.as_raw(), name.as_bytes())
    }

    /// The first value of `name` as text; [`Error::NotUtf8`] if it is not UTF-8.
    ///
    /// ```
    /// let vm = filterkit::testing::Vm::<filterkit::testing::NoFilter>::new();
    /// vm.set_header_bytes(filterkit::http::MapType::RequestHeaders, &[(b"x", b"\xff")]);
    /// let headers = filterkit::http::request_headers();
    /// assert_eq!(headers.get_str("x"), Err(filterkit::Error::NotUtf8));
    /// ```
    pub fn get_str(&self, name: &str) -> Result<Option<String>, Error> {
        match self.get(name)? {
            Some(bytes) => String::from_utf8(bytes)
                .map(Some)
                .map_err(|_| Error::NotUtf8),
            None => Ok(None),
        }
    }

    /// Every (name, value) pair, in order, repeated names included.
    ///
    /// ```
    /// let vm = filterkit::testing::Vm::<filterkit::testing::NoFilter>::new();
    /// vm.set_headers(filterkit::http::MapType::ResponseHeaders, &[("a", "1"), ("a", "2")]);
    /// let pairs = filterkit::http::response_headers().pairs().unwrap();
    /// assert_eq!(pairs, [(b"a".to_vec(), b"1".to_vec()), (b"a".to_vec(), b"2".to_vec())]);
    /// ```
    pub fn pairs(&self) -> Result<Pairs, Error> {
        let serialized = abi::get_header_map_pairs(self.map_type.as_raw())?;
        pairs::deserialize(&serialized).ok_or(Error::Host {
            function: "proxy_get_header_map_pairs",
            status: crate::Status::SerializationFailure,
        })
    }

    /// Replaces the whole map.
    ///
    /// ```
    /// use filterkit::http::{self, MapType};
    /// let vm = filterkit::testing::Vm::<filterkit::testing::NoFilter>::new();
    /// http::response_headers().set_pairs(&[(":status", "204")]).unwrap();
    /// assert_eq!(vm.headers(MapType::ResponseHeaders), [":status: 204"]);
    /// ```
    pub fn set_pairs<K: AsRef<[u8]>, V: AsRef<[u8]>>(&self, pairs: &[(K, V)]) -> Result<(), Error> {
        abi::set_header_map_pairs(self.map_type.as_raw(), &pairs::serialize(pairs))
    }

    /// Adds a value, keeping any existing values of `name`.
    ///
    /// ```
    /// let _ = filterkit::http::response_headers().add("set-cookie", b"a=1".as_slice());
    /// ```
    pub fn add(&self, name: &str, value: impl AsRef<[u8]>) -> Result<(), Error> {
        abi::add_header_map_value(self.map_type.as_raw(), name.as_bytes(), value.as_ref())
    }

    /// Sets `name` to exactly this value, replacing existing values.
    ///
    /// ```
    /// let _ = filterkit::http::request_headers().set("x-forwarded-proto", "https");
    /// ```
    pub fn set(&self, name: &str, value: impl AsRef<[u8]>) -> Result<(), Error> {
        abi::replace_header_map_value(self.map_type.as_raw(), name.as_bytes(), value.as_ref())
    }

    /// Removes every value of `name`.
    ///
    /// ```
    /// let _ = filterkit::http::request_headers().remove("x-internal");
    /// ```
    pub fn remove(&self, name: &str) -> Result<(), Error> {
        abi::remove_header_map_value(self.map_type.as_raw(), name.as_bytes())
    }

    /// The serialized size of the map in bytes, as the host counts it.
    ///
    /// ```
    /// let vm = filterkit::testing::Vm::<filterkit::testing::NoFilter>::new();
    /// vm.set_headers(filterkit::http::MapType::RequestHeaders, &[("a", "b")]);
    /// assert_eq!(filterkit::http::request_headers().size(), Ok(16));
    /// ```
    pub fn size(&self) -> Result<usize, Error> {
        abi::get_header_map_size(self.map_type.as_raw())
    }
}

/// The host buffers a filter can read (the ABI's buffer types).
///
/// ```
/// assert_eq!(filterkit::http::BufferType::PluginConfiguration.as_raw(), 7);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BufferType {
    /// Request body (0).
    HttpRequestBody,
    /// Response body (1).
    HttpResponseBody,
    /// Downstream data of a TCP stream (2).
    DownstreamData,
    /// Upstream data of a TCP stream (3).
    UpstreamData,
    /// Body of an http callout's response (4).
    HttpCallResponseBody,
    /// A received gRPC message (5).
    GrpcReceiveBuffer,
    /// The VM configuration (6).
    VmConfiguration,
    /// The plugin configuration (7).
    PluginConfiguration,
    /// Arguments of a foreign function call (8).
    CallData,
}

impl BufferType {
    /// The raw buffer type of the ABI.
    ///
    /// ```
    /// assert_eq!(filterkit::http::BufferType::HttpCallResponseBody.as_raw(), 4);
    /// ```
    pub fn as_raw(self) -> u32 {
        self as u32
    }
}

/// A handle to one of the host's buffers, e.g. the request body.
///
/// Envoy can prepend (`replace(0, 0, …)`), replace from the start, and append; anything else
/// is `BAD_ARGUMENT`.
///
/// ```
/// use filterkit::http::{self, BufferType};
/// let vm = filterkit::testing::Vm::<filterkit::testing::NoFilter>::new();
/// vm.set_buffer(BufferType::HttpResponseBody, b"world");
/// let body = http::response_body();
/// body.prepend(b"hello ").unwrap();
/// body.append(b"!").unwrap();
/// assert_eq!(body.read(0, 100), Ok(b"hello world!".to_vec()));
/// assert_eq!(body.len(), Ok(12));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Buffer {
    buffer_type: BufferType,
}

/// The request body (what has been buffered so far).
///
/// ```
/// let _ = filterkit::http::request_body().read(0, 1024);
/// ```
pub fn request_body() -> Buffer {
    Buffer::new(BufferType::HttpRequestBody)
}

/// The response body (what has been buffered so far).
///
/// ```
/// let _ = filterkit::http::response_body().read(0, 1024);
/// ```
pub fn response_body() -> Buffer {
    Buffer::new(BufferType::HttpResponseBody)
}

impl Buffer {
    /// A handle to the buffer `buffer_type`.
    ///
    /// ```
    /// use filterkit::http::{Buffer, BufferType};
    /// let _ = Buffer::new(BufferType::HttpCallResponseBody).read(0, 64);
    /// ```
    pub fn new(buffer_type: BufferType) -> Buffer {
        Buffer { buffer_type }
    }

    /// Up to `max_size` bytes from `start`; an absent buffer reads as empty.
    ///
    /// ```
    /// let vm = filterkit::testing::Vm::<filterkit::testing::NoFilter>::new();
    /// vm.set_buffer(filterkit::http::BufferType::HttpRequestBody, b"abcdef");
    /// assert_eq!(filterkit::http::request_body().read(2, 3), Ok(b"cde".to_vec()));
    /// ```
    pub fn read(&self, start: usize, max_size: usize) -> Result<Vec<u8>, Error> {
        abi::get_buffer_bytes(self.buffer_type.as_raw(), start, max_size)
            .map(Option::unwrap_or_default)
    }

    /// The buffer's current length.
    ///
    /// ```
    /// let vm = filterkit::testing::Vm::<filterkit::testing::NoFilter>::new();
    /// vm.set_buffer(filterkit::http::BufferType::HttpRequestBody, b"abc");
    /// assert_eq!(filterkit::http::request_body().len(), Ok(3));
    /// ```
    #[allow(clippy::len_without_is_empty, reason = "a host call, not a container")]
    pub fn len(&self) -> Result<usize, Error> {
        abi::get_buffer_status(self.buffer_type.as_raw())
            .map(|status| status.map_or(0, |(len, _)| len))
    }

    /// Replaces `size` bytes from `start` with `data`.
    ///
    /// ```
    /// let vm = filterkit::testing::Vm::<filterkit::testing::NoFilter>::new();
    /// vm.set_buffer(filterkit::http::BufferType::HttpRequestBody, b"secret=1");
    /// filterkit::http::request_body().replace(0, 8, b"redacted").unwrap();
    /// assert_eq!(filterkit::http::request_body().read(0, 64), Ok(b"redacted".to_vec()));
    /// ```
    pub fn replace(&self, start: usize, size: usize, data: &[u8]) -> Result<(), Error> {
        abi::set_buffer_bytes(self.buffer_type.as_raw(), start, size, data)
    }

    /// Inserts `data` before the buffer's content.
    ///
    /// ```
    /// let _ = filterkit::http::response_body().prepend(b"<!-- filtered -->");
    /// ```
    pub fn prepend(&self, data: &[u8]) -> Result<(), Error> {
        self.replace(0, 0, data)
    }

    /// Appends `data` after the buffer's content.
    ///
    /// ```
    /// let _ = filterkit::http::response_body().append(b"\n");
    /// ```
    pub fn append(&self, data: &[u8]) -> Result<(), Error> {
        // Envoy treats any start at or past the end as an append.
        self.replace(usize::MAX >> 1, 0, data)
    }
}

/// A reply the filter sends itself instead of the upstream's (`proxy_send_local_response`).
///
/// The host sends it after the current callback returns, and the callback's result becomes
/// Pause; return [`crate::Action::Pause`] to say so.
///
/// ```
/// use filterkit::http::LocalReply;
/// let vm = filterkit::testing::Vm::<filterkit::testing::NoFilter>::new();
/// LocalReply::new(403)
///     .header("content-type", "text/plain")
///     .body(b"forbidden\n")
///     .details("denied_by_filter")
///     .send()
///     .unwrap();
/// let sent = &vm.local_responses()[0];
/// assert_eq!((sent.status_code, sent.details.as_str()), (403, "denied_by_filter"));
/// assert_eq!(sent.headers, [("content-type".to_string(), "text/plain".to_string())]);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalReply<'a> {
    status_code: u32,
    headers: Vec<(&'a str, &'a [u8])>,
    body: &'a [u8],
    details: &'a str,
    grpc_status: Option<u32>,
}

impl<'a> LocalReply<'a> {
    /// A reply with this HTTP status code, no headers and no body.
    ///
    /// ```
    /// let _ = filterkit::http::LocalReply::new(429).send();
    /// ```
    pub fn new(status_code: u32) -> LocalReply<'a> {
        LocalReply {
            status_code,
            headers: Vec::new(),
            body: b"",
            details: "",
            grpc_status: None,
        }
    }

    /// Adds a header.
    ///
    /// ```
    /// let _ = filterkit::http::LocalReply::new(302).header("location", "/login").send();
    /// ```
    pub fn header(mut self, name: &'a str, value: &'a str) -> LocalReply<'a> {
        self.headers.push((name, value.as_bytes()));
        self
    }

    /// Sets the body.
    ///
    /// ```
    /// let _ = filterkit::http::LocalReply::new(400).body(b"bad request\n").send();
    /// ```
    pub fn body(mut self, body: &'a [u8]) -> LocalReply<'a> {
        self.body = body;
        self
    }

    /// Sets the response code details Envoy logs (`%RESPONSE_CODE_DETAILS%`).
    ///
    /// ```
    /// let _ = filterkit::http::LocalReply::new(401).details("missing_api_key").send();
    /// ```
    pub fn details(mut self, details: &'a str) -> LocalReply<'a> {
        self.details = details;
        self
    }

    /// Makes it a gRPC reply with this gRPC status.
    ///
    /// ```
    /// let _ = filterkit::http::LocalReply::new(200).grpc_status(16).send();
    /// ```
    pub fn grpc_status(mut self, grpc_status: u32) -> LocalReply<'a> {
        self.grpc_status = Some(grpc_status);
        self
    }

    /// Asks the host to send it.
    ///
    /// ```
    /// let vm = filterkit::testing::Vm::<filterkit::testing::NoFilter>::new();
    /// filterkit::http::LocalReply::new(503).send().unwrap();
    /// assert_eq!(vm.local_responses().len(), 1);
    /// ```
    pub fn send(&self) -> Result<(), Error> {
        let grpc_status = self.grpc_status.map_or(-1, |status| status as i32);
        abi::send_local_response(
            self.status_code,
            self.details.as_bytes(),
            self.body,
            &pairs::serialize(&self.headers),
            grpc_status,
        )
    }
}

/// Lets the paused request go on (`proxy_continue_stream`, deferred by Envoy until the current
/// callback returns).
///
/// ```
/// let vm = filterkit::testing::Vm::<filterkit::testing::NoFilter>::new();
/// filterkit::http::resume_request().unwrap();
/// assert_eq!(vm.stream_actions(), ["continue request"]);
/// ```
pub fn resume_request() -> Result<(), Error> {
    abi::continue_stream(0)
}

/// Lets the paused response go on.
///
/// ```
/// let _ = filterkit::http::resume_response();
/// ```
pub fn resume_response() -> Result<(), Error> {
    abi::continue_stream(1)
}

/// Resets the request stream (`proxy_close_stream`).
///
/// ```
/// let vm = filterkit::testing::Vm::<filterkit::testing::NoFilter>::new();
/// filterkit::http::close_request().unwrap();
/// assert_eq!(vm.stream_actions(), ["close request"]);
/// ```
pub fn close_request() -> Result<(), Error> {
    abi::close_stream(0)
}

/// Resets the response stream.
///
/// ```
/// let _ = filterkit::http::close_response();
/// ```
pub fn close_response() -> Result<(), Error> {
    abi::close_stream(1)
}

/// The response to an http callout, handed to the continuation given to [`call`].
///
/// A failed call (reset, timeout, no healthy upstream) has no headers: [`CallResponse::status`]
/// is then `None`.
///
/// ```
/// fn on_response(response: &filterkit::http::CallResponse) -> bool {
///     response.status() == Some(200)
/// }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CallResponse {
    pub(crate) token: u32,
    pub(crate) n_headers: usize,
    pub(crate) body_size: usize,
    pub(crate) n_trailers: usize,
}

impl CallResponse {
    /// The token the host gave the call.
    ///
    /// ```
    /// fn token(response: &filterkit::http::CallResponse) -> u32 { response.token() }
    /// ```
    pub fn token(&self) -> u32 {
        self.token
    }

    /// How many headers the response has (0 for a failed call).
    ///
    /// ```
    /// fn failed(response: &filterkit::http::CallResponse) -> bool { response.n_headers() == 0 }
    /// ```
    pub fn n_headers(&self) -> usize {
        self.n_headers
    }

    /// How many trailers the response has.
    ///
    /// ```
    /// fn has_trailers(response: &filterkit::http::CallResponse) -> bool { response.n_trailers() > 0 }
    /// ```
    pub fn n_trailers(&self) -> usize {
        self.n_trailers
    }

    /// The response's `:status`, if it has a valid one.
    ///
    /// ```
    /// fn ok(response: &filterkit::http::CallResponse) -> bool { response.status() == Some(200) }
    /// ```
    pub fn status(&self) -> Option<u32> {
        if self.n_headers == 0 {
            return None;
        }
        let value = self.headers().get(":status").ok()??;
        core::str::from_utf8(&value).ok()?.parse().ok()
    }

    /// The response's headers.
    ///
    /// ```
    /// fn server(response: &filterkit::http::CallResponse) -> Option<String> {
    ///     response.headers().get_str("server").ok().flatten()
    /// }
    /// ```
    pub fn headers(&self) -> HeaderMap {
        HeaderMap::new(MapType::HttpCallResponseHeaders)
    }

    /// The response's trailers.
    ///
    /// ```
    /// fn trailers(response: &filterkit::http::CallResponse) -> filterkit::http::HeaderMap {
    ///     response.trailers()
    /// }
    /// ```
    pub fn trailers(&self) -> HeaderMap {
        HeaderMap::new(MapType::HttpCallResponseTrailers)
    }

    /// The response's body.
    ///
    /// ```
    /// fn body(response: &filterkit::http::CallResponse) -> Vec<u8> {
    ///     response.body().unwrap_or_default()
    /// }
    /// ```
    pub fn body(&self) -> Result<Vec<u8>, Error> {
        if self.body_size == 0 {
            return Ok(Vec::new());
        }
        Buffer::new(BufferType::HttpCallResponseBody).read(0, self.body_size)
    }
}

/// Sends an http callout to `upstream` (an Envoy cluster) and runs `continuation` with the
/// context that made the call when the response (or the failure) arrives. No token bookkeeping.
///
/// The context that made the call is the one whose callback is running, or the one made
/// effective with [`crate::host::set_effective_context`]; a stream, a TCP connection or a root.
/// Envoy hands every answer to the root context; the SDK runs the continuation with the
/// calling context instead, made effective for the host, so `resume_request` and local replies
/// act on it.
///
/// `headers` must include `:method`, `:path` and `:authority`. `C` is the type of the calling
/// context: `Self` in a [`crate::HttpContext`], [`crate::RootContext`] or
/// [`crate::tcp::TcpContext`] method; with any other type the continuation cannot run and the
/// SDK logs an error naming the token. A zero `timeout` means none. The continuation is
/// dropped, unrun, if its context is deleted first (logged at info). Returns the call's token.
///
/// ```
/// use std::time::Duration;
/// use filterkit::{Action, HttpContext, http};
///
/// #[derive(Default)]
/// struct Auth { allowed: bool }
/// impl HttpContext for Auth {
///     fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
///         let headers = [(":method", "GET"), (":path", "/check"), (":authority", "auth")];
///         let sent = http::call("auth_cluster", &headers, b"", Duration::from_secs(1),
///             |this: &mut Auth, response| {
///                 this.allowed = response.status() == Some(200);
///                 let _ = http::resume_request();
///             });
///         if sent.is_ok() { Action::Pause } else { Action::Continue }
///     }
/// }
///
/// let vm = filterkit::testing::Vm::<filterkit::testing::NoFilter>::new();
/// let mut auth = Auth::default();
/// assert_eq!(auth.on_http_request_headers(0, true), Action::Pause);
/// assert_eq!(vm.http_calls()[0].upstream, "auth_cluster");
/// ```
pub fn call<C: Any>(
    upstream: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
    continuation: impl FnOnce(&mut C, CallResponse) + 'static,
) -> Result<u32, Error> {
    registry::check_callouts()?;
    let timeout = u32::try_from(timeout.as_millis()).map_err(|_| Error::DurationTooLong)?;
    let no_trailers: [(&str, &str); 0] = [];
    let token = abi::http_call(
        upstream.as_bytes(),
        &pairs::serialize(headers),
        body,
        &pairs::serialize(&no_trailers),
        timeout,
    )?;
    registry::register_http(
        token,
        Box::new(move |context, answer: HttpAnswer, route: registry::Route| {
            let Some(context) = context.downcast_mut::<C>() else {
                return Fit::WrongContext;
            };
            let response = CallResponse {
                token: answer.token,
                n_headers: answer.n_headers,
                body_size: answer.body_size,
                n_trailers: answer.n_trailers,
            };
            route.as_owner(|| continuation(context, response));
            Fit::Ran
        }),
    );
    Ok(token)
}
