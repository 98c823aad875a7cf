//! Running filters in a real Envoy: bootstrap config and `cargo xtask run`.

use anyhow::Result;

#[derive(clap::Args)]
pub struct RunArgs {}

pub fn run(_args: RunArgs) -> Result<()> {
    anyhow::bail!("cargo xtask run is not built yet")
}
