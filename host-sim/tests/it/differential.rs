//! Client-level scenarios (`tests/differential/*.json`) through `exchange`, the model of
//! Envoy's connection manager and filter chain, compared with what Envoy 1.40 did with the
//! same scenarios: `tests/differential/envoy/<name>.json`, recorded with
//! `cargo xtask sim envoy <scenario>` (volatile headers already removed). Chain order, local
//! replies through the chain, pauses between filters, failures and Envoy's own answers are
//! all in there. `tests/differential/known-differences.txt` lists the scenarios where
//! host-sim still differs, with why (the live comparison, xtask's `differential` test, reads
//! it too): an unlisted scenario that differs fails, and so does a listed one that agrees.
//! Every scenario must have a recording.

use std::path::{Path, PathBuf};

use filterkit_host_sim::exchange;
use serde_json::Value;

const VOLATILE: [&str; 3] = ["date", "x-request-id", "x-envoy-upstream-service-time"];

fn module_for(dir: &Path, name: &str) -> PathBuf {
    let target = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target");
    if let Some(filter) = name.strip_prefix("filter:") {
        return target.join(format!("filters/{filter}.wasm"));
    }
    let wat = dir.join(format!("guests/{name}.wat"));
    if wat.exists() {
        return wat;
    }
    target.join(format!("guests/{name}.wasm"))
}

fn strip_volatile(observation: &mut Value, extra: &[String]) {
    let volatile = |name: &Value| {
        let name = name.as_str().unwrap_or_default();
        VOLATILE.contains(&name) || extra.iter().any(|e| e.eq_ignore_ascii_case(name))
    };
    let keep = |headers: &mut Value| {
        if let Some(list) = headers.as_array_mut() {
            list.retain(|pair| !volatile(&pair[0]));
        }
    };
    for response in observation["responses"]
        .as_array_mut()
        .into_iter()
        .flatten()
    {
        keep(&mut response["headers"]);
        if response["upstream_request"].is_object() {
            keep(&mut response["upstream_request"]["headers"]);
        }
    }
}

#[test]
fn exchange_agrees_with_envoy_on_the_recorded_scenarios() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/differential");
    let mut names: Vec<String> = std::fs::read_dir(dir.join("envoy"))
        .expect("tests/differential/envoy exists")
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter_map(|name| name.strip_suffix(".json").map(str::to_string))
        .collect();
    names.sort();
    let mut differ = Vec::new();
    let mut agree = 0;
    for name in &names {
        let text = std::fs::read_to_string(dir.join(format!("{name}.json"))).unwrap();
        let scenario = exchange::parse(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        let path = module_for(&dir, scenario.module.as_deref().unwrap_or_default());
        assert!(
            path.exists(),
            "{} not found: run `cargo xtask build` and `cargo xtask build --guests`",
            path.display()
        );
        let observation =
            exchange::run_path(&path, &scenario).unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut ours = serde_json::to_value(&observation).unwrap();
        strip_volatile(&mut ours, &scenario.volatile_headers);
        let recorded = std::fs::read_to_string(dir.join(format!("envoy/{name}.json"))).unwrap();
        let mut envoy: Value = serde_json::from_str(&recorded).unwrap();
        strip_volatile(&mut envoy, &scenario.volatile_headers);
        if ours == envoy {
            agree += 1;
        } else {
            differ.push(name.as_str());
        }
    }
    let known = known_differences(&dir);
    let mut failures = Vec::new();
    for name in &differ {
        if !known.contains(&name.to_string()) {
            failures.push(format!("{name} differs from Envoy's recording"));
        }
    }
    for name in &known {
        if !names.contains(name) {
            failures.push(format!("{name} is listed but has no recording"));
        } else if !differ.contains(&name.as_str()) {
            failures.push(format!(
                "{name} agrees now: remove it from known-differences.txt"
            ));
        }
    }
    for entry in std::fs::read_dir(&dir).unwrap() {
        let file = entry.unwrap().file_name().to_string_lossy().into_owned();
        if let Some(name) = file.strip_suffix(".json")
            && !names.iter().any(|recorded| recorded == name)
        {
            failures.push(format!(
                "{name} has no recording: `cargo xtask sim envoy` > envoy/{name}.json"
            ));
        }
    }
    eprintln!(
        "{} recorded scenarios: {agree} agree, {} differ ({} listed as known)",
        names.len(),
        differ.len(),
        known.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The scenario names in `known-differences.txt` (lines `name: reason`, `#` comments).
fn known_differences(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("known-differences.txt"))
        .expect("tests/differential/known-differences.txt exists")
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| {
            let (name, _reason) = line
                .split_once(':')
                .unwrap_or_else(|| panic!("{line:?} is not `name: reason`"));
            name.trim().to_string()
        })
        .collect()
}
