//! Envoy's lifecycle: VM start, canary, plugins, streams, pauses, local replies, time.

use expect_test::{Expect, expect};
use filterkit_host_sim::{Outcome, Sim, SimBuilder};

use crate::guest::{Guest, data};

/// Adds `x-added: yes` to the response headers.
fn add_header_guest() -> Guest {
    Guest {
        fields: data(100, "x-added") + &data(200, "yes"),
        response_headers: Some(
            "(drop (call $proxy_add_header_map_value (i32.const 2) (i32.const 100) (i32.const 7) (i32.const 200) (i32.const 3))) i32.const 0".into(),
        ),
        ..Guest::default()
    }
}

/// `guest` loaded as plugin `root` with an empty configuration.
fn root_plugin(guest: &Guest) -> SimBuilder {
    Sim::builder(&guest.module()).plugin("root", "")
}

/// What the test collected, one line each, then the trace.
fn with_trace(out: &[String], sim: &Sim) -> String {
    format!("{}\n{}", out.join("\n"), sim.render_trace())
}

fn check_trace(sim: &Sim, expect: Expect) {
    expect.assert_eq(&sim.render_trace());
}

#[test]
fn adds_a_response_header_and_traces_the_stream() {
    let mut sim = root_plugin(&add_header_guest()).build().unwrap();
    sim.clear_trace();
    let mut stream = sim.stream("root").unwrap();
    assert_eq!(
        stream.send_request_headers(&[(":method", "GET"), (":path", "/")], true),
        Outcome::Continue
    );
    assert_eq!(
        stream.send_response_headers(&[(":status", "200")], true),
        Outcome::Continue
    );
    assert_eq!(stream.response_headers().get_str("x-added"), Some("yes"));
    assert_eq!(stream.complete(), Outcome::Continue);
    check_trace(
        &sim,
        expect![[r#"
        proxy_on_context_create(ctx=2, 1)
          => ()
        proxy_on_request_headers(ctx=2, 2, 1)
          => 0
        proxy_on_response_headers(ctx=2, 1, 1)
          proxy_add_header_map_value(response_headers, "x-added", "yes") -> OK
          => 0
        proxy_on_log(ctx=2)
          => ()
        proxy_on_done(ctx=2)
          => 1
    "#]],
    );
}

fn render(outcome: &Outcome) -> String {
    filterkit_host_sim::scenario::render_outcome(outcome)
}

#[test]
fn rejected_configuration_carries_the_filters_logs() {
    let guest = Guest {
        fields: data(100, "bad config"),
        configure: Some(
            "(drop (call $proxy_log (i32.const 4) (i32.const 100) (i32.const 10))) i32.const 0"
                .into(),
        ),
        ..Guest::default()
    };
    let error = Sim::builder(&guest.module())
        .plugin("r1", "x")
        .build()
        .unwrap_err();
    expect![[r#"plugin configuration for root_id=r1 rejected: proxy_on_configure returned false / ["bad config"]"#]].assert_eq(&format!("{error} / {:?}", match &error {
        filterkit_host_sim::Error::ConfigRejected(rejection) => rejection.logs.iter().map(|log| log.message.clone()).collect::<Vec<_>>(),
        _ => Vec::new(),
    }));
}

#[test]
fn pause_from_headers_holds_body_until_continue() {
    // Pauses request headers; the tick continues the stream through the effective context.
    let guest = Guest {
        request_headers: Some("(drop (call $proxy_set_tick_period_milliseconds (i32.const 10))) i32.const 1".into()),
        tick: Some("(drop (call $proxy_set_effective_context (i32.const 2))) (drop (call $proxy_continue_stream (i32.const 0)))".into()),
        request_body: Some("i32.const 0".into()),
        ..Guest::default()
    };
    let mut sim = root_plugin(&guest).build().unwrap();
    sim.clear_trace();
    let mut stream = sim.stream("root").unwrap();
    let mut out = Vec::new();
    out.push(render(
        &stream.send_request_headers(&[(":path", "/")], false),
    ));
    out.push(render(&stream.send_request_body(b"ab", false)));
    out.push(render(&stream.send_request_body(b"cd", true)));
    out.push(format!(
        "upstream={:?}",
        String::from_utf8_lossy(stream.upstream_body())
    ));
    out.push(render(
        &stream.sim().advance(std::time::Duration::from_millis(10)),
    ));
    let mut stream = sim.stream_by_id(2).unwrap();
    out.push(format!(
        "upstream={:?}",
        String::from_utf8_lossy(stream.upstream_body())
    ));
    let _ = stream.complete();
    expect![[r#"
        Paused(StopAllIterationAndWatermark)
        Paused(Held)
        Paused(Held)
        upstream=""
        Continue
        upstream="abcd"
        proxy_on_context_create(ctx=2, 1)
          => ()
        proxy_on_request_headers(ctx=2, 1, 0)
          proxy_set_tick_period_milliseconds(10) -> OK
          => 1
        proxy_on_tick(ctx=1)
          proxy_set_effective_context(2) -> OK
          proxy_continue_stream(request) -> OK
          => ()
        # request continued ctx=2
        proxy_on_request_body(ctx=2, 4, 1)
          => 0
        proxy_on_log(ctx=2)
          => ()
        proxy_on_done(ctx=2)
          => 1
    "#]]
    .assert_eq(&with_trace(&out, &sim));
}

#[test]
fn body_buffering_reports_cumulative_sizes() {
    let guest = Guest {
        request_body: Some("local.get $eos i32.eqz".into()),
        ..Guest::default()
    };
    let mut sim = root_plugin(&guest).build().unwrap();
    sim.clear_trace();
    let mut stream = sim.stream("root").unwrap();
    let mut out = Vec::new();
    out.push(render(
        &stream.send_request_headers(&[(":path", "/")], false),
    ));
    out.push(render(&stream.send_request_body(b"abc", false)));
    out.push(render(&stream.send_request_body(b"defg", false)));
    out.push(render(&stream.send_request_body(b"h", true)));
    out.push(format!(
        "upstream={:?}",
        String::from_utf8_lossy(stream.upstream_body())
    ));
    expect![[r#"
        Continue
        Paused(StopIterationAndBuffer)
        Paused(StopIterationAndBuffer)
        Continue
        upstream="abcdefgh"
        proxy_on_context_create(ctx=2, 1)
          => ()
        proxy_on_request_headers(ctx=2, 1, 0)
          => 0
        proxy_on_request_body(ctx=2, 3, 0)
          => 1
        proxy_on_request_body(ctx=2, 7, 0)
          => 1
        proxy_on_request_body(ctx=2, 8, 1)
          => 0
    "#]]
    .assert_eq(&with_trace(&out, &sim));
}

#[test]
fn buffered_body_over_the_limit_gets_envoys_413() {
    let guest = Guest {
        request_body: Some("i32.const 1".into()),
        ..Guest::default()
    };
    let mut sim = root_plugin(&guest).buffer_limit(4).build().unwrap();
    let mut stream = sim.stream("root").unwrap();
    stream.send_request_headers(&[(":path", "/")], false);
    assert_eq!(
        stream.send_request_body(b"abc", false),
        Outcome::Paused(filterkit_host_sim::Pause::StopIterationAndBuffer)
    );
    assert_eq!(
        stream.send_request_body(b"de", false),
        Outcome::LocalReply { status_code: 413 }
    );
    assert_eq!(stream.response_headers().get_str(":status"), Some("413"));
}

#[test]
fn http_callout_is_answered_or_times_out_on_the_virtual_clock() {
    let pairs = "(data (i32.const 400) \"\\03\\00\\00\\00\\07\\00\\00\\00\\03\\00\\00\\00\\05\\00\\00\\00\\01\\00\\00\\00\\0a\\00\\00\\00\\01\\00\\00\\00:method\\00GET\\00:path\\00/\\00:authority\\00a\\00\")";
    let guest = Guest {
        fields: data(220, "auth") + pairs,
        request_headers: Some("(drop (call $proxy_http_call (i32.const 220) (i32.const 4) (i32.const 400) (i32.const 61) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 500) (i32.const 8))) i32.const 1".into()),
        http_call_response: Some("(drop (call $proxy_get_status (i32.const 16) (i32.const 20) (i32.const 24)))".into()),
        ..Guest::default()
    };
    let mut sim = root_plugin(&guest).cluster("auth").build().unwrap();
    sim.clear_trace();
    let mut out = Vec::new();
    {
        let mut stream = sim.stream("root").unwrap();
        out.push(render(
            &stream.send_request_headers(&[(":path", "/")], true),
        ));
        let mut second = stream.sim().stream("root").unwrap();
        out.push(render(
            &second.send_request_headers(&[(":path", "/")], true),
        ));
    }
    let tokens: Vec<u32> = sim
        .http_callouts()
        .iter()
        .map(|callout| callout.token)
        .collect();
    out.push(format!("callouts={tokens:?}"));
    out.push(render(&sim.respond_http_call(
        tokens[0],
        &[(":status", "200")],
        b"ok",
        &[],
    )));
    out.push(render(&sim.fail_http_call(999)));
    out.push(render(&sim.advance(std::time::Duration::from_millis(500))));
    out.push(format!("callouts={}", sim.http_callouts().len()));
    expect![[r#"
        Paused(StopAllIterationAndWatermark)
        Paused(StopAllIterationAndWatermark)
        callouts=[4, 8]
        Continue
        NotDelivered
        Continue
        callouts=0
        proxy_on_context_create(ctx=2, 1)
          => ()
        proxy_on_request_headers(ctx=2, 1, 1)
          proxy_http_call(500, 4, "auth") -> OK
          => 1
        proxy_on_context_create(ctx=3, 1)
          => ()
        proxy_on_request_headers(ctx=3, 1, 1)
          proxy_http_call(500, 8, "auth") -> OK
          => 1
        proxy_on_http_call_response(ctx=1, 4, 1, 2, 0)
          proxy_get_status(0) -> OK ""
          => ()
        proxy_on_http_call_response(ctx=1, 8, 3, 24, 0)
          proxy_get_status(0) -> OK ""
          => ()
    "#]]
    .assert_eq(&with_trace(&out, &sim));
}

#[test]
fn runaway_guest_runs_out_of_fuel_and_fails_the_vm() {
    let guest = Guest {
        request_headers: Some("(loop br 0) i32.const 0".into()),
        ..Guest::default()
    };
    let mut sim = root_plugin(&guest).fuel(100_000).build().unwrap();
    let first = sim
        .stream("root")
        .unwrap()
        .send_request_headers(&[(":path", "/")], true);
    let second = sim
        .stream("root")
        .unwrap()
        .send_request_headers(&[(":path", "/")], true);
    expect![[r#"
        Trapped in proxy_on_request_headers: wasm trap: all fuel consumed by WebAssembly: the callback ran past the test's fuel limit; Envoy has no instruction budget, so there it would never return and would hang its worker thread
        LocalReply(503)"#]]
    .assert_eq(&format!("{}\n{}", render(&first), render(&second)));
}

#[test]
fn several_root_ids_share_one_vm_with_their_own_configuration() {
    let guest = Guest {
        response_headers: Some(
            "(drop (call $proxy_get_property (i32.const 160) (i32.const 14) (i32.const 8) (i32.const 12)))
             (drop (call $proxy_add_header_map_value (i32.const 2) (i32.const 100) (i32.const 6) (i32.load (i32.const 8)) (i32.load (i32.const 12))))
             i32.const 0"
                .into(),
        ),
        fields: data(100, "x-root") + &data(160, "plugin_root_id"),
        ..Guest::default()
    };
    let module = guest.module();
    let mut sim = Sim::builder(&module)
        .plugin("first", "a")
        .plugin("second", "b")
        .build()
        .unwrap();
    let mut seen = Vec::new();
    for root in ["first", "second"] {
        let mut stream = sim.stream(root).unwrap();
        stream.send_request_headers(&[(":path", "/")], true);
        stream.send_response_headers(&[(":status", "200")], true);
        seen.push(format!(
            "{root}: {:?}",
            stream.response_headers().get_str("x-root")
        ));
    }
    expect![[r#"
        first: Some("first")
        second: Some("second")"#]]
    .assert_eq(&seen.join("\n"));
}

/// Runs request headers then response headers on a fresh stream and renders outcomes + trace.
fn run_stream(sim: &mut Sim, request_eos: bool) -> String {
    sim.clear_trace();
    let mut stream = sim.stream("root").unwrap();
    let request = render(&stream.send_request_headers(&[(":path", "/")], request_eos));
    let response = render(&stream.send_response_headers(&[(":status", "200")], true));
    let headers: Vec<String> = stream
        .response_headers()
        .to_vec()
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    format!(
        "request: {request}\nresponse: {response}\ndownstream: {}\n{}",
        headers.join(" "),
        sim.render_trace()
    )
}

#[test]
fn stop_iteration_is_kept_when_the_plugin_allows_it() {
    let guest = Guest {
        request_headers: Some("i32.const 1".into()),
        ..Guest::default()
    };
    let module = guest.module();
    let allowed = filterkit_host_sim::PluginConfig {
        root_id: "root".into(),
        name: "root".into(),
        configuration: Vec::new(),
        allow_on_headers_stop_iteration: true,
    };
    let mut sim = Sim::builder(&module)
        .plugin_config(allowed)
        .build()
        .unwrap();
    let mut stream = sim.stream("root").unwrap();
    let outcome = stream.send_request_headers(&[(":path", "/")], false);
    let body = stream.send_request_body(b"x", true);
    expect!["Paused(StopIteration) / Continue"].assert_eq(&format!(
        "{} / {}",
        render(&outcome),
        render(&body)
    ));
}

#[test]
fn local_reply_from_the_response_path_is_sent_directly() {
    let guest = Guest {
        fields: data(100, "denied"),
        response_headers: Some(
            "(drop (call $proxy_send_local_response (i32.const 500) (i32.const 100) (i32.const 6) (i32.const 100) (i32.const 6) (i32.const 0) (i32.const 0) (i32.const -1))) i32.const 0".into(),
        ),
        ..Guest::default()
    };
    let mut sim = root_plugin(&guest).build().unwrap();
    expect![[r#"
        request: Continue
        response: LocalReply(500)
        downstream: :status=500 content-length=6 content-type=text/plain
        proxy_on_context_create(ctx=2, 1)
          => ()
        proxy_on_request_headers(ctx=2, 1, 1)
          => 0
        proxy_on_response_headers(ctx=2, 1, 1)
          proxy_send_local_response(500, "denied", "denied") -> OK
          => 0
        # local reply directly to the codec ctx=2 500 "denied"
    "#]]
    .assert_eq(&run_stream(&mut sim, true));
}

#[test]
fn body_callback_can_rewrite_the_buffer_and_add_trailers() {
    // Replaces the body with "new", replaces its first two bytes (Envoy's `Buffer::copyFrom`
    // drains them and prepends), appends, and adds a request trailer at end of stream.
    let guest = Guest {
        fields: data(100, "new") + &data(120, "x-trailer"),
        request_body: Some(
            "(drop (call $proxy_set_buffer_bytes (i32.const 0) (i32.const 0) (i32.const 100) (i32.const 100) (i32.const 3)))
             (drop (call $proxy_set_buffer_bytes (i32.const 0) (i32.const 0) (i32.const 2) (i32.const 100) (i32.const 3)))
             (drop (call $proxy_set_buffer_bytes (i32.const 0) (i32.const 1) (i32.const 1) (i32.const 100) (i32.const 3)))
             (drop (call $proxy_set_buffer_bytes (i32.const 0) (i32.const 4) (i32.const 0) (i32.const 100) (i32.const 1)))
             (drop (call $proxy_add_header_map_value (i32.const 1) (i32.const 120) (i32.const 9) (i32.const 100) (i32.const 3)))
             i32.const 0"
                .into(),
        ),
        ..Guest::default()
    };
    let mut sim = root_plugin(&guest).build().unwrap();
    sim.clear_trace();
    let mut stream = sim.stream("root").unwrap();
    stream.send_request_headers(&[(":path", "/")], false);
    stream.send_request_body(b"old body", true);
    let upstream = String::from_utf8_lossy(stream.upstream_body()).into_owned();
    let trailers = stream.request_trailers().map(|map| map.to_vec());
    expect![[r#"
        upstream="newwn" trailers=Some([("x-trailer", "new")])
        proxy_on_context_create(ctx=2, 1)
          => ()
        proxy_on_request_headers(ctx=2, 1, 0)
          => 0
        proxy_on_request_body(ctx=2, 8, 1)
          proxy_set_buffer_bytes(request_body, 0, 100, "new") -> OK
          proxy_set_buffer_bytes(request_body, 0, 2, "new") -> OK
          proxy_set_buffer_bytes(request_body, 1, 1, "new") -> BAD_ARGUMENT
          proxy_set_buffer_bytes(request_body, 4, 0, "n") -> OK
          proxy_add_header_map_value(request_trailers, "x-trailer", "new") -> OK
          => 0
    "#]]
    .assert_eq(&format!(
        "upstream={upstream:?} trailers={trailers:?}\n{}",
        sim.render_trace()
    ));
}

#[test]
fn set_header_map_pairs_replaces_the_whole_map() {
    // One pair: x-only: v.
    let pairs = "(data (i32.const 400) \"\\01\\00\\00\\00\\06\\00\\00\\00\\01\\00\\00\\00x-only\\00v\\00\")";
    let guest = Guest {
        fields: pairs.into(),
        response_headers: Some(
            "(drop (call $proxy_set_header_map_pairs (i32.const 2) (i32.const 400) (i32.const 21))) i32.const 0".into(),
        ),
        ..Guest::default()
    };
    let mut sim = root_plugin(&guest).build().unwrap();
    expect![[r#"
        request: Continue
        response: Continue
        downstream: x-only=v
        proxy_on_context_create(ctx=2, 1)
          => ()
        proxy_on_request_headers(ctx=2, 1, 1)
          => 0
        proxy_on_response_headers(ctx=2, 1, 1)
          proxy_set_header_map_pairs(response_headers, 1) -> OK
          => 0
    "#]]
    .assert_eq(&run_stream(&mut sim, true));
}

#[test]
fn failed_callout_reports_reset_through_get_status() {
    let pairs = "(data (i32.const 400) \"\\03\\00\\00\\00\\07\\00\\00\\00\\03\\00\\00\\00\\05\\00\\00\\00\\01\\00\\00\\00\\0a\\00\\00\\00\\01\\00\\00\\00:method\\00GET\\00:path\\00/\\00:authority\\00a\\00\")";
    let guest = Guest {
        fields: data(220, "auth") + pairs,
        tick: Some("(drop (call $proxy_http_call (i32.const 220) (i32.const 4) (i32.const 400) (i32.const 61) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 8)))".into()),
        configure: Some("(drop (call $proxy_set_tick_period_milliseconds (i32.const 1000))) i32.const 1".into()),
        http_call_response: Some("(drop (call $proxy_get_status (i32.const 16) (i32.const 20) (i32.const 24)))".into()),
        ..Guest::default()
    };
    let mut sim = root_plugin(&guest).cluster("auth").build().unwrap();
    sim.clear_trace();
    let tick = render(&sim.advance(std::time::Duration::from_millis(1500)));
    let tokens: Vec<u32> = sim
        .http_callouts()
        .iter()
        .map(|callout| callout.token)
        .collect();
    let failed = render(&sim.fail_http_call(tokens[0]));
    expect![[r#"
        Continue [4] Continue
        proxy_on_tick(ctx=1)
          proxy_http_call(0, 4, "auth") -> OK
          => ()
        proxy_on_http_call_response(ctx=1, 4, 0, 0, 0)
          proxy_get_status(11) -> OK "reset"
          => ()
    "#]]
    .assert_eq(&format!(
        "{tick} {tokens:?} {failed}\n{}",
        sim.render_trace()
    ));
}

#[test]
fn shared_queue_items_wake_the_registering_root_context() {
    let guest = Guest {
        fields: data(280, "queue"),
        configure: Some("(drop (call $proxy_register_shared_queue (i32.const 280) (i32.const 5) (i32.const 8))) i32.const 1".into()),
        queue_ready: Some("(drop (call $proxy_dequeue_shared_queue (local.get $token) (i32.const 16) (i32.const 20)))".into()),
        ..Guest::default()
    };
    let mut sim = root_plugin(&guest).build().unwrap();
    sim.clear_trace();
    let outcome = sim.enqueue("queue", b"item").unwrap();
    expect![[r#"
        Continue
        proxy_on_queue_ready(ctx=1, 1)
          proxy_dequeue_shared_queue(1) -> OK "item"
          => ()
    "#]]
    .assert_eq(&format!("{}\n{}", render(&outcome), sim.render_trace()));
}

#[test]
fn grpc_call_is_recorded_and_answered() {
    let guest = Guest {
        fields: data(220, "grpc") + &data(300, "svc") + &data(320, "Method") + &data(340, "request"),
        configure: Some("(drop (call $proxy_grpc_call (i32.const 220) (i32.const 4) (i32.const 300) (i32.const 3) (i32.const 320) (i32.const 6) (i32.const 0) (i32.const 0) (i32.const 340) (i32.const 7) (i32.const 1000) (i32.const 8))) (drop (call $proxy_grpc_call (i32.const 220) (i32.const 4) (i32.const 300) (i32.const 3) (i32.const 320) (i32.const 6) (i32.const 0) (i32.const 0) (i32.const 340) (i32.const 7) (i32.const 1000) (i32.const 8))) i32.const 1".into()),
        grpc_receive: Some("(drop (call $proxy_get_buffer_bytes (i32.const 5) (i32.const 0) (i32.const 100) (i32.const 16) (i32.const 20)))".into()),
        grpc_close: Some("(drop (call $proxy_get_status (i32.const 16) (i32.const 20) (i32.const 24)))".into()),
        ..Guest::default()
    };
    let mut sim = root_plugin(&guest).cluster("grpc").build().unwrap();
    sim.clear_trace();
    let calls: Vec<String> = sim
        .grpc_callouts()
        .iter()
        .map(|call| {
            format!(
                "{} {} {}/{} {:?}",
                call.token, call.cluster, call.service, call.method, call.messages
            )
        })
        .collect();
    let answered = render(&sim.respond_grpc_call(5, b"reply"));
    let closed = render(&sim.close_grpc(9, &[], 14, "unavailable"));
    expect![[r#"
        ["5 grpc svc/Method [[114, 101, 113, 117, 101, 115, 116]]", "9 grpc svc/Method [[114, 101, 113, 117, 101, 115, 116]]"] Continue Continue
        proxy_on_grpc_receive(ctx=1, 5, 5)
          proxy_get_buffer_bytes(grpc_receive_buffer, 0, 100) -> OK "reply"
          => ()
        proxy_on_grpc_close(ctx=1, 9, 14)
          proxy_get_status(14) -> OK "unavailable"
          => ()
    "#]].assert_eq(&format!("{calls:?} {answered} {closed}\n{}", sim.render_trace()));
}

#[test]
fn start_only_allows_envoys_start_time_imports() {
    let guest = Guest {
        fields: "(func (export \"_initialize\") (drop (call $proxy_set_tick_period_milliseconds (i32.const 1))))".into(),
        ..Guest::default()
    };
    let error = root_plugin(&guest).build().unwrap_err();
    expect!["failed to start Wasm VM: restricted_callback"].assert_eq(&error.to_string());
}

#[test]
fn shutdown_waits_for_proxy_done() {
    // proxy_on_done says "not yet" (and its own proxy_done is NOT_FOUND: the root context is
    // pending only after it returns); the next tick calls proxy_done (OK, then deleted after
    // the callback); later ticks no longer fire.
    let wat = r#"(module
      (import "env" "proxy_done" (func $done (result i32)))
      (import "env" "proxy_set_tick_period_milliseconds" (func $tick (param i32) (result i32)))
      (memory (export "memory") 1)
      (func (export "proxy_on_memory_allocate") (param i32) (result i32) i32.const 1024)
      (func (export "proxy_abi_version_0_2_1"))
      (func (export "proxy_on_configure") (param i32 i32) (result i32)
        (drop (call $tick (i32.const 1000))) i32.const 1)
      (func (export "proxy_on_done") (param i32) (result i32) (drop (call $done)) i32.const 0)
      (func (export "proxy_on_delete") (param i32))
      (func (export "proxy_on_tick") (param i32) (drop (call $done)) (drop (call $done))))"#;
    let module = filterkit_host_sim::Module::from_bytes(wat.as_bytes()).unwrap();
    let mut sim = Sim::builder(&module).plugin("root", "").build().unwrap();
    sim.clear_trace();
    let pending = sim.shutdown();
    let first = sim.advance(std::time::Duration::from_secs(1));
    let second = sim.advance(std::time::Duration::from_secs(5));
    expect![[r#"
        ["root"] Continue Continue
        proxy_on_done(ctx=1)
          proxy_done() -> NOT_FOUND
          => 0
        proxy_on_tick(ctx=1)
          proxy_done() -> OK
          proxy_done() -> NOT_FOUND
          => ()
        proxy_on_delete(ctx=1)
          => ()
    "#]]
    .assert_eq(&format!(
        "{pending:?} {} {}\n{}",
        render(&first),
        render(&second),
        sim.render_trace()
    ));
}

#[test]
fn abi_0_1_0_headers_callbacks_have_no_end_of_stream_and_missing_headers_are_empty() {
    let wat = r#"(module
      (import "env" "proxy_get_header_map_value" (func $get (param i32 i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 1)
      (data (i32.const 100) "missing")
      (func (export "malloc") (param i32) (result i32) i32.const 2048)
      (func (export "proxy_abi_version_0_1_0"))
      (func (export "proxy_on_request_headers") (param i32 i32) (result i32)
        (drop (call $get (i32.const 0) (i32.const 100) (i32.const 7) (i32.const 8) (i32.const 12)))
        i32.const 0))"#;
    let module = filterkit_host_sim::Module::from_bytes(wat.as_bytes()).unwrap();
    let mut sim = Sim::builder(&module).plugin("root", "").build().unwrap();
    expect![[r#"
        request: Continue
        response: Continue
        downstream: :status=200
        proxy_on_request_headers(ctx=2, 1)
          proxy_get_header_map_value(request_headers, "missing") -> OK ""
          => 0
    "#]]
    .assert_eq(&run_stream(&mut sim, true));
}

/// `(call $proxy_send_local_response CODE "denied" body "denied")` with the strings at 100.
fn local_reply_call(code: u32) -> String {
    format!(
        "(drop (call $proxy_send_local_response (i32.const {code}) (i32.const 100) (i32.const 6) (i32.const 100) (i32.const 6) (i32.const 0) (i32.const 0) (i32.const -1)))"
    )
}

/// Runs a stream whose response has headers and a body through a guest with these response
/// callbacks; renders each outcome, what went downstream, and the trace.
fn check_response_path(
    allow_on_headers_stop_iteration: bool,
    response_headers: &str,
    response_body: &str,
    expect: Expect,
) {
    let guest = Guest {
        fields: data(100, "denied"),
        request_headers: Some("i32.const 0".into()),
        response_headers: Some(response_headers.into()),
        response_body: Some(response_body.into()),
        ..Guest::default()
    };
    let module = guest.module();
    let mut sim = Sim::builder(&module)
        .plugin_config(filterkit_host_sim::PluginConfig {
            root_id: "root".into(),
            name: "root".into(),
            configuration: Vec::new(),
            allow_on_headers_stop_iteration,
        })
        .build()
        .unwrap();
    sim.clear_trace();
    let mut stream = sim.stream("root").unwrap();
    let mut out = vec![
        render(&stream.send_request_headers(&[(":path", "/")], true)),
        render(&stream.send_response_headers(&[(":status", "200")], false)),
        render(&stream.send_response_body(b"upstream", true)),
    ];
    let headers: Vec<String> = stream
        .response_headers()
        .to_vec()
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    out.push(format!(
        "downstream: {} body={:?} reset={}",
        headers.join(" "),
        String::from_utf8_lossy(stream.downstream_body()),
        stream.was_reset()
    ));
    expect.assert_eq(&with_trace(&out, &sim));
}

#[test]
fn local_reply_from_response_headers_replaces_the_response_without_the_filters() {
    check_response_path(
        false,
        &format!("{} i32.const 0", local_reply_call(500)),
        "i32.const 0",
        expect![[r#"
            Continue
            LocalReply(500)
            NotDelivered
            downstream: :status=500 content-length=6 content-type=text/plain body="denied" reset=false
            proxy_on_context_create(ctx=2, 1)
              => ()
            proxy_on_request_headers(ctx=2, 1, 1)
              => 0
            proxy_on_response_headers(ctx=2, 1, 0)
              proxy_send_local_response(500, "denied", "denied") -> OK
              => 0
            # local reply directly to the codec ctx=2 500 "denied"
        "#]],
    );
}

#[test]
fn local_reply_from_the_body_while_headers_are_held_replaces_the_response() {
    // Headers stop (StopIteration, allowed), so the body comes while nothing has gone
    // downstream yet.
    check_response_path(
        true,
        "i32.const 1",
        &format!("{} i32.const 0", local_reply_call(502)),
        expect![[r#"
            Continue
            Paused(StopIteration)
            LocalReply(502)
            downstream: :status=502 content-length=6 content-type=text/plain body="denied" reset=false
            proxy_on_context_create(ctx=2, 1)
              => ()
            proxy_on_request_headers(ctx=2, 1, 1)
              => 0
            proxy_on_response_headers(ctx=2, 1, 0)
              => 1
            proxy_on_response_body(ctx=2, 8, 1)
              proxy_send_local_response(502, "denied", "denied") -> OK
              => 0
            # local reply directly to the codec ctx=2 502 "denied"
        "#]],
    );
}

#[test]
fn local_reply_after_the_response_headers_left_resets_the_stream() {
    check_response_path(
        false,
        "i32.const 0",
        &format!("{} i32.const 0", local_reply_call(502)),
        expect![[r#"
            Continue
            Continue
            Reset
            downstream: :status=200 body="" reset=true
            proxy_on_context_create(ctx=2, 1)
              => ()
            proxy_on_request_headers(ctx=2, 1, 1)
              => 0
            proxy_on_response_headers(ctx=2, 1, 0)
              => 0
            proxy_on_response_body(ctx=2, 8, 1)
              proxy_send_local_response(502, "denied", "denied") -> OK
              => 0
            # stream reset: local reply after response headers were sent ctx=2 502 "denied"
        "#]],
    );
}

#[test]
fn local_reply_from_the_filters_own_reply_callbacks_replaces_it_once() {
    // The request path replies 403; the reply's response headers reach the same filter,
    // which replies 500: that one goes directly to the codec, without a second pass.
    let guest = Guest {
        fields: data(100, "denied"),
        request_headers: Some(format!("{} i32.const 0", local_reply_call(403))),
        response_headers: Some(format!("{} i32.const 0", local_reply_call(500))),
        ..Guest::default()
    };
    let mut sim = root_plugin(&guest).build().unwrap();
    expect![[r#"
        request: LocalReply(500)
        response: NotDelivered
        downstream: :status=500 content-length=6 content-type=text/plain
        proxy_on_context_create(ctx=2, 1)
          => ()
        proxy_on_request_headers(ctx=2, 1, 1)
          proxy_send_local_response(403, "denied", "denied") -> OK
          => 0
        # local reply ctx=2 403 "denied"
        proxy_on_response_headers(ctx=2, 3, 0)
          proxy_send_local_response(500, "denied", "denied") -> OK
          => 0
        # local reply directly to the codec ctx=2 500 "denied"
    "#]]
    .assert_eq(&run_stream(&mut sim, true));
}

/// Streams through a guest that traps on requests carrying `x-trap`, under a failure policy:
/// each step advances the virtual clock by `ms`, then sends one request; renders each
/// outcome, then the trace without the stream callbacks (VM starts and reloads).
fn check_failure_policy(
    policy: filterkit_host_sim::FailurePolicy,
    steps: &[(u64, bool)],
    expect: Expect,
) {
    let guest = Guest {
        fields: data(100, "x-trap") + &data(120, "configured"),
        configure: Some(
            "(drop (call $proxy_log (i32.const 2) (i32.const 120) (i32.const 10))) i32.const 1"
                .into(),
        ),
        request_headers: Some(
            "(if (i32.eqz (call $proxy_get_header_map_value (i32.const 0) (i32.const 100) (i32.const 6) (i32.const 8) (i32.const 12))) (then unreachable)) i32.const 0".into(),
        ),
        ..Guest::default()
    };
    let mut sim = root_plugin(&guest).failure_policy(policy).build().unwrap();
    let mut out = Vec::new();
    for (ms, trap) in steps {
        sim.advance(std::time::Duration::from_millis(*ms));
        let mut stream = sim.stream("root").unwrap();
        let headers: &[(&str, &str)] = if *trap {
            &[(":path", "/"), ("x-trap", "1")]
        } else {
            &[(":path", "/")]
        };
        let outcome = stream.send_request_headers(headers, true);
        let id = stream.id();
        let reply = stream
            .local_reply()
            .map(|reply| format!(" details={}", reply.details))
            .unwrap_or_default();
        out.push(format!(
            "t={}ms stream {id}{}: {}{reply}",
            sim.now().as_millis(),
            if *trap { " (x-trap)" } else { "" },
            render(&outcome)
        ));
    }
    let trace = sim.render_trace();
    let lifecycle: Vec<&str> = trace
        .lines()
        .filter(|line| {
            line.starts_with("# ")
                || line.starts_with("proxy_on_configure")
                || line.trim_start().starts_with("log ")
                || line.contains("=> trap")
        })
        .collect();
    expect.assert_eq(&format!("{}\n{}\n", out.join("\n"), lifecycle.join("\n")));
}

#[test]
fn fail_closed_answers_503_after_a_trap() {
    check_failure_policy(
        filterkit_host_sim::FailurePolicy::FailClosed,
        &[(0, false), (0, true), (0, false), (5_000, false)],
        expect![[r#"
            t=0ms stream 2: Continue
            t=0ms stream 3 (x-trap): Trapped in proxy_on_request_headers: wasm trap: wasm `unreachable` instruction executed details=wasm_fail_stream
            t=0ms stream 4: LocalReply(503) details=wasm_fail_stream
            t=5000ms stream 5: LocalReply(503) details=wasm_fail_stream
            proxy_on_configure(ctx=1, 0)
              log info "configured"
              => trap "wasm trap: wasm `unreachable` instruction executed"
            # local reply by envoy ctx=3 503 "wasm_fail_stream"
            # local reply by envoy ctx=4 503 "wasm_fail_stream"
            # local reply by envoy ctx=5 503 "wasm_fail_stream"
        "#]],
    );
}

#[test]
fn fail_open_answers_the_trapping_stream_503_and_passes_later_streams() {
    check_failure_policy(
        filterkit_host_sim::FailurePolicy::FailOpen,
        &[(0, false), (0, true), (0, false), (5_000, false)],
        expect![[r#"
            t=0ms stream 2: Continue
            t=0ms stream 3 (x-trap): Trapped in proxy_on_request_headers: wasm trap: wasm `unreachable` instruction executed details=wasm_fail_stream
            t=0ms stream 4: Continue
            t=5000ms stream 5: Continue
            proxy_on_configure(ctx=1, 0)
              log info "configured"
              => trap "wasm trap: wasm `unreachable` instruction executed"
            # local reply by envoy ctx=3 503 "wasm_fail_stream"
        "#]],
    );
}

#[test]
fn fail_open_streams_show_what_passed_and_a_failure_after_the_response_headers_resets() {
    // Under FAIL_OPEN a stream after the trap passes without the filter and shows what
    // passed; a stream that was already past its response headers when its own callback
    // trapped is reset (seen in Envoy 1.40: the 503 cannot be sent any more).
    let guest = Guest {
        response_body: Some("unreachable".into()),
        ..Guest::default()
    };
    let mut sim = root_plugin(&guest)
        .failure_policy(filterkit_host_sim::FailurePolicy::FailOpen)
        .build()
        .unwrap();
    let mut out = Vec::new();
    let mut first = sim.stream("root").unwrap();
    first.send_request_headers(&[(":path", "/")], true);
    first.send_response_headers(&[(":status", "200")], false);
    let outcome = first.send_response_body(b"hello", true);
    out.push(format!(
        "trapping stream: {} reset={} local_reply={:?}",
        render(&outcome),
        first.was_reset(),
        first.local_reply().map(|reply| reply.status_code)
    ));
    let mut second = sim.stream("root").unwrap();
    second.send_request_headers(&[(":path", "/next")], false);
    second.send_request_body(b"up", true);
    second.send_response_headers(&[(":status", "201"), ("x-up", "1")], false);
    let outcome = second.send_response_body(b"down", true);
    out.push(format!(
        "later stream: {} request={:?} upstream={:?} response={:?} downstream={:?}",
        render(&outcome),
        second.request_headers().to_vec(),
        String::from_utf8_lossy(second.upstream_body()),
        second.response_headers().to_vec(),
        String::from_utf8_lossy(second.downstream_body()),
    ));
    expect![[r#"
        trapping stream: Trapped in proxy_on_response_body: wasm trap: wasm `unreachable` instruction executed reset=true local_reply=None
        later stream: Continue request=[(":path", "/next")] upstream="up" response=[(":status", "201"), ("x-up", "1")] downstream="down""#]].assert_eq(&out.join("\n"));
}

#[test]
fn fail_reload_makes_a_fresh_vm_after_the_backoff_since_the_last_load() {
    // Loaded at 0; the trap at 500 ms; 900 ms is still within 1 s of the load (503); 1000 ms
    // reloads. The second trap at 1200 ms: the last load was at 1000 ms, so 1500 ms waits and
    // 2000 ms reloads again.
    check_failure_policy(
        filterkit_host_sim::FailurePolicy::FailReload,
        &[
            (500, true),
            (400, false),
            (100, false),
            (200, true),
            (300, false),
            (500, false),
        ],
        expect![[r#"
            t=500ms stream 2 (x-trap): Trapped in proxy_on_request_headers: wasm trap: wasm `unreachable` instruction executed details=wasm_fail_stream
            t=900ms stream 3: LocalReply(503) details=wasm_fail_stream
            t=1000ms stream 5: Continue
            t=1200ms stream 6 (x-trap): Trapped in proxy_on_request_headers: wasm trap: wasm `unreachable` instruction executed details=wasm_fail_stream
            t=1500ms stream 7: LocalReply(503) details=wasm_fail_stream
            t=2000ms stream 9: Continue
            proxy_on_configure(ctx=1, 0)
              log info "configured"
              => trap "wasm trap: wasm `unreachable` instruction executed"
            # local reply by envoy ctx=2 503 "wasm_fail_stream"
            # local reply by envoy ctx=3 503 "wasm_fail_stream"
            # vm reload
            proxy_on_configure(ctx=4, 0)
              log info "configured"
              => trap "wasm trap: wasm `unreachable` instruction executed"
            # local reply by envoy ctx=6 503 "wasm_fail_stream"
            # local reply by envoy ctx=7 503 "wasm_fail_stream"
            # vm reload
            proxy_on_configure(ctx=8, 0)
              log info "configured"
        "#]],
    );
}

#[test]
fn fail_reload_keeps_the_failed_vm_when_the_fresh_one_is_rejected() {
    // The first configure stores "loaded" in shared data (which outlives the VM); a later
    // configure finds it and refuses, so the reload fails and the VM stays failed until the
    // next backoff.
    let guest = Guest {
        fields: data(100, "loaded") + &data(120, "1"),
        configure: Some(
            "(if (result i32) (i32.eqz (call $proxy_get_shared_data (i32.const 100) (i32.const 6) (i32.const 8) (i32.const 12) (i32.const 16)))
               (then i32.const 0)
               (else (drop (call $proxy_set_shared_data (i32.const 100) (i32.const 6) (i32.const 120) (i32.const 1) (i32.const 0))) i32.const 1))".into(),
        ),
        request_headers: Some("unreachable".into()),
        ..Guest::default()
    };
    let mut sim = root_plugin(&guest)
        .failure_policy(filterkit_host_sim::FailurePolicy::FailReload)
        .reload_backoff(std::time::Duration::from_millis(100))
        .canary(false)
        .build()
        .unwrap();
    sim.clear_trace();
    let mut out = Vec::new();
    for ms in [0, 100, 50, 50] {
        sim.advance(std::time::Duration::from_millis(ms));
        let outcome = sim
            .stream("root")
            .unwrap()
            .send_request_headers(&[(":path", "/")], true);
        out.push(format!(
            "t={}ms {}",
            sim.now().as_millis(),
            render(&outcome)
        ));
    }
    let trace = sim.render_trace();
    let lifecycle: Vec<&str> = trace
        .lines()
        .filter(|line| line.starts_with("# vm") || line.starts_with("proxy_on_configure"))
        .collect();
    expect![[r#"
        t=0ms Trapped in proxy_on_request_headers: wasm trap: wasm `unreachable` instruction executed
        t=100ms LocalReply(503)
        t=150ms LocalReply(503)
        t=200ms LocalReply(503)
        # vm reload
        proxy_on_configure(ctx=3, 0)
        # vm reload failed "plugin configuration for root_id=root rejected: proxy_on_configure returned false"
        # vm reload
        proxy_on_configure(ctx=5, 0)
        # vm reload failed "plugin configuration for root_id=root rejected: proxy_on_configure returned false"
    "#]]
    .assert_eq(&format!("{}\n{}\n", out.join("\n"), lifecycle.join("\n")));
}

#[test]
fn close_stream_resets_the_stream_after_the_callback() {
    let guest = Guest {
        request_headers: Some("(drop (call $proxy_close_stream (i32.const 0))) i32.const 0".into()),
        ..Guest::default()
    };
    let mut sim = root_plugin(&guest).build().unwrap();
    expect![[r#"
        request: Reset
        response: NotDelivered
        downstream: 
        proxy_on_context_create(ctx=2, 1)
          => ()
        proxy_on_request_headers(ctx=2, 1, 1)
          proxy_close_stream(request) -> OK
          => 0
        # stream reset ctx=2 0
    "#]]
    .assert_eq(&run_stream(&mut sim, true));
}
