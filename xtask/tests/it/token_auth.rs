//! An `identitytoken` from docker's config.json against Distribution's token auth: the
//! registry (`auth: token`) sends clients to a token server the test runs, which takes the
//! identity token as the password of the all-zero user (as ACR's token endpoint does, and as
//! `az acr login` records it) and issues a JWT signed by a key whose certificate is the
//! registry's `rootcertbundle`. The registry checks the JWT's signature, issuer, audience,
//! lifetime and granted actions, so a push and a pull that succeed used the token.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, bail, ensure};
use base64::Engine;
use rcgen::{CertificateParams, DnType, KeyPair, SigningKey};

use crate::credentials::{Run, package, wasm_digest};
use crate::registry::Registry;
use crate::support::temp_dir;

const SERVICE: &str = "filterkit-registry";
const ISSUER: &str = "filterkit-token-server";
/// What docker records as the user of an identity token.
const IDENTITY_TOKEN_USER: &str = "00000000-0000-0000-0000-000000000000";
/// The refresh token config.json holds; characters a URL or a shell would mangle.
const IDENTITY_TOKEN: &str = "id-T0ken/with+odd=chars:!";

/// A token server on 127.0.0.1: `GET /token?scope=…&service=…` with basic auth.
struct TokenServer {
    realm: String,
    /// One line per request: `granted <scope>` or `denied`.
    log: Arc<Mutex<Vec<String>>>,
}

struct Signer {
    key: KeyPair,
    /// The signing certificate, DER, for the JWT's `x5c`.
    cert_der: Vec<u8>,
}

impl TokenServer {
    /// Starts the server; writes the PEM the registry trusts to `root_cert_bundle`.
    fn start(root_cert_bundle: &Path) -> Result<TokenServer> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(DnType::CommonName, "filterkit token signer");
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        std::fs::write(root_cert_bundle, cert.pem())?;
        let signer = Arc::new(Signer {
            key,
            cert_der: cert.der().to_vec(),
        });
        let listener = TcpListener::bind("127.0.0.1:0").context("binding the token server")?;
        let realm = format!("http://{}/token", listener.local_addr()?);
        let log = Arc::new(Mutex::new(Vec::new()));
        let shared = Arc::clone(&log);
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                if let Err(error) = serve(client, &signer, &shared) {
                    eprintln!("token server: {error:#}");
                }
            }
        });
        Ok(TokenServer { realm, log })
    }

    fn log(&self) -> Vec<String> {
        self.log
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// The registry's `auth:` section.
    fn registry_auth(&self, root_cert_bundle: &Path) -> String {
        format!(
            "auth:\n  token:\n    realm: {}\n    service: {SERVICE}\n    issuer: {ISSUER}\n    rootcertbundle: {}\n",
            self.realm,
            root_cert_bundle.display()
        )
    }
}

fn serve(mut client: TcpStream, signer: &Signer, log: &Mutex<Vec<String>>) -> Result<()> {
    let mut head = Vec::new();
    let mut buffer = [0; 4096];
    while !head.windows(4).any(|window| window == b"\r\n\r\n") {
        let n = client.read(&mut buffer)?;
        ensure!(n > 0, "the client closed the connection");
        head.extend_from_slice(&buffer[..n]);
    }
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut request = httparse::Request::new(&mut headers);
    request.parse(&head).context("parsing a request")?;
    let path = request.path.context("no path")?.to_string();
    let authorization = request
        .headers
        .iter()
        .find(|header| header.name.eq_ignore_ascii_case("authorization"))
        .map(|header| String::from_utf8_lossy(header.value).into_owned());
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD
            .encode(format!("{IDENTITY_TOKEN_USER}:{IDENTITY_TOKEN}"))
    );
    let log = |line: String| {
        log.lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(line)
    };
    if authorization.as_deref() != Some(expected.as_str()) {
        log("denied".to_string());
        let body = r#"{"details":"bad identity token"}"#;
        write!(
            client,
            "HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )?;
        return Ok(());
    }
    let query = path.split_once('?').map(|(_, query)| query).unwrap_or("");
    let scopes: Vec<String> = query
        .split('&')
        .filter_map(|pair| pair.strip_prefix("scope="))
        .map(percent_decode)
        .collect::<Result<_>>()?;
    let mut access = Vec::new();
    for scope in &scopes {
        // repository:<name>:<action>[,<action>]
        let mut parts = scope.rsplitn(2, ':');
        let actions = parts.next().unwrap_or_default();
        let Some(name) = parts
            .next()
            .and_then(|rest| rest.strip_prefix("repository:"))
        else {
            bail!("unexpected scope {scope:?}");
        };
        access.push(serde_json::json!({
            "type": "repository",
            "name": name,
            "actions": actions.split(',').collect::<Vec<_>>(),
        }));
        log(format!("granted {scope}"));
    }
    let token = jwt(signer, access)?;
    let body = serde_json::json!({ "token": token, "expires_in": 300 }).to_string();
    write!(
        client,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    Ok(())
}

/// An ES256 JWT as Distribution 2.8 verifies it: the signing certificate in `x5c`, `aud` a
/// string.
fn jwt(signer: &Signer, access: Vec<serde_json::Value>) -> Result<String> {
    let url = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let header = serde_json::json!({
        "typ": "JWT",
        "alg": "ES256",
        "x5c": [base64::engine::general_purpose::STANDARD.encode(&signer.cert_der)],
    });
    let claims = serde_json::json!({
        "iss": ISSUER,
        "sub": IDENTITY_TOKEN_USER,
        "aud": SERVICE,
        "exp": now + 300,
        "nbf": now - 10,
        "iat": now,
        "jti": format!("{now}-{}", fastrand::u64(..)),
        "access": access,
    });
    let signing_input = format!(
        "{}.{}",
        url.encode(header.to_string()),
        url.encode(claims.to_string())
    );
    let der = signer.key.sign(signing_input.as_bytes())?;
    Ok(format!(
        "{signing_input}.{}",
        url.encode(fixed_signature(&der)?)
    ))
}

/// An ECDSA signature from DER (`SEQUENCE { INTEGER r, INTEGER s }`) to JWS's `r || s`.
fn fixed_signature(der: &[u8]) -> Result<Vec<u8>> {
    ensure!(der.len() > 2 && der[0] == 0x30, "not a DER sequence");
    let mut rest = &der[2..];
    let mut fixed = Vec::new();
    for _ in 0..2 {
        ensure!(rest.len() > 2 && rest[0] == 0x02, "not a DER integer");
        let len = usize::from(rest[1]);
        let integer = rest.get(2..2 + len).context("a short DER integer")?;
        let integer = &integer[integer.iter().take_while(|byte| **byte == 0).count()..];
        ensure!(integer.len() <= 32, "an integer longer than P-256's");
        fixed.extend(std::iter::repeat_n(0, 32 - integer.len()));
        fixed.extend_from_slice(integer);
        rest = &rest[2 + len..];
    }
    Ok(fixed)
}

fn percent_decode(text: &str) -> Result<String> {
    let bytes = text.as_bytes();
    let mut decoded = Vec::new();
    let mut idx = 0;
    while idx < bytes.len() {
        match bytes[idx] {
            b'%' => {
                let hex = text.get(idx + 1..idx + 3).context("a short % escape")?;
                decoded.push(u8::from_str_radix(hex, 16)?);
                idx += 3;
            }
            b'+' => {
                decoded.push(b' ');
                idx += 1;
            }
            byte => {
                decoded.push(byte);
                idx += 1;
            }
        }
    }
    Ok(String::from_utf8(decoded)?)
}

/// A docker config directory whose config.json holds `identity_token` for `registry`.
fn docker_config(dir: &Path, registry: &str, identity_token: &str) -> Result<String> {
    let config_dir = dir.join(format!("docker-{}", identity_token.len()));
    std::fs::create_dir_all(&config_dir)?;
    let config = serde_json::json!({
        "auths": { registry: { "auth": "", "identitytoken": identity_token } }
    });
    std::fs::write(config_dir.join("config.json"), config.to_string())?;
    Ok(config_dir.display().to_string())
}

fn assert_no_token(text: &str) {
    assert!(
        !text.contains(IDENTITY_TOKEN),
        "shows the identity token:\n{text}"
    );
}

#[test]
fn identity_token_gets_a_registry_token_for_push_and_pull() -> Result<()> {
    let dir = temp_dir()?;
    let bundle = dir.path().join("token-signer.pem");
    let server = TokenServer::start(&bundle)?;
    let registry = Registry::start_with_auth(&server.registry_auth(&bundle))?;
    let layout = package("token-auth", dir.path())?.display().to_string();
    let image = format!("{}/asm/token-auth:v1", registry.address);
    let docker = docker_config(dir.path(), &registry.address, IDENTITY_TOKEN)?;

    let push = Run::new(&["push", &layout, &image, "--json"])
        .env("DOCKER_CONFIG", docker.clone())
        .output()?;
    let (stdout, stderr) = (
        String::from_utf8(push.stdout)?,
        String::from_utf8(push.stderr)?,
    );
    ensure!(push.status.success(), "push failed:\n{stderr}");
    assert_no_token(&stdout);
    assert_no_token(&stderr);
    assert!(
        stderr.contains(&format!("the credentials of {IDENTITY_TOKEN_USER}")),
        "{stderr}"
    );

    let out = dir.path().join("pulled").display().to_string();
    let pulled = Run::new(&["pull", &image, &out, "--json"])
        .env("DOCKER_CONFIG", docker)
        .ok()?;
    assert_no_token(&pulled);
    assert_eq!(wasm_digest(&stdout)?, wasm_digest(&pulled)?);

    let log = server.log();
    assert!(
        log.iter()
            .any(|line| line == "granted repository:asm/token-auth:pull,push"),
        "{log:?}"
    );
    assert!(
        log.iter()
            .any(|line| line == "granted repository:asm/token-auth:pull"),
        "{log:?}"
    );
    assert!(!log.iter().any(|line| line == "denied"), "{log:?}");
    Ok(())
}

#[test]
fn wrong_identity_token_is_refused_before_any_upload() -> Result<()> {
    let dir = temp_dir()?;
    let bundle = dir.path().join("token-signer.pem");
    let server = TokenServer::start(&bundle)?;
    let registry = Registry::start_with_auth(&server.registry_auth(&bundle))?;
    let layout = package("token-auth-wrong", dir.path())?
        .display()
        .to_string();
    let image = format!("{}/asm/token-auth-wrong:v1", registry.address);
    let docker = docker_config(dir.path(), &registry.address, "not-the-token")?;
    let stderr = Run::new(&["push", &layout, &image])
        .env("DOCKER_CONFIG", docker)
        .fails()?;
    assert!(
        stderr.contains("refused the credentials from") && stderr.contains("config.json"),
        "{stderr}"
    );
    assert_eq!(server.log(), ["denied"]);
    assert_eq!(registry.n_blobs()?, 0);
    Ok(())
}
