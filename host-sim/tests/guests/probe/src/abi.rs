//! The Proxy-Wasm ABI 0.2.1 imports, declared from the spec, and thin wrappers that return
//! `(status, bytes)` instead of writing through out-pointers.
//!
//! Ownership: a host function that returns bytes allocates them through this module's
//! `proxy_on_memory_allocate` (one byte alignment, at least one byte); the guest then owns
//! them and frees them in [`take`] with the same layout.

use std::alloc::{Layout, alloc, dealloc};

#[link(wasm_import_module = "env")]
unsafe extern "C" {
    fn proxy_log(level: u32, message_data: *const u8, message_size: usize) -> u32;
    fn proxy_get_log_level(return_level: *mut u32) -> u32;
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
    fn proxy_add_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_replace_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_remove_header_map_value(map_type: u32, key_data: *const u8, key_size: usize) -> u32;
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
        return_queue_id: *mut u32,
    ) -> u32;
    fn proxy_resolve_shared_queue(
        vm_id_data: *const u8,
        vm_id_size: usize,
        name_data: *const u8,
        name_size: usize,
        return_queue_id: *mut u32,
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
        end_of_stream: u32,
    ) -> u32;
    fn proxy_grpc_cancel(token: u32) -> u32;
    fn proxy_grpc_close(token: u32) -> u32;
    fn proxy_get_status(
        return_status_code: *mut u32,
        return_message_data: *mut *mut u8,
        return_message_size: *mut usize,
    ) -> u32;
    fn proxy_set_effective_context(context_id: u32) -> u32;
    fn proxy_call_foreign_function(
        name_data: *const u8,
        name_size: usize,
        arguments_data: *const u8,
        arguments_size: usize,
        return_results_data: *mut *mut u8,
        return_results_size: *mut usize,
    ) -> u32;
    fn proxy_define_metric(
        metric_type: u32,
        name_data: *const u8,
        name_size: usize,
        return_metric_id: *mut u32,
    ) -> u32;
    fn proxy_increment_metric(metric_id: u32, offset: i64) -> u32;
    fn proxy_record_metric(metric_id: u32, value: u64) -> u32;
    fn proxy_get_metric(metric_id: u32, return_value: *mut u64) -> u32;
    fn proxy_done() -> u32;
}

/// The allocator the host calls to hand the guest bytes (`proxy_on_memory_allocate`).
pub fn allocate(size: usize) -> *mut u8 {
    // SAFETY: the layout has a non-zero size and alignment 1, which `alloc` requires.
    unsafe { alloc(layout(size)) }
}

fn layout(size: usize) -> Layout {
    Layout::from_size_align(size.max(1), 1).expect("a one-byte alignment is always valid")
}

/// Copies and frees bytes the host allocated through [`allocate`] (null or empty gives none).
fn take(data: *mut u8, size: usize) -> Vec<u8> {
    if data.is_null() {
        return Vec::new();
    }
    // SAFETY: the host wrote `size` bytes at `data`, which it got from `allocate(size)`; the
    // guest owns them from now on and frees them with the layout `allocate` used.
    unsafe {
        let bytes = std::slice::from_raw_parts(data, size).to_vec();
        dealloc(data, layout(size));
        bytes
    }
}

/// Calls a host function that returns bytes through two out-pointers.
fn returning_bytes(call: impl FnOnce(*mut *mut u8, *mut usize) -> u32) -> (u32, Vec<u8>) {
    let mut data = std::ptr::null_mut();
    let mut size = 0;
    let status = call(&mut data, &mut size);
    if status == 0 {
        (status, take(data, size))
    } else {
        (status, Vec::new())
    }
}

// SAFETY (for every wrapper below): each passes pointers to live Rust slices with their
// lengths, and out-pointers to live locals; the host reads and writes only within those.

pub fn log(level: u32, message: &str) -> u32 {
    unsafe { proxy_log(level, message.as_ptr(), message.len()) }
}

pub fn get_log_level() -> (u32, u32) {
    let mut level = 0;
    let status = unsafe { proxy_get_log_level(&mut level) };
    (status, level)
}

pub fn set_tick_period(milliseconds: u32) -> u32 {
    unsafe { proxy_set_tick_period_milliseconds(milliseconds) }
}

pub fn get_buffer_bytes(buffer_type: u32, start: usize, max_size: usize) -> (u32, Vec<u8>) {
    returning_bytes(|data, size| unsafe {
        proxy_get_buffer_bytes(buffer_type, start, max_size, data, size)
    })
}

pub fn set_buffer_bytes(buffer_type: u32, start: usize, size: usize, bytes: &[u8]) -> u32 {
    unsafe { proxy_set_buffer_bytes(buffer_type, start, size, bytes.as_ptr(), bytes.len()) }
}

pub fn get_buffer_status(buffer_type: u32) -> (u32, usize, u32) {
    let (mut length, mut flags) = (0, 0);
    let status = unsafe { proxy_get_buffer_status(buffer_type, &mut length, &mut flags) };
    (status, length, flags)
}

pub fn get_header_map_pairs(map_type: u32) -> (u32, Vec<u8>) {
    returning_bytes(|data, size| unsafe { proxy_get_header_map_pairs(map_type, data, size) })
}

pub fn set_header_map_pairs(map_type: u32, serialized: &[u8]) -> u32 {
    unsafe { proxy_set_header_map_pairs(map_type, serialized.as_ptr(), serialized.len()) }
}

pub fn get_header_map_value(map_type: u32, key: &str) -> (u32, Vec<u8>) {
    returning_bytes(|data, size| unsafe {
        proxy_get_header_map_value(map_type, key.as_ptr(), key.len(), data, size)
    })
}

pub fn add_header_map_value(map_type: u32, key: &str, value: &str) -> u32 {
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

pub fn replace_header_map_value(map_type: u32, key: &str, value: &str) -> u32 {
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

pub fn remove_header_map_value(map_type: u32, key: &str) -> u32 {
    unsafe { proxy_remove_header_map_value(map_type, key.as_ptr(), key.len()) }
}

pub fn get_header_map_size(map_type: u32) -> (u32, usize) {
    let mut size = 0;
    let status = unsafe { proxy_get_header_map_size(map_type, &mut size) };
    (status, size)
}

pub fn get_property(path: &[u8]) -> (u32, Vec<u8>) {
    returning_bytes(|data, size| unsafe {
        proxy_get_property(path.as_ptr(), path.len(), data, size)
    })
}

pub fn set_property(path: &[u8], value: &[u8]) -> u32 {
    unsafe { proxy_set_property(path.as_ptr(), path.len(), value.as_ptr(), value.len()) }
}

pub fn get_shared_data(key: &str) -> (u32, Vec<u8>, u32) {
    let mut cas = 0;
    let (status, bytes) = returning_bytes(|data, size| unsafe {
        proxy_get_shared_data(key.as_ptr(), key.len(), data, size, &mut cas)
    });
    (status, bytes, cas)
}

pub fn set_shared_data(key: &str, value: &[u8], cas: u32) -> u32 {
    unsafe { proxy_set_shared_data(key.as_ptr(), key.len(), value.as_ptr(), value.len(), cas) }
}

pub fn register_shared_queue(name: &str) -> (u32, u32) {
    let mut id = 0;
    let status = unsafe { proxy_register_shared_queue(name.as_ptr(), name.len(), &mut id) };
    (status, id)
}

pub fn resolve_shared_queue(vm_id: &str, name: &str) -> (u32, u32) {
    let mut id = 0;
    let status = unsafe {
        proxy_resolve_shared_queue(
            vm_id.as_ptr(),
            vm_id.len(),
            name.as_ptr(),
            name.len(),
            &mut id,
        )
    };
    (status, id)
}

pub fn dequeue_shared_queue(queue_id: u32) -> (u32, Vec<u8>) {
    returning_bytes(|data, size| unsafe { proxy_dequeue_shared_queue(queue_id, data, size) })
}

pub fn enqueue_shared_queue(queue_id: u32, value: &[u8]) -> u32 {
    unsafe { proxy_enqueue_shared_queue(queue_id, value.as_ptr(), value.len()) }
}

pub fn continue_stream(stream_type: u32) -> u32 {
    unsafe { proxy_continue_stream(stream_type) }
}

pub fn close_stream(stream_type: u32) -> u32 {
    unsafe { proxy_close_stream(stream_type) }
}

pub fn send_local_response(
    status_code: u32,
    details: &str,
    body: &[u8],
    headers: &[u8],
    grpc_status: i32,
) -> u32 {
    unsafe {
        proxy_send_local_response(
            status_code,
            details.as_ptr(),
            details.len(),
            body.as_ptr(),
            body.len(),
            headers.as_ptr(),
            headers.len(),
            grpc_status,
        )
    }
}

pub fn http_call(
    upstream: &str,
    headers: &[u8],
    body: &[u8],
    trailers: &[u8],
    timeout_milliseconds: u32,
) -> (u32, u32) {
    let mut token = 0;
    let status = unsafe {
        proxy_http_call(
            upstream.as_ptr(),
            upstream.len(),
            headers.as_ptr(),
            headers.len(),
            body.as_ptr(),
            body.len(),
            trailers.as_ptr(),
            trailers.len(),
            timeout_milliseconds,
            &mut token,
        )
    };
    (status, token)
}

pub struct GrpcCall<'a> {
    pub upstream: &'a str,
    pub service: &'a str,
    pub method: &'a str,
    pub initial_metadata: &'a [u8],
    pub message: &'a [u8],
    pub timeout_milliseconds: u32,
}

pub fn grpc_call(call: &GrpcCall<'_>) -> (u32, u32) {
    let mut token = 0;
    let status = unsafe {
        proxy_grpc_call(
            call.upstream.as_ptr(),
            call.upstream.len(),
            call.service.as_ptr(),
            call.service.len(),
            call.method.as_ptr(),
            call.method.len(),
            call.initial_metadata.as_ptr(),
            call.initial_metadata.len(),
            call.message.as_ptr(),
            call.message.len(),
            call.timeout_milliseconds,
            &mut token,
        )
    };
    (status, token)
}

/// `proxy_grpc_stream`: (status, token).
pub fn grpc_stream(
    upstream: &str,
    service: &str,
    method: &str,
    initial_metadata: &[u8],
) -> (u32, u32) {
    let mut token = 0;
    let status = unsafe {
        proxy_grpc_stream(
            upstream.as_ptr(),
            upstream.len(),
            service.as_ptr(),
            service.len(),
            method.as_ptr(),
            method.len(),
            initial_metadata.as_ptr(),
            initial_metadata.len(),
            &mut token,
        )
    };
    (status, token)
}

pub fn grpc_send(token: u32, message: &[u8], end_of_stream: bool) -> u32 {
    unsafe {
        proxy_grpc_send(
            token,
            message.as_ptr(),
            message.len(),
            u32::from(end_of_stream),
        )
    }
}

pub fn grpc_cancel(token: u32) -> u32 {
    unsafe { proxy_grpc_cancel(token) }
}

pub fn grpc_close(token: u32) -> u32 {
    unsafe { proxy_grpc_close(token) }
}

pub fn get_status() -> (u32, u32, Vec<u8>) {
    let mut code = 0;
    let (status, message) =
        returning_bytes(|data, size| unsafe { proxy_get_status(&mut code, data, size) });
    (status, code, message)
}

pub fn set_effective_context(context_id: u32) -> u32 {
    unsafe { proxy_set_effective_context(context_id) }
}

pub fn call_foreign_function(name: &str, arguments: &[u8]) -> (u32, Vec<u8>) {
    returning_bytes(|data, size| unsafe {
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

pub fn define_metric(metric_type: u32, name: &str) -> (u32, u32) {
    let mut id = 0;
    let status = unsafe { proxy_define_metric(metric_type, name.as_ptr(), name.len(), &mut id) };
    (status, id)
}

pub fn increment_metric(metric_id: u32, offset: i64) -> u32 {
    unsafe { proxy_increment_metric(metric_id, offset) }
}

pub fn record_metric(metric_id: u32, value: u64) -> u32 {
    unsafe { proxy_record_metric(metric_id, value) }
}

pub fn get_metric(metric_id: u32) -> (u32, u64) {
    let mut value = 0;
    let status = unsafe { proxy_get_metric(metric_id, &mut value) };
    (status, value)
}

pub fn done() -> u32 {
    unsafe { proxy_done() }
}

/// Serializes header pairs in the ABI's map format: a count, the sizes, then each key and
/// value followed by a NUL byte, all little-endian.
pub fn serialize_pairs(pairs: &[(String, String)]) -> Vec<u8> {
    let mut bytes = Vec::new();
    bytes.extend_from_slice(&(pairs.len() as u32).to_le_bytes());
    for (key, value) in pairs {
        bytes.extend_from_slice(&(key.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&(value.len() as u32).to_le_bytes());
    }
    for (key, value) in pairs {
        bytes.extend_from_slice(key.as_bytes());
        bytes.push(0);
        bytes.extend_from_slice(value.as_bytes());
        bytes.push(0);
    }
    bytes
}

/// Reads the map format back; `None` when the bytes are not a well-formed map.
pub fn deserialize_pairs(bytes: &[u8]) -> Option<Vec<(Vec<u8>, Vec<u8>)>> {
    if bytes.is_empty() {
        return Some(Vec::new());
    }
    let word = |at: usize| -> Option<usize> {
        let slice = bytes.get(at..at + 4)?;
        Some(u32::from_le_bytes(slice.try_into().ok()?) as usize)
    };
    let count = word(0)?;
    let mut sizes = Vec::new();
    for index in 0..count {
        sizes.push((word(4 + index * 8)?, word(8 + index * 8)?));
    }
    let mut at = 4 + count * 8;
    let mut pairs = Vec::new();
    for (key_size, value_size) in sizes {
        let key = bytes.get(at..at + key_size)?.to_vec();
        at += key_size + 1;
        let value = bytes.get(at..at + value_size)?.to_vec();
        at += value_size + 1;
        pairs.push((key, value));
    }
    Some(pairs)
}
