//! gRPC callouts and streams: call, stream, send, close and cancel.

use wasmtime::Linker;

use super::GrpcCallout;
use super::HostState;
use super::call::{
    Answer, BAD_ARGUMENT, C, E, IMA, NOT_FOUND, OK, PARSE_FAILURE, Stop, answer, host, wrote,
};
use super::memory::{read, set_u32};
use crate::headers::{HeaderMap, parse_pairs};
use crate::trace::FirstArg;

/// `proxy_grpc_call` (with a request and a timeout) and `proxy_grpc_stream` (without):
/// reads the service, name, method and metadata, starts the call and writes its token.
pub(super) fn grpc_open(
    c: &mut C<'_>,
    strings: [(u32, u32); 4],
    call: Option<(u32, u32, u32)>,
    token_ptr: u32,
) -> Result<Answer, Stop> {
    let [(service_ptr, service_size), name, method, metadata] = strings;
    let service = read(c, service_ptr, service_size)?;
    let name = read(c, name.0, name.1)?;
    let method = read(c, method.0, method.1)?;
    let metadata = read(c, metadata.0, metadata.1)?;
    let (request, timeout) = match call {
        Some((ptr, size, timeout)) => (read(c, ptr, size)?.map(Some), Some(timeout)),
        None => (Some(None), None),
    };
    let (Some(service), Some(name), Some(method), Some(metadata), Some(request)) =
        (service, name, method, metadata, request)
    else {
        return Ok(answer(IMA).nums(&[service_ptr, service_size]));
    };
    let started = grpc_start(
        c.data_mut(),
        &service,
        &name,
        &method,
        &metadata,
        request,
        timeout.unwrap_or(0),
    );
    let status = match started {
        Ok(token) => wrote(set_u32(c, token_ptr, token)?),
        Err(status) => status,
    };
    let answer = answer(status).strs([service, name, method]);
    Ok(match timeout {
        Some(timeout) => answer.nums(&[timeout]),
        None => answer,
    })
}

pub(super) fn grpc_start(
    state: &mut HostState,
    service: &[u8],
    name: &[u8],
    method: &[u8],
    metadata: &[u8],
    request: Option<Vec<u8>>,
    timeout: u32,
) -> Result<u32, u32> {
    let cluster = String::from_utf8_lossy(service).into_owned();
    if service.is_empty() {
        // An empty `grpc_service` parses as an empty GrpcService proto, which Envoy cannot
        // build a client for.
        return Err(BAD_ARGUMENT);
    }
    if !state.clusters.contains(&cluster) {
        return Err(PARSE_FAILURE);
    }
    let is_stream = request.is_none();
    let token = if is_stream {
        state.next_grpc_stream += 4;
        state.next_grpc_stream
    } else {
        state.next_grpc_call += 4;
        state.next_grpc_call
    };
    let origin_context_id = state.context();
    let context_id = state.root_of(origin_context_id);
    let now = state.world.now_ns;
    state.grpc_callouts.insert(
        token,
        GrpcCallout {
            token,
            context_id,
            origin_context_id,
            cluster,
            service: String::from_utf8_lossy(name).into_owned(),
            method: String::from_utf8_lossy(method).into_owned(),
            initial_metadata: HeaderMap::from_pairs(parse_pairs(metadata)),
            messages: request.into_iter().collect(),
            is_stream,
            local_closed: false,
            timeout_ms: timeout,
            deadline: (!is_stream && timeout > 0).then(|| now + u64::from(timeout) * 1_000_000),
            remote_closed: false,
        },
    );
    Ok(token)
}

/// Registers this family's host functions.
pub(super) fn register(l: &mut Linker<HostState>) -> wasmtime::Result<()> {
    use FirstArg::Plain;

    host!(
        l,
        E,
        "proxy_grpc_call",
        Plain,
        |c,
         service_ptr: u32,
         service_size: u32,
         name_ptr: u32,
         name_size: u32,
         method_ptr: u32,
         method_size: u32,
         metadata_ptr: u32,
         metadata_size: u32,
         request_ptr: u32,
         request_size: u32,
         timeout: u32,
         token_ptr: u32| {
            let strings = [
                (service_ptr, service_size),
                (name_ptr, name_size),
                (method_ptr, method_size),
                (metadata_ptr, metadata_size),
            ];
            grpc_open(
                c,
                strings,
                Some((request_ptr, request_size, timeout)),
                token_ptr,
            )
        }
    );

    host!(
        l,
        E,
        "proxy_grpc_stream",
        Plain,
        |c,
         service_ptr: u32,
         service_size: u32,
         name_ptr: u32,
         name_size: u32,
         method_ptr: u32,
         method_size: u32,
         metadata_ptr: u32,
         metadata_size: u32,
         token_ptr: u32| {
            let strings = [
                (service_ptr, service_size),
                (name_ptr, name_size),
                (method_ptr, method_size),
                (metadata_ptr, metadata_size),
            ];
            grpc_open(c, strings, None, token_ptr)
        }
    );

    host!(
        l,
        E,
        "proxy_grpc_send",
        Plain,
        |c, token: u32, ptr: u32, size: u32, end_stream: u32| {
            let message =
                read(c, ptr, size)?.ok_or_else(|| answer(IMA).nums(&[token, ptr, size]))?;
            let state = c.data_mut();
            let status = if token & 3 != 2 {
                BAD_ARGUMENT
            } else {
                match state.grpc_callouts.get_mut(&token) {
                    None => NOT_FOUND,
                    Some(callout) => {
                        callout.messages.push(message.clone());
                        OK
                    }
                }
            };
            Ok(answer(status).nums(&[token, end_stream]).strs([message]))
        }
    );

    for name in ["proxy_grpc_close", "proxy_grpc_cancel"] {
        host!(l, E, name, Plain, |c, token: u32| {
            let state = c.data_mut();
            let status = match token & 3 {
                1 | 2 => match state.grpc_callouts.get_mut(&token) {
                    None => NOT_FOUND,
                    Some(callout) => {
                        if callout.is_stream && name == "proxy_grpc_close" && !callout.remote_closed
                        {
                            callout.local_closed = true;
                        } else {
                            state.grpc_callouts.remove(&token);
                        }
                        OK
                    }
                },
                _ => BAD_ARGUMENT,
            };
            Ok(answer(status).nums(&[token]))
        });
    }

    Ok(())
}
