//! Host services that fit nowhere else: the last call's status, foreign functions, the
//! effective context, the log level, and deferred completion.
//!
//! ```
//! let vm = filterkit::testing::Vm::<filterkit::testing::NoFilter>::new();
//! assert_eq!(filterkit::host::log_level(), Ok(2));
//! ```

use alloc::vec::Vec;

use crate::{Error, abi};

/// The status code and message of the last callout (`proxy_get_status`); after a failed http
/// call Envoy gives 11 (`BROKEN_CONNECTION`) and "reset".
///
/// ```
/// let vm = filterkit::testing::Vm::<filterkit::testing::NoFilter>::new();
/// assert_eq!(filterkit::host::status(), Ok((0, Vec::new())));
/// ```
pub fn status() -> Result<(u32, Vec<u8>), Error> {
    abi::get_status()
}

/// Calls a host-defined function by name (Envoy: `compress`, `set_envoy_filter_state`, …);
/// an unknown name is `NOT_FOUND`.
///
/// ```
/// let vm = filterkit::testing::Vm::<filterkit::testing::NoFilter>::new();
/// assert!(filterkit::host::call_foreign_function("no_such_function", b"").is_err());
/// ```
pub fn call_foreign_function(name: &str, arguments: &[u8]) -> Result<Vec<u8>, Error> {
    abi::call_foreign_function(name.as_bytes(), arguments)
}

/// Makes later host calls act on context `context_id` (e.g. resuming another stream from a
/// tick), until the callback returns. A callout made afterwards belongs to `context_id`: its
/// continuation runs with that context.
///
/// ```
/// filterkit::host::set_effective_context(2).unwrap();
/// ```
pub fn set_effective_context(context_id: u32) -> Result<(), Error> {
    abi::set_effective_context(context_id)?;
    crate::registry::enter(context_id);
    Ok(())
}

/// The host's log level (0 trace … 5 critical).
///
/// ```
/// let vm = filterkit::testing::Vm::<filterkit::testing::NoFilter>::new();
/// vm.set_log_level(3);
/// assert_eq!(filterkit::host::log_level(), Ok(3));
/// ```
pub fn log_level() -> Result<u32, Error> {
    abi::get_log_level()
}

/// Tells the host that a context whose `on_done` returned `false` is now done.
///
/// ```
/// filterkit::host::done().unwrap();
/// ```
pub fn done() -> Result<(), Error> {
    abi::done()
}
