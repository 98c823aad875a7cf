//! `proxy_http_call`: an HTTP callout the test answers.

use wasmtime::Linker;

use super::HostState;
use super::HttpCallout;
use super::call::{BAD_ARGUMENT, E, IMA, OK, answer, host};
use super::memory::{read, set_u32};
use crate::headers::{HeaderMap, parse_pairs};
use crate::trace::FirstArg;

/// Registers this family's host functions.
pub(super) fn register(l: &mut Linker<HostState>) -> wasmtime::Result<()> {
    use FirstArg::Plain;

    host!(
        l,
        E,
        "proxy_http_call",
        Plain,
        |c,
         uri_ptr: u32,
         uri_size: u32,
         headers_ptr: u32,
         headers_size: u32,
         body_ptr: u32,
         body_size: u32,
         trailers_ptr: u32,
         trailers_size: u32,
         timeout: u32,
         token_ptr: u32| {
            let uri = read(c, uri_ptr, uri_size)?;
            let body = read(c, body_ptr, body_size)?;
            let headers = read(c, headers_ptr, headers_size)?;
            let trailers = read(c, trailers_ptr, trailers_size)?;
            let (Some(uri), Some(body), Some(headers), Some(trailers)) =
                (uri, body, headers, trailers)
            else {
                return Ok(answer(IMA).nums(&[uri_ptr, uri_size]));
            };
            if !set_u32(c, token_ptr, 0)? {
                return Ok(answer(IMA).strs([uri]));
            }
            let headers = HeaderMap::from_pairs(parse_pairs(&headers));
            let trailers = HeaderMap::from_pairs(parse_pairs(&trailers));
            let cluster = String::from_utf8_lossy(&uri).into_owned();
            let state = c.data_mut();
            let valid = (timeout as i32) >= 0
                && state.clusters.contains(&cluster)
                && headers.get(b":path").is_some()
                && headers.get(b":method").is_some()
                && headers.get(b":authority").is_some();
            if !valid {
                return Ok(answer(BAD_ARGUMENT).nums(&[timeout]).strs([uri]));
            }
            let mut headers = headers;
            if !body.is_empty() {
                headers.replace(b"content-length", body.len().to_string().as_bytes());
            }
            state.next_http_call += 4;
            let token = state.next_http_call;
            let origin_context_id = state.context();
            let context_id = state.root_of(origin_context_id);
            let deadline =
                (timeout > 0).then(|| state.world.now_ns + u64::from(timeout) * 1_000_000);
            state.http_callouts.insert(
                token,
                HttpCallout {
                    token,
                    context_id,
                    origin_context_id,
                    cluster,
                    headers,
                    body,
                    trailers,
                    timeout_ms: timeout,
                    deadline,
                },
            );
            let _ = set_u32(c, token_ptr, token)?;
            Ok(answer(OK).nums(&[timeout, token]).strs([uri]))
        }
    );

    Ok(())
}
