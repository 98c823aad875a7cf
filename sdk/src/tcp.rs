//! TCP (network filter) streams: [`TcpContext`] and access to the connection's data.
//!
//! A root with [`crate::RootContext::TCP`] set creates a TCP context instead of an HTTP one by
//! returning it from [`crate::RootContext::create_tcp_context`] (Envoy's network filter
//! `envoy.filters.network.wasm`).
//!
//! ```
//! use filterkit::{Action, tcp};
//! struct CountBytes { total: usize }
//! impl tcp::TcpContext for CountBytes {
//!     fn on_downstream_data(&mut self, data_size: usize, _end_of_stream: bool) -> Action {
//!         self.total += data_size;
//!         Action::Continue
//!     }
//! }
//! ```

use crate::http::{Buffer, BufferType};
use crate::{Action, Error, abi};

/// Which side closed a connection.
///
/// ```
/// assert_eq!(filterkit::tcp::PeerType::from_raw(2), filterkit::tcp::PeerType::Remote);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerType {
    /// Not known (0).
    Unknown,
    /// Envoy closed it (1).
    Local,
    /// The peer closed it (2).
    Remote,
}

impl PeerType {
    /// Maps the raw ABI value; anything unknown is [`PeerType::Unknown`].
    ///
    /// ```
    /// assert_eq!(filterkit::tcp::PeerType::from_raw(9), filterkit::tcp::PeerType::Unknown);
    /// ```
    pub fn from_raw(raw: u32) -> PeerType {
        match raw {
            1 => PeerType::Local,
            2 => PeerType::Remote,
            _ => PeerType::Unknown,
        }
    }
}

/// The context of one TCP connection. Every callback has a default that continues.
///
/// ```
/// use filterkit::tcp::{PeerType, TcpContext};
/// struct LogClose;
/// impl TcpContext for LogClose {
///     fn on_downstream_close(&mut self, peer: PeerType) {
///         log::info!("downstream closed by {peer:?}");
///     }
/// }
/// ```
pub trait TcpContext: core::any::Any {
    /// A new connection was accepted.
    ///
    /// ```
    /// struct S;
    /// impl filterkit::tcp::TcpContext for S {
    ///     fn on_new_connection(&mut self) -> filterkit::Action { filterkit::Action::Continue }
    /// }
    /// ```
    fn on_new_connection(&mut self) -> Action {
        Action::Continue
    }

    /// Data from the downstream arrived ([`downstream_data`] reads it).
    ///
    /// ```
    /// struct S;
    /// impl filterkit::tcp::TcpContext for S {
    ///     fn on_downstream_data(&mut self, size: usize, _: bool) -> filterkit::Action {
    ///         let _ = filterkit::tcp::downstream_data().read(0, size);
    ///         filterkit::Action::Continue
    ///     }
    /// }
    /// ```
    fn on_downstream_data(&mut self, data_size: usize, end_of_stream: bool) -> Action {
        let _ = (data_size, end_of_stream);
        Action::Continue
    }

    /// The downstream connection closed.
    ///
    /// ```
    /// struct S;
    /// impl filterkit::tcp::TcpContext for S {
    ///     fn on_downstream_close(&mut self, _: filterkit::tcp::PeerType) {}
    /// }
    /// ```
    fn on_downstream_close(&mut self, peer: PeerType) {
        let _ = peer;
    }

    /// Data from the upstream arrived ([`upstream_data`] reads it).
    ///
    /// ```
    /// struct S;
    /// impl filterkit::tcp::TcpContext for S {
    ///     fn on_upstream_data(&mut self, _: usize, _: bool) -> filterkit::Action {
    ///         filterkit::Action::Continue
    ///     }
    /// }
    /// ```
    fn on_upstream_data(&mut self, data_size: usize, end_of_stream: bool) -> Action {
        let _ = (data_size, end_of_stream);
        Action::Continue
    }

    /// The upstream connection closed.
    ///
    /// ```
    /// struct S;
    /// impl filterkit::tcp::TcpContext for S {
    ///     fn on_upstream_close(&mut self, _: filterkit::tcp::PeerType) {}
    /// }
    /// ```
    fn on_upstream_close(&mut self, peer: PeerType) {
        let _ = peer;
    }

    /// The connection is complete and about to be logged.
    ///
    /// ```
    /// struct S;
    /// impl filterkit::tcp::TcpContext for S {
    ///     fn on_log(&mut self) { log::info!("connection done"); }
    /// }
    /// ```
    #[cfg(feature = "stream-log")]
    fn on_log(&mut self) {}

    /// The host called foreign function `function_id` on this connection with `arguments`;
    /// see [`crate::RootContext::on_foreign_function`].
    ///
    /// ```
    /// struct S;
    /// impl filterkit::tcp::TcpContext for S {
    ///     fn on_foreign_function(&mut self, function_id: u32, _arguments: &[u8]) {
    ///         log::info!("function {function_id}");
    ///     }
    /// }
    /// ```
    #[cfg(feature = "foreign-function")]
    fn on_foreign_function(&mut self, function_id: u32, arguments: &[u8]) {
        let _ = (function_id, arguments);
    }

    /// The host is done with the connection; `false` means "later" (then call
    /// [`crate::host::done`]).
    ///
    /// ```
    /// struct S;
    /// impl filterkit::tcp::TcpContext for S {
    ///     fn on_done(&mut self) -> bool { true }
    /// }
    /// ```
    fn on_done(&mut self) -> bool {
        true
    }
}

/// The downstream data received so far.
///
/// ```
/// let vm = filterkit::testing::Vm::<filterkit::testing::NoFilter>::new();
/// vm.set_buffer(filterkit::http::BufferType::DownstreamData, b"PING");
/// assert_eq!(filterkit::tcp::downstream_data().read(0, 4), Ok(b"PING".to_vec()));
/// ```
pub fn downstream_data() -> Buffer {
    Buffer::new(BufferType::DownstreamData)
}

/// The upstream data received so far.
///
/// ```
/// let _ = filterkit::tcp::upstream_data().read(0, 64);
/// ```
pub fn upstream_data() -> Buffer {
    Buffer::new(BufferType::UpstreamData)
}

/// Lets paused downstream data go on.
///
/// ```
/// let vm = filterkit::testing::Vm::<filterkit::testing::NoFilter>::new();
/// filterkit::tcp::resume_downstream().unwrap();
/// assert_eq!(vm.stream_actions(), ["continue downstream"]);
/// ```
pub fn resume_downstream() -> Result<(), Error> {
    abi::continue_stream(2)
}

/// Lets paused upstream data go on.
///
/// ```
/// let _ = filterkit::tcp::resume_upstream();
/// ```
pub fn resume_upstream() -> Result<(), Error> {
    abi::continue_stream(3)
}

/// Closes the downstream connection.
///
/// ```
/// let vm = filterkit::testing::Vm::<filterkit::testing::NoFilter>::new();
/// filterkit::tcp::close_downstream().unwrap();
/// assert_eq!(vm.stream_actions(), ["close downstream"]);
/// ```
pub fn close_downstream() -> Result<(), Error> {
    abi::close_stream(2)
}

/// Closes the upstream connection.
///
/// ```
/// let _ = filterkit::tcp::close_upstream();
/// ```
pub fn close_upstream() -> Result<(), Error> {
    abi::close_stream(3)
}
