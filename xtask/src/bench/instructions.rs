//! Instructions Envoy executes per request, counted by valgrind's callgrind: the bench's CPU
//! figure that the machine's load does not move.
//!
//! CPU time from /proc moves by several percent between rounds on a shared machine; callgrind
//! counts the instructions Envoy's threads execute in user space, whatever else runs. Each case
//! gets a fresh Envoy (one worker) under `valgrind --tool=callgrind --instr-atstart=no`, with
//! `--smc-check=all-non-file` because V8 writes the code it runs. The warm-up runs
//! uninstrumented (valgrind still runs Envoy, only without counting, while V8 compiles and
//! tiers up the module); then `callgrind_control` turns instrumentation on, a few requests run,
//! the counters are zeroed, the measured requests are sent over one keep-alive connection (one
//! request in flight, so Envoy wakes up once per request however fast the machine is), and the
//! counters are dumped and read. Every response is checked as in [`super::envoy_cost`].
//!
//! The count is split by where the code lives: Envoy's binary (tcmalloc included), shared
//! libraries (libc), and code outside any file, which in Envoy is what V8 generated (the
//! module's compiled functions and V8's stubs). Not counted: the kernel's work for Envoy's
//! system calls, and what an instruction costs (cache misses, mispredicted branches): it is a
//! count of instructions, not a time.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::envoy_cost::{self, Case, Client, Failures, Role};
use crate::envoy::Envoy;
use crate::util;

/// Envoy under valgrind takes a few seconds to open its listener, the proxy-wasm reference
/// (V8 compiling 200 KB) longer; a loaded machine slows both.
const READY_TIMEOUT: Duration = Duration::from_secs(180);
/// How long a `callgrind_control` command, and the dump it asks for, may take.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(120);
/// Requests run instrumented before the counters are zeroed, so that the measured ones start
/// from a steady state.
const INSTRUMENTED_WARMUP: u64 = 20;

/// valgrind and its `callgrind_control` (both in Debian's valgrind package).
pub struct Tools {
    valgrind: PathBuf,
    callgrind_control: PathBuf,
}

impl Tools {
    /// Finds both, or says to run `cargo xtask setup`.
    pub fn find() -> Result<Tools> {
        Ok(Tools {
            valgrind: util::tool("valgrind")?,
            callgrind_control: util::tool("callgrind_control")?,
        })
    }
}

/// How much traffic each case gets under callgrind.
#[derive(Clone, Copy)]
pub struct Load {
    /// Requests before instrumentation starts.
    pub warmup: u64,
    /// Requests whose instructions are counted.
    pub requests: u64,
}

/// Instructions, by where the code lives.
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct Split {
    /// In Envoy's binary (its own code, tcmalloc and V8's runtime and builtins).
    pub envoy: u64,
    /// In shared libraries (libc, libm, the dynamic loader).
    pub libraries: u64,
    /// In no file: code V8 generated at run time (the module's functions, its stubs).
    pub generated: u64,
}

impl Split {
    pub fn total(&self) -> u64 {
        self.envoy + self.libraries + self.generated
    }
}

/// What one case counted.
pub struct Counted {
    pub label: String,
    pub role: Role,
    /// Size of the module in bytes, `None` without a filter.
    pub wasm_size: Option<u64>,
    /// Requests whose instructions were counted.
    pub requests: u64,
    /// Instructions over those requests.
    pub instructions: Split,
    /// Failed responses, warm-up included.
    pub failures: Failures,
    /// Where the bootstrap, Envoy's log and callgrind's output are.
    pub work_dir: PathBuf,
}

impl Counted {
    pub fn per_request(&self) -> f64 {
        self.instructions.total() as f64 / self.requests as f64
    }
}

/// Starts Envoy under callgrind for `case`, drives `load` through it, reads the count and stops
/// Envoy (also on error).
pub fn count(
    tools: &Tools,
    envoy_binary: &Path,
    case: &Case,
    load: Load,
    work_dir: &Path,
) -> Result<Counted> {
    let (wasm_size, bootstrap) = envoy_cost::bootstrap(case)?;
    std::fs::create_dir_all(work_dir)
        .with_context(|| format!("creating {}", work_dir.display()))?;
    let out_file = work_dir.join("callgrind.out");
    // callgrind numbers its dumps callgrind.out.1, .2, ...: an earlier run's would be read.
    remove_callgrind_outputs(work_dir)?;
    let mut out_option = OsString::from("--callgrind-out-file=");
    out_option.push(&out_file);
    let wrapper: Vec<OsString> = vec![
        tools.valgrind.clone().into(),
        "--tool=callgrind".into(),
        "--instr-atstart=no".into(),
        "--smc-check=all-non-file".into(),
        "--dump-instr=no".into(),
        out_option,
    ];
    let mut envoy = Envoy::start_under(
        &wrapper,
        READY_TIMEOUT,
        envoy_binary,
        &bootstrap,
        work_dir,
        1,
    )
    .with_context(|| format!("starting envoy under callgrind for {}", case.label))?;
    let pid = envoy.pid();
    let client = Client::new(envoy.listener_url(), 1, case);

    let mut failures = client.send(load.warmup)?;
    control(tools, pid, "--instr=on")?;
    failures = failures.merge(client.send(INSTRUMENTED_WARMUP)?);
    control(tools, pid, "--zero")?;
    failures = failures.merge(client.send(load.requests)?);
    let maps_path = format!("/proc/{pid}/maps");
    let maps =
        std::fs::read_to_string(&maps_path).with_context(|| format!("reading {maps_path}"))?;
    control(tools, pid, "--dump")?;
    let dump_path = work_dir.join("callgrind.out.1");
    let dump = util::poll_until(
        Instant::now() + CONTROL_TIMEOUT,
        &format!("callgrind's dump {}", dump_path.display()),
        || {
            let text = std::fs::read_to_string(&dump_path).unwrap_or_default();
            Ok(text.contains("\ntotals:").then_some(text))
        },
    )?;
    let envoy_path = std::fs::canonicalize(envoy_binary)
        .with_context(|| format!("resolving {}", envoy_binary.display()))?;
    let instructions = split_by_object(&dump, &executable_mappings(&maps), &envoy_path)
        .with_context(|| format!("reading {}", dump_path.display()))?;
    stop(&mut envoy);
    let counted = Counted {
        label: case.label.clone(),
        role: case.role,
        wasm_size,
        requests: load.requests,
        instructions,
        failures,
        work_dir: work_dir.to_path_buf(),
    };
    eprintln!(
        "envoy under callgrind: {}: {:.0} instructions/request ({:.0} in generated code), {} failures",
        case.label,
        counted.per_request(),
        counted.instructions.generated as f64 / counted.requests as f64,
        counted.failures.count
    );
    Ok(counted)
}

fn remove_callgrind_outputs(work_dir: &Path) -> Result<()> {
    let entries =
        std::fs::read_dir(work_dir).with_context(|| format!("reading {}", work_dir.display()))?;
    for entry in entries {
        let path = entry
            .with_context(|| format!("reading {}", work_dir.display()))?
            .path();
        let is_output = path
            .file_name()
            .and_then(|name| name.to_str())
            .is_some_and(|name| name.starts_with("callgrind.out"));
        if is_output {
            std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
        }
    }
    Ok(())
}

/// Runs `callgrind_control <option> <pid>`, which reaches the running valgrind through vgdb.
fn control(tools: &Tools, pid: u32, option: &str) -> Result<()> {
    let mut command = Command::new(&tools.callgrind_control);
    command.arg(option).arg(pid.to_string());
    let output = command
        .output()
        .with_context(|| format!("running {}", util::show(&command)))?;
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    // callgrind_control exits with 0 even when it found no valgrind to talk to.
    if !output.status.success() || printed.contains("Error") {
        bail!("`{}` failed: {}", util::show(&command), printed.trim());
    }
    Ok(())
}

/// Asks Envoy to exit through its admin API, so that valgrind removes its vgdb FIFOs from /tmp;
/// dropping `envoy` then kills it if it has not.
fn stop(envoy: &mut Envoy) {
    let url = format!("http://{}/quitquitquit", envoy.admin_address());
    let agent = ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .proxy(None)
            .timeout_global(Some(Duration::from_secs(10)))
            .build(),
    );
    if agent.post(&url).send_empty().is_ok() {
        let _ = util::poll_until(Instant::now() + CONTROL_TIMEOUT, "envoy to exit", || {
            Ok(envoy.try_wait()?.map(|_| ()))
        });
    }
}

/// An executable file mapping of a process, from /proc/<pid>/maps.
#[derive(Debug, PartialEq, Eq)]
struct Mapping {
    start: u64,
    end: u64,
    path: PathBuf,
}

/// The executable mappings backed by a file (`r-xp ... /path`); anonymous ones (V8's code) are
/// left out.
fn executable_mappings(maps: &str) -> Vec<Mapping> {
    maps.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (start, end) = fields.next()?.split_once('-')?;
            let permissions = fields.next()?;
            let path = fields.nth(3)?;
            if !permissions.contains('x') || !path.starts_with('/') {
                return None;
            }
            Some(Mapping {
                start: u64::from_str_radix(start, 16).ok()?,
                end: u64::from_str_radix(end, 16).ok()?,
                path: PathBuf::from(path),
            })
        })
        .collect()
}

/// Sums the self cost of every function of a callgrind dump (`--dump-instr=no`, one event:
/// Ir) by where its code lives. Functions in an object callgrind names are Envoy's when the
/// object is `envoy`, else a library's. callgrind calls `???` the code it finds no object for:
/// Envoy's sections outside `.text` (tcmalloc's `google_malloc`), and what V8 generated; such a
/// function is named by its address, which `mappings` places in a file or in none. The sum
/// must equal the dump's `totals:` line.
fn split_by_object(dump: &str, mappings: &[Mapping], envoy: &Path) -> Result<Split> {
    #[derive(Clone, Copy)]
    enum Place {
        Envoy,
        Library,
        Generated,
    }
    let mut objects = Names::default();
    let mut functions = Names::default();
    let mut object = String::new();
    let mut place = Place::Library;
    let mut split = Split::default();
    let mut totals = None;
    let mut skip_call_cost = false;
    for line in dump.lines() {
        let Some(first) = line.chars().next() else {
            continue;
        };
        if first.is_ascii_digit() || matches!(first, '+' | '-' | '*') {
            // The line after `calls=` is the call's inclusive cost, counted in the callee.
            if std::mem::take(&mut skip_call_cost) {
                continue;
            }
            let cost: u64 = match line.split_whitespace().nth(1) {
                Some(cost) => cost
                    .parse()
                    .with_context(|| format!("unexpected cost line {line:?}"))?,
                None => 0,
            };
            match place {
                Place::Envoy => split.envoy += cost,
                Place::Library => split.libraries += cost,
                Place::Generated => split.generated += cost,
            }
            continue;
        }
        if let Some(total) = line.strip_prefix("totals:") {
            totals = Some(
                total
                    .trim()
                    .parse::<u64>()
                    .with_context(|| format!("unexpected totals line {line:?}"))?,
            );
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        match key {
            "ob" => object = objects.resolve(value),
            "cob" => {
                objects.resolve(value);
            }
            "cfn" => {
                functions.resolve(value);
            }
            "calls" => skip_call_cost = true,
            "fn" => {
                let function = functions.resolve(value);
                place = if object == "???" {
                    let address = function
                        .strip_prefix("0x")
                        .and_then(|hex| u64::from_str_radix(hex, 16).ok());
                    match address.and_then(|address| {
                        mappings
                            .iter()
                            .find(|mapping| (mapping.start..mapping.end).contains(&address))
                    }) {
                        Some(mapping) if mapping.path == envoy => Place::Envoy,
                        Some(_) => Place::Library,
                        None => Place::Generated,
                    }
                } else if Path::new(&object) == envoy {
                    Place::Envoy
                } else {
                    Place::Library
                };
            }
            _ => {}
        }
    }
    let Some(totals) = totals else {
        bail!("no `totals:` line: not a complete callgrind dump");
    };
    if split.total() != totals {
        bail!(
            "the functions' costs add up to {} instructions, the dump's totals say {totals}",
            split.total()
        );
    }
    Ok(split)
}

/// callgrind's name compression: `(id) name` defines an id, `(id)` refers to it.
#[derive(Default)]
struct Names(std::collections::HashMap<String, String>);

impl Names {
    fn resolve(&mut self, value: &str) -> String {
        let Some(rest) = value.strip_prefix('(') else {
            return value.to_string();
        };
        let Some((id, name)) = rest.split_once(')') else {
            return value.to_string();
        };
        let name = name.trim_start();
        if name.is_empty() {
            self.0.get(id).cloned().unwrap_or_default()
        } else {
            self.0.insert(id.to_string(), name.to_string());
            name.to_string()
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use expect_test::{Expect, expect};

    const MAPS: &str = "\
02186000-062ec000 r-xp 0207d000 fe:00 5359563    /opt/envoy/bin/envoy
07178000-07179000 rwxp 00000000 00:00 0 
07a9d000-07bf3000 r-xp 00026000 fe:00 326279     /usr/lib/x86_64-linux-gnu/libc.so.6
07bf3000-07c4b000 r--p 0017c000 fe:00 326279     /usr/lib/x86_64-linux-gnu/libc.so.6
";

    /// Renders the split of `dump` with [`MAPS`] and `/opt/envoy/bin/envoy` as Envoy.
    fn check(dump: &str, expect: Expect) {
        let mappings = super::executable_mappings(MAPS);
        let actual =
            match super::split_by_object(dump, &mappings, Path::new("/opt/envoy/bin/envoy")) {
                Ok(split) => format!("{split:?}\n"),
                Err(error) => format!("error: {error:#}\n"),
            };
        expect.assert_eq(&actual);
    }

    #[test]
    fn reads_executable_file_mappings_only() {
        expect![[r#"
            [
                Mapping {
                    start: 35151872,
                    end: 103727104,
                    path: "/opt/envoy/bin/envoy",
                },
                Mapping {
                    start: 128569344,
                    end: 129970176,
                    path: "/usr/lib/x86_64-linux-gnu/libc.so.6",
                },
            ]
        "#]]
        .assert_eq(&format!("{:#?}\n", super::executable_mappings(MAPS)));
    }

    #[test]
    fn splits_envoy_libraries_and_generated_code() {
        check(
            "\
version: 1
creator: callgrind-3.19.0
positions: line
events: Ir
summary: 1111

ob=(1) /opt/envoy/bin/envoy
fl=(1) ???
fn=(1) 0x0000000005b48bc0
0 100
cob=(2) /usr/lib/x86_64-linux-gnu/libc.so.6
cfi=(2) memset.S
cfn=(2) memset
calls=1 0
0 10
+2 1

ob=(2)
fl=(2)
fn=(2)
0 10

ob=(3) ???
fl=(1)
fn=(3) 0x000000000628d840
0 1000
fn=(4) 0x0000000030000000
* 0
fn=(5) 0x00000000deadbeef
-1 2
fn=(6) 0x0000000007a9e000
0 3
fn=(7)
0

totals: 1116
",
            expect![[r#"
                Split { envoy: 1101, libraries: 13, generated: 2 }
            "#]],
        );
    }

    #[test]
    fn rejects_a_dump_whose_costs_do_not_add_up() {
        check(
            "events: Ir\nob=(1) /opt/envoy/bin/envoy\nfn=(1) 0x1\n0 5\ntotals: 6\n",
            expect![[r#"
                error: the functions' costs add up to 5 instructions, the dump's totals say 6
            "#]],
        );
    }

    #[test]
    fn rejects_a_dump_without_totals() {
        check(
            "events: Ir\nob=(1) /opt/envoy/bin/envoy\nfn=(1) 0x1\n0 5\n",
            expect![[r#"
                error: no `totals:` line: not a complete callgrind dump
            "#]],
        );
    }
}
