//! Time and ticks.
//!
//! ```
//! # #[cfg(feature = "tick")] {
//! use std::time::Duration;
//! let vm = filterkit::testing::Vm::<filterkit::testing::NoFilter>::new();
//! filterkit::time::set_tick_period(Duration::from_secs(5)).unwrap();
//! assert_eq!(vm.tick_period(), Duration::from_secs(5));
//! # }
//! ```

use core::time::Duration;

use crate::{Error, abi};

/// The host's wall clock, as the duration since the Unix epoch.
///
/// ```
/// let vm = filterkit::testing::Vm::<filterkit::testing::NoFilter>::new();
/// vm.set_now(std::time::Duration::from_secs(1_700_000_000));
/// assert_eq!(filterkit::time::now(), Ok(std::time::Duration::from_secs(1_700_000_000)));
/// ```
pub fn now() -> Result<Duration, Error> {
    abi::get_current_time_nanoseconds().map(Duration::from_nanos)
}

/// Asks the host to call [`crate::RootContext::on_tick`] every `period` (zero stops the ticks).
/// In Envoy each worker's VM ticks on its own. Only with the `tick` feature, which exports
/// `proxy_on_tick`: without it no tick would ever reach the filter.
///
/// ```
/// assert!(filterkit::time::set_tick_period(std::time::Duration::from_secs(1 << 40)).is_err());
/// ```
#[cfg(feature = "tick")]
pub fn set_tick_period(period: Duration) -> Result<(), Error> {
    let millis = u32::try_from(period.as_millis()).map_err(|_| Error::DurationTooLong)?;
    abi::set_tick_period_milliseconds(millis)
}
