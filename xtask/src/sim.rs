//! `cargo xtask sim <VERB>`: host-sim's `filter-sim` through cargo, so xtask never links a
//! Wasm runtime, and the differential runner (`envoy`, `diff`) in [`crate::diff`].

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::{diff, util};

#[derive(clap::Args)]
#[command(
    after_help = "Any other command is filter-sim's (run, check, exchange): `cargo xtask sim run --help`."
)]
pub struct Args {
    #[command(subcommand)]
    command: SimCommand,
}

#[derive(clap::Subcommand)]
enum SimCommand {
    /// Print what a real Envoy does with a differential scenario (its observation JSON).
    Envoy(diff::Args),
    /// Run a differential scenario through host-sim and Envoy and compare; fails on a diff.
    Diff(diff::Args),
    /// Any other verb goes to filter-sim as is (`run`, `check`, `exchange`, `--help`).
    #[command(external_subcommand)]
    FilterSim(Vec<String>),
}

pub fn run(args: Args) -> Result<()> {
    match args.command {
        SimCommand::Envoy(args) => diff::envoy(args),
        SimCommand::Diff(args) => diff::diff(args),
        SimCommand::FilterSim(args) => {
            util::run(filter_sim().args(&args)).context("running filter-sim")
        }
    }
}

/// `cargo run` of host-sim's `filter-sim`, ready for its arguments.
pub fn filter_sim() -> Command {
    let mut command = util::cargo();
    command.current_dir(util::project_root()).args([
        "run",
        "--quiet",
        "-p",
        "filterkit-host-sim",
        "--bin",
        "filter-sim",
        "--",
    ]);
    command
}

/// Configures the plugin in host-sim as Envoy does before it accepts a config (import check,
/// VM start, `on_configure` canary), so a configuration Envoy would refuse (and then answer
/// 503 for every request, failing closed) is caught before it is published.
pub fn check_config(wasm: &Path, root_id: &str, parameters: Option<&str>) -> Result<()> {
    let mut command = filter_sim();
    command.arg("check").arg(wasm).args([
        "--root-id",
        root_id,
        "--config",
        parameters.unwrap_or(""),
    ]);
    let shown = util::show(&command);
    eprintln!("$ {shown}");
    let output = command
        .output()
        .with_context(|| format!("starting `{shown}`"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    match output.status.code() {
        Some(0) => Ok(()),
        Some(1) if stdout.starts_with("rejected") => bail!(
            "Envoy would refuse this plugin configuration (fix --parameters, or pass --no-check to publish anyway):\n{}",
            stdout.trim_end()
        ),
        _ => bail!(
            "`{shown}` failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim_end()
        ),
    }
}
