//! Shared data and shared queues: state shared by every VM with the same `vm_id`
//! (in Envoy, across worker threads).
//!
//! ```
//! let vm = filterkit::testing::Vm::<filterkit::testing::NoFilter>::new();
//! let count = filterkit::shared::update(b"hits", 8, |old| {
//!     let n = old.map_or(0, |bytes| bytes[0]);
//!     vec![n + 1]
//! });
//! assert_eq!(count, Ok(vec![1]));
//! ```

use alloc::vec::Vec;

use crate::{Error, Status, abi};

/// A value and its compare-and-swap version.
///
/// ```
/// let vm = filterkit::testing::Vm::<filterkit::testing::NoFilter>::new();
/// filterkit::shared::set(b"k", b"v", None).unwrap();
/// let entry = filterkit::shared::get(b"k").unwrap().unwrap();
/// assert_eq!(entry.value, b"v");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The value.
    pub value: Vec<u8>,
    /// The version to pass to [`set`] for a compare-and-swap.
    pub cas: u32,
}

/// Reads `key`; `Ok(None)` if it was never set.
///
/// ```
/// let vm = filterkit::testing::Vm::<filterkit::testing::NoFilter>::new();
/// assert_eq!(filterkit::shared::get(b"missing"), Ok(None));
/// ```
pub fn get(key: &[u8]) -> Result<Option<Entry>, Error> {
    Ok(abi::get_shared_data(key)?.map(|(value, cas)| Entry { value, cas }))
}

/// Writes `key`. With `Some(cas)` the write happens only if the value is still at that version;
/// otherwise it fails with [`Status::CasMismatch`].
///
/// ```
/// use filterkit::{Error, Status};
/// let vm = filterkit::testing::Vm::<filterkit::testing::NoFilter>::new();
/// filterkit::shared::set(b"k", b"1", None).unwrap();
/// let entry = filterkit::shared::get(b"k").unwrap().unwrap();
/// filterkit::shared::set(b"k", b"2", Some(entry.cas)).unwrap();
/// let stale = filterkit::shared::set(b"k", b"3", Some(entry.cas));
/// assert_eq!(stale, Err(Error::Host { function: "proxy_set_shared_data", status: Status::CasMismatch }));
/// ```
pub fn set(key: &[u8], value: &[u8], cas: Option<u32>) -> Result<(), Error> {
    abi::set_shared_data(key, value, cas.unwrap_or(0))
}

/// Read-modify-write with compare-and-swap: computes the new value from the current one and
/// retries on `CAS_MISMATCH`, at most `max_attempts` times. Returns the value written.
///
/// ```
/// let vm = filterkit::testing::Vm::<filterkit::testing::NoFilter>::new();
/// filterkit::shared::update(b"list", 3, |old| [old.unwrap_or_default(), b"a"].concat()).unwrap();
/// let value = filterkit::shared::update(b"list", 3, |old| [old.unwrap_or_default(), b"b"].concat());
/// assert_eq!(value, Ok(b"ab".to_vec()));
/// ```
pub fn update(
    key: &[u8],
    max_attempts: u32,
    mut compute: impl FnMut(Option<&[u8]>) -> Vec<u8>,
) -> Result<Vec<u8>, Error> {
    for _ in 0..max_attempts {
        let current = get(key)?;
        let value = compute(current.as_ref().map(|entry| entry.value.as_slice()));
        // A key never set has version 0, which the host treats as "no check"; that is the
        // first writer's race, which Envoy has too.
        let cas = current.map(|entry| entry.cas);
        match set(key, &value, cas) {
            Ok(()) => return Ok(value),
            Err(Error::Host {
                status: Status::CasMismatch,
                ..
            }) => continue,
            Err(error) => return Err(error),
        }
    }
    Err(Error::CasRetriesExhausted {
        attempts: max_attempts,
    })
}

/// A shared queue: items enqueued by any VM of the same `vm_id`, dequeued by its owner, which
/// is told through [`crate::RootContext::on_queue_ready`].
///
/// ```
/// use filterkit::shared::Queue;
/// let vm = filterkit::testing::Vm::<filterkit::testing::NoFilter>::new();
/// let queue = Queue::register("events").unwrap();
/// queue.enqueue(b"one").unwrap();
/// assert_eq!(queue.dequeue(), Ok(Some(b"one".to_vec())));
/// assert_eq!(queue.dequeue(), Ok(None));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Queue(u32);

impl Queue {
    /// Registers (or finds) the queue `name` owned by this VM.
    ///
    /// ```
    /// let queue = filterkit::shared::Queue::register("q").unwrap();
    /// assert_eq!(filterkit::shared::Queue::register("q"), Ok(queue));
    /// ```
    pub fn register(name: &str) -> Result<Queue, Error> {
        abi::register_shared_queue(name.as_bytes()).map(Queue)
    }

    /// Finds the queue `name` of the VM `vm_id`; `Ok(None)` if it is not registered.
    ///
    /// ```
    /// assert_eq!(filterkit::shared::Queue::resolve("other_vm", "q"), Ok(None));
    /// ```
    pub fn resolve(vm_id: &str, name: &str) -> Result<Option<Queue>, Error> {
        Ok(abi::resolve_shared_queue(vm_id.as_bytes(), name.as_bytes())?.map(Queue))
    }

    /// The queue's id, as passed to `on_queue_ready`.
    ///
    /// ```
    /// let queue = filterkit::shared::Queue::register("ids").unwrap();
    /// assert!(queue.id() > 0);
    /// ```
    pub fn id(&self) -> u32 {
        self.0
    }

    /// Adds an item.
    ///
    /// ```
    /// let queue = filterkit::shared::Queue::register("in").unwrap();
    /// queue.enqueue(b"item").unwrap();
    /// ```
    pub fn enqueue(&self, item: &[u8]) -> Result<(), Error> {
        abi::enqueue_shared_queue(self.0, item)
    }

    /// Takes the oldest item; `Ok(None)` when the queue is empty.
    ///
    /// ```
    /// let queue = filterkit::shared::Queue::register("out").unwrap();
    /// assert_eq!(queue.dequeue(), Ok(None));
    /// ```
    pub fn dequeue(&self) -> Result<Option<Vec<u8>>, Error> {
        abi::dequeue_shared_queue(self.0)
    }
}
