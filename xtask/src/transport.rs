//! Reaching a registry: protocol, TLS roots, timeouts, credentials, retries, and errors that say
//! what to do. `push`, `pull` and `login` go through a [`Session`].
//!
//! HTTPS with the system roots (plus `--ca-cert`) is the default; plain HTTP only for loopback
//! registries or with `--plain-http`. Credentials come from `--username` + `--password-stdin`,
//! else from docker's store (see `credentials`). Each registry call is retried with exponential
//! backoff and jitter on 408, 429, 5xx and connection errors. On a 429 the wait is the
//! registry's Retry-After (capped at [`MAX_RETRY_AFTER`]): oci-client drops response headers
//! from its errors, so a `GET /v2/` through our own client (same TLS roots) reads it; a rate
//! limiter answers every request of a limited client alike.

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};

use crate::credentials::{self, Credentials};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// Tries of one registry call, the first included.
const ATTEMPTS: u32 = 5;
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// The longest Retry-After honoured; a longer one is cut to this.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// How to reach a registry: protocol and credentials.
#[derive(clap::Args, Clone, Default)]
pub struct RegistryArgs {
    /// Use plain HTTP (automatic for 127.0.0.1, localhost and [::1] unless --ca-cert is given).
    #[arg(long)]
    pub plain_http: bool,
    /// Registry user name (the password is read from stdin, see --password-stdin); without it,
    /// docker's config.json is used (see `cargo xtask login`).
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
    /// `--username` with `--password-stdin`, else docker's store, else none.
    pub fn credentials(&self, registry: &str) -> Result<Option<Credentials>> {
        match &self.username {
            Some(username) => Ok(Some(Credentials {
                username: username.clone(),
                password: credentials::password_from_stdin()?,
                source: "--password-stdin".to_string(),
            })),
            None => credentials::lookup(registry)
                .with_context(|| format!("looking up credentials for {registry}")),
        }
    }

    fn protocol(&self, registry: &str) -> ClientProtocol {
        if self.plain_http || (is_loopback(registry) && self.ca_cert.is_none()) {
            ClientProtocol::Http
        } else {
            ClientProtocol::Https
        }
    }
}

/// A client for one registry with its credentials.
pub struct Session {
    pub client: Client,
    pub auth: RegistryAuth,
    /// `host[:port]` as the user wrote it.
    pub registry: String,
    /// Where the credentials came from, for messages; `None` when anonymous.
    pub credentials_source: Option<String>,
    /// Asks the registry for a 429's Retry-After (see [`Session::retry_after`]).
    probe: reqwest::Client,
    /// `http[s]://registry/v2/`.
    version_url: String,
}

impl Session {
    /// Builds the client and finds the credentials; warns on stderr when they would go over
    /// plain HTTP.
    pub fn new(reference: &Reference, args: &RegistryArgs) -> Result<Session> {
        let registry = reference.registry().to_string();
        let credentials = args.credentials(&registry)?;
        Session::with_credentials(&registry, args, credentials)
    }

    pub fn with_credentials(
        registry: &str,
        args: &RegistryArgs,
        credentials: Option<Credentials>,
    ) -> Result<Session> {
        let protocol = args.protocol(registry);
        let plain_http = matches!(protocol, ClientProtocol::Http);
        let mut extra_root_certificates = Vec::new();
        if let Some(path) = &args.ca_cert {
            let data = std::fs::read(path)
                .with_context(|| format!("reading --ca-cert {}", path.display()))?;
            extra_root_certificates.push(Certificate {
                encoding: CertificateEncoding::Pem,
                data,
            });
        }
        let mut probe = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT);
        for certificate in &extra_root_certificates {
            probe = probe.tls_certs_merge([reqwest::Certificate::from_pem(&certificate.data)
                .context("reading --ca-cert: not a PEM certificate")?]);
        }
        let probe = probe.build().context("building the HTTP client")?;
        let version_url = format!(
            "{}://{registry}/v2/",
            if plain_http { "http" } else { "https" }
        );
        let client = Client::new(ClientConfig {
            protocol,
            extra_root_certificates,
            connect_timeout: Some(CONNECT_TIMEOUT),
            read_timeout: Some(READ_TIMEOUT),
            ..Default::default()
        });
        let (auth, credentials_source) = match credentials {
            None => (RegistryAuth::Anonymous, None),
            Some(credentials) => {
                eprintln!(
                    "using the credentials of {} for {registry} from {}",
                    credentials.username, credentials.source
                );
                if plain_http {
                    eprintln!(
                        "warning: sending credentials to {registry} over plain HTTP, unencrypted{}",
                        if is_loopback(registry) {
                            " (a loopback registry; pass --ca-cert to use HTTPS)"
                        } else {
                            " (--plain-http)"
                        }
                    );
                }
                (
                    RegistryAuth::Basic(
                        credentials.username,
                        credentials.password.expose().to_string(),
                    ),
                    Some(credentials.source),
                )
            }
        };
        Ok(Session {
            client,
            auth,
            registry: registry.to_string(),
            credentials_source,
            probe,
            version_url,
        })
    }

    /// Authenticates for `operation`, then proves the credentials with a request that needs
    /// them (a HEAD of a blob), so a wrong password fails here, before anything is uploaded.
    pub async fn check_access(
        &self,
        reference: &Reference,
        operation: RegistryOperation,
    ) -> Result<()> {
        let what = format!("authenticating to {}", self.registry);
        self.retry(&what, || self.client.auth(reference, &self.auth, operation))
            .await?;
        // The empty blob's digest: any answer but 401/403 means the credentials were accepted.
        let probe = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        self.retry(&what, || self.client.blob_exists(reference, probe))
            .await?;
        Ok(())
    }

    /// Runs one registry call, retrying transient failures with backoff and jitter; the error
    /// says what to do about it.
    pub async fn retry<T, F, Fut>(&self, what: &str, mut call: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = std::result::Result<T, OciDistributionError>>,
    {
        let mut attempt = 1;
        loop {
            match call().await {
                Ok(value) => return Ok(value),
                Err(error) if attempt < ATTEMPTS && is_transient(&error) => {
                    let retry_after = match status_of(&error) {
                        Some(429) => self.retry_after().await,
                        _ => None,
                    };
                    let (delay, why) = match retry_after {
                        Some(delay) => (delay, " (Retry-After)"),
                        None => (backoff(attempt), ""),
                    };
                    eprintln!(
                        "{what}: {} (try {attempt} of {ATTEMPTS}); retrying in {:.1}s{why}",
                        summary(&error),
                        delay.as_secs_f64()
                    );
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                Err(error) => return Err(self.explain(error)).context(what.to_string()),
            }
        }
    }

    /// How long a rate-limited client should wait: the Retry-After of a 429 to `GET /v2/`,
    /// capped. `None` (back off as usual) when the registry does not say.
    async fn retry_after(&self) -> Option<Duration> {
        let response = self.probe.get(&self.version_url).send().await.ok()?;
        if response.status() != reqwest::StatusCode::TOO_MANY_REQUESTS {
            return None;
        }
        let value = response.headers().get(reqwest::header::RETRY_AFTER)?;
        parse_retry_after(value.to_str().ok()?, std::time::SystemTime::now())
    }

    /// Adds what to do about the usual registry failures to an oci-client error.
    pub fn explain(&self, error: OciDistributionError) -> anyhow::Error {
        let registry = &self.registry;
        let status = status_of(&error);
        let text = error.to_string();
        let hint = if status == Some(401)
            || matches!(error, OciDistributionError::AuthenticationFailure(_))
        {
            match &self.credentials_source {
                Some(source) => format!(
                    "{registry} refused the credentials from {source} (401 Unauthorized): run `cargo xtask login {registry}` with the right password, or pass --username and --password-stdin"
                ),
                None => format!(
                    "{registry} wants credentials (401 Unauthorized): run `cargo xtask login {registry}` (or docker login), or pass --username and --password-stdin"
                ),
            }
        } else if status == Some(403) {
            format!("{registry} denied access to this repository (403 Forbidden)")
        } else if text.contains("400 Bad Request") && text.contains("http://") {
            format!(
                "{registry} answered 400 to plain HTTP, so it probably serves HTTPS: pass --ca-cert <PEM> (loopback registries default to HTTP)"
            )
        } else if text.contains("certificate") || chain_contains(&error, "certificate") {
            format!(
                "{registry}'s TLS certificate is not trusted: pass --ca-cert <PEM>, or --plain-http if it serves HTTP"
            )
        } else if matches!(&error, OciDistributionError::RequestError(inner) if !inner.is_connect())
            && is_connection_error(&error)
        {
            format!(
                "the connection to {registry} broke ({}): run the command again; a push resumes, skipping the blobs already there",
                root_cause(&error)
            )
        } else if is_connection_error(&error) {
            format!(
                "cannot reach {registry}: is it running, and is the protocol right (HTTPS unless --plain-http or loopback)?"
            )
        } else if text.contains("MANIFEST_UNKNOWN")
            || text.contains("manifest unknown")
            || text.contains("NAME_UNKNOWN")
            || matches!(error, OciDistributionError::ImageManifestNotFoundError(_))
        {
            "no such repository, tag or digest in the registry".to_string()
        } else {
            return anyhow::Error::new(error);
        };
        anyhow::Error::new(error).context(hint)
    }
}

/// The HTTP status an error carries, if any.
fn status_of(error: &OciDistributionError) -> Option<u16> {
    match error {
        OciDistributionError::RequestError(error) => error.status().map(|status| status.as_u16()),
        OciDistributionError::ServerError { code, .. } => Some(*code),
        OciDistributionError::UnauthorizedError { .. } => Some(401),
        OciDistributionError::RegistryError { envelope, .. } => {
            use oci_client::errors::OciErrorCode;
            envelope.errors.iter().find_map(|error| match error.code {
                OciErrorCode::Unauthorized => Some(401),
                OciErrorCode::Denied => Some(403),
                OciErrorCode::Toomanyrequests => Some(429),
                _ => None,
            })
        }
        _ => None,
    }
}

fn chain_contains(error: &(dyn std::error::Error + 'static), needle: &str) -> bool {
    let mut source = Some(error);
    while let Some(error) = source {
        if error.to_string().contains(needle) {
            return true;
        }
        source = error.source();
    }
    false
}

fn is_connection_error(error: &OciDistributionError) -> bool {
    match error {
        OciDistributionError::RequestError(error) => {
            error.is_connect()
                || error.is_timeout()
                || (error.is_request() && error.status().is_none())
                || error.is_body()
        }
        // A body that does not match its digest is refused, not fetched again.
        OciDistributionError::IoError(error) => !error
            .get_ref()
            .is_some_and(|inner| inner.is::<oci_client::errors::DigestError>()),
        _ => false,
    }
}

/// 408, 429, 5xx and failures to connect or to read a whole answer are worth another try.
fn is_transient(error: &OciDistributionError) -> bool {
    match status_of(error) {
        Some(status) => status == 408 || status == 429 || (500..600).contains(&status),
        None => is_connection_error(error),
    }
}

/// One line about an error for the retry message.
fn summary(error: &OciDistributionError) -> String {
    match status_of(error) {
        Some(status) => format!("status {status}"),
        None => root_cause(error),
    }
}

/// The innermost error's message: "connection closed before message completed", not the URL.
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut innermost = error;
    while let Some(source) = innermost.source() {
        innermost = source;
    }
    innermost.to_string()
}

/// A Retry-After, delay-seconds or an HTTP-date (IMF-fixdate, as RFC 9110 says senders write
/// it) relative to `now`, capped at [`MAX_RETRY_AFTER`]; a date in the past means no wait.
fn parse_retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let value = value.trim();
    let delay = match value.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => {
            let at = std::time::UNIX_EPOCH + Duration::from_secs(parse_imf_fixdate(value)?);
            at.duration_since(now).unwrap_or_default()
        }
    };
    Some(delay.min(MAX_RETRY_AFTER))
}

/// Seconds since the epoch of `Sun, 06 Nov 1994 08:49:37 GMT`.
fn parse_imf_fixdate(value: &str) -> Option<u64> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (_weekday, rest) = value.split_once(", ")?;
    let fields: Vec<&str> = rest.split(' ').collect();
    let [day, month, year, time, "GMT"] = fields[..] else {
        return None;
    };
    let day: u64 = day.parse().ok()?;
    let month = MONTHS.iter().position(|name| *name == month)? as u64 + 1;
    let year: u64 = year.parse().ok()?;
    let clock: Vec<u64> = time
        .split(':')
        .map(|part| part.parse().ok())
        .collect::<Option<_>>()?;
    let [hours, minutes, seconds] = clock[..] else {
        return None;
    };
    if !(1..=31).contains(&day) || year < 1970 || hours > 23 || minutes > 59 || seconds > 60 {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm, years from March).
    let (year, month) = if month <= 2 {
        (year - 1, month + 9)
    } else {
        (year, month - 3)
    };
    let era = year / 400;
    let year_of_era = year % 400;
    let day_of_year = (153 * month + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = (era * 146_097 + day_of_era).checked_sub(719_468)?;
    Some(days * 86_400 + hours * 3_600 + minutes * 60 + seconds)
}

/// Exponential backoff with jitter: a random delay between half and all of 200ms, 400ms,
/// 800ms, … (10s at most), so clients that failed together do not retry together.
fn backoff(attempt: u32) -> Duration {
    let ceiling = FIRST_BACKOFF
        .saturating_mul(1 << (attempt - 1).min(16))
        .min(MAX_BACKOFF);
    ceiling.mul_f64(0.5 + fastrand::f64() / 2.0)
}

/// Blobs at least this large get a progress bar.
const PROGRESS_THRESHOLD: u64 = 1024 * 1024;

/// A progress bar on stderr for a large transfer, when stderr is a terminal (never in `--json`
/// pipelines or tests, whose stderr is a pipe).
pub fn progress(message: String, total: u64) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    if total < PROGRESS_THRESHOLD || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(total),
        indicatif::ProgressDrawTarget::stderr(),
    );
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(message);
    Some(bar)
}

pub fn is_loopback(registry: &str) -> bool {
    let host = match registry.strip_prefix('[') {
        Some(bracketed) => bracketed.split(']').next().unwrap_or_default(),
        None => registry.split(':').next().unwrap_or_default(),
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_retry_after_as_seconds_or_a_date_and_caps_it() {
        // 2015-10-21T07:28:00Z.
        let now = std::time::UNIX_EPOCH + Duration::from_secs(1_445_412_480);
        let parsed: Vec<String> = [
            "0",
            " 7 ",
            "3600",
            "Wed, 21 Oct 2015 07:28:30 GMT",
            "Wed, 21 Oct 2015 07:27:00 GMT",
            "Thu, 22 Oct 2015 07:28:00 GMT",
            "Wed, 21 Oct 2015 07:28:30 UTC",
            "-1",
            "soon",
        ]
        .iter()
        .map(|value| match parse_retry_after(value, now) {
            Some(delay) => format!("{value:?}: {}s", delay.as_secs()),
            None => format!("{value:?}: back off"),
        })
        .collect();
        expect_test::expect![[r#"
            "0": 0s
            " 7 ": 7s
            "3600": 60s
            "Wed, 21 Oct 2015 07:28:30 GMT": 30s
            "Wed, 21 Oct 2015 07:27:00 GMT": 0s
            "Thu, 22 Oct 2015 07:28:00 GMT": 60s
            "Wed, 21 Oct 2015 07:28:30 UTC": back off
            "-1": back off
            "soon": back off
        "#]]
        .assert_eq(&(parsed.join("\n") + "\n"));
    }

    #[test]
    fn reads_imf_fixdates() {
        assert_eq!(parse_imf_fixdate("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(
            parse_imf_fixdate("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777)
        );
        assert_eq!(
            parse_imf_fixdate("Tue, 29 Feb 2028 12:00:00 GMT"),
            Some(1_835_438_400)
        );
        assert_eq!(parse_imf_fixdate("Sun, 06 Foo 1994 08:49:37 GMT"), None);
    }
}
