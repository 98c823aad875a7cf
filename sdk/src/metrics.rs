//! Typed metric handles. Envoy shows them in its stats as `wasmcustom.<name>`.
//!
//! Define them once (in `on_vm_start` or `on_configure`, keeping the handle in the root) and
//! use them from any context.
//!
//! ```
//! use filterkit::metrics::{Counter, Gauge, Histogram};
//! let vm = filterkit::testing::Vm::<filterkit::testing::NoFilter>::new();
//! let requests = Counter::define("requests_total").unwrap();
//! requests.increment(1).unwrap();
//! requests.increment(2).unwrap();
//! assert_eq!(requests.value(), Ok(3));
//! let in_flight = Gauge::define("in_flight").unwrap();
//! in_flight.set(5).unwrap();
//! in_flight.add(-2).unwrap();
//! assert_eq!(in_flight.value(), Ok(3));
//! let latency = Histogram::define("latency_ms").unwrap();
//! latency.record(12).unwrap();
//! ```

use crate::{Error, abi};

/// A counter: only goes up.
///
/// ```
/// let counter = filterkit::metrics::Counter::define("denied").unwrap();
/// assert!(counter.increment(0).is_err()); // Envoy: an increment must be positive
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Counter(u32);

/// A gauge: set, or moved up and down.
///
/// ```
/// let gauge = filterkit::metrics::Gauge::define("queue_depth").unwrap();
/// gauge.set(1).unwrap();
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gauge(u32);

/// A histogram: records values; the host does not read it back.
///
/// ```
/// let histogram = filterkit::metrics::Histogram::define("body_bytes").unwrap();
/// histogram.record(512).unwrap();
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Histogram(u32);

impl Counter {
    /// Defines (or finds) the counter `name`.
    ///
    /// ```
    /// let a = filterkit::metrics::Counter::define("c").unwrap();
    /// assert_eq!(filterkit::metrics::Counter::define("c"), Ok(a));
    /// ```
    pub fn define(name: &str) -> Result<Counter, Error> {
        abi::define_metric(0, name.as_bytes()).map(Counter)
    }

    /// Adds `delta` (must be positive).
    ///
    /// ```
    /// let counter = filterkit::metrics::Counter::define("hits").unwrap();
    /// counter.increment(1).unwrap();
    /// ```
    pub fn increment(&self, delta: u64) -> Result<(), Error> {
        abi::increment_metric(self.0, i64::try_from(delta).unwrap_or(i64::MAX))
    }

    /// The current value.
    ///
    /// ```
    /// let counter = filterkit::metrics::Counter::define("fresh").unwrap();
    /// assert_eq!(counter.value(), Ok(0));
    /// ```
    pub fn value(&self) -> Result<u64, Error> {
        abi::get_metric(self.0)
    }
}

impl Gauge {
    /// Defines (or finds) the gauge `name`.
    ///
    /// ```
    /// let _ = filterkit::metrics::Gauge::define("connections");
    /// ```
    pub fn define(name: &str) -> Result<Gauge, Error> {
        abi::define_metric(1, name.as_bytes()).map(Gauge)
    }

    /// Sets the value.
    ///
    /// ```
    /// let gauge = filterkit::metrics::Gauge::define("g").unwrap();
    /// gauge.set(9).unwrap();
    /// assert_eq!(gauge.value(), Ok(9));
    /// ```
    pub fn set(&self, value: u64) -> Result<(), Error> {
        abi::record_metric(self.0, value)
    }

    /// Moves the value by `delta`.
    ///
    /// ```
    /// let gauge = filterkit::metrics::Gauge::define("g").unwrap();
    /// gauge.add(2).unwrap();
    /// assert_eq!(gauge.value(), Ok(2));
    /// ```
    pub fn add(&self, delta: i64) -> Result<(), Error> {
        abi::increment_metric(self.0, delta)
    }

    /// The current value.
    ///
    /// ```
    /// let gauge = filterkit::metrics::Gauge::define("g0").unwrap();
    /// assert_eq!(gauge.value(), Ok(0));
    /// ```
    pub fn value(&self) -> Result<u64, Error> {
        abi::get_metric(self.0)
    }
}

impl Histogram {
    /// Defines (or finds) the histogram `name`.
    ///
    /// ```
    /// let _ = filterkit::metrics::Histogram::define("upstream_ms");
    /// ```
    pub fn define(name: &str) -> Result<Histogram, Error> {
        abi::define_metric(2, name.as_bytes()).map(Histogram)
    }

    /// Records one value.
    ///
    /// ```
    /// let histogram = filterkit::metrics::Histogram::define("h").unwrap();
    /// histogram.record(3).unwrap();
    /// ```
    pub fn record(&self, value: u64) -> Result<(), Error> {
        abi::record_metric(self.0, value)
    }
}
