//! The seed article's workflow end to end: publish add-header to a registry, pull it back,
//! and run the pulled module in Envoy configured from the generated ASMFilterDeployment.

use std::path::PathBuf;

use anyhow::{Context, Result};
use expect_test::expect;
use serde::Deserialize;

use crate::envoy::{AsmFilterDeployment, get};
use crate::registry::Registry;
use crate::support::{lock_filters, stable_head, start_envoy, temp_dir, xtask};
use crate::util;

/// What `cargo xtask publish --json` prints.
#[derive(Debug, Deserialize)]
struct Published {
    filter: String,
    wasm: PathBuf,
    wasm_digest: String,
    manifest_digest: String,
    image: String,
    pushed: bool,
    manifests: Manifests,
}

#[derive(Debug, Deserialize)]
struct Manifests {
    asmfilterdeployment: PathBuf,
}

/// What `cargo xtask pull --json` prints.
#[derive(Debug, Deserialize)]
struct Pulled {
    manifest_digest: String,
    wasm_digest: String,
    wasm: PathBuf,
}

#[test]
fn seed_scenario_end_to_end() -> Result<()> {
    let registry = Registry::start()?;
    let dir = temp_dir()?;
    let reference = format!("{}/asm/asm-test:v0.1", registry.address);

    // Publish holds target/filters/ so that no other test copies a module while it is rebuilt.
    let (published, shipped) = {
        let _filters = lock_filters();
        let stdout = xtask(&[
            "publish",
            "add-header",
            "--registry",
            &reference,
            "--root-id",
            "my_root_id",
            "--parameters",
            r#"{"name":"hello","value":"hello details"}"#,
            "--labels",
            "app=details,version=v1",
            "--name",
            "details-v1-wasmfiltersample",
            "--json",
        ])?;
        let published: Published = serde_json::from_str(&stdout)
            .with_context(|| format!("parsing publish's JSON: {stdout}"))?;
        let shipped =
            std::fs::read(util::filter_wasm("add-header")).context("reading the shipped module")?;
        (published, shipped)
    };
    assert_eq!(published.filter, "add-header");
    assert!(
        published.pushed,
        "publish with --registry must push: {published:?}"
    );
    assert_eq!(published.image, reference);
    assert_eq!(published.wasm, util::filter_wasm("add-header"));
    assert_eq!(published.wasm_digest, util::sha256_digest(&shipped));

    let deployment = AsmFilterDeployment::read(&published.manifests.asmfilterdeployment)?;
    let filter = &deployment.spec.filter;
    assert_eq!(
        filter.image, reference,
        "the deployment must name what was pushed"
    );
    assert_eq!(filter.root_id, "my_root_id");
    assert_eq!(
        filter.parameters,
        r#"{"name":"hello","value":"hello details"}"#
    );
    assert_eq!(filter.id, "details-v1-wasmfiltersample.default");
    assert_eq!(deployment.metadata.name, "details-v1-wasmfiltersample");
    assert_eq!(
        deployment
            .spec
            .workload
            .labels
            .iter()
            .map(|(key, value)| format!("{key}={value}"))
            .collect::<Vec<_>>(),
        ["app=details", "version=v1"]
    );

    // What the registry holds, read without xtask: the manifest's own digest, and its layers.
    let (manifest_digest, manifest) = registry.manifest("asm/asm-test", "v0.1")?;
    assert_eq!(manifest_digest, published.manifest_digest);
    let wasm_layers = manifest["layers"].as_array().into_iter().flatten();
    let wasm_layer_digests: Vec<&str> = wasm_layers
        .filter(|layer| layer["mediaType"] == "application/vnd.module.wasm.content.layer.v1+wasm")
        .filter_map(|layer| layer["digest"].as_str())
        .collect();
    assert!(
        wasm_layer_digests.contains(&published.wasm_digest.as_str()),
        "{manifest:#}"
    );
    expect![[r#"
        manifest application/vnd.oci.image.manifest.v1+json
        config application/vnd.module.wasm.config.v1+json
        layer application/vnd.module.wasm.config.v1+json runtime-config.json
        layer application/vnd.module.wasm.content.layer.v1+wasm add-header.wasm
    "#]]
    .assert_eq(&media_types(&manifest));

    let pulled_dir = dir.path().join("pulled");
    let stdout = xtask(&[
        "pull",
        &reference,
        &pulled_dir.display().to_string(),
        "--json",
    ])?;
    let pulled: Pulled =
        serde_json::from_str(&stdout).with_context(|| format!("parsing pull's JSON: {stdout}"))?;
    assert_eq!(pulled.manifest_digest, published.manifest_digest);
    assert_eq!(pulled.wasm_digest, published.wasm_digest);
    assert_eq!(pulled.wasm, pulled_dir.join("add-header.wasm"));
    let pulled_bytes = std::fs::read(&pulled.wasm)
        .with_context(|| format!("reading {}", pulled.wasm.display()))?;
    assert!(
        pulled_bytes == shipped,
        "the pulled module differs from target/filters/add-header.wasm"
    );

    let envoy = start_envoy(&deployment, &pulled.wasm, dir.path())?;
    let response = get(&envoy.listener_url())?;
    expect![[r#"
        HTTP/1.1 200 OK
        content-length: 18
        content-type: text/plain
        resp-header-demo: added by our filter
        hello: hello details
        server: envoy
    "#]]
    .assert_eq(&stable_head(&response));
    Ok(())
}

/// The manifest's media types and layer titles, one per line (digests change with the code).
fn media_types(manifest: &serde_json::Value) -> String {
    let mut lines = vec![
        format!("manifest {}", manifest["mediaType"].as_str().unwrap_or("-")),
        format!(
            "config {}",
            manifest["config"]["mediaType"].as_str().unwrap_or("-")
        ),
    ];
    for layer in manifest["layers"].as_array().into_iter().flatten() {
        let title = layer["annotations"]["org.opencontainers.image.title"]
            .as_str()
            .unwrap_or("-");
        lines.push(format!(
            "layer {} {title}",
            layer["mediaType"].as_str().unwrap_or("-")
        ));
    }
    lines.iter().map(|line| format!("{line}\n")).collect()
}

/// A configuration the filter rejects would make Envoy refuse the plugin and fail closed:
/// publish stops before pushing anything, with the filter's own reason.
#[test]
fn publish_refuses_parameters_the_filter_rejects() -> Result<()> {
    let registry = Registry::start()?;
    let reference = format!("{}/asm/refused:v0.1", registry.address);
    let stderr = {
        let _filters = lock_filters();
        crate::support::xtask_fails(&[
            "publish",
            "add-header",
            "--registry",
            &reference,
            "--name",
            "refused-parameters",
            "--parameters",
            // Passes the config schema (which has no rule for values); host-sim's canary refuses it.
            r#"{"name":"hello","value":"a\u0001b"}"#,
        ])?
    };
    let reason: Vec<&str> = stderr
        .lines()
        .filter(|line| line.starts_with("error") || line.starts_with("  error"))
        .collect();
    expect![[r#"
        error: Envoy would refuse this plugin configuration (fix --parameters, or pass --no-check to publish anyway):
          error invalid plugin configuration for root_id=my_root_id: header value "a\u{1}b" contains a control character"#]]
    .assert_eq(&reason.join("\n"));
    assert!(
        !util::target_dir()
            .join("deploy/refused-parameters")
            .exists(),
        "no manifests for a refused configuration"
    );
    let tags = get(&format!(
        "http://{}/v2/asm/refused/tags/list",
        registry.address
    ))?;
    assert_eq!(tags.status, 404, "nothing pushed: {}", tags.body);
    Ok(())
}
