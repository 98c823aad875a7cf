//! ext-authz in a real Envoy against real authorization services: an HTTP one and a gRPC one
//! (`envoy.service.auth.v3.Authorization/Check` served by grpcio with Envoy's generated
//! protobuf classes from PyPI's xds-protos, so the filter's hand-written encoding is read by
//! protobuf itself), both in `ext_authz_servers.py` with the upstream. The request's `x-authz`
//! header tells the services what to answer: allow, deny, error, or never.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use expect_test::{Expect, expect};
use serde_json::{Value, json};

use crate::envoy::Envoy;
use crate::support::{built_filter, temp_dir, tool};
use crate::util::{self, ChildGuard};

const SERVERS_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/ext_authz_servers.py");

/// How long the servers may take to start (grpcio's import is most of it).
const SERVERS_TIMEOUT: Duration = Duration::from_secs(30);

/// The ports `ext_authz_servers.py` listens on.
#[derive(serde::Deserialize, Clone, Copy)]
struct Ports {
    upstream: u16,
    http: u16,
    grpc: u16,
}

/// The Python servers; dropping them kills the process.
struct Servers {
    _process: ChildGuard,
    ports: Ports,
}

impl Servers {
    fn start(dir: &Path) -> Result<Servers> {
        let python = tool("tools-python")?;
        let has_grpcio = Command::new(&python)
            .args([
                "-c",
                "import grpc; from envoy.service.auth.v3 import external_auth_pb2_grpc",
            ])
            .stderr(Stdio::null())
            .status()
            .with_context(|| format!("running {}", python.display()))?
            .success();
        if !has_grpcio {
            bail!(
                "grpcio and xds-protos are not installed in the tools virtualenv: \
                 run `cargo xtask setup`"
            );
        }
        let port_file = dir.join("ports.json");
        let log = std::fs::File::create(dir.join("servers.log")).context("creating servers.log")?;
        let child = Command::new(&python)
            .arg(SERVERS_SCRIPT)
            .arg(&port_file)
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("opening servers.log")?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {SERVERS_SCRIPT}"))?;
        let mut process = ChildGuard(child);
        let ports = util::poll_until(
            Instant::now() + SERVERS_TIMEOUT,
            "the authorization servers' ports",
            || {
                if let Some(status) = process.0.try_wait()? {
                    let log = std::fs::read_to_string(dir.join("servers.log")).unwrap_or_default();
                    bail!("the authorization servers exited ({status}): {log}");
                }
                match std::fs::read(&port_file) {
                    Ok(bytes) => Ok(Some(serde_json::from_slice::<Ports>(&bytes)?)),
                    Err(_) => Ok(None),
                }
            },
        )?;
        Ok(Servers {
            _process: process,
            ports,
        })
    }

    /// A control request to one of the HTTP servers (not through Envoy).
    fn control(&self, port: u16, method: &str, path: &str) -> Result<String> {
        let response = send(&format!("http://127.0.0.1:{port}{path}"), method, &[], "")?;
        Ok(response.body)
    }
}

fn cluster(name: &str, port: u16, http2: bool) -> Value {
    let protocol = if http2 {
        json!({ "http2_protocol_options": {} })
    } else {
        json!({ "http_protocol_options": {} })
    };
    json!({
        "name": name,
        "type": "STATIC",
        "connect_timeout": "5s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{ "lb_endpoints": [{ "endpoint": { "address": {
                "socket_address": { "address": "127.0.0.1", "port_value": port },
            } } }] }],
        },
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": protocol,
            },
        },
    })
}

/// A listener with ext-authz configured with `configuration` before the router, a route to
/// the upstream, and the clusters `authz-http` and `authz-grpc` (HTTP/2).
fn bootstrap(wasm: &Path, configuration: &str, ports: Ports) -> Value {
    let loopback = json!({ "socket_address": { "address": "127.0.0.1", "port_value": 0 } });
    json!({
        "admin": { "address": loopback },
        "static_resources": {
            "listeners": [{
                "name": "ext_authz",
                "address": loopback,
                "filter_chains": [{ "filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                        "stat_prefix": "ext_authz",
                        "route_config": { "virtual_hosts": [{
                            "name": "all",
                            "domains": ["*"],
                            "routes": [{ "match": { "prefix": "/" }, "route": { "cluster": "upstream" } }],
                        }] },
                        "http_filters": [
                            {
                                "name": "envoy.filters.http.wasm",
                                "typed_config": {
                                    "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
                                    "config": {
                                        "name": "ext_authz",
                                        "root_id": "ext_authz",
                                        "vm_config": {
                                            "runtime": "envoy.wasm.runtime.v8",
                                            "code": { "local": { "filename": wasm.display().to_string() } },
                                        },
                                        "configuration": {
                                            "@type": "type.googleapis.com/google.protobuf.StringValue",
                                            "value": configuration,
                                        },
                                    },
                                },
                            },
                            {
                                "name": "envoy.filters.http.router",
                                "typed_config": { "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router" },
                            },
                        ],
                    },
                }] }],
            }],
            "clusters": [
                cluster("upstream", ports.upstream, false),
                cluster("authz-http", ports.http, false),
                cluster("authz-grpc", ports.grpc, true),
            ],
        },
    })
}

/// A response as the client saw it.
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

fn send(url: &str, method: &str, headers: &[(&str, &str)], body: &str) -> Result<Response> {
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .timeout_global(Some(Duration::from_secs(30)))
        .build();
    let agent = ureq::Agent::new_with_config(config);
    let mut request = ureq::http::Request::builder().method(method).uri(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request
        .body(body.to_owned())
        .context("building a request")?;
    let mut response = agent
        .run(request)
        .with_context(|| format!("{method} {url}"))?;
    let headers = response
        .headers()
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = response
        .body_mut()
        .read_to_string()
        .with_context(|| format!("reading the body of {method} {url}"))?;
    Ok(Response {
        status: response.status().as_u16(),
        headers,
        body,
    })
}

/// Status, the headers that do not change from run to run, and the body.
fn render(response: &Response) -> String {
    const VOLATILE: &[&str] = &["date", "x-envoy-upstream-service-time", "content-length"];
    let mut rendered = format!("{}\n", response.status);
    for (name, value) in &response.headers {
        if !VOLATILE.contains(&name.as_str()) {
            rendered.push_str(&format!("{name}: {value}\n"));
        }
    }
    rendered.push_str(&format!("---\n{}", response.body));
    rendered
}

/// Envoy with ext-authz configured with `configuration` and the servers behind it.
struct Setup {
    _dir: tempfile::TempDir,
    servers: Servers,
    envoy: Envoy,
}

impl Setup {
    fn start(configuration: &str) -> Result<Setup> {
        let dir = temp_dir()?;
        let wasm = built_filter("ext-authz", dir.path())?;
        let servers = Servers::start(dir.path())?;
        let envoy = Envoy::start(
            &tool("envoy")?,
            &bootstrap(&wasm, configuration, servers.ports),
            &dir.path().join("envoy"),
        )?;
        Ok(Setup {
            _dir: dir,
            servers,
            envoy,
        })
    }

    /// The filter's counters that are not zero, from Envoy's admin.
    fn counters(&self) -> Result<String> {
        let stats = crate::envoy::get(&format!(
            "http://{}/stats?filter=wasmcustom.ext_authz",
            self.envoy.admin_address()
        ))?;
        Ok(stats
            .body
            .lines()
            .filter(|line| !line.ends_with(": 0"))
            .map(|line| format!("{line}\n"))
            .collect())
    }

    fn request(&self, method: &str, decision: &str, body: &str) -> Result<Response> {
        let url = format!("{}/items?id=1", self.envoy.listener_url());
        let headers = [("x-authz", decision), ("authorization", "Bearer alice")];
        send(&url, method, &headers, body)
    }
}

/// One request with `x-authz: <decision>` through Envoy with ext-authz configured with
/// `configuration`: the filter's counters, then the response the client gets.
fn check(configuration: &str, method: &str, decision: &str, expect: Expect) -> Result<()> {
    let setup = Setup::start(configuration)?;
    let response = setup.request(
        method,
        decision,
        if method == "POST" { "hello" } else { "" },
    )?;
    expect.assert_eq(&format!("{}{}", setup.counters()?, render(&response)));
    Ok(())
}

const HTTP: &str = r#"{"cluster":"authz-http","timeout_ms":5000,"headers_to_upstream":["x-user"]}"#;
const GRPC: &str = r#"{"cluster":"authz-grpc","mode":"grpc","timeout_ms":5000}"#;

#[test]
fn http_allow_copies_the_configured_header_upstream() -> Result<()> {
    check(
        HTTP,
        "GET",
        "allow",
        expect![[r#"
            wasmcustom.ext_authz.ext_authz.ok: 1
            200
            server: envoy
            content-type: text/plain
            ---
            upstream got GET /items?id=1
            authorization: Bearer alice
            content-length: 0
            x-authz: allow
            x-forwarded-proto: http
            x-user: alice
            body: ''
        "#]],
    )
}

#[test]
fn http_deny_answers_the_services_status_headers_and_body() -> Result<()> {
    check(
        HTTP,
        "POST",
        "deny",
        expect![[r#"
            wasmcustom.ext_authz.ext_authz.denied: 1
            401
            www-authenticate: Bearer realm="shop"
            content-type: text/plain
            server: envoy
            ---
            denied by authz
        "#]],
    )
}

#[test]
fn http_check_carries_the_prefix_and_the_listed_headers() -> Result<()> {
    let setup = Setup::start(
        r#"{"cluster":"authz-http","path_prefix":"/check","authority":"authz.local",
            "headers_to_send":["x-authz"],"timeout_ms":5000}"#,
    )?;
    setup.request("GET", "allow", "")?;
    let check = setup
        .servers
        .control(setup.servers.ports.http, "GET", "/__control/last-check")?;
    expect![[r#"
        check GET /check/items?id=1
        host: authz.local
        x-authz: allow
        x-envoy-internal: true
    "#]]
    .assert_eq(&check);
    Ok(())
}

#[test]
fn http_silence_fails_closed_after_the_timeout() -> Result<()> {
    check(
        r#"{"cluster":"authz-http","timeout_ms":300,"status_on_error":503}"#,
        "POST",
        "never",
        expect![[r#"
            wasmcustom.ext_authz.ext_authz.error: 1
            503
            server: envoy
            ---
        "#]],
    )
}

#[test]
fn http_silence_fails_open_when_configured() -> Result<()> {
    check(
        r#"{"cluster":"authz-http","timeout_ms":300,"failure_mode_allow":true,
            "failure_mode_allow_header_add":true}"#,
        "POST",
        "never",
        expect![[r#"
            wasmcustom.ext_authz.ext_authz.error: 1
            wasmcustom.ext_authz.ext_authz.failure_mode_allowed: 1
            200
            server: envoy
            content-type: text/plain
            ---
            upstream got POST /items?id=1
            authorization: Bearer alice
            content-length: 5
            x-authz: never
            x-envoy-auth-failure-mode-allowed: true
            x-forwarded-proto: http
            body: 'hello'
        "#]],
    )
}

#[test]
fn unknown_cluster_fails_closed() -> Result<()> {
    check(
        r#"{"cluster":"nowhere"}"#,
        "GET",
        "allow",
        expect![[r#"
            wasmcustom.ext_authz.ext_authz.error: 1
            403
            server: envoy
            ---
        "#]],
    )
}

/// The check is held by the service until the test releases it: meanwhile the upstream has
/// received nothing, not even the POST's headers; then the whole request arrives.
#[test]
fn post_is_held_until_the_answer() -> Result<()> {
    let setup = Setup::start(HTTP)?;
    let url = format!("{}/items", setup.envoy.listener_url());
    let client =
        std::thread::spawn(move || send(&url, "POST", &[("x-authz", "hold")], "held body"));
    let ports = setup.servers.ports;
    util::poll_until(
        Instant::now() + Duration::from_secs(30),
        "the check to reach the service",
        || {
            Ok((setup
                .servers
                .control(ports.http, "GET", "/__control/pending")?
                == "1")
                .then_some(()))
        },
    )?;
    let received_while_held =
        setup
            .servers
            .control(ports.upstream, "GET", "/__control/received")?;
    setup
        .servers
        .control(ports.http, "POST", "/__control/release")?;
    let response = client
        .join()
        .map_err(|_| anyhow::anyhow!("the client thread panicked"))??;
    expect![[r#"
        upstream received while held: 0
        200
        server: envoy
        content-type: text/plain
        ---
        upstream got POST /items
        content-length: 9
        x-authz: hold
        x-forwarded-proto: http
        x-user: held
        body: 'held body'
    "#]]
    .assert_eq(&format!(
        "upstream received while held: {received_while_held}\n{}",
        render(&response)
    ));
    Ok(())
}

#[test]
fn grpc_allow_sets_and_removes_headers() -> Result<()> {
    let setup = Setup::start(GRPC)?;
    let url = format!("{}/items", setup.envoy.listener_url());
    let response = send(
        &url,
        "POST",
        &[("x-authz", "allow"), ("x-remove-me", "1")],
        "hello",
    )?;
    expect![[r#"
        200
        server: envoy
        content-type: text/plain
        x-authz-checked: grpc
        ---
        upstream got POST /items
        content-length: 5
        x-authz: allow
        x-forwarded-proto: http
        x-user: alice
        body: 'hello'
    "#]]
    .assert_eq(&render(&response));
    Ok(())
}

#[test]
fn grpc_check_carries_what_policies_read() -> Result<()> {
    let setup = Setup::start(GRPC)?;
    setup.request("GET", "allow", "")?;
    let check = setup.servers.control(
        setup.servers.ports.http,
        "GET",
        "/__control/last-grpc-check",
    )?;
    expect![[r#"
        method: GET
        path: /items?id=1
        host: 127.0.0.1 (port left out)
        scheme: http
        id set: True
        source address: 127.0.0.1
        header :method: GET
        header :path: /items?id=1
        header :scheme: http
        header authorization: Bearer alice
        header content-length: 0
        header x-authz: allow
        header x-forwarded-proto: http
    "#]]
    .assert_eq(&check);
    Ok(())
}

#[test]
fn grpc_deny_answers_the_services_status_headers_and_body() -> Result<()> {
    check(
        GRPC,
        "POST",
        "deny",
        expect![[r#"
            wasmcustom.ext_authz.ext_authz.denied: 1
            401
            www-authenticate: Bearer realm="shop"
            content-type: text/plain
            server: envoy
            ---
            denied by policy
        "#]],
    )
}

#[test]
fn grpc_deny_without_a_status_answers_status_on_deny() -> Result<()> {
    check(
        r#"{"cluster":"authz-grpc","mode":"grpc","timeout_ms":5000,"status_on_deny":451}"#,
        "GET",
        "deny-plain",
        expect![[r#"
            wasmcustom.ext_authz.ext_authz.denied: 1
            451
            server: envoy
            ---
        "#]],
    )
}

#[test]
fn grpc_error_fails_closed() -> Result<()> {
    check(
        GRPC,
        "GET",
        "error",
        expect![[r#"
            wasmcustom.ext_authz.ext_authz.error: 1
            403
            server: envoy
            ---
        "#]],
    )
}

#[test]
fn grpc_silence_fails_closed_after_the_timeout() -> Result<()> {
    check(
        r#"{"cluster":"authz-grpc","mode":"grpc","timeout_ms":300}"#,
        "GET",
        "never",
        expect![[r#"
            wasmcustom.ext_authz.ext_authz.error: 1
            403
            server: envoy
            ---
        "#]],
    )
}

#[test]
fn grpc_silence_fails_open_when_configured() -> Result<()> {
    check(
        r#"{"cluster":"authz-grpc","mode":"grpc","timeout_ms":300,"failure_mode_allow":true}"#,
        "GET",
        "never",
        expect![[r#"
            wasmcustom.ext_authz.ext_authz.error: 1
            wasmcustom.ext_authz.ext_authz.failure_mode_allowed: 1
            200
            server: envoy
            content-type: text/plain
            ---
            upstream got GET /items?id=1
            authorization: Bearer alice
            content-length: 0
            x-authz: never
            x-forwarded-proto: http
            body: ''
        "#]],
    )
}

#[test]
fn grpc_unknown_cluster_fails_open_when_configured() -> Result<()> {
    check(
        r#"{"cluster":"nowhere","mode":"grpc","failure_mode_allow":true,
            "failure_mode_allow_header_add":true}"#,
        "GET",
        "allow",
        expect![[r#"
            wasmcustom.ext_authz.ext_authz.error: 1
            wasmcustom.ext_authz.ext_authz.failure_mode_allowed: 1
            200
            server: envoy
            content-type: text/plain
            ---
            upstream got GET /items?id=1
            authorization: Bearer alice
            content-length: 0
            x-authz: allow
            x-envoy-auth-failure-mode-allowed: true
            x-forwarded-proto: http
            body: ''
        "#]],
    )
}
