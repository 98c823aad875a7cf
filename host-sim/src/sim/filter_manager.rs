//! Envoy's filter manager for one filter, as plain Rust without Wasm: how it reads the
//! filter's answers (pauses), what it does with a body chunk (buffering, holding, the buffer
//! limit), how held events come back, where a local reply goes, and when a failure becomes a
//! reset. `sim/stream.rs` is the glue: it calls the guest and applies these decisions to a
//! stream's state; the unit tests below drive them directly.

use crate::abi::{data_status, headers_status};
use crate::headers::HeaderMap;
use crate::host::{LocalReply, Queued};

use super::Pause;

/// How Envoy reads the answer of a headers callback: `None` continues.
pub(crate) fn headers_pause(
    result: u32,
    allow_on_headers_stop_iteration: bool,
    stop_next_iteration: bool,
) -> Option<Pause> {
    if stop_next_iteration || result > headers_status::STOP_ALL_ITERATION_AND_WATERMARK {
        return Some(Pause::StopAllIterationAndWatermark);
    }
    match result {
        headers_status::CONTINUE | headers_status::CONTINUE_AND_END_STREAM => None,
        headers_status::STOP_ITERATION if allow_on_headers_stop_iteration => {
            Some(Pause::StopIteration)
        }
        headers_status::STOP_ITERATION => Some(Pause::StopAllIterationAndWatermark),
        headers_status::STOP_ALL_ITERATION_AND_BUFFER => Some(Pause::StopAllIterationAndBuffer),
        _ => Some(Pause::StopAllIterationAndWatermark),
    }
}

/// How Envoy reads the answer of a body callback: `None` continues.
pub(crate) fn data_pause(result: u32, stop_next_iteration: bool) -> Option<Pause> {
    if stop_next_iteration || result > data_status::STOP_ITERATION_NO_BUFFER {
        return Some(Pause::StopIterationNoBuffer);
    }
    match result {
        data_status::CONTINUE => None,
        data_status::STOP_ITERATION_AND_BUFFER => Some(Pause::StopIterationAndBuffer),
        data_status::STOP_ITERATION_AND_WATERMARK => Some(Pause::StopIterationAndWatermark),
        _ => Some(Pause::StopIterationNoBuffer),
    }
}

/// How Envoy reads the answer of a trailers callback: `None` continues.
pub(crate) fn trailers_pause(result: u32, stop_next_iteration: bool) -> Option<Pause> {
    (stop_next_iteration || result != 0).then_some(Pause::TrailersStopIteration)
}

/// The buffered body outgrew the buffer limit; Envoy answers itself (see [`payload_too_large`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PayloadTooLarge;

/// What became of a body chunk once the filter answered its body callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BodyVerdict {
    /// The filter continued: these bytes (what it held, then the chunk) passed it.
    Released(Vec<u8>),
    /// The filter stopped; the chunk is buffered, held or dropped as the pause says.
    Paused(Pause),
    /// Buffering outgrew the limit.
    TooLarge,
}

/// One direction's body as the filter manager keeps it for one filter, borrowed from the
/// stream's state.
pub(crate) struct BodyPath<'a> {
    /// What the filter sees in its body callback: the chunk, or everything buffered.
    pub(crate) body: &'a mut Vec<u8>,
    /// Chunks held under a watermark pause; the filter no longer sees them.
    pub(crate) held: &'a mut Vec<u8>,
    /// What passed the filter.
    pub(crate) out: &'a mut Vec<u8>,
    /// Whether the filter asked to buffer (StopIterationAndBuffer).
    pub(crate) buffering: &'a mut bool,
}

impl BodyPath<'_> {
    /// A chunk arrives: added to the buffer while buffering (checked against `limit`),
    /// otherwise it is what the filter sees.
    pub(crate) fn receive(&mut self, chunk: &[u8], limit: usize) -> Result<(), PayloadTooLarge> {
        if *self.buffering {
            self.body.extend_from_slice(chunk);
            if self.body.len() > limit {
                return Err(PayloadTooLarge);
            }
        } else {
            *self.body = chunk.to_vec();
        }
        Ok(())
    }

    /// The filter answered its body callback with `pause`.
    pub(crate) fn answered(&mut self, pause: Option<Pause>, limit: usize) -> BodyVerdict {
        *self.buffering = false;
        match pause {
            None => {
                let mut released = std::mem::take(self.held);
                released.append(self.body);
                self.out.extend_from_slice(&released);
                BodyVerdict::Released(released)
            }
            Some(Pause::StopIterationAndBuffer) => {
                *self.buffering = true;
                // The filter manager buffers the chunk and checks the limit at once.
                if self.body.len() > limit {
                    return BodyVerdict::TooLarge;
                }
                BodyVerdict::Paused(Pause::StopIterationAndBuffer)
            }
            Some(Pause::StopIterationAndWatermark) => {
                self.held.append(self.body);
                BodyVerdict::Paused(Pause::StopIterationAndWatermark)
            }
            Some(pause) => {
                self.body.clear();
                BodyVerdict::Paused(pause)
            }
        }
    }

    /// The filter continues (`proxy_continue_stream`, or its trailers continued): what it
    /// held or buffered passes; returns those bytes.
    pub(crate) fn release(&mut self) -> Vec<u8> {
        let mut released = std::mem::take(self.held);
        released.append(self.body);
        self.out.extend_from_slice(&released);
        *self.buffering = false;
        released
    }
}

/// What is still waiting when a paused filter continues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Waiting {
    /// The direction's last event has arrived.
    pub(crate) in_ended: bool,
    /// No event is held behind the pause.
    pub(crate) queue_empty: bool,
    /// The filter stopped at the trailers.
    pub(crate) trailers_stopped: bool,
}

/// What Envoy's `commonContinue` passes on when a paused filter continues.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Continued {
    /// Whether the headers (if they have not left yet) end the stream.
    pub(crate) headers_end_of_stream: bool,
    /// The buffered or held body, and whether it ends the stream.
    pub(crate) body: Option<(Vec<u8>, bool)>,
    /// Whether the trailers the filter stopped at follow.
    pub(crate) trailers: bool,
}

/// A paused filter continues with `released` (its buffered and held body): the headers go,
/// ending the stream when nothing else came or waits, then the body, then stopped trailers.
pub(crate) fn on_continue(released: Vec<u8>, waiting: Waiting) -> Continued {
    let nothing_else = waiting.queue_empty && !waiting.trailers_stopped;
    let last = waiting.in_ended && nothing_else;
    Continued {
        headers_end_of_stream: last && released.is_empty(),
        body: (!released.is_empty()).then_some((released, last)),
        trailers: waiting.trailers_stopped,
    }
}

/// An event Envoy held while the filter was paused, as it comes back on continue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HeldEvent {
    Body(Vec<u8>, bool),
    Trailers(HeaderMap),
}

/// Takes the next held event off `queue`: consecutive body chunks coalesce, as Envoy's
/// buffer does.
pub(crate) fn next_held(queue: &mut Vec<Queued>) -> Option<HeldEvent> {
    if queue.is_empty() {
        return None;
    }
    Some(match queue.remove(0) {
        Queued::Body(mut body, mut end_of_stream) => {
            while let Some(Queued::Body(more, more_end_of_stream)) = queue.first() {
                body.extend_from_slice(more);
                end_of_stream = *more_end_of_stream;
                queue.remove(0);
            }
            HeldEvent::Body(body, end_of_stream)
        }
        Queued::Trailers(trailers) => HeldEvent::Trailers(trailers),
    })
}

/// Envoy's answer when a buffered body outgrows the buffer limit: 413 for a request; for a
/// response 500 (directly to the codec, or a reset once its headers left).
pub(crate) fn payload_too_large(response: bool) -> LocalReply {
    let (status_code, details, body) = if response {
        (500, "response_payload_too_large", "Internal Server Error")
    } else {
        (413, "request_payload_too_large", "Payload Too Large")
    };
    LocalReply {
        status_code,
        details: details.into(),
        body: body.as_bytes().to_vec(),
        headers: Vec::new(),
        grpc_status: None,
    }
}

/// Where the state of a stream sends a local reply (Envoy's
/// `DownstreamFilterManager::sendLocalReply`, run after the callback that asked for it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReplyRoute {
    /// The stream already ended: nothing happens.
    Ignored,
    /// The response headers already left: all Envoy can do is reset the stream.
    Reset,
    /// In a chain the chain routes it (`sim/chain.rs`).
    Chain,
    /// Before any response: through the filter's own response callbacks.
    ThroughFilter,
    /// The response started but its headers have not left (or the VM failed): it replaces
    /// the response and goes to the codec, bypassing the filter.
    DirectToCodec,
}

/// The facts about a stream that decide where a local reply goes or how a failure ends it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct StreamFacts {
    pub(crate) ended: bool,
    pub(crate) response_started: bool,
    pub(crate) response_headers_sent: bool,
    pub(crate) chained: bool,
    pub(crate) vm_failed: bool,
}

/// Where a local reply goes.
pub(crate) fn local_reply_route(facts: StreamFacts) -> ReplyRoute {
    if facts.ended {
        ReplyRoute::Ignored
    } else if facts.response_headers_sent {
        ReplyRoute::Reset
    } else if facts.chained {
        ReplyRoute::Chain
    } else if !facts.response_started && !facts.vm_failed {
        ReplyRoute::ThroughFilter
    } else {
        ReplyRoute::DirectToCodec
    }
}

/// How Envoy's `failStream` ends a stream whose VM failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FailureAnswer {
    /// The stream already ended.
    NotDelivered,
    /// The response headers already left (seen in Envoy 1.40): the 503 becomes a reset.
    Reset,
    /// A 503 `wasm_fail_stream` local reply, sent without calling the VM again.
    LocalReply(LocalReply),
}

/// How a failure ends a stream.
pub(crate) fn failure_answer(facts: StreamFacts) -> FailureAnswer {
    if facts.ended {
        FailureAnswer::NotDelivered
    } else if facts.response_headers_sent && !facts.chained {
        FailureAnswer::Reset
    } else {
        FailureAnswer::LocalReply(LocalReply {
            status_code: 503,
            details: "wasm_fail_stream".into(),
            body: Vec::new(),
            headers: Vec::new(),
            grpc_status: Some(14),
        })
    }
}

#[cfg(test)]
mod tests;
