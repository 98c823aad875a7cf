//! One scenario through a real Envoy: start the servers, generate the bootstrap, start Envoy
//! (a configuration it refuses is an observation, not an error), send the requests, read the
//! `wasmcustom.*` metrics, stop everything.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::Value;

use super::bootstrap;
use super::client;
use super::observation::{Observation, Response};
use super::scenario::Scenario;
use super::servers::Servers;
use crate::envoy::{self, Envoy, Exited};
use crate::util;

/// What Envoy 1.40 logs before exiting at startup when it refuses a plugin: its
/// `on_configure` (or its canary) returned false, or no VM could be made of the module (no
/// allocator, `_initialize` trapped, `proxy_on_vm_start` returned false).
pub(super) const REJECTIONS: [&str; 2] = [
    "Failed to configure base Wasm plugin",
    "Unable to create Wasm plugin",
];

/// Runs `scenario` with the module `wasm` (a `.wasm` file) through Envoy, with its bootstrap
/// and log under `work_dir`; volatile headers are removed.
pub fn observe(scenario: &Scenario, wasm: &Path, work_dir: &Path) -> Result<Observation> {
    let envoy_binary = util::tool("envoy")?;
    let servers = Servers::start(scenario)?;
    let bootstrap = bootstrap::bootstrap(scenario, wasm, &servers.ports);
    let envoy =
        match Envoy::start_with_workers(&envoy_binary, &bootstrap, work_dir, scenario.workers) {
            Ok(envoy) => envoy,
            Err(error) => {
                return match error.downcast_ref::<Exited>() {
                    Some(exited) if REJECTIONS.iter().any(|line| exited.log.contains(line)) => {
                        Ok(Observation::rejected())
                    }
                    _ => Err(error),
                };
            }
        };

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the client's runtime")?;
    let mut responses = Vec::new();
    for request in &scenario.requests {
        wait(Duration::from_millis(request.wait_before_ms))?;
        servers.answer_next(scenario.upstream.with(request.upstream.as_ref()));
        let answer = runtime.block_on(client::send(envoy.listener(), request));
        let received = servers.received().into_iter().next();
        responses.push(Response::new(&request.name, answer, received));
    }
    let mut observation = Observation {
        configuration: "accepted",
        responses,
        connections: Vec::new(),
        metrics: metrics(&envoy)?,
    };
    observation.remove_volatile(&scenario.volatile_headers);
    Ok(observation)
}

/// Lets `duration` pass in real time (the scenario's `wait_before_ms`).
pub(super) fn wait(duration: Duration) -> Result<()> {
    if duration.is_zero() {
        return Ok(());
    }
    let until = Instant::now() + duration;
    let what = format!("{} ms to pass", duration.as_millis());
    util::poll_until(until + Duration::from_secs(1), &what, || {
        Ok((Instant::now() >= until).then_some(()))
    })
}

/// Envoy's `wasmcustom.*` counters and gauges, by name without the prefix.
pub(super) fn metrics(envoy: &Envoy) -> Result<BTreeMap<String, Value>> {
    let url = format!("http://{}/stats?format=json", envoy.admin_address());
    let response = envoy::get(&url)?;
    let stats: Value = serde_json::from_str(&response.body)
        .with_context(|| format!("reading the stats from {url}"))?;
    Ok(wasm_custom_metrics(&stats))
}

fn wasm_custom_metrics(stats: &Value) -> BTreeMap<String, Value> {
    let empty = Vec::new();
    stats["stats"]
        .as_array()
        .unwrap_or(&empty)
        .iter()
        .filter_map(|stat| {
            let name = stat["name"].as_str()?.strip_prefix("wasmcustom.")?;
            Some((name.to_owned(), stat.get("value")?.clone()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_wasmcustom_counters_and_gauges_are_metrics() {
        let stats = json!({"stats": [
            {"name": "http.differential.rq_total", "value": 3},
            {"name": "wasmcustom.requests", "value": 2},
            {"name": "wasmcustom.in_flight", "value": 0},
            {"histograms": {"computed_quantiles": []}},
        ]});
        assert_eq!(
            serde_json::to_string(&wasm_custom_metrics(&stats)).unwrap(),
            r#"{"in_flight":0,"requests":2}"#
        );
    }
}
