//! `cargo xtask manifests`.

use anyhow::Result;

#[derive(clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> Result<()> {
    anyhow::bail!("cargo xtask manifests is not built yet")
}
