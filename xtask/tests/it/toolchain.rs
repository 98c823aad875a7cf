//! `build` (and so `publish`, the README's main command) on a toolchain without the
//! wasm32-wasip1 target: it runs `rustup target add` as `setup` does, or says what to run.
//! Fake `rustc` and `rustup` scripts on PATH stand in for such a toolchain.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};

use crate::support::temp_dir;
use crate::util;

/// Writes an executable shell script.
fn script(path: &Path, text: &str) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
    Ok(())
}

/// `xtask build add-header` with only `bin` on PATH; returns stderr.
fn build_with_path(bin: &Path) -> Result<String> {
    let output = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["build", "add-header"])
        .env("PATH", bin)
        .current_dir(util::project_root())
        .output()
        .context("running xtask build")?;
    assert!(!output.status.success());
    Ok(String::from_utf8(output.stderr)?)
}

#[test]
fn build_installs_the_missing_wasm_target_with_rustup() -> Result<()> {
    let dir = temp_dir()?;
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin)?;
    // rustc says the target's library directory is one that does not exist: not installed.
    script(
        &bin.join("rustc"),
        "#!/bin/sh\necho /nonexistent/wasm32-wasip1/lib\n",
    )?;
    let log = dir.path().join("rustup.log");
    script(
        &bin.join("rustup"),
        &format!("#!/bin/sh\necho \"$@\" >> '{}'\nexit 1\n", log.display()),
    )?;
    let stderr = build_with_path(&bin)?;
    assert_eq!(std::fs::read_to_string(&log)?, "target add wasm32-wasip1\n");
    assert!(
        stderr.contains("rust: installing the wasm32-wasip1 target")
            && stderr.contains("error: installing the wasm32-wasip1 target"),
        "{stderr}"
    );

    std::fs::remove_file(bin.join("rustup"))?;
    let stderr = build_with_path(&bin)?;
    assert!(
        stderr.contains(
            "the wasm32-wasip1 target is missing and rustup is not on PATH: install the target for your toolchain (rustup target add wasm32-wasip1), or run `cargo xtask setup`"
        ),
        "{stderr}"
    );
    Ok(())
}
