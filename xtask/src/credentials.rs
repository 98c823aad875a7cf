//! Registry credentials where docker and oras keep them, and `cargo xtask login` / `logout`.
//!
//! The store is docker's `config.json` (`$DOCKER_CONFIG/config.json`, else
//! `~/.docker/config.json`): a credential helper named by `credHelpers` for the registry or by
//! `credsStore` (the program `docker-credential-<name>`, spoken to over stdin and stdout), else the
//! `auths` entry (`auth`, the base64 of `user:password`, or `username` and `password`, or an
//! `identitytoken`). `login` writes to the same place, so docker, oras and xtask share one login.
//!
//! A secret is never printed, logged, or put on a child's command line: helpers get it on
//! stdin, and [`Secret`]'s `Debug` hides it.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail, ensure};
use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::util;

/// The user name docker records with an identity token (as `az acr login` writes it); ACR's
/// token endpoint takes the refresh token as the password of this user.
const IDENTITY_TOKEN_USER: &str = "00000000-0000-0000-0000-000000000000";

/// A password or token: its `Debug` shows nothing of it.
#[derive(Clone, PartialEq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(…)")
    }
}

/// A user name and password (or identity token) for one registry, and where they came from.
#[derive(Clone, Debug)]
pub struct Credentials {
    pub username: String,
    pub password: Secret,
    /// For messages: `--password-stdin`, `docker-credential-pass`, `/root/.docker/config.json`.
    pub source: String,
}

/// The path of docker's config.json.
pub fn config_path() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG").filter(|dir| !dir.is_empty()) {
        return Ok(PathBuf::from(dir).join("config.json"));
    }
    let home = std::env::var_os("HOME")
        .filter(|home| !home.is_empty())
        .context("neither DOCKER_CONFIG nor HOME is set: cannot find docker's config.json")?;
    Ok(PathBuf::from(home).join(".docker").join("config.json"))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct DockerConfig {
    #[serde(default)]
    auths: serde_json::Map<String, serde_json::Value>,
    creds_store: Option<String>,
    #[serde(default)]
    cred_helpers: std::collections::BTreeMap<String, String>,
}

#[derive(Deserialize, Default)]
struct AuthEntry {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
    identitytoken: Option<String>,
}

/// The registry host a config.json key names: `https://r.example/v1/` and `r.example` match.
fn registry_of_key(key: &str) -> &str {
    let without_scheme = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    without_scheme.split('/').next().unwrap_or_default()
}

fn read_config() -> Result<(PathBuf, Option<serde_json::Value>)> {
    read_config_at(config_path()?)
}

fn read_config_at(path: PathBuf) -> Result<(PathBuf, Option<serde_json::Value>)> {
    match std::fs::read(&path) {
        Ok(bytes) => {
            let value = serde_json::from_slice(&bytes)
                .with_context(|| format!("parsing {}", path.display()))?;
            Ok((path, Some(value)))
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok((path, None)),
        Err(error) => Err(error).with_context(|| format!("reading {}", path.display())),
    }
}

/// The helper config.json names for `registry`, if any: `credHelpers` first, then `credsStore`.
fn helper_for(config: &DockerConfig, registry: &str) -> Option<String> {
    config
        .cred_helpers
        .iter()
        .find(|(key, _)| registry_of_key(key) == registry)
        .map(|(_, helper)| helper.clone())
        .or_else(|| config.creds_store.clone())
        .filter(|helper| !helper.is_empty())
}

/// Looks up `registry` (`host[:port]`) in docker's store; `None` when it holds nothing for it.
pub fn lookup(registry: &str) -> Result<Option<Credentials>> {
    lookup_in(config_path()?, registry)
}

fn lookup_in(path: PathBuf, registry: &str) -> Result<Option<Credentials>> {
    let (path, value) = read_config_at(path)?;
    let Some(value) = value else {
        return Ok(None);
    };
    let config: DockerConfig =
        serde_json::from_value(value).with_context(|| format!("parsing {}", path.display()))?;
    if let Some(helper) = helper_for(&config, registry)
        && let Some(credentials) = helper_get(&helper, registry)?
    {
        return Ok(Some(credentials));
    }
    let Some((key, entry)) = config
        .auths
        .iter()
        .find(|(key, _)| registry_of_key(key) == registry)
    else {
        return Ok(None);
    };
    let entry: AuthEntry = serde_json::from_value(entry.clone())
        .with_context(|| format!("parsing auths.{key:?} in {}", path.display()))?;
    let source = path.display().to_string();
    let (username, password) = if let Some(token) = entry.identitytoken.filter(|t| !t.is_empty()) {
        (
            entry
                .username
                .filter(|user| !user.is_empty())
                .unwrap_or_else(|| IDENTITY_TOKEN_USER.to_string()),
            token,
        )
    } else if let Some(auth) = entry.auth.filter(|auth| !auth.is_empty()) {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .with_context(|| {
                format!(
                    "auths.{key:?}.auth in {} is not base64 of user:password",
                    path.display()
                )
            })?;
        let (username, password) = decoded.split_once(':').with_context(|| {
            format!(
                "auths.{key:?}.auth in {} is not base64 of user:password",
                path.display()
            )
        })?;
        (username.to_string(), password.to_string())
    } else if let (Some(username), Some(password)) = (entry.username, entry.password) {
        (username, password)
    } else {
        return Ok(None);
    };
    Ok(Some(Credentials {
        username,
        password: Secret(password),
        source,
    }))
}

/// The credential helper protocol's record.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct HelperRecord {
    #[serde(rename = "ServerURL", default)]
    server_url: String,
    username: String,
    secret: String,
}

fn helper_program(helper: &str) -> Result<PathBuf> {
    ensure!(
        !helper.is_empty()
            && helper
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')),
        "credential helper name {helper:?} in docker's config.json is not a plain name"
    );
    let program = format!("docker-credential-{helper}");
    util::which(&program).with_context(|| {
        format!("docker's config.json names the credential helper {program}, which is not on PATH")
    })
}

/// Runs `docker-credential-<helper> <verb>` with `input` on stdin; returns its stdout, or its
/// stdout as the error when it fails (helpers print their errors there).
fn run_helper(
    helper: &str,
    verb: &str,
    input: &[u8],
) -> Result<std::result::Result<String, String>> {
    let program = helper_program(helper)?;
    let mut child = Command::new(&program)
        .arg(verb)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", program.display()))?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(input)
        .with_context(|| format!("writing to {}", program.display()))?;
    let output = child
        .wait_with_output()
        .with_context(|| format!("waiting for {}", program.display()))?;
    let stdout = String::from_utf8_lossy(&output.stdout).trim().to_string();
    if output.status.success() {
        Ok(Ok(stdout))
    } else {
        let stderr = String::from_utf8_lossy(&output.stderr).trim().to_string();
        Ok(Err(if stdout.is_empty() { stderr } else { stdout }))
    }
}

fn helper_get(helper: &str, registry: &str) -> Result<Option<Credentials>> {
    let program = format!("docker-credential-{helper}");
    match run_helper(helper, "get", registry.as_bytes())? {
        Ok(stdout) => {
            let record: HelperRecord = serde_json::from_str(&stdout)
                .with_context(|| format!("{program} get printed no credential record"))?;
            let (username, password) = if record.username == "<token>" {
                (IDENTITY_TOKEN_USER.to_string(), record.secret)
            } else {
                (record.username, record.secret)
            };
            Ok(Some(Credentials {
                username,
                password: Secret(password),
                source: program,
            }))
        }
        Err(message) if message.contains("credentials not found") => Ok(None),
        Err(message) => bail!("{program} get failed for {registry}: {message}"),
    }
}

/// Reads `--password-stdin`'s one line.
pub fn password_from_stdin() -> Result<Secret> {
    let mut password = String::new();
    std::io::stdin()
        .read_to_string(&mut password)
        .context("reading the password from stdin")?;
    let password = password.trim_end_matches(['\r', '\n']).to_string();
    ensure!(
        !password.is_empty(),
        "--password-stdin read an empty password"
    );
    Ok(Secret(password))
}

/// Stores credentials where `lookup` finds them: the helper, else `auths` in config.json.
/// Returns where they went.
pub fn store(registry: &str, username: &str, password: &Secret) -> Result<String> {
    let (path, value) = read_config()?;
    let mut value = value.unwrap_or_else(|| serde_json::json!({}));
    let config: DockerConfig = serde_json::from_value(value.clone())
        .with_context(|| format!("parsing {}", path.display()))?;
    if let Some(helper) = helper_for(&config, registry) {
        let record = serde_json::to_vec(&HelperRecord {
            server_url: registry.to_string(),
            username: username.to_string(),
            secret: password.expose().to_string(),
        })
        .context("serializing the credentials")?;
        if let Err(message) = run_helper(&helper, "store", &record)? {
            bail!("docker-credential-{helper} store failed for {registry}: {message}");
        }
        return Ok(format!("docker-credential-{helper}"));
    }
    let object = value
        .as_object_mut()
        .with_context(|| format!("{} is not a JSON object", path.display()))?;
    let auths = object
        .entry("auths")
        .or_insert_with(|| serde_json::json!({}))
        .as_object_mut()
        .with_context(|| format!("auths in {} is not an object", path.display()))?;
    auths.retain(|key, _| registry_of_key(key) != registry);
    let auth = base64::engine::general_purpose::STANDARD
        .encode(format!("{username}:{}", password.expose()));
    auths.insert(registry.to_string(), serde_json::json!({ "auth": auth }));
    write_private(&path, &value)?;
    Ok(path.display().to_string())
}

/// Removes the registry's credentials from the helper and from `auths`; says whether any were there.
pub fn erase(registry: &str) -> Result<bool> {
    let (path, value) = read_config()?;
    let Some(mut value) = value else {
        return Ok(false);
    };
    let config: DockerConfig = serde_json::from_value(value.clone())
        .with_context(|| format!("parsing {}", path.display()))?;
    let mut erased = false;
    if let Some(helper) = helper_for(&config, registry) {
        match run_helper(&helper, "erase", registry.as_bytes())? {
            Ok(_) => erased = true,
            Err(message) if message.contains("credentials not found") => {}
            Err(message) => {
                bail!("docker-credential-{helper} erase failed for {registry}: {message}")
            }
        }
    }
    if let Some(auths) = value.get_mut("auths").and_then(|a| a.as_object_mut()) {
        let before = auths.len();
        auths.retain(|key, _| registry_of_key(key) != registry);
        if auths.len() != before {
            erased = true;
            write_private(&path, &value)?;
        }
    }
    Ok(erased)
}

/// Writes config.json readable by its owner only, atomically.
fn write_private(path: &std::path::Path, value: &serde_json::Value) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().context("config.json has a directory")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let temporary = dir.join(format!(".config.json.tmp-{}", std::process::id()));
    let mut bytes = serde_json::to_vec_pretty(value).context("serializing config.json")?;
    bytes.push(b'\n');
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temporary)
        .with_context(|| format!("creating {}", temporary.display()))?;
    file.write_all(&bytes)
        .with_context(|| format!("writing {}", temporary.display()))?;
    drop(file);
    std::fs::rename(&temporary, path)
        .with_context(|| format!("renaming {} to {}", temporary.display(), path.display()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn config_keys_name_registries() {
        let actual: Vec<&str> = [
            "127.0.0.1:5000",
            "https://127.0.0.1:5000",
            "https://index.docker.io/v1/",
            "http://localhost:5000/",
        ]
        .into_iter()
        .map(super::registry_of_key)
        .collect();
        expect_test::expect![[r#"
            [
                "127.0.0.1:5000",
                "127.0.0.1:5000",
                "index.docker.io",
                "localhost:5000",
            ]
        "#]]
        .assert_debug_eq(&actual);
    }

    #[test]
    fn finds_each_kind_of_auths_entry() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("config.json");
        std::fs::write(
            &path,
            r#"{"auths": {
                "https://basic.example": {"auth": "dXNlcjpwYTpzcw=="},
                "fields.example": {"username": "u", "password": "p"},
                "acr.example": {"auth": "", "identitytoken": "refresh"},
                "broken.example": {"auth": "not base64!"},
                "empty.example": {}
            }}"#,
        )
        .expect("writes");
        let actual: Vec<String> = [
            "basic.example",
            "fields.example",
            "acr.example",
            "broken.example",
            "empty.example",
            "other.example",
        ]
        .into_iter()
        .map(|registry| match super::lookup_in(path.clone(), registry) {
            Ok(Some(found)) => format!(
                "{registry}: {} / {}",
                found.username,
                found.password.expose()
            ),
            Ok(None) => format!("{registry}: none"),
            Err(error) => format!(
                "{registry}: error: {}",
                error
                    .to_string()
                    .replace(&path.display().to_string(), "<config>")
            ),
        })
        .collect();
        expect_test::expect![[r#"
            [
                "basic.example: user / pa:ss",
                "fields.example: u / p",
                "acr.example: 00000000-0000-0000-0000-000000000000 / refresh",
                "broken.example: error: auths.\"broken.example\".auth in <config> is not base64 of user:password",
                "empty.example: none",
                "other.example: none",
            ]
        "#]].assert_debug_eq(&actual);
    }

    #[test]
    fn secrets_do_not_show_in_debug() {
        let secret = super::Secret("hunter2".to_string());
        assert_eq!(format!("{secret:?}"), "Secret(…)");
    }
}
