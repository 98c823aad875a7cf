//! Several plugins in one HTTP filter chain, as Envoy's filter manager runs them
//! (`source/common/http/filter_manager.cc`, `source/extensions/common/wasm/context.cc`).
//!
//! Each plugin's filter is a stream context of its own (ids allocated in chain order, as Envoy
//! creates the filters). What one filter lets through goes to the next: requests in chain
//! order, responses in reverse. The rules, each from Envoy:
//! - A filter that stops iteration holds everything after it until it continues; later
//!   filters see nothing meanwhile.
//! - A filter's context is created in the VM by its first request-headers callback
//!   (`Context::decodeHeaders` calls `onCreate`); a filter whose decoder never ran lets every
//!   response event pass without calling the VM (`in_vm_context_created_`), and is not
//!   logged or destroyed in the VM either.
//! - A local reply before any response started goes through every encoder filter, from the
//!   last one (`sendLocalReplyViaFilterChain` → `encodeHeaders(nullptr, …)`), and stops the
//!   request; once a response started (upstream headers entered the encoders, or a local
//!   reply is already on its way) it goes directly to the codec (`sendDirectLocalReply`);
//!   once the response headers reached the client the stream is reset.
//! - A filter that failed (a trap) answers 503 `wasm_fail_stream` and its own encoder
//!   callbacks are skipped (`failure_local_reply_sent_`).
//! - `proxy_close_stream` resets the whole stream.

use super::stream::Event;
use super::*;
use crate::hcm;

/// What reached one side of the chain: the client (response) or the upstream (request).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Side {
    /// Headers, once they left the chain.
    pub headers: Option<HeaderMap>,
    /// Body bytes that left the chain.
    pub body: Vec<u8>,
    /// Trailers, if any left the chain.
    pub trailers: Option<HeaderMap>,
    /// The last event left the chain (end of stream).
    pub ended: bool,
}

impl Side {
    fn take(&mut self, item: Passed) {
        if self.ended {
            // Nothing follows the end of a stream on the wire.
            return;
        }
        match item {
            Passed::Headers(headers, eos) => {
                self.headers = Some(headers);
                self.ended |= eos;
            }
            Passed::Body(body, eos) => {
                self.body.extend_from_slice(&body);
                self.ended |= eos;
            }
            Passed::Trailers(trailers) => {
                self.trailers = Some(trailers);
                self.ended = true;
            }
        }
    }
}

/// The chain's own state: where the stream stands between the filters.
#[derive(Debug, Default)]
struct ChainState {
    /// A response entered the encoder filters (upstream headers or a local reply).
    response_started: bool,
    /// The request stopped (a local reply): nothing more goes upstream.
    request_stopped: bool,
    /// The stream is over for the filters: reset, or a direct reply went to the codec.
    done: bool,
    /// The request is gRPC / HEAD (as the first filter received it).
    grpc: bool,
    head: bool,
    upstream: Side,
    client: Side,
    reset: bool,
    local_reply: Option<LocalReply>,
    /// The client's request had ended (Envoy's `remoteDecodeComplete`).
    request_in_ended: bool,
    /// The response headers reached the client before the request ended.
    early_response: bool,
    /// A local reply's body, sent once its headers went through every filter.
    reply_body: Option<Vec<u8>>,
    /// The connection manager added `x-forwarded-proto` before the filters (the exchange
    /// model does; tests that drive a chain directly may not).
    forwarded_proto_added: bool,
    /// The router found no route: nothing more goes upstream.
    no_route: bool,
}

/// An HTTP stream through several plugins' filters in chain order (see the module header).
pub struct Chain<'a> {
    sim: &'a mut Sim,
    ids: Vec<u32>,
    worker: usize,
    state: ChainState,
    completed: bool,
}

impl std::fmt::Debug for Chain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chain")
            .field("ids", &self.ids)
            .finish_non_exhaustive()
    }
}

impl Sim {
    /// Creates a stream through the plugins with these root_ids, in filter-chain order, on
    /// the active worker. `sim.chain(&["a"])` is `sim.stream("a")` with the chain's view
    /// (what reached the upstream and the client).
    pub fn chain(&mut self, root_ids: &[&str]) -> Result<Chain<'_>, Error> {
        self.maybe_reload();
        let generation = self.generation;
        let mut ids = Vec::new();
        for root_id in root_ids {
            let state = self.store.data();
            let plugin = state
                .plugins
                .iter()
                .position(|plugin| plugin.root_id == *root_id)
                .ok_or_else(|| Error::UnknownRootId((*root_id).to_string()))?;
            let root = state.plugins[plugin].root_context_id;
            let id = self.next_context_id;
            self.next_context_id += 1;
            self.store.data_mut().streams.insert(
                id,
                StreamData {
                    generation,
                    plugin,
                    root,
                    chained: true,
                    ..StreamData::default()
                },
            );
            ids.push(id);
        }
        let worker = self.active;
        Ok(Chain {
            sim: self,
            ids,
            worker,
            state: ChainState::default(),
            completed: false,
        })
    }
}

impl Chain<'_> {
    /// The filters' context ids, in chain order.
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }

    /// The simulation, e.g. to answer a callout; call [`Chain::pump`] afterwards.
    pub fn sim(&mut self) -> &mut Sim {
        self.sim
    }

    /// What reached the upstream: the request as it left the last filter.
    pub fn upstream(&self) -> &Side {
        &self.state.upstream
    }

    /// What reached the client: the response as it left the first filter (or a direct
    /// local reply).
    pub fn client(&self) -> &Side {
        &self.state.client
    }

    /// Whether the stream was reset (`proxy_close_stream`, or a local reply after the
    /// response headers reached the client).
    pub fn was_reset(&self) -> bool {
        self.state.reset
    }

    /// The local reply that answered the stream, if any.
    pub fn local_reply(&self) -> Option<&LocalReply> {
        self.state.local_reply.as_ref()
    }

    /// Whether the response headers reached the client before the client's request ended,
    /// or while the upstream had only part of it (Envoy then closes an HTTP/1.1 connection:
    /// `connection: close`).
    pub fn responded_early(&self) -> bool {
        self.state.early_response
    }

    /// Whether the request side is over for the chain (answered locally or reset).
    pub fn request_stopped(&self) -> bool {
        self.state.request_stopped || self.state.done
    }

    /// Request headers from downstream into the first filter.
    pub fn send_request_headers(&mut self, headers: HeaderMap, end_of_stream: bool) -> Outcome {
        self.state.grpc = hcm::is_grpc(&headers);
        self.state.head = headers.get(b":method") == Some(b"HEAD");
        self.state.forwarded_proto_added = headers.get(b"x-forwarded-proto").is_some();
        self.request_into(0, Passed::Headers(headers, end_of_stream))
    }

    /// A request body chunk into the first filter.
    pub fn send_request_body(&mut self, body: &[u8], end_of_stream: bool) -> Outcome {
        self.request_into(0, Passed::Body(body.to_vec(), end_of_stream))
    }

    /// Request trailers into the first filter.
    pub fn send_request_trailers(&mut self, trailers: HeaderMap) -> Outcome {
        self.request_into(0, Passed::Trailers(trailers))
    }

    /// Response headers from upstream into the last filter.
    pub fn send_response_headers(&mut self, headers: HeaderMap, end_of_stream: bool) -> Outcome {
        if self.state.done || self.state.response_started {
            return Outcome::NotDelivered;
        }
        self.state.response_started = true;
        self.response_into(self.ids.len(), Passed::Headers(headers, end_of_stream))
    }

    /// A response body chunk from upstream into the last filter.
    pub fn send_response_body(&mut self, body: &[u8], end_of_stream: bool) -> Outcome {
        if self.state.local_reply.is_some() {
            return Outcome::NotDelivered;
        }
        self.response_into(self.ids.len(), Passed::Body(body.to_vec(), end_of_stream))
    }

    /// Response trailers from upstream into the last filter.
    pub fn send_response_trailers(&mut self, trailers: HeaderMap) -> Outcome {
        if self.state.local_reply.is_some() {
            return Outcome::NotDelivered;
        }
        self.response_into(self.ids.len(), Passed::Trailers(trailers))
    }

    fn request_into(&mut self, index: usize, item: Passed) -> Outcome {
        // Envoy's `maybeEndDecode` runs before the filters see the last event.
        self.state.request_in_ended |= matches!(
            item,
            Passed::Headers(_, true) | Passed::Body(_, true) | Passed::Trailers(_)
        );
        if self.state.done || self.state.request_stopped || self.completed {
            return Outcome::NotDelivered;
        }
        let outcome = self.deliver_request(index, item);
        self.pump();
        self.summarize(outcome)
    }

    fn response_into(&mut self, above: usize, item: Passed) -> Outcome {
        if self.state.done || self.completed {
            return Outcome::NotDelivered;
        }
        let outcome = self.deliver_response(above, item);
        self.pump();
        self.summarize(outcome)
    }

    fn summarize(&self, outcome: Outcome) -> Outcome {
        if self.state.reset {
            return Outcome::Reset;
        }
        if let Some(reply) = &self.state.local_reply {
            return Outcome::LocalReply {
                status_code: reply.status_code,
            };
        }
        outcome
    }

    fn data(&self, index: usize) -> Option<&StreamData> {
        self.sim.state_of(self.worker).streams.get(&self.ids[index])
    }

    fn data_mut(&mut self, index: usize) -> Option<&mut StreamData> {
        self.sim.switch_to(self.worker);
        self.sim.store.data_mut().streams.get_mut(&self.ids[index])
    }

    fn deliver_request(&mut self, index: usize, item: Passed) -> Outcome {
        if index == self.ids.len() {
            if let Passed::Headers(headers, _) = &item
                && self.state.forwarded_proto_added
                && (headers.get(b"x-forwarded-proto").is_none() || headers.get(b":path").is_none())
            {
                return self.no_route();
            }
            if !self.state.no_route {
                if matches!(item, Passed::Headers(..)) {
                    // The router picks the upstream host: every filter's `upstream.*` answers.
                    for index in 0..self.ids.len() {
                        if let Some(stream) = self.data_mut(index) {
                            stream.upstream_selected = true;
                        }
                    }
                }
                self.state.upstream.take(item);
            }
            return Outcome::Continue;
        }
        self.sim.switch_to(self.worker);
        self.sim.send(self.ids[index], false, event_of(item))
    }

    /// Delivers a response event to the nearest filter below `above` whose context exists
    /// and did not fail, or to the client.
    fn deliver_response(&mut self, above: usize, item: Passed) -> Outcome {
        let target = (0..above).rev().find(|index| {
            self.data(*index)
                .is_some_and(|data| data.created && !data.ended)
        });
        match target {
            Some(index) => {
                self.sim.switch_to(self.worker);
                self.sim.send(self.ids[index], true, event_of(item))
            }
            None => {
                self.deliver_to_client(item);
                Outcome::Continue
            }
        }
    }

    fn deliver_to_client(&mut self, item: Passed) {
        if matches!(item, Passed::Headers(..)) {
            // Seen in Envoy 1.40 (`connection: close` over HTTP/1.1): the client's request
            // had not ended, or the upstream had part of it.
            let upstream = &self.state.upstream;
            let partial_upstream = upstream.headers.is_some() && !upstream.ended;
            self.state.early_response = !self.state.request_in_ended || partial_upstream;
        }
        self.state.client.take(item);
    }

    /// Moves what each filter let through to the next one, and routes local replies and
    /// resets, until nothing moves. Call it after acting on the sim directly (a callout
    /// answer, `advance`).
    pub fn pump(&mut self) {
        for _round in 0..100_000 {
            if self.state.done {
                return;
            }
            if !self.step() {
                return;
            }
        }
    }

    fn step(&mut self) -> bool {
        let n = self.ids.len();
        for index in 0..n {
            if self.data(index).is_some_and(|data| data.reset.is_some()) {
                self.reset();
                return true;
            }
            if let Some(reply) = self
                .data_mut(index)
                .and_then(|data| data.chain_reply.take())
            {
                self.route_local_reply(reply);
                return true;
            }
        }
        for index in 0..n {
            let items = self
                .data_mut(index)
                .map(|data| std::mem::take(&mut data.passed[0]))
                .unwrap_or_default();
            if items.is_empty() {
                continue;
            }
            if !self.state.request_stopped {
                for item in items {
                    self.deliver_request(index + 1, item);
                }
            }
            return true;
        }
        for index in (0..n).rev() {
            let items = self
                .data_mut(index)
                .map(|data| std::mem::take(&mut data.passed[1]))
                .unwrap_or_default();
            if items.is_empty() {
                continue;
            }
            for item in items {
                self.deliver_response(index, item);
            }
            return true;
        }
        for index in 0..n {
            for direction in [0, 1] {
                let pending = self
                    .data_mut(index)
                    .map(|data| std::mem::take(&mut data.held_pending[direction]))
                    .unwrap_or(false);
                if pending {
                    let ctx = self.ids[index];
                    self.sim.switch_to(self.worker);
                    self.sim.deliver_held(ctx, direction == 1);
                    self.sim.after_top_level();
                    return true;
                }
            }
        }
        if let Some(body) = self.state.reply_body.take() {
            self.deliver_response(n, Passed::Body(body, true));
            return true;
        }
        false
    }

    fn reset(&mut self) {
        self.state.reset = true;
        self.state.done = true;
        self.state.request_stopped = true;
        let note = self.ids[0];
        self.sim.switch_to(self.worker);
        self.sim
            .store
            .data_mut()
            .world
            .trace
            .note("chain reset", note, &[], &[]);
    }

    /// The router's 404 when the request headers match no route. The route is looked up again
    /// only after a filter changed the request headers (Envoy's wasm `onHeadersModified` clears
    /// the route cache); the connection manager added `x-forwarded-proto` before the filters,
    /// so a missing one means a filter removed it, and Envoy's route matcher finds no route
    /// for a request without it (seen in Envoy 1.40: `header-set-pairs-request-replaces-all`
    /// is answered 404 `route_not_found`, and routed when the pairs keep `x-forwarded-proto`).
    fn no_route(&mut self) -> Outcome {
        self.state.no_route = true;
        self.route_local_reply(LocalReply {
            status_code: 404,
            details: "route_not_found".into(),
            body: Vec::new(),
            headers: Vec::new(),
            grpc_status: None,
        });
        Outcome::LocalReply { status_code: 404 }
    }

    fn route_local_reply(&mut self, reply: LocalReply) {
        let (headers, body) = hcm::local_reply(&reply, self.state.grpc, self.state.head);
        if self.state.client.headers.is_some() {
            // The response headers reached the client: all Envoy can do is reset.
            self.reset();
            return;
        }
        self.state.request_stopped = true;
        for index in 0..self.ids.len() {
            if let Some(data) = self.data_mut(index) {
                data.chain_local_reply = Some((reply.status_code, reply.details.clone()));
            }
        }
        self.state.local_reply = Some(reply);
        if self.state.response_started {
            // Directly to the codec, without the filters.
            self.state.client = Side::default();
            let end = body.is_empty();
            self.deliver_to_client(Passed::Headers(headers, end));
            if !end {
                self.deliver_to_client(Passed::Body(body, true));
            }
            self.state.done = true;
            return;
        }
        self.state.response_started = true;
        let n = self.ids.len();
        let end = body.is_empty();
        // The headers go through every filter before the body does.
        self.deliver_response(n, Passed::Headers(headers, end));
        if !end {
            self.state.reply_body = Some(body);
        }
    }

    /// Ends the stream as Envoy does: `proxy_on_log` for every filter whose context exists,
    /// in chain order, then `proxy_on_done` and `proxy_on_delete` for each.
    pub fn complete(&mut self) -> Outcome {
        if self.completed {
            return Outcome::NotDelivered;
        }
        self.completed = true;
        self.sim.switch_to(self.worker);
        let created: Vec<u32> = (0..self.ids.len())
            .filter(|index| self.data(*index).is_some_and(|data| data.created))
            .map(|index| self.ids[index])
            .collect();
        let sim = &mut *self.sim;
        let mut outcome = Outcome::Continue;
        let failed = |sim: &Sim, ctx: u32| sim.vm_failed_for(ctx) || sim.store.data().failed;
        for ctx in &created {
            if failed(sim, *ctx) {
                continue;
            }
            sim.stream_mut(*ctx).access_log_phase = true;
            if let Some(func) = sim.exports.on_log.clone()
                && sim.call("proxy_on_log", *ctx, func, *ctx).is_err()
            {
                outcome = sim.trapped();
            }
            if let Some(stream) = sim.store.data_mut().streams.get_mut(ctx) {
                stream.access_log_phase = false;
            }
        }
        for ctx in &created {
            if failed(sim, *ctx) {
                continue;
            }
            let result = (|| -> Result<(), String> {
                if let Some(func) = sim.exports.on_done.clone() {
                    sim.call("proxy_on_done", *ctx, func, *ctx)?;
                }
                if let Some(func) = sim.exports.on_delete.clone() {
                    sim.call("proxy_on_delete", *ctx, func, *ctx)?;
                }
                Ok(())
            })();
            if result.is_err() {
                outcome = sim.trapped();
            }
        }
        if !sim.store.data().failed {
            sim.after_top_level();
        }
        for ctx in &self.ids {
            sim.store.data_mut().streams.remove(ctx);
        }
        outcome
    }
}

fn event_of(item: Passed) -> Event {
    match item {
        Passed::Headers(headers, eos) => Event::Headers(headers, eos),
        Passed::Body(body, eos) => Event::Body(body, eos),
        Passed::Trailers(trailers) => Event::Trailers(trailers),
    }
}
