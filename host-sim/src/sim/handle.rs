//! `Stream`: the handle a test drives one plugin's stream with, and reads it through.

use super::stream::Event;
use super::*;

/// An HTTP stream through one plugin's filter.
pub struct Stream<'a> {
    pub(super) sim: &'a mut Sim,
    pub(super) id: u32,
    /// The worker whose VM runs the stream.
    pub(super) worker: usize,
    pub(super) finished: Option<StreamData>,
}

impl std::fmt::Debug for Stream<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Stream<'_> {
    /// The stream's context id.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The worker whose VM runs the stream.
    pub fn worker(&self) -> usize {
        self.worker
    }

    /// The simulation, e.g. to answer a callout while the stream is paused.
    pub fn sim(&mut self) -> &mut Sim {
        self.sim
    }

    pub(super) fn data(&self) -> &StreamData {
        match &self.finished {
            Some(data) => data,
            None => self
                .sim
                .state_of(self.worker)
                .streams
                .get(&self.id)
                .expect("stream exists while its handle lives"),
        }
    }

    pub(super) fn send(&mut self, response: bool, event: Event) -> Outcome {
        if self.finished.is_some() {
            return Outcome::NotDelivered;
        }
        self.sim.switch_to(self.worker);
        self.sim.send(self.id, response, event)
    }

    /// Request headers from downstream.
    pub fn send_request_headers(
        &mut self,
        headers: &[(&str, &str)],
        end_of_stream: bool,
    ) -> Outcome {
        self.send(
            false,
            Event::Headers(
                HeaderMap::from_pairs(headers.iter().copied()),
                end_of_stream,
            ),
        )
    }

    /// A request body chunk.
    pub fn send_request_body(&mut self, body: &[u8], end_of_stream: bool) -> Outcome {
        self.send(false, Event::Body(body.to_vec(), end_of_stream))
    }

    /// Request trailers.
    pub fn send_request_trailers(&mut self, trailers: &[(&str, &str)]) -> Outcome {
        self.send(
            false,
            Event::Trailers(HeaderMap::from_pairs(trailers.iter().copied())),
        )
    }

    /// Response headers from upstream.
    pub fn send_response_headers(
        &mut self,
        headers: &[(&str, &str)],
        end_of_stream: bool,
    ) -> Outcome {
        self.send(
            true,
            Event::Headers(
                HeaderMap::from_pairs(headers.iter().copied()),
                end_of_stream,
            ),
        )
    }

    /// A response body chunk.
    pub fn send_response_body(&mut self, body: &[u8], end_of_stream: bool) -> Outcome {
        self.send(true, Event::Body(body.to_vec(), end_of_stream))
    }

    /// Response trailers.
    pub fn send_response_trailers(&mut self, trailers: &[(&str, &str)]) -> Outcome {
        self.send(
            true,
            Event::Trailers(HeaderMap::from_pairs(trailers.iter().copied())),
        )
    }

    /// Ends the stream as Envoy does: `proxy_on_log` (access-log phase), then
    /// `proxy_on_done` and `proxy_on_delete`. The stream's data stays inspectable.
    pub fn complete(&mut self) -> Outcome {
        if self.finished.is_some() {
            return Outcome::NotDelivered;
        }
        let ctx = self.id;
        let sim = &mut *self.sim;
        sim.switch_to(self.worker);
        let mut outcome = Outcome::Continue;
        if !sim.vm_failed_for(ctx) {
            let result = (|| -> Result<(), String> {
                sim.ensure_created(ctx)?;
                if sim.store.data().failed {
                    return Ok(());
                }
                sim.stream_mut(ctx).access_log_phase = true;
                if let Some(func) = sim.exports.on_log.clone() {
                    sim.call("proxy_on_log", ctx, func, ctx)?;
                }
                sim.stream_mut(ctx).access_log_phase = false;
                if let Some(func) = sim.exports.on_done.clone() {
                    sim.call("proxy_on_done", ctx, func, ctx)?;
                }
                if let Some(func) = sim.exports.on_delete.clone() {
                    sim.call("proxy_on_delete", ctx, func, ctx)?;
                }
                Ok(())
            })();
            if result.is_err() {
                outcome = sim.trapped();
            } else {
                sim.after_top_level();
            }
        }
        let data = sim.store.data_mut().streams.remove(&ctx);
        self.finished = data;
        outcome
    }

    /// The request headers as the filter left them (what goes upstream).
    pub fn request_headers(&self) -> &HeaderMap {
        &self.data().request_headers
    }

    /// The request trailers, if any.
    pub fn request_trailers(&self) -> Option<&HeaderMap> {
        self.data().request_trailers.as_ref()
    }

    /// The response headers as the filter left them (what goes downstream), including a
    /// local reply's.
    pub fn response_headers(&self) -> &HeaderMap {
        &self.data().response_headers
    }

    /// The response trailers, if any.
    pub fn response_trailers(&self) -> Option<&HeaderMap> {
        self.data().response_trailers.as_ref()
    }

    /// The request body that passed the filter (upstream).
    pub fn upstream_body(&self) -> &[u8] {
        &self.data().upstream_body
    }

    /// The response body that passed the filter (downstream).
    pub fn downstream_body(&self) -> &[u8] {
        &self.data().downstream_body
    }

    /// The body buffered in the filter right now (request side).
    pub fn buffered_request_body(&self) -> &[u8] {
        &self.data().request_body
    }

    /// The local reply sent on this stream, if any.
    pub fn local_reply(&self) -> Option<&LocalReply> {
        self.data().local_reply.as_ref()
    }

    /// Whether the filter reset the stream.
    pub fn was_reset(&self) -> bool {
        self.data().reset.is_some()
    }

    /// Sets a property only this stream sees.
    pub fn set_property(&mut self, path: &[&str], value: impl Into<PropertyValue>) {
        if self.finished.is_none() {
            let key = path
                .iter()
                .map(|segment| segment.as_bytes().to_vec())
                .collect();
            let value = value.into();
            self.sim.switch_to(self.worker);
            if let Some(stream) = self.sim.store.data_mut().streams.get_mut(&self.id) {
                stream.properties.insert(key, value);
            }
        }
    }

    /// The value the filter stored with `proxy_set_property`.
    pub fn filter_state(&self, key: &str) -> Option<&[u8]> {
        self.data()
            .filter_state
            .iter()
            .find(|(name, _)| name.as_slice() == key.as_bytes())
            .map(|(_, value)| value.as_slice())
    }
}
