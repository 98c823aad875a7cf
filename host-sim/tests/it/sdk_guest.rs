//! filterkit run as wasm: `target/guests/sdk-features.wasm` (built from
//! `sdk/tests/guests/features` by `cargo xtask build --guests`) exercises the SDK's callouts,
//! gRPC, shared data, metrics, ticks and TCP under host-sim, which answers them the way Envoy
//! does (a unary gRPC success is one message and no close; every answer goes to the root).

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use expect_test::{Expect, expect};
use filterkit_host_sim::{Module, Sim};

fn module() -> Module {
    static MODULE: OnceLock<Module> = OnceLock::new();
    MODULE
        .get_or_init(|| {
            let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../target/guests/sdk-features.wasm");
            assert!(
                path.exists(),
                "target/guests/sdk-features.wasm not found: run `cargo xtask build --guests`"
            );
            Module::load(&path).expect("sdk-features.wasm loads")
        })
        .clone()
}

fn sim(config: &str) -> Sim {
    Sim::builder(&module())
        .plugin("sdk", config)
        .cluster("auth")
        .cluster("authz")
        .build()
        .expect("the plugin starts")
}

/// The guest's log lines since the plugin started, with the context that logged.
fn logs(sim: &Sim) -> String {
    sim.logs()
        .iter()
        .map(|log| {
            format!(
                "{} ctx={} {}\n",
                log.level_name(),
                log.context_id,
                log.message
            )
        })
        .collect()
}

/// Sends a request for `path`, lets `answer` answer the callout the guest made (given its
/// token), and renders the outcomes, the request headers the guest added, the local reply and
/// the logs.
fn check(path: &str, answer: impl FnOnce(&mut Sim, u32) -> String, expect: Expect) {
    let mut sim = sim("");
    let mut stream = sim.stream("sdk").unwrap();
    let id = stream.id();
    let request = stream.send_request_headers(
        &[(":method", "GET"), (":path", path), (":authority", "a")],
        true,
    );
    let token = sim
        .http_callouts()
        .first()
        .map(|callout| callout.token)
        .or_else(|| sim.grpc_callouts().first().map(|callout| callout.token))
        .unwrap_or(0);
    let answered = answer(&mut sim, token);
    let stream = sim.stream_by_id(id).unwrap();
    let added: String = stream
        .request_headers()
        .to_vec()
        .iter()
        .filter(|(key, _)| key.starts_with("x-"))
        .map(|(key, value)| format!("{key}: {value}\n"))
        .collect();
    let reply = stream
        .local_reply()
        .map(|reply| {
            let body = String::from_utf8_lossy(&reply.body);
            format!("local reply {} {body:?}\n", reply.status_code)
        })
        .unwrap_or_default();
    expect.assert_eq(&format!(
        "request {request:?}\n{answered}{added}{reply}{}",
        logs(&sim)
    ));
}

#[test]
fn http_callout_answer_reaches_the_stream_and_resumes_it() {
    check(
        "/http",
        |sim, token| {
            let callout = &sim.http_callouts()[0];
            let seen = format!(
                "callout cluster={} root={} origin={}\n",
                callout.cluster, callout.context_id, callout.origin_context_id
            );
            let outcome = sim.respond_http_call(token, &[(":status", "204")], b"", &[]);
            format!("{seen}answer {outcome:?}\n")
        },
        expect![[r#"
            request Paused(StopAllIterationAndWatermark)
            callout cluster=auth root=1 origin=2
            answer Continue
            x-auth: 204
            info ctx=1 root queue registered=true
            info ctx=2 stream=2 request.path=Some("/http")
            info ctx=2 stream=2 http status=204
        "#]],
    );
}

#[test]
fn unary_grpc_success_is_one_message_and_resumes_the_stream() {
    check(
        "/grpc",
        |sim, token| {
            let callout = &sim.grpc_callouts()[0];
            let seen = format!(
                "call {}/{} root={} origin={} message={:?}\n",
                callout.service,
                callout.method,
                callout.context_id,
                callout.origin_context_id,
                String::from_utf8_lossy(&callout.messages[0])
            );
            let outcome = sim.respond_grpc_call(token, b"allowed");
            format!("{seen}answer {outcome:?}\n")
        },
        expect![[r#"
            request Paused(StopAllIterationAndWatermark)
            call pkg.Auth/Check root=1 origin=2 message="check"
            answer Continue
            x-grpc: allowed
            info ctx=1 root queue registered=true
            info ctx=2 stream=2 request.path=Some("/grpc")
            info ctx=2 stream=2 grpc status=0 message=Some("allowed")
        "#]],
    );
}

#[test]
fn unary_grpc_failure_is_a_close_and_the_stream_answers_503() {
    check(
        "/grpc",
        |sim, token| {
            let outcome = sim.close_grpc(token, &[], 14, "unavailable");
            format!("answer {outcome:?}\n")
        },
        expect![[r#"
            request Paused(StopAllIterationAndWatermark)
            answer Continue
            local reply 503 "authz unavailable"
            info ctx=1 root queue registered=true
            info ctx=2 stream=2 request.path=Some("/grpc")
            info ctx=2 stream=2 grpc status=14 message=None
        "#]],
    );
}

#[test]
fn unary_grpc_timeout_reaches_the_stream() {
    check(
        "/grpc",
        |sim, _| {
            let outcome = sim.advance(Duration::from_secs(2));
            format!("after 2s {outcome:?}\n")
        },
        expect![[r#"
            request Paused(StopAllIterationAndWatermark)
            after 2s Continue
            local reply 503 "authz unavailable"
            info ctx=1 root queue registered=true
            info ctx=2 stream=2 request.path=Some("/grpc")
            info ctx=2 stream=2 grpc status=14 message=None
        "#]],
    );
}

#[test]
fn cancelled_unary_grpc_call_gets_nothing() {
    check(
        "/grpc-cancel",
        |sim, _| format!("in flight {}\n", sim.grpc_callouts().len()),
        expect![[r#"
            request Continue
            in flight 0
            info ctx=1 root queue registered=true
            info ctx=2 stream=2 request.path=Some("/grpc-cancel")
            info ctx=2 stream=2 grpc cancel=true
        "#]],
    );
}

#[test]
fn root_grpc_call_on_tick_completes_on_its_message() {
    let mut sim = sim(r#"{"tick_milliseconds": 1000}"#);
    sim.advance(Duration::from_secs(1));
    let token = sim.grpc_callouts()[0].token;
    let first = sim.respond_grpc_call(token, b"ok");
    sim.advance(Duration::from_secs(1));
    let token = sim.grpc_callouts()[0].token;
    let second = sim.close_grpc(token, &[], 7, "denied");
    expect![[r#"
        Continue Continue
        info ctx=1 root queue registered=true
        info ctx=1 root tick=1 grpc sent=true
        info ctx=1 root reply tick=1 status=0 message=Some("ok")
        info ctx=1 root tick=2 grpc sent=true
        info ctx=1 root reply tick=2 status=7 message=None
    "#]]
    .assert_eq(&format!("{first:?} {second:?}\n{}", logs(&sim)));
}

#[test]
fn shared_data_and_metrics_count_requests() {
    let mut sim = sim("");
    for _ in 0..3 {
        sim.stream("sdk")
            .unwrap()
            .send_request_headers(&[(":path", "/shared")], true);
    }
    let (value, cas) = sim.shared_data(b"requests").unwrap();
    let count = u64::from_le_bytes(value.try_into().unwrap());
    expect![[r#"
        requests=3 cas=3 metric=Some(MetricValue { kind: 0, value: 3, count: 0 })
    "#]]
    .assert_eq(&format!(
        "requests={count} cas={cas} metric={:?}\n",
        sim.metric("sdk_guest_requests")
    ));
}

#[test]
fn tcp_connection_gets_its_callout_answer() {
    let mut sim = sim(r#"{"tcp": true}"#);
    let mut connection = sim.connection("sdk").unwrap();
    let id = connection.id();
    let data = connection.send_downstream_data(b"AUTH x", false);
    let token = sim.http_callouts()[0].token;
    let answer = sim.respond_http_call(token, &[(":status", "200")], b"", &[]);
    let upstream =
        String::from_utf8_lossy(sim.connection_by_id(id).unwrap().upstream_bytes()).into_owned();
    expect![[r#"
        data Paused(StopIteration) answer Continue upstream="AUTH x"
        info ctx=1 root queue registered=true
        info ctx=2 connection=2 http status=Some(200)
    "#]]
    .assert_eq(&format!(
        "data {data:?} answer {answer:?} upstream={upstream:?}\n{}",
        logs(&sim)
    ));
}

#[test]
fn grpc_stream_handler_gets_each_event_until_it_cancels() {
    let mut sim = sim("");
    sim.stream("sdk")
        .unwrap()
        .send_request_headers(&[(":path", "/grpc-stream")], true);
    let stream = &sim.grpc_callouts()[0];
    let (token, sent) = (stream.token, stream.messages.clone());
    let first = sim.grpc_stream_message(token, &[("x-id", "7")], b"hi");
    let bye = sim.grpc_stream_message(token, &[], b"bye");
    let after = sim.grpc_stream_message(token, &[], b"late");
    expect![[r#"
        sent=[[104, 101, 108, 108, 111]] Continue Continue NotDelivered
        info ctx=1 root queue registered=true
        info ctx=2 stream=2 request.path=Some("/grpc-stream")
        info ctx=2 stream=2 grpc event InitialMetadata([([120, 45, 105, 100], [55])])
        info ctx=2 stream=2 grpc event Message([104, 105])
        info ctx=2 stream=2 grpc event Message([98, 121, 101])
        info ctx=2 stream=2 grpc cancel=true
    "#]]
    .assert_eq(&format!(
        "sent={sent:?} {first:?} {bye:?} {after:?}\n{}",
        logs(&sim)
    ));
}

#[test]
fn request_body_is_buffered_and_rewritten() {
    let mut sim = sim("");
    let mut stream = sim.stream("sdk").unwrap();
    let headers = stream.send_request_headers(&[(":method", "POST"), (":path", "/body")], false);
    let first = stream.send_request_body(b"hello ", false);
    let last = stream.send_request_body(b"world", true);
    let upstream = String::from_utf8_lossy(stream.upstream_body()).into_owned();
    expect![[r#"
        Continue Paused(StopIterationAndBuffer) Continue upstream="HELLO WORLD"
    "#]]
    .assert_eq(&format!(
        "{headers:?} {first:?} {last:?} upstream={upstream:?}\n"
    ));
}

#[test]
fn queue_items_and_foreign_functions_reach_the_root() {
    let mut sim = sim("");
    let queued = sim.enqueue("jobs", b"job-1");
    let called = sim.call_on_foreign_function("sdk", 7, b"args");
    expect![[r#"
        Ok(Continue) Ok(Continue)
        info ctx=1 root queue registered=true
        info ctx=1 root dequeued queue=1 same_id=true item="job-1"
        info ctx=1 root foreign function=7 arguments="args"
    "#]]
    .assert_eq(&format!("{queued:?} {called:?}\n{}", logs(&sim)));
}
