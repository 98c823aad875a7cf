//! Reproducible builds: the same sources give the same shipped `.wasm` from any clone path.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, ensure};

use crate::support::{lock_filters, temp_dir};
use crate::util;

/// Copies the workspace's sources (what git tracks, and new files it does not ignore) to `to`.
pub fn copy_sources(to: &Path) -> Result<()> {
    let root = util::project_root();
    let listed = Command::new("git")
        .args([
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ])
        .current_dir(&root)
        .output()
        .context("running git ls-files")?;
    ensure!(
        listed.status.success(),
        "git ls-files failed in {}",
        root.display()
    );
    for path in listed
        .stdout
        .split(|&byte| byte == 0)
        .filter(|path| !path.is_empty())
    {
        let relative = Path::new(std::str::from_utf8(path).context("a non-UTF-8 path")?);
        let (from, to) = (root.join(relative), to.join(relative));
        if !from.is_file() {
            continue; // Deleted in the working tree but still in the index.
        }
        std::fs::create_dir_all(to.parent().context("a path without a parent")?)?;
        std::fs::copy(&from, &to).with_context(|| format!("copying {}", from.display()))?;
    }
    Ok(())
}

#[test]
fn another_clone_path_builds_identical_wasm() -> Result<()> {
    let dir = temp_dir()?;
    let clone = dir.path().join("elsewhere/filterkit");
    copy_sources(&clone)?;
    let output = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["build", "add-header", "--json"])
        .env("FILTERKIT_PROJECT_ROOT", &clone)
        .env("CARGO_TARGET_DIR", clone.join("target"))
        .output()
        .context("running xtask build in the copy")?;
    ensure!(
        output.status.success(),
        "xtask build in {} failed:\n{}",
        clone.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let elsewhere = std::fs::read(clone.join("target/filters/add-header.wasm"))?;
    let here = {
        let _filters = lock_filters();
        std::fs::read(util::filter_wasm("add-header"))
            .context("target/filters/add-header.wasm not found: run `cargo xtask build`")?
    };
    assert_eq!(
        util::sha256_digest(&elsewhere),
        util::sha256_digest(&here),
        "add-header.wasm built at {} differs from the one built here",
        clone.display()
    );
    Ok(())
}
