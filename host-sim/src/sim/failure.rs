//! Failure policies: what Envoy does with streams after a VM failed, and FAIL_RELOAD's
//! fresh VM.

use super::filter_manager::{self, FailureAnswer};
use super::stream::{Event, envoy_local_reply};
use super::*;

/// What Envoy does after a plugin's Wasm VM failed (a trap).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FailurePolicy {
    /// Answer 503 with details `wasm_fail_stream` (Envoy's default).
    #[default]
    FailClosed,
    /// Let traffic pass without the filter.
    FailOpen,
    /// Like FAIL_CLOSED, but a stream created once the reload backoff has passed since the
    /// VM was last loaded gets a fresh VM (Envoy ≥ 1.33 `FAIL_RELOAD`, runtime errors only).
    FailReload,
}

impl Sim {
    /// Whether the stream's VM has failed: this VM after a trap, or an earlier VM that a
    /// reload replaced.
    pub(super) fn vm_failed_for(&self, ctx: u32) -> bool {
        let state = self.store.data();
        state.failed
            || state
                .streams
                .get(&ctx)
                .is_some_and(|stream| stream.generation != self.generation)
    }

    /// Envoy's `failStream`: 503 `wasm_fail_stream`, sent without calling the VM again. The
    /// stream whose callback trapped gets it under every policy (seen in Envoy 1.40 under
    /// FAIL_OPEN too); later events of other streams get it under FAIL_CLOSED and FAIL_RELOAD.
    pub(super) fn fail_stream(&mut self, ctx: u32) -> Outcome {
        let facts = self.stream_mut(ctx).facts(false);
        let reply = match filter_manager::failure_answer(facts) {
            FailureAnswer::NotDelivered => return Outcome::NotDelivered,
            FailureAnswer::Reset => {
                let stream = self.stream_mut(ctx);
                stream.ended = true;
                stream.reset = Some("wasm_fail_stream");
                self.store.data_mut().world.trace.note(
                    "stream reset: failure after response headers were sent",
                    ctx,
                    &[503],
                    &[b"wasm_fail_stream"],
                );
                return Outcome::Reset;
            }
            FailureAnswer::LocalReply(reply) => reply,
        };
        let stream = self.stream_mut(ctx);
        stream.ended = true;
        if stream.chained {
            stream.chain_reply = Some(reply.clone());
        } else {
            stream.response_headers = envoy_local_reply(&reply, &stream.request_headers).0;
        }
        stream.local_reply = Some(reply);
        self.store.data_mut().world.trace.note(
            "local reply by envoy",
            ctx,
            &[503],
            &[b"wasm_fail_stream"],
        );
        Outcome::LocalReply { status_code: 503 }
    }

    /// FAIL_OPEN after the VM failed: the event passes without the filter (cpp-host
    /// `CHECK_FAIL_HTTP` returns the open status), and what passed is what the stream shows.
    pub(super) fn pass_failed_open(&mut self, ctx: u32, response: bool, event: Event) -> Outcome {
        let stream = self.stream_mut(ctx);
        match event {
            Event::Headers(headers, eos) => {
                if response {
                    stream.response_headers = headers;
                    stream.response_started = true;
                } else {
                    stream.request_headers = headers;
                }
                stream.release_headers(response, eos);
            }
            Event::Body(body, eos) => {
                let out = if response {
                    &mut stream.downstream_body
                } else {
                    &mut stream.upstream_body
                };
                out.extend_from_slice(&body);
                stream.record(response, Passed::Body(body, eos));
            }
            Event::Trailers(trailers) => {
                if response {
                    stream.response_trailers = Some(trailers.clone());
                } else {
                    stream.request_trailers = Some(trailers.clone());
                }
                stream.record(response, Passed::Trailers(trailers));
            }
        }
        Outcome::Continue
    }

    /// FAIL_RELOAD: Envoy's `PluginConfig::maybeReloadHandleIfNeeded`, run as a stream is
    /// created. A failed VM is replaced once the backoff has passed since the last load; the
    /// attempt counts as a load even when the fresh VM fails to start (it then stays failed).
    pub(super) fn maybe_reload(&mut self) {
        let now = self.store.data().world.now_ns;
        let backoff = self
            .config
            .reload_backoff
            .as_nanos()
            .min(u128::from(u64::MAX)) as u64;
        if !self.store.data().failed
            || self.config.failure_policy != FailurePolicy::FailReload
            || now.saturating_sub(self.last_load_ns) < backoff
        {
            return;
        }
        self.last_load_ns = now;
        let mut state = self.config.host_state(self.active);
        carry_over(self.store.data_mut(), &mut state);
        state.world.trace.note("vm reload", 0, &[], &[]);
        let (store, instance, exports) = match self.config.instantiate(state) {
            Ok(parts) => parts,
            Err(_) => return,
        };
        let old_store = std::mem::replace(&mut self.store, store);
        let old_instance = std::mem::replace(&mut self.instance, instance);
        let old_exports = std::mem::replace(&mut self.exports, exports);
        let old_next_context_id = self.next_context_id;
        let plugins = self.config.plugins.clone();
        let started = self.start_vm().and_then(|()| {
            plugins
                .iter()
                .try_for_each(|plugin| self.start_plugin(plugin))
        });
        match started {
            Ok(()) => self.generation += 1,
            Err(error) => {
                // Keep the failed VM; what is shared across VMs goes back to it.
                let mut failed = old_store;
                carry_over(self.store.data_mut(), failed.data_mut());
                failed.data_mut().world.trace.note(
                    "vm reload failed",
                    0,
                    &[],
                    &[error.to_string().as_bytes()],
                );
                self.store = failed;
                self.instance = old_instance;
                self.exports = old_exports;
                self.next_context_id = old_next_context_id;
            }
        }
    }
}

/// Moves what outlives one VM from a failed VM's state to its replacement (or back, when
/// the replacement failed to start): the world, and the streams and connections of the
/// failed VM.
pub(super) fn carry_over(from: &mut HostState, to: &mut HostState) {
    hand_over_world(from, to);
    to.streams = std::mem::take(&mut from.streams);
    to.connections = std::mem::take(&mut from.connections);
}
