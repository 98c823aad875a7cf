//! Stream control: continue, close, `proxy_clear_route_cache` and
//! `proxy_send_local_response` (what they do happens after the callback returns, see `After`).

use wasmtime::Linker;

use super::call::{BAD_ARGUMENT, E, IMA, OK, UNIMPLEMENTED, answer, host};
use super::memory::read;
use super::{After, LocalReply};
use super::{HostState, HostTrap};
use crate::headers::parse_pairs;
use crate::trace::FirstArg;

/// What the trap says when a filter continues the response from its request-headers callback
/// before any response: Envoy 1.40 dereferences the absent response and its process dies.
pub(crate) const CONTINUE_RESPONSE_CRASHES_ENVOY: &str = "the filter continued the response \
    (proxy_continue_stream(RESPONSE) or proxy_continue_response) from its request-headers \
    callback before any response: Envoy 1.40 crashes on this call (segmentation fault), so \
    host-sim refuses it";

/// `Context::continueStream`: defers the continuation and, as Envoy does, forgets the request
/// maps and body of the current callback. Continuing the response from the request-headers
/// callback before any response traps: it crashes Envoy 1.40.
pub(super) fn continue_stream(state: &mut HostState, stream_type: u32) -> wasmtime::Result<u32> {
    let ctx = state.context();
    if stream_type == 1
        && state
            .streams
            .get(&ctx)
            .is_some_and(|stream| stream.in_request_headers_callback && !stream.response_started)
    {
        return Err(wasmtime::Error::new(HostTrap(
            CONTINUE_RESPONSE_CRASHES_ENVOY.into(),
        )));
    }
    Ok(continue_stream_checked(state, ctx, stream_type))
}

fn continue_stream_checked(state: &mut HostState, ctx: u32, stream_type: u32) -> u32 {
    match stream_type {
        0 | 1 => {
            if state.streams.contains_key(&ctx) {
                state.after.push(After::Continue {
                    context_id: ctx,
                    stream_type,
                });
            }
            OK
        }
        2 => {
            if state.connections.contains_key(&ctx) {
                state
                    .after
                    .push(After::ContinueConnection { context_id: ctx });
            }
            OK
        }
        3 => UNIMPLEMENTED,
        _ => BAD_ARGUMENT,
    }
}

/// Registers this family's host functions.
pub(super) fn register(l: &mut Linker<HostState>) -> wasmtime::Result<()> {
    use FirstArg::{Plain, Stream};

    for (name, stream_type) in [
        ("proxy_continue_request", 0u32),
        ("proxy_continue_response", 1),
    ] {
        host!(l, E, name, Plain, |c| {
            Ok(answer(continue_stream(c.data_mut(), stream_type)?))
        });
    }

    host!(
        l,
        E,
        "proxy_continue_stream",
        Stream,
        |c, stream_type: u32| {
            let status = if stream_type > 3 {
                BAD_ARGUMENT
            } else {
                continue_stream(c.data_mut(), stream_type)?
            };
            Ok(answer(status).nums(&[stream_type]))
        }
    );

    host!(l, E, "proxy_close_stream", Stream, |c, stream_type: u32| {
        if stream_type > 3 {
            return Ok(answer(BAD_ARGUMENT).nums(&[stream_type]));
        }
        let state = c.data_mut();
        let ctx = state.context();
        if state.streams.contains_key(&ctx) && stream_type < 2 {
            state.after.push(After::Close {
                context_id: ctx,
                stream_type,
            });
        }
        if state.connections.contains_key(&ctx) && stream_type >= 2 {
            state.after.push(After::CloseConnection {
                context_id: ctx,
                stream_type,
            });
        }
        Ok(answer(OK).nums(&[stream_type]))
    });

    host!(l, E, "proxy_clear_route_cache", Plain, |_c| Ok(answer(OK)));

    host!(
        l,
        E,
        "proxy_send_local_response",
        Plain,
        |c,
         code: u32,
         details_ptr: u32,
         details_size: u32,
         body_ptr: u32,
         body_size: u32,
         headers_ptr: u32,
         headers_size: u32,
         grpc_status: u32| {
            let details = read(c, details_ptr, details_size)?;
            let body = read(c, body_ptr, body_size)?;
            let headers = read(c, headers_ptr, headers_size)?;
            let (Some(details), Some(body), Some(headers)) = (details, body, headers) else {
                return Ok(answer(IMA).nums(&[code]));
            };
            let pairs = parse_pairs(&headers);
            let reply = LocalReply {
                status_code: code,
                details: String::from_utf8_lossy(&details)
                    .chars()
                    .map(|ch| if ch.is_whitespace() { '_' } else { ch })
                    .collect(),
                body: body.clone(),
                headers: pairs
                    .iter()
                    .map(|(key, value)| {
                        (
                            String::from_utf8_lossy(key).to_ascii_lowercase(),
                            String::from_utf8_lossy(value).into_owned(),
                        )
                    })
                    .collect(),
                grpc_status: (grpc_status <= 16).then_some(grpc_status),
            };
            let state = c.data_mut();
            let ctx = state.context();
            // Envoy only acts when the context has decoder callbacks (a stream context).
            if state.streams.contains_key(&ctx) {
                state.after.push(After::LocalReply {
                    context_id: ctx,
                    reply,
                });
            }
            state.stop_next_iteration = true;
            Ok(answer(OK).nums(&[code]).strs([details, body]))
        }
    );

    Ok(())
}
