//! The filter-manager model driven directly: each test is a small script in, a rendering of
//! the model's answers out.

use expect_test::{Expect, expect};

use super::*;
use crate::abi::{data_status, headers_status};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs a body script against one direction: `chunk <text>` (a chunk arrives), `answer
/// <continue|buffer|watermark|nobuffer>` (the filter answers its body callback), `release`
/// (the filter continues); each line renders the answer and the state after it.
fn check_body(limit: usize, script: &str, expect: Expect) {
    let (mut body, mut held, mut out, mut buffering) = (Vec::new(), Vec::new(), Vec::new(), false);
    let mut rendered = String::new();
    for line in script
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
    {
        let mut path = BodyPath {
            body: &mut body,
            held: &mut held,
            out: &mut out,
            buffering: &mut buffering,
        };
        let (verb, argument) = line.split_once(' ').unwrap_or((line, ""));
        let answer = match verb {
            "chunk" => match path.receive(argument.as_bytes(), limit) {
                Ok(()) => "ok".to_string(),
                Err(PayloadTooLarge) => "payload too large".to_string(),
            },
            "answer" => {
                let pause = match argument {
                    "continue" => None,
                    "buffer" => Some(Pause::StopIterationAndBuffer),
                    "watermark" => Some(Pause::StopIterationAndWatermark),
                    "nobuffer" => Some(Pause::StopIterationNoBuffer),
                    other => panic!("unknown answer {other}"),
                };
                match path.answered(pause, limit) {
                    BodyVerdict::Released(bytes) => format!("released {:?}", text(&bytes)),
                    BodyVerdict::Paused(pause) => format!("paused {pause:?}"),
                    BodyVerdict::TooLarge => "too large".to_string(),
                }
            }
            "release" => format!("released {:?}", text(&path.release())),
            other => panic!("unknown step {other}"),
        };
        rendered.push_str(&format!(
            "{line:<18} -> {answer:<28} body={:?} held={:?} out={:?}{}\n",
            text(&body),
            text(&held),
            text(&out),
            if buffering { " buffering" } else { "" },
        ));
    }
    expect.assert_eq(&rendered);
}

#[test]
fn continued_chunks_pass_one_by_one() {
    check_body(
        8,
        "
        chunk ab
        answer continue
        chunk cd
        answer continue
        ",
        expect![[r#"
            chunk ab           -> ok                           body="ab" held="" out=""
            answer continue    -> released "ab"                body="" held="" out="ab"
            chunk cd           -> ok                           body="cd" held="" out="ab"
            answer continue    -> released "cd"                body="" held="" out="abcd"
        "#]],
    );
}

#[test]
fn buffering_accumulates_until_the_filter_continues() {
    check_body(
        8,
        "
        chunk ab
        answer buffer
        chunk cd
        answer continue
        ",
        expect![[r#"
            chunk ab           -> ok                           body="ab" held="" out=""
            answer buffer      -> paused StopIterationAndBuffer body="ab" held="" out="" buffering
            chunk cd           -> ok                           body="abcd" held="" out="" buffering
            answer continue    -> released "abcd"              body="" held="" out="abcd"
        "#]],
    );
}

#[test]
fn buffering_past_the_limit_is_payload_too_large() {
    check_body(
        4,
        "
        chunk abc
        answer buffer
        chunk de
        ",
        expect![[r#"
            chunk abc          -> ok                           body="abc" held="" out=""
            answer buffer      -> paused StopIterationAndBuffer body="abc" held="" out="" buffering
            chunk de           -> payload too large            body="abcde" held="" out="" buffering
        "#]],
    );
}

#[test]
fn a_chunk_over_the_limit_when_the_filter_asks_to_buffer_is_too_large_at_once() {
    check_body(
        2,
        "
        chunk abc
        answer buffer
        ",
        expect![[r#"
            chunk abc          -> ok                           body="abc" held="" out=""
            answer buffer      -> too large                    body="abc" held="" out="" buffering
        "#]],
    );
}

#[test]
fn watermark_holds_chunks_the_filter_no_longer_sees() {
    check_body(
        8,
        "
        chunk ab
        answer watermark
        chunk cd
        answer continue
        ",
        expect![[r#"
            chunk ab           -> ok                           body="ab" held="" out=""
            answer watermark   -> paused StopIterationAndWatermark body="" held="ab" out=""
            chunk cd           -> ok                           body="cd" held="ab" out=""
            answer continue    -> released "abcd"              body="" held="" out="abcd"
        "#]],
    );
}

#[test]
fn no_buffer_drops_the_chunk_and_release_passes_what_was_held() {
    check_body(
        8,
        "
        chunk ab
        answer watermark
        chunk cd
        answer nobuffer
        release
        ",
        expect![[r#"
            chunk ab           -> ok                           body="ab" held="" out=""
            answer watermark   -> paused StopIterationAndWatermark body="" held="ab" out=""
            chunk cd           -> ok                           body="cd" held="ab" out=""
            answer nobuffer    -> paused StopIterationNoBuffer body="" held="ab" out=""
            release            -> released "ab"                body="" held="" out="ab"
        "#]],
    );
}

fn check_pauses(expect: Expect) {
    let mut rendered = String::new();
    for (result, name) in [
        (headers_status::CONTINUE, "Continue"),
        (headers_status::STOP_ITERATION, "StopIteration"),
        (
            headers_status::CONTINUE_AND_END_STREAM,
            "ContinueAndEndStream",
        ),
        (
            headers_status::STOP_ALL_ITERATION_AND_BUFFER,
            "StopAllIterationAndBuffer",
        ),
        (
            headers_status::STOP_ALL_ITERATION_AND_WATERMARK,
            "StopAllIterationAndWatermark",
        ),
        (99, "99"),
    ] {
        for (allow, stop_next) in [(false, false), (true, false), (false, true)] {
            rendered.push_str(&format!(
                "headers {name} allow={allow} stop_next={stop_next}: {:?}\n",
                headers_pause(result, allow, stop_next)
            ));
        }
    }
    for (result, name) in [
        (data_status::CONTINUE, "Continue"),
        (
            data_status::STOP_ITERATION_AND_BUFFER,
            "StopIterationAndBuffer",
        ),
        (
            data_status::STOP_ITERATION_AND_WATERMARK,
            "StopIterationAndWatermark",
        ),
        (
            data_status::STOP_ITERATION_NO_BUFFER,
            "StopIterationNoBuffer",
        ),
        (99, "99"),
    ] {
        for stop_next in [false, true] {
            rendered.push_str(&format!(
                "data {name} stop_next={stop_next}: {:?}\n",
                data_pause(result, stop_next)
            ));
        }
    }
    for result in [0, 1] {
        for stop_next in [false, true] {
            rendered.push_str(&format!(
                "trailers {result} stop_next={stop_next}: {:?}\n",
                trailers_pause(result, stop_next)
            ));
        }
    }
    expect.assert_eq(&rendered);
}

#[test]
fn answers_map_to_envoy_pauses() {
    check_pauses(expect![[r#"
        headers Continue allow=false stop_next=false: None
        headers Continue allow=true stop_next=false: None
        headers Continue allow=false stop_next=true: Some(StopAllIterationAndWatermark)
        headers StopIteration allow=false stop_next=false: Some(StopAllIterationAndWatermark)
        headers StopIteration allow=true stop_next=false: Some(StopIteration)
        headers StopIteration allow=false stop_next=true: Some(StopAllIterationAndWatermark)
        headers ContinueAndEndStream allow=false stop_next=false: None
        headers ContinueAndEndStream allow=true stop_next=false: None
        headers ContinueAndEndStream allow=false stop_next=true: Some(StopAllIterationAndWatermark)
        headers StopAllIterationAndBuffer allow=false stop_next=false: Some(StopAllIterationAndBuffer)
        headers StopAllIterationAndBuffer allow=true stop_next=false: Some(StopAllIterationAndBuffer)
        headers StopAllIterationAndBuffer allow=false stop_next=true: Some(StopAllIterationAndWatermark)
        headers StopAllIterationAndWatermark allow=false stop_next=false: Some(StopAllIterationAndWatermark)
        headers StopAllIterationAndWatermark allow=true stop_next=false: Some(StopAllIterationAndWatermark)
        headers StopAllIterationAndWatermark allow=false stop_next=true: Some(StopAllIterationAndWatermark)
        headers 99 allow=false stop_next=false: Some(StopAllIterationAndWatermark)
        headers 99 allow=true stop_next=false: Some(StopAllIterationAndWatermark)
        headers 99 allow=false stop_next=true: Some(StopAllIterationAndWatermark)
        data Continue stop_next=false: None
        data Continue stop_next=true: Some(StopIterationNoBuffer)
        data StopIterationAndBuffer stop_next=false: Some(StopIterationAndBuffer)
        data StopIterationAndBuffer stop_next=true: Some(StopIterationNoBuffer)
        data StopIterationAndWatermark stop_next=false: Some(StopIterationAndWatermark)
        data StopIterationAndWatermark stop_next=true: Some(StopIterationNoBuffer)
        data StopIterationNoBuffer stop_next=false: Some(StopIterationNoBuffer)
        data StopIterationNoBuffer stop_next=true: Some(StopIterationNoBuffer)
        data 99 stop_next=false: Some(StopIterationNoBuffer)
        data 99 stop_next=true: Some(StopIterationNoBuffer)
        trailers 0 stop_next=false: None
        trailers 0 stop_next=true: Some(TrailersStopIteration)
        trailers 1 stop_next=false: Some(TrailersStopIteration)
        trailers 1 stop_next=true: Some(TrailersStopIteration)
    "#]]);
}

fn check_held(queue: Vec<Queued>, expect: Expect) {
    let mut queue = queue;
    let mut rendered = String::new();
    while let Some(event) = next_held(&mut queue) {
        match event {
            HeldEvent::Body(body, end_of_stream) => rendered.push_str(&format!(
                "body {:?} end_of_stream={end_of_stream}\n",
                text(&body)
            )),
            HeldEvent::Trailers(trailers) => {
                rendered.push_str(&format!("trailers {}\n", trailers.len()));
            }
        }
    }
    expect.assert_eq(&rendered);
}

#[test]
fn held_chunks_coalesce_until_trailers() {
    let trailers = HeaderMap::from_pairs([("grpc-status", "0")]);
    check_held(
        vec![
            Queued::Body(b"ab".to_vec(), false),
            Queued::Body(b"cd".to_vec(), false),
            Queued::Trailers(trailers),
            Queued::Body(b"ef".to_vec(), true),
        ],
        expect![[r#"
            body "abcd" end_of_stream=false
            trailers 1
            body "ef" end_of_stream=true
        "#]],
    );
}

fn check_routes(expect: Expect) {
    let mut rendered = String::new();
    for bits in 0..32u8 {
        let facts = StreamFacts {
            ended: bits & 1 != 0,
            response_started: bits & 2 != 0,
            response_headers_sent: bits & 4 != 0,
            chained: bits & 8 != 0,
            vm_failed: bits & 16 != 0,
        };
        // Headers only leave after the response started.
        if facts.response_headers_sent && !facts.response_started {
            continue;
        }
        let failure = match failure_answer(facts) {
            FailureAnswer::LocalReply(reply) => {
                format!("{} {}", reply.status_code, reply.details)
            }
            other => format!("{other:?}"),
        };
        rendered.push_str(&format!(
            "ended={:<5} started={:<5} sent={:<5} chained={:<5} failed={:<5} reply: {:<13} failure: {failure}\n",
            facts.ended,
            facts.response_started,
            facts.response_headers_sent,
            facts.chained,
            facts.vm_failed,
            format!("{:?}", local_reply_route(facts)),
        ));
    }
    expect.assert_eq(&rendered);
}

#[test]
fn local_replies_and_failures_route_by_stream_state() {
    check_routes(expect![[r#"
        ended=false started=false sent=false chained=false failed=false reply: ThroughFilter failure: 503 wasm_fail_stream
        ended=true  started=false sent=false chained=false failed=false reply: Ignored       failure: NotDelivered
        ended=false started=true  sent=false chained=false failed=false reply: DirectToCodec failure: 503 wasm_fail_stream
        ended=true  started=true  sent=false chained=false failed=false reply: Ignored       failure: NotDelivered
        ended=false started=true  sent=true  chained=false failed=false reply: Reset         failure: Reset
        ended=true  started=true  sent=true  chained=false failed=false reply: Ignored       failure: NotDelivered
        ended=false started=false sent=false chained=true  failed=false reply: Chain         failure: 503 wasm_fail_stream
        ended=true  started=false sent=false chained=true  failed=false reply: Ignored       failure: NotDelivered
        ended=false started=true  sent=false chained=true  failed=false reply: Chain         failure: 503 wasm_fail_stream
        ended=true  started=true  sent=false chained=true  failed=false reply: Ignored       failure: NotDelivered
        ended=false started=true  sent=true  chained=true  failed=false reply: Reset         failure: 503 wasm_fail_stream
        ended=true  started=true  sent=true  chained=true  failed=false reply: Ignored       failure: NotDelivered
        ended=false started=false sent=false chained=false failed=true  reply: DirectToCodec failure: 503 wasm_fail_stream
        ended=true  started=false sent=false chained=false failed=true  reply: Ignored       failure: NotDelivered
        ended=false started=true  sent=false chained=false failed=true  reply: DirectToCodec failure: 503 wasm_fail_stream
        ended=true  started=true  sent=false chained=false failed=true  reply: Ignored       failure: NotDelivered
        ended=false started=true  sent=true  chained=false failed=true  reply: Reset         failure: Reset
        ended=true  started=true  sent=true  chained=false failed=true  reply: Ignored       failure: NotDelivered
        ended=false started=false sent=false chained=true  failed=true  reply: Chain         failure: 503 wasm_fail_stream
        ended=true  started=false sent=false chained=true  failed=true  reply: Ignored       failure: NotDelivered
        ended=false started=true  sent=false chained=true  failed=true  reply: Chain         failure: 503 wasm_fail_stream
        ended=true  started=true  sent=false chained=true  failed=true  reply: Ignored       failure: NotDelivered
        ended=false started=true  sent=true  chained=true  failed=true  reply: Reset         failure: 503 wasm_fail_stream
        ended=true  started=true  sent=true  chained=true  failed=true  reply: Ignored       failure: NotDelivered
    "#]]);
}

#[test]
fn payload_too_large_answers_by_direction() {
    let rendered: Vec<String> = [false, true]
        .into_iter()
        .map(|response| {
            let reply = payload_too_large(response);
            format!(
                "{} {} {:?}",
                reply.status_code,
                reply.details,
                text(&reply.body)
            )
        })
        .collect();
    expect![[r#"
        [
            "413 request_payload_too_large \"Payload Too Large\"",
            "500 response_payload_too_large \"Internal Server Error\"",
        ]
    "#]]
    .assert_debug_eq(&rendered);
}

#[test]
fn continuing_passes_headers_body_and_stopped_trailers() {
    let mut rendered = String::new();
    for released in [&b""[..], b"ab"] {
        for bits in 0..8u8 {
            let waiting = Waiting {
                in_ended: bits & 1 != 0,
                queue_empty: bits & 2 != 0,
                trailers_stopped: bits & 4 != 0,
            };
            let continued = on_continue(released.to_vec(), waiting);
            rendered.push_str(&format!(
                "released={:<4} ended={:<5} queue_empty={:<5} trailers_stopped={:<5} -> headers_eos={:<5} body={:<16} trailers={}\n",
                format!("{:?}", text(released)),
                waiting.in_ended,
                waiting.queue_empty,
                waiting.trailers_stopped,
                continued.headers_end_of_stream,
                format!("{:?}", continued.body.map(|(body, eos)| (text(&body), eos))),
                continued.trailers,
            ));
        }
    }
    expect![[r#"
        released=""   ended=false queue_empty=false trailers_stopped=false -> headers_eos=false body=None             trailers=false
        released=""   ended=true  queue_empty=false trailers_stopped=false -> headers_eos=false body=None             trailers=false
        released=""   ended=false queue_empty=true  trailers_stopped=false -> headers_eos=false body=None             trailers=false
        released=""   ended=true  queue_empty=true  trailers_stopped=false -> headers_eos=true  body=None             trailers=false
        released=""   ended=false queue_empty=false trailers_stopped=true  -> headers_eos=false body=None             trailers=true
        released=""   ended=true  queue_empty=false trailers_stopped=true  -> headers_eos=false body=None             trailers=true
        released=""   ended=false queue_empty=true  trailers_stopped=true  -> headers_eos=false body=None             trailers=true
        released=""   ended=true  queue_empty=true  trailers_stopped=true  -> headers_eos=false body=None             trailers=true
        released="ab" ended=false queue_empty=false trailers_stopped=false -> headers_eos=false body=Some(("ab", false)) trailers=false
        released="ab" ended=true  queue_empty=false trailers_stopped=false -> headers_eos=false body=Some(("ab", false)) trailers=false
        released="ab" ended=false queue_empty=true  trailers_stopped=false -> headers_eos=false body=Some(("ab", false)) trailers=false
        released="ab" ended=true  queue_empty=true  trailers_stopped=false -> headers_eos=false body=Some(("ab", true)) trailers=false
        released="ab" ended=false queue_empty=false trailers_stopped=true  -> headers_eos=false body=Some(("ab", false)) trailers=true
        released="ab" ended=true  queue_empty=false trailers_stopped=true  -> headers_eos=false body=Some(("ab", false)) trailers=true
        released="ab" ended=false queue_empty=true  trailers_stopped=true  -> headers_eos=false body=Some(("ab", false)) trailers=true
        released="ab" ended=true  queue_empty=true  trailers_stopped=true  -> headers_eos=false body=Some(("ab", false)) trailers=true
    "#]].assert_eq(&rendered);
}
