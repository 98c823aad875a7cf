//! `Sim::chain`: two plugins of one module in one filter chain, as Envoy's filter manager runs
//! them. Both filters run the same code; the first one that sees a request header acts on it
//! and removes it: `x-reply` answers locally, `x-stop` pauses until a tick continues. Each case
//! snapshots what reached each side and the trace (which filter saw what, in which order).

use expect_test::{Expect, expect};
use filterkit_host_sim::{HeaderMap, Sim};

use crate::guest::{Guest, data};

fn guest() -> Guest {
    let remove_if = |key_at: u32, len: u32, then: &str| {
        format!(
            "(if (i32.eqz (call $proxy_get_header_map_value (i32.const 0) (i32.const {key_at}) (i32.const {len}) (i32.const 8) (i32.const 12))) (then (drop (call $proxy_remove_header_map_value (i32.const 0) (i32.const {key_at}) (i32.const {len}))) {then}))"
        )
    };
    let reply = "(drop (call $proxy_send_local_response (i32.const 403) (i32.const 0) (i32.const 0) (i32.const 140) (i32.const 3) (i32.const 0) (i32.const 0) (i32.const -1)))";
    let pause = "(global.set $paused (local.get $ctx)) (drop (call $proxy_set_tick_period_milliseconds (i32.const 10))) (return (i32.const 1))";
    Guest {
        fields: data(100, "x-reply") + &data(120, "x-stop") + &data(140, "no!")
            + "(global $paused (mut i32) (i32.const 0))",
        request_headers: Some(format!(
            "{} {} i32.const 0",
            remove_if(100, 7, reply),
            remove_if(120, 6, pause)
        )),
        tick: Some(
            "(if (global.get $paused) (then (drop (call $proxy_set_effective_context (global.get $paused))) (drop (call $proxy_continue_stream (i32.const 0))) (global.set $paused (i32.const 0))))".into(),
        ),
        without_forwarders: true,
        ..Guest::default()
    }
}

fn pairs(headers: Option<&HeaderMap>) -> String {
    headers.map_or("-".into(), |headers| {
        headers
            .to_vec()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    })
}

fn check(request: &[(&str, &str)], tick: bool, expect: Expect) {
    expect.assert_eq(&run(request, tick));
}

/// One request through the chain `a`, `b` (a tick of 10 ms after its body when `tick`), the
/// response when the upstream got the whole request: each side's outcome, then the trace.
fn run(request: &[(&str, &str)], tick: bool) -> String {
    let module = guest().module();
    let mut sim = Sim::builder(&module)
        .plugin("a", "")
        .plugin("b", "")
        .build()
        .unwrap();
    sim.clear_trace();
    let mut chain = sim.chain(&["a", "b"]).unwrap();
    let mut out = Vec::new();
    let headers = HeaderMap::from_pairs(request.iter().copied());
    out.push(format!(
        "request: {:?}",
        chain.send_request_headers(headers, false)
    ));
    out.push(format!("body: {:?}", chain.send_request_body(b"hi", true)));
    if tick {
        chain.sim().advance(std::time::Duration::from_millis(10));
        chain.pump();
    }
    if chain.upstream().ended {
        let response = HeaderMap::from_pairs([(":status", "200")]);
        out.push(format!(
            "response: {:?}",
            chain.send_response_headers(response, false)
        ));
        chain.send_response_body(b"ok", true);
    }
    let upstream = chain.upstream();
    out.push(format!(
        "upstream: {} body={:?} ended={}",
        pairs(upstream.headers.as_ref()),
        String::from_utf8_lossy(&upstream.body),
        upstream.ended
    ));
    let client = chain.client();
    out.push(format!(
        "client: {} body={:?} ended={}",
        pairs(client.headers.as_ref()),
        String::from_utf8_lossy(&client.body),
        client.ended
    ));
    chain.complete();
    format!("{}\n{}", out.join("\n"), sim.render_trace())
}

#[test]
fn requests_pass_in_chain_order_and_responses_in_reverse() {
    check(
        &[(":path", "/")],
        false,
        expect![[r#"
        request: Continue
        body: Continue
        response: Continue
        upstream: :path=/ body="hi" ended=true
        client: :status=200 body="ok" ended=true
        proxy_on_context_create(ctx=3, 1)
          => ()
        proxy_on_request_headers(ctx=3, 1, 0)
          proxy_get_header_map_value(request_headers, "x-reply") -> NOT_FOUND
          proxy_get_header_map_value(request_headers, "x-stop") -> NOT_FOUND
          => 0
        proxy_on_context_create(ctx=4, 2)
          => ()
        proxy_on_request_headers(ctx=4, 1, 0)
          proxy_get_header_map_value(request_headers, "x-reply") -> NOT_FOUND
          proxy_get_header_map_value(request_headers, "x-stop") -> NOT_FOUND
          => 0
        proxy_on_request_body(ctx=3, 2, 1)
          => 0
        proxy_on_request_body(ctx=4, 2, 1)
          => 0
        proxy_on_response_headers(ctx=4, 1, 0)
          => 0
        proxy_on_response_headers(ctx=3, 1, 0)
          => 0
        proxy_on_response_body(ctx=4, 2, 1)
          => 0
        proxy_on_response_body(ctx=3, 2, 1)
          => 0
        proxy_on_log(ctx=3)
          => ()
        proxy_on_log(ctx=4)
          => ()
        proxy_on_done(ctx=3)
          => 1
        proxy_on_done(ctx=4)
          => 1
    "#]],
    );
}

#[test]
fn a_local_reply_from_the_first_filter_skips_the_second_filter_entirely() {
    check(
        &[(":path", "/"), ("x-reply", "1")],
        false,
        expect![[r#"
        request: LocalReply { status_code: 403 }
        body: NotDelivered
        upstream: - body="" ended=false
        client: :status=403 content-length=3 content-type=text/plain body="no!" ended=true
        proxy_on_context_create(ctx=3, 1)
          => ()
        proxy_on_request_headers(ctx=3, 2, 0)
          proxy_get_header_map_value(request_headers, "x-reply") -> OK "1"
          proxy_remove_header_map_value(request_headers, "x-reply") -> OK
          proxy_send_local_response(403, "", "no!") -> OK
          proxy_get_header_map_value(request_headers, "x-stop") -> NOT_FOUND
          => 0
        # local reply ctx=3 403 ""
        proxy_on_response_headers(ctx=3, 3, 0)
          => 0
        proxy_on_response_body(ctx=3, 3, 1)
          => 0
        proxy_on_log(ctx=3)
          => ()
        proxy_on_done(ctx=3)
          => 1
    "#]],
    );
}

#[test]
fn a_pause_in_the_first_filter_holds_the_second_until_it_continues() {
    // Nothing reaches the second filter until the tick continues the first; from then on the
    // trace is the pass-through's from the second filter's creation on.
    let paused = run(&[(":path", "/"), ("x-stop", "1")], true);
    let (until_continue, after_continue) = paused
        .split_once("# request continued ctx=3\n")
        .expect("the tick continues the request");
    expect![[r#"
        request: Paused(StopAllIterationAndWatermark)
        body: Paused(Held)
        response: Continue
        upstream: :path=/ body="hi" ended=true
        client: :status=200 body="ok" ended=true
        proxy_on_context_create(ctx=3, 1)
          => ()
        proxy_on_request_headers(ctx=3, 2, 0)
          proxy_get_header_map_value(request_headers, "x-reply") -> NOT_FOUND
          proxy_get_header_map_value(request_headers, "x-stop") -> OK "1"
          proxy_remove_header_map_value(request_headers, "x-stop") -> OK
          proxy_set_tick_period_milliseconds(10) -> OK
          => 1
        proxy_on_tick(ctx=1)
          proxy_set_effective_context(3) -> OK
          proxy_continue_stream(request) -> OK
          => ()
    "#]]
    .assert_eq(until_continue);
    let passed = run(&[(":path", "/")], false);
    let second_filter = "proxy_on_context_create(ctx=4, 2)";
    let from_second = &passed[passed.find(second_filter).expect("the second filter runs")..];
    assert_eq!(after_continue, from_second);
}
