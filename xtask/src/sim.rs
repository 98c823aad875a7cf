//! `cargo xtask sim <ARGS>...`: host-sim's `filter-sim` through cargo, so xtask never links
//! a Wasm runtime.

use anyhow::{Context, Result};

use crate::util;

#[derive(clap::Args)]
pub struct Args {
    /// Arguments for filter-sim (see `cargo xtask sim -- --help`).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

pub fn run(args: Args) -> Result<()> {
    let mut command = util::cargo();
    command
        .current_dir(util::project_root())
        .args([
            "run",
            "--quiet",
            "-p",
            "filterkit-host-sim",
            "--bin",
            "filter-sim",
            "--",
        ])
        .args(&args.args);
    util::run(&mut command).context("running filter-sim")
}
