//! Every differential scenario (`host-sim/tests/differential/*.json`) through host-sim and a
//! real Envoy with `cargo xtask sim diff`: the test fails listing each scenario where they
//! differ, with its diff.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::support;
use crate::util;

fn scenarios() -> Result<Vec<PathBuf>> {
    let dir = util::project_root().join("host-sim/tests/differential");
    let mut scenarios = Vec::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry
            .with_context(|| format!("reading {}", dir.display()))?
            .path();
        if path
            .extension()
            .is_some_and(|extension| extension == "json")
        {
            scenarios.push(path);
        }
    }
    scenarios.sort();
    Ok(scenarios)
}

#[test]
fn host_sim_agrees_with_envoy_on_every_scenario() -> Result<()> {
    // Missing Envoy fails here, naming `cargo xtask setup`, before any scenario runs.
    support::tool("envoy")?;
    let scenarios = scenarios()?;
    if scenarios.is_empty() {
        bail!("no scenario under host-sim/tests/differential/");
    }
    // Scenarios may load target/filters/*.wasm, which `publish` tests rebuild.
    let _filters = support::lock_filters();
    let mut differing = Vec::new();
    for scenario in &scenarios {
        let shown = util::relative(scenario);
        let output = Command::new(env!("CARGO_BIN_EXE_xtask"))
            .args(["sim", "diff"])
            .arg(scenario)
            .current_dir(util::project_root())
            .output()
            .with_context(|| format!("running xtask sim diff {shown}"))?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        if output.status.success() {
            eprintln!("{shown}: host-sim and Envoy agree");
        } else {
            // The diff, or why the scenario could not run, is in the error at the end.
            let reason = stderr
                .rfind("error: ")
                .map_or(stderr.as_ref(), |start| &stderr[start..]);
            differing.push(format!("{shown}\n{}", reason.trim_end()));
        }
    }
    if !differing.is_empty() {
        bail!(
            "{} of {} scenarios differ between host-sim and Envoy:\n\n{}",
            differing.len(),
            scenarios.len(),
            differing.join("\n\n")
        );
    }
    Ok(())
}
