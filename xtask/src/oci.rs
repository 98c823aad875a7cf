//! Wasm OCI artifacts: `cargo xtask package`, `push` and `pull`.
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
use std::io::Read;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{Context, Result, bail, ensure};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};
use serde::{Deserialize, Serialize};

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
const DOCKER_MANIFEST_LIST_MEDIA_TYPE: &str =
    "application/vnd.docker.distribution.manifest.list.v2+json";
/// Names a layer's file (oras and oras-py write pulled layers under this name).
pub const TITLE_ANNOTATION: &str = "org.opencontainers.image.title";
/// The tag of a manifest in an image layout's index.json.
pub const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";
/// The title of the runtime config when it is also a layer (two-layer variant).
pub const RUNTIME_CONFIG_TITLE: &str = "runtime-config.json";
/// The default tag, the seed's.
pub const DEFAULT_TAG: &str = "v0.1";
/// The default root_id, the seed's.
pub const DEFAULT_ROOT_ID: &str = "my_root_id";
/// Largest blob `pull` accepts: a filter is kilobytes, anything near this is not a filter.
const MAX_BLOB_SIZE: u64 = 256 * 1024 * 1024;

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

    fn title(&self) -> Option<&str> {
        self.annotations.get(TITLE_ANNOTATION).map(String::as_str)
    }

    fn is_wasm(&self) -> bool {
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
}

impl Manifest {
    /// The layer holding the .wasm.
    pub fn wasm_layer(&self) -> Result<&Descriptor> {
        let mut wasm = self.layers.iter().filter(|layer| layer.is_wasm());
        match (wasm.next(), wasm.next()) {
            (Some(layer), None) => Ok(layer),
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
            (Some(_), Some(_)) => bail!("the manifest has more than one wasm layer"),
        }
    }
}

/// An image layout's index.json.
#[derive(Serialize, Deserialize, Debug)]
#[serde(rename_all = "camelCase")]
struct Index {
    schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    media_type: Option<String>,
    manifests: Vec<Descriptor>,
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
    /// Write the seed's one-layer manifest (oras push --manifest-config) instead of the two-layer one.
    #[arg(long)]
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
        args.single_layer,
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
    single_layer: bool,
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
    let artifact = Artifact::new(filter, &wasm_bytes, root_ids, tag, single_layer)
        .with_context(|| format!("packaging {}", wasm.display()))?;
    let Artifact {
        config,
        manifest,
        manifest_bytes,
        manifest_descriptor,
        index_bytes,
        wasm_layer,
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
    for bytes in [&config, &wasm_bytes, &manifest_bytes] {
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
        wasm_digest: wasm_layer.digest,
        wasm_size: wasm_layer.size,
        layers: manifest.layers.len(),
    })
}

/// The blobs and JSON documents of a layout, computed from the inputs alone.
struct Artifact {
    config: Vec<u8>,
    manifest: Manifest,
    manifest_bytes: Vec<u8>,
    manifest_descriptor: Descriptor,
    index_bytes: Vec<u8>,
    wasm_layer: Descriptor,
}

impl Artifact {
    fn new(
        filter: &str,
        wasm_bytes: &[u8],
        root_ids: &[String],
        tag: &str,
        single_layer: bool,
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
        let mut layers = Vec::new();
        if !single_layer {
            layers.push(Descriptor::of(
                CONFIG_MEDIA_TYPE,
                &config,
                Some(RUNTIME_CONFIG_TITLE),
            ));
        }
        layers.push(wasm_layer.clone());
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(OCI_MANIFEST_MEDIA_TYPE.to_string()),
            config: Descriptor::of(CONFIG_MEDIA_TYPE, &config, None),
            layers,
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
            config,
            manifest,
            manifest_bytes,
            manifest_descriptor,
            index_bytes,
            wasm_layer,
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

fn verify(bytes: &[u8], descriptor: &Descriptor) -> Result<()> {
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

/// How to reach a registry: protocol and credentials.
#[derive(clap::Args, Clone, Default)]
pub struct RegistryArgs {
    /// Use plain HTTP (automatic for 127.0.0.1, localhost and [::1] unless --ca-cert is given).
    #[arg(long)]
    pub plain_http: bool,
    /// Registry user name for basic auth (the password is read from stdin, see --password-stdin).
    #[arg(long, requires = "password_stdin")]
    pub username: Option<String>,
    /// Read the registry password from stdin (one line).
    #[arg(long, requires = "username")]
    pub password_stdin: bool,
    /// Also trust this PEM certificate (e.g. a test registry's self-signed one).
    #[arg(long)]
    pub ca_cert: Option<PathBuf>,
}

impl RegistryArgs {
    fn auth(&self) -> Result<RegistryAuth> {
        match &self.username {
            None => Ok(RegistryAuth::Anonymous),
            Some(username) => {
                let mut password = String::new();
                std::io::stdin()
                    .read_to_string(&mut password)
                    .context("reading the password from stdin")?;
                let password = password.trim_end_matches(['\r', '\n']).to_string();
                ensure!(
                    !password.is_empty(),
                    "--password-stdin read an empty password"
                );
                Ok(RegistryAuth::Basic(username.clone(), password))
            }
        }
    }
}

/// A client for the reference's registry: plain HTTP for loopback registries or when asked.
fn client(reference: &Reference, args: &RegistryArgs) -> Result<Client> {
    use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
    let protocol =
        if args.plain_http || (is_loopback(reference.registry()) && args.ca_cert.is_none()) {
            ClientProtocol::Http
        } else {
            ClientProtocol::Https
        };
    let mut extra_root_certificates = Vec::new();
    if let Some(path) = &args.ca_cert {
        let data =
            std::fs::read(path).with_context(|| format!("reading --ca-cert {}", path.display()))?;
        extra_root_certificates.push(Certificate {
            encoding: CertificateEncoding::Pem,
            data,
        });
    }
    Ok(Client::new(ClientConfig {
        protocol,
        extra_root_certificates,
        ..Default::default()
    }))
}

fn is_loopback(registry: &str) -> bool {
    let host = match registry.strip_prefix('[') {
        Some(bracketed) => bracketed.split(']').next().unwrap_or_default(),
        None => registry.split(':').next().unwrap_or_default(),
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
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

/// Adds what to do about the usual registry failures to an oci-client error.
fn explain(error: oci_client::errors::OciDistributionError, registry: &str) -> anyhow::Error {
    let text = error.to_string();
    let hint = if text.contains("401") || text.contains("Unauthorized") {
        format!(
            "{registry} refused the credentials: pass --username and --password-stdin for an account it knows"
        )
    } else if text.contains("403") || text.contains("Forbidden") {
        format!("{registry} denied access to this repository")
    } else if text.contains("400 Bad Request") && text.contains("http://") {
        format!(
            "{registry} answered 400 to plain HTTP, so it probably serves HTTPS: pass --ca-cert <PEM> (loopback registries default to HTTP)"
        )
    } else if text.contains("certificate") {
        format!(
            "{registry}'s TLS certificate is not trusted: pass --ca-cert <PEM>, or --plain-http if it serves HTTP"
        )
    } else if text.contains("Connect") || text.contains("error sending request") {
        format!(
            "cannot reach {registry}: is it running, and is the protocol right (HTTPS unless --plain-http or loopback)?"
        )
    } else if text.contains("MANIFEST_UNKNOWN")
        || text.contains("manifest unknown")
        || text.contains("NAME_UNKNOWN")
    {
        "no such repository, tag or digest in the registry".to_string()
    } else {
        return anyhow::Error::new(error);
    };
    anyhow::Error::new(error).context(hint)
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
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
    let auth = registry.auth()?;
    let client = client(&parsed, registry)?;
    let wasm_digest = layout.manifest.wasm_layer()?.digest.clone();
    let mut blobs: Vec<&Descriptor> = vec![&layout.manifest.config];
    for layer in &layout.manifest.layers {
        if !blobs.iter().any(|blob| blob.digest == layer.digest) {
            blobs.push(layer);
        }
    }
    let registry_name = parsed.registry().to_string();
    runtime()?.block_on(async {
        // Authenticate first: oci-client swallows token errors, which would surface later as a 401.
        client
            .auth(&parsed, &auth, RegistryOperation::Push)
            .await
            .map_err(|error| explain(error, &registry_name))
            .with_context(|| format!("authenticating to {registry_name} for push"))?;
        let (mut uploaded, mut skipped) = (0, 0);
        for blob in &blobs {
            let exists = client
                .blob_exists(&parsed, &blob.digest)
                .await
                .map_err(|error| explain(error, &registry_name))
                .with_context(|| format!("checking blob {} in {reference}", blob.digest))?;
            if exists {
                eprintln!(
                    "blob {} ({} bytes) already in {registry_name}",
                    blob.digest, blob.size
                );
                skipped += 1;
                continue;
            }
            let bytes = layout.blob(blob)?;
            eprintln!("pushing blob {} ({} bytes)", blob.digest, blob.size);
            client
                .push_blob(&parsed, bytes, &blob.digest)
                .await
                .map_err(|error| explain(error, &registry_name))
                .with_context(|| format!("pushing blob {} to {reference}", blob.digest))?;
            uploaded += 1;
        }
        let content_type = http::HeaderValue::from_str(&layout.manifest_media_type)
            .with_context(|| format!("manifest media type {:?}", layout.manifest_media_type))?;
        eprintln!("pushing manifest {} to {reference}", layout.manifest_digest);
        client
            .push_manifest_raw(&parsed, layout.manifest_bytes.clone(), content_type)
            .await
            .with_context(|| format!("pushing the manifest to {reference}"))?;
        Ok(Pushed {
            image: reference.to_string(),
            manifest_digest: layout.manifest_digest.clone(),
            wasm_digest,
            uploaded,
            skipped,
        })
    })
}

#[derive(clap::Args)]
pub struct PullArgs {
    /// registry/repository:tag or registry/repository@sha256:… to fetch.
    pub reference: String,
    /// Directory to write the layers into, each named by its org.opencontainers.image.title.
    pub dir: PathBuf,
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// Print one JSON object on stdout: {"manifest_digest","wasm_digest","wasm"}.
    #[arg(long)]
    pub json: bool,
}

/// What a pull wrote.
#[derive(Serialize, Debug)]
pub struct Pulled {
    pub manifest_digest: String,
    pub wasm_digest: String,
    /// Absolute path of the pulled .wasm.
    pub wasm: PathBuf,
    /// Every file written, absolute.
    pub files: Vec<PathBuf>,
}

pub fn pull(args: PullArgs) -> Result<()> {
    let pulled = pull_to_dir(&args.reference, &args.dir, &args.registry)?;
    if args.json {
        let json = serde_json::json!({
            "manifest_digest": pulled.manifest_digest,
            "wasm_digest": pulled.wasm_digest,
            "wasm": pulled.wasm,
            "files": pulled.files,
        });
        println!("{json}");
    } else {
        println!("manifest_digest\t{}", pulled.manifest_digest);
        println!("wasm_digest\t{}", pulled.wasm_digest);
        println!("wasm\t{}", pulled.wasm.display());
    }
    Ok(())
}

/// Fetches an artifact, verifies the manifest digest (against the reference's, when it has one)
/// and every blob's digest and size, then writes the layers into `dir`.
pub fn pull_to_dir(reference: &str, dir: &Path, registry: &RegistryArgs) -> Result<Pulled> {
    let parsed = parse_reference(reference)?;
    let auth = registry.auth()?;
    let client = client(&parsed, registry)?;
    let registry_name = parsed.registry().to_string();
    let (manifest_digest, manifest, blobs) = runtime()?.block_on(async {
        let accepted = [OCI_MANIFEST_MEDIA_TYPE, DOCKER_MANIFEST_MEDIA_TYPE];
        let (bytes, _) = client
            .pull_manifest_raw(&parsed, &auth, &accepted)
            .await
            .map_err(|error| explain(error, &registry_name))
            .with_context(|| format!("fetching the manifest of {reference}"))?;
        let digest = util::sha256_digest(&bytes);
        if let Some(wanted) = parsed.digest() {
            ensure!(
                digest == wanted,
                "the registry sent a manifest with digest {digest} for {reference}"
            );
        }
        let manifest =
            parse_manifest(&bytes).with_context(|| format!("the manifest of {reference}"))?;
        let mut blobs: Vec<(Descriptor, Vec<u8>)> = Vec::new();
        for descriptor in std::iter::once(&manifest.config).chain(&manifest.layers) {
            if blobs
                .iter()
                .any(|(seen, _)| seen.digest == descriptor.digest)
            {
                continue;
            }
            let bytes = fetch_blob(&client, &parsed, descriptor)
                .await
                .with_context(|| format!("fetching blob {} of {reference}", descriptor.digest))?;
            blobs.push((descriptor.clone(), bytes));
        }
        Ok::<_, anyhow::Error>((digest, manifest, blobs))
    })?;

    let wasm_layer = manifest.wasm_layer()?;
    let mut files: Vec<(String, &[u8])> = Vec::new();
    for layer in &manifest.layers {
        let name = match layer.title() {
            Some(title) => safe_file_name(title)?,
            None => layer.digest.replace(':', "-"),
        };
        if files.iter().any(|(seen, _)| *seen == name) {
            bail!("two layers of {reference} have the title {name:?}");
        }
        let bytes = blobs
            .iter()
            .find(|(descriptor, _)| descriptor.digest == layer.digest)
            .map(|(_, bytes)| bytes.as_slice())
            .expect("fetched above");
        files.push((name, bytes));
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let dir = std::path::absolute(dir).with_context(|| format!("resolving {}", dir.display()))?;
    let mut written = Vec::new();
    let mut wasm = None;
    for ((name, bytes), layer) in files.iter().zip(&manifest.layers) {
        let path = dir.join(name);
        util::write_atomic(&path, bytes)?;
        eprintln!("wrote {} ({} bytes)", path.display(), bytes.len());
        if layer.digest == wasm_layer.digest && wasm.is_none() {
            wasm = Some(path.clone());
        }
        written.push(path);
    }
    Ok(Pulled {
        manifest_digest,
        wasm_digest: wasm_layer.digest.clone(),
        wasm: wasm.expect("the wasm layer is a layer"),
        files: written,
    })
}

fn parse_manifest(bytes: &[u8]) -> Result<Manifest> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Versioned {
        media_type: Option<String>,
    }
    let versioned: Versioned = serde_json::from_slice(bytes).context("not JSON")?;
    match versioned.media_type.as_deref() {
        None | Some(OCI_MANIFEST_MEDIA_TYPE) | Some(DOCKER_MANIFEST_MEDIA_TYPE) => {}
        Some(OCI_INDEX_MEDIA_TYPE) | Some(DOCKER_MANIFEST_LIST_MEDIA_TYPE) => {
            bail!(
                "it is an image index, not a Wasm artifact manifest: pull a manifest by its digest"
            )
        }
        Some(other) => bail!("unsupported manifest media type {other:?}"),
    }
    let manifest: Manifest = serde_json::from_slice(bytes).context("not an image manifest")?;
    ensure!(
        manifest.schema_version == 2,
        "schemaVersion {} is not 2",
        manifest.schema_version
    );
    Ok(manifest)
}

async fn fetch_blob(
    client: &Client,
    reference: &Reference,
    descriptor: &Descriptor,
) -> Result<Vec<u8>> {
    use futures_util::TryStreamExt;
    ensure!(
        descriptor.size <= MAX_BLOB_SIZE,
        "blob of {} bytes is larger than {MAX_BLOB_SIZE}",
        descriptor.size
    );
    let digest = descriptor.digest.as_str();
    let mut stream = client.pull_blob_stream(reference, &digest).await?;
    let mut bytes = Vec::with_capacity(descriptor.size as usize);
    while let Some(chunk) = stream.try_next().await? {
        ensure!(
            bytes.len() as u64 + chunk.len() as u64 <= descriptor.size,
            "the registry sent more than the descriptor's {} bytes",
            descriptor.size
        );
        bytes.extend_from_slice(&chunk);
    }
    verify(&bytes, descriptor)?;
    Ok(bytes)
}

/// A layer title as a plain file name: no directories, no `..`, nothing hidden.
fn safe_file_name(title: &str) -> Result<String> {
    let ok = !title.is_empty()
        && !title.starts_with('.')
        && !title.contains(['/', '\\', '\0'])
        && title.len() <= 255;
    ensure!(ok, "layer title {title:?} is not a plain file name");
    Ok(title.to_string())
}

#[cfg(test)]
mod tests {
    use expect_test::{Expect, expect};

    fn check_artifact(single_layer: bool, expect: Expect) {
        let wasm = wat::parse_str(
            r#"(module
                (func (export "proxy_abi_version_0_2_1"))
                (func (export "malloc") (param i32) (result i32) i32.const 0))"#,
        )
        .expect("valid WAT");
        let root_ids = ["my_root_id".to_string()];
        let artifact = super::Artifact::new("add-header", &wasm, &root_ids, "v0.1", single_layer)
            .expect("packages");
        let actual = format!(
            "config: {}\nmanifest {}:\n{}\nindex: {}\n",
            String::from_utf8_lossy(&artifact.config),
            artifact.manifest_descriptor.digest,
            serde_json::to_string_pretty(&artifact.manifest).expect("serializes"),
            String::from_utf8_lossy(&artifact.index_bytes),
        );
        expect.assert_eq(&actual);
    }

    #[test]
    fn two_layer_artifact_is_deterministic() {
        check_artifact(
            false,
            expect![[r#"
            config: {"type":"envoy_proxy","abiVersions":["v0.2.1"],"config":{"rootIds":["my_root_id"],"configSchema":{"$schema":"https://json-schema.org/draft/2020-12/schema","additionalProperties":false,"description":"The plugin configuration: one header to add to every response besides the demo one.","properties":{"name":{"description":"Header name: an RFC 9110 token, sent lowercased.","pattern":"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$","type":"string"},"value":{"description":"Header value: no control characters except horizontal tab.","type":"string"}},"required":["name","value"],"title":"Config","type":"object"}}}
            manifest sha256:295c303f29baf1608512824ae4f7c78a3ee13d76396f63a0eb521b1a1ae9c3e9:
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
              ]
            }
            index: {"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:295c303f29baf1608512824ae4f7c78a3ee13d76396f63a0eb521b1a1ae9c3e9","size":699,"annotations":{"org.opencontainers.image.ref.name":"v0.1"}}]}
            "#]],
        );
    }

    #[test]
    fn single_layer_artifact_is_the_seeds_layout() {
        check_artifact(
            true,
            expect![[r#"
            config: {"type":"envoy_proxy","abiVersions":["v0.2.1"],"config":{"rootIds":["my_root_id"],"configSchema":{"$schema":"https://json-schema.org/draft/2020-12/schema","additionalProperties":false,"description":"The plugin configuration: one header to add to every response besides the demo one.","properties":{"name":{"description":"Header name: an RFC 9110 token, sent lowercased.","pattern":"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$","type":"string"},"value":{"description":"Header value: no control characters except horizontal tab.","type":"string"}},"required":["name","value"],"title":"Config","type":"object"}}}
            manifest sha256:cb1c063a54242597882147f33f3dd6d061a83d599399faffd420bc0520bf806c:
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
              ]
            }
            index: {"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:cb1c063a54242597882147f33f3dd6d061a83d599399faffd420bc0520bf806c","size":475,"annotations":{"org.opencontainers.image.ref.name":"v0.1"}}]}
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
        .map(|registry| (registry, super::is_loopback(registry)))
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

    #[test]
    fn titles_must_be_plain_file_names() {
        let actual: Vec<String> = ["add-header.wasm", "../evil", "a/b", ".hidden", ""]
            .into_iter()
            .map(|title| match super::safe_file_name(title) {
                Ok(name) => format!("ok {name}"),
                Err(error) => format!("error: {error}"),
            })
            .collect();
        expect_test::expect![[r#"
            [
                "ok add-header.wasm",
                "error: layer title \"../evil\" is not a plain file name",
                "error: layer title \"a/b\" is not a plain file name",
                "error: layer title \".hidden\" is not a plain file name",
                "error: layer title \"\" is not a plain file name",
            ]
        "#]]
        .assert_debug_eq(&actual);
    }
}
