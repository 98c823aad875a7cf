//! The plugin configuration contract, and the filter against filterkit's fake host.

use expect_test::{Expect, expect};
use filter_json_guard::JsonGuardRoot;
use filterkit::http::MapType;
use filterkit::testing::Vm;

fn check_config(config: &str, expect: Expect) {
    let vm = Vm::<JsonGuardRoot>::new();
    let accepted = vm.configure("g", config.as_bytes());
    let mut out = String::from(if accepted { "accepted\n" } else { "rejected\n" });
    for line in vm.logs() {
        out.push_str(&format!("{line}\n"));
    }
    expect.assert_eq(&out);
}

#[test]
fn configuration_is_checked() {
    check_config(
        r#"{"max_body_bytes":1024,"redact":["a.b"],"remove":["c"]}"#,
        expect![[r#"
        accepted
    "#]],
    );
    check_config(
        r#"{"max_body_bytes":2000000}"#,
        expect![[r#"
        rejected
        error: invalid plugin configuration for root_id=g: max_body_bytes 2000000 is above Envoy's buffer limit 1048576: raise the listener's per_connection_buffer_limit_bytes and set buffer_limit_bytes to it
    "#]],
    );
    check_config(
        r#"{"max_body_bytes":2000000,"buffer_limit_bytes":4194304}"#,
        expect![[r#"
        accepted
    "#]],
    );
    check_config(
        r#"{"max_body_bytes":0}"#,
        expect![[r#"
        rejected
        error: invalid plugin configuration for root_id=g: max_body_bytes must be at least 1
    "#]],
    );
    check_config(
        r#"{"max_body_bytes":10,"redact":["a..b"]}"#,
        expect![[r#"
        rejected
        error: invalid plugin configuration for root_id=g: field path "a..b" has an empty member name
    "#]],
    );
    check_config(
        r#"{"max_body_bytes":10,"limit":1}"#,
        expect![[r#"
        rejected
        error: invalid plugin configuration for root_id=g: unknown field `limit`, expected one of `max_body_bytes`, `buffer_limit_bytes`, `redact`, `remove`, `replacement`
    "#]],
    );
    check_config(
        "",
        expect![[r#"
        rejected
        error: invalid plugin configuration for root_id=g: plugin configuration is empty
    "#]],
    );
}

/// One POST with `body` in `chunks`: the actions, the local reply, and what goes upstream.
fn check_stream(headers: &[(&str, &str)], chunks: &[&str], expect: Expect) {
    let vm = Vm::<JsonGuardRoot>::new();
    assert!(vm.configure(
        "g",
        br#"{"max_body_bytes":32,"redact":["password"],"remove":["debug"]}"#
    ));
    let stream = vm.create_stream();
    let mut all = vec![(":method", "POST"), (":path", "/")];
    all.extend_from_slice(headers);
    let mut out = vec![format!("headers: {:?}", vm.request_headers(stream, &all))];
    let mut body = String::new();
    for (idx, chunk) in chunks.iter().enumerate() {
        body.push_str(chunk);
        // The host hands over the whole buffered body each time, as Envoy does while paused.
        let end = idx + 1 == chunks.len();
        out.push(format!(
            "body {chunk:?}: {:?}",
            vm.request_body(stream, body.as_bytes(), end)
        ));
    }
    for reply in vm.local_responses() {
        out.push(format!(
            "reply {} {:?}",
            reply.status_code,
            String::from_utf8_lossy(&reply.body)
        ));
    }
    out.push(format!(
        "headers now {:?}",
        vm.headers(MapType::RequestHeaders)
    ));
    out.extend(vm.logs());
    expect.assert_debug_eq(&out);
}

#[test]
fn streams_through_the_fake_host() {
    check_stream(
        &[("content-length", "33")],
        &[],
        expect![[r#"
        [
            "headers: Pause",
            "reply 413 \"request body larger than 32 bytes\\n\"",
            "headers now [\":method: POST\", \":path: /\", \"content-length: 33\"]",
        ]
    "#]],
    );
    check_stream(
        &[],
        &[r#"{"password":"#, r#""x","debug":1}"#],
        expect![[r#"
        [
            "headers: Pause",
            "body \"{\\\"password\\\":\": Pause",
            "body \"\\\"x\\\",\\\"debug\\\":1}\": Continue",
            "headers now [\":method: POST\", \":path: /\", \"content-length: 25\"]",
        ]
    "#]],
    );
    check_stream(
        &[],
        &[r#"{"a":"0123456789"#, r#"0123456789012345"}"#],
        expect![[r#"
        [
            "headers: Pause",
            "body \"{\\\"a\\\":\\\"0123456789\": Pause",
            "body \"0123456789012345\\\"}\": Pause",
            "reply 413 \"request body larger than 32 bytes\\n\"",
            "headers now [\":method: POST\", \":path: /\"]",
        ]
    "#]],
    );
    check_stream(
        &[],
        &["{nope}"],
        expect![[r#"
        [
            "headers: Pause",
            "body \"{nope}\": Pause",
            "reply 400 \"invalid JSON: expected string at byte 1\\n\"",
            "headers now [\":method: POST\", \":path: /\"]",
        ]
    "#]],
    );
}
