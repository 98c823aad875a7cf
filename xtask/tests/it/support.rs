//! What every end-to-end test shares: tools, temporary directories, the xtask binary, the
//! built filters, and the seed's ASMFilterDeployment.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, MutexGuard};

use anyhow::{Context, Result, bail};
use tempfile::TempDir;

use crate::envoy::{self, Envoy};
use crate::util;

/// The ASMFilterDeployment from the seed article (its fields and values as printed there).
pub const SEED_DEPLOYMENT: &str = "\
apiVersion: istio.alibabacloud.com/v1beta1
kind: ASMFilterDeployment
metadata:
  name: details-v1-wasmfiltersample
spec:
  workload:
    kind: Deployment
    labels:
      app: details
      version: v1
  filter:
    parameters: '{\"name\":\"hello\",\"value\":\"hello details\"}'
    image: 'acree-1-registry.cn-hangzhou.cr.aliyuncs.com/asm/asm-test:v0.1'
    imagePullOptions:
      pullSecret: 'asmwasm-cache'
    rootID: 'my_root_id'
    id: 'details-v1-wasmfiltersample.default'
";

/// The seed's deployment with other `spec.filter.parameters`.
pub fn seed_deployment_with_parameters(parameters: &str) -> Result<String> {
    let mut yaml: serde_yaml_ng::Value = serde_yaml_ng::from_str(SEED_DEPLOYMENT)?;
    yaml["spec"]["filter"]["parameters"] = parameters.into();
    Ok(serde_yaml_ng::to_string(&yaml)?)
}

/// A tool from `cargo xtask setup` (target/tools/bin, then PATH); the error names the command.
pub fn tool(name: &str) -> Result<PathBuf> {
    util::tool(name)
}

/// A fresh directory, removed when dropped.
pub fn temp_dir() -> Result<TempDir> {
    tempfile::Builder::new()
        .prefix("filterkit-e2e-")
        .tempdir()
        .context("creating a temporary directory")
}

/// A port that was free a moment ago: callers retry when they lose the race for it.
pub fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0")?;
    Ok(listener
        .local_addr()
        .context("reading a bound address")?
        .port())
}

/// `xtask <args>`, which must succeed; returns its stdout. Its stderr (progress) is passed on
/// to the test's captured output.
pub fn xtask(args: &[&str]) -> Result<String> {
    let output = xtask_output(args)?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprint!("{stderr}");
    if !output.status.success() {
        bail!(
            "`xtask {}` failed ({}):\n{stderr}",
            args.join(" "),
            output.status
        );
    }
    String::from_utf8(output.stdout).context("xtask printed non-UTF-8")
}

/// `xtask <args>`, which must fail; returns its stderr.
pub fn xtask_fails(args: &[&str]) -> Result<String> {
    let output = xtask_output(args)?;
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    if output.status.success() {
        bail!(
            "`xtask {}` succeeded but should have failed; stderr:\n{stderr}",
            args.join(" ")
        );
    }
    Ok(stderr)
}

fn xtask_output(args: &[&str]) -> Result<Output> {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .current_dir(util::project_root())
        .output()
        .with_context(|| format!("running xtask {}", args.join(" ")))
}

/// Serializes the tests' use of target/filters/: `publish` rebuilds the shipped modules while
/// other tests copy them.
static FILTERS: Mutex<()> = Mutex::new(());

/// Holds target/filters/ still (a test that failed while holding it does not matter here).
pub fn lock_filters() -> MutexGuard<'static, ()> {
    FILTERS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Copies target/filters/<name>.wasm into `dir`, or says to run `cargo xtask build`.
pub fn built_filter(name: &str, dir: &Path) -> Result<PathBuf> {
    let _filters = lock_filters();
    let shipped = util::filter_wasm(name);
    if !shipped.is_file() {
        bail!("target/filters/{name}.wasm not found: run `cargo xtask build`");
    }
    let copy = dir.join(format!("{name}.wasm"));
    std::fs::copy(&shipped, &copy).with_context(|| format!("copying {}", shipped.display()))?;
    Ok(copy)
}

/// Starts Envoy as `cargo xtask run` does, with its files under `dir`.
pub fn start_envoy(
    deployment: &envoy::AsmFilterDeployment,
    wasm: &Path,
    dir: &Path,
) -> Result<Envoy> {
    let bootstrap = envoy::bootstrap_from_deployment(deployment, wasm)?;
    let envoy = Envoy::start(&tool("envoy")?, &bootstrap, &dir.join("envoy"))?;
    eprintln!(
        "envoy ready after {:.3}s at {}",
        envoy.ready_after().as_secs_f64(),
        envoy.listener_url()
    );
    Ok(envoy)
}

/// A response's status line and headers without the ones that change (`date`).
pub fn stable_head(response: &envoy::Response) -> String {
    response
        .head()
        .lines()
        .filter(|line| !line.starts_with("date:"))
        .map(|line| format!("{line}\n"))
        .collect()
}

/// Envoy's error and critical log lines without timestamp, thread and source location:
/// `[error][wasm] wasm log my_root_id ...`.
pub fn error_lines(log: &str) -> String {
    log.lines()
        .filter_map(error_line)
        .map(|line| format!("{line}\n"))
        .collect()
}

fn error_line(line: &str) -> Option<String> {
    // [time][thread][level][logger] [source:line] message
    let mut rest = line;
    let mut groups = Vec::new();
    for _ in 0..4 {
        rest = rest.strip_prefix('[')?;
        let end = rest.find(']')?;
        groups.push(&rest[..end]);
        rest = &rest[end + 1..];
    }
    let (level, logger) = (groups[2], groups[3]);
    if level != "error" && level != "critical" {
        return None;
    }
    let rest = rest.trim_start();
    let message = match rest.strip_prefix('[') {
        Some(located) => located
            .split_once("] ")
            .map_or(located, |(_, message)| message),
        None => rest,
    };
    // Envoy names the bootstrap with a marker that changes from run to run
    // ('goo.gle/debugstr ...', 'goo.gle/debugproto ...'): keep what comes before it.
    let message = message
        .split_once(" initializing config '")
        .map_or(message, |(error, _)| error);
    Some(format!("[{level}][{logger}] {}", message.trim_end()))
}

#[test]
fn poll_until_names_what_it_waited_for() {
    let error =
        util::poll_until(std::time::Instant::now(), "the moon", || Ok(None::<()>)).unwrap_err();
    let message = format!("{error:#}");
    assert!(
        message.starts_with("timed out after ") && message.ends_with("s waiting for the moon"),
        "{message}"
    );
}

#[test]
fn poll_until_stops_at_the_first_error_or_value() {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut probes = 0;
    let value = util::poll_until(deadline, "a third probe", || {
        probes += 1;
        Ok((probes == 3).then_some(probes))
    });
    assert_eq!(value.unwrap(), 3);
    let error = util::poll_until(deadline, "an error", || -> Result<Option<()>> {
        bail!("gave up")
    })
    .unwrap_err();
    assert_eq!(format!("{error:#}"), "gave up");
}

#[test]
fn missing_tool_says_to_run_setup() {
    let error = tool("filterkit-no-such-tool").unwrap_err();
    assert_eq!(
        format!("{error:#}"),
        "filterkit-no-such-tool is not installed: run `cargo xtask setup`"
    );
}
