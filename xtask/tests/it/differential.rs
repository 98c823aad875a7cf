//! Every differential scenario (`host-sim/tests/differential/*.json`) through host-sim and a
//! real Envoy with `cargo xtask sim diff`. The scenarios listed in
//! `host-sim/tests/differential/known-differences.txt` may differ (their diff is printed); the
//! test fails on any other scenario that differs, with its diff, and on a listed one that
//! agrees (so the list cannot rot).

use std::path::PathBuf;
use std::process::Command;

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use expect_test::{Expect, expect};

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

/// `known-differences.txt`: scenario name → why host-sim differs (`#` lines are comments).
fn known_differences() -> Result<BTreeMap<String, String>> {
    let path = util::project_root().join("host-sim/tests/differential/known-differences.txt");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let mut known = BTreeMap::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, reason) = line
            .split_once(':')
            .with_context(|| format!("{}: {line:?} is not `name: reason`", path.display()))?;
        known.insert(name.trim().to_owned(), reason.trim().to_owned());
    }
    Ok(known)
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
    let known = known_differences()?;
    let mut failures = Vec::new();
    let (mut agree, mut known_differ) = (0, 0);
    for scenario in &scenarios {
        let shown = util::relative(scenario);
        let name = scenario
            .file_stem()
            .map(|stem| stem.to_string_lossy().into_owned())
            .unwrap_or_default();
        let reason = known.get(&name);
        let output = Command::new(env!("CARGO_BIN_EXE_xtask"))
            .args(["sim", "diff"])
            .arg(scenario)
            .current_dir(util::project_root())
            .output()
            .with_context(|| format!("running xtask sim diff {shown}"))?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        // The diff, or why the scenario could not run (filter-sim's own error first), is in
        // the errors at the end; what comes before is progress.
        let diff = stderr
            .find("error: ")
            .map_or(stderr.as_ref(), |start| &stderr[start..])
            .trim_end();
        match (output.status.success(), reason) {
            (true, None) => {
                agree += 1;
                eprintln!("{shown}: host-sim and Envoy agree");
            }
            (true, Some(_)) => failures.push(format!(
                "{shown}: host-sim and Envoy agree now: remove it from known-differences.txt"
            )),
            (false, Some(reason)) => {
                known_differ += 1;
                eprintln!("{shown}: a known difference ({reason})\n{diff}");
            }
            (false, None) => failures.push(format!("{shown}\n{diff}")),
        }
    }
    let unknown: Vec<&String> = known
        .keys()
        .filter(|name| {
            !scenarios
                .iter()
                .any(|path| path.file_stem() == Some(std::ffi::OsStr::new(name.as_str())))
        })
        .collect();
    for name in unknown {
        failures.push(format!(
            "known-differences.txt lists {name}, which is no scenario"
        ));
    }
    eprintln!(
        "{} scenarios: {agree} agree, {known_differ} differ as known, {} fail",
        scenarios.len(),
        failures.len()
    );
    if !failures.is_empty() {
        bail!(
            "{} of {} scenarios fail the comparison between host-sim and Envoy:\n\n{}",
            failures.len(),
            scenarios.len(),
            failures.join("\n\n")
        );
    }
    Ok(())
}

/// `cargo xtask sim envoy <scenario>`: Envoy's observation, pinned, so a change in what Envoy
/// adds (headers, their order) shows here even while host-sim disagrees.
fn check_envoy(scenario: &str, expect: Expect) -> Result<()> {
    let _filters = support::lock_filters();
    let path = format!("host-sim/tests/differential/{scenario}");
    expect.assert_eq(&support::xtask(&["sim", "envoy", &path])?);
    Ok(())
}

#[test]
fn envoy_observes_add_header_on_both_protocols() -> Result<()> {
    check_envoy(
        "add-header-get.json",
        expect![[r#"
        {
          "configuration": "accepted",
          "responses": [
            {
              "name": "get",
              "status": 200,
              "headers": [
                ["x-up", "1"],
                ["content-type", "text/plain"],
                ["content-length", "6"],
                ["resp-header-demo", "added by our filter"],
                ["hello", "hello details"],
                ["server", "envoy"]
              ],
              "body": "hello\n",
              "trailers": [],
              "reset": false,
              "upstream_request": {
                "method": "GET",
                "path": "/details?id=1",
                "authority": "example.com",
                "headers": [
                  ["x-a", "1"],
                  ["x-mixed-case", "2"],
                  ["x-a", "3"],
                  ["x-forwarded-proto", "http"],
                  ["x-envoy-expected-rq-timeout-ms", "15000"]
                ],
                "body": "",
                "trailers": []
              }
            },
            {
              "name": "get-h2",
              "status": 404,
              "headers": [
                ["x-up", "1"],
                ["content-type", "text/plain"],
                ["content-length", "0"],
                ["resp-header-demo", "added by our filter"],
                ["hello", "hello details"],
                ["server", "envoy"]
              ],
              "body": "",
              "trailers": [],
              "reset": false,
              "upstream_request": {
                "method": "GET",
                "path": "/",
                "authority": "example.com",
                "headers": [
                  ["x-a", "1"],
                  ["x-forwarded-proto", "http"],
                  ["x-envoy-expected-rq-timeout-ms", "15000"]
                ],
                "body": "",
                "trailers": []
              }
            }
          ],
          "metrics": {}
        }
    "#]],
    )
}

#[test]
fn envoy_observes_a_rejected_configuration() -> Result<()> {
    check_envoy(
        "add-header-rejected.json",
        expect![[r#"
        {
          "configuration": "rejected",
          "responses": [],
          "metrics": {}
        }
    "#]],
    )
}
