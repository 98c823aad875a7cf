//! Host properties (`proxy_get_property`), decoded as Envoy encodes them.
//!
//! A path is a list of segments (`["request", "path"]`), joined by NUL bytes on the wire.
//! Envoy's encodings: strings and bytes raw; int64, uint64, double, duration and timestamp as
//! 8 bytes little-endian (durations and timestamps in nanoseconds); bool as 1 byte. A
//! property the host does not have is `Ok(None)`; one with the wrong size for its type is
//! [`Error::BadPropertyValue`].
//!
//! ```
//! use filterkit::properties;
//! let vm = filterkit::testing::Vm::<filterkit::testing::NoFilter>::new();
//! vm.set_property(&["request", "path"], b"/status");
//! vm.set_property(&["response", "code"], &200i64.to_le_bytes());
//! assert_eq!(properties::request_path(), Ok(Some("/status".to_string())));
//! assert_eq!(properties::response_code(), Ok(Some(200)));
//! assert_eq!(properties::request_method(), Ok(None));
//! ```

use alloc::string::String;
use alloc::vec::Vec;
use core::time::Duration;

use crate::{Error, abi};

fn encode_path(path: &[&str]) -> Vec<u8> {
    let mut encoded = Vec::new();
    for (idx, segment) in path.iter().enumerate() {
        if idx > 0 {
            encoded.push(0);
        }
        encoded.extend_from_slice(segment.as_bytes());
    }
    encoded
}

/// The raw bytes of the property at `path`.
///
/// ```
/// let vm = filterkit::testing::Vm::<filterkit::testing::NoFilter>::new();
/// vm.set_property(&["node", "id"], b"sidecar~1");
/// assert_eq!(filterkit::properties::get(&["node", "id"]), Ok(Some(b"sidecar~1".to_vec())));
/// ```
pub fn get(path: &[&str]) -> Result<Option<Vec<u8>>, Error> {
    abi::get_property(&encode_path(path))
}

/// Sets the property at `path` (e.g. filter state Envoy exposes to other filters).
///
/// ```
/// filterkit::properties::set(&["wasm_state"], b"seen").unwrap();
/// assert_eq!(filterkit::properties::get(&["wasm_state"]), Ok(Some(b"seen".to_vec())));
/// ```
pub fn set(path: &[&str], value: &[u8]) -> Result<(), Error> {
    abi::set_property(&encode_path(path), value)
}

/// A string property.
///
/// ```
/// let vm = filterkit::testing::Vm::<filterkit::testing::NoFilter>::new();
/// vm.set_property(&["x"], b"\xff");
/// assert_eq!(filterkit::properties::get_string(&["x"]), Err(filterkit::Error::NotUtf8));
/// ```
pub fn get_string(path: &[&str]) -> Result<Option<String>, Error> {
    match get(path)? {
        Some(bytes) => String::from_utf8(bytes)
            .map(Some)
            .map_err(|_| Error::NotUtf8),
        None => Ok(None),
    }
}

fn get_fixed<const N: usize>(path: &[&str]) -> Result<Option<[u8; N]>, Error> {
    let Some(bytes) = get(path)? else {
        return Ok(None);
    };
    <[u8; N]>::try_from(bytes.as_slice())
        .map(Some)
        .map_err(|_| Error::BadPropertyValue {
            expected_len: N,
            actual_len: bytes.len(),
        })
}

/// An int64 property.
///
/// ```
/// let vm = filterkit::testing::Vm::<filterkit::testing::NoFilter>::new();
/// vm.set_property(&["n"], &(-5i64).to_le_bytes());
/// assert_eq!(filterkit::properties::get_i64(&["n"]), Ok(Some(-5)));
/// vm.set_property(&["n"], b"123");
/// assert!(filterkit::properties::get_i64(&["n"]).is_err());
/// ```
pub fn get_i64(path: &[&str]) -> Result<Option<i64>, Error> {
    get_fixed(path).map(|bytes| bytes.map(i64::from_le_bytes))
}

/// A uint64 property.
///
/// ```
/// let vm = filterkit::testing::Vm::<filterkit::testing::NoFilter>::new();
/// vm.set_property(&["n"], &7u64.to_le_bytes());
/// assert_eq!(filterkit::properties::get_u64(&["n"]), Ok(Some(7)));
/// ```
pub fn get_u64(path: &[&str]) -> Result<Option<u64>, Error> {
    get_fixed(path).map(|bytes| bytes.map(u64::from_le_bytes))
}

/// A double property.
///
/// ```
/// let vm = filterkit::testing::Vm::<filterkit::testing::NoFilter>::new();
/// vm.set_property(&["ratio"], &0.5f64.to_le_bytes());
/// assert_eq!(filterkit::properties::get_f64(&["ratio"]), Ok(Some(0.5)));
/// ```
pub fn get_f64(path: &[&str]) -> Result<Option<f64>, Error> {
    get_fixed(path).map(|bytes| bytes.map(f64::from_le_bytes))
}

/// A bool property (one byte).
///
/// ```
/// let vm = filterkit::testing::Vm::<filterkit::testing::NoFilter>::new();
/// vm.set_property(&["connection", "mtls"], &[1]);
/// assert_eq!(filterkit::properties::connection_mtls(), Ok(Some(true)));
/// ```
pub fn get_bool(path: &[&str]) -> Result<Option<bool>, Error> {
    get_fixed::<1>(path).map(|bytes| bytes.map(|[byte]| byte != 0))
}

/// A duration property (nanoseconds); a negative duration is [`Error::BadPropertyValue`].
///
/// ```
/// let vm = filterkit::testing::Vm::<filterkit::testing::NoFilter>::new();
/// vm.set_property(&["request", "duration"], &1_500_000i64.to_le_bytes());
/// assert_eq!(
///     filterkit::properties::request_duration(),
///     Ok(Some(std::time::Duration::from_micros(1500)))
/// );
/// ```
pub fn get_duration(path: &[&str]) -> Result<Option<Duration>, Error> {
    match get_i64(path)? {
        Some(nanos) => u64::try_from(nanos)
            .map(|nanos| Some(Duration::from_nanos(nanos)))
            .map_err(|_| Error::BadPropertyValue {
                expected_len: 8,
                actual_len: 8,
            }),
        None => Ok(None),
    }
}

/// A timestamp property, as the duration since the Unix epoch.
///
/// ```
/// let vm = filterkit::testing::Vm::<filterkit::testing::NoFilter>::new();
/// vm.set_property(&["request", "time"], &1_000_000_000i64.to_le_bytes());
/// assert_eq!(
///     filterkit::properties::request_time(),
///     Ok(Some(std::time::Duration::from_secs(1)))
/// );
/// ```
pub fn get_timestamp(path: &[&str]) -> Result<Option<Duration>, Error> {
    get_duration(path)
}

/// `plugin_root_id`: the root_id this plugin was configured with.
///
/// ```
/// let vm = filterkit::testing::Vm::<filterkit::testing::NoFilter>::new();
/// vm.set_property(&["plugin_root_id"], b"my_root_id");
/// assert_eq!(filterkit::properties::plugin_root_id(), Ok(Some("my_root_id".to_string())));
/// ```
pub fn plugin_root_id() -> Result<Option<String>, Error> {
    get_string(&["plugin_root_id"])
}

/// `plugin_name`: the plugin's name in the Envoy configuration.
///
/// ```
/// let _ = filterkit::properties::plugin_name();
/// ```
pub fn plugin_name() -> Result<Option<String>, Error> {
    get_string(&["plugin_name"])
}

/// `request.path`, with the query string.
///
/// ```
/// let _ = filterkit::properties::request_path();
/// ```
pub fn request_path() -> Result<Option<String>, Error> {
    get_string(&["request", "path"])
}

/// `request.method`.
///
/// ```
/// let _ = filterkit::properties::request_method();
/// ```
pub fn request_method() -> Result<Option<String>, Error> {
    get_string(&["request", "method"])
}

/// `request.host`.
///
/// ```
/// let _ = filterkit::properties::request_host();
/// ```
pub fn request_host() -> Result<Option<String>, Error> {
    get_string(&["request", "host"])
}

/// `request.id` (`x-request-id`).
///
/// ```
/// let _ = filterkit::properties::request_id();
/// ```
pub fn request_id() -> Result<Option<String>, Error> {
    get_string(&["request", "id"])
}

/// `request.time`: when the first byte of the request arrived.
///
/// ```
/// let _ = filterkit::properties::request_time();
/// ```
pub fn request_time() -> Result<Option<Duration>, Error> {
    get_timestamp(&["request", "time"])
}

/// `request.duration`: time from the first to the last byte of the request.
///
/// ```
/// let _ = filterkit::properties::request_duration();
/// ```
pub fn request_duration() -> Result<Option<Duration>, Error> {
    get_duration(&["request", "duration"])
}

/// `response.code`.
///
/// ```
/// let _ = filterkit::properties::response_code();
/// ```
pub fn response_code() -> Result<Option<i64>, Error> {
    get_i64(&["response", "code"])
}

/// `source.address` (`ip:port` of the downstream peer).
///
/// ```
/// let _ = filterkit::properties::source_address();
/// ```
pub fn source_address() -> Result<Option<String>, Error> {
    get_string(&["source", "address"])
}

/// `destination.address` (`ip:port` the downstream connected to).
///
/// ```
/// let _ = filterkit::properties::destination_address();
/// ```
pub fn destination_address() -> Result<Option<String>, Error> {
    get_string(&["destination", "address"])
}

/// `connection.mtls`: whether the downstream connection uses mutual TLS.
///
/// ```
/// let _ = filterkit::properties::connection_mtls();
/// ```
pub fn connection_mtls() -> Result<Option<bool>, Error> {
    get_bool(&["connection", "mtls"])
}

/// `cluster_name`: the upstream cluster of the route.
///
/// ```
/// let _ = filterkit::properties::cluster_name();
/// ```
pub fn cluster_name() -> Result<Option<String>, Error> {
    get_string(&["cluster_name"])
}
