//! The Envoy bootstrap for a scenario: one listener (HTTP/1.1 and h2c prior knowledge, both
//! with trailers), the plugins in chain order sharing one VM, the router, a route to the
//! runner's upstream server, and one cluster per scenario cluster.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Value, json};

use super::scenario::{Cluster, Plugin, Scenario};

/// The cluster every request is routed to: the runner's upstream server.
pub const UPSTREAM_CLUSTER: &str = "upstream";

/// Where the runner's servers listen: the upstream's port and each scenario cluster's port.
#[derive(Debug, Clone)]
pub struct Ports {
    pub upstream: u16,
    pub clusters: BTreeMap<String, u16>,
}

/// The bootstrap as JSON (Envoy reads it as YAML, of which JSON is a subset).
pub fn bootstrap(scenario: &Scenario, wasm: &Path, ports: &Ports) -> Value {
    let mut http_filters: Vec<Value> = scenario
        .plugins
        .iter()
        .map(|plugin| {
            json!({
                "name": "envoy.filters.http.wasm",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
                    "config": plugin_config(scenario, plugin, wasm),
                },
            })
        })
        .collect();
    http_filters.push(json!({
        "name": "envoy.filters.http.router",
        "typed_config": { "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router" },
    }));

    let mut clusters = vec![cluster(UPSTREAM_CLUSTER, ports.upstream, false)];
    for (name, kind) in &scenario.clusters {
        let port = ports.clusters.get(name).copied().unwrap_or(0);
        clusters.push(cluster(name, port, matches!(kind, Cluster::Grpc(_))));
    }

    json!({
        "admin": { "address": loopback(0) },
        "static_resources": {
            "listeners": [{
                "name": "differential",
                "address": loopback(0),
                "per_connection_buffer_limit_bytes": scenario.buffer_limit_bytes,
                "filter_chains": [{
                    "filters": [{
                        "name": "envoy.filters.network.http_connection_manager",
                        "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                            "stat_prefix": "differential",
                            "codec_type": "AUTO",
                            "http_protocol_options": { "enable_trailers": true },
                            "route_config": {
                                "virtual_hosts": [{
                                    "name": "all",
                                    "domains": ["*"],
                                    "routes": [{
                                        "match": { "prefix": "/" },
                                        "route": { "cluster": UPSTREAM_CLUSTER },
                                    }],
                                }],
                            },
                            "http_filters": http_filters,
                        },
                    }],
                }],
            }],
            "clusters": clusters,
        },
    })
}

/// One plugin's `PluginConfig` (the same for HTTP and network filters).
pub fn plugin_config(scenario: &Scenario, plugin: &Plugin, wasm: &Path) -> Value {
    json!({
        // The root_id names the plugin in Envoy's logs (`plugin_name`).
        "name": plugin.root_id,
        "root_id": plugin.root_id,
        "vm_config": {
            "vm_id": scenario.vm_id,
            "runtime": "envoy.wasm.runtime.v8",
            "code": { "local": { "filename": wasm.display().to_string() } },
            "configuration": string_value(&scenario.vm_configuration),
        },
        "configuration": string_value(&plugin.configuration_text()),
        "failure_policy": scenario.failure_policy.envoy_name(),
        "reload_config": {
            "backoff": { "base_interval": duration(scenario.reload_backoff_ms) },
        },
        "allow_on_headers_stop_iteration": plugin.allow_on_headers_stop_iteration,
    })
}

/// A static cluster of one endpoint on 127.0.0.1, HTTP/1.1 with trailers or HTTP/2.
fn cluster(name: &str, port: u16, http2: bool) -> Value {
    let protocol = if http2 {
        json!({ "http2_protocol_options": {} })
    } else {
        json!({ "http_protocol_options": { "enable_trailers": true } })
    };
    json!({
        "name": name,
        "type": "STATIC",
        "connect_timeout": "5s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{ "lb_endpoints": [{ "endpoint": { "address": loopback(port) } }] }],
        },
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": protocol,
            },
        },
    })
}

fn string_value(value: &str) -> Value {
    json!({ "@type": "type.googleapis.com/google.protobuf.StringValue", "value": value })
}

/// A protobuf Duration in JSON: seconds with a fraction and an `s`.
fn duration(milliseconds: u64) -> String {
    format!("{}.{:03}s", milliseconds / 1000, milliseconds % 1000)
}

pub fn loopback(port: u16) -> Value {
    json!({ "socket_address": { "address": "127.0.0.1", "port_value": port } })
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::expect;

    #[test]
    fn two_plugins_a_grpc_cluster_and_fail_open() {
        let scenario = Scenario::parse(
            r#"{
                "plugins": [
                    { "root_id": "first", "configuration": { "name": "x-first", "value": "1" } },
                    { "root_id": "second", "configuration": "raw text",
                      "allow_on_headers_stop_iteration": true }
                ],
                "vm_id": "shared",
                "failure_policy": "fail_open",
                "reload_backoff_ms": 1500,
                "buffer_limit_bytes": 4096,
                "clusters": {
                    "auth": { "kind": "http", "status": 403 },
                    "authz": { "kind": "grpc", "message": "ok" }
                }
            }"#,
        )
        .unwrap();
        let ports = Ports {
            upstream: 10001,
            clusters: [("auth".to_owned(), 10002), ("authz".to_owned(), 10003)].into(),
        };
        let yaml =
            serde_yaml_ng::to_string(&bootstrap(&scenario, Path::new("/m/guest.wasm"), &ports))
                .unwrap();
        expect![[r#"
            admin:
              address:
                socket_address:
                  address: 127.0.0.1
                  port_value: 0
            static_resources:
              clusters:
              - connect_timeout: 5s
                load_assignment:
                  cluster_name: upstream
                  endpoints:
                  - lb_endpoints:
                    - endpoint:
                        address:
                          socket_address:
                            address: 127.0.0.1
                            port_value: 10001
                name: upstream
                type: STATIC
                typed_extension_protocol_options:
                  envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
                    '@type': type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
                    explicit_http_config:
                      http_protocol_options:
                        enable_trailers: true
              - connect_timeout: 5s
                load_assignment:
                  cluster_name: auth
                  endpoints:
                  - lb_endpoints:
                    - endpoint:
                        address:
                          socket_address:
                            address: 127.0.0.1
                            port_value: 10002
                name: auth
                type: STATIC
                typed_extension_protocol_options:
                  envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
                    '@type': type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
                    explicit_http_config:
                      http_protocol_options:
                        enable_trailers: true
              - connect_timeout: 5s
                load_assignment:
                  cluster_name: authz
                  endpoints:
                  - lb_endpoints:
                    - endpoint:
                        address:
                          socket_address:
                            address: 127.0.0.1
                            port_value: 10003
                name: authz
                type: STATIC
                typed_extension_protocol_options:
                  envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
                    '@type': type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
                    explicit_http_config:
                      http2_protocol_options: {}
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
                      codec_type: AUTO
                      http_filters:
                      - name: envoy.filters.http.wasm
                        typed_config:
                          '@type': type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
                          config:
                            allow_on_headers_stop_iteration: false
                            configuration:
                              '@type': type.googleapis.com/google.protobuf.StringValue
                              value: '{"name":"x-first","value":"1"}'
                            failure_policy: FAIL_OPEN
                            name: first
                            reload_config:
                              backoff:
                                base_interval: 1.500s
                            root_id: first
                            vm_config:
                              code:
                                local:
                                  filename: /m/guest.wasm
                              configuration:
                                '@type': type.googleapis.com/google.protobuf.StringValue
                                value: ''
                              runtime: envoy.wasm.runtime.v8
                              vm_id: shared
                      - name: envoy.filters.http.wasm
                        typed_config:
                          '@type': type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
                          config:
                            allow_on_headers_stop_iteration: true
                            configuration:
                              '@type': type.googleapis.com/google.protobuf.StringValue
                              value: raw text
                            failure_policy: FAIL_OPEN
                            name: second
                            reload_config:
                              backoff:
                                base_interval: 1.500s
                            root_id: second
                            vm_config:
                              code:
                                local:
                                  filename: /m/guest.wasm
                              configuration:
                                '@type': type.googleapis.com/google.protobuf.StringValue
                                value: ''
                              runtime: envoy.wasm.runtime.v8
                              vm_id: shared
                      - name: envoy.filters.http.router
                        typed_config:
                          '@type': type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
                      http_protocol_options:
                        enable_trailers: true
                      route_config:
                        virtual_hosts:
                        - domains:
                          - '*'
                          name: all
                          routes:
                          - match:
                              prefix: /
                            route:
                              cluster: upstream
                      stat_prefix: differential
                name: differential
                per_connection_buffer_limit_bytes: 4096
        "#]]
        .assert_eq(&yaml);
    }
}
