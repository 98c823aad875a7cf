//! `cargo xtask setup`.

use anyhow::Result;

#[derive(clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> Result<()> {
    anyhow::bail!("cargo xtask setup is not built yet")
}
