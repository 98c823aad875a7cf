//! The json-guard filter (target/filters/json-guard.wasm, built by `cargo xtask build`) with
//! `allow_on_headers_stop_iteration`, body by body: what reaches the upstream (body and
//! `content-length`), and the 400 and 413 answers. The differential scenarios
//! `tests/differential/json-guard-*.json` check the same against Envoy's recordings.

use std::path::PathBuf;
use std::sync::OnceLock;

use expect_test::{Expect, expect};
use filterkit_host_sim::{Module, Outcome, PluginConfig, Sim};

fn module() -> Module {
    static MODULE: OnceLock<Module> = OnceLock::new();
    MODULE
        .get_or_init(|| {
            let path =
                PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/filters/json-guard.wasm");
            assert!(
                path.exists(),
                "target/filters/json-guard.wasm not found: run `cargo xtask build`"
            );
            Module::load(&path).expect("json-guard.wasm loads")
        })
        .clone()
}

const CONFIG: &str =
    r#"{"max_body_bytes":64,"redact":["card.number"],"remove":["debug"],"replacement":"***"}"#;

/// Sends a POST with `headers` and the body in `chunks` (the last one ends the stream), and
/// renders each outcome, then the local reply or what reached the upstream.
fn check(headers: &[(&str, &str)], chunks: &[&str], expect: Expect) {
    let mut sim = Sim::builder(&module())
        .plugin_config(PluginConfig {
            root_id: "guard".into(),
            name: "guard".into(),
            configuration: CONFIG.into(),
            allow_on_headers_stop_iteration: true,
        })
        .build()
        .expect("configuration accepted");
    let mut stream = sim.stream("guard").unwrap();
    let mut all = vec![(":method", "POST"), (":path", "/"), (":authority", "a")];
    all.extend_from_slice(headers);
    let mut out = format!("headers: {:?}\n", stream.send_request_headers(&all, false));
    for (idx, chunk) in chunks.iter().enumerate() {
        let outcome = stream.send_request_body(chunk.as_bytes(), idx + 1 == chunks.len());
        out.push_str(&format!("body {chunk:?}: {outcome:?}\n"));
        if !matches!(outcome, Outcome::Paused(_) | Outcome::Continue) {
            break;
        }
    }
    match stream.local_reply() {
        Some(reply) => out.push_str(&format!(
            "reply {} {}: {:?}\n",
            reply.status_code,
            reply.details,
            String::from_utf8_lossy(&reply.body)
        )),
        None => {
            let length = stream.request_headers().get(b"content-length");
            out.push_str(&format!(
                "upstream: content-length {:?} body {:?}\n",
                length.map(|value| String::from_utf8_lossy(value).into_owned()),
                String::from_utf8_lossy(stream.upstream_body())
            ));
        }
    }
    expect.assert_eq(&out);
}

#[test]
fn rewrites_the_body_and_its_content_length() {
    check(
        &[("content-length", "58")],
        &[r#"{"card": {"number": "4111", "exp": "01/30"}, "debug": true}"#],
        expect![[r#"
            headers: Paused(StopIteration)
            body "{\"card\": {\"number\": \"4111\", \"exp\": \"01/30\"}, \"debug\": true}": Continue
            upstream: content-length Some("39") body "{\"card\":{\"number\":\"***\",\"exp\":\"01/30\"}}"
        "#]],
    );
}

#[test]
fn rewrites_a_body_that_arrives_in_chunks_without_content_length() {
    check(
        &[],
        &[r#"{"card": {"numb"#, r#"er": 4111}, "#, r#""debug": null}"#],
        expect![[r#"
            headers: Paused(StopIteration)
            body "{\"card\": {\"numb": Paused(StopIterationAndBuffer)
            body "er\": 4111}, ": Paused(StopIterationAndBuffer)
            body "\"debug\": null}": Continue
            upstream: content-length Some("25") body "{\"card\":{\"number\":\"***\"}}"
        "#]],
    );
}

#[test]
fn passes_a_body_without_configured_fields_unchanged() {
    check(
        &[],
        &[r#"{ "name" : "ann" }"#],
        expect![[r#"
        headers: Paused(StopIteration)
        body "{ \"name\" : \"ann\" }": Continue
        upstream: content-length Some("18") body "{ \"name\" : \"ann\" }"
    "#]],
    );
}

#[test]
fn answers_400_to_invalid_json() {
    check(
        &[],
        &[r#"{"card": }"#],
        expect![[r#"
        headers: Paused(StopIteration)
        body "{\"card\": }": LocalReply { status_code: 400 }
        reply 400 json_guard_invalid_json: "invalid JSON: expected value at byte 9\n"
    "#]],
    );
}

#[test]
fn answers_413_from_content_length_before_any_body() {
    check(
        &[("content-length", "65")],
        &[],
        expect![[r#"
        headers: LocalReply { status_code: 413 }
        reply 413 json_guard_body_too_large: "request body larger than 64 bytes\n"
    "#]],
    );
}

#[test]
fn answers_413_once_a_chunked_body_passes_the_limit() {
    let chunk = "x".repeat(40);
    check(
        &[],
        &[&chunk, &chunk, &chunk],
        expect![[r#"
        headers: Paused(StopIteration)
        body "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx": Paused(StopIterationAndBuffer)
        body "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx": LocalReply { status_code: 413 }
        reply 413 json_guard_body_too_large: "request body larger than 64 bytes\n"
    "#]],
    );
}
