//! Scenario files: data in, trace out (what `filter-sim run` prints).

use std::path::{Path, PathBuf};

use expect_test::{Expect, expect};
use filterkit_host_sim::{Module, scenario};

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

/// Runs a scenario against tests/data/add-two-headers.wat; `expect` gets its output, or
/// `error: ...`.
fn check(scenario_text: &str, expect: Expect) {
    let module = Module::load(data_dir().join("add-two-headers.wat")).unwrap();
    let output = scenario::parse(scenario_text).and_then(|parsed| scenario::run(&module, &parsed));
    expect.assert_eq(&match output {
        Ok(text) => text,
        Err(error) => format!("error: {error}"),
    });
}

#[test]
fn runs_a_scenario_file_to_a_trace() {
    let text = std::fs::read_to_string(data_dir().join("add-two-headers.scenario.json")).unwrap();
    check(
        &text,
        expect![[r#"
        == start
        proxy_on_context_create(ctx=1, 0)
          => ()
        proxy_on_vm_start(ctx=1, 0)
          => 1
        proxy_on_configure(ctx=1, 32)
          log info "configured"
          => 1
        == step 1: request_headers a
        proxy_on_context_create(ctx=2, 1)
          => ()
        proxy_on_request_headers(ctx=2, 3, 1)
          => 0
        -> Continue
        == step 2: response_headers a
        proxy_on_response_headers(ctx=2, 1, 1)
          proxy_add_header_map_value(response_headers, "resp-header-demo", "added by our filter") -> OK
          proxy_add_header_map_value(response_headers, "x-wat", "yes") -> OK
          => 0
        -> Continue
        == step 3: complete a
          upstream request headers:
            :method: GET
            :path: /
            :authority: example.com
          downstream response headers:
            :status: 200
            resp-header-demo: added by our filter
            x-wat: yes
        proxy_on_log(ctx=2)
          => ()
        proxy_on_done(ctx=2)
          => 1
        proxy_on_delete(ctx=2)
          => ()
        -> Continue
        == step 4: advance 1000ms
        -> Continue
    "#]],
    );
}

#[test]
fn rejects_unknown_scenario_fields() {
    let error = scenario::parse(r#"{"plugins": [], "stepz": []}"#).unwrap_err();
    expect!["invalid scenario: unknown field `stepz`, expected one of `plugins`, `vm_id`, `vm_configuration`, `clusters`, `properties`, `workers`, `failure_policy`, `reload_backoff_ms`, `steps` at line 1 column 23"].assert_eq(&error.to_string());
}

#[test]
fn scenario_chooses_workers_and_failure_policy() {
    let text = r#"{
      "plugins": [{ "root_id": "my_root_id" }],
      "workers": 2, "failure_policy": "fail_reload", "reload_backoff_ms": 500,
      "steps": [
        { "use_worker": 1 },
        { "request_headers": { "stream": "a", "headers": [[":path", "/"]], "end_of_stream": true } },
        { "use_worker": 0 },
        { "request_headers": { "stream": "b", "headers": [[":path", "/"]], "end_of_stream": true } }
      ]
    }"#;
    check(
        text,
        expect![[r#"
        == start
        proxy_on_context_create(ctx=1, 0)
          => ()
        proxy_on_vm_start(ctx=1, 0)
          => 1
        proxy_on_configure(ctx=1, 0)
          log info "configured"
          => 1
        # worker 1
        proxy_on_context_create(ctx=2, 0)
          => ()
        proxy_on_vm_start(ctx=2, 0)
          => 1
        proxy_on_configure(ctx=2, 0)
          log info "configured"
          => 1
        == step 1: use_worker 1
        -> Continue
        == step 2: request_headers a
        # worker 1
        proxy_on_context_create(ctx=3, 2)
          => ()
        proxy_on_request_headers(ctx=3, 1, 1)
          => 0
        -> Continue
        == step 3: use_worker 0
        -> Continue
        == step 4: request_headers b
        proxy_on_context_create(ctx=4, 1)
          => ()
        proxy_on_request_headers(ctx=4, 1, 1)
          => 0
        -> Continue
    "#]],
    );
}
