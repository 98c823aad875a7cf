//! Wasm OCI artifacts: `cargo xtask package` and `push` (`pull` is in `pull.rs`).
//!
//! `package` writes an OCI image layout (oci-layout, index.json, blobs/sha256/…) whose manifest
//! bytes we serialize ourselves from our own structs, so its digest depends only on the inputs.
//! `push` copies those exact bytes to a registry (blobs first, manifest last), so the local and
//! pushed digests cannot differ. `pull` fetches a manifest and its blobs and verifies every digest
//! and size before writing anything.
//!
//! The default layout is the two-layer variant Istio's image fetcher accepts (manifest config =
//! the runtime config, layer 0 = the same blob, layer 1 = the .wasm); `--single-layer` writes the
//! one-layer manifest the seed's `oras push --manifest-config` makes, which ASM's node cache reads.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{Context, Result, bail, ensure};
use oci_client::{Reference, RegistryOperation};
use serde::{Deserialize, Serialize};

pub use crate::transport::RegistryArgs;
use crate::transport::{Session, runtime};
use crate::util;

/// Wasm OCI artifact config (the runtime config JSON).
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.module.wasm.config.v1+json";
/// Wasm OCI artifact content layer (the .wasm itself).
pub const WASM_LAYER_MEDIA_TYPE: &str = "application/vnd.module.wasm.content.layer.v1+wasm";
/// The CNCF wasm-to-oci spelling, accepted when pulling.
const WASM_TO_OCI_LAYER_MEDIA_TYPE: &str = "application/vnd.wasm.content.layer.v1+wasm";
pub const OCI_MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST_MEDIA_TYPE: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST_MEDIA_TYPE: &str =
    "application/vnd.docker.distribution.manifest.list.v2+json";
/// Names a layer's file (oras and oras-py write pulled layers under this name).
pub const TITLE_ANNOTATION: &str = "org.opencontainers.image.title";
/// The tag of a manifest in an image layout's index.json.
pub const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";
/// The title of the runtime config when it is also a layer (two-layer variant).
pub const RUNTIME_CONFIG_TITLE: &str = "runtime-config.json";
/// The largest `plugin.wasm` read out of a compat layer.
const MAX_MODULE_SIZE: u64 = 256 * 1024 * 1024;
/// The default tag, the seed's.
pub const DEFAULT_TAG: &str = "v0.1";
/// The default root_id, the seed's.
pub const DEFAULT_ROOT_ID: &str = "my_root_id";

/// An OCI content descriptor.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Descriptor {
    fn of(media_type: &str, bytes: &[u8], title: Option<&str>) -> Descriptor {
        let mut annotations = BTreeMap::new();
        if let Some(title) = title {
            annotations.insert(TITLE_ANNOTATION.to_string(), title.to_string());
        }
        Descriptor {
            media_type: media_type.to_string(),
            digest: util::sha256_digest(bytes),
            size: bytes.len() as u64,
            annotations,
        }
    }

    pub fn title(&self) -> Option<&str> {
        self.annotations.get(TITLE_ANNOTATION).map(String::as_str)
    }

    pub fn is_wasm(&self) -> bool {
        self.media_type == WASM_LAYER_MEDIA_TYPE || self.media_type == WASM_TO_OCI_LAYER_MEDIA_TYPE
    }
}

/// An image manifest (OCI, or Docker schema 2 which has the same shape).
#[derive(Serialize, Deserialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Manifest {
    /// The layer holding the .wasm: the one Wasm-typed layer, or the one image layer of a
    /// compat image (a tar+gzip holding plugin.wasm).
    pub fn wasm_layer(&self) -> Result<&Descriptor> {
        let mut wasm = self.layers.iter().filter(|layer| layer.is_wasm());
        let mut image_layers = self
            .layers
            .iter()
            .filter(|layer| crate::image::is_image_layer(&layer.media_type));
        match (wasm.next(), wasm.next()) {
            (Some(layer), None) => Ok(layer),
            (None, _) if self.layers.len() == 1 && image_layers.next().is_some() => {
                Ok(&self.layers[0])
            }
            (None, _) => {
                let types: Vec<&str> = self
                    .layers
                    .iter()
                    .map(|layer| layer.media_type.as_str())
                    .collect();
                bail!(
                    "the manifest has no {WASM_LAYER_MEDIA_TYPE} layer (its layers: {})",
                    types.join(", ")
                )
            }
            (Some(_), Some(_)) => bail!(
                "the manifest has {} wasm layers: a Wasm artifact has exactly one",
                self.layers.iter().filter(|layer| layer.is_wasm()).count()
            ),
        }
    }
}

/// An image index: a layout's index.json, or a registry's multi-platform / multi-artifact index.
#[derive(Serialize, Deserialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub manifests: Vec<Descriptor>,
}

/// Wasm OCI runtime config: which proxy, ABI versions and root_ids the module is for.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RuntimeConfig<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    abi_versions: Vec<&'a str>,
    config: RootIds<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RootIds<'a> {
    root_ids: &'a [String],
    /// The filter's filters/<name>/config.schema.json, so a registry's image says what
    /// configuration it takes.
    #[serde(skip_serializing_if = "Option::is_none")]
    config_schema: Option<serde_json::Value>,
}

/// The shape of a packaged artifact.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Two layers: the runtime config, then the .wasm.
    Oci,
    /// One layer, the .wasm (the seed's oras push).
    Seed,
    /// Istio's compat image: an OCI image config and one tar+gzip layer holding plugin.wasm.
    Compat,
}

#[derive(clap::Args)]
pub struct PackageArgs {
    /// The filter (directory under filters/); packages target/filters/<FILTER>.wasm.
    pub filter: String,
    /// root_id(s) the runtime config lists (repeat for several).
    #[arg(long = "root-id", default_value = DEFAULT_ROOT_ID)]
    pub root_ids: Vec<String>,
    /// Tag recorded in index.json (org.opencontainers.image.ref.name).
    #[arg(long, default_value = DEFAULT_TAG)]
    pub tag: String,
    /// The layout: `oci` (two layers, Istio's Wasm OCI variant), `seed` (the one-layer manifest
    /// of the seed's `oras push --manifest-config`, which ASM's node cache reads) or `compat`
    /// (Istio's compat image: one tar+gzip layer holding plugin.wasm).
    #[arg(long, value_enum, default_value_t = Format::Oci)]
    pub format: Format,
    /// Same as `--format seed`.
    #[arg(long, conflicts_with = "format")]
    pub single_layer: bool,
    /// Package this .wasm instead of target/filters/<FILTER>.wasm.
    #[arg(long)]
    pub wasm: Option<PathBuf>,
    /// Print one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

/// A written image layout.
#[derive(Serialize, Debug)]
pub struct Packaged {
    /// Absolute path of the layout directory, target/oci/<filter>/.
    pub layout: PathBuf,
    /// The layout's reference, `target/oci/<filter>:<tag>` (relative to the workspace root when inside it).
    pub image: String,
    pub tag: String,
    pub manifest_digest: String,
    pub wasm_digest: String,
    pub wasm_size: u64,
    pub layers: usize,
}

pub fn package(args: PackageArgs) -> Result<()> {
    let wasm = args
        .wasm
        .clone()
        .unwrap_or_else(|| util::filter_wasm(&args.filter));
    let packaged = package_filter(
        &args.filter,
        &wasm,
        &args.root_ids,
        &args.tag,
        if args.single_layer {
            Format::Seed
        } else {
            args.format
        },
    )?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string(&packaged).context("serializing the result")?
        );
    } else {
        println!("layout\t{}", packaged.layout.display());
        println!("image\t{}", packaged.image);
        println!("manifest_digest\t{}", packaged.manifest_digest);
        println!("wasm_digest\t{}", packaged.wasm_digest);
    }
    Ok(())
}

/// The layout directory of a filter, target/oci/<filter>.
pub fn layout_dir(filter: &str) -> PathBuf {
    util::target_dir().join("oci").join(filter)
}

/// The reference naming a local layout, `<layout dir>:<tag>` (skopeo's `oci:` syntax).
pub fn layout_reference(layout: &Path, tag: &str) -> String {
    format!("{}:{tag}", util::relative(layout))
}

/// Packages a .wasm into target/oci/<filter>/, replacing any previous layout atomically.
pub fn package_filter(
    filter: &str,
    wasm: &Path,
    root_ids: &[String],
    tag: &str,
    format: Format,
) -> Result<Packaged> {
    ensure!(
        !filter.is_empty()
            && filter
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        "invalid filter name {filter:?}: use letters, digits, '-' and '_' (it names target/oci/<FILTER>)"
    );
    ensure!(!root_ids.is_empty(), "at least one --root-id is needed");
    ensure!(
        is_valid_tag(tag),
        "invalid tag {tag:?}: use letters, digits, '_', '.', '-' (up to 128, not starting with '.' or '-')"
    );
    let wasm_bytes = std::fs::read(wasm).with_context(|| {
        format!(
            "{} not found: run `cargo xtask build {filter}`",
            wasm.display()
        )
    })?;
    let annotations = crate::image::annotations(tag, None)?;
    let artifact = Artifact::new(filter, &wasm_bytes, root_ids, tag, format, annotations)
        .with_context(|| format!("packaging {}", wasm.display()))?;
    let Artifact {
        blobs: artifact_blobs,
        manifest,
        manifest_bytes,
        manifest_descriptor,
        index_bytes,
    } = artifact;

    let layout = layout_dir(filter);
    let parent = layout.parent().expect("target/oci/<filter> has a parent");
    std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    let temporary = parent.join(format!(".{filter}.tmp-{}", std::process::id()));
    if temporary.exists() {
        std::fs::remove_dir_all(&temporary)
            .with_context(|| format!("removing {}", temporary.display()))?;
    }
    let blobs = temporary.join("blobs").join("sha256");
    std::fs::create_dir_all(&blobs).with_context(|| format!("creating {}", blobs.display()))?;
    for bytes in artifact_blobs.iter().chain([&manifest_bytes]) {
        let digest = util::sha256_digest(bytes);
        let path = blobs.join(digest.trim_start_matches("sha256:"));
        std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
    }
    std::fs::write(
        temporary.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .context("writing oci-layout")?;
    std::fs::write(temporary.join("index.json"), &index_bytes).context("writing index.json")?;
    replace_dir(&temporary, &layout)?;

    eprintln!(
        "packaged {} as {} ({} layer{})",
        util::relative(wasm),
        util::relative(&layout),
        manifest.layers.len(),
        if manifest.layers.len() == 1 { "" } else { "s" }
    );
    Ok(Packaged {
        image: layout_reference(&layout, tag),
        layout,
        tag: tag.to_string(),
        manifest_digest: manifest_descriptor.digest,
        wasm_digest: util::sha256_digest(&wasm_bytes),
        wasm_size: wasm_bytes.len() as u64,
        layers: manifest.layers.len(),
    })
}

/// The blobs and JSON documents of a layout, computed from the inputs alone.
struct Artifact {
    /// The config and layer blobs.
    blobs: Vec<Vec<u8>>,
    manifest: Manifest,
    manifest_bytes: Vec<u8>,
    manifest_descriptor: Descriptor,
    index_bytes: Vec<u8>,
}

impl Artifact {
    fn new(
        filter: &str,
        wasm_bytes: &[u8],
        root_ids: &[String],
        tag: &str,
        format: Format,
        annotations: BTreeMap<String, String>,
    ) -> Result<Artifact> {
        let module =
            crate::build::validate(wasm_bytes).context("the module would not load in Envoy")?;
        let config = serde_json::to_vec(&RuntimeConfig {
            kind: "envoy_proxy",
            abi_versions: vec![module.abi.oci_name()],
            config: RootIds {
                root_ids,
                config_schema: crate::config_schema::load(filter)?,
            },
        })
        .context("serializing the runtime config")?;

        let wasm_title = format!("{filter}.wasm");
        let wasm_layer = Descriptor::of(WASM_LAYER_MEDIA_TYPE, wasm_bytes, Some(&wasm_title));
        let (config_descriptor, layers, blobs) = match format {
            Format::Oci => (
                Descriptor::of(CONFIG_MEDIA_TYPE, &config, None),
                vec![
                    Descriptor::of(CONFIG_MEDIA_TYPE, &config, Some(RUNTIME_CONFIG_TITLE)),
                    wasm_layer,
                ],
                vec![config, wasm_bytes.to_vec()],
            ),
            Format::Seed => (
                Descriptor::of(CONFIG_MEDIA_TYPE, &config, None),
                vec![wasm_layer],
                vec![config, wasm_bytes.to_vec()],
            ),
            Format::Compat => {
                let (layer, diff_id) = crate::image::compat_layer(wasm_bytes)?;
                let image_config = crate::image::compat_config(&diff_id)?;
                (
                    Descriptor::of(
                        crate::image::OCI_IMAGE_CONFIG_MEDIA_TYPE,
                        &image_config,
                        None,
                    ),
                    vec![Descriptor::of(
                        crate::image::OCI_LAYER_MEDIA_TYPE,
                        &layer,
                        None,
                    )],
                    vec![image_config, layer],
                )
            }
        };
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(OCI_MANIFEST_MEDIA_TYPE.to_string()),
            config: config_descriptor,
            layers,
            annotations,
        };
        let manifest_bytes = serde_json::to_vec(&manifest).context("serializing the manifest")?;
        let manifest_descriptor = Descriptor {
            annotations: BTreeMap::from([(REF_NAME_ANNOTATION.to_string(), tag.to_string())]),
            ..Descriptor::of(OCI_MANIFEST_MEDIA_TYPE, &manifest_bytes, None)
        };
        let index = Index {
            schema_version: 2,
            media_type: Some(OCI_INDEX_MEDIA_TYPE.to_string()),
            manifests: vec![manifest_descriptor.clone()],
        };
        let index_bytes = serde_json::to_vec(&index).context("serializing index.json")?;

        Ok(Artifact {
            blobs,
            manifest,
            manifest_bytes,
            manifest_descriptor,
            index_bytes,
        })
    }
}

/// Moves a finished directory into place: readers see the old directory or the new one,
/// never a half-written one (at worst, for an instant, none).
fn replace_dir(new: &Path, destination: &Path) -> Result<()> {
    if destination.exists() {
        let old = destination.with_file_name(format!(
            ".{}.old-{}",
            destination
                .file_name()
                .expect("has a name")
                .to_string_lossy(),
            std::process::id()
        ));
        std::fs::rename(destination, &old)
            .with_context(|| format!("moving {} aside", destination.display()))?;
        std::fs::rename(new, destination)
            .with_context(|| format!("renaming {} to {}", new.display(), destination.display()))?;
        std::fs::remove_dir_all(&old).with_context(|| format!("removing {}", old.display()))?;
    } else {
        std::fs::rename(new, destination)
            .with_context(|| format!("renaming {} to {}", new.display(), destination.display()))?;
    }
    Ok(())
}

/// OCI tag grammar: `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.
fn is_valid_tag(tag: &str) -> bool {
    let mut chars = tag.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric() || c == '_')
        && tag.len() <= 128
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// An image layout read back from disk, with every blob verified.
pub struct Layout {
    pub dir: PathBuf,
    pub manifest: Manifest,
    pub manifest_bytes: Vec<u8>,
    pub manifest_digest: String,
    pub manifest_media_type: String,
    /// The tag index.json gives the manifest, if any.
    pub tag: Option<String>,
}

impl Layout {
    /// Reads a layout with one manifest (or picks the one tagged `tag`), verifying digests.
    pub fn read(dir: &Path, tag: Option<&str>) -> Result<Layout> {
        let index_path = dir.join("index.json");
        let index_bytes = std::fs::read(&index_path).with_context(|| {
            format!(
                "{} is not an OCI image layout (no index.json): run `cargo xtask package`",
                dir.display()
            )
        })?;
        let index: Index = serde_json::from_slice(&index_bytes)
            .with_context(|| format!("parsing {}", index_path.display()))?;
        let tag_of =
            |descriptor: &Descriptor| descriptor.annotations.get(REF_NAME_ANNOTATION).cloned();
        let descriptor = match index.manifests.as_slice() {
            [] => bail!("{} lists no manifest", index_path.display()),
            [only] => only,
            several => {
                let tag = tag.with_context(|| {
                    format!(
                        "{} lists several manifests: name one by tag",
                        index_path.display()
                    )
                })?;
                several
                    .iter()
                    .find(|descriptor| tag_of(descriptor).as_deref() == Some(tag))
                    .with_context(|| {
                        format!("{} has no manifest tagged {tag:?}", index_path.display())
                    })?
            }
        };
        let manifest_bytes = read_blob(dir, descriptor)?;
        let manifest: Manifest = serde_json::from_slice(&manifest_bytes)
            .with_context(|| format!("parsing manifest {}", descriptor.digest))?;
        read_blob(dir, &manifest.config)?;
        for layer in &manifest.layers {
            read_blob(dir, layer)?;
        }
        Ok(Layout {
            dir: dir.to_path_buf(),
            manifest_media_type: manifest
                .media_type
                .clone()
                .unwrap_or_else(|| descriptor.media_type.clone()),
            manifest,
            manifest_bytes,
            manifest_digest: descriptor.digest.clone(),
            tag: tag_of(descriptor),
        })
    }

    /// A blob's bytes, verified.
    pub fn blob(&self, descriptor: &Descriptor) -> Result<Vec<u8>> {
        read_blob(&self.dir, descriptor)
    }

    /// The sha256 of the module itself (what ASM's node cache names it by): the wasm layer's
    /// digest, or, in a compat image, the digest of the `plugin.wasm` inside its tar+gzip layer.
    pub fn module_digest(&self) -> Result<String> {
        let layer = self.manifest.wasm_layer()?;
        if layer.is_wasm() {
            return Ok(layer.digest.clone());
        }
        let module = crate::image::find_plugin(&self.blob(layer)?, MAX_MODULE_SIZE)?
            .with_context(|| format!("layer {} holds no plugin.wasm", layer.digest))?;
        Ok(util::sha256_digest(&module))
    }
}

fn read_blob(dir: &Path, descriptor: &Descriptor) -> Result<Vec<u8>> {
    let hex = descriptor
        .digest
        .strip_prefix("sha256:")
        .filter(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        .with_context(|| format!("unsupported digest {:?} (only sha256)", descriptor.digest))?;
    let path = dir.join("blobs").join("sha256").join(hex);
    let bytes = std::fs::read(&path).with_context(|| format!("reading blob {}", path.display()))?;
    verify(&bytes, descriptor).with_context(|| format!("blob {}", path.display()))?;
    Ok(bytes)
}

pub fn verify(bytes: &[u8], descriptor: &Descriptor) -> Result<()> {
    ensure!(
        bytes.len() as u64 == descriptor.size,
        "size {} differs from the descriptor's {}",
        bytes.len(),
        descriptor.size
    );
    let digest = util::sha256_digest(bytes);
    ensure!(
        digest == descriptor.digest,
        "digest {digest} differs from the descriptor's {}",
        descriptor.digest
    );
    Ok(())
}

/// Parses an image reference, keeping what the user wrote as the registry.
pub fn parse_reference(reference: &str) -> Result<Reference> {
    ensure!(
        !reference.contains("://"),
        "reference {reference:?} has a scheme: write registry/repository:tag (e.g. 127.0.0.1:5000/asm/asm-test:v0.1)"
    );
    Reference::from_str(reference).with_context(|| {
        format!("invalid image reference {reference:?}: write registry/repository:tag")
    })
}

/// The tag the user wrote, if any (oci-client's `Reference` says `latest` when there is none).
pub fn explicit_tag(reference: &str) -> Option<&str> {
    let without_digest = reference.split('@').next().unwrap_or_default();
    let last_segment = without_digest.rsplit('/').next().unwrap_or_default();
    last_segment.split_once(':').map(|(_, tag)| tag)
}

/// A blob as a stream of 1 MiB chunks that advance `bar` as the upload takes them.
fn upload_chunks(
    bytes: &bytes::Bytes,
    bar: indicatif::ProgressBar,
) -> impl futures_util::Stream<Item = oci_client::errors::Result<bytes::Bytes>> + Send + 'static {
    const CHUNK: usize = 1024 * 1024;
    let chunks: Vec<bytes::Bytes> = (0..bytes.len())
        .step_by(CHUNK)
        .map(|start| bytes.slice(start..(start + CHUNK).min(bytes.len())))
        .collect();
    futures_util::stream::iter(chunks.into_iter().map(move |chunk| {
        bar.inc(chunk.len() as u64);
        Ok(chunk)
    }))
}

#[derive(clap::Args)]
pub struct PushArgs {
    /// An OCI image layout directory (e.g. target/oci/add-header).
    pub layout: PathBuf,
    /// Where to push: registry/repository:tag (e.g. 127.0.0.1:5000/asm/asm-test:v0.1).
    pub reference: String,
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// Print one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

/// What a push did.
#[derive(Serialize, Debug)]
pub struct Pushed {
    /// registry/repository:tag as given.
    pub image: String,
    pub manifest_digest: String,
    pub wasm_digest: String,
    /// Blobs uploaded (the others were already there).
    pub uploaded: usize,
    pub skipped: usize,
}

pub fn push(args: PushArgs) -> Result<()> {
    let layout = Layout::read(&args.layout, None)?;
    let pushed = push_layout(&layout, &args.reference, &args.registry)?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string(&pushed).context("serializing the result")?
        );
    } else {
        println!("image\t{}", pushed.image);
        println!("manifest_digest\t{}", pushed.manifest_digest);
        println!("wasm_digest\t{}", pushed.wasm_digest);
    }
    Ok(())
}

/// Pushes a verified layout's blobs and its exact manifest bytes, manifest last.
pub fn push_layout(layout: &Layout, reference: &str, registry: &RegistryArgs) -> Result<Pushed> {
    let parsed = parse_reference(reference)?;
    ensure!(
        parsed.digest().is_none(),
        "push to a tag, not a digest: {reference}"
    );
    let reference = match (explicit_tag(reference), &layout.tag) {
        (Some(_), _) => reference.to_string(),
        (None, Some(tag)) => format!("{reference}:{tag}"),
        (None, None) => {
            bail!("{reference} has no tag and the layout's index.json names none: add :<tag>")
        }
    };
    let reference = reference.as_str();
    let parsed = parse_reference(reference)?;
    let session = Session::new(&parsed, registry)?;
    let wasm_digest = layout.module_digest()?;
    let mut blobs: Vec<&Descriptor> = vec![&layout.manifest.config];
    for layer in &layout.manifest.layers {
        if !blobs.iter().any(|blob| blob.digest == layer.digest) {
            blobs.push(layer);
        }
    }
    let registry_name = session.registry.clone();
    let client = &session.client;
    runtime()?.block_on(async {
        // Prove the credentials first (oci-client takes basic credentials unchecked), so a
        // wrong password fails before any upload.
        session
            .check_access(&parsed, RegistryOperation::Push)
            .await
            .with_context(|| format!("pushing to {reference}"))?;
        let (mut uploaded, mut skipped) = (0, 0);
        // Blobs the registry has are skipped, so a re-run after a failure resumes; the manifest
        // goes last, so a reference never names missing blobs.
        for blob in &blobs {
            let what = format!("checking blob {} in {reference}", blob.digest);
            let exists = session
                .retry(&what, || client.blob_exists(&parsed, &blob.digest))
                .await?;
            if exists {
                eprintln!(
                    "blob {} ({} bytes) already in {registry_name}",
                    blob.digest, blob.size
                );
                skipped += 1;
                continue;
            }
            let bytes = bytes::Bytes::from(layout.blob(blob)?);
            eprintln!("pushing blob {} ({} bytes)", blob.digest, blob.size);
            let what = format!("pushing blob {} to {reference}", blob.digest);
            let bar = crate::transport::progress(format!("pushing {}", blob.digest), blob.size);
            match &bar {
                // The blob goes as a stream of chunks, one PATCH each, so the bar moves as
                // they are sent.
                Some(bar) => {
                    session
                        .retry(&what, || {
                            bar.set_position(0);
                            let chunks = upload_chunks(&bytes, bar.clone());
                            client.push_blob_stream(&parsed, chunks, &blob.digest, Some(blob.size))
                        })
                        .await?;
                    bar.finish_and_clear();
                }
                // push_blob falls back to a monolithic upload for registries without chunks.
                None => {
                    session
                        .retry(&what, || {
                            client.push_blob(&parsed, bytes.clone(), &blob.digest)
                        })
                        .await?;
                }
            }
            uploaded += 1;
        }
        let content_type = http::HeaderValue::from_str(&layout.manifest_media_type)
            .with_context(|| format!("manifest media type {:?}", layout.manifest_media_type))?;
        eprintln!("pushing manifest {} to {reference}", layout.manifest_digest);
        let manifest_bytes = bytes::Bytes::from(layout.manifest_bytes.clone());
        let what = format!("pushing the manifest to {reference}");
        session
            .retry(&what, || {
                client.push_manifest_raw(&parsed, manifest_bytes.clone(), content_type.clone())
            })
            .await?;
        Ok(Pushed {
            image: reference.to_string(),
            manifest_digest: layout.manifest_digest.clone(),
            wasm_digest,
            uploaded,
            skipped,
        })
    })
}

#[cfg(test)]
mod tests {
    use expect_test::{Expect, expect};

    fn check_artifact(format: super::Format, expect: Expect) {
        let wasm = wat::parse_str(
            r#"(module
                (func (export "proxy_abi_version_0_2_1"))
                (func (export "malloc") (param i32) (result i32) i32.const 0))"#,
        )
        .expect("valid WAT");
        let root_ids = ["my_root_id".to_string()];
        let annotations = [("org.opencontainers.image.version", "v0.1")]
            .into_iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect();
        let artifact =
            super::Artifact::new("add-header", &wasm, &root_ids, "v0.1", format, annotations)
                .expect("packages");
        let actual = format!(
            "config: {}\nmanifest {}:\n{}\nindex: {}\n",
            String::from_utf8_lossy(&artifact.blobs[0]),
            artifact.manifest_descriptor.digest,
            serde_json::to_string_pretty(&artifact.manifest).expect("serializes"),
            String::from_utf8_lossy(&artifact.index_bytes),
        );
        expect.assert_eq(&actual);
    }

    #[test]
    fn two_layer_artifact_is_deterministic() {
        check_artifact(
            super::Format::Oci,
            expect![[r#"
                config: {"type":"envoy_proxy","abiVersions":["v0.2.1"],"config":{"rootIds":["my_root_id"],"configSchema":{"$schema":"https://json-schema.org/draft/2020-12/schema","additionalProperties":false,"description":"The plugin configuration: one header to add to every response besides the demo one.","properties":{"name":{"description":"Header name: an RFC 9110 token, sent lowercased.","pattern":"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$","type":"string"},"value":{"description":"Header value: no control characters except horizontal tab.","type":"string"}},"required":["name","value"],"title":"Config","type":"object"}}}
                manifest sha256:b5d73fcd7633440423889d9ade62f7af6db615c64916dcc70bf01fb8dfaad27e:
                {
                  "schemaVersion": 2,
                  "mediaType": "application/vnd.oci.image.manifest.v1+json",
                  "config": {
                    "mediaType": "application/vnd.module.wasm.config.v1+json",
                    "digest": "sha256:5134bf9d8f9e549cd6e1d39b424d36304df0b4cff9ef554a9bd50ccf0a3656fd",
                    "size": 595
                  },
                  "layers": [
                    {
                      "mediaType": "application/vnd.module.wasm.config.v1+json",
                      "digest": "sha256:5134bf9d8f9e549cd6e1d39b424d36304df0b4cff9ef554a9bd50ccf0a3656fd",
                      "size": 595,
                      "annotations": {
                        "org.opencontainers.image.title": "runtime-config.json"
                      }
                    },
                    {
                      "mediaType": "application/vnd.module.wasm.content.layer.v1+wasm",
                      "digest": "sha256:55d8281b82accbb6fe606121d82b7cecb19fd351780e3028d10d4090866af4f4",
                      "size": 73,
                      "annotations": {
                        "org.opencontainers.image.title": "add-header.wasm"
                      }
                    }
                  ],
                  "annotations": {
                    "org.opencontainers.image.version": "v0.1"
                  }
                }
                index: {"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:b5d73fcd7633440423889d9ade62f7af6db615c64916dcc70bf01fb8dfaad27e","size":757,"annotations":{"org.opencontainers.image.ref.name":"v0.1"}}]}
            "#]],
        );
    }

    #[test]
    fn compat_artifact_is_one_tar_gzip_layer() {
        check_artifact(
            super::Format::Compat,
            expect![[r#"
            config: {"architecture":"wasm","os":"wasip1","rootfs":{"diff_ids":["sha256:e3dbc3a7359ab4bba37a8bf7e999071ea7dcb2d664077fbd71266e77363c0d5d"],"type":"layers"}}
            manifest sha256:09b5356ffa6f5efa53169412a37208e9e1d82133b6969924821857541168bcd8:
            {
              "schemaVersion": 2,
              "mediaType": "application/vnd.oci.image.manifest.v1+json",
              "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": "sha256:cc9d558fb3cc6f6dfb384714e2c7bbbc92e1cbf9526ab1e26b304c036dea3f49",
                "size": 151
              },
              "layers": [
                {
                  "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                  "digest": "sha256:c99d70366d6dc42c151fa08bb56d169f7cf7f8ea1513e628b643679b9375e88c",
                  "size": 155
                }
              ],
              "annotations": {
                "org.opencontainers.image.version": "v0.1"
              }
            }
            index: {"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:09b5356ffa6f5efa53169412a37208e9e1d82133b6969924821857541168bcd8","size":459,"annotations":{"org.opencontainers.image.ref.name":"v0.1"}}]}
        "#]],
        );
    }

    #[test]
    fn single_layer_artifact_is_the_seeds_layout() {
        check_artifact(
            super::Format::Seed,
            expect![[r#"
                config: {"type":"envoy_proxy","abiVersions":["v0.2.1"],"config":{"rootIds":["my_root_id"],"configSchema":{"$schema":"https://json-schema.org/draft/2020-12/schema","additionalProperties":false,"description":"The plugin configuration: one header to add to every response besides the demo one.","properties":{"name":{"description":"Header name: an RFC 9110 token, sent lowercased.","pattern":"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$","type":"string"},"value":{"description":"Header value: no control characters except horizontal tab.","type":"string"}},"required":["name","value"],"title":"Config","type":"object"}}}
                manifest sha256:01635f93335ff2e86acac3740abe7608d75efbaab184cb559b00016dbeebd65a:
                {
                  "schemaVersion": 2,
                  "mediaType": "application/vnd.oci.image.manifest.v1+json",
                  "config": {
                    "mediaType": "application/vnd.module.wasm.config.v1+json",
                    "digest": "sha256:5134bf9d8f9e549cd6e1d39b424d36304df0b4cff9ef554a9bd50ccf0a3656fd",
                    "size": 595
                  },
                  "layers": [
                    {
                      "mediaType": "application/vnd.module.wasm.content.layer.v1+wasm",
                      "digest": "sha256:55d8281b82accbb6fe606121d82b7cecb19fd351780e3028d10d4090866af4f4",
                      "size": 73,
                      "annotations": {
                        "org.opencontainers.image.title": "add-header.wasm"
                      }
                    }
                  ],
                  "annotations": {
                    "org.opencontainers.image.version": "v0.1"
                  }
                }
                index: {"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:01635f93335ff2e86acac3740abe7608d75efbaab184cb559b00016dbeebd65a","size":533,"annotations":{"org.opencontainers.image.ref.name":"v0.1"}}]}
            "#]],
        );
    }

    #[test]
    fn loopback_registries_are_recognised() {
        let actual: Vec<(&str, bool)> = [
            "127.0.0.1:5000",
            "localhost:5000",
            "[::1]:5000",
            "localhost",
            "registry.example.com",
            "10.0.0.1:5000",
        ]
        .into_iter()
        .map(|registry| (registry, crate::transport::is_loopback(registry)))
        .collect();
        expect_test::expect![[r#"
            [
                (
                    "127.0.0.1:5000",
                    true,
                ),
                (
                    "localhost:5000",
                    true,
                ),
                (
                    "[::1]:5000",
                    true,
                ),
                (
                    "localhost",
                    true,
                ),
                (
                    "registry.example.com",
                    false,
                ),
                (
                    "10.0.0.1:5000",
                    false,
                ),
            ]
        "#]]
        .assert_debug_eq(&actual);
    }

    #[test]
    fn finds_explicit_tags() {
        let actual: Vec<(&str, Option<&str>)> = [
            "127.0.0.1:5000/asm/asm-test:v0.1",
            "127.0.0.1:5000/asm/asm-test",
            "127.0.0.1:5000/asm/asm-test@sha256:abc",
            "127.0.0.1:5000/asm/asm-test:v1@sha256:abc",
            "asm-test:latest",
        ]
        .into_iter()
        .map(|reference| (reference, super::explicit_tag(reference)))
        .collect();
        expect_test::expect![[r#"
            [
                (
                    "127.0.0.1:5000/asm/asm-test:v0.1",
                    Some(
                        "v0.1",
                    ),
                ),
                (
                    "127.0.0.1:5000/asm/asm-test",
                    None,
                ),
                (
                    "127.0.0.1:5000/asm/asm-test@sha256:abc",
                    None,
                ),
                (
                    "127.0.0.1:5000/asm/asm-test:v1@sha256:abc",
                    Some(
                        "v1",
                    ),
                ),
                (
                    "asm-test:latest",
                    Some(
                        "latest",
                    ),
                ),
            ]
        "#]]
        .assert_debug_eq(&actual);
    }
}
