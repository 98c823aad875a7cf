//! The stream path: a stream's events through one filter's guest callbacks, applying the
//! filter manager's decisions (`filter_manager.rs`): pauses, held events, buffering and the
//! buffer limit, local replies.

use super::filter_manager::{
    self, BodyPath, BodyVerdict, HeldEvent, ReplyRoute, StreamFacts, Waiting,
};
use super::*;

impl Sim {
    pub(super) fn stream_mut(&mut self, ctx: u32) -> &mut StreamData {
        self.store
            .data_mut()
            .streams
            .get_mut(&ctx)
            .expect("stream exists while its handle lives")
    }

    pub(super) fn ensure_created(&mut self, ctx: u32) -> Result<(), String> {
        let stream = self.stream_mut(ctx);
        if stream.created {
            return Ok(());
        }
        stream.created = true;
        let root = stream.root;
        if self.store.data().failed {
            return Ok(());
        }
        if let Some(func) = self.exports.on_context_create.clone() {
            self.call("proxy_on_context_create", ctx, func, (ctx, root))?;
        }
        Ok(())
    }

    pub(super) fn outcome_after(&mut self, ctx: u32, result: Result<Outcome, String>) -> Outcome {
        let outcome = match result {
            Err(_) => {
                let trapped = self.trapped();
                let _ = self.fail_stream(ctx);
                return trapped;
            }
            Ok(outcome) => outcome,
        };
        self.after_top_level();
        let Some(stream) = self.store.data().streams.get(&ctx) else {
            return outcome;
        };
        if let (Some(reply), true) = (&stream.local_reply, stream.ended) {
            return Outcome::LocalReply {
                status_code: reply.status_code,
            };
        }
        if stream.reset.is_some() {
            return Outcome::Reset;
        }
        outcome
    }

    pub(super) fn headers_pause(&self, ctx: u32, result: u32) -> Option<Pause> {
        let state = self.store.data();
        let allow = state
            .streams
            .get(&ctx)
            .is_some_and(|stream| state.plugins[stream.plugin].allow_on_headers_stop_iteration);
        filter_manager::headers_pause(result, allow, state.stop_next_iteration)
    }

    pub(super) fn deliver_headers(
        &mut self,
        ctx: u32,
        response: bool,
        headers: HeaderMap,
        end_of_stream: bool,
    ) -> Result<Outcome, String> {
        self.ensure_created(ctx)?;
        let n = headers.len() as u32;
        let stream = self.stream_mut(ctx);
        stream.end_of_stream = end_of_stream;
        if response {
            stream.response_headers = headers;
            stream.avail |= avail::RESPONSE_HEADERS;
            stream.response_started = true;
        } else {
            stream.request_headers = headers;
            stream.avail |= avail::REQUEST_HEADERS;
        }
        let eos = u32::from(end_of_stream);
        let result = if response {
            match (
                self.exports.on_response_headers.clone(),
                self.exports.on_response_headers_01.clone(),
            ) {
                (Some(func), _) => {
                    self.call("proxy_on_response_headers", ctx, func, (ctx, n, eos))?
                }
                (None, Some(func)) => {
                    self.call("proxy_on_response_headers", ctx, func, (ctx, n))?
                }
                (None, None) => 0,
            }
        } else {
            self.stream_mut(ctx).in_request_headers_callback = true;
            let result = match (
                self.exports.on_request_headers.clone(),
                self.exports.on_request_headers_01.clone(),
            ) {
                (Some(func), _) => self.call("proxy_on_request_headers", ctx, func, (ctx, n, eos)),
                (None, Some(func)) => self.call("proxy_on_request_headers", ctx, func, (ctx, n)),
                (None, None) => Ok(0),
            };
            if let Some(stream) = self.store.data_mut().streams.get_mut(&ctx) {
                stream.in_request_headers_callback = false;
            }
            result?
        };
        self.continue_in_own_callback(ctx, response, end_of_stream);
        let pause = self.headers_pause(ctx, result);
        let stream = self.stream_mut(ctx);
        let bit = if response {
            avail::RESPONSE_HEADERS
        } else {
            avail::REQUEST_HEADERS
        };
        match pause {
            None => {
                stream.avail &= !bit;
                stream.release_headers(response, end_of_stream);
                Ok(Outcome::Continue)
            }
            Some(Pause::StopIteration) => Ok(Outcome::Paused(Pause::StopIteration)),
            Some(pause) => {
                if response {
                    stream.response_paused = true;
                } else {
                    stream.request_paused = true;
                }
                Ok(Outcome::Paused(pause))
            }
        }
    }

    pub(super) fn deliver_body(
        &mut self,
        ctx: u32,
        response: bool,
        chunk: Vec<u8>,
        end_of_stream: bool,
    ) -> Result<Outcome, String> {
        let limit = self.buffer_limit;
        let stream = self.stream_mut(ctx);
        let mut path = stream.body_path(response);
        if path.receive(&chunk, limit).is_err() {
            return Ok(self.payload_too_large(ctx, response));
        }
        let size = path.body.len() as u32;
        let had_trailers = if response {
            stream.response_trailers.is_some()
        } else {
            stream.request_trailers.is_some()
        };
        stream.end_of_stream = end_of_stream;
        stream.avail |= if response {
            avail::RESPONSE_BODY
        } else {
            avail::REQUEST_BODY
        };
        let eos = u32::from(end_of_stream);
        let func = if response {
            self.exports.on_response_body.clone()
        } else {
            self.exports.on_request_body.clone()
        };
        let name = if response {
            "proxy_on_response_body"
        } else {
            "proxy_on_request_body"
        };
        let result = match func {
            Some(func) => self.call(name, ctx, func, (ctx, size, eos))?,
            None => 0,
        };
        self.continue_in_own_callback(ctx, response, false);
        let pause = filter_manager::data_pause(result, self.store.data().stop_next_iteration);
        let stream = self.stream_mut(ctx);
        match stream.body_path(response).answered(pause, limit) {
            BodyVerdict::Released(released) => {
                stream.avail &= !if response {
                    avail::RESPONSE_BODY
                } else {
                    avail::REQUEST_BODY
                };
                // Continuing the body also lets headers held by StopIteration go.
                stream.release_headers(response, false);
                // Trailers the filter added in this last body callback follow the body
                // (Envoy `addDecodedTrailers`, seen in Envoy 1.40 reaching the upstream).
                let added = if response {
                    stream.response_trailers.clone()
                } else {
                    stream.request_trailers.clone()
                }
                .filter(|_| end_of_stream && !had_trailers);
                match added {
                    Some(trailers) => {
                        stream.record(response, Passed::Body(released, false));
                        stream.record(response, Passed::Trailers(trailers));
                    }
                    None => stream.record(response, Passed::Body(released, end_of_stream)),
                }
                Ok(Outcome::Continue)
            }
            BodyVerdict::TooLarge => Ok(self.payload_too_large(ctx, response)),
            BodyVerdict::Paused(pause) => Ok(Outcome::Paused(pause)),
        }
    }

    /// A `proxy_continue_stream` a chained filter asked for in its own headers or body
    /// callback, in the same direction: Envoy runs it when the VM call returns, before it
    /// handles the callback's answer (cpp-host `DeferAfterCallActions`), so the held headers
    /// go on at once, ending the stream when the request had ended and nothing is buffered
    /// (the chunk in the callback is not buffered yet). Seen in Envoy 1.40: with
    /// `allow_on_headers_stop_iteration`, a continue from the last body callback sends the
    /// headers with end_stream and the body never reaches the upstream.
    fn continue_in_own_callback(&mut self, ctx: u32, response: bool, headers_eos: bool) {
        let stream_type = u32::from(response);
        let state = self.store.data_mut();
        if !state.streams.get(&ctx).is_some_and(|stream| stream.chained) {
            return;
        }
        let Some(index) = state.after.iter().position(|action| {
            matches!(action, After::Continue { context_id, stream_type: t }
                if *context_id == ctx && *t == stream_type)
        }) else {
            return;
        };
        state.after.remove(index);
        let stream = self.stream_mut(ctx);
        let (in_ended, queue_empty, held_empty, buffering) = if response {
            (
                stream.response_in_ended,
                stream.response_queue.is_empty(),
                stream.response_held.is_empty(),
                stream.response_buffering,
            )
        } else {
            (
                stream.request_in_ended,
                stream.request_queue.is_empty(),
                stream.request_held.is_empty(),
                stream.request_buffering,
            )
        };
        let eos = headers_eos || (in_ended && queue_empty && held_empty && !buffering);
        stream.release_headers(response, eos);
        if !response {
            stream.avail &=
                !(avail::REQUEST_HEADERS | avail::REQUEST_BODY | avail::REQUEST_TRAILERS);
        }
        self.store.data_mut().world.trace.note(
            if response {
                "response continued"
            } else {
                "request continued"
            },
            ctx,
            &[],
            &[],
        );
    }

    /// Envoy answers itself when a buffered body outgrows the buffer limit: 413 for a
    /// request; for a response 500 directly to the codec, or a reset once its headers left.
    fn payload_too_large(&mut self, ctx: u32, response: bool) -> Outcome {
        let reply = filter_manager::payload_too_large(response);
        let code = reply.status_code;
        self.store.data_mut().world.trace.note(
            "local reply by envoy",
            ctx,
            &[u64::from(code)],
            &[reply.details.as_bytes()],
        );
        self.send_local_reply(ctx, reply);
        Outcome::LocalReply { status_code: code }
    }

    pub(super) fn deliver_trailers(
        &mut self,
        ctx: u32,
        response: bool,
        trailers: HeaderMap,
    ) -> Result<Outcome, String> {
        let n = trailers.len() as u32;
        let stream = self.stream_mut(ctx);
        if response {
            stream.response_trailers = Some(trailers);
            stream.avail |= avail::RESPONSE_TRAILERS;
        } else {
            stream.request_trailers = Some(trailers);
            stream.avail |= avail::REQUEST_TRAILERS;
        }
        let func = if response {
            self.exports.on_response_trailers.clone()
        } else {
            self.exports.on_request_trailers.clone()
        };
        let name = if response {
            "proxy_on_response_trailers"
        } else {
            "proxy_on_request_trailers"
        };
        let result = match func {
            Some(func) => self.call(name, ctx, func, (ctx, n))?,
            None => 0,
        };
        let pause = filter_manager::trailers_pause(result, self.store.data().stop_next_iteration);
        let stream = self.stream_mut(ctx);
        match pause {
            None => {
                stream.avail &= !if response {
                    avail::RESPONSE_TRAILERS
                } else {
                    avail::REQUEST_TRAILERS
                };
                stream.release_headers(response, false);
                let released = stream.release_body(response);
                if !released.is_empty() {
                    stream.record(response, Passed::Body(released, false));
                }
                let trailers = if response {
                    stream.response_trailers.clone()
                } else {
                    stream.request_trailers.clone()
                };
                stream.record(response, Passed::Trailers(trailers.unwrap_or_default()));
                Ok(Outcome::Continue)
            }
            Some(pause) => {
                if response {
                    stream.response_paused = true;
                } else {
                    stream.request_paused = true;
                }
                Ok(Outcome::Paused(pause))
            }
        }
    }

    /// Sends an event for a stream through the filter, as Envoy's filter manager does.
    pub(super) fn send(&mut self, ctx: u32, response: bool, event: Event) -> Outcome {
        if self
            .store
            .data()
            .streams
            .get(&ctx)
            .is_none_or(|stream| stream.ended)
        {
            return Outcome::NotDelivered;
        }
        {
            let stream = self.stream_mut(ctx);
            let ended = match &event {
                Event::Headers(_, eos) | Event::Body(_, eos) => *eos,
                Event::Trailers(_) => true,
            };
            if response {
                stream.response_in_ended |= ended;
            } else {
                stream.request_in_ended |= ended;
            }
        }
        if self.vm_failed_for(ctx) {
            if self.failure_policy == FailurePolicy::FailOpen {
                return self.pass_failed_open(ctx, response, event);
            }
            return self.fail_stream(ctx);
        }
        let paused = {
            let stream = self.stream_mut(ctx);
            if response {
                stream.response_paused
            } else {
                stream.request_paused
            }
        };
        if paused && !matches!(event, Event::Headers(..)) {
            let stream = self.stream_mut(ctx);
            let queue = if response {
                &mut stream.response_queue
            } else {
                &mut stream.request_queue
            };
            queue.push(match event {
                Event::Body(body, eos) => Queued::Body(body, eos),
                Event::Trailers(trailers) => Queued::Trailers(trailers),
                Event::Headers(..) => unreachable!("headers are never queued"),
            });
            return Outcome::Paused(Pause::Held);
        }
        let result = match event {
            Event::Headers(headers, eos) => self.deliver_headers(ctx, response, headers, eos),
            Event::Body(body, eos) => self.deliver_body(ctx, response, body, eos),
            Event::Trailers(trailers) => self.deliver_trailers(ctx, response, trailers),
        };
        self.outcome_after(ctx, result)
    }

    /// `proxy_continue_stream` after the callback: Envoy forgets the request maps (for
    /// either direction, as its `Context::continueStream` does), then resumes iteration and
    /// delivers what it held.
    pub(super) fn resume(&mut self, ctx: u32, stream_type: u32) {
        let response = stream_type == 1;
        let Some(stream) = self.store.data_mut().streams.get_mut(&ctx) else {
            return;
        };
        let trailers_avail_before = stream.avail;
        stream.avail &= !(avail::REQUEST_HEADERS | avail::REQUEST_BODY | avail::REQUEST_TRAILERS);
        if stream.ended {
            return;
        }
        let was_paused = if response {
            stream.response_paused
        } else {
            stream.request_paused
        };
        // What Envoy's `commonContinue` passes on: the headers (ending the stream when nothing
        // else came or is held), the buffered body, and trailers the filter stopped at.
        let (queue_empty, in_ended, trailers_stopped) = if response {
            (
                stream.response_queue.is_empty(),
                stream.response_in_ended,
                stream.avail & avail::RESPONSE_TRAILERS != 0,
            )
        } else {
            (
                stream.request_queue.is_empty(),
                stream.request_in_ended,
                trailers_avail_before & avail::REQUEST_TRAILERS != 0,
            )
        };
        if response {
            stream.response_paused = false;
            stream.avail &= !avail::RESPONSE_HEADERS;
        } else {
            stream.request_paused = false;
        }
        let released = stream.release_body(response);
        let continued = filter_manager::on_continue(
            released,
            Waiting {
                in_ended,
                queue_empty,
                trailers_stopped,
            },
        );
        stream.release_headers(response, continued.headers_end_of_stream);
        if let Some((body, end_of_stream)) = continued.body {
            stream.record(response, Passed::Body(body, end_of_stream));
        }
        if continued.trailers {
            let trailers = if response {
                stream.response_trailers.clone()
            } else {
                stream.request_trailers.clone()
            };
            stream.record(response, Passed::Trailers(trailers.unwrap_or_default()));
        }
        self.store.data_mut().world.trace.note(
            if response {
                "response continued"
            } else {
                "request continued"
            },
            ctx,
            &[],
            &[],
        );
        if !was_paused {
            return;
        }
        if let Some(stream) = self.store.data_mut().streams.get_mut(&ctx)
            && stream.chained
        {
            // Envoy's `commonContinue`: the headers go through the later filters first, then
            // the held data comes back to this filter (the chain calls `deliver_held`).
            stream.held_pending[usize::from(response)] = true;
            return;
        }
        self.deliver_held(ctx, response);
    }

    /// Delivers the events Envoy held while the filter was paused: consecutive body chunks
    /// coalesce, as Envoy's buffer does.
    pub(super) fn deliver_held(&mut self, ctx: u32, response: bool) {
        loop {
            let stream = self.stream_mut(ctx);
            let queue = if response {
                &mut stream.response_queue
            } else {
                &mut stream.request_queue
            };
            let Some(event) = filter_manager::next_held(queue) else {
                break;
            };
            let result = match event {
                HeldEvent::Body(body, eos) => self.deliver_body(ctx, response, body, eos),
                HeldEvent::Trailers(trailers) => self.deliver_trailers(ctx, response, trailers),
            };
            match result {
                Err(_) => {
                    let _ = self.fail_stream(ctx);
                    break;
                }
                Ok(Outcome::Continue) => {}
                Ok(_) => break,
            }
        }
    }

    /// Envoy's `DownstreamFilterManager::sendLocalReply`, run after the callback that asked
    /// for it: before any response it goes through the filter chain (the filter's own response
    /// callbacks see it); once the response started but its headers have not left (the filter
    /// stopped them, or this is the response-headers callback itself) it replaces the response
    /// and goes directly to the codec, bypassing the filters; after the headers left, all Envoy
    /// can do is reset the stream.
    pub(super) fn send_local_reply(&mut self, ctx: u32, reply: LocalReply) {
        let failed = self.store.data().failed;
        let Some(stream) = self.store.data_mut().streams.get_mut(&ctx) else {
            return;
        };
        let facts = stream.facts(failed);
        let route = filter_manager::local_reply_route(facts);
        match route {
            ReplyRoute::Ignored => {
                self.store.data_mut().world.trace.note(
                    "local reply ignored",
                    ctx,
                    &[u64::from(reply.status_code)],
                    &[],
                );
                return;
            }
            ReplyRoute::Reset => {
                stream.reset = Some("local_reply_after_response_headers_sent");
                stream.ended = true;
                self.store.data_mut().world.trace.note(
                    "stream reset: local reply after response headers were sent",
                    ctx,
                    &[u64::from(reply.status_code)],
                    &[reply.details.as_bytes()],
                );
                return;
            }
            ReplyRoute::Chain => {
                // The chain routes it (`sim::chain`): through every filter's response
                // callbacks or directly to the codec.
                stream.chain_reply = Some(reply.clone());
                stream.request_paused = false;
                stream.request_queue.clear();
                self.store.data_mut().world.trace.note(
                    "local reply",
                    ctx,
                    &[u64::from(reply.status_code)],
                    &[reply.details.as_bytes()],
                );
                return;
            }
            ReplyRoute::ThroughFilter | ReplyRoute::DirectToCodec => {}
        }
        let (headers, body) = envoy_local_reply(&reply, &stream.request_headers);
        stream.local_reply = Some(reply.clone());
        stream.request_paused = false;
        stream.request_queue.clear();
        self.store.data_mut().world.trace.note(
            if facts.response_started {
                "local reply directly to the codec"
            } else {
                "local reply"
            },
            ctx,
            &[u64::from(reply.status_code)],
            &[reply.details.as_bytes()],
        );
        if route == ReplyRoute::DirectToCodec {
            let stream = self.stream_mut(ctx);
            stream.response_headers = headers;
            stream.response_trailers = None;
            stream.downstream_body = body;
            stream.response_body.clear();
            stream.response_held.clear();
            stream.response_queue.clear();
            stream.response_headers_sent = true;
            stream.ended = true;
            return;
        }
        let end_of_stream = body.is_empty();
        let result = self.deliver_headers(ctx, true, headers, end_of_stream);
        // A local reply the filter asks for while its response callbacks see this one runs
        // when that callback returns (Envoy's deferred action), as a direct reply.
        if self.nested_local_reply(ctx) {
            return;
        }
        if result.is_ok() && !end_of_stream {
            let paused = self.stream_mut(ctx).response_paused;
            if paused {
                self.stream_mut(ctx)
                    .response_queue
                    .push(Queued::Body(body, true));
            } else {
                let _ = self.deliver_body(ctx, true, body, true);
                self.nested_local_reply(ctx);
            }
        }
        let stream = self.stream_mut(ctx);
        stream.ended = true;
    }

    /// Runs a local reply the filter requested during a callback of a local reply at once;
    /// true if there was one.
    pub(super) fn nested_local_reply(&mut self, ctx: u32) -> bool {
        let state = self.store.data_mut();
        let Some(idx) = state.after.iter().position(
            |action| matches!(action, After::LocalReply { context_id, .. } if *context_id == ctx),
        ) else {
            return false;
        };
        let After::LocalReply { reply, .. } = state.after.remove(idx) else {
            unreachable!("the position matched a local reply")
        };
        self.send_local_reply(ctx, reply);
        true
    }
}

pub(super) enum Event {
    Headers(HeaderMap, bool),
    Body(Vec<u8>, bool),
    Trailers(HeaderMap),
}

/// The headers and body of Envoy's local reply for this request (gRPC, HEAD: [`hcm::local_reply`]).
pub(super) fn envoy_local_reply(reply: &LocalReply, request: &HeaderMap) -> (HeaderMap, Vec<u8>) {
    let head = request.get(b":method") == Some(b"HEAD");
    crate::hcm::local_reply(reply, crate::hcm::is_grpc(request), head)
}

impl StreamData {
    /// Records what passed the filter, for the next filter of a chain.
    pub(super) fn record(&mut self, response: bool, item: Passed) {
        if self.chained {
            self.passed[usize::from(response)].push(item);
        }
    }

    /// The filter lets its headers through (once).
    pub(super) fn release_headers(&mut self, response: bool, end_of_stream: bool) {
        let sent = if response {
            &mut self.response_headers_sent
        } else {
            &mut self.request_headers_sent
        };
        if *sent {
            return;
        }
        *sent = true;
        if self.chained {
            let headers = if response {
                self.response_headers.clone()
            } else {
                self.request_headers.clone()
            };
            self.record(response, Passed::Headers(headers, end_of_stream));
        }
    }

    /// The filter lets the body it held or buffered through; returns it.
    pub(super) fn release_body(&mut self, response: bool) -> Vec<u8> {
        self.body_path(response).release()
    }

    /// One direction's body, as the filter manager model sees it.
    fn body_path(&mut self, response: bool) -> BodyPath<'_> {
        if response {
            BodyPath {
                body: &mut self.response_body,
                held: &mut self.response_held,
                out: &mut self.downstream_body,
                buffering: &mut self.response_buffering,
            }
        } else {
            BodyPath {
                body: &mut self.request_body,
                held: &mut self.request_held,
                out: &mut self.upstream_body,
                buffering: &mut self.request_buffering,
            }
        }
    }

    /// What decides where a local reply goes and how a failure ends this stream.
    pub(super) fn facts(&self, vm_failed: bool) -> StreamFacts {
        StreamFacts {
            ended: self.ended,
            response_started: self.response_started,
            response_headers_sent: self.response_headers_sent,
            chained: self.chained,
            vm_failed,
        }
    }
}
