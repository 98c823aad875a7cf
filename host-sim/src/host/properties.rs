//! `proxy_get_property` and `proxy_set_property`: the standard attributes (`attributes.rs`)
//! answered from a stream's state, the test's properties and the filter state.

use wasmtime::Linker;

use super::HostState;
use super::call::{E, IMA, NOT_FOUND, OK, answer, host, read_pair, wrote};
use super::maps::map_ref;
use super::memory::{copy_out, read};
use crate::abi::MapType;
use crate::attributes::{self, StreamView};
use crate::trace::FirstArg;

/// What Envoy's `StreamInfo` and the readable maps say about a stream right now (`None` for a
/// root context, which has no stream info).
pub(super) fn stream_view(state: &HostState, ctx: u32) -> Option<StreamView<'_>> {
    let stream = state.streams.get(&ctx)?;
    let reply = stream
        .local_reply
        .as_ref()
        .map(|reply| (reply.status_code, reply.details.as_str()))
        .or(stream
            .chain_local_reply
            .as_ref()
            .map(|(code, details)| (*code, details.as_str())));
    let (response_code, response_code_details) = match reply {
        Some((code, details)) => (Some(code), Some(details)),
        None if stream.response_started => (
            stream
                .response_headers
                .get(b":status")
                .and_then(|code| std::str::from_utf8(code).ok()?.parse().ok()),
            Some("via_upstream"),
        ),
        None => (None, None),
    };
    let epoch = state.epoch_ns as i64;
    Some(StreamView {
        request_headers: map_ref(state, ctx, MapType::RequestHeaders),
        response_headers: map_ref(state, ctx, MapType::ResponseHeaders),
        response_trailers: map_ref(state, ctx, MapType::ResponseTrailers),
        response_code,
        response_code_details,
        bytes_received: (stream.upstream_body.len()
            + stream.request_held.len()
            + stream.request_body.len()) as u64,
        bytes_sent: stream.downstream_body.len() as u64,
        start_ns: epoch + stream.started_ns as i64,
        now_ns: epoch + state.world.now_ns as i64,
        complete: stream.access_log_phase,
        connection_id: u64::from(ctx),
        source_port: 40000 + (ctx % 20000) as u16,
        destination_port: attributes::LISTENER_PORT,
        // A chain is `exchange`'s routed request; a lone stream models `cargo xtask run`'s
        // direct-response route, which has no upstream.
        routed: stream.chained && reply.is_none(),
        upstream_selected: stream.upstream_selected && reply.is_none(),
    })
}

pub(super) fn lookup_property(state: &HostState, ctx: u32, path: &[u8]) -> Result<Vec<u8>, u32> {
    let segments: Vec<&[u8]> = if path.is_empty() {
        Vec::new()
    } else {
        path.split(|byte| *byte == 0).collect()
    };
    let Some(first) = segments.first() else {
        return Err(NOT_FOUND);
    };
    let plugin = state.plugin_of(ctx);
    let simple = |value: &str| {
        if segments.len() == 1 {
            Ok(value.as_bytes().to_vec())
        } else {
            Err(NOT_FOUND)
        }
    };
    match *first {
        b"plugin_root_id" => {
            return match plugin {
                Some(plugin) => simple(&state.plugins[plugin].root_id),
                None => simple(""),
            };
        }
        b"plugin_name" => {
            if let Some(plugin) = plugin {
                return simple(&state.plugins[plugin].name);
            }
            return Err(NOT_FOUND);
        }
        b"plugin_vm_id" => return simple(&state.vm_id),
        _ => {}
    }
    let stream = state.streams.get(&ctx);
    let maps = stream
        .map(|stream| &stream.properties)
        .into_iter()
        .chain(
            state
                .connections
                .get(&ctx)
                .map(|connection| &connection.properties),
        )
        .chain([&state.properties]);
    for map in maps {
        // Only prefixes as long as a stored path can match (a hostile path may have many
        // segments).
        let deepest = map
            .keys()
            .map(Vec::len)
            .max()
            .unwrap_or(0)
            .min(segments.len());
        for split in (1..=deepest).rev() {
            let (head, rest) = segments.split_at(split);
            let key: Vec<Vec<u8>> = head.iter().map(|segment| segment.to_vec()).collect();
            if let Some(mut value) = map.get(&key) {
                for segment in rest {
                    match value.child(segment) {
                        Some(child) => value = child,
                        None => return Err(NOT_FOUND),
                    }
                }
                return Ok(value.encode());
            }
        }
    }
    let view = stream_view(state, ctx);
    match attributes::lookup(&segments, view.as_ref()) {
        Ok(Some(value)) => return Ok(value),
        Ok(None) => {}
        Err(status) => return Err(status as u32),
    }
    let state_value = stream.and_then(|stream| {
        stream
            .filter_state
            .iter()
            .find(|(key, _)| key.as_slice() == *first)
    });
    match state_value {
        Some((_, value)) if segments.len() == 1 => Ok(value.clone()),
        _ => Err(NOT_FOUND),
    }
}

/// Registers this family's host functions.
pub(super) fn register(l: &mut Linker<HostState>) -> wasmtime::Result<()> {
    use FirstArg::Plain;

    host!(
        l,
        E,
        "proxy_set_property",
        Plain,
        |c, key_ptr: u32, key_size: u32, value_ptr: u32, value_size: u32| {
            let (key, value) = read_pair(c, (key_ptr, key_size), (value_ptr, value_size))?;
            let ctx = c.data().context();
            let status = match c.data_mut().streams.get_mut(&ctx) {
                Some(stream) => {
                    match stream
                        .filter_state
                        .iter_mut()
                        .find(|(name, _)| *name == key)
                    {
                        Some(slot) => slot.1 = value.clone(),
                        None => stream.filter_state.push((key.clone(), value.clone())),
                    }
                    OK
                }
                // Root contexts have no stream info: Envoy answers NOT_FOUND.
                None => NOT_FOUND,
            };
            Ok(answer(status).strs([key, value]))
        }
    );

    host!(
        l,
        E,
        "proxy_get_property",
        Plain,
        |c, path_ptr: u32, path_size: u32, ptr_ptr: u32, size_ptr: u32| {
            let path = read(c, path_ptr, path_size)?
                .ok_or_else(|| answer(IMA).nums(&[path_ptr, path_size]))?;
            let ctx = c.data().context();
            match lookup_property(c.data(), ctx, &path) {
                Ok(value) => {
                    let status = wrote(copy_out(c, &value, ptr_ptr, size_ptr)?);
                    Ok(answer(status).strs([path]).result(value))
                }
                Err(status) => Ok(answer(status).strs([path])),
            }
        }
    );

    Ok(())
}
