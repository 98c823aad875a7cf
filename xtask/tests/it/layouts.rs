//! The three layouts (`package --format oci|seed|compat`) through a registry and back, image
//! indexes, Istio's compat image read by skopeo and written by skopeo, and the artifacts `pull`
//! must refuse.

use std::path::Path;

use anyhow::{Context, Result};
use serde_json::{Value, json};

use crate::credentials::Run;
use crate::interop::{ORAS_PY_PULL, oras_python, skopeo};
use crate::registry::Registry;
use crate::support::{built_filter, temp_dir, tool};
use crate::util;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// `package <name> --format <format>`: the --json object.
fn package(name: &str, format: &str, wasm: &Path) -> Result<Value> {
    let stdout = Run::new(&[
        "package",
        name,
        "--wasm",
        &wasm.display().to_string(),
        "--format",
        format,
        "--json",
    ])
    .ok()?;
    Ok(serde_json::from_str(&stdout)?)
}

fn pull(image: &str, dir: &Path, extra: &[&str]) -> Result<Value> {
    let mut args = vec!["pull", image];
    let dir = dir.display().to_string();
    args.push(&dir);
    args.extend(extra);
    args.push("--json");
    Ok(serde_json::from_str(&Run::new(&args).ok()?)?)
}

fn file_names(dir: &Path) -> Result<Vec<String>> {
    let mut names: Vec<String> = std::fs::read_dir(dir)?
        .map(|entry| Ok(entry?.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_>>()?;
    names.sort();
    Ok(names)
}

#[test]
fn every_format_round_trips_through_a_registry() -> Result<()> {
    let registry = Registry::start()?;
    let dir = temp_dir()?;
    let wasm = built_filter("add-header", dir.path())?;
    let module_digest = util::sha256_digest(&std::fs::read(&wasm)?);
    let mut seen = Vec::new();
    for format in ["oci", "seed", "compat"] {
        let name = format!("layout-{format}");
        let packaged = package(&name, format, &wasm)?;
        let layout = packaged["layout"].as_str().context("layout")?;
        let image = format!("{}/asm/{name}:v1", registry.address);
        let pushed: Value =
            serde_json::from_str(&Run::new(&["push", layout, &image, "--json"]).ok()?)?;
        assert_eq!(pushed["wasm_digest"], module_digest.as_str(), "{format}");
        assert_eq!(packaged["wasm_digest"], module_digest.as_str(), "{format}");
        let out = dir.path().join(format!("pulled-{format}"));
        let pulled = pull(&image, &out, &[])?;
        assert_eq!(pulled["wasm_digest"], module_digest.as_str(), "{format}");
        assert_eq!(pulled["manifest_digest"], packaged["manifest_digest"]);
        let cache = dir.path().join(format!("cache-{format}"));
        pull(&image, &cache, &["--store-by-digest"])?;
        seen.push(format!(
            "{format}: {} layer(s); pulled {:?}; cache {:?}",
            packaged["layers"],
            file_names(&out)?,
            file_names(&cache)?
                .iter()
                .map(|name| name.replace(module_digest.trim_start_matches("sha256:"), "<sha256>"))
                .collect::<Vec<_>>()
        ));
    }
    expect_test::expect![[r#"
        oci: 2 layer(s); pulled ["layout-oci.wasm", "runtime-config.json"]; cache ["<sha256>.wasm"]
        seed: 1 layer(s); pulled ["layout-seed.wasm"]; cache ["<sha256>.wasm"]
        compat: 1 layer(s); pulled ["plugin.wasm"]; cache ["<sha256>.wasm"]
    "#]]
    .assert_eq(&(seen.join("\n") + "\n"));
    Ok(())
}

#[test]
fn compat_image_is_reproducible_and_dated_by_source_date_epoch() -> Result<()> {
    let dir = temp_dir()?;
    let wasm = built_filter("add-header", dir.path())?;
    let wasm = wasm.display().to_string();
    let args = [
        "package",
        "layout-repro",
        "--wasm",
        &wasm,
        "--format",
        "compat",
        "--json",
    ];
    let first: Value = serde_json::from_str(
        &Run::new(&args)
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .ok()?,
    )?;
    let layout = first["layout"].as_str().context("layout")?.to_string();
    let manifest = read_blob(
        Path::new(&layout),
        first["manifest_digest"].as_str().unwrap_or_default(),
    )?;
    let second: Value = serde_json::from_str(
        &Run::new(&args)
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .ok()?,
    )?;
    assert_eq!(first["manifest_digest"], second["manifest_digest"]);
    let manifest: Value = serde_json::from_slice(&manifest)?;
    assert_eq!(
        manifest["annotations"]["org.opencontainers.image.created"],
        "2023-11-14T22:13:20Z"
    );
    assert_eq!(
        manifest["layers"][0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    Ok(())
}

fn read_blob(layout: &Path, digest: &str) -> Result<Vec<u8>> {
    let path = layout
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"));
    std::fs::read(&path).with_context(|| format!("reading {}", path.display()))
}

/// Pushes a layout in `format` as `<repository>:v1`; returns the manifest's descriptor.
fn push_format(registry: &Registry, repository: &str, format: &str, wasm: &Path) -> Result<Value> {
    let packaged = package(repository.trim_start_matches("asm/"), format, wasm)?;
    let layout = packaged["layout"].as_str().context("layout")?;
    let image = format!("{}/{repository}:v1", registry.address);
    Run::new(&["push", layout, &image]).ok()?;
    let (digest, _) = registry.manifest(repository, "v1")?;
    let bytes = read_blob(Path::new(layout), &digest)?;
    Ok(json!({ "mediaType": OCI_MANIFEST, "digest": digest, "size": bytes.len() }))
}

#[test]
fn pull_picks_the_wasm_manifest_of_an_image_index() -> Result<()> {
    let registry = Registry::start()?;
    let dir = temp_dir()?;
    let wasm = built_filter("add-header", dir.path())?;
    // Both in one repository, as a multi-artifact index has them.
    let oci = push_format(&registry, "asm/index-oci", "oci", &wasm)?;
    let compat = push_format(&registry, "asm/index-compat", "compat", &wasm)?;
    // Copy the compat manifest into the oci repository by pushing it there too.
    let compat_image = format!("{}/asm/index-oci:compat", registry.address);
    Run::new(&[
        "push",
        util::target_dir()
            .join("oci/index-compat")
            .to_str()
            .unwrap_or_default(),
        &compat_image,
    ])
    .ok()?;

    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [compat, oci],
    }))?;
    registry.put_manifest("asm/index-oci", "multi", OCI_INDEX, &index)?;
    let out = dir.path().join("from-index");
    let pulled = pull(
        &format!("{}/asm/index-oci:multi", registry.address),
        &out,
        &[],
    )?;
    assert_eq!(pulled["manifest_digest"], oci["digest"]);
    assert_eq!(file_names(&out)?, ["index-oci.wasm", "runtime-config.json"]);

    // Two Wasm artifacts: ambiguous, and the error says how to choose.
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [oci, oci],
    }))?;
    registry.put_manifest("asm/index-oci", "twice", OCI_INDEX, &index)?;
    let stderr = Run::new(&[
        "pull",
        &format!("{}/asm/index-oci:twice", registry.address),
        &dir.path().join("twice").display().to_string(),
    ])
    .fails()?;
    assert!(
        stderr.contains("lists 2 Wasm artifacts: pull one by digest"),
        "{stderr}"
    );
    Ok(())
}

#[test]
fn pull_refuses_artifacts_without_exactly_one_module() -> Result<()> {
    let registry = Registry::start()?;
    let dir = temp_dir()?;
    let wasm = built_filter("add-header", dir.path())?;
    push_format(&registry, "asm/refuse", "oci", &wasm)?;
    let (_, manifest) = registry.manifest("asm/refuse", "v1")?;
    let config_layer = manifest["layers"][0].clone();
    let mut wasm_layer = manifest["layers"][1].clone();
    let mut cases = Vec::new();
    let mut check = |tag: &str, layers: Value| -> Result<()> {
        let mut edited = manifest.clone();
        edited["layers"] = layers;
        registry.put_manifest(
            "asm/refuse",
            tag,
            OCI_MANIFEST,
            &serde_json::to_vec(&edited)?,
        )?;
        let out = dir.path().join(tag);
        let stderr = Run::new(&[
            "pull",
            &format!("{}/asm/refuse:{tag}", registry.address),
            &out.display().to_string(),
        ])
        .fails()?;
        let error = stderr
            .lines()
            .find(|line| line.starts_with("error: "))
            .unwrap_or_default();
        cases.push(format!(
            "{tag}: {}",
            error.replace(&registry.address, "<registry>")
        ));
        assert!(!out.exists(), "{tag}: pull wrote {}", out.display());
        Ok(())
    };
    check("none", json!([config_layer]))?;
    let mut second = wasm_layer.clone();
    second["annotations"]["org.opencontainers.image.title"] = "again.wasm".into();
    check("two", json!([wasm_layer, second]))?;
    wasm_layer["annotations"]["org.opencontainers.image.title"] = "evil\nwasm\tsha256:0".into();
    check("hostile-title", json!([wasm_layer]))?;
    expect_test::expect![[r#"
        none: error: <registry>/asm/refuse:none holds no Wasm module: no application/vnd.module.wasm.content.layer.v1+wasm layer and no image layer with plugin.wasm (its layers: application/vnd.module.wasm.config.v1+json)
        two: error: pulling <registry>/asm/refuse:two: the manifest has 2 wasm layers: a Wasm artifact has exactly one
        hostile-title: error: pulling <registry>/asm/refuse:hostile-title: layer title "evil\nwasm\tsha256:0" is not a plain file name
    "#]]
    .assert_eq(&(cases.join("\n") + "\n"));
    Ok(())
}

/// skopeo copies each of our layouts into the registry, and pulls each back into an OCI
/// layout that `push` accepts.
#[test]
fn skopeo_copies_every_format_both_ways() -> Result<()> {
    tool("skopeo")?;
    let registry = Registry::start()?;
    let dir = temp_dir()?;
    let wasm = built_filter("add-header", dir.path())?;
    let module_digest = util::sha256_digest(&std::fs::read(&wasm)?);
    for format in ["oci", "seed", "compat"] {
        let name = format!("skopeo-{format}");
        let packaged = package(&name, format, &wasm)?;
        let layout = packaged["layout"].as_str().context("layout")?;
        // skopeo pushes our layout; xtask pulls it.
        let image = format!("{}/asm/{name}:v1", registry.address);
        skopeo(&[
            "copy",
            "--dest-tls-verify=false",
            &format!("oci:{layout}:v0.1"),
            &format!("docker://{image}"),
        ])?;
        let pulled = pull(&image, &dir.path().join(&name), &[])?;
        assert_eq!(pulled["wasm_digest"], module_digest.as_str(), "{format}");
        // xtask pushes; skopeo copies into a layout; xtask pushes that layout again.
        let pushed_image = format!("{}/asm/{name}:pushed", registry.address);
        Run::new(&["push", layout, &pushed_image]).ok()?;
        let copied = dir.path().join(format!("{name}-copied"));
        skopeo(&[
            "copy",
            "--src-tls-verify=false",
            &format!("docker://{pushed_image}"),
            &format!("oci:{}:v1", copied.display()),
        ])?;
        let again = format!("{}/asm/{name}:again", registry.address);
        let pushed: Value = serde_json::from_str(
            &Run::new(&["push", &copied.display().to_string(), &again, "--json"]).ok()?,
        )?;
        assert_eq!(
            pushed["manifest_digest"], packaged["manifest_digest"],
            "{format}"
        );
    }
    Ok(())
}

/// oras-py pulls each format: the Wasm layouts' layers by title, and the compat layer
/// unpacked (oras-py extracts a tar+gzip layer), so plugin.wasm is the module.
#[test]
fn oras_py_pulls_every_format() -> Result<()> {
    tool("oras-python")?;
    let registry = Registry::start()?;
    let dir = temp_dir()?;
    let wasm = built_filter("add-header", dir.path())?;
    let mut seen = Vec::new();
    for format in ["oci", "seed", "compat"] {
        let name = format!("oras-{format}");
        let packaged = package(&name, format, &wasm)?;
        let layout = packaged["layout"].as_str().context("layout")?;
        let image = format!("{}/asm/{name}:v1", registry.address);
        Run::new(&["push", layout, &image]).ok()?;
        let out = dir.path().join(&name);
        std::fs::create_dir_all(&out)?;
        oras_python(
            ORAS_PY_PULL,
            &[&registry.address, &image, &out.display().to_string()],
            dir.path(),
        )?;
        seen.push(format!("{format}: {:?}", file_names(&out)?));
        if format == "compat" {
            assert!(std::fs::read(out.join("plugin.wasm"))? == std::fs::read(&wasm)?);
        }
    }
    expect_test::expect![[r#"
        oci: ["oras-oci.wasm", "runtime-config.json"]
        seed: ["oras-seed.wasm"]
        compat: ["plugin.wasm"]
    "#]]
    .assert_eq(&(seen.join("\n") + "\n"));
    Ok(())
}

/// A Docker image (schema 2) whose layer holds plugin.wasm pulls like the compat image; two
/// such layers are ambiguous.
#[test]
fn pull_reads_docker_images_holding_plugin_wasm() -> Result<()> {
    const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    let registry = Registry::start()?;
    let dir = temp_dir()?;
    let wasm = built_filter("add-header", dir.path())?;
    push_format(&registry, "asm/docker", "compat", &wasm)?;
    let (_, manifest) = registry.manifest("asm/docker", "v1")?;
    let mut layer = manifest["layers"][0].clone();
    layer["mediaType"] = "application/vnd.docker.image.rootfs.diff.tar.gzip".into();
    let mut config = manifest["config"].clone();
    config["mediaType"] = "application/vnd.docker.container.image.v1+json".into();
    let docker = |layers: Value| {
        serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST,
            "config": config,
            "layers": layers,
        }))
    };
    registry.put_manifest(
        "asm/docker",
        "image",
        DOCKER_MANIFEST,
        &docker(json!([layer]))?,
    )?;
    let out = dir.path().join("image");
    let pulled = pull(&format!("{}/asm/docker:image", registry.address), &out, &[])?;
    assert_eq!(
        pulled["wasm_digest"],
        util::sha256_digest(&std::fs::read(&wasm)?).as_str()
    );
    assert_eq!(file_names(&out)?, ["plugin.wasm"]);

    registry.put_manifest(
        "asm/docker",
        "twice",
        DOCKER_MANIFEST,
        &docker(json!([layer, layer]))?,
    )?;
    let image = format!("{}/asm/docker:twice", registry.address);
    let stderr = Run::new(&[
        "pull",
        &image,
        &dir.path().join("twice").display().to_string(),
    ])
    .fails()?;
    assert!(
        stderr.contains(&format!(
            "error: {image} is ambiguous: 2 of its layers hold plugin.wasm"
        )),
        "{stderr}"
    );
    Ok(())
}

/// On a terminal (a pty from util-linux's `script`), a large blob gets a progress bar, pushed as
/// a stream of chunks; the module pulled back is the same.
#[test]
fn large_blobs_show_progress_on_a_terminal() -> Result<()> {
    let registry = Registry::start()?;
    let dir = temp_dir()?;
    let data = "a".repeat(3 * 1024 * 1024);
    let module = wat::parse_str(format!(
        r#"(module (memory (export "memory") 64)
            (func (export "proxy_abi_version_0_2_1"))
            (func (export "malloc") (param i32) (result i32) i32.const 0)
            (data (i32.const 0) "{data}"))"#
    ))?;
    let wasm = dir.path().join("large.wasm");
    std::fs::write(&wasm, &module)?;
    let packaged = package("layout-large", "seed", &wasm)?;
    let layout = packaged["layout"].as_str().context("layout")?;
    let image = format!("{}/asm/large:v1", registry.address);
    let command = format!("{} push {layout} {image}", env!("CARGO_BIN_EXE_xtask"));
    let output = std::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .current_dir(util::project_root())
        .output()
        .context("running script (util-linux)")?;
    let terminal = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{terminal}");
    let digest = util::sha256_digest(&module);
    assert!(
        terminal.contains(&format!("pushing {digest} [")) && terminal.contains("3.00 MiB"),
        "{terminal}"
    );
    let pulled = pull(&image, &dir.path().join("pulled"), &[])?;
    assert_eq!(pulled["wasm_digest"], digest.as_str());
    Ok(())
}

/// A write that fails partway (here the module's name is taken by a directory, after the
/// runtime config was written) leaves the directory as it was: the file the pull had replaced
/// is back and nothing of the pull remains; into a fresh directory, a pull writes all or nothing.
#[test]
fn a_pull_that_fails_writing_leaves_the_directory_as_it_was() -> Result<()> {
    let registry = Registry::start()?;
    let dir = temp_dir()?;
    let wasm = built_filter("add-header", dir.path())?;
    let packaged = package("layout-atomic", "oci", &wasm)?;
    let layout = packaged["layout"].as_str().context("layout")?;
    let image = format!("{}/asm/layout-atomic:v1", registry.address);
    Run::new(&["push", layout, &image]).ok()?;

    let out = dir.path().join("out");
    std::fs::create_dir_all(out.join("layout-atomic.wasm").join("taken"))?;
    std::fs::write(out.join("runtime-config.json"), "old")?;
    let out_arg = out.display().to_string();
    let stderr = Run::new(&["pull", &image, &out_arg]).fails()?;
    assert!(stderr.contains("renaming into"), "{stderr}");
    assert_eq!(
        file_names(&out)?,
        ["layout-atomic.wasm", "runtime-config.json"]
    );
    assert_eq!(
        std::fs::read_to_string(out.join("runtime-config.json"))?,
        "old"
    );
    assert!(out.join("layout-atomic.wasm").join("taken").is_dir());

    // Once the name is free the same pull completes and replaces the old file.
    std::fs::remove_dir_all(out.join("layout-atomic.wasm"))?;
    pull(&image, &out, &[])?;
    assert_eq!(
        file_names(&out)?,
        ["layout-atomic.wasm", "runtime-config.json"]
    );
    assert_ne!(
        std::fs::read_to_string(out.join("runtime-config.json"))?,
        "old"
    );

    let fresh = dir.path().join("fresh");
    pull(&image, &fresh, &[])?;
    assert_eq!(
        file_names(&fresh)?,
        ["layout-atomic.wasm", "runtime-config.json"]
    );
    assert_eq!(
        file_names(dir.path())?
            .iter()
            .filter(|name| name.contains(".pull-"))
            .count(),
        0
    );
    Ok(())
}
