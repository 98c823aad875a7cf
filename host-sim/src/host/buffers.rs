//! Buffers (bodies, TCP data, callout and gRPC answers, configuration): which exists now
//! and the `proxy_*_buffer_*` functions.

use wasmtime::Linker;

use super::HostState;
use super::avail;
use super::call::{Answer, BAD_ARGUMENT, E, IMA, NOT_FOUND, OK, answer, host, wrote};
use super::memory::{copy_out, read, set_u32};
use crate::abi::BufferType;
use crate::trace::FirstArg;

/// The buffer a code names as the current context sees it ([`buffer_ref`]): its type, bytes
/// and whether they are mutable; or the answer recording `nums`, BAD_ARGUMENT for an unknown
/// code, NOT_FOUND for a buffer that does not exist now.
pub(super) fn buffer_from_code<'a>(
    state: &'a HostState,
    buffer: u32,
    nums: &[u32],
) -> Result<(BufferType, &'a [u8], bool), Answer> {
    let buffer_type =
        BufferType::from_code(buffer).ok_or_else(|| answer(BAD_ARGUMENT).nums(nums))?;
    let (bytes, mutable) = buffer_ref(state, state.context(), buffer_type)
        .ok_or_else(|| answer(NOT_FOUND).nums(nums))?;
    Ok((buffer_type, bytes, mutable))
}

/// A buffer as `Context::getBuffer` finds it: `None` = NOT_FOUND; `Some((bytes, mutable))`.
pub(super) fn buffer_ref(state: &HostState, ctx: u32, buffer: BufferType) -> Option<(&[u8], bool)> {
    match buffer {
        BufferType::HttpRequestBody => Some(match state.streams.get(&ctx) {
            Some(stream) if stream.avail & avail::REQUEST_BODY != 0 => (&stream.request_body, true),
            _ => (&[][..], false),
        }),
        BufferType::HttpResponseBody => Some(match state.streams.get(&ctx) {
            Some(stream) if stream.avail & avail::RESPONSE_BODY != 0 => {
                (&stream.response_body, true)
            }
            _ => (&[][..], false),
        }),
        BufferType::DownstreamData | BufferType::UpstreamData => Some(
            state
                .connections
                .get(&ctx)
                .map_or((&[][..], false), |connection| connection.buffer(buffer)),
        ),
        BufferType::HttpCallResponseBody => state
            .http_call_response
            .as_ref()
            .map(|response| (response.body.as_slice(), false)),
        BufferType::GrpcReceiveBuffer => {
            Some((state.grpc_receive_buffer.as_deref().unwrap_or(&[]), false))
        }
        BufferType::VmConfiguration => Some((&state.vm_configuration, false)),
        BufferType::PluginConfiguration => state
            .temp_plugin
            .map(|plugin| (state.plugins[plugin].configuration.as_slice(), false)),
        BufferType::CallData => Some((&state.call_data, false)),
    }
}

/// Registers this family's host functions.
pub(super) fn register(l: &mut Linker<HostState>) -> wasmtime::Result<()> {
    use FirstArg::Buffer;

    host!(
        l,
        E,
        "proxy_get_buffer_status",
        Buffer,
        |c, buffer: u32, length_ptr: u32, flags_ptr: u32| {
            let (_, bytes, _) = buffer_from_code(c.data(), buffer, &[buffer])?;
            let length = bytes.len() as u32;
            let written = set_u32(c, length_ptr, length)? && set_u32(c, flags_ptr, 0)?;
            Ok(answer(wrote(written)).nums(&[buffer, length]))
        }
    );

    host!(
        l,
        E,
        "proxy_get_buffer_bytes",
        Buffer,
        |c, buffer: u32, start: u32, length: u32, ptr_ptr: u32, size_ptr: u32| {
            let nums = [buffer, start, length];
            let (_, bytes, _) = buffer_from_code(c.data(), buffer, &nums)?;
            // Envoy clamps the range to the buffer instead of failing.
            let begin = (start as usize).min(bytes.len());
            let end = begin.saturating_add(length as usize).min(bytes.len());
            let bytes = bytes[begin..end].to_vec();
            let status = wrote(copy_out(c, &bytes, ptr_ptr, size_ptr)?);
            Ok(answer(status).nums(&nums).result(bytes))
        }
    );

    host!(
        l,
        E,
        "proxy_set_buffer_bytes",
        Buffer,
        |c, buffer: u32, start: u32, length: u32, ptr: u32, size: u32| {
            let nums = [buffer, start, length];
            let (buffer_type, _, mutable) = buffer_from_code(c.data(), buffer, &nums)?;
            let ctx = c.data().context();
            let data = read(c, ptr, size)?
                .ok_or_else(|| answer(IMA).nums(&[buffer, start, length, ptr]))?;
            let status = if !mutable {
                BAD_ARGUMENT
            } else {
                let state = c.data_mut();
                let body = match buffer_type {
                    BufferType::DownstreamData | BufferType::UpstreamData => state
                        .connections
                        .get_mut(&ctx)
                        .and_then(|connection| connection.buffer_mut(buffer_type))
                        .expect("a mutable data buffer belongs to a connection"),
                    _ => {
                        let stream = state
                            .streams
                            .get_mut(&ctx)
                            .expect("a mutable body buffer belongs to a stream");
                        if buffer_type == BufferType::HttpRequestBody {
                            &mut stream.request_body
                        } else {
                            &mut stream.response_body
                        }
                    }
                };
                // Envoy's `Buffer::copyFrom`: start 0 drains `length` bytes (as many as
                // there are) and prepends the data; a start at or past the end appends;
                // any other start is refused.
                if start == 0 {
                    let drained = (length as usize).min(body.len());
                    body.splice(0..drained, data.iter().copied());
                    OK
                } else if start as usize >= body.len() {
                    body.extend_from_slice(&data);
                    OK
                } else {
                    BAD_ARGUMENT
                }
            };
            Ok(answer(status).nums(&nums).strs([data]))
        }
    );

    Ok(())
}
