//! `cargo xtask pull`: fetch an artifact from a registry and write its module, after verifying
//! every digest and size.
//!
//! It reads the three layouts `package` writes (`oci`, `seed`, `compat`), other clients' Wasm
//! artifacts, Docker images whose layer holds `plugin.wasm`, and image indexes (choosing the
//! Wasm manifest). Sizes are bounded, file names come only from plain titles, and nothing is
//! written until everything is fetched and checked; then the files are written all or nothing
//! (staged beside the destination, then renamed into place), so a failed write leaves the
//! directory as it was.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use oci_client::Reference;
use serde::{Deserialize, Serialize};

use crate::oci::{
    DOCKER_MANIFEST_LIST_MEDIA_TYPE, DOCKER_MANIFEST_MEDIA_TYPE, Descriptor, Index, Manifest,
    OCI_INDEX_MEDIA_TYPE, OCI_MANIFEST_MEDIA_TYPE, RegistryArgs, WASM_LAYER_MEDIA_TYPE,
    parse_reference, verify,
};
use crate::transport::{Session, runtime};
use crate::util;

/// Largest blob `pull` accepts: a filter is kilobytes, anything near this is not a filter.
const MAX_BLOB_SIZE: u64 = 256 * 1024 * 1024;
/// Largest manifest or index `pull` accepts (registries commonly cap them at 4 MiB).
const MAX_MANIFEST_SIZE: usize = 4 * 1024 * 1024;
/// Most manifests `pull` looks at in an image index.
const MAX_INDEX_ENTRIES: usize = 64;

#[derive(clap::Args)]
pub struct PullArgs {
    /// registry/repository:tag or registry/repository@sha256:… to fetch.
    pub reference: String,
    /// Directory to write the layers into, each named by its org.opencontainers.image.title.
    pub dir: PathBuf,
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// Write only the module, as <DIR>/<sha256>.wasm (as ASM's node cache keeps modules).
    #[arg(long)]
    pub store_by_digest: bool,
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
    /// The seed's layout: one layer, the module itself, which Istio's image fetcher refuses.
    #[serde(skip)]
    pub single_wasm_layer: bool,
}

pub fn pull(args: PullArgs) -> Result<()> {
    let pulled = pull_to_dir(
        &args.reference,
        &args.dir,
        &args.registry,
        args.store_by_digest,
    )?;
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

/// Fetches an artifact (through an image index when the reference names one), verifies every
/// digest and size, finds the module, and only then writes into `dir`: every layer under its
/// title for a Wasm artifact, `plugin.wasm` for a compat or Docker image, or only the module as
/// `<sha256>.wasm` with `store_by_digest` (as ASM's node cache keeps modules).
pub fn pull_to_dir(
    reference: &str,
    dir: &Path,
    registry: &RegistryArgs,
    store_by_digest: bool,
) -> Result<Pulled> {
    let parsed = parse_reference(reference)?;
    let session = Session::new(&parsed, registry)?;
    let (manifest_digest, manifest, blobs) = runtime()?.block_on(async {
        let (manifest_digest, manifest) = fetch_manifest(&session, &parsed, reference).await?;
        let mut blobs: Vec<(Descriptor, Vec<u8>)> = Vec::new();
        for descriptor in std::iter::once(&manifest.config).chain(&manifest.layers) {
            if blobs
                .iter()
                .any(|(seen, _)| seen.digest == descriptor.digest)
            {
                continue;
            }
            let bytes = fetch_blob(&session, &parsed, descriptor)
                .await
                .with_context(|| format!("fetching blob {} of {reference}", descriptor.digest))?;
            blobs.push((descriptor.clone(), bytes));
        }
        Ok::<_, anyhow::Error>((manifest_digest, manifest, blobs))
    })?;
    let single_wasm_layer = manifest.layers.len() == 1 && manifest.layers[0].is_wasm();
    let blob = |descriptor: &Descriptor| -> Vec<u8> {
        blobs
            .iter()
            .find(|(seen, _)| seen.digest == descriptor.digest)
            .map(|(_, bytes)| bytes.clone())
            .expect("fetched above")
    };

    // (file name, bytes), the module's index among them.
    let (mut files, module_idx): (Vec<(String, Vec<u8>)>, usize) = if manifest
        .layers
        .iter()
        .any(Descriptor::is_wasm)
    {
        let wasm_layer = manifest
            .wasm_layer()
            .with_context(|| format!("pulling {reference}"))?;
        let mut files: Vec<(String, Vec<u8>)> = Vec::new();
        let mut module_idx = 0;
        for layer in &manifest.layers {
            let name = match layer.title() {
                Some(title) => {
                    safe_file_name(title).with_context(|| format!("pulling {reference}"))?
                }
                None => layer.digest.replace(':', "-"),
            };
            if files.iter().any(|(seen, _)| *seen == name) {
                bail!("two layers of {reference} have the title {name:?}");
            }
            if layer.digest == wasm_layer.digest {
                module_idx = files.len();
            }
            files.push((name, blob(layer)));
        }
        (files, module_idx)
    } else {
        let mut found = Vec::new();
        for layer in &manifest.layers {
            if crate::image::is_image_layer(&layer.media_type)
                && let Some(module) = crate::image::find_plugin(&blob(layer), MAX_BLOB_SIZE)
                    .with_context(|| format!("layer {} of {reference}", layer.digest))?
            {
                found.push(module);
            }
        }
        let types: Vec<&str> = manifest
            .layers
            .iter()
            .map(|layer| layer.media_type.as_str())
            .collect();
        match found.len() {
            1 => (
                vec![(
                    crate::image::COMPAT_FILE.to_string(),
                    found.pop().expect("one"),
                )],
                0,
            ),
            0 => bail!(
                "{reference} holds no Wasm module: no {WASM_LAYER_MEDIA_TYPE} layer and no image layer with {} (its layers: {})",
                crate::image::COMPAT_FILE,
                types.join(", ")
            ),
            n => bail!(
                "{reference} is ambiguous: {n} of its layers hold {}",
                crate::image::COMPAT_FILE
            ),
        }
    };
    ensure!(
        files[module_idx].1.starts_with(b"\0asm"),
        "the module of {reference} does not start with the Wasm magic bytes"
    );
    let wasm_digest = util::sha256_digest(&files[module_idx].1);
    let module_idx = if store_by_digest {
        let name = format!("{}.wasm", wasm_digest.trim_start_matches("sha256:"));
        files = vec![(name, files.swap_remove(module_idx).1)];
        0
    } else {
        module_idx
    };

    let written = write_all_or_nothing(dir, &files)?;
    for (path, (_, bytes)) in written.iter().zip(&files) {
        eprintln!("wrote {} ({} bytes)", path.display(), bytes.len());
    }
    Ok(Pulled {
        manifest_digest,
        wasm_digest,
        wasm: written[module_idx].clone(),
        files: written,
        single_wasm_layer,
    })
}

/// Writes `files` into `dir` so that a failure leaves `dir` as it was. Every file is first
/// written (and synced) into a staging directory on the same file system; when `dir` does not
/// exist the staging directory then becomes it in one rename, else each file is renamed into
/// place, and a failed rename puts back what was already moved and what it replaced.
fn write_all_or_nothing(dir: &Path, files: &[(String, Vec<u8>)]) -> Result<Vec<PathBuf>> {
    let dir = std::path::absolute(dir).with_context(|| format!("resolving {}", dir.display()))?;
    let parent = dir
        .parent()
        .with_context(|| format!("{} has no parent directory", dir.display()))?;
    std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    let exists = dir.exists();
    ensure!(
        !exists || dir.is_dir(),
        "{} exists and is not a directory",
        dir.display()
    );
    let staging_name = format!(".pull-{}", std::process::id());
    let staging = if exists {
        dir.join(&staging_name)
    } else {
        let name = dir.file_name().unwrap_or_default().to_string_lossy();
        parent.join(format!(".{name}{staging_name}"))
    };
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir(&staging).with_context(|| format!("creating {}", staging.display()))?;
    let result = stage(&staging, files).and_then(|()| {
        if exists {
            move_into_place(&staging, &dir, files)
        } else {
            std::fs::rename(&staging, &dir)
                .with_context(|| format!("renaming {} to {}", staging.display(), dir.display()))
        }
    });
    // Gone after a fresh directory's rename; else holds what the pull replaced, or, after a
    // failure, what it wrote.
    let _ = std::fs::remove_dir_all(&staging);
    result?;
    Ok(files.iter().map(|(name, _)| dir.join(name)).collect())
}

fn stage(staging: &Path, files: &[(String, Vec<u8>)]) -> Result<()> {
    for (name, bytes) in files {
        let path = staging.join(name);
        let mut file =
            std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        std::io::Write::write_all(&mut file, bytes)
            .and_then(|()| file.sync_all())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// Renames the staged files into `dir`; an existing file of the same name is moved into
/// `staging/.replaced/` first, so a failure can undo every step.
fn move_into_place(staging: &Path, dir: &Path, files: &[(String, Vec<u8>)]) -> Result<()> {
    let replaced_dir = staging.join(".replaced");
    std::fs::create_dir(&replaced_dir)
        .with_context(|| format!("creating {}", replaced_dir.display()))?;
    // (name, whether a file of that name was replaced), in the order moved.
    let mut moved: Vec<(&str, bool)> = Vec::new();
    let mut result = Ok(());
    for (name, _) in files {
        let target = dir.join(name);
        let replaced = target.is_file();
        if replaced && let Err(error) = std::fs::rename(&target, replaced_dir.join(name)) {
            result = Err(error).with_context(|| format!("moving {} aside", target.display()));
            break;
        }
        if let Err(error) = std::fs::rename(staging.join(name), &target) {
            if replaced {
                let _ = std::fs::rename(replaced_dir.join(name), &target);
            }
            result = Err(error).with_context(|| format!("renaming into {}", target.display()));
            break;
        }
        moved.push((name, replaced));
    }
    if result.is_err() {
        for (name, replaced) in moved.into_iter().rev() {
            let target = dir.join(name);
            let _ = std::fs::remove_file(&target);
            if replaced {
                let _ = std::fs::rename(replaced_dir.join(name), &target);
            }
        }
    }
    result
}

/// The image manifest a reference names, with its digest: directly, or the Wasm one of the
/// image index it names. Every manifest is checked against its digest and size.
async fn fetch_manifest(
    session: &Session,
    parsed: &Reference,
    reference: &str,
) -> Result<(String, Manifest)> {
    let accepted = [
        OCI_MANIFEST_MEDIA_TYPE,
        DOCKER_MANIFEST_MEDIA_TYPE,
        OCI_INDEX_MEDIA_TYPE,
        DOCKER_MANIFEST_LIST_MEDIA_TYPE,
    ];
    let what = format!("fetching the manifest of {reference}");
    let (bytes, _) = session
        .retry(&what, || {
            session
                .client
                .pull_manifest_raw(parsed, &session.auth, &accepted)
        })
        .await?;
    ensure!(
        bytes.len() <= MAX_MANIFEST_SIZE,
        "the manifest of {reference} is {} bytes, more than {MAX_MANIFEST_SIZE}",
        bytes.len()
    );
    let digest = util::sha256_digest(&bytes);
    if let Some(wanted) = parsed.digest() {
        ensure!(
            digest == wanted,
            "the registry sent a manifest with digest {digest} for {reference}"
        );
    }
    let index =
        match parse_manifest(&bytes).with_context(|| format!("the manifest of {reference}"))? {
            Parsed::Manifest(manifest) => return Ok((digest, manifest)),
            Parsed::Index(index) => index,
        };
    ensure!(
        index.manifests.len() <= MAX_INDEX_ENTRIES,
        "the image index of {reference} lists {} manifests, more than {MAX_INDEX_ENTRIES}",
        index.manifests.len()
    );
    // Fetch every listed manifest; keep those with a Wasm layer, else image manifests (a
    // compat image built for several platforms holds the same plugin.wasm in each).
    let mut wasm = Vec::new();
    let mut images = Vec::new();
    for entry in &index.manifests {
        if entry.media_type != OCI_MANIFEST_MEDIA_TYPE
            && entry.media_type != DOCKER_MANIFEST_MEDIA_TYPE
        {
            continue;
        }
        ensure!(
            entry.size <= MAX_MANIFEST_SIZE as u64,
            "manifest {} in the index of {reference} is {} bytes, more than {MAX_MANIFEST_SIZE}",
            entry.digest,
            entry.size
        );
        let child = Reference::with_digest(
            parsed.registry().to_string(),
            parsed.repository().to_string(),
            entry.digest.clone(),
        );
        let what = format!("fetching manifest {} of {reference}", entry.digest);
        let (bytes, _) = session
            .retry(&what, || {
                session
                    .client
                    .pull_manifest_raw(&child, &session.auth, &accepted[..2])
            })
            .await?;
        verify(&bytes, entry)
            .with_context(|| format!("manifest {} of {reference}", entry.digest))?;
        let Parsed::Manifest(manifest) = parse_manifest(&bytes)
            .with_context(|| format!("manifest {} of {reference}", entry.digest))?
        else {
            bail!(
                "the index of {reference} lists another index, {}",
                entry.digest
            );
        };
        if manifest.layers.iter().any(Descriptor::is_wasm) {
            wasm.push((entry.digest.clone(), manifest));
        } else if manifest
            .layers
            .iter()
            .any(|layer| crate::image::is_image_layer(&layer.media_type))
        {
            images.push((entry.digest.clone(), manifest));
        }
    }
    let chosen = match (wasm.len(), images.len()) {
        (1, _) => wasm.pop(),
        (0, 0) => bail!("the image index of {reference} lists no Wasm artifact or image manifest"),
        (0, _) => Some(images.swap_remove(0)),
        (_, _) => {
            let digests: Vec<&str> = wasm.iter().map(|(digest, _)| digest.as_str()).collect();
            bail!(
                "the image index of {reference} lists {} Wasm artifacts: pull one by digest ({})",
                wasm.len(),
                digests.join(", ")
            )
        }
    };
    let (digest, manifest) = chosen.expect("chosen above");
    eprintln!("{reference} is an image index: pulling its manifest {digest}");
    Ok((digest, manifest))
}

enum Parsed {
    Manifest(Manifest),
    Index(Index),
}

fn parse_manifest(bytes: &[u8]) -> Result<Parsed> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Versioned {
        media_type: Option<String>,
        manifests: Option<serde_json::Value>,
    }
    let versioned: Versioned = serde_json::from_slice(bytes).context("not JSON")?;
    match versioned.media_type.as_deref() {
        Some(OCI_INDEX_MEDIA_TYPE) | Some(DOCKER_MANIFEST_LIST_MEDIA_TYPE) => {
            let index: Index = serde_json::from_slice(bytes).context("not an image index")?;
            return Ok(Parsed::Index(index));
        }
        None if versioned.manifests.is_some() => {
            let index: Index = serde_json::from_slice(bytes).context("not an image index")?;
            return Ok(Parsed::Index(index));
        }
        None | Some(OCI_MANIFEST_MEDIA_TYPE) | Some(DOCKER_MANIFEST_MEDIA_TYPE) => {}
        Some(other) => bail!("unsupported manifest media type {other:?}"),
    }
    let manifest: Manifest = serde_json::from_slice(bytes).context("not an image manifest")?;
    ensure!(
        manifest.schema_version == 2,
        "schemaVersion {} is not 2",
        manifest.schema_version
    );
    Ok(Parsed::Manifest(manifest))
}

async fn fetch_blob(
    session: &Session,
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
    let what = format!("fetching blob {digest}");
    // A body cut short is retried whole: a blob is small next to the cost of a new connection.
    session
        .retry(&what, || async {
            let mut stream = session.client.pull_blob_stream(reference, &digest).await?;
            let mut bytes = Vec::with_capacity(descriptor.size.min(MAX_BLOB_SIZE) as usize);
            let bar = crate::transport::progress(format!("pulling {digest}"), descriptor.size);
            while let Some(chunk) = stream.try_next().await? {
                if let Some(bar) = &bar {
                    bar.inc(chunk.len() as u64);
                }
                if bytes.len() as u64 + chunk.len() as u64 > descriptor.size {
                    return Err(
                        oci_client::errors::OciDistributionError::SpecViolationError(format!(
                            "the registry sent more than the descriptor's {} bytes",
                            descriptor.size
                        )),
                    );
                }
                bytes.extend_from_slice(&chunk);
            }
            if let Some(bar) = bar {
                bar.finish_and_clear();
            }
            Ok(bytes)
        })
        .await
        .and_then(|bytes| {
            verify(&bytes, descriptor)?;
            Ok(bytes)
        })
}

/// A layer title as a plain file name: no directories, no `..`, nothing hidden.
fn safe_file_name(title: &str) -> Result<String> {
    // Control characters (newlines, tabs, terminal escapes) would also reach the
    // tab-separated stdout.
    let ok = !title.is_empty()
        && !title.starts_with('.')
        && !title.contains(['/', '\\'])
        && !title.chars().any(char::is_control)
        && title.len() <= 255;
    ensure!(ok, "layer title {title:?} is not a plain file name");
    Ok(title.to_string())
}

#[cfg(test)]
mod tests {
    #[test]
    fn titles_must_be_plain_file_names() {
        let actual: Vec<String> = [
            "add-header.wasm",
            "../evil",
            "a/b",
            ".hidden",
            "",
            "evil\nwasm\tsha256:0",
            "\u{1b}[31mred.wasm",
        ]
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
                "error: layer title \"evil\\nwasm\\tsha256:0\" is not a plain file name",
                "error: layer title \"\\u{1b}[31mred.wasm\" is not a plain file name",
            ]
        "#]]
        .assert_debug_eq(&actual);
    }
}
