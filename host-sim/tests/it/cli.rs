//! The `filter-sim` binary: `check` answers as Envoy would, and a closed stdout (e.g. `| head`)
//! ends it quietly, never a panic.

use std::path::Path;
use std::process::{Command, Stdio};

use expect_test::{Expect, expect};

/// `filter-sim`, run in `dir` (relative to host-sim/).
fn filter_sim(dir: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_filter-sim"));
    command.current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(dir));
    command
}

/// Runs `filter-sim` with `args` (relative to tests/data) and its stdout a pipe whose reading
/// end is already closed; renders the exit status and whether stderr mentions a panic.
fn check_closed_stdout(args: &[&str], expect: Expect) {
    let (reader, writer) = std::io::pipe().expect("creating a pipe");
    drop(reader);
    let output = filter_sim("tests/data")
        .args(args)
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .expect("running filter-sim");
    let stderr = String::from_utf8_lossy(&output.stderr);
    expect.assert_eq(&format!(
        "success={} panicked={}",
        output.status.success(),
        stderr.contains("panicked")
    ));
}

#[test]
fn run_into_a_closed_pipe_exits_quietly() {
    check_closed_stdout(
        &[
            "run",
            "add-two-headers.wat",
            "add-two-headers.scenario.json",
        ],
        expect!["success=true panicked=false"],
    );
}

#[test]
fn bench_into_a_closed_pipe_exits_quietly() {
    check_closed_stdout(
        &["bench", "add-two-headers.wat", "--streams", "10"],
        expect!["success=true panicked=false"],
    );
}

/// Runs `filter-sim check` on the add-header module with `config`; renders stdout and the
/// exit status.
fn check_config(config: &str, expect: Expect) {
    let module = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/filters/add-header.wasm");
    assert!(
        module.exists(),
        "target/filters/add-header.wasm not found: run `cargo xtask build`"
    );
    let output = filter_sim("tests")
        .arg("check")
        .arg(&module)
        .args(["--root-id", "my_root_id", "--config", config])
        .output()
        .expect("running filter-sim");
    expect.assert_eq(&format!(
        "{}exit={}",
        String::from_utf8_lossy(&output.stdout),
        output.status.code().unwrap_or(-1)
    ));
}

#[test]
fn check_accepts_what_envoy_would_accept() {
    check_config(
        r#"{"name":"hello","value":"hello details"}"#,
        expect![[r#"
            accepted: root_id=my_root_id
            exit=0"#]],
    );
}

#[test]
fn check_rejects_with_the_filters_own_log_lines() {
    check_config(
        r#"{"name":"bad name","value":"x"}"#,
        expect![[r#"
            rejected: proxy_on_configure returned false
              error invalid plugin configuration for root_id=my_root_id: header name "bad name" is not a valid HTTP token
            exit=1"#]],
    );
}

/// Runs `filter-sim exchange` (paths relative to tests/); renders the exit status and the
/// observation it printed: each response on one line of JSON, its upstream request on the next.
fn exchange(module: &str, scenario: &str, expect: Expect) {
    let output = filter_sim("tests")
        .args(["exchange", module, scenario])
        .output()
        .expect("running filter-sim");
    let mut observation: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("exchange prints JSON");
    let mut out = format!(
        "success={}\nconfiguration: {}\nmetrics: {}\n",
        output.status.success(),
        observation["configuration"],
        observation["metrics"]
    );
    for response in observation["responses"]
        .as_array_mut()
        .into_iter()
        .flatten()
    {
        let upstream = response
            .as_object_mut()
            .and_then(|response| response.remove("upstream_request"))
            .unwrap_or_default();
        out += &format!("{response}\n  upstream_request: {upstream}\n");
    }
    expect.assert_eq(&out);
}

#[test]
fn exchange_prints_what_the_client_saw() {
    exchange(
        "data/add-two-headers.wat",
        "data/add-two-headers.exchange.json",
        expect![[r#"
            success=true
            configuration: "accepted"
            metrics: {}
            {"body":"hello\n","headers":[["x-up","1"],["content-length","6"],["x-envoy-upstream-service-time","0"],["resp-header-demo","added by our filter"],["x-wat","yes"],["date","Thu, 01 Jan 1970 00:00:00 GMT"],["server","envoy"]],"name":"get","reset":false,"status":200,"trailers":[]}
              upstream_request: {"authority":"example.com","body":"","headers":[["x-a","1"],["x-forwarded-proto","http"],["x-request-id","00000000-0000-4000-8000-000000000000"],["x-envoy-expected-rq-timeout-ms","15000"]],"method":"GET","path":"/","trailers":[]}
            {"body":"hello\n","headers":[["x-up","1"],["content-length","6"],["x-envoy-upstream-service-time","0"],["resp-header-demo","added by our filter"],["x-wat","yes"],["date","Thu, 01 Jan 1970 00:00:00 GMT"],["server","envoy"]],"name":"post-h2","reset":false,"status":201,"trailers":[]}
              upstream_request: {"authority":"example.com","body":"abc","headers":[["content-length","3"],["x-forwarded-proto","http"],["x-request-id","00000000-0000-4000-8000-000000000001"],["x-envoy-expected-rq-timeout-ms","15000"]],"method":"POST","path":"/","trailers":[]}
        "#]],
    );
}

#[test]
fn exchange_of_a_rejected_configuration_exits_0() {
    exchange(
        "differential/guests/vm-start-returns-false.wat",
        "data/add-two-headers.exchange.json",
        expect![[r#"
            success=true
            configuration: "rejected"
            metrics: {}
        "#]],
    );
}
