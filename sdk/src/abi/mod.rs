//! The Proxy-Wasm ABI 0.2.1 boundary: the only module of filterkit with `unsafe`.
//!
//! # The buffer-ownership contract
//!
//! Every host function that returns bytes (`proxy_get_buffer_bytes`, `proxy_get_header_map_value`,
//! `proxy_get_header_map_pairs`, `proxy_get_property`, `proxy_get_shared_data`,
//! `proxy_dequeue_shared_queue`, `proxy_get_status`, `proxy_call_foreign_function`) does it the same
//! way: the guest passes two out-pointers, the host allocates `size` bytes *inside the guest*
//! through the guest's allocator export (`malloc` if the module exports it, else
//! `proxy_on_memory_allocate`; filterkit exports only the latter), copies the bytes there and writes
//! the pointer and the size back. From then on the guest owns the allocation and must free it.
//! filterkit's `proxy_on_memory_allocate` allocates exactly `size` bytes with alignment 1 from the
//! global allocator (what a `Vec<u8>` with capacity `size` owns), so the bytes are taken back as
//! `Vec::from_raw_parts(ptr, size, size)` and freed when that `Vec` drops. A null pointer or a zero
//! size means "no bytes" and nothing is freed. A size that cannot be allocated gets a null pointer,
//! not a trap; the host then fails its call.
//!
//! Bytes going the other way (keys, values, serialized maps) are only borrowed by the host for the
//! duration of the call.
//!
//! # Statuses
//!
//! Every host function returns a raw `u32` status. It is never transmuted into an enum:
//! [`crate::Status::check`] maps it, and a value this crate does not know becomes
//! [`crate::Status::Unknown`], an ordinary error value.
//!
//! # Two backends
//!
//! On `wasm32` the functions below call the host's imports (module `env`). Everywhere else they
//! call an in-process fake host ([`crate::testing`]), so unit tests and doc examples run natively.
#![allow(
    unsafe_code,
    reason = "the ABI boundary: the only module of filterkit with unsafe code"
)]

use alloc::vec::Vec;
use core::cell::RefCell;

use crate::{Error, Status};

#[cfg(not(target_arch = "wasm32"))]
pub(crate) mod fake;
#[cfg(not(target_arch = "wasm32"))]
use fake as backend;

#[cfg(target_arch = "wasm32")]
mod allocator;
#[cfg(target_arch = "wasm32")]
mod wasm;
#[cfg(target_arch = "wasm32")]
use wasm as backend;

/// Converts a raw status into a `Result`, naming the host function in the error.
fn check(function: &'static str, raw: u32) -> Result<(), Error> {
    Status::check(raw).map_err(|status| Error::Host { function, status })
}

/// Converts a raw status into `Ok(Some(value))`, `Ok(None)` for `NOT_FOUND`, or an error.
fn found<T>(function: &'static str, result: Result<T, u32>) -> Result<Option<T>, Error> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(1) => Ok(None),
        Err(raw) => check(function, raw).map(|()| None),
    }
}

fn plain<T>(function: &'static str, result: Result<T, u32>) -> Result<T, Error> {
    result.map_err(|raw| match Status::check(raw) {
        Err(status) => Error::Host { function, status },
        // A backend never reports OK as a failure; treat it as the impossible status it is.
        Ok(()) => Error::Host {
            function,
            status: Status::Unknown(0),
        },
    })
}

/// The allocator export: allocates `size` bytes the host will fill and the guest will own.
///
/// The size comes from the host (a body, a header map), so it is untrusted: when it cannot be
/// allocated this returns null instead of trapping, and the host then fails the call that
/// needed the memory (proxy-wasm-cpp-host answers `INVALID_MEMORY_ACCESS`), which reaches the
/// filter as an error value.
///
/// The allocation is exactly what a `Vec<u8>` with capacity `size` would own (global allocator,
/// alignment 1; for size 0 a dangling pointer and no allocation), which is what the backends'
/// `take_host_bytes` takes back with `Vec::from_raw_parts`. Calling the allocator directly
/// instead of `Vec::try_reserve_exact` saves about 300 bytes of module.
pub(crate) fn memory_allocate(size: usize) -> *mut u8 {
    if size == 0 {
        return core::ptr::NonNull::<u8>::dangling().as_ptr();
    }
    match core::alloc::Layout::from_size_align(size, 1) {
        // SAFETY: the layout's size is not zero (checked above), as `alloc` requires; a null
        // result (out of memory) is returned as it is.
        Ok(layout) => unsafe { alloc::alloc::alloc(layout) },
        // Larger than `isize::MAX`: no allocation can hold it.
        Err(_) => core::ptr::null_mut(),
    }
}

pub(crate) fn log(level: u32, message: &[u8]) -> Result<(), Error> {
    check("proxy_log", backend::log(level, message))
}

pub(crate) fn get_log_level() -> Result<u32, Error> {
    plain("proxy_get_log_level", backend::get_log_level())
}

pub(crate) fn get_current_time_nanoseconds() -> Result<u64, Error> {
    plain(
        "proxy_get_current_time_nanoseconds",
        backend::get_current_time_nanoseconds(),
    )
}

#[cfg(feature = "tick")]
pub(crate) fn set_tick_period_milliseconds(period: u32) -> Result<(), Error> {
    check(
        "proxy_set_tick_period_milliseconds",
        backend::set_tick_period_milliseconds(period),
    )
}

pub(crate) fn get_buffer_bytes(
    buffer_type: u32,
    start: usize,
    max_size: usize,
) -> Result<Option<Vec<u8>>, Error> {
    found(
        "proxy_get_buffer_bytes",
        backend::get_buffer_bytes(buffer_type, start, max_size),
    )
}

/// `size` bytes of a buffer from its start; a buffer the host cannot give reads as empty.
pub(crate) fn read_buffer(buffer_type: u32, size: usize) -> Vec<u8> {
    if size == 0 {
        return Vec::new();
    }
    get_buffer_bytes(buffer_type, 0, size)
        .ok()
        .flatten()
        .unwrap_or_default()
}

pub(crate) fn set_buffer_bytes(
    buffer_type: u32,
    start: usize,
    size: usize,
    data: &[u8],
) -> Result<(), Error> {
    check(
        "proxy_set_buffer_bytes",
        backend::set_buffer_bytes(buffer_type, start, size, data),
    )
}

pub(crate) fn get_buffer_status(buffer_type: u32) -> Result<Option<(usize, u32)>, Error> {
    found(
        "proxy_get_buffer_status",
        backend::get_buffer_status(buffer_type),
    )
}

pub(crate) fn get_header_map_pairs(map_type: u32) -> Result<Vec<u8>, Error> {
    plain(
        "proxy_get_header_map_pairs",
        backend::get_header_map_pairs(map_type),
    )
}

pub(crate) fn set_header_map_pairs(map_type: u32, serialized: &[u8]) -> Result<(), Error> {
    check(
        "proxy_set_header_map_pairs",
        backend::set_header_map_pairs(map_type, serialized),
    )
}

pub(crate) fn get_header_map_value(map_type: u32, key: &[u8]) -> Result<Option<Vec<u8>>, Error> {
    found(
        "proxy_get_header_map_value",
        backend::get_header_map_value(map_type, key),
    )
}

pub(crate) fn replace_header_map_value(
    map_type: u32,
    key: &[u8],
    value: &[u8],
) -> Result<(), Error> {
    check(
        "proxy_replace_header_map_value",
        backend::replace_header_map_value(map_type, key, value),
    )
}

pub(crate) fn remove_header_map_value(map_type: u32, key: &[u8]) -> Result<(), Error> {
    check(
        "proxy_remove_header_map_value",
        backend::remove_header_map_value(map_type, key),
    )
}

pub(crate) fn add_header_map_value(map_type: u32, key: &[u8], value: &[u8]) -> Result<(), Error> {
    check(
        "proxy_add_header_map_value",
        backend::add_header_map_value(map_type, key, value),
    )
}

pub(crate) fn get_header_map_size(map_type: u32) -> Result<usize, Error> {
    plain(
        "proxy_get_header_map_size",
        backend::get_header_map_size(map_type),
    )
}

pub(crate) fn get_property(path: &[u8]) -> Result<Option<Vec<u8>>, Error> {
    found("proxy_get_property", backend::get_property(path))
}

pub(crate) fn set_property(path: &[u8], value: &[u8]) -> Result<(), Error> {
    check("proxy_set_property", backend::set_property(path, value))
}

pub(crate) fn get_shared_data(key: &[u8]) -> Result<Option<(Vec<u8>, u32)>, Error> {
    found("proxy_get_shared_data", backend::get_shared_data(key))
}

/// Sets shared data; `CAS_MISMATCH` is returned as an error for the caller to retry.
pub(crate) fn set_shared_data(key: &[u8], value: &[u8], cas: u32) -> Result<(), Error> {
    check(
        "proxy_set_shared_data",
        backend::set_shared_data(key, value, cas),
    )
}

pub(crate) fn register_shared_queue(name: &[u8]) -> Result<u32, Error> {
    plain(
        "proxy_register_shared_queue",
        backend::register_shared_queue(name),
    )
}

pub(crate) fn resolve_shared_queue(vm_id: &[u8], name: &[u8]) -> Result<Option<u32>, Error> {
    found(
        "proxy_resolve_shared_queue",
        backend::resolve_shared_queue(vm_id, name),
    )
}

/// Dequeues one item; `EMPTY` becomes `Ok(None)`.
pub(crate) fn dequeue_shared_queue(queue_id: u32) -> Result<Option<Vec<u8>>, Error> {
    match backend::dequeue_shared_queue(queue_id) {
        Err(7) => Ok(None),
        other => plain("proxy_dequeue_shared_queue", other).map(Some),
    }
}

pub(crate) fn enqueue_shared_queue(queue_id: u32, value: &[u8]) -> Result<(), Error> {
    check(
        "proxy_enqueue_shared_queue",
        backend::enqueue_shared_queue(queue_id, value),
    )
}

pub(crate) fn continue_stream(stream_type: u32) -> Result<(), Error> {
    check(
        "proxy_continue_stream",
        backend::continue_stream(stream_type),
    )
}

pub(crate) fn close_stream(stream_type: u32) -> Result<(), Error> {
    check("proxy_close_stream", backend::close_stream(stream_type))
}

pub(crate) fn send_local_response(
    status_code: u32,
    details: &[u8],
    body: &[u8],
    serialized_headers: &[u8],
    grpc_status: i32,
) -> Result<(), Error> {
    check(
        "proxy_send_local_response",
        backend::send_local_response(status_code, details, body, serialized_headers, grpc_status),
    )
}

pub(crate) fn http_call(
    upstream: &[u8],
    serialized_headers: &[u8],
    body: &[u8],
    serialized_trailers: &[u8],
    timeout_milliseconds: u32,
) -> Result<u32, Error> {
    plain(
        "proxy_http_call",
        backend::http_call(
            upstream,
            serialized_headers,
            body,
            serialized_trailers,
            timeout_milliseconds,
        ),
    )
}

pub(crate) fn grpc_call(
    upstream: &[u8],
    service: &[u8],
    method: &[u8],
    serialized_initial_metadata: &[u8],
    message: &[u8],
    timeout_milliseconds: u32,
) -> Result<u32, Error> {
    plain(
        "proxy_grpc_call",
        backend::grpc_call(
            upstream,
            service,
            method,
            serialized_initial_metadata,
            message,
            timeout_milliseconds,
        ),
    )
}

pub(crate) fn grpc_stream(
    upstream: &[u8],
    service: &[u8],
    method: &[u8],
    serialized_initial_metadata: &[u8],
) -> Result<u32, Error> {
    plain(
        "proxy_grpc_stream",
        backend::grpc_stream(upstream, service, method, serialized_initial_metadata),
    )
}

pub(crate) fn grpc_send(token: u32, message: &[u8], end_stream: bool) -> Result<(), Error> {
    check(
        "proxy_grpc_send",
        backend::grpc_send(token, message, u32::from(end_stream)),
    )
}

pub(crate) fn grpc_cancel(token: u32) -> Result<(), Error> {
    check("proxy_grpc_cancel", backend::grpc_cancel(token))
}

pub(crate) fn grpc_close(token: u32) -> Result<(), Error> {
    check("proxy_grpc_close", backend::grpc_close(token))
}

pub(crate) fn get_status() -> Result<(u32, Vec<u8>), Error> {
    plain("proxy_get_status", backend::get_status())
}

pub(crate) fn set_effective_context(context_id: u32) -> Result<(), Error> {
    check(
        "proxy_set_effective_context",
        backend::set_effective_context(context_id),
    )
}

pub(crate) fn call_foreign_function(name: &[u8], arguments: &[u8]) -> Result<Vec<u8>, Error> {
    plain(
        "proxy_call_foreign_function",
        backend::call_foreign_function(name, arguments),
    )
}

pub(crate) fn define_metric(metric_type: u32, name: &[u8]) -> Result<u32, Error> {
    plain(
        "proxy_define_metric",
        backend::define_metric(metric_type, name),
    )
}

pub(crate) fn increment_metric(metric_id: u32, offset: i64) -> Result<(), Error> {
    check(
        "proxy_increment_metric",
        backend::increment_metric(metric_id, offset),
    )
}

pub(crate) fn record_metric(metric_id: u32, value: u64) -> Result<(), Error> {
    check(
        "proxy_record_metric",
        backend::record_metric(metric_id, value),
    )
}

pub(crate) fn get_metric(metric_id: u32) -> Result<u64, Error> {
    plain("proxy_get_metric", backend::get_metric(metric_id))
}

pub(crate) fn done() -> Result<(), Error> {
    check("proxy_done", backend::done())
}

/// Process-wide guest state (the SDK's dispatcher), one per VM.
///
/// A Proxy-Wasm VM runs one thread. Natively each test thread gets its own copy, like its own VM.
pub(crate) struct GuestCell<T>(RefCell<T>);

#[cfg(all(target_arch = "wasm32", target_feature = "atomics"))]
compile_error!("filterkit assumes a single-threaded guest; build without the atomics feature");

// SAFETY: on wasm32 without the `atomics` target feature (checked above) there is exactly one
// thread, so the `RefCell` can never be reached from two threads. Natively there is no such
// guarantee, so the cell is not `Sync` there: it lives in a `thread_local!` or inside a
// `testing::Vm`, and `__private::Filter` cannot be shared across threads.
#[cfg(target_arch = "wasm32")]
unsafe impl<T> Sync for GuestCell<T> {}

impl<T> GuestCell<T> {
    pub(crate) const fn new(value: T) -> GuestCell<T> {
        GuestCell(RefCell::new(value))
    }

    /// Runs `f` with the value borrowed mutably; a nested call returns `None` instead of panicking.
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> Option<R> {
        let mut value = self.0.try_borrow_mut().ok()?;
        Some(f(&mut value))
    }
}
