//! Scenario files: data in, trace out (what `filter-sim run` prints).

use expect_test::expect;
use filterkit_host_sim::{Module, scenario};

#[test]
fn runs_a_scenario_file_to_a_trace() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let module = Module::load(dir.join("add-two-headers.wat")).unwrap();
    let text = std::fs::read_to_string(dir.join("add-two-headers.scenario.json")).unwrap();
    let output = scenario::run(&module, &scenario::parse(&text).unwrap()).unwrap();
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
    "#]].assert_eq(&output);
}

#[test]
fn rejects_unknown_scenario_fields() {
    let error = scenario::parse(r#"{"plugins": [], "stepz": []}"#).unwrap_err();
    expect!["invalid scenario: unknown field `stepz`, expected one of `plugins`, `vm_id`, `vm_configuration`, `clusters`, `properties`, `steps` at line 1 column 23"].assert_eq(&error.to_string());
}
