//! Container-image pieces of the Wasm artifacts: Istio's "compat" layer (a tar+gzip holding
//! `plugin.wasm`), reading `plugin.wasm` back out of such a layer (also from a Docker image),
//! and the provenance annotations.
//!
//! The compat layer is reproducible: one entry, fixed mode, owners and mtime (`SOURCE_DATE_EPOCH`,
//! else 0), no user or group names, a gzip header without name or time.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::process::Command;

use anyhow::{Context, Result, bail, ensure};

use crate::util;

/// OCI's tar+gzip image layer.
pub const OCI_LAYER_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// Docker's tar+gzip image layer.
pub const DOCKER_LAYER_MEDIA_TYPE: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// OCI's image config.
pub const OCI_IMAGE_CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
/// The file Istio looks for in an image layer.
pub const COMPAT_FILE: &str = "plugin.wasm";

pub const SOURCE_ANNOTATION: &str = "org.opencontainers.image.source";
pub const REVISION_ANNOTATION: &str = "org.opencontainers.image.revision";
pub const VERSION_ANNOTATION: &str = "org.opencontainers.image.version";
pub const CREATED_ANNOTATION: &str = "org.opencontainers.image.created";

pub fn is_image_layer(media_type: &str) -> bool {
    media_type == OCI_LAYER_MEDIA_TYPE || media_type == DOCKER_LAYER_MEDIA_TYPE
}

/// `SOURCE_DATE_EPOCH`, when set: the time builds claim, for reproducible dates.
pub fn source_date_epoch() -> Result<Option<u64>> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(value) if !value.trim().is_empty() => value
            .trim()
            .parse()
            .map(Some)
            .with_context(|| format!("SOURCE_DATE_EPOCH={value:?} is not a number of seconds")),
        _ => Ok(None),
    }
}

/// Seconds since 1970 as RFC 3339 UTC (`2024-01-02T03:04:05Z`).
pub fn rfc3339(seconds: u64) -> String {
    let days = (seconds / 86_400) as i64;
    let rest = seconds % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// The manifest annotations: version (the tag), revision and source (from git, when the
/// workspace is a clone), created (from `SOURCE_DATE_EPOCH`, only when set, so the digest
/// stays the same from run to run).
pub fn annotations(tag: &str, source: Option<&str>) -> Result<BTreeMap<String, String>> {
    let mut annotations = BTreeMap::from([(VERSION_ANNOTATION.to_string(), tag.to_string())]);
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(util::project_root())
            .output()
            .ok()
            .filter(|output| output.status.success())
            .and_then(|output| String::from_utf8(output.stdout).ok())
            .map(|text| text.trim().to_string())
            .filter(|text| !text.is_empty())
    };
    if let Some(revision) = git(&["rev-parse", "HEAD"]) {
        annotations.insert(REVISION_ANNOTATION.to_string(), revision);
    }
    let source = match source {
        Some(source) => Some(source.to_string()),
        None => git(&["config", "--get", "remote.origin.url"]).and_then(|url| public_url(&url)),
    };
    if let Some(source) = source {
        annotations.insert(SOURCE_ANNOTATION.to_string(), source);
    }
    if let Some(seconds) = source_date_epoch()? {
        annotations.insert(CREATED_ANNOTATION.to_string(), rfc3339(seconds));
    }
    Ok(annotations)
}

/// A remote URL fit to publish: http(s) only, without user or token.
fn public_url(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    if scheme != "https" && scheme != "http" {
        return None;
    }
    let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    Some(format!("{scheme}://{rest}"))
}

/// The compat layer: gzip of a tar holding only `plugin.wasm`, and the tar's digest (the
/// image config's diff_id).
pub fn compat_layer(wasm: &[u8]) -> Result<(Vec<u8>, String)> {
    let mtime = source_date_epoch()?.unwrap_or(0);
    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_ustar();
    header.set_path(COMPAT_FILE)?;
    header.set_size(wasm.len() as u64);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(mtime);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_cksum();
    tar.append(&header, wasm)
        .context("writing the layer's tar")?;
    let tar = tar.into_inner().context("finishing the layer's tar")?;
    let diff_id = util::sha256_digest(&tar);
    let mut gzip = flate2::GzBuilder::new()
        .mtime(0)
        .operating_system(255)
        .write(Vec::new(), flate2::Compression::best());
    gzip.write_all(&tar).context("compressing the layer")?;
    Ok((gzip.finish().context("compressing the layer")?, diff_id))
}

/// The OCI image config of a compat image.
pub fn compat_config(diff_id: &str) -> Result<Vec<u8>> {
    let mut config = serde_json::json!({
        "architecture": "wasm",
        "os": "wasip1",
        "rootfs": { "type": "layers", "diff_ids": [diff_id] },
    });
    if let Some(seconds) = source_date_epoch()? {
        config["created"] = rfc3339(seconds).into();
    }
    serde_json::to_vec(&config).context("serializing the image config")
}

/// `plugin.wasm` from a tar+gzip layer (at its root, with or without `./`), if it has one;
/// reads at most `limit` bytes of the module.
pub fn find_plugin(layer: &[u8], limit: u64) -> Result<Option<Vec<u8>>> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(layer));
    for entry in archive.entries().context("reading the layer as tar+gzip")? {
        let entry = entry.context("reading the layer as tar+gzip")?;
        let path = entry.path().context("a tar entry's path")?.into_owned();
        let name = path.to_string_lossy();
        if name.trim_start_matches("./").trim_start_matches('/') != COMPAT_FILE {
            continue;
        }
        ensure!(
            entry.header().entry_type().is_file(),
            "{COMPAT_FILE} in the layer is not a regular file"
        );
        ensure!(
            entry.size() <= limit,
            "{COMPAT_FILE} is {} bytes, more than {limit}",
            entry.size()
        );
        let mut bytes = Vec::new();
        entry
            .take(limit + 1)
            .read_to_end(&mut bytes)
            .context("reading plugin.wasm from the layer")?;
        if bytes.len() as u64 > limit {
            bail!("{COMPAT_FILE} is more than {limit} bytes");
        }
        return Ok(Some(bytes));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    #[test]
    fn dates_are_rfc3339() {
        let actual: Vec<String> = [0, 951_782_400, 1_700_000_000]
            .into_iter()
            .map(super::rfc3339)
            .collect();
        expect_test::expect![[r#"
            [
                "1970-01-01T00:00:00Z",
                "2000-02-29T00:00:00Z",
                "2023-11-14T22:13:20Z",
            ]
        "#]]
        .assert_debug_eq(&actual);
    }

    #[test]
    fn remote_urls_lose_their_credentials() {
        let actual: Vec<Option<String>> = [
            "https://github.com/org/filterkit.git",
            "https://user:token@github.com/org/filterkit",
            "git@github.com:org/filterkit.git",
        ]
        .into_iter()
        .map(super::public_url)
        .collect();
        expect_test::expect![[r#"
            [
                Some(
                    "https://github.com/org/filterkit.git",
                ),
                Some(
                    "https://github.com/org/filterkit",
                ),
                None,
            ]
        "#]]
        .assert_debug_eq(&actual);
    }

    #[test]
    fn compat_layer_round_trips_and_is_reproducible() {
        let module = b"\0asm\x01\0\0\0".to_vec();
        let (first, diff_id) = super::compat_layer(&module).expect("builds");
        let (second, _) = super::compat_layer(&module).expect("builds");
        assert_eq!(first, second);
        assert!(diff_id.starts_with("sha256:"));
        let found = super::find_plugin(&first, 1024).expect("reads");
        assert_eq!(found, Some(module));
    }
}
