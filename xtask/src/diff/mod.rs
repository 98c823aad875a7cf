//! The differential runner: `cargo xtask sim envoy` (what a real Envoy does with a scenario)
//! and `cargo xtask sim diff` (that and host-sim's `filter-sim exchange`, compared).
//!
//! The scenario format and the observation both sides print are specified in
//! `host-sim/tests/differential/README.md`. Start reading at [`runner::observe`]; the wire
//! (client, servers) never touches Envoy, so it is tested against itself.

mod bootstrap;
mod client;
mod observation;
mod runner;
mod scenario;
mod servers;
mod tcp;
mod wire;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::util;
use scenario::Scenario;

#[derive(clap::Args)]
pub struct Args {
    /// The guest: a path (.wasm or .wat), `filter:<name>`, or a test guest's name
    /// [default: the scenario's `module`].
    #[arg(value_name = "MODULE")]
    first: PathBuf,
    /// The scenario file (host-sim/tests/differential/*.json).
    #[arg(value_name = "SCENARIO")]
    second: Option<PathBuf>,
}

impl Args {
    /// `(module, scenario)`: with one argument it is the scenario.
    fn split(&self) -> (Option<&str>, &Path) {
        match &self.second {
            Some(scenario) => (self.first.to_str(), scenario),
            None => (None, &self.first),
        }
    }
}

/// `cargo xtask sim envoy`: prints Envoy's observation JSON.
pub fn envoy(args: Args) -> Result<()> {
    let (module, scenario_path) = args.split();
    let observation = observe_envoy(module, scenario_path)?;
    print!("{}", observation::pretty(&observation));
    Ok(())
}

/// `cargo xtask sim diff`: host-sim's observation against Envoy's; a mismatch prints a diff
/// and fails.
pub fn diff(args: Args) -> Result<()> {
    let (module, scenario_path) = args.split();
    let scenario = Scenario::read(scenario_path)?;
    let wasm_or_wat = resolve_module(module, &scenario, scenario_path)?;
    let shown_scenario = util::relative(scenario_path);

    let mut command = crate::sim::filter_sim();
    command.arg("exchange").arg(&wasm_or_wat).arg(scenario_path);
    let host_sim_text = util::run_capture(&mut command).context("running filter-sim exchange")?;
    let host_sim: serde_json::Value = serde_json::from_str(&host_sim_text)
        .context("filter-sim exchange printed something that is not JSON")?;

    let envoy = serde_json::to_value(observe_envoy(module, scenario_path)?)?;
    judge(&envoy, &host_sim, &scenario, &shown_scenario)?;
    eprintln!("host-sim and Envoy agree on {shown_scenario}");
    Ok(())
}

/// Fails with the unified diff (`--- envoy`, `+++ host-sim`) when the observations differ.
fn judge(
    envoy: &serde_json::Value,
    host_sim: &serde_json::Value,
    scenario: &Scenario,
    shown_scenario: &str,
) -> Result<()> {
    match observation::compare(envoy, host_sim, &scenario.volatile_headers) {
        None => Ok(()),
        Some(diff) => bail!("host-sim and Envoy differ on {shown_scenario}:\n{diff}"),
    }
}

fn observe_envoy(module: Option<&str>, scenario_path: &Path) -> Result<observation::Observation> {
    let scenario = Scenario::read(scenario_path)?;
    let module = resolve_module(module, &scenario, scenario_path)?;
    eprintln!(
        "{}: {} (module {})",
        util::relative(scenario_path),
        scenario.description,
        util::relative(&module)
    );
    let stem = scenario_path
        .file_stem()
        .map_or("scenario".into(), |stem| stem.to_string_lossy());
    // One directory per run, so the same scenario can run twice at once (tests do); it is
    // kept when the run fails, for Envoy's log.
    let work_dir = util::target_dir()
        .join("differential")
        .join(format!("{stem}.{}", std::process::id()));
    let wasm = wasm_for_envoy(&module, &work_dir)?;
    let envoy_dir = work_dir.join("envoy");
    let observation = if scenario.connections.is_empty() {
        runner::observe(&scenario, &wasm, &envoy_dir)
    } else {
        tcp::observe(&scenario, &wasm, &envoy_dir)
    };
    let observation = observation
        .with_context(|| format!("running {} in Envoy", util::relative(scenario_path)))?;
    std::fs::remove_dir_all(&work_dir)
        .with_context(|| format!("removing {}", work_dir.display()))?;
    Ok(observation)
}

/// The module file for a scenario: the command line's `module` else the scenario's, as the
/// README resolves it: `filter:<name>` is `target/filters/<name>.wasm`; a name is
/// `guests/<name>.wat` beside the scenario, else the Rust test guest `target/guests/<name>.wasm`;
/// on the command line an existing path is taken as is.
fn resolve_module(
    module: Option<&str>,
    scenario: &Scenario,
    scenario_path: &Path,
) -> Result<PathBuf> {
    if let Some(path) = module.map(Path::new).filter(|path| path.is_file()) {
        return Ok(path.to_path_buf());
    }
    let name = module.or(scenario.module.as_deref()).with_context(|| {
        format!(
            "{} names no `module`: give one on the command line",
            scenario_path.display()
        )
    })?;
    if let Some(filter) = name.strip_prefix("filter:") {
        let wasm = util::filter_wasm(filter);
        if !wasm.is_file() {
            bail!(
                "{} not found: run `cargo xtask build {filter}`",
                wasm.display()
            );
        }
        return Ok(wasm);
    }
    let beside = scenario_path
        .parent()
        .unwrap_or(Path::new("."))
        .join("guests")
        .join(format!("{name}.wat"));
    if beside.is_file() {
        return Ok(beside);
    }
    let built = util::target_dir()
        .join("guests")
        .join(format!("{name}.wasm"));
    if built.is_file() {
        return Ok(built);
    }
    let source = util::project_root()
        .join("host-sim/tests/guests")
        .join(name);
    if source.is_dir() {
        bail!(
            "{} not found: run `cargo xtask build --guests {name}`",
            built.display()
        );
    }
    bail!(
        "no module {name:?}: neither {} nor {} exists",
        beside.display(),
        source.display()
    )
}

/// The `.wasm` Envoy loads: a `.wat` is converted into `work_dir` first; paths are absolute.
fn wasm_for_envoy(module: &Path, work_dir: &Path) -> Result<PathBuf> {
    let module =
        std::path::absolute(module).with_context(|| format!("resolving {}", module.display()))?;
    if module
        .extension()
        .is_some_and(|extension| extension == "wat")
    {
        let bytes =
            wat::parse_file(&module).with_context(|| format!("parsing {}", module.display()))?;
        let wasm = work_dir.join("module.wasm");
        util::write_atomic(&wasm, &bytes)?;
        return Ok(wasm);
    }
    Ok(module)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_differing_header_fails_the_run_with_the_diff() {
        let scenario =
            Scenario::parse(r#"{"plugins": [], "volatile_headers": ["x-trace"]}"#).unwrap();
        let observation = |value: &str, trace: &str| {
            json!({"configuration": "accepted", "metrics": {}, "responses": [{
                "name": "r1", "status": 200, "body": "", "trailers": [], "reset": false,
                "headers": [["x-up", value], ["x-trace", trace], ["date", trace]],
                "upstream_request": null,
            }]})
        };
        judge(
            &observation("1", "a"),
            &observation("1", "b"),
            &scenario,
            "s.json",
        )
        .unwrap();
        let error = judge(
            &observation("1", "a"),
            &observation("2", "a"),
            &scenario,
            "s.json",
        )
        .unwrap_err();
        expect_test::expect![[r#"
            host-sim and Envoy differ on s.json:
            --- envoy
            +++ host-sim
            @@ -5,7 +5,7 @@
                 {
                   "body": "",
                   "headers": [
            -        ["x-up", "1"]
            +        ["x-up", "2"]
                   ],
                   "name": "r1",
                   "reset": false,
        "#]]
        .assert_eq(&format!("{error:#}"));
    }
}
