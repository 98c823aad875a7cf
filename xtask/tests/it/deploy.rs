//! The generated deployment resources, loaded in a real Envoy as the proxy would get them:
//! the EnvoyFilter's `patch.value` verbatim (only the module path pointed at a local copy) before
//! the router, and the WasmPlugin rendered into the filter config istiod sends (the module
//! pulled from the registry by `cargo xtask pull`, pinned by the WasmPlugin's sha256, as
//! istio-agent does before handing Envoy a local file); the EnvoyExtensionPolicy rendered into
//! the filter Envoy Gateway sends (the module served over HTTP, as its Wasm cache does); and
//! json-guard, which needs `allow_on_headers_stop_iteration`, through its generated EnvoyFilter.
//! A module the cache serves wrong shows what `failOpen` means: true skips the filter, false
//! answers 503.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, ensure};
use expect_test::{Expect, expect};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::envoy::{Envoy, bootstrap, get};
use crate::registry::Registry;
use crate::support::{lock_filters, stable_head, temp_dir, tool, xtask};

const PARAMETERS: &str = r#"{"name":"hello","value":"hello details"}"#;

/// What `cargo xtask publish --json` prints, the part used here.
#[derive(Debug, Deserialize)]
struct Published {
    wasm: PathBuf,
    wasm_digest: String,
    manifest_digest: String,
    manifests: Manifests,
}

#[derive(Debug, Deserialize)]
struct Manifests {
    envoyfilter: PathBuf,
    wasmplugin: Option<PathBuf>,
    envoyextensionpolicy: Option<PathBuf>,
}

/// Publishes add-header as `name` (pushing to `registry` when given); returns publish's result
/// and a copy of the shipped module in `dir`.
fn publish(name: &str, registry: Option<&str>, dir: &Path) -> Result<(Published, PathBuf)> {
    publish_filter("add-header", PARAMETERS, name, registry, &[], dir)
}

/// [`publish`] with extra arguments.
fn publish_with(
    name: &str,
    registry: Option<&str>,
    extra: &[&str],
    dir: &Path,
) -> Result<(Published, PathBuf)> {
    publish_filter("add-header", PARAMETERS, name, registry, extra, dir)
}

/// Publishes `filter` with `parameters` as `name` and `extra` arguments, like [`publish`].
fn publish_filter(
    filter: &str,
    parameters: &str,
    name: &str,
    registry: Option<&str>,
    extra: &[&str],
    dir: &Path,
) -> Result<(Published, PathBuf)> {
    let _filters = lock_filters();
    let mut args = vec![
        "publish",
        filter,
        "--name",
        name,
        "--root-id",
        "my_root_id",
        "--labels",
        "app=details",
        "--parameters",
        parameters,
        "--json",
    ];
    if let Some(registry) = registry {
        args.extend(["--registry", registry]);
    }
    args.extend(extra);
    let stdout = xtask(&args)?;
    let published: Published =
        serde_json::from_str(&stdout).with_context(|| format!("parsing {stdout}"))?;
    let copy = dir.join(format!("{filter}.wasm"));
    std::fs::copy(&published.wasm, &copy).context("copying the module")?;
    Ok((published, copy))
}

fn read_yaml(path: &Path) -> Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_yaml_ng::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// The project's bootstrap with `filter` before the router of the test listener.
fn bootstrap_with(filter: Value) -> Value {
    let mut config = bootstrap(&[]);
    let filters = &mut config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
        ["typed_config"]["http_filters"];
    let router = filters[0].clone();
    *filters = json!([filter, router]);
    config
}

/// Envoy on `config`; one GET; the response head.
fn get_from_envoy(config: &Value, dir: &Path, expect: Expect) -> Result<()> {
    let envoy = Envoy::start(&tool("envoy")?, config, &dir.join("envoy"))?;
    expect.assert_eq(&stable_head(&get(&envoy.listener_url())?));
    Ok(())
}

/// Envoy with `filter` before the router of the test listener; one GET; the response head.
fn run_in_envoy(filter: Value, dir: &Path, expect: Expect) -> Result<()> {
    get_from_envoy(&bootstrap_with(filter), dir, expect)
}

/// The EnvoyFilter's single `patch.value`, its module path pointed at `wasm`.
fn envoy_filter_value(envoy_filter: &Value, wasm: &Path) -> Result<Value> {
    let patches = envoy_filter["spec"]["configPatches"]
        .as_array()
        .context("configPatches")?;
    ensure!(patches.len() == 1, "{envoy_filter:#}");
    let mut value = patches[0]["patch"]["value"].clone();
    value["typed_config"]["config"]["vm_config"]["code"]["local"]["filename"] =
        Value::String(wasm.display().to_string());
    Ok(value)
}

#[test]
fn the_envoy_filter_patch_runs_in_envoy() -> Result<()> {
    let dir = temp_dir()?;
    let (published, wasm) = publish("deploy-test-envoyfilter", None, dir.path())?;
    let envoy_filter = read_yaml(&published.manifests.envoyfilter)?;
    let patches = envoy_filter["spec"]["configPatches"]
        .as_array()
        .context("configPatches")?;
    ensure!(patches.len() == 1, "{envoy_filter:#}");
    let patch = &patches[0];
    assert_eq!(patch["applyTo"], "HTTP_FILTER");
    assert_eq!(patch["patch"]["operation"], "INSERT_BEFORE");
    assert_eq!(
        patch["match"]["listener"]["filterChain"]["filter"]["subFilter"]["name"],
        "envoy.filters.http.router"
    );
    let mut value = patch["patch"]["value"].clone();
    let filename = &mut value["typed_config"]["config"]["vm_config"]["code"]["local"]["filename"];
    let node_path = filename.as_str().context("a local filename")?.to_string();
    assert_eq!(
        node_path,
        format!(
            "/var/local/lib/wasm-filters/{}.wasm",
            crate::util::sha256_digest(&std::fs::read(&wasm)?).trim_start_matches("sha256:")
        ),
        "the node path names the module's digest"
    );
    *filename = Value::String(wasm.display().to_string());
    run_in_envoy(
        value,
        dir.path(),
        expect![[r#"
            HTTP/1.1 200 OK
            content-length: 18
            content-type: text/plain
            resp-header-demo: added by our filter
            hello: hello details
            server: envoy
        "#]],
    )
}

/// The HTTP filter istiod builds from a WasmPlugin (pilot/pkg/model/extensions.go: name
/// `<namespace>.<name>`, root_id = pluginName, pluginConfig as a JSON StringValue, a VM with
/// no vm_id and the image as remote code; FAIL_OPEN as fail_open), with the remote code
/// replaced by the local file istio-agent pulled, as the agent does.
fn istiod_filter(wasm_plugin: &Value, local_wasm: &Path) -> Value {
    let metadata = &wasm_plugin["metadata"];
    let spec = &wasm_plugin["spec"];
    let name = format!(
        "{}.{}",
        metadata["namespace"].as_str().unwrap_or("default"),
        metadata["name"].as_str().unwrap_or_default()
    );
    let mut config = json!({
        "name": name,
        "root_id": spec["pluginName"],
        "vm_config": {
            "runtime": "envoy.wasm.runtime.v8",
            "code": { "local": { "filename": local_wasm.display().to_string() } },
            "environment_variables": { "key_values": {
                "ISTIO_META_WASM_IMAGE_PULL_POLICY": spec["imagePullPolicy"],
                "ISTIO_META_WASM_PLUGIN_RESOURCE_VERSION": "1",
            } },
        },
        "fail_open": spec["failStrategy"] == "FAIL_OPEN",
    });
    if spec["pluginConfig"].is_object() {
        config["configuration"] = json!({
            "@type": "type.googleapis.com/google.protobuf.StringValue",
            "value": spec["pluginConfig"].to_string(),
        });
    }
    json!({
        "name": name,
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": config,
        },
    })
}

/// What `cargo xtask pull --json` prints.
#[derive(Debug, Deserialize)]
struct Pulled {
    manifest_digest: String,
    wasm: PathBuf,
}

/// `cargo xtask pull image dir --json`, as a cache in front of Envoy would fetch the module.
fn pull(image: &str, dir: &Path) -> Result<Pulled> {
    let stdout = xtask(&["pull", image, &dir.display().to_string(), "--json"])?;
    serde_json::from_str(&stdout).with_context(|| format!("parsing pull's JSON: {stdout}"))
}

#[test]
fn the_wasm_plugin_as_istiod_renders_it_runs_in_envoy() -> Result<()> {
    let registry = Registry::start()?;
    let dir = temp_dir()?;
    let reference = format!("{}/deploy/add-header:v0.1", registry.address);
    let (published, _) = publish("deploy-test-wasmplugin", Some(&reference), dir.path())?;
    let wasm_plugin = read_yaml(
        published
            .manifests
            .wasmplugin
            .as_deref()
            .context("a WasmPlugin for a pushed two-layer image")?,
    )?;
    let spec = &wasm_plugin["spec"];
    let url = spec["url"].as_str().context("url")?;
    let image = url.strip_prefix("oci://").context("an oci:// url")?;
    assert_eq!(image, reference);
    let pulled = pull(image, &dir.path().join("pulled"))?;
    assert_eq!(
        format!("sha256:{}", spec["sha256"].as_str().context("sha256")?),
        pulled.manifest_digest,
        "the WasmPlugin pins the digest the registry serves"
    );
    assert_eq!(pulled.manifest_digest, published.manifest_digest);
    run_in_envoy(
        istiod_filter(&wasm_plugin, &pulled.wasm),
        dir.path(),
        expect![[r#"
            HTTP/1.1 200 OK
            content-length: 18
            content-type: text/plain
            resp-header-demo: added by our filter
            hello: hello details
            server: envoy
        "#]],
    )
}

/// A compat image (one tar+gzip layer holding plugin.wasm): the WasmPlugin pins the manifest
/// digest, which Istio's image fetcher compares `sha256` with for every `oci://` layout, and the
/// hostpath EnvoyFilter and `wasm_digest` name the module by its own sha256, not the layer's.
#[test]
fn publish_compat_pins_the_manifest_and_names_the_module_by_its_digest() -> Result<()> {
    let registry = Registry::start()?;
    let dir = temp_dir()?;
    let reference = format!("{}/deploy/compat:v0.1", registry.address);
    let (published, wasm) = publish_with(
        "deploy-test-compat",
        Some(&reference),
        &["--format", "compat"],
        dir.path(),
    )?;
    let module_digest = crate::util::sha256_digest(&std::fs::read(&wasm)?);
    assert_eq!(published.wasm_digest, module_digest);
    let wasm_plugin = read_yaml(
        published
            .manifests
            .wasmplugin
            .as_deref()
            .context("a WasmPlugin for a compat image")?,
    )?;
    let (registry_digest, manifest) = registry.manifest("deploy/compat", "v0.1")?;
    assert_eq!(
        format!(
            "sha256:{}",
            wasm_plugin["spec"]["sha256"].as_str().unwrap_or_default()
        ),
        registry_digest
    );
    assert_eq!(
        manifest["layers"][0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    let module_file = format!("{}.wasm", module_digest.trim_start_matches("sha256:"));
    let envoy_filter = std::fs::read_to_string(&published.manifests.envoyfilter)?;
    assert!(envoy_filter.contains(&module_file), "{envoy_filter}");
    // Without a registry the digests come from the local layout.
    let (local, _) = publish_with(
        "deploy-test-compat-local",
        None,
        &["--format", "compat"],
        dir.path(),
    )?;
    let envoy_filter = std::fs::read_to_string(&local.manifests.envoyfilter)?;
    assert!(envoy_filter.contains(&module_file), "{envoy_filter}");
    Ok(())
}

/// What `cargo xtask manifests --json` prints, the part used here.
#[derive(Debug, Deserialize)]
struct Written {
    wasmplugin: Option<PathBuf>,
    envoyextensionpolicy: Option<PathBuf>,
}

#[test]
fn manifests_pin_what_the_registry_holds_not_the_local_layout() -> Result<()> {
    let registry = Registry::start()?;
    let reference = format!("{}/deploy/pinned:v0.1", registry.address);
    // Holds target/filters/ and so target/oci/add-header/, which this test repackages.
    let _filters = lock_filters();
    xtask(&["package", "add-header"])?;
    xtask(&["push", "target/oci/add-header", &reference])?;
    // The local layout changes (a one-layer repackage) after the push.
    xtask(&["package", "add-header", "--single-layer"])?;
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args([
            "manifests",
            "add-header",
            "--name",
            "deploy-test-pinned",
            "--registry",
            &reference,
            "--json",
        ])
        .current_dir(crate::util::project_root())
        .output()?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    ensure!(output.status.success(), "{stderr}");
    xtask(&["package", "add-header"])?;
    let written: Written = serde_json::from_slice(&output.stdout)?;
    assert!(
        stderr.contains("the resources pin what the registry holds"),
        "{stderr}"
    );
    let wasm_plugin = read_yaml(written.wasmplugin.as_deref().context("a WasmPlugin")?)?;
    let policy = read_yaml(
        written
            .envoyextensionpolicy
            .as_deref()
            .context("an EnvoyExtensionPolicy")?,
    )?;
    let (registry_digest, _) = registry.manifest("deploy/pinned", "v0.1")?;
    let pinned = format!(
        "sha256:{}",
        wasm_plugin["spec"]["sha256"].as_str().unwrap_or_default()
    );
    assert_eq!(pinned, registry_digest);
    assert_eq!(
        policy["spec"]["wasm"][0]["code"]["image"]["sha256"],
        wasm_plugin["spec"]["sha256"]
    );
    Ok(())
}

/// The HTTP filter and route entry Envoy Gateway builds from wasm[`index`] of an
/// EnvoyExtensionPolicy with an Image source (internal/gatewayapi/envoyextensionpolicy.go
/// buildWasm, internal/xds/translator/wasm.go): its Wasm cache pulls the image, checks the
/// manifest digest against `sha256` and serves the module over HTTP from the control plane;
/// the filter takes it as remote code from `wasm_cluster`, pinned by the module's own sha256.
/// The filter is named `envoy.filters.http.wasm/<ir name>`, disabled in the HCM and enabled
/// per route (a FilterConfig with an empty config); plugin name = spec `name`, vm_id = the IR
/// name, configuration = the `config` JSON as a StringValue (empty without one), `failOpen`
/// as fail_open (absent = false). Envoy Gateway's `wasm_cluster` speaks TLS to the control
/// plane; here it is plain HTTP.
fn envoy_gateway_filter(
    policy: &Value,
    index: usize,
    serving_url: &str,
    wasm_sha256: &str,
) -> (Value, Value) {
    let metadata = &policy["metadata"];
    let wasm = &policy["spec"]["wasm"][index];
    let ir_name = format!(
        "envoyextensionpolicy/{}/{}/wasm/{index}",
        metadata["namespace"].as_str().unwrap_or("default"),
        metadata["name"].as_str().unwrap_or_default()
    );
    let filter_name = format!("envoy.filters.http.wasm/{ir_name}");
    let configuration = if wasm["config"].is_null() {
        String::new()
    } else {
        wasm["config"].to_string()
    };
    let mut config = json!({
        "name": wasm["name"].as_str().unwrap_or(&ir_name),
        "vm_config": {
            "vm_id": ir_name,
            "runtime": "envoy.wasm.runtime.v8",
            "code": { "remote": {
                "http_uri": { "uri": serving_url, "cluster": "wasm_cluster", "timeout": "10s" },
                "sha256": wasm_sha256,
            } },
        },
        "configuration": {
            "@type": "type.googleapis.com/google.protobuf.StringValue",
            "value": configuration,
        },
        "fail_open": wasm["failOpen"].as_bool().unwrap_or(false),
    });
    if let Some(root_id) = wasm["rootID"].as_str() {
        config["root_id"] = json!(root_id);
    }
    let filter = json!({
        "name": filter_name,
        "disabled": true,
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": config,
        },
    });
    let per_route = json!({
        filter_name: {
            "@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig",
            "config": {},
        },
    });
    (filter, per_route)
}

/// Serves `body` to every HTTP request on 127.0.0.1 (a thread that lives as long as the test
/// process); returns the address.
fn serve(body: Vec<u8>) -> Result<std::net::SocketAddr> {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("binding the server")?;
    let address = listener.local_addr()?;
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(&stream);
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|read| read > 0) && line != "\r\n" {
                line.clear();
            }
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/wasm\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            let mut stream = &stream;
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&body);
        }
    });
    Ok(address)
}

#[test]
fn the_envoy_extension_policy_as_envoy_gateway_renders_it_runs_in_envoy() -> Result<()> {
    let registry = Registry::start()?;
    let dir = temp_dir()?;
    let reference = format!("{}/deploy/eg-add-header:v0.1", registry.address);
    let (published, _) = publish("deploy-test-eep", Some(&reference), dir.path())?;
    let policy = read_yaml(
        published
            .manifests
            .envoyextensionpolicy
            .as_deref()
            .context("an EnvoyExtensionPolicy for a pushed two-layer image")?,
    )?;
    let image = &policy["spec"]["wasm"][0]["code"]["image"];
    assert_eq!(image["url"].as_str(), Some(reference.as_str()));
    assert_eq!(policy["spec"]["wasm"][0]["failOpen"], true);
    // Envoy Gateway's Wasm cache: pull, check the manifest digest, serve the module.
    let pulled = pull(&reference, &dir.path().join("pulled"))?;
    assert_eq!(
        format!("sha256:{}", image["sha256"].as_str().context("sha256")?),
        pulled.manifest_digest,
        "the policy pins the digest the registry serves"
    );
    let module = std::fs::read(&pulled.wasm)?;
    let wasm_sha256 = crate::util::sha256_digest(&module);
    let wasm_sha256 = wasm_sha256.trim_start_matches("sha256:");
    let address = serve(module)?;
    let serving_url = format!("http://{address}/{wasm_sha256}.wasm");
    let (filter, per_route) = envoy_gateway_filter(&policy, 0, &serving_url, wasm_sha256);
    assert_eq!(
        filter["typed_config"]["config"]["fail_open"], true,
        "failOpen as rendered"
    );
    let mut config = bootstrap_with(filter);
    let resources = &mut config["static_resources"];
    resources["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]["route_config"]["virtual_hosts"]
        [0]["routes"][0]["typed_per_filter_config"] = per_route;
    resources["clusters"] = json!([{
        "name": "wasm_cluster",
        "type": "STATIC",
        "connect_timeout": "5s",
        "load_assignment": {
            "cluster_name": "wasm_cluster",
            "endpoints": [{ "lb_endpoints": [{ "endpoint": { "address": { "socket_address": {
                "address": address.ip().to_string(),
                "port_value": address.port(),
            } } } }] }],
        },
    }]);
    get_from_envoy(
        &config,
        dir.path(),
        expect![[r#"
            HTTP/1.1 200 OK
            content-length: 18
            content-type: text/plain
            resp-header-demo: added by our filter
            hello: hello details
            server: envoy
        "#]],
    )?;
    // The cache serving something else than the module the filter is pinned to: what each
    // rendered failOpen makes of it.
    let wrong = serve(b"not the module".to_vec())?;
    let mut outcomes = Vec::new();
    for fail_open in [true, false] {
        let mut policy = policy.clone();
        policy["spec"]["wasm"][0]["failOpen"] = json!(fail_open);
        let url = format!("http://{wrong}/{wasm_sha256}.wasm");
        let (filter, per_route) = envoy_gateway_filter(&policy, 0, &url, wasm_sha256);
        let mut broken = config.clone();
        let resources = &mut broken["static_resources"];
        let hcm = &mut resources["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"];
        hcm["http_filters"][0] = filter;
        hcm["route_config"]["virtual_hosts"][0]["routes"][0]["typed_per_filter_config"] = per_route;
        resources["clusters"][0]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
            ["address"]["socket_address"]["port_value"] = json!(wrong.port());
        let work_dir = dir.path().join(format!("envoy-fail-open-{fail_open}"));
        let outcome = match Envoy::start(&tool("envoy")?, &broken, &work_dir) {
            // The listener warms until the fetch gives up (Envoy retries it first).
            Ok(envoy) => stable_head(&crate::util::poll_until(
                std::time::Instant::now() + std::time::Duration::from_secs(30),
                "the listener after the failed fetch",
                || Ok(get(&envoy.listener_url()).ok()),
            )?),
            Err(error) => match error.downcast_ref::<crate::envoy::Exited>() {
                Some(exited) => format!("envoy exited: {}\n", exited.status),
                None => return Err(error),
            },
        };
        outcomes.push(format!("failOpen {fail_open}:\n{outcome}"));
    }
    expect![[r#"
        failOpen true:
        HTTP/1.1 200 OK
        content-length: 18
        content-type: text/plain
        server: envoy
        failOpen false:
        HTTP/1.1 503 Service Unavailable
        server: envoy
        content-length: 0
    "#]]
    .assert_eq(&outcomes.concat());
    Ok(())
}

/// One POST over plain HTTP; the status and body.
fn post(url: &str, body: &str) -> Result<String> {
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .timeout_global(Some(std::time::Duration::from_secs(10)))
        .build();
    let mut response = ureq::Agent::new_with_config(config)
        .post(url)
        .header("content-type", "application/json")
        .send(body)
        .with_context(|| format!("POST {url}"))?;
    let text = response.body_mut().read_to_string()?;
    Ok(format!(
        "{} {}",
        response.status().as_u16(),
        text.trim_end()
    ))
}

/// json-guard pauses in its headers callback; its deploy.json asks for
/// `allow_on_headers_stop_iteration`, which the generated EnvoyFilter carries (without it
/// Envoy never hands the body over and the first two POSTs get no answer).
#[test]
fn json_guard_gets_the_body_through_its_envoy_filter() -> Result<()> {
    let dir = temp_dir()?;
    let (published, wasm) = publish_filter(
        "json-guard",
        r#"{"max_body_bytes":64}"#,
        "deploy-test-json-guard",
        None,
        &[],
        dir.path(),
    )?;
    let envoy_filter = read_yaml(&published.manifests.envoyfilter)?;
    let value = envoy_filter_value(&envoy_filter, &wasm)?;
    assert_eq!(
        value["typed_config"]["config"]["allow_on_headers_stop_iteration"], true,
        "filters/json-guard/deploy.json asks for it"
    );
    let envoy = Envoy::start(
        &tool("envoy")?,
        &bootstrap_with(value),
        &dir.path().join("envoy"),
    )?;
    let url = envoy.listener_url();
    let answers = [
        post(&url, r#"{"user":"ann"}"#)?,
        post(&url, "not json")?,
        post(&url, &format!(r#"{{"pad":"{}"}}"#, "x".repeat(100)))?,
    ];
    expect![[r#"
        200 answered by envoy
        400 invalid JSON: expected value at byte 0
        413 request body larger than 64 bytes"#]]
    .assert_eq(&answers.join("\n"));
    Ok(())
}
