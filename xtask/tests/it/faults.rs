//! Pushes and pulls through a fault-injecting proxy in front of the registry: transient
//! failures are retried, a cut upload fails cleanly and a re-run resumes, a corrupted blob is
//! refused before anything is written, and a second push uploads nothing.

use anyhow::Result;

use crate::credentials::{Run, package, wasm_digest};
use crate::fault_proxy::{Fault, FaultProxy, Rule};
use crate::registry::Registry;
use crate::support::temp_dir;

/// A registry behind a proxy, and an add-header layout packaged under `name`.
struct Setup {
    _registry: Registry,
    proxy: FaultProxy,
    layout: String,
    image: String,
    _dir: tempfile::TempDir,
}

fn setup(name: &str) -> Result<Setup> {
    let registry = Registry::start()?;
    let proxy = FaultProxy::start(&registry.address)?;
    let dir = temp_dir()?;
    let layout = package(name, dir.path())?.display().to_string();
    let image = format!("{}/asm/{name}:v1", proxy.address);
    Ok(Setup {
        _registry: registry,
        proxy,
        layout,
        image,
        _dir: dir,
    })
}

impl Setup {
    fn push(&self) -> Run {
        Run::new(&["push", &self.layout, &self.image, "--json"])
    }

    /// How many uploads the proxy saw start (`POST …/blobs/uploads/`).
    fn n_uploads(&self) -> usize {
        self.proxy
            .log()
            .iter()
            .filter(|line| line.starts_with("POST ") && line.contains("/blobs/uploads/"))
            .count()
    }
}

fn pushed(stdout: &str) -> Result<(u64, u64)> {
    let value: serde_json::Value = serde_json::from_str(stdout)?;
    Ok((
        value["uploaded"].as_u64().unwrap_or(u64::MAX),
        value["skipped"].as_u64().unwrap_or(u64::MAX),
    ))
}

#[test]
fn retries_503_twice_then_succeeds() -> Result<()> {
    let setup = setup("fault-503")?;
    setup.proxy.add(Rule {
        method: "HEAD",
        path: "/blobs/".to_string(),
        min_body: 0,
        times: 2,
        fault: Fault::Status(503, Vec::new()),
    });
    let stdout = setup.push().ok()?;
    assert_eq!(pushed(&stdout)?, (2, 0));
    let n_503 = setup
        .proxy
        .log()
        .iter()
        .filter(|line| line.ends_with(" 503"))
        .count();
    assert_eq!(n_503, 2);
    Ok(())
}

/// FIXME: the retry waits its own backoff, not the Retry-After (oci-client drops headers).
#[test]
fn retries_429() -> Result<()> {
    let setup = setup("fault-429")?;
    setup.proxy.add(Rule {
        method: "PUT",
        path: "/manifests/".to_string(),
        min_body: 0,
        times: 1,
        fault: Fault::RateLimit(1),
    });
    let output = setup.push().output()?;
    assert!(output.status.success());
    assert_eq!(pushed(&String::from_utf8(output.stdout)?)?, (2, 0));
    // The 429, the probe that reads its Retry-After (rate-limited too), oci-client's own
    // `GET /v2/` (an anonymous client looks for a challenge before each push), and the retry.
    let after_auth: Vec<String> = setup
        .proxy
        .log()
        .into_iter()
        .skip_while(|line| !(line.starts_with("PUT ") && line.contains("/manifests/")))
        .map(|line| {
            let mut words = line.split(' ');
            let method = words.next().unwrap_or_default();
            let path = words.next().unwrap_or_default();
            let status = words.next().unwrap_or_default();
            let path = if path.contains("/manifests/") {
                "manifests"
            } else {
                path
            };
            format!("{method} {path} {status}")
        })
        .collect();
    assert_eq!(
        after_auth,
        [
            "PUT manifests 429",
            "GET /v2/ 429",
            "GET /v2/ 200",
            "PUT manifests 201"
        ]
    );
    // The wait was the registry's, not the backoff's.
    let stderr = String::from_utf8(output.stderr)?;
    assert!(
        stderr.contains("pushing the manifest")
            && stderr.contains("status 429 (try 1 of 5); retrying in 1.0s (Retry-After)"),
        "{stderr}"
    );
    Ok(())
}

#[test]
fn cut_upload_fails_cleanly_and_a_rerun_resumes() -> Result<()> {
    let setup = setup("fault-cut")?;
    // Every upload of the module (the only blob over 1000 bytes) is cut, past every retry.
    setup.proxy.add(Rule {
        method: "PATCH",
        path: "/blobs/uploads/".to_string(),
        min_body: 1000,
        times: 100,
        fault: Fault::CutRequest,
    });
    let stderr = setup.push().fails()?;
    assert!(
        stderr.contains("error: pushing blob sha256:")
            && stderr.contains("broke (connection closed before message completed): run the command again; a push resumes"),
        "{stderr}"
    );
    assert!(!stderr.contains("pushing manifest"), "{stderr}");

    setup.proxy.clear_rules();
    setup.proxy.clear_log();
    let stdout = setup.push().ok()?;
    // The runtime config made it the first time and is reused.
    assert_eq!(pushed(&stdout)?, (1, 1));
    assert_eq!(setup.n_uploads(), 1);
    Ok(())
}

#[test]
fn second_push_uploads_no_blob() -> Result<()> {
    let setup = setup("fault-again")?;
    let first = setup.push().ok()?;
    assert_eq!(pushed(&first)?, (2, 0));
    setup.proxy.clear_log();
    let second = setup.push().ok()?;
    assert_eq!(pushed(&second)?, (0, 2));
    assert_eq!(setup.n_uploads(), 0);
    Ok(())
}

#[test]
fn corrupted_blob_on_pull_is_refused_and_nothing_is_written() -> Result<()> {
    let setup = setup("fault-corrupt")?;
    let wasm = wasm_digest(&setup.push().ok()?)?;
    setup.proxy.add(Rule {
        method: "GET",
        path: format!("/blobs/{wasm}"),
        min_body: 0,
        times: 1,
        fault: Fault::CorruptResponse,
    });
    let dir = temp_dir()?;
    let out = dir.path().join("pulled");
    let stderr = Run::new(&["pull", &setup.image, &out.display().to_string()]).fails()?;
    assert!(
        stderr.contains(&format!("fetching blob {wasm} of {}", setup.image))
            && stderr.contains(&format!("Invalid digest. Expected {wasm}")),
        "{stderr}"
    );
    assert!(!out.exists(), "pull created {}", out.display());
    Ok(())
}

#[test]
fn unknown_tag_names_the_reference() -> Result<()> {
    let setup = setup("fault-unknown")?;
    setup.push().ok()?;
    let dir = temp_dir()?;
    let missing = format!("{}/asm/fault-unknown:nope", setup.proxy.address);
    let stderr = Run::new(&["pull", &missing, &dir.path().display().to_string()]).fails()?;
    assert!(
        stderr.contains(&format!("fetching the manifest of {missing}"))
            && stderr.contains("no such repository, tag or digest"),
        "{stderr}"
    );
    Ok(())
}
