//! Interop: what `cargo xtask publish` pushes is a Wasm OCI artifact that other clients read
//! (Debian's skopeo, PyPI's oras-py), and what those clients push, `cargo xtask pull` reads.
//!
//! Each test starts its own registry on 127.0.0.1. The other clients are looked up like every
//! tool (`cargo xtask setup`); oras-py has no command line, so the tests run small Python
//! scripts with `target/tools/bin/oras-python`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use expect_test::expect;
use serde::Deserialize;
use serde_json::Value;

use crate::registry::Registry;
use crate::support::{built_filter, lock_filters, temp_dir, tool, xtask};
use crate::util;

const WASM_LAYER_MEDIA_TYPE: &str = "application/vnd.module.wasm.content.layer.v1+wasm";
const CONFIG_MEDIA_TYPE: &str = "application/vnd.module.wasm.config.v1+json";
/// The seed's runtime-config.json; what `publish` writes for root_id my_root_id and a filter
/// without a config schema.
const RUNTIME_CONFIG: &str =
    r#"{"type":"envoy_proxy","abiVersions":["v0.2.1"],"config":{"rootIds":["my_root_id"]}}"#;

/// What `publish` writes for add-header: the seed's runtime config plus the filter's
/// config.schema.json as `config.configSchema`.
fn published_runtime_config() -> Result<String> {
    let path = util::project_root().join("filters/add-header/config.schema.json");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let schema: serde_json::Value = serde_json::from_str(&text)?;
    Ok(RUNTIME_CONFIG.replace(
        r#""rootIds":["my_root_id"]"#,
        &format!(r#""rootIds":["my_root_id"],"configSchema":{schema}"#),
    ))
}

/// What `cargo xtask publish --json` prints (the fields these tests read).
#[derive(Debug, Deserialize)]
struct Published {
    wasm_digest: String,
    manifest_digest: String,
    layout: PathBuf,
    pushed: bool,
}

/// What `cargo xtask pull --json` prints.
#[derive(Debug, Deserialize)]
struct Pulled {
    manifest_digest: String,
    wasm_digest: String,
    wasm: PathBuf,
}

/// The artifact a test publishes, and the module it shipped.
struct Publication {
    published: Published,
    shipped: Vec<u8>,
}

/// Publishes add-header with the seed's parameters to `reference`, holding target/filters/
/// (publish rebuilds it) until the shipped module has been read. `while_locked` runs before the
/// lock is released, for checks on the layout publish wrote (the next publish replaces it).
fn publish(
    reference: &str,
    name: &str,
    while_locked: impl FnOnce(&Published) -> Result<()>,
) -> Result<Publication> {
    let _filters = lock_filters();
    let stdout = xtask(&[
        "publish",
        "add-header",
        "--registry",
        reference,
        "--parameters",
        r#"{"name":"hello","value":"hello details"}"#,
        "--name",
        name,
        "--json",
    ])?;
    let published: Published = serde_json::from_str(&stdout)
        .with_context(|| format!("parsing publish's JSON: {stdout}"))?;
    assert!(published.pushed, "publish must push: {published:?}");
    let shipped =
        std::fs::read(util::filter_wasm("add-header")).context("reading the shipped module")?;
    assert_eq!(
        published.wasm_digest,
        util::sha256_digest(&shipped),
        "target/filters/add-header.wasm changed after publish (another process rebuilt it?)"
    );
    while_locked(&published)?;
    Ok(Publication { published, shipped })
}

/// `skopeo <args>`, which must succeed; returns its stdout bytes.
pub fn skopeo(args: &[&str]) -> Result<Vec<u8>> {
    let skopeo = tool("skopeo")?;
    let output = Command::new(&skopeo)
        .args(args)
        .output()
        .with_context(|| format!("running skopeo {}", args.join(" ")))?;
    if !output.status.success() {
        bail!(
            "`skopeo {}` failed ({}):\n{}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(output.stdout)
}

/// Runs a Python `script` with oras-py's interpreter in `dir`; returns the last line of its
/// stdout (the script's result as JSON; oras-py may log above it).
pub fn oras_python(script: &str, args: &[&str], dir: &Path) -> Result<Value> {
    run_python(&[], script, args, dir)
}

/// [`oras_python`] with options for the interpreter itself.
fn run_python(interpreter_args: &[&str], script: &str, args: &[&str], dir: &Path) -> Result<Value> {
    let python = tool("oras-python")?;
    let preamble = "import json, sys\n\
        try:\n    import oras.client\n\
        except ImportError as error:\n    \
        sys.exit(f'oras-py is missing ({error}): run `cargo xtask setup`')\n";
    let output = Command::new(&python)
        .args(interpreter_args)
        .arg("-c")
        .arg(format!("{preamble}{script}"))
        .args(args)
        .current_dir(dir)
        .output()
        .with_context(|| format!("running {}", python.display()))?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprint!("{stderr}");
    if !output.status.success() {
        bail!("oras-py script failed ({}):\n{stderr}", output.status);
    }
    let stdout = String::from_utf8(output.stdout).context("oras-py printed non-UTF-8")?;
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).with_context(|| format!("parsing the oras-py result: {stdout}"))
}

/// A manifest as pretty JSON with the wasm layer's digest and size (which change with the
/// code) replaced by placeholders; everything else is stable and snapshotted as is.
fn manifest_snapshot(manifest: &Value, wasm_digest: &str) -> String {
    let mut manifest = manifest.clone();
    if let Some(layers) = manifest["layers"].as_array_mut() {
        for layer in layers
            .iter_mut()
            .filter(|layer| layer["digest"] == wasm_digest)
        {
            layer["digest"] = "<wasm digest>".into();
            layer["size"] = "<wasm size>".into();
        }
    }
    // Provenance that changes with the commit, the clone and SOURCE_DATE_EPOCH.
    if let Some(annotations) = manifest["annotations"].as_object_mut() {
        for key in ["revision", "source", "created"] {
            if let Some(value) = annotations.get_mut(&format!("org.opencontainers.image.{key}")) {
                *value = format!("<{key}>").into();
            }
        }
    }
    serde_json::to_string_pretty(&manifest).expect("a JSON value serializes") + "\n"
}

fn parse_json(bytes: &[u8], what: &str) -> Result<Value> {
    serde_json::from_slice(bytes)
        .with_context(|| format!("parsing {what} as JSON: {}", String::from_utf8_lossy(bytes)))
}

/// A blob of an OCI image layout, by digest.
fn layout_blob(layout: &Path, digest: &str) -> Result<Vec<u8>> {
    let hex = digest
        .strip_prefix("sha256:")
        .with_context(|| format!("digest {digest:?} is not sha256"))?;
    let path = layout.join("blobs/sha256").join(hex);
    std::fs::read(&path).with_context(|| format!("reading {}", path.display()))
}

#[test]
fn skopeo_reads_our_manifest_and_config() -> Result<()> {
    tool("skopeo")?;
    let registry = Registry::start()?;
    let reference = format!("{}/asm/interop:v0.1", registry.address);
    let docker_reference = format!("docker://{reference}");
    let Publication { published, .. } = publish(&reference, "interop-skopeo-inspect", |_| Ok(()))?;

    let manifest_bytes = skopeo(&["inspect", "--raw", "--tls-verify=false", &docker_reference])?;
    assert_eq!(
        util::sha256_digest(&manifest_bytes),
        published.manifest_digest,
        "skopeo must see the exact manifest bytes publish reported"
    );
    let manifest = parse_json(&manifest_bytes, "the manifest")?;
    expect![[r#"
        {
          "annotations": {
            "org.opencontainers.image.revision": "<revision>",
            "org.opencontainers.image.version": "v0.1"
          },
          "config": {
            "digest": "sha256:5134bf9d8f9e549cd6e1d39b424d36304df0b4cff9ef554a9bd50ccf0a3656fd",
            "mediaType": "application/vnd.module.wasm.config.v1+json",
            "size": 595
          },
          "layers": [
            {
              "annotations": {
                "org.opencontainers.image.title": "runtime-config.json"
              },
              "digest": "sha256:5134bf9d8f9e549cd6e1d39b424d36304df0b4cff9ef554a9bd50ccf0a3656fd",
              "mediaType": "application/vnd.module.wasm.config.v1+json",
              "size": 595
            },
            {
              "annotations": {
                "org.opencontainers.image.title": "add-header.wasm"
              },
              "digest": "<wasm digest>",
              "mediaType": "application/vnd.module.wasm.content.layer.v1+wasm",
              "size": "<wasm size>"
            }
          ],
          "mediaType": "application/vnd.oci.image.manifest.v1+json",
          "schemaVersion": 2
        }
    "#]]
    .assert_eq(&manifest_snapshot(&manifest, &published.wasm_digest));

    let config = skopeo(&[
        "inspect",
        "--config",
        "--raw",
        "--tls-verify=false",
        &docker_reference,
    ])?;
    assert_eq!(
        String::from_utf8_lossy(&config),
        published_runtime_config()?
    );
    Ok(())
}

#[test]
fn skopeo_copies_our_artifact_into_an_oci_layout() -> Result<()> {
    tool("skopeo")?;
    let registry = Registry::start()?;
    let dir = temp_dir()?;
    let reference = format!("{}/asm/interop:v0.1", registry.address);
    // publish's own layout (target/oci/add-header) is an OCI image layout skopeo reads too;
    // it is checked while target/filters/ is held, since the next publish rewrites it.
    let Publication { published, shipped } =
        publish(&reference, "interop-skopeo-copy", |published| {
            let ours = format!("oci:{}:v0.1", published.layout.display());
            let bytes = skopeo(&["inspect", "--raw", &ours])?;
            assert_eq!(util::sha256_digest(&bytes), published.manifest_digest);
            Ok(())
        })?;

    let layout = dir.path().join("layout");
    skopeo(&[
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{reference}"),
        &format!("oci:{}:v0.1", layout.display()),
    ])?;
    let index = parse_json(
        &std::fs::read(layout.join("index.json")).context("reading the copy's index.json")?,
        "the copy's index.json",
    )?;
    let manifests = index["manifests"].as_array().cloned().unwrap_or_default();
    let [descriptor] = manifests.as_slice() else {
        bail!("the copy's index.json should list one manifest: {index:#}");
    };
    assert_eq!(
        descriptor["annotations"]["org.opencontainers.image.ref.name"],
        "v0.1"
    );
    assert_eq!(
        descriptor["digest"], published.manifest_digest,
        "skopeo copy must keep our manifest bytes"
    );
    let manifest = parse_json(
        &layout_blob(&layout, &published.manifest_digest)?,
        "the copied manifest",
    )?;
    let wasm_layers: Vec<&Value> = manifest["layers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|layer| layer["mediaType"] == WASM_LAYER_MEDIA_TYPE)
        .collect();
    let [wasm_layer] = wasm_layers.as_slice() else {
        bail!("the copied manifest should have one wasm layer: {manifest:#}");
    };
    let digest = wasm_layer["digest"].as_str().unwrap_or_default();
    let copied = layout_blob(&layout, digest)?;
    assert!(
        copied == shipped,
        "the wasm blob skopeo copied differs from target/filters/add-header.wasm"
    );
    assert_eq!(
        String::from_utf8_lossy(&layout_blob(
            &layout,
            manifest["config"]["digest"].as_str().unwrap_or_default()
        )?),
        published_runtime_config()?
    );

    // And back: skopeo pushes the copy to another repository, keeping the manifest bytes, and
    // `xtask pull` reads it.
    let pushed_back = format!("{}/asm/skopeo:v0.1", registry.address);
    skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        &format!("oci:{}:v0.1", layout.display()),
        &format!("docker://{pushed_back}"),
    ])?;
    let pulled_dir = dir.path().join("pulled");
    let stdout = xtask(&[
        "pull",
        &pushed_back,
        &pulled_dir.display().to_string(),
        "--json",
    ])?;
    let pulled: Pulled =
        serde_json::from_str(&stdout).with_context(|| format!("parsing pull's JSON: {stdout}"))?;
    assert_eq!(pulled.manifest_digest, published.manifest_digest);
    assert_eq!(pulled.wasm_digest, published.wasm_digest);
    assert_eq!(pulled.wasm, pulled_dir.join("add-header.wasm"));
    Ok(())
}

pub const ORAS_PY_PULL: &str = "\
host, target, outdir = sys.argv[1:4]
client = oras.client.OrasClient(hostname=host, insecure=True)
files = client.pull(target=target, outdir=outdir)
print(json.dumps(files))
";

#[test]
fn oras_py_pulls_our_artifact() -> Result<()> {
    tool("oras-python")?;
    let registry = Registry::start()?;
    let dir = temp_dir()?;
    let reference = format!("{}/asm/interop:v0.1", registry.address);
    let Publication { published, shipped } =
        publish(&reference, "interop-oras-py-pull", |_| Ok(()))?;
    // By tag, as the seed's deployment names the image, and by manifest digest, as Istio's
    // WasmPlugin pins it.
    let by_digest = format!(
        "{}/asm/interop@{}",
        registry.address, published.manifest_digest
    );
    for (reference, outdir) in [(&reference, "by-tag"), (&by_digest, "by-digest")] {
        check_oras_py_pull(&registry, reference, &dir.path().join(outdir), &shipped)
            .with_context(|| format!("oras-py pulling {reference}"))?;
    }
    Ok(())
}

fn check_oras_py_pull(
    registry: &Registry,
    reference: &str,
    outdir: &Path,
    shipped: &[u8],
) -> Result<()> {
    let files = oras_python(
        ORAS_PY_PULL,
        &[&registry.address, reference, &outdir.display().to_string()],
        outdir.parent().context("the pull directory has a parent")?,
    )?;
    let names: Vec<String> = files
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|path| {
            Path::new(path)
                .strip_prefix(outdir)
                .map_or(path.to_string(), |name| name.display().to_string())
        })
        .collect();
    // oras-py names each file by its layer's org.opencontainers.image.title.
    expect![[r#"
        [
            "runtime-config.json",
            "add-header.wasm",
        ]
    "#]]
    .assert_debug_eq(&names);
    let pulled = std::fs::read(outdir.join("add-header.wasm")).context("reading oras-py's file")?;
    assert!(
        pulled.as_slice() == shipped,
        "oras-py's add-header.wasm differs from target/filters/add-header.wasm"
    );
    let config = std::fs::read_to_string(outdir.join("runtime-config.json"))
        .context("reading oras-py's runtime-config.json")?;
    assert_eq!(config, published_runtime_config()?);
    Ok(())
}

/// The module's name in the oras-py push, and the filter name of our own one-layer package
/// (written to target/oci/interop-seed-filter/, apart from the layouts publish writes).
const SEED_FILTER: &str = "interop-seed-filter";

/// The seed's `oras push --manifest-config runtime-config.json:<config type>
/// example-filter.wasm:<layer type>`, with oras-py's API (paths relative to the working
/// directory, as oras-py requires).
const ORAS_PY_PUSH: &str = "\
host, target, wasm, config, layer_type, config_type = sys.argv[1:7]
client = oras.client.OrasClient(hostname=host, insecure=True)
response = client.push(
    target=target,
    files=[f'{wasm}:{layer_type}'],
    manifest_config=f'{config}:{config_type}',
)
print(json.dumps({'status': response.status_code}))
";

#[test]
fn xtask_pulls_what_oras_py_pushed() -> Result<()> {
    tool("oras-python")?;
    let registry = Registry::start()?;
    let dir = temp_dir()?;
    let reference = format!("{}/asm/oras-py:v0.1", registry.address);
    // The seed pushes example-filter.wasm; this name also names our own package below.
    let wasm = dir.path().join(format!("{SEED_FILTER}.wasm"));
    std::fs::rename(built_filter("add-header", dir.path())?, &wasm)
        .context("renaming the module")?;
    let shipped = std::fs::read(&wasm).with_context(|| format!("reading {}", wasm.display()))?;
    std::fs::write(dir.path().join("runtime-config.json"), RUNTIME_CONFIG)
        .context("writing runtime-config.json")?;

    // oras-py silently uses an empty config when the config path does not exist, hence the
    // checks on the manifest below rather than trust in the push.
    let pushed = oras_python(
        ORAS_PY_PUSH,
        &[
            &registry.address,
            &reference,
            &format!("{SEED_FILTER}.wasm"),
            "runtime-config.json",
            WASM_LAYER_MEDIA_TYPE,
            CONFIG_MEDIA_TYPE,
        ],
        dir.path(),
    )?;
    assert_eq!(pushed["status"], 201, "{pushed}");

    let (manifest_digest, manifest) = registry.manifest("asm/oras-py", "v0.1")?;
    let wasm_digest = util::sha256_digest(&shipped);
    expect![[r#"
        {
          "annotations": {},
          "config": {
            "digest": "sha256:e40006df3a139571ea5e2310775946851b384f54294c2fe9362533ed5ba66da1",
            "mediaType": "application/vnd.module.wasm.config.v1+json",
            "size": 83
          },
          "layers": [
            {
              "annotations": {
                "org.opencontainers.image.title": "interop-seed-filter.wasm"
              },
              "digest": "<wasm digest>",
              "mediaType": "application/vnd.module.wasm.content.layer.v1+wasm",
              "size": "<wasm size>"
            }
          ],
          "mediaType": "application/vnd.oci.image.manifest.v1+json",
          "schemaVersion": 2
        }
    "#]]
    .assert_eq(&manifest_snapshot(&manifest, &wasm_digest));

    // `package --single-layer` makes the same manifest, up to serialization: oras-py adds an
    // empty manifest `annotations` and writes JSON with spaces, so only the digests differ.
    let stdout = xtask(&[
        "package",
        SEED_FILTER,
        "--wasm",
        &wasm.display().to_string(),
        "--single-layer",
        "--json",
    ])?;
    let packaged: Value = serde_json::from_str(&stdout)
        .with_context(|| format!("parsing package's JSON: {stdout}"))?;
    let layout = PathBuf::from(packaged["layout"].as_str().unwrap_or_default());
    let packaged_digest = packaged["manifest_digest"].as_str().unwrap_or_default();
    let mut ours = parse_json(&layout_blob(&layout, packaged_digest)?, "our manifest")?;
    // Ours also carries provenance annotations (version, revision, source, created).
    let annotations = ours
        .as_object_mut()
        .and_then(|object| object.remove("annotations"))
        .unwrap_or_default();
    assert_eq!(annotations["org.opencontainers.image.version"], "v0.1");
    let mut theirs = manifest.clone();
    if let Some(object) = theirs.as_object_mut()
        && object.get("annotations") == Some(&serde_json::json!({}))
    {
        object.remove("annotations");
    }
    assert_eq!(
        ours, theirs,
        "--single-layer should be what oras push makes"
    );
    assert_ne!(packaged_digest, manifest_digest);

    let pulled_dir = dir.path().join("pulled");
    let stdout = xtask(&[
        "pull",
        &reference,
        &pulled_dir.display().to_string(),
        "--json",
    ])?;
    let pulled: Pulled =
        serde_json::from_str(&stdout).with_context(|| format!("parsing pull's JSON: {stdout}"))?;
    assert_eq!(pulled.manifest_digest, manifest_digest);
    assert_eq!(pulled.wasm_digest, wasm_digest);
    assert_eq!(pulled.wasm, pulled_dir.join(format!("{SEED_FILTER}.wasm")));
    let pulled_bytes = std::fs::read(&pulled.wasm)
        .with_context(|| format!("reading {}", pulled.wasm.display()))?;
    assert!(
        pulled_bytes == shipped,
        "the module xtask pulled differs from the one oras-py pushed"
    );

    // Pinned by digest, pull checks the manifest bytes oras-py serialized against the digest.
    let by_digest = format!("{}/asm/oras-py@{manifest_digest}", registry.address);
    let stdout = xtask(&[
        "pull",
        &by_digest,
        &dir.path().join("by-digest").display().to_string(),
        "--json",
    ])?;
    let pulled: Pulled =
        serde_json::from_str(&stdout).with_context(|| format!("parsing pull's JSON: {stdout}"))?;
    assert_eq!(pulled.manifest_digest, manifest_digest);
    assert_eq!(pulled.wasm_digest, wasm_digest);
    Ok(())
}

/// oras-python exists but its venv lacks oras-py (here: `-S` hides the venv's site-packages).
#[test]
fn missing_oras_py_says_to_run_setup() -> Result<()> {
    let dir = temp_dir()?;
    let error = run_python(&["-S"], "print('{}')", &[], dir.path()).unwrap_err();
    let message = format!("{error:#}");
    expect![[r#"
        oras-py is missing (No module named 'oras'): run `cargo xtask setup`"#]]
    .assert_eq(message.lines().last().unwrap_or_default());
    Ok(())
}
