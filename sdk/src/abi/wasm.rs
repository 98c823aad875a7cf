//! The wasm32 backend: the host's imports, called through raw pointers.
//!
//! Every function here keeps the signature shape of the spec and returns the raw status as
//! `Err(raw)`; `super` maps it. See the module docs of `super` for who owns returned bytes.

use alloc::vec::Vec;
use core::ptr::null_mut;

#[link(wasm_import_module = "env")]
unsafe extern "C" {
    fn proxy_log(level: u32, message_data: *const u8, message_size: usize) -> u32;
    fn proxy_get_log_level(return_level: *mut u32) -> u32;
    fn proxy_get_current_time_nanoseconds(return_time: *mut u64) -> u32;
    #[cfg(feature = "tick")]
    fn proxy_set_tick_period_milliseconds(period: u32) -> u32;
    fn proxy_get_buffer_bytes(
        buffer_type: u32,
        start: usize,
        max_size: usize,
        return_buffer_data: *mut *mut u8,
        return_buffer_size: *mut usize,
    ) -> u32;
    fn proxy_set_buffer_bytes(
        buffer_type: u32,
        start: usize,
        size: usize,
        buffer_data: *const u8,
        buffer_size: usize,
    ) -> u32;
    fn proxy_get_buffer_status(
        buffer_type: u32,
        return_length: *mut usize,
        return_flags: *mut u32,
    ) -> u32;
    fn proxy_get_header_map_pairs(
        map_type: u32,
        return_map_data: *mut *mut u8,
        return_map_size: *mut usize,
    ) -> u32;
    fn proxy_set_header_map_pairs(map_type: u32, map_data: *const u8, map_size: usize) -> u32;
    fn proxy_get_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> u32;
    fn proxy_replace_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_remove_header_map_value(map_type: u32, key_data: *const u8, key_size: usize) -> u32;
    fn proxy_add_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_get_header_map_size(map_type: u32, return_size: *mut usize) -> u32;
    fn proxy_get_property(
        path_data: *const u8,
        path_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> u32;
    fn proxy_set_property(
        path_data: *const u8,
        path_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_get_shared_data(
        key_data: *const u8,
        key_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
        return_cas: *mut u32,
    ) -> u32;
    fn proxy_set_shared_data(
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
        cas: u32,
    ) -> u32;
    fn proxy_register_shared_queue(
        name_data: *const u8,
        name_size: usize,
        return_id: *mut u32,
    ) -> u32;
    fn proxy_resolve_shared_queue(
        vm_id_data: *const u8,
        vm_id_size: usize,
        name_data: *const u8,
        name_size: usize,
        return_id: *mut u32,
    ) -> u32;
    fn proxy_dequeue_shared_queue(
        queue_id: u32,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> u32;
    fn proxy_enqueue_shared_queue(queue_id: u32, value_data: *const u8, value_size: usize) -> u32;
    fn proxy_continue_stream(stream_type: u32) -> u32;
    fn proxy_close_stream(stream_type: u32) -> u32;
    fn proxy_send_local_response(
        status_code: u32,
        status_code_details_data: *const u8,
        status_code_details_size: usize,
        body_data: *const u8,
        body_size: usize,
        headers_data: *const u8,
        headers_size: usize,
        grpc_status: i32,
    ) -> u32;
    fn proxy_http_call(
        upstream_data: *const u8,
        upstream_size: usize,
        headers_data: *const u8,
        headers_size: usize,
        body_data: *const u8,
        body_size: usize,
        trailers_data: *const u8,
        trailers_size: usize,
        timeout_milliseconds: u32,
        return_token: *mut u32,
    ) -> u32;
    fn proxy_grpc_call(
        upstream_data: *const u8,
        upstream_size: usize,
        service_name_data: *const u8,
        service_name_size: usize,
        method_name_data: *const u8,
        method_name_size: usize,
        initial_metadata_data: *const u8,
        initial_metadata_size: usize,
        message_data: *const u8,
        message_size: usize,
        timeout_milliseconds: u32,
        return_token: *mut u32,
    ) -> u32;
    fn proxy_grpc_stream(
        upstream_data: *const u8,
        upstream_size: usize,
        service_name_data: *const u8,
        service_name_size: usize,
        method_name_data: *const u8,
        method_name_size: usize,
        initial_metadata_data: *const u8,
        initial_metadata_size: usize,
        return_token: *mut u32,
    ) -> u32;
    fn proxy_grpc_send(
        token: u32,
        message_data: *const u8,
        message_size: usize,
        end_stream: u32,
    ) -> u32;
    fn proxy_grpc_cancel(token: u32) -> u32;
    fn proxy_grpc_close(token: u32) -> u32;
    fn proxy_get_status(
        return_code: *mut u32,
        return_message_data: *mut *mut u8,
        return_message_size: *mut usize,
    ) -> u32;
    fn proxy_set_effective_context(context_id: u32) -> u32;
    fn proxy_call_foreign_function(
        function_name_data: *const u8,
        function_name_size: usize,
        arguments_data: *const u8,
        arguments_size: usize,
        return_results_data: *mut *mut u8,
        return_results_size: *mut usize,
    ) -> u32;
    fn proxy_define_metric(
        metric_type: u32,
        name_data: *const u8,
        name_size: usize,
        return_id: *mut u32,
    ) -> u32;
    fn proxy_increment_metric(metric_id: u32, offset: i64) -> u32;
    fn proxy_record_metric(metric_id: u32, value: u64) -> u32;
    fn proxy_get_metric(metric_id: u32, return_value: *mut u64) -> u32;
    fn proxy_done() -> u32;
}

/// The allocator: power-of-two size classes on pages from `memory.grow` (see
/// `allocator.rs` for why this one, and the README's "Size" section).
#[global_allocator]
static ALLOCATOR: super::allocator::SizeClasses = super::allocator::SizeClasses::new();

/// A panic is a bug in filterkit or the filter: trap without formatting anything, so no
/// formatting code and no source paths end up in the module.
#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    core::arch::wasm32::unreachable()
}

/// `memcmp`, which `core`'s slice comparisons call. No libc is linked, so without this the
/// module would import it from `env`, which no Proxy-Wasm host provides.
///
/// # Safety
///
/// `left` and `right` must each be valid for reads of `len` bytes.
#[unsafe(no_mangle)]
unsafe extern "C" fn memcmp(left: *const u8, right: *const u8, len: usize) -> i32 {
    let mut idx = 0;
    while idx < len {
        // SAFETY: `idx < len`, and both pointers are valid for `len` bytes (this function's
        // contract, which is C's `memcmp` contract).
        let (a, b) = unsafe { (*left.add(idx), *right.add(idx)) };
        if a != b {
            return i32::from(a) - i32::from(b);
        }
        idx += 1;
    }
    0
}

fn result<T>(raw: u32, value: T) -> Result<T, u32> {
    if raw == 0 { Ok(value) } else { Err(raw) }
}

/// Takes ownership of bytes the host allocated in guest memory.
///
/// # Safety
///
/// `data` must be null, or a pointer returned by `proxy_on_memory_allocate(size)` (so exactly
/// `size` bytes with alignment 1, allocated by this module's global allocator) that the host
/// filled and that nothing else owns.
unsafe fn take_host_bytes(data: *mut u8, size: usize) -> Vec<u8> {
    if data.is_null() || size == 0 {
        // A zero-size allocation is a dangling, never-allocated pointer: nothing to free.
        return Vec::new();
    }
    // SAFETY: by this function's contract `data` is a live allocation of exactly `size` bytes,
    // alignment 1, from the global allocator, owned by nobody else: exactly what
    // `Vec::<u8>::from_raw_parts(data, size, size)` requires.
    unsafe { Vec::from_raw_parts(data, size, size) }
}

/// Calls a host function that hands bytes back through a `(data, size)` pair of out-pointers,
/// and takes ownership of them, whatever the status.
///
/// # Safety
///
/// `call` must pass the two pointers it is given to a host import that follows the module's
/// buffer contract: when it returns, `*data` is null or an allocation of `*size` bytes made
/// through `proxy_on_memory_allocate`, owned by nobody else.
unsafe fn host_bytes(call: impl FnOnce(*mut *mut u8, *mut usize) -> u32) -> Result<Vec<u8>, u32> {
    let mut data = null_mut();
    let mut size = 0;
    let raw = call(&mut data, &mut size);
    // SAFETY: by this function's contract the host left `data` null or allocated it for us.
    let bytes = unsafe { take_host_bytes(data, size) };
    result(raw, bytes)
}

pub(super) fn log(level: u32, message: &[u8]) -> u32 {
    // SAFETY: the pointer and length come from a live slice the host only reads during the call.
    unsafe { proxy_log(level, message.as_ptr(), message.len()) }
}

pub(super) fn get_log_level() -> Result<u32, u32> {
    let mut level = 0;
    // SAFETY: `level` is a live, writable u32 for the duration of the call.
    let raw = unsafe { proxy_get_log_level(&mut level) };
    result(raw, level)
}

pub(super) fn get_current_time_nanoseconds() -> Result<u64, u32> {
    let mut time = 0;
    // SAFETY: `time` is a live, writable u64 for the duration of the call.
    let raw = unsafe { proxy_get_current_time_nanoseconds(&mut time) };
    result(raw, time)
}

#[cfg(feature = "tick")]
pub(super) fn set_tick_period_milliseconds(period: u32) -> u32 {
    // SAFETY: no pointers are passed.
    unsafe { proxy_set_tick_period_milliseconds(period) }
}

pub(super) fn get_buffer_bytes(
    buffer_type: u32,
    start: usize,
    max_size: usize,
) -> Result<Vec<u8>, u32> {
    // SAFETY: the host import follows the buffer contract.
    unsafe {
        host_bytes(|data, size| proxy_get_buffer_bytes(buffer_type, start, max_size, data, size))
    }
}

pub(super) fn set_buffer_bytes(buffer_type: u32, start: usize, size: usize, data: &[u8]) -> u32 {
    // SAFETY: the pointer and length come from a live slice the host only reads during the call.
    unsafe { proxy_set_buffer_bytes(buffer_type, start, size, data.as_ptr(), data.len()) }
}

pub(super) fn get_buffer_status(buffer_type: u32) -> Result<(usize, u32), u32> {
    let mut length = 0;
    let mut flags = 0;
    // SAFETY: both out-pointers point to live locals.
    let raw = unsafe { proxy_get_buffer_status(buffer_type, &mut length, &mut flags) };
    result(raw, (length, flags))
}

pub(super) fn get_header_map_pairs(map_type: u32) -> Result<Vec<u8>, u32> {
    // SAFETY: the host import follows the buffer contract.
    unsafe { host_bytes(|data, size| proxy_get_header_map_pairs(map_type, data, size)) }
}

pub(super) fn set_header_map_pairs(map_type: u32, serialized: &[u8]) -> u32 {
    // SAFETY: the pointer and length come from a live slice the host only reads during the call.
    unsafe { proxy_set_header_map_pairs(map_type, serialized.as_ptr(), serialized.len()) }
}

pub(super) fn get_header_map_value(map_type: u32, key: &[u8]) -> Result<Vec<u8>, u32> {
    // SAFETY: `key` is a live slice the host only reads during the call; the host import
    // follows the buffer contract.
    unsafe {
        host_bytes(|data, size| {
            proxy_get_header_map_value(map_type, key.as_ptr(), key.len(), data, size)
        })
    }
}

pub(super) fn replace_header_map_value(map_type: u32, key: &[u8], value: &[u8]) -> u32 {
    // SAFETY: both slices are live and only read by the host during the call.
    unsafe {
        proxy_replace_header_map_value(
            map_type,
            key.as_ptr(),
            key.len(),
            value.as_ptr(),
            value.len(),
        )
    }
}

pub(super) fn remove_header_map_value(map_type: u32, key: &[u8]) -> u32 {
    // SAFETY: `key` is a live slice only read by the host during the call.
    unsafe { proxy_remove_header_map_value(map_type, key.as_ptr(), key.len()) }
}

pub(super) fn add_header_map_value(map_type: u32, key: &[u8], value: &[u8]) -> u32 {
    // SAFETY: both slices are live and only read by the host during the call.
    unsafe {
        proxy_add_header_map_value(
            map_type,
            key.as_ptr(),
            key.len(),
            value.as_ptr(),
            value.len(),
        )
    }
}

pub(super) fn get_header_map_size(map_type: u32) -> Result<usize, u32> {
    let mut size = 0;
    // SAFETY: the out-pointer points to a live local.
    let raw = unsafe { proxy_get_header_map_size(map_type, &mut size) };
    result(raw, size)
}

pub(super) fn get_property(path: &[u8]) -> Result<Vec<u8>, u32> {
    // SAFETY: `path` is a live slice the host only reads during the call; the host import
    // follows the buffer contract.
    unsafe { host_bytes(|data, size| proxy_get_property(path.as_ptr(), path.len(), data, size)) }
}

pub(super) fn set_property(path: &[u8], value: &[u8]) -> u32 {
    // SAFETY: both slices are live and only read by the host during the call.
    unsafe { proxy_set_property(path.as_ptr(), path.len(), value.as_ptr(), value.len()) }
}

pub(super) fn get_shared_data(key: &[u8]) -> Result<(Vec<u8>, u32), u32> {
    let mut cas = 0;
    // SAFETY: `key` is a live slice the host only reads during the call, `cas` a live local;
    // the host import follows the buffer contract.
    let bytes = unsafe {
        host_bytes(|data, size| {
            proxy_get_shared_data(key.as_ptr(), key.len(), data, size, &mut cas)
        })
    }?;
    Ok((bytes, cas))
}

pub(super) fn set_shared_data(key: &[u8], value: &[u8], cas: u32) -> u32 {
    // SAFETY: both slices are live and only read by the host during the call.
    unsafe { proxy_set_shared_data(key.as_ptr(), key.len(), value.as_ptr(), value.len(), cas) }
}

pub(super) fn register_shared_queue(name: &[u8]) -> Result<u32, u32> {
    let mut id = 0;
    // SAFETY: `name` is a live slice; the out-pointer points to a live local.
    let raw = unsafe { proxy_register_shared_queue(name.as_ptr(), name.len(), &mut id) };
    result(raw, id)
}

pub(super) fn resolve_shared_queue(vm_id: &[u8], name: &[u8]) -> Result<u32, u32> {
    let mut id = 0;
    // SAFETY: both slices are live; the out-pointer points to a live local.
    let raw = unsafe {
        proxy_resolve_shared_queue(
            vm_id.as_ptr(),
            vm_id.len(),
            name.as_ptr(),
            name.len(),
            &mut id,
        )
    };
    result(raw, id)
}

pub(super) fn dequeue_shared_queue(queue_id: u32) -> Result<Vec<u8>, u32> {
    // SAFETY: the host import follows the buffer contract.
    unsafe { host_bytes(|data, size| proxy_dequeue_shared_queue(queue_id, data, size)) }
}

pub(super) fn enqueue_shared_queue(queue_id: u32, value: &[u8]) -> u32 {
    // SAFETY: `value` is a live slice only read by the host during the call.
    unsafe { proxy_enqueue_shared_queue(queue_id, value.as_ptr(), value.len()) }
}

pub(super) fn continue_stream(stream_type: u32) -> u32 {
    // SAFETY: no pointers are passed.
    unsafe { proxy_continue_stream(stream_type) }
}

pub(super) fn close_stream(stream_type: u32) -> u32 {
    // SAFETY: no pointers are passed.
    unsafe { proxy_close_stream(stream_type) }
}

pub(super) fn send_local_response(
    status_code: u32,
    details: &[u8],
    body: &[u8],
    serialized_headers: &[u8],
    grpc_status: i32,
) -> u32 {
    // SAFETY: all three slices are live and only read by the host during the call.
    unsafe {
        proxy_send_local_response(
            status_code,
            details.as_ptr(),
            details.len(),
            body.as_ptr(),
            body.len(),
            serialized_headers.as_ptr(),
            serialized_headers.len(),
            grpc_status,
        )
    }
}

pub(super) fn http_call(
    upstream: &[u8],
    serialized_headers: &[u8],
    body: &[u8],
    serialized_trailers: &[u8],
    timeout_milliseconds: u32,
) -> Result<u32, u32> {
    let mut token = 0;
    // SAFETY: all slices are live and only read during the call; the out-pointer is a live local.
    let raw = unsafe {
        proxy_http_call(
            upstream.as_ptr(),
            upstream.len(),
            serialized_headers.as_ptr(),
            serialized_headers.len(),
            body.as_ptr(),
            body.len(),
            serialized_trailers.as_ptr(),
            serialized_trailers.len(),
            timeout_milliseconds,
            &mut token,
        )
    };
    result(raw, token)
}

pub(super) fn grpc_call(
    upstream: &[u8],
    service: &[u8],
    method: &[u8],
    serialized_initial_metadata: &[u8],
    message: &[u8],
    timeout_milliseconds: u32,
) -> Result<u32, u32> {
    let mut token = 0;
    // SAFETY: all slices are live and only read during the call; the out-pointer is a live local.
    let raw = unsafe {
        proxy_grpc_call(
            upstream.as_ptr(),
            upstream.len(),
            service.as_ptr(),
            service.len(),
            method.as_ptr(),
            method.len(),
            serialized_initial_metadata.as_ptr(),
            serialized_initial_metadata.len(),
            message.as_ptr(),
            message.len(),
            timeout_milliseconds,
            &mut token,
        )
    };
    result(raw, token)
}

pub(super) fn grpc_stream(
    upstream: &[u8],
    service: &[u8],
    method: &[u8],
    serialized_initial_metadata: &[u8],
) -> Result<u32, u32> {
    let mut token = 0;
    // SAFETY: all slices are live and only read during the call; the out-pointer is a live local.
    let raw = unsafe {
        proxy_grpc_stream(
            upstream.as_ptr(),
            upstream.len(),
            service.as_ptr(),
            service.len(),
            method.as_ptr(),
            method.len(),
            serialized_initial_metadata.as_ptr(),
            serialized_initial_metadata.len(),
            &mut token,
        )
    };
    result(raw, token)
}

pub(super) fn grpc_send(token: u32, message: &[u8], end_stream: u32) -> u32 {
    // SAFETY: `message` is a live slice only read by the host during the call.
    unsafe { proxy_grpc_send(token, message.as_ptr(), message.len(), end_stream) }
}

pub(super) fn grpc_cancel(token: u32) -> u32 {
    // SAFETY: no pointers are passed.
    unsafe { proxy_grpc_cancel(token) }
}

pub(super) fn grpc_close(token: u32) -> u32 {
    // SAFETY: no pointers are passed.
    unsafe { proxy_grpc_close(token) }
}

pub(super) fn get_status() -> Result<(u32, Vec<u8>), u32> {
    let mut code = 0;
    // SAFETY: `code` is a live local; the host import follows the buffer contract.
    let message = unsafe { host_bytes(|data, size| proxy_get_status(&mut code, data, size)) }?;
    Ok((code, message))
}

pub(super) fn set_effective_context(context_id: u32) -> u32 {
    // SAFETY: no pointers are passed.
    unsafe { proxy_set_effective_context(context_id) }
}

pub(super) fn call_foreign_function(name: &[u8], arguments: &[u8]) -> Result<Vec<u8>, u32> {
    // SAFETY: both slices are live and only read by the host during the call; the host import
    // follows the buffer contract.
    unsafe {
        host_bytes(|data, size| {
            proxy_call_foreign_function(
                name.as_ptr(),
                name.len(),
                arguments.as_ptr(),
                arguments.len(),
                data,
                size,
            )
        })
    }
}

pub(super) fn define_metric(metric_type: u32, name: &[u8]) -> Result<u32, u32> {
    let mut id = 0;
    // SAFETY: `name` is a live slice; the out-pointer points to a live local.
    let raw = unsafe { proxy_define_metric(metric_type, name.as_ptr(), name.len(), &mut id) };
    result(raw, id)
}

pub(super) fn increment_metric(metric_id: u32, offset: i64) -> u32 {
    // SAFETY: no pointers are passed.
    unsafe { proxy_increment_metric(metric_id, offset) }
}

pub(super) fn record_metric(metric_id: u32, value: u64) -> u32 {
    // SAFETY: no pointers are passed.
    unsafe { proxy_record_metric(metric_id, value) }
}

pub(super) fn get_metric(metric_id: u32) -> Result<u64, u32> {
    let mut value = 0;
    // SAFETY: the out-pointer points to a live local.
    let raw = unsafe { proxy_get_metric(metric_id, &mut value) };
    result(raw, value)
}

pub(super) fn done() -> u32 {
    // SAFETY: no pointers are passed.
    unsafe { proxy_done() }
}
