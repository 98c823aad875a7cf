//! `cargo xtask bench`: shipped sizes and host-sim throughput, written to target/bench/results.md.
//!
//! Sizes: every filter as shipped (target/filters/), and the plain proxy-wasm reference filter
//! built with proxy-wasm-rust-sdk's example profile. Speed: `filter-sim bench` on add-header.

use std::fmt::Write as _;

use anyhow::{Context, Result};

use crate::{build, util};

/// The plain proxy-wasm reference filter and its profile.
const REFERENCE_PACKAGE: &str = "proxy-wasm-add-header";
const REFERENCE_PROFILE: &str = "rust-sdk-example";
/// The seed's plugin configuration.
const SEED_CONFIG: &str = r#"{"name":"hello","value":"hello details"}"#;

#[derive(clap::Args)]
pub struct Args {
    /// Plugin configuration for `filter-sim bench` (the seed's by default).
    #[arg(long, default_value = SEED_CONFIG)]
    pub config: String,
    /// Extra arguments for `filter-sim bench` after the module path.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub sim_args: Vec<String>,
}

pub fn run(args: Args) -> Result<()> {
    let built = build::build(&[], true)?;

    eprintln!(
        "building the proxy-wasm reference ({REFERENCE_PACKAGE}, profile {REFERENCE_PROFILE})"
    );
    util::run(util::cargo_wasm().current_dir(util::project_root()).args([
        "build",
        "--target",
        util::WASM_TARGET,
        "--profile",
        REFERENCE_PROFILE,
        "-p",
        REFERENCE_PACKAGE,
    ]))
    .context("building the proxy-wasm reference filter")?;
    let reference = build::cargo_output(REFERENCE_PACKAGE, REFERENCE_PROFILE);
    let reference_size = std::fs::metadata(&reference)
        .with_context(|| format!("reading {}", reference.display()))?
        .len();

    let reference_optimized = build::optimize(&util::tool("wasm-opt")?, &reference)?.len();

    let add_header = util::filter_wasm("add-header");
    let mut sim = util::cargo();
    sim.current_dir(util::project_root())
        .args([
            "run",
            "--quiet",
            "--release",
            "-p",
            "filterkit-host-sim",
            "--bin",
            "filter-sim",
            "--",
            "bench",
        ])
        .arg(&add_header)
        .args(["--config", &args.config])
        .args(&args.sim_args);
    let sim_output =
        util::run_capture(&mut sim).context("running `filter-sim bench` (host-sim)")?;

    let mut results =
        String::from("# Filterkit bench\n\n## Shipped sizes\n\n| module | bytes |\n|---|---|\n");
    for filter in &built {
        let _ = writeln!(
            results,
            "| {} (target/filters/{}.wasm{}) | {} |",
            filter.name,
            filter.name,
            if filter.wasm_opt {
                ", wasm-opt -Oz"
            } else {
                ""
            },
            filter.size
        );
    }
    let _ = writeln!(
        results,
        "| {REFERENCE_PACKAGE} (proxy-wasm crate, profile {REFERENCE_PROFILE}) | {reference_size} |"
    );
    let _ = writeln!(
        results,
        "| {REFERENCE_PACKAGE} (same, after wasm-opt -Oz) | {reference_optimized} |"
    );
    let _ = write!(
        results,
        "\n## filter-sim bench {}\n\n```\n{}\n```\n",
        util::relative(&add_header),
        sim_output.trim_end()
    );

    let path = util::target_dir().join("bench").join("results.md");
    util::write_atomic(&path, results.as_bytes())?;
    print!("{results}");
    eprintln!("wrote {}", path.display());
    Ok(())
}
