//! gRPC callouts with a handler instead of token bookkeeping.
//!
//! [`call`] sends one request message and runs a continuation with the reply (or the failure);
//! [`Stream::open`] opens a bidirectional stream whose events go to a handler. Both run with
//! the context that made the call, as [`crate::http::call`] does.
//!
//! ```
//! use std::time::Duration;
//! use filterkit::grpc;
//! let vm = filterkit::testing::Vm::<filterkit::testing::NoFilter>::new();
//! let token = grpc::call("authz", "pkg.Auth", "Check", &[], b"\x08\x01", Duration::from_secs(1),
//!     |_: &mut (), reply| log::info!("grpc status {}", reply.status_code));
//! assert!(token.is_ok());
//! ```

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::any::Any;
use core::time::Duration;

use crate::http::{BufferType, HeaderMap, MapType, Pairs};
use crate::registry::{self, GrpcSignal, GrpcStep};
use crate::{Error, abi, pairs};

/// What arrives on a gRPC stream, in this order: initial metadata, messages, trailing
/// metadata, close. A unary [`call`] gets no events: Envoy answers it with one message (success)
/// or one close (failure), which [`call`] turns into a [`Reply`].
///
/// ```
/// use filterkit::grpc::Event;
/// let event = Event::Close { status_code: 0 };
/// assert_ne!(event, Event::Message(vec![]));
/// let metadata = Event::InitialMetadata(vec![(b"x-trace".to_vec(), b"1".to_vec())]);
/// assert!(matches!(metadata, Event::InitialMetadata(pairs) if pairs.len() == 1));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The response's initial metadata (`proxy_on_grpc_receive_initial_metadata`), as bytes.
    InitialMetadata(Pairs),
    /// One message (protobuf bytes, without gRPC framing).
    Message(Vec<u8>),
    /// The response's trailing metadata (`proxy_on_grpc_receive_trailing_metadata`), as
    /// bytes; the close follows.
    TrailingMetadata(Pairs),
    /// The stream ended with this gRPC status (0 = OK); no more events follow.
    Close {
        /// gRPC status code.
        status_code: u32,
    },
}

/// The outcome of a unary [`call`]: status 0 and the message on success (Envoy's one
/// `proxy_on_grpc_receive`), or the failure's status and no message (`proxy_on_grpc_close`).
///
/// ```
/// let reply = filterkit::grpc::Reply { status_code: 14, message: None };
/// assert!(!reply.is_ok());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// gRPC status code (0 = OK).
    pub status_code: u32,
    /// The response message, if one arrived.
    pub message: Option<Vec<u8>>,
}

impl Reply {
    /// Whether the call succeeded.
    ///
    /// ```
    /// let reply = filterkit::grpc::Reply { status_code: 0, message: Some(vec![]) };
    /// assert!(reply.is_ok());
    /// ```
    pub fn is_ok(&self) -> bool {
        self.status_code == 0
    }
}

fn read_message(size: usize) -> Vec<u8> {
    abi::read_buffer(BufferType::GrpcReceiveBuffer.as_raw(), size)
}

/// A metadata map; one the host cannot give arrives as empty.
fn read_metadata(map_type: MapType, n_elements: usize) -> Pairs {
    if n_elements == 0 {
        return Vec::new();
    }
    HeaderMap::new(map_type).pairs().unwrap_or_default()
}

fn timeout_millis(timeout: Duration) -> Result<u32, Error> {
    u32::try_from(timeout.as_millis()).map_err(|_| Error::DurationTooLong)
}

/// Sends a unary gRPC request to `service`/`method` on the cluster `upstream`; `continuation`
/// runs once with the calling context `C` and the [`Reply`]: on the response message (status
/// 0) or on the failure (timeout, unknown cluster, an error status from the server). The
/// calling context is found as for [`crate::http::call`]. Returns the call's token, which
/// [`cancel`] takes.
///
/// ```
/// use std::time::Duration;
/// let vm = filterkit::testing::Vm::<filterkit::testing::NoFilter>::new();
/// let sent = filterkit::grpc::call("c", "s", "m", &[("x-key", b"1".as_slice())], b"", Duration::ZERO,
///     |_: &mut (), _| {});
/// assert!(sent.is_ok());
/// ```
pub fn call<C: Any>(
    upstream: &str,
    service: &str,
    method: &str,
    initial_metadata: &[(&str, &[u8])],
    message: &[u8],
    timeout: Duration,
    continuation: impl FnOnce(&mut C, Reply) + 'static,
) -> Result<u32, Error> {
    registry::check_callouts()?;
    let token = abi::grpc_call(
        upstream.as_bytes(),
        service.as_bytes(),
        method.as_bytes(),
        &pairs::serialize(initial_metadata),
        message,
        timeout_millis(timeout)?,
    )?;
    let mut continuation = Some(continuation);
    registry::register_grpc(
        token,
        Box::new(move |context, signal, route: registry::Route| {
            let reply = match signal {
                // Envoy sends no metadata for unary calls; ignore any.
                GrpcSignal::InitialMetadata { .. } | GrpcSignal::TrailingMetadata { .. } => {
                    return GrpcStep::Continue;
                }
                GrpcSignal::Message { size } => Reply {
                    status_code: 0,
                    message: Some(read_message(size)),
                },
                GrpcSignal::Close { status_code } => Reply {
                    status_code,
                    message: None,
                },
            };
            let Some(context) = context.downcast_mut::<C>() else {
                return GrpcStep::WrongContext;
            };
            if let Some(continuation) = continuation.take() {
                route.as_owner(|| continuation(context, reply));
            }
            GrpcStep::Finished
        }),
    );
    Ok(token)
}

/// Cancels the unary call or stream `token`: its continuation or handler never runs again.
///
/// ```
/// use std::time::Duration;
/// let vm = filterkit::testing::Vm::<filterkit::testing::NoFilter>::new();
/// assert!(vm.configure("r", b""));
/// let token = filterkit::grpc::call("c", "s", "m", &[], b"", Duration::ZERO,
///     |_: &mut filterkit::testing::NoFilter, _| log::info!("never runs")).unwrap();
/// filterkit::grpc::cancel(token).unwrap();
/// vm.grpc_message(vm.root("r"), token, b"late");
/// assert!(vm.logs().is_empty());
/// ```
pub fn cancel(token: u32) -> Result<(), Error> {
    registry::forget_grpc(token);
    abi::grpc_cancel(token)
}

/// An open bidirectional gRPC stream.
///
/// ```
/// use filterkit::grpc::{Event, Stream};
/// let vm = filterkit::testing::Vm::<filterkit::testing::NoFilter>::new();
/// let stream = Stream::open("c", "pkg.Chat", "Talk", &[], |_: &mut (), event: Event| {
///     log::info!("{event:?}");
/// }).unwrap();
/// stream.send(b"hi", false).unwrap();
/// stream.close().unwrap();
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stream {
    token: u32,
}

impl Stream {
    /// Opens a stream; `handler` receives every [`Event`] (initial metadata, messages,
    /// trailing metadata, close) with the calling context `C`. Cancelling the stream from
    /// inside the handler stops further events.
    ///
    /// ```
    /// let stream = filterkit::grpc::Stream::open("c", "s", "m", &[], |_: &mut (), _| {});
    /// assert!(stream.is_ok());
    /// ```
    pub fn open<C: Any>(
        upstream: &str,
        service: &str,
        method: &str,
        initial_metadata: &[(&str, &[u8])],
        mut handler: impl FnMut(&mut C, Event) + 'static,
    ) -> Result<Stream, Error> {
        registry::check_callouts()?;
        let token = abi::grpc_stream(
            upstream.as_bytes(),
            service.as_bytes(),
            method.as_bytes(),
            &pairs::serialize(initial_metadata),
        )?;
        registry::register_grpc(
            token,
            Box::new(move |context, signal, route: registry::Route| {
                let Some(context) = context.downcast_mut::<C>() else {
                    return GrpcStep::WrongContext;
                };
                let event = match signal {
                    GrpcSignal::InitialMetadata { n_elements } => Event::InitialMetadata(
                        read_metadata(MapType::GrpcReceiveInitialMetadata, n_elements),
                    ),
                    GrpcSignal::Message { size } => Event::Message(read_message(size)),
                    GrpcSignal::TrailingMetadata { n_elements } => Event::TrailingMetadata(
                        read_metadata(MapType::GrpcReceiveTrailingMetadata, n_elements),
                    ),
                    GrpcSignal::Close { status_code } => Event::Close { status_code },
                };
                let finished = matches!(event, Event::Close { .. });
                route.as_owner(|| handler(context, event));
                if finished {
                    GrpcStep::Finished
                } else {
                    GrpcStep::Continue
                }
            }),
        );
        Ok(Stream { token })
    }

    /// The stream's token.
    ///
    /// ```
    /// let stream = filterkit::grpc::Stream::open("c", "s", "m", &[], |_: &mut (), _| {}).unwrap();
    /// assert!(stream.token() > 0);
    /// ```
    pub fn token(&self) -> u32 {
        self.token
    }

    /// Sends a message; `end_of_stream` half-closes the stream.
    ///
    /// ```
    /// let stream = filterkit::grpc::Stream::open("c", "s", "m", &[], |_: &mut (), _| {}).unwrap();
    /// stream.send(b"", true).unwrap();
    /// ```
    pub fn send(&self, message: &[u8], end_of_stream: bool) -> Result<(), Error> {
        abi::grpc_send(self.token, message, end_of_stream)
    }

    /// Closes the stream gracefully.
    ///
    /// ```
    /// let stream = filterkit::grpc::Stream::open("c", "s", "m", &[], |_: &mut (), _| {}).unwrap();
    /// stream.close().unwrap();
    /// ```
    pub fn close(&self) -> Result<(), Error> {
        abi::grpc_close(self.token)
    }

    /// Cancels the stream; no more events are delivered.
    ///
    /// ```
    /// let stream = filterkit::grpc::Stream::open("c", "s", "m", &[], |_: &mut (), _| {}).unwrap();
    /// stream.cancel().unwrap();
    /// ```
    pub fn cancel(&self) -> Result<(), Error> {
        cancel(self.token)
    }
}
