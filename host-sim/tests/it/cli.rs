//! The `filter-sim` binary: a closed stdout (e.g. `| head`) ends it quietly, never a panic.

use std::path::Path;
use std::process::{Command, Stdio};

use expect_test::{Expect, expect};

/// Runs `filter-sim` with `args` (relative to tests/data) and its stdout a pipe whose reading
/// end is already closed; renders the exit status and whether stderr mentions a panic.
fn check_closed_stdout(args: &[&str], expect: Expect) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let (reader, writer) = std::io::pipe().expect("creating a pipe");
    drop(reader);
    let output = Command::new(env!("CARGO_BIN_EXE_filter-sim"))
        .args(args)
        .current_dir(&dir)
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
