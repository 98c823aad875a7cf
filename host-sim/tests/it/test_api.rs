//! The test API beyond driving streams: fault injection, strict mode, the execution budget
//! (no fuel limit by default, an opt-in one, Envoy's 1 GiB memory cap) and callouts
//! attributed to the stream that made them.

use expect_test::expect;
use filterkit_host_sim::{Outcome, Sim, SimBuilder, Status};

use crate::guest::{Guest, data};

/// `:method GET`, `:path /`, `:authority a` as pairs at 400 (61 bytes).
const CALL_HEADERS: &str = "(data (i32.const 400) \"\\03\\00\\00\\00\\07\\00\\00\\00\\03\\00\\00\\00\\05\\00\\00\\00\\01\\00\\00\\00\\0a\\00\\00\\00\\01\\00\\00\\00:method\\00GET\\00:path\\00/\\00:authority\\00a\\00\")";

fn http_call_guest() -> Guest {
    Guest {
        fields: data(220, "auth") + CALL_HEADERS,
        request_headers: Some("(drop (call $proxy_http_call (i32.const 220) (i32.const 4) (i32.const 400) (i32.const 61) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 500) (i32.const 8))) i32.const 0".into()),
        ..Guest::default()
    }
}

fn root_plugin(guest: &Guest) -> SimBuilder {
    Sim::builder(&guest.module()).plugin("root", "")
}

#[test]
fn injected_status_answers_the_call_without_effect_and_is_traced() {
    let mut sim = root_plugin(&http_call_guest())
        .cluster("auth")
        .inject("proxy_http_call", Status::InternalFailure)
        .build()
        .unwrap();
    sim.clear_trace();
    sim.stream("root")
        .unwrap()
        .send_request_headers(&[(":path", "/")], true);
    assert!(sim.http_callouts().is_empty());
    // Cleared, the next stream's call goes out, attributed to that stream.
    sim.clear_injection("proxy_http_call");
    sim.stream("root")
        .unwrap()
        .send_request_headers(&[(":path", "/")], true);
    let callouts: Vec<String> = sim
        .http_callouts()
        .iter()
        .map(|callout| {
            format!(
                "token={} root={} origin={}",
                callout.token, callout.context_id, callout.origin_context_id
            )
        })
        .collect();
    expect![[r#"
        token=4 root=1 origin=3
        proxy_on_context_create(ctx=2, 1)
          => ()
        proxy_on_request_headers(ctx=2, 1, 1)
          # injected ctx=2 "proxy_http_call" "INTERNAL_FAILURE"
          => 0
        proxy_on_context_create(ctx=3, 1)
          => ()
        proxy_on_request_headers(ctx=3, 1, 1)
          proxy_http_call(500, 4, "auth") -> OK
          => 0
    "#]]
    .assert_eq(&format!("{}\n{}", callouts.join("\n"), sim.render_trace()));
}

#[test]
fn strict_mode_traps_on_a_host_function_outside_the_list() {
    let mut sim = root_plugin(&http_call_guest())
        .cluster("auth")
        .strict(&["proxy_log", "proxy_get_header_map_value"])
        .build()
        .unwrap();
    let outcome = sim
        .stream("root")
        .unwrap()
        .send_request_headers(&[(":path", "/")], true);
    expect![[r#"Trapped { callback: "proxy_on_request_headers", message: "strict mode: the guest called env.proxy_http_call, which is not in the allowed host functions" }"#]]
        .assert_eq(&format!("{outcome:?}"));
}

/// A guest whose request-headers callback counts down from `n` (about 6 instructions a turn).
fn counting_guest(n: u32) -> Guest {
    Guest {
        request_headers: Some(format!(
            "(local $i i32) (local.set $i (i32.const {n}))
             (block $done (loop $next
               (br_if $done (i32.eqz (local.get $i)))
               (local.set $i (i32.sub (local.get $i) (i32.const 1)))
               (br $next)))
             i32.const 0"
        )),
        without_forwarders: true,
        ..Guest::default()
    }
}

#[test]
fn no_fuel_limit_by_default_and_an_opt_in_limit_names_the_hang() {
    // About 180 million instructions: past the 100 million host-sim used to allow.
    let guest = counting_guest(30_000_000);
    let mut sim = root_plugin(&guest).build().unwrap();
    let unlimited = sim
        .stream("root")
        .unwrap()
        .send_request_headers(&[(":path", "/")], true);
    let mut sim = root_plugin(&guest).fuel(1_000_000).build().unwrap();
    let limited = sim
        .stream("root")
        .unwrap()
        .send_request_headers(&[(":path", "/")], true);
    assert_eq!(unlimited, Outcome::Continue);
    expect![[r#"Trapped { callback: "proxy_on_request_headers", message: "wasm trap: all fuel consumed by WebAssembly: the callback ran past the test's fuel limit; Envoy has no instruction budget, so there it would never return and would hang its worker thread" }"#]]
        .assert_eq(&format!("{limited:?}"));
}

/// Grows memory by `pages` in the request-headers callback and logs `grown` or `refused`.
fn growing_guest(pages: u32) -> Guest {
    Guest {
        fields: data(100, "grown") + &data(110, "refused"),
        request_headers: Some(format!(
            "(if (i32.eq (memory.grow (i32.const {pages})) (i32.const -1))
               (then (drop (call $proxy_log (i32.const 2) (i32.const 110) (i32.const 7))))
               (else (drop (call $proxy_log (i32.const 2) (i32.const 100) (i32.const 5)))))
             i32.const 0"
        )),
        ..Guest::default()
    }
}

#[test]
fn memory_is_capped_at_envoys_1_gib_or_the_tests_limit() {
    let mut lines = Vec::new();
    for (pages, limit) in [
        (100, None),
        (16_384, None),
        (2, Some(4 * 65_536)),
        (3, Some(4 * 65_536)),
    ] {
        let mut builder = root_plugin(&growing_guest(pages));
        if let Some(limit) = limit {
            builder = builder.memory_limit(limit);
        }
        let mut sim = builder.build().unwrap();
        sim.stream("root")
            .unwrap()
            .send_request_headers(&[(":path", "/")], true);
        let logged: Vec<String> = sim.logs().iter().map(|log| log.message.clone()).collect();
        lines.push(format!(
            "grow {pages} pages from 2, limit {limit:?}: {logged:?}"
        ));
    }
    expect![[r#"
        grow 100 pages from 2, limit None: ["grown"]
        grow 16384 pages from 2, limit None: ["refused"]
        grow 2 pages from 2, limit Some(262144): ["grown"]
        grow 3 pages from 2, limit Some(262144): ["refused"]"#]]
    .assert_eq(&lines.join("\n"));
}

#[test]
fn grpc_call_times_out_on_the_virtual_clock() {
    // Two calls with a 1000 ms timeout: one answered in time, one left to time out. Envoy 1.40
    // closed a call to a silent upstream after its timeout with status 14 and this message.
    let call = "(drop (call $proxy_grpc_call (i32.const 220) (i32.const 4) (i32.const 300) (i32.const 3) (i32.const 320) (i32.const 6) (i32.const 0) (i32.const 0) (i32.const 340) (i32.const 7) (i32.const 1000) (i32.const 8)))";
    let guest = Guest {
        fields: data(220, "grpc")
            + &data(300, "svc")
            + &data(320, "Method")
            + &data(340, "request"),
        configure: Some(format!("{call} {call} i32.const 1")),
        grpc_close: Some(
            "(drop (call $proxy_get_status (i32.const 16) (i32.const 20) (i32.const 24)))".into(),
        ),
        ..Guest::default()
    };
    let mut sim = root_plugin(&guest).cluster("grpc").build().unwrap();
    sim.clear_trace();
    sim.respond_grpc_call(5, b"reply");
    sim.advance(std::time::Duration::from_millis(999));
    let before = sim.grpc_callouts().len();
    sim.advance(std::time::Duration::from_millis(1));
    let after = sim.grpc_callouts().len();
    expect![[r#"
        open before the deadline: 1, after: 0
        proxy_on_grpc_receive(ctx=1, 5, 5)
          => ()
        proxy_on_grpc_close(ctx=1, 9, 14)
          proxy_get_status(14) -> OK "upstream request timeout{response_timeout}"
          => ()
    "#]]
    .assert_eq(&format!(
        "open before the deadline: {before}, after: {after}\n{}",
        sim.render_trace()
    ));
}

#[test]
fn grpc_send_with_end_of_stream_half_closes_and_the_stream_still_receives() {
    // Envoy's `grpcSend` passes end_of_stream to the gRPC stream and keeps it: the remote side
    // can still answer and close, and the guest's own close afterwards finds it.
    let guest = Guest {
        fields: data(220, "grpc") + &data(300, "svc") + &data(320, "Method") + &data(340, "request"),
        configure: Some(
            "(drop (call $proxy_grpc_stream (i32.const 220) (i32.const 4) (i32.const 300) (i32.const 3) (i32.const 320) (i32.const 6) (i32.const 0) (i32.const 0) (i32.const 8)))
             (drop (call $proxy_grpc_send (i32.load (i32.const 8)) (i32.const 340) (i32.const 7) (i32.const 1)))
             i32.const 1"
                .into(),
        ),
        grpc_close: Some("(drop (call $proxy_grpc_close (local.get $token)))".into()),
        ..Guest::default()
    };
    let mut sim = root_plugin(&guest).cluster("grpc").build().unwrap();
    let open: Vec<bool> = sim
        .grpc_callouts()
        .iter()
        .map(|callout| callout.local_closed)
        .collect();
    sim.clear_trace();
    let message = sim.grpc_stream_message(6, &[], b"update");
    let closed = sim.close_grpc(6, &[], 0, "");
    let again = sim.close_grpc(6, &[], 0, "");
    expect![[r#"
        local_closed after send(end_of_stream): [false]; Continue Continue NotDelivered
        proxy_on_grpc_receive(ctx=1, 6, 6)
          => ()
        proxy_on_grpc_close(ctx=1, 6, 0)
          proxy_grpc_close(6) -> OK
          => ()
    "#]]
    .assert_eq(&format!(
        "local_closed after send(end_of_stream): {open:?}; {message:?} {closed:?} {again:?}\n{}",
        sim.render_trace()
    ));
}

/// `clear_trace` forgets the trace only: what the filter logged while configuring stays in
/// `logs()` until `clear_logs`.
#[test]
fn clear_trace_keeps_the_logs_and_clear_logs_forgets_them() {
    let guest = Guest {
        fields: data(100, "configured"),
        configure: Some(
            "(drop (call $proxy_log (i32.const 2) (i32.const 100) (i32.const 10))) i32.const 1"
                .into(),
        ),
        without_forwarders: true,
        ..Guest::default()
    };
    let mut sim = root_plugin(&guest).build().unwrap();
    sim.clear_trace();
    let logged =
        |sim: &Sim| -> Vec<String> { sim.logs().iter().map(|log| log.message.clone()).collect() };
    let after_clear_trace = logged(&sim);
    sim.clear_logs();
    let after_clear_logs = logged(&sim);
    expect![[r#"
        after clear_trace: ["configured"], trace: ""
        after clear_logs: []"#]]
    .assert_eq(&format!(
        "after clear_trace: {after_clear_trace:?}, trace: {:?}\nafter clear_logs: {after_clear_logs:?}",
        sim.render_trace()
    ));
}
