//! A registry fixture: Debian's `docker-registry` (CNCF Distribution 2.8) on 127.0.0.1, its
//! storage in a temporary directory: anonymous over plain HTTP ([`Registry::start`]), or over
//! TLS with a CA made by the test and htpasswd basic auth ([`Registry::start_secure`]).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tempfile::TempDir;

use crate::envoy::get;
use crate::support::{free_port, temp_dir, tool};
use crate::util::{ChildGuard, poll_until};

const READY_TIMEOUT: Duration = Duration::from_secs(30);
const ATTEMPTS: usize = 3;

/// A running registry; dropping it stops it and removes its storage.
pub struct Registry {
    _process: ChildGuard,
    /// `127.0.0.1:<port>`, the host part of references.
    pub address: String,
    /// Set for a TLS registry with basic auth.
    pub secure: Option<Secure>,
    _dir: TempDir,
}

/// What a client needs for a [`Registry::start_secure`] registry.
pub struct Secure {
    /// The PEM of the CA that signed the registry's certificate (`--ca-cert`).
    pub ca_cert: PathBuf,
}

/// The one account of a secure registry. The password has characters a shell or a URL would
/// mangle, so a leak through either shows.
pub const USERNAME: &str = "filterkit";
pub const PASSWORD: &str = "s3cret-P@ss:w0rd!";

impl Registry {
    /// Starts a registry on a free port, ready once `GET /v2/` answers 200. A port taken
    /// between choosing and binding it means another try on another port.
    pub fn start() -> Result<Registry> {
        Registry::start_on(std::iter::repeat_with(free_port).take(ATTEMPTS))
    }

    /// Starts a registry that serves HTTPS with a certificate from a CA made here (CA:FALSE,
    /// SAN 127.0.0.1 and localhost) and wants basic auth for [`USERNAME`] and [`PASSWORD`]
    /// (bcrypt, through `htpasswd -B`).
    pub fn start_secure() -> Result<Registry> {
        let dir = temp_dir()?;
        let secure = make_secrets(dir.path())?;
        Registry::start_in(
            dir,
            Some(secure),
            "",
            std::iter::repeat_with(free_port).take(ATTEMPTS),
        )
    }

    /// Starts a plain-HTTP registry with this `auth:` section of its configuration (e.g.
    /// Distribution's token auth); ready once `GET /v2/` answers 200 or 401.
    pub fn start_with_auth(auth: &str) -> Result<Registry> {
        Registry::start_in(
            temp_dir()?,
            None,
            auth,
            std::iter::repeat_with(free_port).take(ATTEMPTS),
        )
    }

    /// Tries the ports in turn while the registry finds its port taken.
    fn start_on(ports: impl IntoIterator<Item = Result<u16>>) -> Result<Registry> {
        Registry::start_in(temp_dir()?, None, "", ports)
    }

    fn start_in(
        dir: TempDir,
        secure: Option<Secure>,
        auth: &str,
        ports: impl IntoIterator<Item = Result<u16>>,
    ) -> Result<Registry> {
        let binary = tool("docker-registry")?;
        let mut ports = ports.into_iter().peekable();
        let mut attempt = 0;
        while let Some(port) = ports.next() {
            attempt += 1;
            let address = format!("127.0.0.1:{}", port?);
            let log_path = dir.path().join(format!("registry-{attempt}.log"));
            let process = spawn(
                &binary,
                dir.path(),
                &address,
                &log_path,
                secure.is_some(),
                auth,
            )?;
            match wait_until_ready(process, &address, &log_path, secure.is_some()) {
                Ok(process) => {
                    return Ok(Registry {
                        _process: process,
                        address,
                        secure,
                        _dir: dir,
                    });
                }
                Err(error)
                    if ports.peek().is_some()
                        && read(&log_path).contains("address already in use") =>
                {
                    eprintln!("registry: {address} was taken, trying another port ({error:#})");
                }
                Err(error) => return Err(error),
            }
        }
        bail!("no port to start the registry on")
    }
}

impl Registry {
    /// How many blobs the registry stores (read from its storage directory).
    pub fn n_blobs(&self) -> Result<usize> {
        let blobs = self
            ._dir
            .path()
            .join("storage/docker/registry/v2/blobs/sha256");
        let Ok(prefixes) = std::fs::read_dir(&blobs) else {
            return Ok(0);
        };
        let mut n = 0;
        for prefix in prefixes {
            n += std::fs::read_dir(prefix?.path())?.count();
        }
        Ok(n)
    }

    /// Stores a manifest (or index) under `reference` (plain HTTP registries only).
    pub fn put_manifest(
        &self,
        repository: &str,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<()> {
        let url = format!(
            "http://{}/v2/{repository}/manifests/{reference}",
            self.address
        );
        let config = ureq::Agent::config_builder()
            .proxy(None)
            .timeout_global(Some(Duration::from_secs(10)))
            .build();
        ureq::Agent::new_with_config(config)
            .put(&url)
            .header("Content-Type", media_type)
            .send(bytes)
            .with_context(|| format!("PUT {url}"))?;
        Ok(())
    }

    /// A manifest as the registry serves it (OCI or Docker v2), with the sha256 digest of its
    /// bytes.
    pub fn manifest(
        &self,
        repository: &str,
        reference: &str,
    ) -> Result<(String, serde_json::Value)> {
        let url = format!(
            "http://{}/v2/{repository}/manifests/{reference}",
            self.address
        );
        let config = ureq::Agent::config_builder()
            .proxy(None)
            .timeout_global(Some(Duration::from_secs(10)))
            .build();
        let mut response = ureq::Agent::new_with_config(config)
            .get(&url)
            .header("Accept", "application/vnd.oci.image.manifest.v1+json")
            .header(
                "Accept",
                "application/vnd.docker.distribution.manifest.v2+json",
            )
            .call()
            .with_context(|| format!("GET {url}"))?;
        let bytes = response
            .body_mut()
            .read_to_vec()
            .with_context(|| format!("reading GET {url}"))?;
        let manifest = serde_json::from_slice(&bytes)
            .with_context(|| format!("parsing the manifest from {url}"))?;
        Ok((crate::util::sha256_digest(&bytes), manifest))
    }
}

fn spawn(
    binary: &Path,
    dir: &Path,
    address: &str,
    log_path: &Path,
    secure: bool,
    auth: &str,
) -> Result<ChildGuard> {
    let storage = dir.join("storage");
    let config_path = dir.join("config.yml");
    let mut config = format!(
        "version: 0.1\n\
         log:\n  level: info\n  accesslog:\n    disabled: true\n\
         storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
         http:\n  addr: {address}\n  secret: filterkit-e2e\n",
        storage.display()
    );
    if secure {
        config.push_str(&format!(
            "  tls:\n    certificate: {}\n    key: {}\n\
             auth:\n  htpasswd:\n    realm: filterkit-e2e\n    path: {}\n",
            dir.join("server.pem").display(),
            dir.join("server.key").display(),
            dir.join("htpasswd").display(),
        ));
    }
    config.push_str(auth);
    std::fs::write(&config_path, config)
        .with_context(|| format!("writing {}", config_path.display()))?;
    let log = File::create(log_path).with_context(|| format!("creating {}", log_path.display()))?;
    let child = Command::new(binary)
        .arg("serve")
        .arg(&config_path)
        .stdin(Stdio::null())
        .stdout(log.try_clone().context("opening the registry log")?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    Ok(ChildGuard(child))
}

fn wait_until_ready(
    mut process: ChildGuard,
    address: &str,
    log_path: &Path,
    secure: bool,
) -> Result<ChildGuard> {
    let url = format!("http://{address}/v2/");
    // Only our registry logs that it listens on this address: probing before that could reach
    // whatever else holds the port.
    let listening = if secure {
        format!("msg=\"listening on {address}, tls\"")
    } else {
        format!("msg=\"listening on {address}\"")
    };
    let what = format!("the registry to answer GET {url}");
    poll_until(Instant::now() + READY_TIMEOUT, &what, || {
        if let Some(status) = process.0.try_wait().context("waiting for the registry")? {
            bail!(
                "the registry exited ({status}); its log:\n{}",
                read(log_path)
            );
        }
        if !read(log_path).contains(&listening) {
            return Ok(None);
        }
        if secure {
            // The log line comes once the listener is bound; the clients check the TLS.
            return Ok(std::net::TcpStream::connect(address).ok().map(|_| ()));
        }
        Ok(get(&url)
            .ok()
            .filter(|response| response.status == 200 || response.status == 401)
            .map(|_| ()))
    })?;
    Ok(process)
}

/// Writes ca.pem, server.pem, server.key and htpasswd into `dir`.
fn make_secrets(dir: &Path) -> Result<Secure> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "filterkit test CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let mut server_params =
        CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])?;
    server_params.is_ca = IsCa::ExplicitNoCa;
    server_params
        .distinguished_name
        .push(DnType::CommonName, "127.0.0.1");
    server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server_key = KeyPair::generate()?;
    let server_cert = server_params.signed_by(&server_key, &issuer)?;

    let ca_path = dir.join("ca.pem");
    std::fs::write(&ca_path, ca_cert.pem())?;
    std::fs::write(dir.join("server.pem"), server_cert.pem())?;
    std::fs::write(dir.join("server.key"), server_key.serialize_pem())?;

    // -i reads the password from stdin: it stays off htpasswd's command line too.
    let mut child = Command::new(tool("htpasswd")?)
        .args(["-niB", USERNAME])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting htpasswd")?;
    std::io::Write::write_all(&mut child.stdin.take().expect("piped"), PASSWORD.as_bytes())?;
    let output = child.wait_with_output()?;
    if !output.status.success() {
        bail!(
            "htpasswd failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    std::fs::write(dir.join("htpasswd"), &output.stdout)?;
    Ok(Secure { ca_cert: ca_path })
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

#[test]
fn registry_answers_v2_anonymously() -> Result<()> {
    let registry = Registry::start()?;
    let response = get(&format!("http://{}/v2/", registry.address))?;
    assert_eq!(response.status, 200);
    assert_eq!(
        response.header("docker-distribution-api-version"),
        Some("registry/2.0")
    );
    Ok(())
}

#[test]
fn registries_run_side_by_side() -> Result<()> {
    let first = Registry::start()?;
    let second = Registry::start()?;
    assert_ne!(first.address, second.address);
    for registry in [&first, &second] {
        assert_eq!(
            get(&format!("http://{}/v2/", registry.address))?.status,
            200
        );
    }
    Ok(())
}

#[test]
fn registry_moves_on_when_its_port_is_taken() -> Result<()> {
    let taken = std::net::TcpListener::bind("127.0.0.1:0")?;
    let taken_port = taken.local_addr()?.port();
    let registry = Registry::start_on([Ok(taken_port), free_port()])?;
    assert_ne!(registry.address, format!("127.0.0.1:{taken_port}"));
    assert_eq!(
        get(&format!("http://{}/v2/", registry.address))?.status,
        200
    );
    Ok(())
}
