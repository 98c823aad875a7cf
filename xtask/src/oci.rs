//! Wasm OCI artifacts: image layouts, push, pull.

use anyhow::Result;

#[derive(clap::Args)]
pub struct PackageArgs {}
#[derive(clap::Args)]
pub struct PushArgs {}
#[derive(clap::Args)]
pub struct PullArgs {}

pub fn package(_args: PackageArgs) -> Result<()> {
    anyhow::bail!("not built yet")
}
pub fn push(_args: PushArgs) -> Result<()> {
    anyhow::bail!("not built yet")
}
pub fn pull(_args: PullArgs) -> Result<()> {
    anyhow::bail!("not built yet")
}
