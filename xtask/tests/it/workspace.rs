//! The workspace's invariants, read from `cargo metadata` and the shipped modules: which crate
//! may depend on which, and how big a filter may be.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, Result};
use expect_test::{Expect, expect};
use serde_json::Value;

use crate::{filter_dir, util};

/// Normal (non-dev, non-build) dependencies of each workspace package, transitively, by name.
fn normal_dependencies() -> Result<BTreeMap<String, BTreeSet<String>>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = std::process::Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--locked",
            "--manifest-path",
        ])
        .arg(util::project_root().join("Cargo.toml"))
        .output()
        .context("running cargo metadata")?;
    anyhow::ensure!(
        output.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: Value =
        serde_json::from_slice(&output.stdout).context("parsing cargo metadata")?;
    let name_of = |id: &str| -> String {
        metadata["packages"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|package| package["id"] == id)
            .and_then(|package| package["name"].as_str())
            .unwrap_or(id)
            .to_owned()
    };
    let mut direct: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for node in metadata["resolve"]["nodes"]
        .as_array()
        .context("cargo metadata has no resolve")?
    {
        let id = node["id"].as_str().context("resolve node without id")?;
        let normal = node["deps"].as_array().into_iter().flatten().filter(|dep| {
            dep["dep_kinds"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|kind| kind["kind"].is_null())
        });
        direct.insert(
            id.to_owned(),
            normal
                .filter_map(|dep| dep["pkg"].as_str().map(str::to_owned))
                .collect(),
        );
    }
    let mut result = BTreeMap::new();
    for member in metadata["workspace_members"]
        .as_array()
        .context("no workspace_members")?
    {
        let member = member.as_str().context("workspace member id")?;
        let mut seen = BTreeSet::new();
        let mut stack = direct.get(member).cloned().unwrap_or_default();
        while let Some(id) = stack.pop() {
            if seen.insert(id.clone()) {
                stack.extend(direct.get(&id).cloned().unwrap_or_default());
            }
        }
        result.insert(name_of(member), seen.iter().map(|id| name_of(id)).collect());
    }
    Ok(result)
}

fn check_dependencies(package: &str, forbidden: &[&str], expect: Expect) -> Result<()> {
    let all = normal_dependencies()?;
    let dependencies = all
        .get(package)
        .with_context(|| format!("{package} is not a member"))?;
    let mut shown = String::new();
    for name in forbidden {
        let found = dependencies
            .iter()
            .any(|dependency| dependency == name || dependency.starts_with(&format!("{name}-")));
        shown.push_str(&format!(
            "{name}: {}\n",
            if found { "DEPENDS" } else { "absent" }
        ));
    }
    expect.assert_eq(&shown);
    Ok(())
}

#[test]
fn sdk_depends_only_on_small_no_std_crates() -> Result<()> {
    let all = normal_dependencies()?;
    let sdk = all.get("filterkit").context("filterkit is not a member")?;
    expect![[r#"{"log", "serde", "serde_core", "serde_derive"}"#]]
        .assert_eq(&format!("{:?}", direct_names(sdk)));
    Ok(())
}

/// Proc-macro helpers (syn, quote, proc-macro2, unicode-ident) run at build time and leave
/// nothing in the module; the rest is what the .wasm carries.
fn direct_names(dependencies: &BTreeSet<String>) -> BTreeSet<&str> {
    const BUILD_TIME_ONLY: &[&str] = &["proc-macro2", "quote", "syn", "unicode-ident"];
    dependencies
        .iter()
        .map(String::as_str)
        .filter(|name| !BUILD_TIME_ONLY.contains(name))
        .collect()
}

#[test]
fn host_sim_is_independent_of_the_sdks() -> Result<()> {
    check_dependencies(
        "filterkit-host-sim",
        &["filterkit", "proxy-wasm"],
        expect![[r#"
            filterkit: absent
            proxy-wasm: absent
        "#]],
    )
}

#[test]
fn xtask_links_no_wasm_runtime() -> Result<()> {
    check_dependencies(
        "xtask",
        &[
            "wasmtime",
            "filterkit-host-sim",
            "filterkit",
            "wasmer",
            "wasmi",
        ],
        expect![[r#"
            wasmtime: absent
            filterkit-host-sim: absent
            filterkit: absent
            wasmer: absent
            wasmi: absent
        "#]],
    )
}

#[test]
fn filters_depend_on_filterkit_not_proxy_wasm() -> Result<()> {
    let all = normal_dependencies()?;
    let mut shown = String::new();
    for filter in util::filter_names()? {
        let dependencies = all
            .get(&format!("filter-{filter}"))
            .with_context(|| format!("filters/{filter} is not the crate filter-{filter}"))?;
        shown.push_str(&format!(
            "{filter}: filterkit={} proxy-wasm={} wasm-bindgen={}\n",
            dependencies.contains("filterkit"),
            dependencies.contains("proxy-wasm"),
            dependencies.contains("wasm-bindgen"),
        ));
    }
    let wrong: Vec<&str> = shown
        .lines()
        .filter(|line| !line.ends_with(": filterkit=true proxy-wasm=false wasm-bindgen=false"))
        .collect();
    assert!(
        wrong.is_empty(),
        "filters must depend on filterkit only: {wrong:?}"
    );
    Ok(())
}

/// Test guests (`host-sim/tests/guests/<name>`, crate `guest-<name>`) declare the ABI
/// themselves, like host-sim: a scenario must observe the host, not an SDK's reading of the
/// spec. They are not filters (no size budget, never shipped).
#[test]
fn test_guests_depend_on_neither_sdk() -> Result<()> {
    let all = normal_dependencies()?;
    let mut shown = String::new();
    for guest in util::guest_names()? {
        let dependencies = all.get(&format!("guest-{guest}")).with_context(|| {
            format!("host-sim/tests/guests/{guest} is not the workspace crate guest-{guest}")
        })?;
        let is_filter = util::filter_names()?.contains(&guest);
        shown.push_str(&format!(
            "{guest}: filterkit={} proxy-wasm={} filter={is_filter}\n",
            dependencies.contains("filterkit"),
            dependencies.contains("proxy-wasm"),
        ));
    }
    expect![[r#"
        probe: filterkit=false proxy-wasm=false filter=false
    "#]]
    .assert_eq(&shown);
    Ok(())
}

/// Shipped-size budgets, from each filter's `filters/<name>/filter.json`: every byte of a
/// module becomes memory in every sidecar (REFERENCE, "Costs measured here").
#[test]
fn every_filter_has_a_size_budget() -> Result<()> {
    let root = util::project_root();
    let missing: Vec<String> = util::filter_names()?
        .iter()
        .filter_map(|name| filter_dir::filter_json(&root, name).err())
        .map(|error| format!("{error:#}"))
        .collect();
    assert!(missing.is_empty(), "{missing:#?}");
    Ok(())
}

#[test]
fn shipped_filters_fit_their_size_budget() -> Result<()> {
    let _filters = crate::support::lock_filters();
    let root = util::project_root();
    let mut over = Vec::new();
    for name in util::filter_names()? {
        let budget = filter_dir::filter_json(&root, &name)?.size_budget_bytes;
        let path = util::filter_wasm(&name);
        let size = std::fs::metadata(&path)
            .with_context(|| {
                format!("target/filters/{name}.wasm not found: run `cargo xtask build`")
            })?
            .len();
        if size > budget {
            over.push(format!("{name}: {size} bytes, budget {budget}"));
        }
    }
    assert!(over.is_empty(), "over the size budget: {over:?}");
    Ok(())
}
