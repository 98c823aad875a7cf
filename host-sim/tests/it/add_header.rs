//! The add-header filter (target/filters/add-header.wasm, built by `cargo xtask build`) as
//! data-driven cases: both headers, several root_ids in one VM, each kind of bad config.

use std::path::PathBuf;
use std::sync::OnceLock;

use expect_test::{Expect, expect};
use filterkit_host_sim::{Error, Module, Outcome, Sim};

fn module() -> Module {
    static MODULE: OnceLock<Module> = OnceLock::new();
    MODULE
        .get_or_init(|| {
            let path =
                PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/filters/add-header.wasm");
            assert!(
                path.exists(),
                "target/filters/add-header.wasm not found: run `cargo xtask build`"
            );
            Module::load(&path).expect("add-header.wasm loads")
        })
        .clone()
}

/// Runs one stream through the plugin configured with `config` and renders the response
/// headers, or the rejection with the filter's error log lines.
fn check(config: &str, expect: Expect) {
    let rendered = match Sim::builder(&module()).plugin("my_root_id", config).build() {
        Err(Error::ConfigRejected(rejection)) => {
            let errors: Vec<String> = rejection
                .logs
                .iter()
                .filter(|log| log.level >= 4)
                .map(|log| format!("{} {}", log.level_name(), log.message))
                .collect();
            format!("rejected\n{}\n", errors.join("\n"))
        }
        Err(other) => panic!("unexpected error: {other}"),
        Ok(mut sim) => {
            let mut stream = sim.stream("my_root_id").unwrap();
            let request = stream.send_request_headers(
                &[(":method", "GET"), (":path", "/"), (":authority", "a")],
                true,
            );
            let response = stream.send_response_headers(&[(":status", "200")], true);
            assert_eq!((request, response), (Outcome::Continue, Outcome::Continue));
            assert_eq!(stream.request_headers().len(), 3, "request path untouched");
            stream
                .response_headers()
                .to_vec()
                .iter()
                .map(|(key, value)| format!("{key}: {value}\n"))
                .collect()
        }
    };
    expect.assert_eq(&rendered);
}

#[test]
fn adds_demo_and_configured_headers() {
    check(
        r#"{"name":"Hello","value":"hello details"}"#,
        expect![[r#"
        :status: 200
        resp-header-demo: added by our filter
        hello: hello details
    "#]],
    );
}

#[test]
fn empty_configuration_adds_only_the_demo_header() {
    check(
        "",
        expect![[r#"
        :status: 200
        resp-header-demo: added by our filter
    "#]],
    );
}

#[test]
fn rejects_configuration_that_is_not_json() {
    check(
        "not json",
        expect![[r#"
            rejected
            error invalid plugin configuration for root_id=my_root_id: not valid JSON: expected value at byte 0
        "#]],
    );
}

#[test]
fn rejects_configuration_with_wrong_types() {
    check(
        r#"{"name":1,"value":"x"}"#,
        expect![[r#"
        rejected
        error invalid plugin configuration for root_id=my_root_id: invalid type: integer `1`, expected a string
    "#]],
    );
}

#[test]
fn rejects_configuration_missing_a_field() {
    check(
        r#"{"name":"x"}"#,
        expect![[r#"
        rejected
        error invalid plugin configuration for root_id=my_root_id: missing field `value`
    "#]],
    );
}

#[test]
fn rejects_configuration_with_unknown_field() {
    check(
        r#"{"name":"x","value":"y","extra":1}"#,
        expect![[r#"
        rejected
        error invalid plugin configuration for root_id=my_root_id: unknown field `extra`, expected `name` or `value`
    "#]],
    );
}

#[test]
fn rejects_header_name_that_is_not_a_token() {
    check(
        r#"{"name":"bad name","value":"y"}"#,
        expect![[r#"
        rejected
        error invalid plugin configuration for root_id=my_root_id: header name "bad name" is not a valid HTTP token
    "#]],
    );
}

#[test]
fn rejects_header_value_with_control_characters() {
    check(
        r#"{"name":"x","value":"a\nb"}"#,
        expect![[r#"
        rejected
        error invalid plugin configuration for root_id=my_root_id: header value "a\nb" contains a control character
    "#]],
    );
}

#[test]
fn several_root_ids_keep_their_own_configuration() {
    let mut sim = Sim::builder(&module())
        .plugin("first", r#"{"name":"x-first","value":"1"}"#)
        .plugin("second", r#"{"name":"x-second","value":"2"}"#)
        .build()
        .unwrap();
    let mut seen = Vec::new();
    for root in ["first", "second"] {
        let mut stream = sim.stream(root).unwrap();
        stream.send_request_headers(&[(":path", "/")], true);
        stream.send_response_headers(&[(":status", "200")], true);
        let headers = stream.response_headers();
        seen.push(format!(
            "{root}: x-first={:?} x-second={:?}",
            headers.get_str("x-first"),
            headers.get_str("x-second")
        ));
    }
    expect![[r#"
        first: x-first=Some("1") x-second=None
        second: x-first=None x-second=Some("2")"#]]
    .assert_eq(&seen.join("\n"));
}

/// A million streams in one VM: linear memory stops growing after warm-up (deterministic,
/// not timed).
#[test]
fn a_million_streams_do_not_grow_memory_after_warm_up() {
    let mut sim = Sim::builder(&module())
        .plugin("my_root_id", r#"{"name":"x","value":"y"}"#)
        .build()
        .unwrap();
    let run = |sim: &mut Sim, count: u32| {
        for _ in 0..count {
            let mut stream = sim.stream("my_root_id").unwrap();
            stream.send_request_headers(&[(":method", "GET"), (":path", "/")], true);
            assert_eq!(
                stream.send_response_headers(&[(":status", "200")], true),
                Outcome::Continue
            );
            stream.complete();
            sim.clear_trace();
        }
    };
    run(&mut sim, 10_000);
    let after_warm_up = sim.memory_size();
    run(&mut sim, 990_000);
    assert_eq!(sim.memory_size(), after_warm_up);
}
