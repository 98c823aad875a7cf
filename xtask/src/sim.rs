//! `cargo xtask sim`.

use anyhow::Result;

#[derive(clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> Result<()> {
    anyhow::bail!("cargo xtask sim is not built yet")
}
