//! `cargo xtask new` as CI sees it: a filter scaffolded into a copy of the workspace passes the
//! checks it carries (its native tests, clippy, its host-sim scenarios and its real-Envoy
//! cases) as generated, with nothing added elsewhere.

use std::process::Command;

use anyhow::{Context, Result, ensure};

use crate::support::{lock_filters, temp_dir};
use crate::{envoy_filters, filter_dir, reproducible, util};

/// Not a name any real filter takes: its build lands in the shared target dir.
const NAME: &str = "scaffold-check";

#[test]
fn a_scaffolded_filter_passes_its_own_tests_as_generated() -> Result<()> {
    let dir = temp_dir()?;
    let copy = dir.path().join("filterkit");
    reproducible::copy_sources(&copy)?;
    let output = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["new", NAME])
        .env("FILTERKIT_PROJECT_ROOT", &copy)
        .output()
        .context("running xtask new in the copy")?;
    ensure!(
        output.status.success(),
        "xtask new failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    filter_dir::filter_json(&copy, NAME)?;

    // Built with this workspace's target dir and wasm flags, so only filterkit (at the copy's
    // path) and the new crate compile; the registry crates' artifacts are reused as they are.
    // No wasm-opt: the checks do not depend on the module's size. The copy's filterkit shares
    // its artifact name with this workspace's (cargo hashes path crates relative to the
    // workspace root), so the build holds target/filters/ still like `publish` does.
    let filters = lock_filters();
    util::run(
        util::cargo_wasm()
            .args(["build", "--quiet", "--target", util::WASM_TARGET])
            .args(["--profile", util::WASM_PROFILE, "-p"])
            .arg(format!("filter-{NAME}"))
            .arg("--manifest-path")
            .arg(copy.join("Cargo.toml"))
            .env("CARGO_TARGET_DIR", util::target_dir()),
    )?;
    let wasm = util::target_dir()
        .join(util::WASM_TARGET)
        .join(util::WASM_PROFILE)
        .join(format!("filter_{}.wasm", NAME.replace('-', "_")));
    ensure!(wasm.is_file(), "{} was not built", wasm.display());
    let wasm = {
        let copied = dir.path().join(format!("{NAME}.wasm"));
        std::fs::copy(&wasm, &copied).with_context(|| format!("copying {}", wasm.display()))?;
        drop(filters);
        copied
    };

    // Its native tests and clippy, as `cargo xtask test` runs them on every filter (stdout
    // captured: the test harness does not see a child's output).
    let in_copy = |verb: &str| {
        let mut command = util::cargo();
        command
            .args([
                verb,
                "--quiet",
                "-p",
                &format!("filter-{NAME}"),
                "--manifest-path",
            ])
            .arg(copy.join("Cargo.toml"))
            .env("CARGO_TARGET_DIR", util::target_dir());
        command
    };
    util::run_capture(&mut in_copy("test"))?;
    util::run_capture(in_copy("clippy").args(["--all-targets", "--", "-D", "warnings"]))?;

    filter_dir::check_scenarios(&copy, NAME, &wasm)?;
    envoy_filters::check_envoy_cases(&copy, NAME, &wasm)
}
