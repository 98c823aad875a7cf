//! Every differential scenario (`host-sim/tests/differential/*.json`) through host-sim and a
//! real Envoy with `cargo xtask sim diff`: the test fails listing each scenario where they
//! differ, with its diff.

use std::path::PathBuf;
use std::process::Command;

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
            // The diff, or why the scenario could not run (filter-sim's own error first), is
            // in the errors at the end; what comes before is progress.
            let reason = stderr
                .find("error: ")
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
