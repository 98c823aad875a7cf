//! The Envoy bootstrap `cargo xtask run` and the tests generate from an ASMFilterDeployment.

use std::path::Path;

use expect_test::{Expect, expect};

use crate::envoy::{AsmFilterDeployment, bootstrap_from_deployment};
use crate::support::SEED_DEPLOYMENT;

/// Parses a deployment and renders its bootstrap (for a node-local .wasm path) as YAML, or
/// the parse error.
fn check(deployment_yaml: &str, expect: Expect) {
    let rendered = match AsmFilterDeployment::parse(deployment_yaml) {
        Ok(deployment) => {
            let wasm = Path::new("/var/local/lib/wasm-filters/add-header.wasm");
            let bootstrap =
                bootstrap_from_deployment(&deployment, wasm).expect("an absolute path resolves");
            serde_yaml_ng::to_string(&bootstrap).expect("a JSON value renders as YAML")
        }
        Err(error) => format!("error: {error:#}\n"),
    };
    expect.assert_eq(&rendered);
}

/// Like [`check`], but renders only the Wasm plugin's `config`.
fn check_plugin(deployment_yaml: &str, expect: Expect) {
    let deployment = AsmFilterDeployment::parse(deployment_yaml).expect("a valid deployment");
    let wasm = Path::new("/var/local/lib/wasm-filters/add-header.wasm");
    let bootstrap =
        bootstrap_from_deployment(&deployment, wasm).expect("an absolute path resolves");
    let http_filters = &bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"]
        [0]["typed_config"]["http_filters"];
    let plugin = &http_filters[0]["typed_config"]["config"];
    expect.assert_eq(&serde_yaml_ng::to_string(plugin).expect("a JSON value renders as YAML"));
}

#[test]
fn seed_deployment_becomes_one_wasm_filter_before_the_router() {
    check(
        SEED_DEPLOYMENT,
        expect![[r#"
            admin:
              address:
                socket_address:
                  address: 127.0.0.1
                  port_value: 0
            static_resources:
              listeners:
              - address:
                  socket_address:
                    address: 127.0.0.1
                    port_value: 0
                filter_chains:
                - filters:
                  - name: envoy.filters.network.http_connection_manager
                    typed_config:
                      '@type': type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
                      http_filters:
                      - name: envoy.filters.http.wasm
                        typed_config:
                          '@type': type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
                          config:
                            configuration:
                              '@type': type.googleapis.com/google.protobuf.StringValue
                              value: '{"name":"hello","value":"hello details"}'
                            name: details-v1-wasmfiltersample.default
                            root_id: my_root_id
                            vm_config:
                              code:
                                local:
                                  filename: /var/local/lib/wasm-filters/add-header.wasm
                              runtime: envoy.wasm.runtime.v8
                              vm_id: details-v1-wasmfiltersample
                      - name: envoy.filters.http.router
                        typed_config:
                          '@type': type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
                      route_config:
                        virtual_hosts:
                        - domains:
                          - '*'
                          name: direct
                          routes:
                          - direct_response:
                              body:
                                inline_string: |
                                  answered by envoy
                              status: 200
                            match:
                              prefix: /
                      stat_prefix: filterkit
                name: filterkit
        "#]],
    );
}

#[test]
fn rejects_another_kind() {
    check(
        &SEED_DEPLOYMENT.replace("kind: ASMFilterDeployment", "kind: EnvoyFilter"),
        expect![[r#"
            error: expected kind ASMFilterDeployment in istio.alibabacloud.com/v1beta1, found kind EnvoyFilter in istio.alibabacloud.com/v1beta1
        "#]],
    );
}

#[test]
fn rejects_deployment_without_root_id() {
    check(
        &SEED_DEPLOYMENT.replace("    rootID: 'my_root_id'\n", ""),
        expect![[r#"
        error: not an ASMFilterDeployment: spec.filter: missing field `rootID` at line 12 column 5
    "#]],
    );
}

#[test]
fn empty_parameters_become_an_empty_configuration() {
    check_plugin(
        &SEED_DEPLOYMENT.replace(
            "    parameters: '{\"name\":\"hello\",\"value\":\"hello details\"}'\n",
            "",
        ),
        expect![[r#"
            configuration:
              '@type': type.googleapis.com/google.protobuf.StringValue
              value: ''
            name: details-v1-wasmfiltersample.default
            root_id: my_root_id
            vm_config:
              code:
                local:
                  filename: /var/local/lib/wasm-filters/add-header.wasm
              runtime: envoy.wasm.runtime.v8
              vm_id: details-v1-wasmfiltersample
        "#]],
    );
}

#[test]
fn parameters_pass_through_unparsed() {
    check_plugin(
        &SEED_DEPLOYMENT.replace(
            r#"'{"name":"hello","value":"hello details"}'"#,
            r#"'not json: {"a": 1}'"#,
        ),
        expect![[r#"
            configuration:
              '@type': type.googleapis.com/google.protobuf.StringValue
              value: 'not json: {"a": 1}'
            name: details-v1-wasmfiltersample.default
            root_id: my_root_id
            vm_config:
              code:
                local:
                  filename: /var/local/lib/wasm-filters/add-header.wasm
              runtime: envoy.wasm.runtime.v8
              vm_id: details-v1-wasmfiltersample
        "#]],
    );
}
