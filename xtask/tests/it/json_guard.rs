//! json-guard in a real Envoy: through the differential runner (`xtask sim envoy`, an
//! upstream the runner serves) what the upstream receives of rewritten, unchanged and refused
//! bodies; and through the seed's deployment (the project's generated bootstrap, which keeps
//! Envoy's 1 MiB buffer limit) that a larger `max_body_bytes` stops Envoy at startup.

use anyhow::{Context, Result};
use expect_test::{Expect, expect};
use serde_json::Value;

use crate::envoy::{AsmFilterDeployment, Exited};
use crate::support::{
    built_filter, error_lines, lock_filters, seed_deployment_with_parameters, start_envoy,
    temp_dir, tool, xtask,
};

/// Runs a `host-sim/tests/differential/json-guard-*.json` scenario in Envoy and renders, per
/// request, the status the client got and what the upstream received.
fn check_scenario(name: &str, expect: Expect) -> Result<()> {
    tool("envoy")?;
    let _filters = lock_filters();
    let scenario = format!("host-sim/tests/differential/{name}.json");
    let observation: Value = serde_json::from_str(&xtask(&["sim", "envoy", &scenario])?)
        .context("sim envoy printed something that is not JSON")?;
    let mut out = format!("{}\n", observation["configuration"].as_str().unwrap_or("?"));
    for response in observation["responses"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "{} {}",
            response["name"].as_str().unwrap_or("?"),
            response["status"]
        ));
        let upstream = &response["upstream_request"];
        if upstream.is_null() {
            out.push_str(&format!(
                ": {:?}\n",
                response["body"].as_str().unwrap_or_default()
            ));
            continue;
        }
        let framing: Vec<String> = upstream["headers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|pair| {
                matches!(
                    pair[0].as_str(),
                    Some("content-length" | "transfer-encoding")
                )
            })
            .map(|pair| {
                format!(
                    "{}={}",
                    pair[0].as_str().unwrap_or(""),
                    pair[1].as_str().unwrap_or("")
                )
            })
            .collect();
        let body = upstream["body"].as_str().unwrap_or_default();
        let shown = match body.len() {
            0 => "no body".to_string(),
            1..=80 => body.to_string(),
            n => format!("<{n} bytes>"),
        };
        let mut parts = framing;
        parts.push(shown);
        out.push_str(&format!(" upstream {}\n", parts.join(" ")));
    }
    expect.assert_eq(&out);
    Ok(())
}

#[test]
fn upstream_gets_the_rewritten_body_with_its_length() -> Result<()> {
    check_scenario(
        "json-guard-rewrite",
        expect![[r#"
        accepted
        get-passes 200 upstream no body
        rewrite-h1 200 upstream content-length=68 {"user":{"name":"ann","token":"[redacted]"},"password":"[redacted]"}
        rewrite-h2 200 upstream content-length=68 {"user":{"name":"ann","token":"[redacted]"},"password":"[redacted]"}
        rewrite-h1-chunked-with-trailers 200 upstream transfer-encoding=chunked {"user":{"name":"ann","token":"[redacted]"},"password":"[redacted]"}
        unchanged-h1 200 upstream content-length=39 {"name": "ann", "list": [1, 2.5, null]}
        too-large-by-content-length 413: "request body larger than 100 bytes\n"
        too-large-chunked 413: "request body larger than 100 bytes\n"
        too-large-h2-without-content-length 413: "request body larger than 100 bytes\n"
    "#]],
    )
}

#[test]
fn invalid_json_gets_400() -> Result<()> {
    check_scenario(
        "json-guard-invalid-json",
        expect![[r#"
        accepted
        invalid-json 400: "invalid JSON: expected value at byte 9\n"
        invalid-json-h2 400: "invalid JSON: expected value at byte 9\n"
    "#]],
    )
}

#[test]
fn a_raised_buffer_limit_allows_a_larger_max_body() -> Result<()> {
    check_scenario(
        "json-guard-buffer-limit",
        expect![[r#"
        accepted
        fits 200 upstream content-length=1511 <1511 bytes>
        too-large-by-content-length 413: "request body larger than 2048 bytes\n"
        too-large-chunked 413: "request body larger than 2048 bytes\n"
    "#]],
    )
}

#[test]
fn the_generated_bootstrap_refuses_a_limit_above_envoys_buffer_limit() -> Result<()> {
    let dir = temp_dir()?;
    let wasm = built_filter("json-guard", dir.path())?;
    let deployment = AsmFilterDeployment::parse(&seed_deployment_with_parameters(
        r#"{"max_body_bytes":2097152}"#,
    )?)?;
    let error = match start_envoy(&deployment, &wasm, dir.path()) {
        Ok(_) => anyhow::bail!("envoy started with max_body_bytes above its buffer limit"),
        Err(error) => error,
    };
    let exited = error
        .downcast_ref::<Exited>()
        .ok_or_else(|| anyhow::anyhow!("not an exit: {error:#}"))?;
    expect![[r#"
        [error][wasm] wasm log my_root_id details-v1-wasmfiltersample: invalid plugin configuration for root_id=my_root_id: max_body_bytes 2097152 is above Envoy's buffer limit 1048576: raise the listener's per_connection_buffer_limit_bytes and set buffer_limit_bytes to it
        [error][wasm] Wasm VM failed Failed to configure base Wasm plugin
        [critical][wasm] Plugin details-v1-wasmfiltersample.default failed to load
        [critical][wasm] Plugin configured to fail closed failed to load
        [critical][main] error `Unable to create Wasm plugin details-v1-wasmfiltersample.default`
    "#]].assert_eq(&error_lines(&exited.log));
    Ok(())
}
