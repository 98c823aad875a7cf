//! HTTP and gRPC callouts and foreign functions, answered by the test.

use super::*;

impl Sim {
    /// HTTP callouts of the active worker's VM waiting for an answer, by token.
    pub fn http_callouts(&self) -> Vec<HttpCallout> {
        self.store.data().http_callouts.values().cloned().collect()
    }

    /// gRPC calls and streams in flight on the active worker's VM, by token.
    pub fn grpc_callouts(&self) -> Vec<GrpcCallout> {
        self.store
            .data()
            .grpc_callouts
            .values()
            .filter(|callout| !callout.remote_closed)
            .cloned()
            .collect()
    }

    /// Answers an HTTP callout: `proxy_on_http_call_response` runs on the calling root context
    /// with the response's header count, body size and trailer count.
    pub fn respond_http_call(
        &mut self,
        token: u32,
        headers: &[(&str, &str)],
        body: &[u8],
        trailers: &[(&str, &str)],
    ) -> Outcome {
        let response = HttpResponseData {
            headers: HeaderMap::from_pairs(headers.iter().copied()),
            body: body.to_vec(),
            trailers: (!trailers.is_empty())
                .then(|| HeaderMap::from_pairs(trailers.iter().copied())),
        };
        self.deliver_http_response(token, Some(response))
    }

    /// Fails an HTTP callout (a reset): `proxy_on_http_call_response(…, 0, 0, 0)` and
    /// `proxy_get_status` gives BROKEN_CONNECTION "reset" during it.
    pub fn fail_http_call(&mut self, token: u32) -> Outcome {
        self.deliver_http_response(token, None)
    }

    pub(super) fn deliver_http_response(
        &mut self,
        token: u32,
        response: Option<HttpResponseData>,
    ) -> Outcome {
        let Some(callout) = self.store.data_mut().http_callouts.remove(&token) else {
            return Outcome::NotDelivered;
        };
        let ctx = callout.context_id;
        if self.store.data().failed {
            return Outcome::NotDelivered;
        }
        let plugin = self.store.data().root_contexts.get(&ctx).copied();
        let (headers, body, trailers) = match &response {
            Some(response) => (
                response.headers.len() as u32,
                response.body.len() as u32,
                response.trailers.as_ref().map_or(0, HeaderMap::len) as u32,
            ),
            None => {
                if let Some(plugin) = plugin {
                    let plugin = &mut self.store.data_mut().plugins[plugin];
                    plugin.status_code = Status::BrokenConnection as u32;
                    plugin.status_message = b"reset".to_vec();
                }
                (0, 0, 0)
            }
        };
        self.store.data_mut().http_call_response = response;
        let result = match self.exports.on_http_call_response.clone() {
            Some(func) => self.call(
                "proxy_on_http_call_response",
                ctx,
                func,
                (ctx, token, headers, body, trailers),
            ),
            None => Ok(()),
        };
        let state = self.store.data_mut();
        state.http_call_response = None;
        if let Some(plugin) = plugin {
            state.plugins[plugin].status_message.clear();
        }
        if result.is_err() {
            return self.trapped();
        }
        self.top_level_outcome()
    }

    /// A gRPC call or stream that can still get events (not closed by the remote side).
    pub(super) fn open_grpc_callout(&self, token: u32) -> Option<GrpcCallout> {
        let callout = self.store.data().grpc_callouts.get(&token)?;
        (!callout.remote_closed).then(|| callout.clone())
    }

    /// Answers a gRPC call successfully: `proxy_on_grpc_receive` with the message.
    pub fn respond_grpc_call(&mut self, token: u32, message: &[u8]) -> Outcome {
        let Some(callout) = self.store.data_mut().grpc_callouts.remove(&token) else {
            return Outcome::NotDelivered;
        };
        let ctx = callout.context_id;
        self.receive_grpc_message(ctx, token, message)
    }

    /// `proxy_on_grpc_receive` with `message` readable as the gRPC receive buffer.
    pub(super) fn receive_grpc_message(&mut self, ctx: u32, token: u32, message: &[u8]) -> Outcome {
        self.store.data_mut().grpc_receive_buffer = Some(message.to_vec());
        let result = match self.exports.on_grpc_receive.clone() {
            Some(func) => self.call(
                "proxy_on_grpc_receive",
                ctx,
                func,
                (ctx, token, message.len() as u32),
            ),
            None => Ok(()),
        };
        self.store.data_mut().grpc_receive_buffer = None;
        if result.is_err() {
            return self.trapped();
        }
        self.top_level_outcome()
    }

    /// Closes a gRPC call or stream from the remote side: trailing metadata (if any), then
    /// `proxy_on_grpc_close` with the status; `proxy_get_status` gives (status, message) during it.
    pub fn close_grpc(
        &mut self,
        token: u32,
        trailing_metadata: &[(&str, &str)],
        status: u32,
        message: &str,
    ) -> Outcome {
        let Some(callout) = self.open_grpc_callout(token) else {
            return Outcome::NotDelivered;
        };
        if !trailing_metadata.is_empty() {
            let ctx = callout.context_id;
            let map = HeaderMap::from_pairs(trailing_metadata.iter().copied());
            let n = map.len() as u32;
            self.store.data_mut().grpc_trailing_metadata = Some(map);
            let result = match self.exports.on_grpc_receive_trailing_metadata.clone() {
                Some(func) => self.call(
                    "proxy_on_grpc_receive_trailing_metadata",
                    ctx,
                    func,
                    (ctx, token, n),
                ),
                None => Ok(()),
            };
            self.store.data_mut().grpc_trailing_metadata = None;
            if result.is_err() {
                return self.trapped();
            }
        }
        if !callout.is_stream || callout.local_closed {
            self.store.data_mut().grpc_callouts.remove(&token);
        } else if let Some(open) = self.store.data_mut().grpc_callouts.get_mut(&token) {
            open.remote_closed = true;
        }
        let ctx = callout.context_id;
        let plugin = self.store.data().root_contexts.get(&ctx).copied();
        if let Some(plugin) = plugin {
            let plugin = &mut self.store.data_mut().plugins[plugin];
            plugin.status_code = status;
            plugin.status_message = message.as_bytes().to_vec();
        }
        let result = match self.exports.on_grpc_close.clone() {
            Some(func) => self.call("proxy_on_grpc_close", ctx, func, (ctx, token, status)),
            None => Ok(()),
        };
        if let Some(plugin) = plugin {
            self.store.data_mut().plugins[plugin].status_message.clear();
        }
        if result.is_err() {
            return self.trapped();
        }
        self.top_level_outcome()
    }

    /// Sends a message on a gRPC stream from the remote side (`proxy_on_grpc_receive`), with
    /// optional initial metadata first.
    pub fn grpc_stream_message(
        &mut self,
        token: u32,
        initial_metadata: &[(&str, &str)],
        message: &[u8],
    ) -> Outcome {
        let Some(callout) = self.open_grpc_callout(token) else {
            return Outcome::NotDelivered;
        };
        let ctx = callout.context_id;
        if !initial_metadata.is_empty() {
            let map = HeaderMap::from_pairs(initial_metadata.iter().copied());
            let n = map.len() as u32;
            self.store.data_mut().grpc_initial_metadata = Some(map);
            let result = match self.exports.on_grpc_receive_initial_metadata.clone() {
                Some(func) => self.call(
                    "proxy_on_grpc_receive_initial_metadata",
                    ctx,
                    func,
                    (ctx, token, n),
                ),
                None => Ok(()),
            };
            self.store.data_mut().grpc_initial_metadata = None;
            if result.is_err() {
                return self.trapped();
            }
        }
        self.receive_grpc_message(ctx, token, message)
    }

    /// Calls `proxy_on_foreign_function(root, function_id, size)` with this call data
    /// (buffer 8), as an Envoy extension would.
    pub fn call_on_foreign_function(
        &mut self,
        root_id: &str,
        function_id: u32,
        data: &[u8],
    ) -> Result<Outcome, Error> {
        let ctx = self.root_context_id(root_id)?;
        self.store.data_mut().call_data = data.to_vec();
        let result = match self.exports.on_foreign_function.clone() {
            Some(func) => self.call(
                "proxy_on_foreign_function",
                ctx,
                func,
                (ctx, function_id, data.len() as u32),
            ),
            None => Ok(()),
        };
        if result.is_err() {
            return Ok(self.trapped());
        }
        Ok(self.top_level_outcome())
    }
}
