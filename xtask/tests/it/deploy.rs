//! The generated deployment resources, loaded in a real Envoy as the proxy would get them:
//! the EnvoyFilter's `patch.value` verbatim (only the module path pointed at a local copy) before
//! the router, and the WasmPlugin rendered into the filter config istiod sends (the module
//! pulled from the registry by `cargo xtask pull`, pinned by the WasmPlugin's sha256, as
//! istio-agent does before handing Envoy a local file).

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
}

/// Publishes add-header as `name` (pushing to `registry` when given); returns publish's result
/// and a copy of the shipped module in `dir`.
fn publish(name: &str, registry: Option<&str>, dir: &Path) -> Result<(Published, PathBuf)> {
    publish_with(name, registry, &[], dir)
}

/// [`publish`] with extra arguments.
fn publish_with(
    name: &str,
    registry: Option<&str>,
    extra: &[&str],
    dir: &Path,
) -> Result<(Published, PathBuf)> {
    let _filters = lock_filters();
    let mut args = vec![
        "publish",
        "add-header",
        "--name",
        name,
        "--root-id",
        "my_root_id",
        "--labels",
        "app=details",
        "--parameters",
        PARAMETERS,
        "--json",
    ];
    if let Some(registry) = registry {
        args.extend(["--registry", registry]);
    }
    args.extend(extra);
    let stdout = xtask(&args)?;
    let published: Published =
        serde_json::from_str(&stdout).with_context(|| format!("parsing {stdout}"))?;
    let copy = dir.join("add-header.wasm");
    std::fs::copy(&published.wasm, &copy).context("copying the module")?;
    Ok((published, copy))
}

fn read_yaml(path: &Path) -> Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_yaml_ng::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// Envoy with `filter` before the router of the test listener; one GET; the response head.
fn run_in_envoy(filter: Value, dir: &Path, expect: Expect) -> Result<()> {
    let mut config = bootstrap(&[]);
    let filters = &mut config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
        ["typed_config"]["http_filters"];
    let router = filters[0].clone();
    *filters = json!([filter, router]);
    let envoy = Envoy::start(&tool("envoy")?, &config, &dir.join("envoy"))?;
    expect.assert_eq(&stable_head(&get(&envoy.listener_url())?));
    Ok(())
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
    let pulled_dir = dir.path().join("pulled");
    let stdout = xtask(&["pull", image, &pulled_dir.display().to_string(), "--json"])?;
    let pulled: Pulled = serde_json::from_str(&stdout)?;
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
