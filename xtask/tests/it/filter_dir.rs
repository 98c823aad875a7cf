//! What each filter carries in its own directory for the workspace's generic tests, so a new
//! filter needs no edit outside `filters/<name>/`:
//!
//! - `filter.json`: `{"size_budget_bytes": N}`, the shipped module's size budget;
//! - `tests/scenarios/<case>.json` with `<case>.trace`: `filter-sim run` scenarios and their
//!   traces (run by host-sim's `filters.rs`, and here for a scaffolded filter);
//! - `tests/envoy/<case>.json` with `<case>.head`: `{"parameters": "..."}` for the seed's
//!   deployment in a real Envoy, and the response head (or Envoy's refusal) it gives;
//! - `bench.json`, when the filter does not load with an empty configuration (`bench.rs`).
//!
//! A filter lacking one fails a test naming the file to add.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};

use crate::util;

/// `filters/<name>/filter.json`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterJson {
    /// The shipped module's size budget: every byte becomes memory in every sidecar.
    pub size_budget_bytes: u64,
}

/// One `tests/envoy/<case>.json`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvoyCase {
    /// The plugin configuration, as `--parameters` gives it.
    pub parameters: String,
}

fn filter_dir(root: &Path, filter: &str) -> PathBuf {
    root.join("filters").join(filter)
}

/// Reads `filters/<filter>/filter.json`, or says to add it.
pub fn filter_json(root: &Path, filter: &str) -> Result<FilterJson> {
    let path = filter_dir(root, filter).join("filter.json");
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "reading filters/{filter}/filter.json: add it, with the filter's size budget: \
             {{\"size_budget_bytes\": 32768}}"
        )
    })?;
    serde_json::from_str(&text).with_context(|| format!("filters/{filter}/filter.json"))
}

/// The files under `filters/<filter>/<dir>` ending in `.json`, sorted; an error naming the
/// file to add when there is none.
pub fn cases(root: &Path, filter: &str, dir: &str, what: &str) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = match std::fs::read_dir(filter_dir(root, filter).join(dir)) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
            .collect(),
        Err(_) => Vec::new(),
    };
    files.sort();
    if files.is_empty() {
        bail!("filters/{filter} has no {what}: add filters/{filter}/{dir}/<case>.json");
    }
    Ok(files)
}

/// A filter's Envoy cases, as (case file, parsed).
pub fn envoy_cases(root: &Path, filter: &str) -> Result<Vec<(PathBuf, EnvoyCase)>> {
    cases(root, filter, "tests/envoy", "real-Envoy case")?
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            let case = serde_json::from_str(&text)
                .with_context(|| format!("{}: want {{\"parameters\": \"...\"}}", path.display()))?;
            Ok((path, case))
        })
        .collect()
}

/// Runs each of the filter's scenarios through `filter-sim run` (host-sim's CLI, built from
/// this workspace) against `wasm`, and compares its output with `<case>.trace`.
pub fn check_scenarios(root: &Path, filter: &str, wasm: &Path) -> Result<()> {
    for scenario in cases(root, filter, "tests/scenarios", "host-sim scenario")? {
        let output = util::run_capture(
            util::cargo()
                .current_dir(util::project_root())
                .args([
                    "run",
                    "--quiet",
                    "-p",
                    "filterkit-host-sim",
                    "--bin",
                    "filter-sim",
                ])
                .arg("--")
                .arg("run")
                .arg(wasm)
                .arg(&scenario),
        )
        .with_context(|| format!("running {}", scenario.display()))?;
        let trace = scenario.with_extension("trace");
        let expected = std::fs::read_to_string(&trace)
            .with_context(|| format!("reading {}", trace.display()))?;
        ensure!(
            output == expected,
            "{} gives another trace than {}:\n{output}",
            scenario.display(),
            trace.display()
        );
    }
    Ok(())
}
