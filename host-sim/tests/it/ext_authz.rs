//! The ext-authz filter (target/filters/ext-authz.wasm, built by `cargo xtask build`) as
//! scenarios: a request in, the check it sends, the service's answer (or failure, or
//! silence until the timeout on the virtual clock), and what goes upstream or back to the
//! client.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use expect_test::{Expect, expect};
use filterkit_host_sim::{Error, Module, Sim};

fn module() -> Module {
    static MODULE: OnceLock<Module> = OnceLock::new();
    MODULE
        .get_or_init(|| {
            let path =
                PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/filters/ext-authz.wasm");
            assert!(
                path.exists(),
                "target/filters/ext-authz.wasm not found: run `cargo xtask build`"
            );
            Module::load(&path).expect("ext-authz.wasm loads")
        })
        .clone()
}

/// How the authorization service answers the one check of a scenario.
enum Answer<'a> {
    Http {
        status: u16,
        headers: &'a [(&'a str, &'a str)],
        body: &'a str,
    },
    /// `proxy_on_grpc_receive` with this `CheckResponse`.
    Grpc(Vec<u8>),
    /// `proxy_on_grpc_close` with this status (a failed call).
    GrpcClose(u32),
    /// A reset: the call fails at once.
    Reset,
    /// Nothing: the virtual clock runs past the timeout.
    Silence,
}

const CLUSTER: &str = "authz";

const GET: &[(&str, &str)] = &[
    (":method", "GET"),
    (":path", "/items?id=1"),
    (":authority", "shop"),
    (":scheme", "http"),
    ("authorization", "Bearer alice"),
    ("x-other", "o"),
];

const POST: &[(&str, &str)] = &[
    (":method", "POST"),
    (":path", "/items"),
    (":authority", "shop"),
    ("content-length", "5"),
    ("authorization", "Bearer alice"),
];

fn render_pairs(pairs: &[(String, String)]) -> String {
    let rendered: Vec<String> = pairs
        .iter()
        .map(|(name, value)| format!("{name}: {value}"))
        .collect();
    rendered.join(", ")
}

/// Runs one request (`body` after the headers when not empty) through ext-authz configured
/// with `config`, answers its check with `answer`, and renders the check, what the client or
/// the upstream gets, and the warnings.
fn check(config: &str, request: &[(&str, &str)], body: &str, answer: Answer<'_>, expect: Expect) {
    let mut sim = match Sim::builder(&module())
        .plugin("my_root_id", config)
        .cluster(CLUSTER)
        .build()
    {
        Ok(sim) => sim,
        Err(Error::ConfigRejected(rejection)) => {
            let errors: Vec<String> = rejection
                .logs
                .iter()
                .filter(|log| log.level >= 4)
                .map(|log| format!("{} {}", log.level_name(), log.message))
                .collect();
            expect.assert_eq(&format!("rejected\n{}\n", errors.join("\n")));
            return;
        }
        Err(other) => panic!("unexpected error: {other}"),
    };
    let mut rendered = String::new();
    let mut stream = sim.stream("my_root_id").unwrap();
    let id = stream.id();
    let outcome = stream.send_request_headers(request, body.is_empty());
    rendered.push_str(&format!("request headers: {outcome:?}\n"));
    if !body.is_empty() {
        let outcome = stream.send_request_body(body.as_bytes(), true);
        rendered.push_str(&format!(
            "request body: {outcome:?}, upstream got {:?}\n",
            String::from_utf8_lossy(stream.upstream_body())
        ));
    }
    for callout in sim.http_callouts() {
        rendered.push_str(&format!(
            "http check to {} (timeout {} ms): {}\n",
            callout.cluster,
            callout.timeout_ms,
            render_pairs(&callout.headers.to_vec())
        ));
    }
    for callout in sim.grpc_callouts() {
        rendered.push_str(&format!(
            "grpc check to {} {}/{} (timeout {} ms): {:?}\n",
            callout.cluster,
            callout.service,
            callout.method,
            callout.timeout_ms,
            callout
                .messages
                .iter()
                .map(|message| render_protobuf(message).unwrap_or_default())
                .collect::<Vec<_>>()
        ));
    }
    let http_token = sim.http_callouts().first().map(|callout| callout.token);
    let grpc_token = sim.grpc_callouts().first().map(|callout| callout.token);
    let trace_before = sim.render_trace().len();
    let outcome = match (answer, http_token, grpc_token) {
        (
            Answer::Http {
                status,
                headers,
                body,
            },
            Some(token),
            _,
        ) => {
            let mut all = vec![(":status", status.to_string())];
            all.extend(
                headers
                    .iter()
                    .map(|(name, value)| (*name, value.to_string())),
            );
            let all: Vec<(&str, &str)> = all.iter().map(|(n, v)| (*n, v.as_str())).collect();
            Some(sim.respond_http_call(token, &all, body.as_bytes(), &[]))
        }
        (Answer::Reset, Some(token), _) => Some(sim.fail_http_call(token)),
        (Answer::Grpc(message), _, Some(token)) => Some(sim.respond_grpc_call(token, &message)),
        (Answer::GrpcClose(status), _, Some(token)) => {
            Some(sim.close_grpc(token, &[], status, "unavailable"))
        }
        (Answer::Silence, Some(_), _) | (Answer::Silence, _, Some(_)) => {
            Some(sim.advance(Duration::from_secs(10)))
        }
        _ => None,
    };
    if let Some(outcome) = outcome {
        let resumed = sim.render_trace()[trace_before..].contains("proxy_continue_stream");
        rendered.push_str(&format!("answered: {outcome:?}, resumed: {resumed}\n"));
    }
    let mut stream = sim.stream_by_id(id).unwrap();
    match stream.local_reply() {
        Some(reply) => rendered.push_str(&format!(
            "client gets {} {} [{}] {:?}\n",
            reply.status_code,
            reply.details,
            render_pairs(&reply.headers),
            String::from_utf8_lossy(&reply.body)
        )),
        None => {
            let outcome = stream.send_response_headers(&[(":status", "200")], true);
            rendered.push_str(&format!(
                "upstream gets [{}] {:?}\nresponse: {outcome:?} [{}]\n",
                render_pairs(&stream.request_headers().to_vec()),
                String::from_utf8_lossy(stream.upstream_body()),
                render_pairs(&stream.response_headers().to_vec()),
            ));
        }
    }
    let counted: Vec<String> = sim
        .metrics()
        .iter()
        .filter(|(_, metric)| metric.value > 0)
        .map(|(name, metric)| format!("{name}={}", metric.value))
        .collect();
    rendered.push_str(&format!("counters: {}\n", counted.join(" ")));
    for log in sim.logs().iter().filter(|log| log.level >= 3) {
        rendered.push_str(&format!("{} {}\n", log.level_name(), log.message));
    }
    expect.assert_eq(&rendered);
}

/// A protobuf message as `field: value` with nested messages in braces; a length-delimited
/// field is shown as text when it is printable, else as a message. `None` if it does not parse.
fn render_protobuf(bytes: &[u8]) -> Option<String> {
    fn varint(bytes: &[u8], position: &mut usize) -> Option<u64> {
        let mut value = 0;
        for shift in (0..64).step_by(7) {
            let byte = *bytes.get(*position)?;
            *position += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return Some(value);
            }
        }
        None
    }
    let mut fields = Vec::new();
    let mut position = 0;
    while position < bytes.len() {
        let key = varint(bytes, &mut position)?;
        let rendered = match key & 7 {
            0 => varint(bytes, &mut position)?.to_string(),
            2 => {
                let length = usize::try_from(varint(bytes, &mut position)?).ok()?;
                let value = bytes.get(position..position.checked_add(length)?)?;
                position += length;
                match std::str::from_utf8(value) {
                    Ok(text) if text.chars().all(|c| !c.is_control()) => format!("{text:?}"),
                    _ => format!("{{{}}}", render_protobuf(value)?),
                }
            }
            _ => return None,
        };
        fields.push(format!("{}: {rendered}", key >> 3));
    }
    Some(fields.join(" "))
}

/// A protobuf length-delimited field.
fn message(field: u32, bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![u8::try_from(field << 3 | 2).unwrap()];
    let mut length = bytes.len();
    while length >= 0x80 {
        out.push(u8::try_from(length & 0x7f).unwrap() | 0x80);
        length >>= 7;
    }
    out.push(u8::try_from(length).unwrap());
    out.extend_from_slice(bytes);
    out
}

/// A protobuf varint field (values below 128 here).
fn varint(field: u32, value: u8) -> Vec<u8> {
    vec![u8::try_from(field << 3).unwrap(), value]
}

/// `HeaderValueOption { header: { key, value } }`, with `append: BoolValue` when given.
fn header_option(name: &str, value: &str, append: Option<bool>) -> Vec<u8> {
    let header = [message(1, name.as_bytes()), message(2, value.as_bytes())].concat();
    let mut option = message(1, &header);
    if let Some(append) = append {
        option.extend(message(2, &varint(1, u8::from(append))));
    }
    option
}

/// `CheckResponse { status: { code }, ok_response | denied_response }`.
fn check_response(code: u8, field: u32, response: &[u8]) -> Vec<u8> {
    [message(1, &varint(1, code)), message(field, response)].concat()
}

const HTTP: &str = r#"{"cluster":"authz","headers_to_upstream":["x-user"]}"#;
const GRPC: &str = r#"{"cluster":"authz","mode":"grpc","timeout_ms":1000}"#;

#[test]
fn http_allow_copies_configured_headers_upstream() {
    check(
        HTTP,
        GET,
        "",
        Answer::Http {
            status: 200,
            headers: &[("x-user", "alice"), ("x-not-copied", "1")],
            body: "",
        },
        expect![[r#"
            request headers: Paused(StopAllIterationAndWatermark)
            http check to authz (timeout 200 ms): :method: GET, :path: /items?id=1, :authority: authz, authorization: Bearer alice, x-other: o
            answered: Continue, resumed: true
            upstream gets [:method: GET, :path: /items?id=1, :authority: shop, :scheme: http, authorization: Bearer alice, x-other: o, x-user: alice] ""
            response: Continue [:status: 200]
            counters: ext_authz.my_root_id.ok=1
        "#]],
    );
}

#[test]
fn http_deny_answers_the_services_status_headers_and_body() {
    check(
        HTTP,
        GET,
        "",
        Answer::Http {
            status: 401,
            headers: &[
                ("www-authenticate", "Bearer realm=shop"),
                ("content-type", "text/plain"),
                ("content-length", "7"),
                ("date", "today"),
                ("server", "authz"),
            ],
            body: "go away",
        },
        expect![[r#"
            request headers: Paused(StopAllIterationAndWatermark)
            http check to authz (timeout 200 ms): :method: GET, :path: /items?id=1, :authority: authz, authorization: Bearer alice, x-other: o
            answered: Continue, resumed: false
            client gets 401 ext_authz_denied [www-authenticate: Bearer realm=shop, content-type: text/plain] "go away"
            counters: ext_authz.my_root_id.denied=1
        "#]],
    );
}

#[test]
fn http_check_carries_prefix_authority_and_only_listed_headers() {
    check(
        r#"{"cluster":"authz","authority":"authz.internal","path_prefix":"/check",
            "headers_to_send":["Authorization"],"timeout_ms":2500}"#,
        GET,
        "",
        Answer::Http {
            status: 200,
            headers: &[],
            body: "",
        },
        expect![[r#"
            request headers: Paused(StopAllIterationAndWatermark)
            http check to authz (timeout 2500 ms): :method: GET, :path: /check/items?id=1, :authority: authz.internal, authorization: Bearer alice
            answered: Continue, resumed: true
            upstream gets [:method: GET, :path: /items?id=1, :authority: shop, :scheme: http, authorization: Bearer alice, x-other: o] ""
            response: Continue [:status: 200]
            counters: ext_authz.my_root_id.ok=1
        "#]],
    );
}

#[test]
fn post_body_is_held_until_the_allow() {
    check(
        HTTP,
        POST,
        "hello",
        Answer::Http {
            status: 200,
            headers: &[("x-user", "alice")],
            body: "",
        },
        expect![[r#"
            request headers: Paused(StopAllIterationAndWatermark)
            request body: Paused(Held), upstream got ""
            http check to authz (timeout 200 ms): :method: POST, :path: /items, :authority: authz, authorization: Bearer alice
            answered: Continue, resumed: true
            upstream gets [:method: POST, :path: /items, :authority: shop, content-length: 5, authorization: Bearer alice, x-user: alice] "hello"
            response: Continue [:status: 200]
            counters: ext_authz.my_root_id.ok=1
        "#]],
    );
}

#[test]
fn post_body_never_goes_upstream_after_a_deny() {
    check(
        HTTP,
        POST,
        "hello",
        Answer::Http {
            status: 403,
            headers: &[],
            body: "",
        },
        expect![[r#"
            request headers: Paused(StopAllIterationAndWatermark)
            request body: Paused(Held), upstream got ""
            http check to authz (timeout 200 ms): :method: POST, :path: /items, :authority: authz, authorization: Bearer alice
            answered: Continue, resumed: false
            client gets 403 ext_authz_denied [] ""
            counters: ext_authz.my_root_id.denied=1
        "#]],
    );
}

#[test]
fn timeout_fails_closed_with_status_on_error() {
    check(
        r#"{"cluster":"authz","status_on_error":503}"#,
        POST,
        "hello",
        Answer::Silence,
        expect![[r#"
            request headers: Paused(StopAllIterationAndWatermark)
            request body: Paused(Held), upstream got ""
            http check to authz (timeout 200 ms): :method: POST, :path: /items, :authority: authz, authorization: Bearer alice
            answered: Continue, resumed: false
            client gets 503 ext_authz_error [] ""
            counters: ext_authz.my_root_id.error=1
            warn authorization failed: cluster=authz reason=the service answered 504 failure_mode_allow=false
        "#]],
    );
}

#[test]
fn timeout_fails_open_and_marks_the_request_when_asked() {
    check(
        r#"{"cluster":"authz","failure_mode_allow":true,"failure_mode_allow_header_add":true}"#,
        POST,
        "hello",
        Answer::Silence,
        expect![[r#"
            request headers: Paused(StopAllIterationAndWatermark)
            request body: Paused(Held), upstream got ""
            http check to authz (timeout 200 ms): :method: POST, :path: /items, :authority: authz, authorization: Bearer alice
            answered: Continue, resumed: true
            upstream gets [:method: POST, :path: /items, :authority: shop, content-length: 5, authorization: Bearer alice, x-envoy-auth-failure-mode-allowed: true] "hello"
            response: Continue [:status: 200]
            counters: ext_authz.my_root_id.error=1 ext_authz.my_root_id.failure_mode_allowed=1
            warn authorization failed: cluster=authz reason=the service answered 504 failure_mode_allow=true
        "#]],
    );
}

#[test]
fn reset_fails_closed_with_403_by_default() {
    check(
        HTTP,
        GET,
        "",
        Answer::Reset,
        expect![[r#"
            request headers: Paused(StopAllIterationAndWatermark)
            http check to authz (timeout 200 ms): :method: GET, :path: /items?id=1, :authority: authz, authorization: Bearer alice, x-other: o
            answered: Continue, resumed: false
            client gets 403 ext_authz_error [] ""
            counters: ext_authz.my_root_id.error=1
            warn authorization failed: cluster=authz reason=the call failed (reset) failure_mode_allow=false
        "#]],
    );
}

#[test]
fn unknown_cluster_fails_closed_at_once() {
    check(
        r#"{"cluster":"missing"}"#,
        GET,
        "",
        Answer::Silence,
        expect![[r#"
            request headers: LocalReply { status_code: 403 }
            client gets 403 ext_authz_error [] ""
            counters: ext_authz.my_root_id.error=1
            warn authorization failed: cluster=missing reason=the call was refused: proxy_http_call returned status 2 failure_mode_allow=false
        "#]],
    );
}

#[test]
fn unknown_cluster_fails_open_at_once() {
    check(
        r#"{"cluster":"missing","mode":"grpc","failure_mode_allow":true}"#,
        GET,
        "",
        Answer::Silence,
        expect![[r#"
            request headers: Continue
            upstream gets [:method: GET, :path: /items?id=1, :authority: shop, :scheme: http, authorization: Bearer alice, x-other: o] ""
            response: Continue [:status: 200]
            counters: ext_authz.my_root_id.error=1 ext_authz.my_root_id.failure_mode_allowed=1
            warn authorization failed: cluster=missing reason=the call was refused: proxy_grpc_call returned status 4 failure_mode_allow=true
        "#]],
    );
}

#[test]
fn grpc_allow_sets_appends_and_removes_headers() {
    let ok_response = [
        message(2, &header_option("x-user", "alice", None)),
        message(2, &header_option("x-other", "added", Some(true))),
        message(5, b"authorization"),
        message(6, &header_option("x-authz", "checked", None)),
    ]
    .concat();
    check(
        GRPC,
        GET,
        "",
        Answer::Grpc(check_response(0, 3, &ok_response)),
        expect![[r#"
            request headers: Paused(StopAllIterationAndWatermark)
            grpc check to authz envoy.service.auth.v3.Authorization/Check (timeout 1000 ms): ["1: {1: {1: {1: {2: \"127.0.0.1\" 3: 40002}}} 4: {2: {2: \"GET\" 3: {1: \":method\" 2: \"GET\"} 3: {1: \":path\" 2: \"/items?id=1\"} 3: {1: \":authority\" 2: \"shop\"} 3: {1: \":scheme\" 2: \"http\"} 3: {1: \"authorization\" 2: \"Bearer alice\"} 3: {1: \"x-other\" 2: \"o\"} 4: \"/items?id=1\" 5: \"shop\" 6: \"http\"}}}"]
            answered: Continue, resumed: true
            upstream gets [:method: GET, :path: /items?id=1, :authority: shop, :scheme: http, x-other: o, x-user: alice, x-other: added] ""
            response: Continue [:status: 200, x-authz: checked]
            counters: ext_authz.my_root_id.ok=1
        "#]],
    );
}

#[test]
fn grpc_allow_of_a_post_releases_the_held_body() {
    check(
        GRPC,
        POST,
        "hello",
        Answer::Grpc(Vec::new()),
        expect![[r#"
            request headers: Paused(StopAllIterationAndWatermark)
            request body: Paused(Held), upstream got ""
            grpc check to authz envoy.service.auth.v3.Authorization/Check (timeout 1000 ms): ["1: {1: {1: {1: {2: \"127.0.0.1\" 3: 40002}}} 4: {2: {2: \"POST\" 3: {1: \":method\" 2: \"POST\"} 3: {1: \":path\" 2: \"/items\"} 3: {1: \":authority\" 2: \"shop\"} 3: {1: \"content-length\" 2: \"5\"} 3: {1: \"authorization\" 2: \"Bearer alice\"} 4: \"/items\" 5: \"shop\"}}}"]
            answered: Continue, resumed: true
            upstream gets [:method: POST, :path: /items, :authority: shop, content-length: 5, authorization: Bearer alice] "hello"
            response: Continue [:status: 200]
            counters: ext_authz.my_root_id.ok=1
        "#]],
    );
}

#[test]
fn grpc_deny_answers_the_services_status_headers_and_body() {
    let denied = [
        // HttpStatus { code: 401 }: 401 as a varint is 0x91 0x03.
        message(1, &[0x08, 0x91, 0x03]),
        message(2, &header_option("www-authenticate", "Bearer", None)),
        message(3, b"denied by policy"),
    ]
    .concat();
    check(
        GRPC,
        POST,
        "hello",
        Answer::Grpc(check_response(7, 2, &denied)),
        expect![[r#"
            request headers: Paused(StopAllIterationAndWatermark)
            request body: Paused(Held), upstream got ""
            grpc check to authz envoy.service.auth.v3.Authorization/Check (timeout 1000 ms): ["1: {1: {1: {1: {2: \"127.0.0.1\" 3: 40002}}} 4: {2: {2: \"POST\" 3: {1: \":method\" 2: \"POST\"} 3: {1: \":path\" 2: \"/items\"} 3: {1: \":authority\" 2: \"shop\"} 3: {1: \"content-length\" 2: \"5\"} 3: {1: \"authorization\" 2: \"Bearer alice\"} 4: \"/items\" 5: \"shop\"}}}"]
            answered: Continue, resumed: false
            client gets 401 ext_authz_denied [www-authenticate: Bearer] "denied by policy"
            counters: ext_authz.my_root_id.denied=1
        "#]],
    );
}

#[test]
fn grpc_deny_without_a_status_answers_status_on_deny() {
    check(
        r#"{"cluster":"authz","mode":"grpc","status_on_deny":401}"#,
        GET,
        "",
        Answer::Grpc(message(1, &varint(1, 7))),
        expect![[r#"
            request headers: Paused(StopAllIterationAndWatermark)
            grpc check to authz envoy.service.auth.v3.Authorization/Check (timeout 200 ms): ["1: {1: {1: {1: {2: \"127.0.0.1\" 3: 40002}}} 4: {2: {2: \"GET\" 3: {1: \":method\" 2: \"GET\"} 3: {1: \":path\" 2: \"/items?id=1\"} 3: {1: \":authority\" 2: \"shop\"} 3: {1: \":scheme\" 2: \"http\"} 3: {1: \"authorization\" 2: \"Bearer alice\"} 3: {1: \"x-other\" 2: \"o\"} 4: \"/items?id=1\" 5: \"shop\" 6: \"http\"}}}"]
            answered: Continue, resumed: false
            client gets 401 ext_authz_denied [] ""
            counters: ext_authz.my_root_id.denied=1
        "#]],
    );
}

#[test]
fn grpc_error_status_fails_closed() {
    check(
        GRPC,
        GET,
        "",
        Answer::GrpcClose(14),
        expect![[r#"
            request headers: Paused(StopAllIterationAndWatermark)
            grpc check to authz envoy.service.auth.v3.Authorization/Check (timeout 1000 ms): ["1: {1: {1: {1: {2: \"127.0.0.1\" 3: 40002}}} 4: {2: {2: \"GET\" 3: {1: \":method\" 2: \"GET\"} 3: {1: \":path\" 2: \"/items?id=1\"} 3: {1: \":authority\" 2: \"shop\"} 3: {1: \":scheme\" 2: \"http\"} 3: {1: \"authorization\" 2: \"Bearer alice\"} 3: {1: \"x-other\" 2: \"o\"} 4: \"/items?id=1\" 5: \"shop\" 6: \"http\"}}}"]
            answered: Continue, resumed: false
            client gets 403 ext_authz_error [] ""
            counters: ext_authz.my_root_id.error=1
            warn authorization failed: cluster=authz reason=the call ended with grpc-status 14 failure_mode_allow=false
        "#]],
    );
}

#[test]
fn grpc_timeout_fails_open() {
    check(
        r#"{"cluster":"authz","mode":"grpc","failure_mode_allow":true}"#,
        GET,
        "",
        Answer::Silence,
        expect![[r#"
            request headers: Paused(StopAllIterationAndWatermark)
            grpc check to authz envoy.service.auth.v3.Authorization/Check (timeout 200 ms): ["1: {1: {1: {1: {2: \"127.0.0.1\" 3: 40002}}} 4: {2: {2: \"GET\" 3: {1: \":method\" 2: \"GET\"} 3: {1: \":path\" 2: \"/items?id=1\"} 3: {1: \":authority\" 2: \"shop\"} 3: {1: \":scheme\" 2: \"http\"} 3: {1: \"authorization\" 2: \"Bearer alice\"} 3: {1: \"x-other\" 2: \"o\"} 4: \"/items?id=1\" 5: \"shop\" 6: \"http\"}}}"]
            answered: Continue, resumed: true
            upstream gets [:method: GET, :path: /items?id=1, :authority: shop, :scheme: http, authorization: Bearer alice, x-other: o] ""
            response: Continue [:status: 200]
            counters: ext_authz.my_root_id.error=1 ext_authz.my_root_id.failure_mode_allowed=1
            warn authorization failed: cluster=authz reason=the call ended with grpc-status 14 failure_mode_allow=true
        "#]],
    );
}

#[test]
fn grpc_answer_that_does_not_decode_fails_closed() {
    check(
        GRPC,
        GET,
        "",
        Answer::Grpc(vec![0x0a, 0x05, 0x08]),
        expect![[r#"
            request headers: Paused(StopAllIterationAndWatermark)
            grpc check to authz envoy.service.auth.v3.Authorization/Check (timeout 1000 ms): ["1: {1: {1: {1: {2: \"127.0.0.1\" 3: 40002}}} 4: {2: {2: \"GET\" 3: {1: \":method\" 2: \"GET\"} 3: {1: \":path\" 2: \"/items?id=1\"} 3: {1: \":authority\" 2: \"shop\"} 3: {1: \":scheme\" 2: \"http\"} 3: {1: \"authorization\" 2: \"Bearer alice\"} 3: {1: \"x-other\" 2: \"o\"} 4: \"/items?id=1\" 5: \"shop\" 6: \"http\"}}}"]
            answered: Continue, resumed: false
            client gets 403 ext_authz_error [] ""
            counters: ext_authz.my_root_id.error=1
            warn authorization failed: cluster=authz reason=the answer is not a CheckResponse failure_mode_allow=false
        "#]],
    );
}

#[test]
fn rejects_bad_configurations_with_one_line() {
    let configs = [
        "",
        "{}",
        r#"{"cluster":""}"#,
        r#"{"cluster":"a","mode":"tcp"}"#,
        r#"{"cluster":"a","timeout_ms":0}"#,
        r#"{"cluster":"a","timeout_ms":600001}"#,
        r#"{"cluster":"a","path_prefix":"check"}"#,
        r#"{"cluster":"a","authority":"a b"}"#,
        r#"{"cluster":"a","headers_to_send":["bad name"]}"#,
        r#"{"cluster":"a","headers_to_upstream":[""]}"#,
        r#"{"cluster":"a","status_on_error":100}"#,
        r#"{"cluster":"a","status_on_deny":600}"#,
        r#"{"cluster":"a","failure_mode_allow_header_add":true}"#,
        r#"{"cluster":"a","mode":"grpc","headers_to_upstream":["x"]}"#,
        r#"{"cluster":"a","mode":"grpc","path_prefix":"/x"}"#,
        r#"{"cluster":"a","extra":1}"#,
    ];
    let mut rendered = String::new();
    for config in configs {
        let line = match Sim::builder(&module()).plugin("my_root_id", config).build() {
            Ok(_) => "accepted".to_owned(),
            Err(Error::ConfigRejected(rejection)) => rejection
                .logs
                .iter()
                .filter(|log| log.level >= 4)
                .map(|log| log.message.clone())
                .collect::<Vec<_>>()
                .join(" | "),
            Err(other) => panic!("unexpected error: {other}"),
        };
        rendered.push_str(&format!("{config}\n  {line}\n"));
    }
    expect![[r#"

          invalid plugin configuration for root_id=my_root_id: plugin configuration is empty
        {}
          invalid plugin configuration for root_id=my_root_id: missing field `cluster`
        {"cluster":""}
          invalid plugin configuration for root_id=my_root_id: cluster "" is not a cluster name
        {"cluster":"a","mode":"tcp"}
          invalid plugin configuration for root_id=my_root_id: unknown variant `tcp`, expected `http` or `grpc`
        {"cluster":"a","timeout_ms":0}
          invalid plugin configuration for root_id=my_root_id: timeout_ms 0 is not from 1 to 600000
        {"cluster":"a","timeout_ms":600001}
          invalid plugin configuration for root_id=my_root_id: timeout_ms 600001 is not from 1 to 600000
        {"cluster":"a","path_prefix":"check"}
          invalid plugin configuration for root_id=my_root_id: path_prefix "check" must start with / and hold no space, ? or #
        {"cluster":"a","authority":"a b"}
          invalid plugin configuration for root_id=my_root_id: authority "a b" is not a host
        {"cluster":"a","headers_to_send":["bad name"]}
          invalid plugin configuration for root_id=my_root_id: headers_to_send: header name "bad name" is not a valid HTTP token
        {"cluster":"a","headers_to_upstream":[""]}
          invalid plugin configuration for root_id=my_root_id: headers_to_upstream: header name "" is not a valid HTTP token
        {"cluster":"a","status_on_error":100}
          invalid plugin configuration for root_id=my_root_id: status_on_error 100 is not an HTTP status from 200 to 599
        {"cluster":"a","status_on_deny":600}
          invalid plugin configuration for root_id=my_root_id: status_on_deny 600 is not an HTTP status from 200 to 599
        {"cluster":"a","failure_mode_allow_header_add":true}
          invalid plugin configuration for root_id=my_root_id: failure_mode_allow_header_add needs failure_mode_allow
        {"cluster":"a","mode":"grpc","headers_to_upstream":["x"]}
          invalid plugin configuration for root_id=my_root_id: headers_to_upstream applies to mode "http" only
        {"cluster":"a","mode":"grpc","path_prefix":"/x"}
          invalid plugin configuration for root_id=my_root_id: path_prefix applies to mode "http" only
        {"cluster":"a","extra":1}
          invalid plugin configuration for root_id=my_root_id: unknown field `extra`, expected one of `cluster`, `mode`, `timeout_ms`, `authority`, `path_prefix`, `headers_to_send`, `headers_to_upstream`, `failure_mode_allow`, `failure_mode_allow_header_add`, `status_on_error`, `status_on_deny`
    "#]].assert_eq(&rendered);
}
