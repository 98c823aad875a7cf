//! `cargo xtask login <REGISTRY>` and `logout <REGISTRY>`: docker's credential store, shared
//! with docker and oras (see `credentials`).
//!
//! `login` checks the credentials against the registry before storing them, so a typo fails now
//! rather than at the next push.

use anyhow::{Context, Result, ensure};
use oci_client::RegistryOperation;

use crate::credentials::{self, Credentials};
use crate::transport::{RegistryArgs, Session, runtime};

#[derive(clap::Args)]
pub struct LoginArgs {
    /// The registry, host[:port] (e.g. 127.0.0.1:5000 or myregistry.azurecr.io).
    pub registry: String,
    #[command(flatten)]
    pub registry_options: RegistryArgs,
}

#[derive(clap::Args)]
pub struct LogoutArgs {
    /// The registry, host[:port].
    pub registry: String,
}

pub fn login(args: LoginArgs) -> Result<()> {
    let registry = registry_host(&args.registry)?;
    let username = args.registry_options.username.clone().context(
        "pass --username <USER> --password-stdin, with the password on stdin (never on the command line)",
    )?;
    let password = credentials::password_from_stdin()?;
    let credentials = Credentials {
        username: username.clone(),
        password: password.clone(),
        source: "--password-stdin".to_string(),
    };
    let session = Session::with_credentials(registry, &args.registry_options, Some(credentials))?;
    // Any repository name does: the check is a HEAD of a blob, which needs only the login.
    let probe = crate::oci::parse_reference(&format!("{registry}/filterkit/login-check:probe"))?;
    runtime()?
        .block_on(session.check_access(&probe, RegistryOperation::Pull))
        .with_context(|| format!("logging in to {registry}"))?;
    let store = credentials::store(registry, &username, &password)
        .with_context(|| format!("storing the credentials for {registry}"))?;
    eprintln!("logged in to {registry} as {username}; credentials stored in {store}");
    Ok(())
}

pub fn logout(args: LogoutArgs) -> Result<()> {
    let registry = registry_host(&args.registry)?;
    if credentials::erase(registry)? {
        eprintln!("removed the credentials for {registry}");
    } else {
        eprintln!("no credentials stored for {registry}");
    }
    Ok(())
}

fn registry_host(registry: &str) -> Result<&str> {
    ensure!(
        !registry.is_empty() && !registry.contains(['/', '@']) && !registry.contains("://"),
        "{registry:?} is not a registry: write host[:port], without scheme or repository"
    );
    Ok(registry)
}
