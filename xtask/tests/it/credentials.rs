//! Credentials against a TLS registry with basic auth: from `--password-stdin`, from docker's
//! config.json written by `cargo xtask login`, and from a credential helper. A wrong password
//! is a clear 401 that uploads nothing, and the password never shows: not in stdout, stderr or
//! `--json`, not on a child's command line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use anyhow::{Context, Result, bail};
use base64::Engine;

use crate::registry::{PASSWORD, Registry, USERNAME};
use crate::support::{built_filter, temp_dir};
use crate::util;

/// One xtask run: arguments, extra environment, stdin.
pub struct Run {
    args: Vec<String>,
    env: BTreeMap<String, String>,
    stdin: Option<String>,
}

impl Run {
    pub fn new(args: &[&str]) -> Run {
        Run {
            args: args.iter().map(|arg| arg.to_string()).collect(),
            env: BTreeMap::new(),
            stdin: None,
        }
    }

    pub fn env(mut self, name: &str, value: impl Into<String>) -> Run {
        self.env.insert(name.to_string(), value.into());
        self
    }

    pub fn stdin(mut self, text: &str) -> Run {
        self.stdin = Some(text.to_string());
        self
    }

    pub fn output(&self) -> Result<Output> {
        let mut command = Command::new(env!("CARGO_BIN_EXE_xtask"));
        command
            .args(&self.args)
            .envs(&self.env)
            .current_dir(util::project_root())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .with_context(|| format!("running xtask {}", self.args.join(" ")))?;
        let mut stdin = child.stdin.take().expect("piped");
        if let Some(text) = &self.stdin {
            std::io::Write::write_all(&mut stdin, text.as_bytes())?;
        }
        drop(stdin);
        let output = child.wait_with_output()?;
        assert_no_secret(&String::from_utf8_lossy(&output.stdout), "stdout");
        assert_no_secret(&String::from_utf8_lossy(&output.stderr), "stderr");
        eprint!("{}", String::from_utf8_lossy(&output.stderr));
        Ok(output)
    }

    /// Runs and must succeed; returns stdout.
    pub fn ok(&self) -> Result<String> {
        let output = self.output()?;
        if !output.status.success() {
            bail!(
                "`xtask {}` failed:\n{}",
                self.args.join(" "),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(String::from_utf8(output.stdout)?)
    }

    /// Runs and must fail; returns stderr.
    pub fn fails(&self) -> Result<String> {
        let output = self.output()?;
        if output.status.success() {
            bail!(
                "`xtask {}` succeeded but should have failed",
                self.args.join(" ")
            );
        }
        Ok(String::from_utf8(output.stderr)?)
    }
}

/// The password, its base64, and the base64 of `user:password` (a config.json `auth`).
fn secret_forms() -> [String; 3] {
    let base64 = base64::engine::general_purpose::STANDARD;
    [
        PASSWORD.to_string(),
        base64.encode(PASSWORD),
        base64.encode(format!("{USERNAME}:{PASSWORD}")),
    ]
}

fn assert_no_secret(text: &str, what: &str) {
    for form in secret_forms() {
        assert!(!text.contains(&form), "{what} shows the password:\n{text}");
    }
}

/// Packages add-header under its own name (target/oci/<name>/); returns the layout.
pub fn package(name: &str, dir: &Path) -> Result<PathBuf> {
    let wasm = built_filter("add-header", dir)?;
    let stdout = Run::new(&[
        "package",
        name,
        "--wasm",
        &wasm.display().to_string(),
        "--json",
    ])
    .ok()?;
    let packaged: serde_json::Value = serde_json::from_str(&stdout)?;
    Ok(PathBuf::from(
        packaged["layout"].as_str().context("layout in --json")?,
    ))
}

pub fn wasm_digest(stdout: &str) -> Result<String> {
    let value: serde_json::Value = serde_json::from_str(stdout)?;
    Ok(value["wasm_digest"]
        .as_str()
        .context("wasm_digest in --json")?
        .to_string())
}

/// Pushes, then pulls back into a fresh directory: the digests match.
fn push_and_pull(
    registry: &Registry,
    layout: &Path,
    image: &str,
    with: impl Fn(Run) -> Run,
    dir: &Path,
) -> Result<()> {
    let ca_cert = registry
        .secure
        .as_ref()
        .expect("secure")
        .ca_cert
        .display()
        .to_string();
    let pushed = with(Run::new(&[
        "push",
        &layout.display().to_string(),
        image,
        "--ca-cert",
        &ca_cert,
        "--json",
    ]))
    .ok()?;
    let out = dir.join("pulled");
    let pulled = with(Run::new(&[
        "pull",
        image,
        &out.display().to_string(),
        "--ca-cert",
        &ca_cert,
        "--json",
    ]))
    .ok()?;
    assert_eq!(wasm_digest(&pushed)?, wasm_digest(&pulled)?);
    Ok(())
}

#[test]
fn pushes_and_pulls_over_tls_with_password_stdin() -> Result<()> {
    let registry = Registry::start_secure()?;
    let dir = temp_dir()?;
    let layout = package("auth-stdin", dir.path())?;
    let image = format!("{}/asm/auth-stdin:v1", registry.address);
    push_and_pull(
        &registry,
        &layout,
        &image,
        |run| {
            let mut run = run.stdin(PASSWORD);
            run.args.extend([
                "--username".to_string(),
                USERNAME.to_string(),
                "--password-stdin".to_string(),
            ]);
            run
        },
        dir.path(),
    )
}

#[test]
fn login_stores_credentials_that_push_and_pull_use() -> Result<()> {
    let registry = Registry::start_secure()?;
    let dir = temp_dir()?;
    let docker_config = dir.path().join("docker");
    let ca_cert = registry
        .secure
        .as_ref()
        .expect("secure")
        .ca_cert
        .display()
        .to_string();
    let layout = package("auth-login", dir.path())?;
    let image = format!("{}/asm/auth-login:v1", registry.address);
    let env = |run: Run| run.env("DOCKER_CONFIG", docker_config.display().to_string());

    // Anonymous: refused, with what to run.
    let stderr = env(Run::new(&[
        "push",
        &layout.display().to_string(),
        &image,
        "--ca-cert",
        &ca_cert,
    ]))
    .fails()?;
    assert!(
        stderr.contains(&format!(
            "{} wants credentials (401 Unauthorized): run `cargo xtask login {}`",
            registry.address, registry.address
        )),
        "{stderr}"
    );

    env(Run::new(&[
        "login",
        &registry.address,
        "--username",
        USERNAME,
        "--password-stdin",
        "--ca-cert",
        &ca_cert,
    ]))
    .stdin(PASSWORD)
    .ok()?;
    let config_path = docker_config.join("config.json");
    let config: serde_json::Value = serde_json::from_slice(&std::fs::read(&config_path)?)?;
    let stored = config["auths"][&registry.address]["auth"]
        .as_str()
        .context("auths entry")?;
    assert_eq!(stored, secret_forms()[2]);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&config_path)?.permissions().mode() & 0o777,
        0o600
    );

    push_and_pull(&registry, &layout, &image, env, dir.path())?;

    env(Run::new(&["logout", &registry.address])).ok()?;
    let config: serde_json::Value = serde_json::from_slice(&std::fs::read(&config_path)?)?;
    assert_eq!(config["auths"], serde_json::json!({}));
    Ok(())
}

#[test]
fn credential_helper_supplies_and_stores_the_password() -> Result<()> {
    let registry = Registry::start_secure()?;
    let dir = temp_dir()?;
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin)?;
    let log = dir.path().join("helper.log");
    let stored = dir.path().join("stored.json");
    // The helper logs its command line, answers `get` for this registry only, and keeps what
    // `store` sends.
    let script = format!(
        "#!/bin/sh\n\
         echo \"$0 $*\" >> '{log}'\n\
         case \"$1\" in\n\
         get) read server; if [ \"$server\" = '{address}' ]; then \
         printf '{{\"ServerURL\":\"%s\",\"Username\":\"%s\",\"Secret\":\"%s\"}}' \"$server\" '{USERNAME}' '{PASSWORD}'; \
         else echo 'credentials not found in native keychain'; exit 1; fi;;\n\
         store) cat > '{stored}';;\n\
         erase) read server; echo \"erase $server\" >> '{log}';;\n\
         esac\n",
        log = log.display(),
        address = registry.address,
        stored = stored.display(),
    );
    let helper = bin.join("docker-credential-filterkit-test");
    std::fs::write(&helper, script)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755))?;
    let docker_config = dir.path().join("docker");
    std::fs::create_dir_all(&docker_config)?;
    std::fs::write(
        docker_config.join("config.json"),
        serde_json::json!({ "credHelpers": { registry.address.clone(): "filterkit-test" } })
            .to_string(),
    )?;
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let env = |run: Run| {
        run.env("DOCKER_CONFIG", docker_config.display().to_string())
            .env("PATH", path.clone())
    };

    let layout = package("auth-helper", dir.path())?;
    let image = format!("{}/asm/auth-helper:v1", registry.address);
    push_and_pull(&registry, &layout, &image, env, dir.path())?;

    let ca_cert = registry
        .secure
        .as_ref()
        .expect("secure")
        .ca_cert
        .display()
        .to_string();
    env(Run::new(&[
        "login",
        &registry.address,
        "--username",
        USERNAME,
        "--password-stdin",
        "--ca-cert",
        &ca_cert,
    ]))
    .stdin(PASSWORD)
    .ok()?;
    let record: serde_json::Value = serde_json::from_slice(&std::fs::read(&stored)?)?;
    assert_eq!(
        record,
        serde_json::json!({ "ServerURL": registry.address, "Username": USERNAME, "Secret": PASSWORD })
    );
    env(Run::new(&["logout", &registry.address])).ok()?;

    let argv = std::fs::read_to_string(&log)?;
    assert_no_secret(&argv, "the helper's command line");
    let verbs: Vec<&str> = argv
        .lines()
        .filter_map(|line| line.split_whitespace().nth(1))
        .collect();
    assert_eq!(
        verbs,
        ["get", "get", "store", "erase", registry.address.as_str()]
    );
    Ok(())
}

#[test]
fn wrong_password_is_a_clear_401_and_uploads_nothing() -> Result<()> {
    let registry = Registry::start_secure()?;
    let dir = temp_dir()?;
    let layout = package("auth-wrong", dir.path())?;
    let image = format!("{}/asm/auth-wrong:v1", registry.address);
    let ca_cert = registry
        .secure
        .as_ref()
        .expect("secure")
        .ca_cert
        .display()
        .to_string();
    let stderr = Run::new(&[
        "push",
        &layout.display().to_string(),
        &image,
        "--ca-cert",
        &ca_cert,
        "--username",
        USERNAME,
        "--password-stdin",
        "--json",
    ])
    .stdin("not-the-password")
    .fails()?;
    let address = &registry.address;
    assert!(
        stderr.contains(&format!(
            "error: pushing to {image}: authenticating to {address}: {address} refused the credentials from --password-stdin (401 Unauthorized): run `cargo xtask login {address}` with the right password, or pass --username and --password-stdin"
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("pushing blob"), "{stderr}");
    assert_eq!(registry.n_blobs()?, 0);

    // login checks before it stores: nothing is written.
    let docker_config = dir.path().join("docker");
    let stderr = Run::new(&[
        "login",
        address,
        "--username",
        USERNAME,
        "--password-stdin",
        "--ca-cert",
        &ca_cert,
    ])
    .env("DOCKER_CONFIG", docker_config.display().to_string())
    .stdin("not-the-password")
    .fails()?;
    assert!(
        stderr.contains(&format!("error: logging in to {address}: authenticating to {address}: {address} refused the credentials from --password-stdin (401 Unauthorized)")),
        "{stderr}"
    );
    assert!(!docker_config.join("config.json").exists());
    Ok(())
}

#[test]
fn warns_before_credentials_go_over_plain_http() -> Result<()> {
    // The anonymous registry ignores credentials; what matters is the warning before sending.
    let registry = Registry::start()?;
    let dir = temp_dir()?;
    let layout = package("auth-plain", dir.path())?;
    let image = format!("{}/asm/auth-plain:v1", registry.address);
    let output = Run::new(&[
        "push",
        &layout.display().to_string(),
        &image,
        "--username",
        USERNAME,
        "--password-stdin",
    ])
    .stdin(PASSWORD)
    .output()?;
    let stderr = String::from_utf8(output.stderr)?;
    let warning = format!(
        "warning: sending credentials to {} over plain HTTP, unencrypted (a loopback registry; pass --ca-cert to use HTTPS)",
        registry.address
    );
    let warned_at = stderr.find(&warning).context(stderr.clone())?;
    let first_push = stderr.find("pushing blob").context(stderr.clone())?;
    assert!(warned_at < first_push, "{stderr}");
    Ok(())
}
