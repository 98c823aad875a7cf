//! `cargo xtask test`: everything CI checks, in order, stopping at the first failure.
//!
//! setup, rustfmt, clippy (native, then wasm32 per package with the build's RUSTFLAGS so nothing
//! is rebuilt twice), the build of every filter and test guest, then every test (unit, host-sim, end-to-end;
//! `--no-fail-fast`, so one run reports every failing test binary), then `cargo xtask bench --smoke`.

use std::process::Command;

use anyhow::{Context, Result};

use crate::{build, setup, util};

/// Crates besides the filters that compile for wasm32-wasip1, linted for that target.
const WASM_PACKAGES: &[&str] = &["filterkit", "proxy-wasm-add-header"];

#[derive(clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> Result<()> {
    let total = util::Timer::start();
    step("setup", || setup::run(setup::Args {}))?;
    step("fmt", || {
        util::run(&mut cargo(&["fmt", "--all", "--", "--check"])).context("run `cargo fmt --all`")
    })?;
    step("clippy (native)", || {
        util::run(&mut cargo(&[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]))
    })?;
    step("clippy (wasm32-wasip1)", || {
        // One cargo run per package: in a joint run, proxy-wasm-add-header's serde `std`
        // feature is unified into filterkit's serde, which links std next to filterkit's own
        // panic handler ("duplicate lang item `panic_impl`").
        let filters: Vec<String> = util::filter_names()?
            .iter()
            .map(|filter| format!("filter-{filter}"))
            .chain(
                util::guest_names()?
                    .iter()
                    .map(|guest| format!("guest-{guest}")),
            )
            .chain(
                util::sdk_guest_names()?
                    .iter()
                    .map(|guest| format!("sdk-guest-{guest}")),
            )
            .collect();
        for package in WASM_PACKAGES
            .iter()
            .copied()
            .chain(filters.iter().map(String::as_str))
        {
            let mut command = util::cargo_wasm();
            command.current_dir(util::project_root()).args([
                "clippy",
                "--target",
                util::WASM_TARGET,
                "-p",
                package,
                "--",
                "-D",
                "warnings",
            ]);
            util::run(&mut command)?;
        }
        Ok(())
    })?;
    step("build filters", || {
        for built in build::build(&[], true)? {
            eprintln!(
                "{}\t{} bytes\t{}",
                built.wasm.display(),
                built.size,
                built.sha256
            );
        }
        Ok(())
    })?;
    step("build test guests", || {
        for built in build::build_guests(&[])? {
            eprintln!(
                "{}\t{} bytes\t{}",
                built.wasm.display(),
                built.size,
                built.sha256
            );
        }
        Ok(())
    })?;
    step("tests", || {
        util::run(&mut cargo(&["test", "--workspace", "--no-fail-fast"]))
    })?;
    // Keeps `cargo xtask bench` from rotting: every case once, little traffic, nothing timed.
    step("bench smoke", || {
        util::run(&mut cargo(&["xtask", "bench", "--smoke"]))
    })?;
    eprintln!("cargo xtask test: all steps passed in {}", total.elapsed());
    Ok(())
}

fn cargo(args: &[&str]) -> Command {
    let mut command = util::cargo();
    command.current_dir(util::project_root()).args(args);
    command
}

fn step(name: &str, body: impl FnOnce() -> Result<()>) -> Result<()> {
    eprintln!("==> {name}");
    let timer = util::Timer::start();
    let result = body();
    match &result {
        Ok(()) => eprintln!("==> {name}: ok ({})", timer.elapsed()),
        Err(_) => eprintln!("==> {name}: FAILED after {}", timer.elapsed()),
    }
    result.with_context(|| format!("step `{name}` of cargo xtask test failed"))
}
