//! Every filter in a real Envoy, configured from the seed's ASMFilterDeployment: what a
//! response looks like, and how Envoy refuses a configuration the filter rejects.

use std::path::Path;

use anyhow::Result;
use expect_test::{Expect, expect};

use crate::envoy::{AsmFilterDeployment, Envoy, Exited, Plugin, bootstrap, get};
use crate::support::{
    built_filter, error_lines, seed_deployment_with_parameters, stable_head, start_envoy, temp_dir,
    xtask, xtask_fails,
};
use crate::{filter_dir, util};

/// Runs `filter` in Envoy with the seed's deployment carrying `parameters`, sends one GET, and
/// renders the response's head; or, when Envoy refuses to start, its exit status and the
/// error lines of its log.
fn check(filter: &str, parameters: &str, expect: Expect) -> Result<()> {
    expect.assert_eq(&render(filter, parameters)?);
    Ok(())
}

/// Like [`check`] for a configuration the filter rejects, where only the filter's wording of
/// the reason is free: it must mention `mentions` and is shown as `<reason>`.
fn check_rejected(filter: &str, parameters: &str, mentions: &str, expect: Expect) -> Result<()> {
    const PREFIX: &str = "invalid plugin configuration for root_id=my_root_id: ";
    let rendered = render(filter, parameters)?;
    let mut redacted = String::new();
    for line in rendered.lines() {
        match line.split_once(PREFIX) {
            Some((before, reason)) => {
                assert!(
                    reason.contains(mentions),
                    "the reason {reason:?} does not mention {mentions:?}"
                );
                redacted.push_str(&format!("{before}{PREFIX}<reason>\n"));
            }
            None => redacted.push_str(&format!("{line}\n")),
        }
    }
    expect.assert_eq(&redacted);
    Ok(())
}

fn render(filter: &str, parameters: &str) -> Result<String> {
    let dir = temp_dir()?;
    let wasm = built_filter(filter, dir.path())?;
    render_module(&wasm, parameters, dir.path())
}

/// Runs the module `wasm` in Envoy as [`render`] does, with Envoy's files under `dir`.
pub fn render_module(wasm: &Path, parameters: &str, dir: &Path) -> Result<String> {
    let deployment = AsmFilterDeployment::parse(&seed_deployment_with_parameters(parameters)?)?;
    let rendered = match start_envoy(&deployment, wasm, dir) {
        Ok(envoy) => stable_head(&get(&envoy.listener_url())?),
        Err(error) => match error.downcast_ref::<Exited>() {
            Some(exited) => format!(
                "envoy exited ({})\n{}",
                exited.status,
                error_lines(&exited.log)
            ),
            None => return Err(error),
        },
    };
    Ok(rendered)
}

/// Runs each of the filter's `filters/<filter>/tests/envoy/<case>.json` in Envoy with `wasm`
/// and compares what it gives with `<case>.head` beside it (`UPDATE_EXPECT=1` rewrites it).
pub fn check_envoy_cases(root: &Path, filter: &str, wasm: &Path) -> Result<()> {
    for (path, case) in filter_dir::envoy_cases(root, filter)? {
        let dir = temp_dir()?;
        let rendered = render_module(wasm, &case.parameters, dir.path())?;
        expect_test::expect_file![path.with_extension("head")].assert_eq(&rendered);
    }
    Ok(())
}

/// Every filter under filters/ runs in a real Envoy as its own `tests/envoy/` cases say: a new
/// filter without one fails here, naming the file to add. Filters' deeper Envoy tests keep their
/// own modules (`ext_authz.rs`, ...).
#[test]
fn every_filter_passes_its_envoy_cases() -> Result<()> {
    let root = util::project_root();
    for filter in util::filter_names()? {
        let dir = temp_dir()?;
        let wasm = built_filter(&filter, dir.path())?;
        check_envoy_cases(&root, &filter, &wasm)?;
    }
    Ok(())
}

#[test]
fn add_header_adds_demo_and_configured_headers() -> Result<()> {
    check(
        "add-header",
        r#"{"name":"hello","value":"hello details"}"#,
        expect![[r#"
            HTTP/1.1 200 OK
            content-length: 18
            content-type: text/plain
            resp-header-demo: added by our filter
            hello: hello details
            server: envoy
        "#]],
    )
}

#[test]
fn add_header_with_empty_parameters_adds_only_the_demo_header() -> Result<()> {
    check(
        "add-header",
        "",
        expect![[r#"
            HTTP/1.1 200 OK
            content-length: 18
            content-type: text/plain
            resp-header-demo: added by our filter
            server: envoy
        "#]],
    )
}

#[test]
fn envoy_rejects_bad_config() -> Result<()> {
    check(
        "add-header",
        r#"{"name":"bad name","value":"x"}"#,
        expect![[r#"
            envoy exited (exit status: 1)
            [error][wasm] wasm log my_root_id details-v1-wasmfiltersample: invalid plugin configuration for root_id=my_root_id: header name "bad name" is not a valid HTTP token
            [error][wasm] Wasm VM failed Failed to configure base Wasm plugin
            [critical][wasm] Plugin details-v1-wasmfiltersample.default failed to load
            [critical][wasm] Plugin configured to fail closed failed to load
            [critical][main] error `Unable to create Wasm plugin details-v1-wasmfiltersample.default`
        "#]],
    )
}

#[test]
fn envoy_rejects_parameters_that_are_not_json() -> Result<()> {
    check(
        "add-header",
        "not json",
        expect![[r#"
            envoy exited (exit status: 1)
            [error][wasm] wasm log my_root_id details-v1-wasmfiltersample: invalid plugin configuration for root_id=my_root_id: not valid JSON: expected value at byte 0
            [error][wasm] Wasm VM failed Failed to configure base Wasm plugin
            [critical][wasm] Plugin details-v1-wasmfiltersample.default failed to load
            [critical][wasm] Plugin configured to fail closed failed to load
            [critical][main] error `Unable to create Wasm plugin details-v1-wasmfiltersample.default`
        "#]],
    )
}

#[test]
fn envoy_rejects_value_with_line_break() -> Result<()> {
    check_rejected(
        "add-header",
        r#"{"name":"hello","value":"a\r\nb"}"#,
        r#""a\r\nb""#,
        expect![[r#"
            envoy exited (exit status: 1)
            [error][wasm] wasm log my_root_id details-v1-wasmfiltersample: invalid plugin configuration for root_id=my_root_id: <reason>
            [error][wasm] Wasm VM failed Failed to configure base Wasm plugin
            [critical][wasm] Plugin details-v1-wasmfiltersample.default failed to load
            [critical][wasm] Plugin configured to fail closed failed to load
            [critical][main] error `Unable to create Wasm plugin details-v1-wasmfiltersample.default`
        "#]],
    )
}

#[test]
fn envoy_rejects_unknown_field() -> Result<()> {
    check_rejected(
        "add-header",
        r#"{"name":"hello","value":"x","extra":1}"#,
        "`extra`",
        expect![[r#"
            envoy exited (exit status: 1)
            [error][wasm] wasm log my_root_id details-v1-wasmfiltersample: invalid plugin configuration for root_id=my_root_id: <reason>
            [error][wasm] Wasm VM failed Failed to configure base Wasm plugin
            [critical][wasm] Plugin details-v1-wasmfiltersample.default failed to load
            [critical][wasm] Plugin configured to fail closed failed to load
            [critical][main] error `Unable to create Wasm plugin details-v1-wasmfiltersample.default`
        "#]],
    )
}

#[test]
fn run_once_prints_the_response_head() -> Result<()> {
    let dir = temp_dir()?;
    let wasm = built_filter("add-header", dir.path())?;
    let deployment = dir.path().join("asmfilterdeployment.yaml");
    std::fs::write(&deployment, crate::support::SEED_DEPLOYMENT)?;
    let work_dir = dir.path().join("run");
    let stdout = xtask(&[
        "run",
        "add-header",
        "--deployment",
        &deployment.display().to_string(),
        "--wasm",
        &wasm.display().to_string(),
        "--work-dir",
        &work_dir.display().to_string(),
        "--once",
    ])?;
    let stable: String = stdout
        .lines()
        .filter(|line| !line.starts_with("date:"))
        .map(|line| format!("{line}\n"))
        .collect();
    expect![[r#"
        HTTP/1.1 200 OK
        content-length: 18
        content-type: text/plain
        resp-header-demo: added by our filter
        hello: hello details
        server: envoy
    "#]]
    .assert_eq(&stable);
    Ok(())
}

#[test]
fn run_without_deployment_says_to_publish() -> Result<()> {
    let dir = temp_dir()?;
    let wasm = built_filter("add-header", dir.path())?;
    let missing = dir.path().join("missing.yaml");
    let stderr = xtask_fails(&[
        "run",
        "add-header",
        "--deployment",
        &missing.display().to_string(),
        "--wasm",
        &wasm.display().to_string(),
    ])?;
    assert!(
        stderr.contains("run `cargo xtask publish add-header`"),
        "{stderr}"
    );
    Ok(())
}

#[test]
fn envoy_exits_with_its_reason_when_the_module_is_missing() -> Result<()> {
    let dir = temp_dir()?;
    let deployment = AsmFilterDeployment::parse(crate::support::SEED_DEPLOYMENT)?;
    let error = match start_envoy(&deployment, &dir.path().join("missing.wasm"), dir.path()) {
        Ok(_) => anyhow::bail!("envoy started without its module"),
        Err(error) => error,
    };
    let exited = error
        .downcast_ref::<Exited>()
        .ok_or_else(|| anyhow::anyhow!("not an exit: {error:#}"))?;
    let lines = error_lines(&exited.log).replace(&dir.path().display().to_string(), "<dir>");
    expect![[r#"
        envoy exited (exit status: 1)
        [critical][main] error `Invalid path: <dir>/missing.wasm`
    "#]]
    .assert_eq(&format!("envoy exited ({})\n{lines}", exited.status));
    Ok(())
}

#[test]
fn root_ids_sharing_one_vm_keep_their_own_configs() -> Result<()> {
    let dir = temp_dir()?;
    let wasm = built_filter("add-header", dir.path())?;
    let plugin = |root_id, configuration| Plugin {
        name: root_id,
        root_id,
        vm_id: "shared",
        wasm: &wasm,
        configuration,
    };
    let plugins = [
        plugin("first", r#"{"name":"x-first","value":"1"}"#),
        plugin("second", r#"{"name":"x-second","value":"2"}"#),
    ];
    let envoy = Envoy::start(
        &crate::support::tool("envoy")?,
        &bootstrap(&plugins),
        &dir.path().join("envoy"),
    )?;
    // Response callbacks run from the last filter to the first (the client groups repeated
    // names). One shared VM means as many VMs as for a single plugin: 3 with one worker.
    let response = stable_head(&get(&envoy.listener_url())?);
    let stats = get(&format!(
        "http://{}/stats?filter=wasm.envoy.wasm.runtime.v8.active",
        envoy.admin_address()
    ))?;
    expect![[r#"
        HTTP/1.1 200 OK
        content-length: 18
        content-type: text/plain
        resp-header-demo: added by our filter
        resp-header-demo: added by our filter
        x-second: 2
        x-first: 1
        server: envoy
        wasm.envoy.wasm.runtime.v8.active: 3
    "#]]
    .assert_eq(&format!("{response}{}", stats.body));
    Ok(())
}
