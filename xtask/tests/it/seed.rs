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
    expect![[r#""#]].assert_eq(&stable_head(&response));
    Ok(())
}
