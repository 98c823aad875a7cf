//! Header and trailer maps: which map a context can read or write now, and the
//! `proxy_*_header_map_*` functions.

use wasmtime::Linker;

use super::HostState;
use super::avail;
use super::call::{Answer, BAD_ARGUMENT, E, IMA, NOT_FOUND, OK, answer, host, wrote};
use super::memory::{copy_out, read, set_u32};
use crate::abi::{self, MapType};
use crate::headers::{HeaderMap, parse_pairs};
use crate::trace::FirstArg;

/// A header map type code, or the BAD_ARGUMENT answer recording it.
pub(super) fn map_from_code(map: u32) -> Result<MapType, Answer> {
    MapType::from_code(map).ok_or_else(|| answer(BAD_ARGUMENT).nums(&[map]))
}

/// Which map a context can reach for writing (`Context::getMap`); `None` = BAD_ARGUMENT.
pub(super) fn map_mut(state: &mut HostState, ctx: u32, map: MapType) -> Option<&mut HeaderMap> {
    let stream = state.streams.get_mut(&ctx)?;
    if stream.access_log_phase {
        return None;
    }
    match map {
        MapType::RequestHeaders if stream.avail & avail::REQUEST_HEADERS != 0 => {
            Some(&mut stream.request_headers)
        }
        MapType::RequestTrailers => trailers_mut(
            &mut stream.avail,
            &mut stream.request_trailers,
            avail::REQUEST_TRAILERS,
            avail::REQUEST_BODY,
            stream.end_of_stream,
        ),
        MapType::ResponseHeaders if stream.avail & avail::RESPONSE_HEADERS != 0 => {
            Some(&mut stream.response_headers)
        }
        MapType::ResponseTrailers => trailers_mut(
            &mut stream.avail,
            &mut stream.response_trailers,
            avail::RESPONSE_TRAILERS,
            avail::RESPONSE_BODY,
            stream.end_of_stream,
        ),
        _ => None,
    }
}

/// One direction's trailers for writing: available in the trailers callback, and Envoy adds
/// them when asked from the last body callback.
pub(super) fn trailers_mut<'a>(
    available: &mut u8,
    trailers: &'a mut Option<HeaderMap>,
    trailers_bit: u8,
    body_bit: u8,
    end_of_stream: bool,
) -> Option<&'a mut HeaderMap> {
    if *available & trailers_bit != 0 {
        trailers.as_mut()
    } else if *available & body_bit != 0 && end_of_stream {
        *available |= trailers_bit;
        Some(trailers.get_or_insert_with(HeaderMap::new))
    } else {
        None
    }
}

/// Which map a context can read (`Context::getConstMap`); `None` = not available.
pub(super) fn map_ref(state: &HostState, ctx: u32, map: MapType) -> Option<&HeaderMap> {
    match map {
        MapType::HttpCallResponseHeaders => {
            return state
                .http_call_response
                .as_ref()
                .map(|response| &response.headers);
        }
        MapType::HttpCallResponseTrailers => {
            return state
                .http_call_response
                .as_ref()
                .and_then(|response| response.trailers.as_ref());
        }
        MapType::GrpcReceiveInitialMetadata => return state.grpc_initial_metadata.as_ref(),
        MapType::GrpcReceiveTrailingMetadata => return state.grpc_trailing_metadata.as_ref(),
        _ => {}
    }
    let stream = state.streams.get(&ctx)?;
    if stream.access_log_phase {
        return match map {
            MapType::RequestHeaders => Some(&stream.request_headers),
            MapType::ResponseHeaders => Some(&stream.response_headers),
            MapType::ResponseTrailers => stream.response_trailers.as_ref(),
            _ => None,
        };
    }
    match map {
        MapType::RequestHeaders if stream.avail & avail::REQUEST_HEADERS != 0 => {
            Some(&stream.request_headers)
        }
        MapType::RequestTrailers if stream.avail & avail::REQUEST_TRAILERS != 0 => {
            stream.request_trailers.as_ref()
        }
        MapType::ResponseHeaders if stream.avail & avail::RESPONSE_HEADERS != 0 => {
            Some(&stream.response_headers)
        }
        MapType::ResponseTrailers if stream.avail & avail::RESPONSE_TRAILERS != 0 => {
            stream.response_trailers.as_ref()
        }
        _ => None,
    }
}

/// Registers this family's host functions.
pub(super) fn register(l: &mut Linker<HostState>) -> wasmtime::Result<()> {
    use FirstArg::Map;

    host!(
        l,
        E,
        "proxy_get_header_map_value",
        Map,
        |c, map: u32, key_ptr: u32, key_size: u32, ptr_ptr: u32, size_ptr: u32| {
            let map_type = map_from_code(map)?;
            let key = read(c, key_ptr, key_size)?
                .ok_or_else(|| answer(IMA).nums(&[map, key_ptr, key_size]))?;
            let state = c.data();
            let ctx = state.context();
            let abi_010 = state.abi == abi::AbiVersion::V0_1_0;
            let in_log = state
                .streams
                .get(&ctx)
                .is_some_and(|stream| stream.access_log_phase);
            let value = match map_ref(state, ctx, map_type) {
                None if in_log && abi_010 => Ok(Vec::new()),
                None if in_log => Err(NOT_FOUND),
                None => Err(BAD_ARGUMENT),
                // Envoy's request header map answers the legacy `host` with `:authority`
                // (seen in Envoy 1.40).
                Some(headers) => match headers.get(&key).or_else(|| {
                    (map == 0 && key.eq_ignore_ascii_case(b"host"))
                        .then(|| headers.get(b":authority"))
                        .flatten()
                }) {
                    Some(value) => Ok(value.to_vec()),
                    None if abi_010 => Ok(Vec::new()),
                    None => Err(NOT_FOUND),
                },
            };
            match value {
                Err(status) => Ok(answer(status).nums(&[map]).strs([key])),
                Ok(value) => {
                    let status = wrote(copy_out(c, &value, ptr_ptr, size_ptr)?);
                    Ok(answer(status).nums(&[map]).strs([key]).result(value))
                }
            }
        }
    );

    for (name, kind) in [
        ("proxy_add_header_map_value", 0u8),
        ("proxy_replace_header_map_value", 1u8),
    ] {
        host!(
            l,
            E,
            name,
            Map,
            |c, map: u32, key_ptr: u32, key_size: u32, value_ptr: u32, value_size: u32| {
                let map_type = map_from_code(map)?;
                let (Some(key), Some(value)) =
                    (read(c, key_ptr, key_size)?, read(c, value_ptr, value_size)?)
                else {
                    return Ok(answer(IMA).nums(&[map, key_ptr, key_size, value_ptr]));
                };
                let state = c.data_mut();
                let ctx = state.context();
                let status = match map_mut(state, ctx, map_type) {
                    None => BAD_ARGUMENT,
                    Some(headers) => {
                        if kind == 0 {
                            headers.add(&key, &value);
                        } else {
                            headers.replace(&key, &value);
                        }
                        OK
                    }
                };
                Ok(answer(status).nums(&[map]).strs([key, value]))
            }
        );
    }

    host!(
        l,
        E,
        "proxy_remove_header_map_value",
        Map,
        |c, map: u32, key_ptr: u32, key_size: u32| {
            let map_type = map_from_code(map)?;
            let key = read(c, key_ptr, key_size)?
                .ok_or_else(|| answer(IMA).nums(&[map, key_ptr, key_size]))?;
            let state = c.data_mut();
            let ctx = state.context();
            let status = match map_mut(state, ctx, map_type) {
                None => BAD_ARGUMENT,
                Some(headers) => {
                    headers.remove(&key);
                    OK
                }
            };
            Ok(answer(status).nums(&[map]).strs([key]))
        }
    );

    host!(
        l,
        E,
        "proxy_get_header_map_pairs",
        Map,
        |c, map: u32, ptr_ptr: u32, size_ptr: u32| {
            let map_type = map_from_code(map)?;
            let state = c.data();
            let ctx = state.context();
            // Envoy answers OK with an empty map when the map is not available.
            let serialized = match map_ref(state, ctx, map_type) {
                Some(headers) if !headers.is_empty() => headers.serialize(),
                _ => Vec::new(),
            };
            Ok(answer(wrote(copy_out(c, &serialized, ptr_ptr, size_ptr)?)).nums(&[map]))
        }
    );

    host!(
        l,
        E,
        "proxy_set_header_map_pairs",
        Map,
        |c, map: u32, ptr: u32, size: u32| {
            let map_type = map_from_code(map)?;
            let data = read(c, ptr, size)?.ok_or_else(|| answer(IMA).nums(&[map, ptr, size]))?;
            let pairs = parse_pairs(&data);
            let state = c.data_mut();
            let ctx = state.context();
            let status = match map_mut(state, ctx, map_type) {
                None => BAD_ARGUMENT,
                Some(headers) => {
                    headers.clear();
                    for (key, value) in &pairs {
                        headers.add(key, value);
                    }
                    OK
                }
            };
            Ok(answer(status).nums(&[u64::from(map), pairs.len() as u64]))
        }
    );

    host!(
        l,
        E,
        "proxy_get_header_map_size",
        Map,
        |c, map: u32, result_ptr: u32| {
            let map_type = map_from_code(map)?;
            let state = c.data_mut();
            let ctx = state.context();
            // Envoy reads the size through the mutable map (`getMap`), so http-call and gRPC maps
            // are BAD_ARGUMENT here.
            let size = map_mut(state, ctx, map_type).map(|headers| headers.byte_size() as u32);
            let status = match size {
                None => BAD_ARGUMENT,
                Some(size) => wrote(set_u32(c, result_ptr, size)?),
            };
            Ok(answer(status).nums(&[map, size.unwrap_or(0)]))
        }
    );

    Ok(())
}
