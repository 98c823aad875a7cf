//! `cargo xtask bench`: what a filter costs, written to target/bench/results.md and raw.csv.
//!
//! Three sections. Shipped sizes: every filter as shipped (target/filters/) and the plain
//! proxy-wasm reference filter built with proxy-wasm-rust-sdk's example profile. host-sim:
//! `filter-sim bench` on add-header (time to a ready instance, streams per second with tracing
//! on, guest memory). Envoy (the reason Filterkit exists: module size becomes resident memory in
//! every sidecar): no HTTP filter, Envoy's native `header_mutation`, the trivial, one-loop and
//! hand-written add-header modules (bench/*.wat), every filter under filters/ and the
//! reference, at each worker count, measured by [`envoy_cost`] in alternated rounds, then at one
//! worker under valgrind's callgrind by [`instructions`] (instructions per request, which the
//! machine's load does not move), rendered by [`report`] with paired comparisons. Numbers are
//! printed, never asserted: this machine is shared and its timings move by several percent
//! from run to run.
//! docs/benchmarks.md keeps runs' numbers with the method; `--smoke` keeps the code running in
//! `cargo xtask test`.

mod envoy_cost;
mod instructions;
mod report;

use std::fmt::Write as _;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::{build, util};

use envoy_cost::{Case, Filter, Load, Measured, Role};
use instructions::Counted;
use report::{render_envoy, render_instructions, render_raw, render_sim, render_sim_against_envoy};

/// The plain proxy-wasm reference filter and its profile.
const REFERENCE_PACKAGE: &str = "proxy-wasm-add-header";
const REFERENCE_PROFILE: &str = "rust-sdk-example";
/// The seed's plugin configuration and root_id, and the headers add-header then adds.
const SEED_CONFIG: &str = r#"{"name":"hello","value":"hello details"}"#;
const SEED_ROOT_ID: &str = "my_root_id";
const SEED_HEADERS: &[(&str, &str)] = &[
    ("resp-header-demo", "added by our filter"),
    ("hello", "hello details"),
];

#[derive(clap::Args)]
pub struct Args {
    /// Plugin configuration for `filter-sim bench` (the seed's by default; Envoy always gets
    /// the seed's, whose headers it checks).
    #[arg(long, default_value = SEED_CONFIG)]
    pub config: String,
    /// Measure sizes and host-sim only, without starting Envoy.
    #[arg(long)]
    pub skip_envoy: bool,
    /// Requests per Envoy case over which CPU time and throughput are measured.
    #[arg(long, default_value_t = 50_000)]
    pub requests: u64,
    /// Requests per Envoy case before memory is read and the CPU clock starts.
    #[arg(long, default_value_t = 2_000)]
    pub warmup: u64,
    /// How many times every Envoy case is measured, the cases taking turns; tables show
    /// medians and (lowest–highest).
    #[arg(long, default_value_t = 5)]
    pub rounds: u32,
    /// Envoy worker counts (`--concurrency`) to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,8")]
    pub workers: Vec<u32>,
    /// Keep-alive connections to Envoy, one client thread each (like `wrk -c 8`; with fewer,
    /// Envoy wakes up more often and each request costs it more CPU).
    #[arg(long, default_value_t = 8)]
    pub connections: u64,
    /// Requests per case over which valgrind's callgrind counts the instructions Envoy
    /// executes (one worker, one connection, after the warm-up): the CPU figure that the
    /// machine's load does not move. 0 skips it.
    #[arg(long, default_value_t = 2_000)]
    pub callgrind_requests: u64,
    /// Count instructions for the two add-headers only (filterkit's and the hand-written WAT,
    /// whose ratio is the headline), as `--smoke` does: minutes instead of half an hour.
    #[arg(long)]
    pub callgrind_add_headers_only: bool,
    /// A run of a minute or less that exercises every case once with little traffic, and the
    /// two add-headers under callgrind, so that `cargo xtask test` keeps the bench working; its
    /// numbers mean nothing.
    #[arg(long)]
    pub smoke: bool,
    /// Extra arguments for `filter-sim bench` after the module path (e.g. `--streams 1000000`).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub sim_args: Vec<String>,
}

/// `--smoke`'s traffic: one round, a few hundred requests, both worker counts.
const SMOKE_ROUNDS: u32 = 1;
const SMOKE_WARMUP: u64 = 100;
const SMOKE_REQUESTS: u64 = 300;
const SMOKE_STREAMS: &str = "5000";
const SMOKE_CALLGRIND_REQUESTS: u64 = 50;

pub fn run(mut args: Args) -> Result<()> {
    if args.smoke {
        args.rounds = SMOKE_ROUNDS;
        args.warmup = SMOKE_WARMUP;
        args.requests = SMOKE_REQUESTS;
        args.callgrind_requests = args.callgrind_requests.min(SMOKE_CALLGRIND_REQUESTS);
        if !args.sim_args.iter().any(|arg| arg == "--streams") {
            args.sim_args
                .extend(["--streams".to_string(), SMOKE_STREAMS.to_string()]);
        }
    }
    if args.requests == 0 || args.connections == 0 || args.rounds == 0 {
        bail!("--requests, --connections and --rounds must be at least 1");
    }
    if args.workers.is_empty() || args.workers.contains(&0) {
        bail!("--workers needs worker counts of at least 1, e.g. --workers 1,8");
    }
    let machine = Machine::describe();
    let built = build::build(&[], true)?;

    eprintln!(
        "building the proxy-wasm reference ({REFERENCE_PACKAGE}, profile {REFERENCE_PROFILE})"
    );
    util::run(util::cargo_wasm().current_dir(util::project_root()).args([
        "build",
        "--target",
        util::WASM_TARGET,
        "--profile",
        REFERENCE_PROFILE,
        "-p",
        REFERENCE_PACKAGE,
    ]))
    .context("building the proxy-wasm reference filter")?;
    // Others may rebuild target/filters/ while the bench runs: every measurement uses copies.
    let reference = snapshot(&build::cargo_output(REFERENCE_PACKAGE, REFERENCE_PROFILE))?;
    let reference_size = file_size(&reference)?;
    let reference_optimized = build::optimize(&util::tool("wasm-opt")?, &reference)?.len();

    let shipped: Vec<(&build::Built, PathBuf)> = built
        .iter()
        .map(|filter| Ok((filter, snapshot(&filter.wasm)?)))
        .collect::<Result<_>>()?;
    let add_header = shipped
        .iter()
        .find(|(filter, _)| filter.name == "add-header")
        .map(|(_, copy)| copy.clone())
        .context("filters/add-header is missing: the bench measures it")?;
    let mut sim = util::cargo();
    sim.current_dir(util::project_root())
        .args(["run", "--quiet"]);
    // A smoke run takes the dev build the tests already made: a release build of wasmtime
    // takes minutes, and a smoke run's speed means nothing.
    if !args.smoke {
        sim.arg("--release");
    }
    sim.args([
        "-p",
        "filterkit-host-sim",
        "--bin",
        "filter-sim",
        "--",
        "bench",
    ])
    .arg(&add_header)
    .args(["--config", &args.config])
    .args(&args.sim_args);
    eprintln!("host-sim: filter-sim bench {}", util::relative(&add_header));
    let sim_output =
        util::run_capture(&mut sim).context("running `filter-sim bench` (host-sim)")?;

    let mut results = format!("# Filterkit bench\n\n{}", machine.render());
    if args.smoke {
        results.push_str("- smoke run (`--smoke`): one round of a few hundred requests; the numbers mean nothing\n");
    }
    results.push_str("\n## Shipped sizes\n\n| module | bytes |\n|---|---|\n");
    for (filter, copy) in &shipped {
        let size = file_size(copy)?;
        let _ = writeln!(
            results,
            "| {} (target/filters/{}.wasm{}) | {} |",
            filter.name,
            filter.name,
            if filter.wasm_opt {
                ", wasm-opt -Oz"
            } else {
                ""
            },
            size
        );
    }
    let _ = writeln!(
        results,
        "| {REFERENCE_PACKAGE} (proxy-wasm crate, profile {REFERENCE_PROFILE}) | {reference_size} |"
    );
    let _ = writeln!(
        results,
        "| {REFERENCE_PACKAGE} (same, after wasm-opt -Oz; not what Envoy loads below) | {reference_optimized} |"
    );
    let _ = write!(
        results,
        "\n## host-sim: filter-sim bench {} ({})\n\n{}",
        util::relative(&add_header),
        if args.smoke { "dev build" } else { "release" },
        render_sim(&sim_output)
    );

    let mut failed = Vec::new();
    if args.skip_envoy {
        results.push_str("\n## Envoy\n\nskipped (--skip-envoy)\n");
    } else {
        // Before anything is measured: a missing valgrind should not cost a whole run.
        let callgrind_tools = if args.callgrind_requests > 0 {
            Some(instructions::Tools::find()?)
        } else {
            None
        };
        let load = Load {
            warmup: args.warmup,
            requests: args.requests,
            connections: args.connections,
        };
        let mut cases = vec![
            Case {
                label: "no HTTP filter".to_string(),
                role: Role::NoFilter,
                filter: Filter::None,
                expected_headers: Vec::new(),
                expect_ok: true,
            },
            Case {
                label: "Envoy's native header_mutation".to_string(),
                role: Role::Native,
                filter: Filter::HeaderMutation(seed_headers()),
                expected_headers: seed_headers(),
                expect_ok: true,
            },
            seed_case(
                "trivial module (callbacks do nothing)",
                Role::Trivial,
                assemble("trivial")?,
                Vec::new(),
            ),
            seed_case(
                "trivial module + one loop",
                Role::Floor,
                assemble("one_loop")?,
                Vec::new(),
            ),
            seed_case(
                "hand-written WAT add-header",
                Role::HandWritten,
                assemble("add_header")?,
                seed_headers(),
            ),
        ];
        for (filter, copy) in &shipped {
            cases.push(filter_case(&filter.name, copy.clone())?);
        }
        cases.push(seed_case(
            &format!("{REFERENCE_PACKAGE} (proxy-wasm crate)"),
            Role::Filter,
            reference.clone(),
            seed_headers(),
        ));
        let measured = measure_envoy(&cases, load, args.rounds, &args.workers)?;
        let counted = match &callgrind_tools {
            Some(tools) => {
                // Under valgrind a case takes several seconds: a smoke run counts only the
                // two add-headers, enough to keep every step and the paired ratio working.
                let callgrind_cases: Vec<&Case> = cases
                    .iter()
                    .filter(|case| {
                        !(args.smoke || args.callgrind_add_headers_only)
                            || case.role == Role::HandWritten
                            || case.label.starts_with("add-header")
                    })
                    .collect();
                let callgrind_load = instructions::Load {
                    warmup: args.warmup,
                    requests: args.callgrind_requests,
                };
                count_instructions(tools, &callgrind_cases, callgrind_load, args.rounds)?
            }
            None => Vec::new(),
        };
        failed = measured
            .iter()
            .map(|measured| (&measured.label, measured.failures.count))
            .chain(
                counted
                    .iter()
                    .map(|counted| (&counted.label, counted.failures.count)),
            )
            .filter(|(_, failures)| *failures > 0)
            .map(|(label, _)| label.clone())
            .collect();
        failed.sort();
        failed.dedup();
        let raw = util::target_dir().join("bench").join("raw.csv");
        util::write_atomic(&raw, render_raw(&measured, &counted).as_bytes())?;
        results.push('\n');
        results.push_str(&render_envoy(&machine.envoy_version, load, &measured));
        if !counted.is_empty() {
            results.push('\n');
            results.push_str(&render_instructions(args.warmup, &counted));
        }
        let _ = writeln!(
            results,
            "\nEvery round of every case: target/bench/raw.csv (one line each).\n\n{}",
            render_sim_against_envoy(&sim_output, &measured)
        );
    }

    let path = util::target_dir().join("bench").join("results.md");
    util::write_atomic(&path, results.as_bytes())?;
    print!("{results}");
    eprintln!("wrote {}", path.display());
    if !failed.is_empty() {
        bail!(
            "some requests failed ({}): the numbers above measure errors; see the Envoy logs \
             under target/bench/envoy/",
            failed.join(", ")
        );
    }
    Ok(())
}

fn seed_headers() -> Vec<(String, String)> {
    SEED_HEADERS
        .iter()
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect()
}

/// A module configured as the seed configures add-header.
fn seed_case(label: &str, role: Role, wasm: PathBuf, headers: Vec<(String, String)>) -> Case {
    Case {
        label: label.to_string(),
        role,
        filter: Filter::Wasm {
            path: wasm,
            root_id: SEED_ROOT_ID.to_string(),
            configuration: SEED_CONFIG.to_string(),
        },
        expected_headers: headers,
        expect_ok: true,
    }
}

/// How a filter under filters/ is benched: add-header as the seed configures it; any other
/// filter as its optional `filters/<name>/bench.json` says (`root_id`, `configuration`,
/// `expected_headers` as `[[name, value], ...]`), else with root_id `my_root_id`, an empty
/// configuration and any HTTP response accepted.
#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct BenchJson {
    root_id: Option<String>,
    configuration: Option<String>,
    #[serde(default)]
    expected_headers: Vec<(String, String)>,
    #[serde(default)]
    expect_ok: bool,
}

fn filter_case(name: &str, wasm: PathBuf) -> Result<Case> {
    let label = format!("{name} on filterkit");
    if name == "add-header" {
        return Ok(seed_case(&label, Role::Filter, wasm, seed_headers()));
    }
    let path = util::project_root()
        .join("filters")
        .join(name)
        .join("bench.json");
    let bench: BenchJson = match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text)
            .with_context(|| format!("reading {}: fix its JSON", path.display()))?,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => BenchJson::default(),
        Err(error) => return Err(error).with_context(|| format!("reading {}", path.display())),
    };
    Ok(Case {
        label,
        role: Role::Filter,
        filter: Filter::Wasm {
            path: wasm,
            root_id: bench.root_id.unwrap_or_else(|| SEED_ROOT_ID.to_string()),
            configuration: bench.configuration.unwrap_or_default(),
        },
        expected_headers: bench.expected_headers,
        expect_ok: bench.expect_ok,
    })
}

/// Copies a module into target/bench/modules/, so that what is measured stays the same while
/// others rebuild; returns the copy.
fn snapshot(wasm: &Path) -> Result<PathBuf> {
    let bytes = std::fs::read(wasm).with_context(|| format!("reading {}", wasm.display()))?;
    let file_name = wasm
        .file_name()
        .with_context(|| format!("{} has no file name", wasm.display()))?;
    let copy = util::target_dir()
        .join("bench")
        .join("modules")
        .join(file_name);
    util::write_atomic(&copy, &bytes)?;
    Ok(copy)
}

fn file_size(path: &Path) -> Result<u64> {
    Ok(std::fs::metadata(path)
        .with_context(|| format!("reading {}", path.display()))?
        .len())
}

/// Measures every case `rounds` times at each worker count, the cases taking turns (round 1
/// of every case at every worker count, then round 2, ...) so that a change in the machine's
/// load touches them all alike and each round pairs the cases under the same load.
fn measure_envoy(
    cases: &[Case],
    load: Load,
    rounds: u32,
    workers: &[u32],
) -> Result<Vec<Measured>> {
    let envoy_binary = util::tool("envoy")?;
    let ticks_per_second = envoy_cost::ticks_per_second()?;
    let work_root = util::target_dir().join("bench").join("envoy");
    let mut measured = Vec::new();
    for round in 1..=rounds {
        for &n_workers in workers {
            for (case_idx, case) in cases.iter().enumerate() {
                let work_dir =
                    work_root.join(format!("case-{case_idx}-workers-{n_workers}-round-{round}"));
                eprintln!(
                    "envoy, round {round} of {rounds}, {n_workers} worker(s): {}",
                    case.label
                );
                let one = envoy_cost::measure(
                    &envoy_binary,
                    case,
                    n_workers,
                    load,
                    &work_dir,
                    ticks_per_second,
                );
                measured.push(one.with_context(|| {
                    format!(
                        "measuring {}: a filter that needs a configuration to load takes it from \
                         filters/<name>/bench.json (root_id, configuration, expected_headers, \
                         expect_ok; see docs/benchmarks.md)",
                        case.label
                    )
                })?);
            }
        }
    }
    Ok(measured)
}

/// Counts the instructions of every case `rounds` times under callgrind (one worker), the
/// cases taking turns as in [`measure_envoy`].
fn count_instructions(
    tools: &instructions::Tools,
    cases: &[&Case],
    load: instructions::Load,
    rounds: u32,
) -> Result<Vec<Counted>> {
    let envoy_binary = util::tool("envoy")?;
    let work_root = util::target_dir().join("bench").join("callgrind");
    let mut counted = Vec::new();
    for round in 1..=rounds {
        for (case_idx, case) in cases.iter().enumerate() {
            let work_dir = work_root.join(format!("case-{case_idx}-round-{round}"));
            eprintln!(
                "envoy under callgrind, round {round} of {rounds}: {}",
                case.label
            );
            let one = instructions::count(tools, &envoy_binary, case, load, &work_dir)
                .with_context(|| format!("counting the instructions of {}", case.label))?;
            counted.push(one);
        }
    }
    Ok(counted)
}

/// Assembles bench/<name>.wat (with wabt's `wat2wasm`: xtask links no Wasm crate) into
/// target/bench/<name>.wasm.
fn assemble(name: &str) -> Result<PathBuf> {
    let source = util::project_root()
        .join("xtask")
        .join("src")
        .join("bench")
        .join(format!("{name}.wat"));
    let output = util::target_dir()
        .join("bench")
        .join(format!("{name}.wasm"));
    std::fs::create_dir_all(util::target_dir().join("bench")).context("creating target/bench")?;
    util::run(
        std::process::Command::new(util::tool("wat2wasm")?)
            .arg(&source)
            .arg("-o")
            .arg(&output),
    )
    .with_context(|| format!("assembling xtask/src/bench/{name}.wat"))?;
    Ok(output)
}

/// Where the numbers come from: date, CPUs, load, kernel, Envoy.
struct Machine {
    date: String,
    cpus: usize,
    cpu_model: String,
    kernel: String,
    load_average: String,
    envoy_version: String,
}

impl Machine {
    fn describe() -> Machine {
        let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
        let cpu_model = read("/proc/cpuinfo")
            .lines()
            .find_map(|line| {
                let (key, value) = line.split_once(':')?;
                (key.trim() == "model name").then(|| value.trim().to_string())
            })
            .unwrap_or_else(|| "unknown".to_string());
        let load_average = read("/proc/loadavg")
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ");
        Machine {
            date: utc_now(),
            cpus: std::thread::available_parallelism().map_or(0, |cpus| cpus.get()),
            cpu_model,
            kernel: read("/proc/sys/kernel/osrelease").trim().to_string(),
            load_average,
            envoy_version: envoy_version().unwrap_or_else(|| "not found".to_string()),
        }
    }

    fn render(&self) -> String {
        format!(
            "- date: {}\n- machine: {} CPUs ({}), Linux {}, load average at start {}\n\
             - envoy: {}\n",
            self.date,
            self.cpus,
            self.cpu_model,
            self.kernel,
            self.load_average,
            self.envoy_version
        )
    }
}

/// Envoy's version field (`<commit>/1.40.0/Clean/RELEASE/BoringSSL`), or `None` if Envoy is
/// not installed.
fn envoy_version() -> Option<String> {
    let envoy = util::tool("envoy").ok()?;
    let output = std::process::Command::new(envoy)
        .arg("--version")
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let version = text.split("version:").nth(1)?.trim();
    Some(version.split('/').nth(1).unwrap_or(version).to_string())
}

/// The current UTC time as `YYYY-MM-DD HH:MM UTC`.
fn utc_now() -> String {
    let seconds = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    format_utc(seconds)
}

/// Formats seconds since the Unix epoch as `YYYY-MM-DD HH:MM UTC` (proleptic Gregorian
/// calendar, counted in 400-year eras of 146,097 days).
fn format_utc(seconds: u64) -> String {
    let days = seconds / 86_400;
    let minute_of_day = seconds % 86_400 / 60;
    // Days since 0000-03-01, so that the leap day ends each year.
    let days = days + 719_468;
    let era = days / 146_097;
    let day_of_era = days % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = era * 400 + year_of_era + u64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        minute_of_day / 60,
        minute_of_day % 60
    )
}

#[cfg(test)]
mod tests {
    use expect_test::{Expect, expect};

    fn check_utc(seconds: u64, expect: Expect) {
        expect.assert_eq(&super::format_utc(seconds));
    }

    #[test]
    fn formats_the_epoch() {
        check_utc(0, expect!["1970-01-01 00:00 UTC"]);
    }

    #[test]
    fn formats_a_leap_day() {
        check_utc(951_827_640, expect!["2000-02-29 12:34 UTC"]);
    }

    #[test]
    fn formats_the_last_minute_of_a_year() {
        check_utc(1_735_689_540, expect!["2024-12-31 23:59 UTC"]);
    }

    #[test]
    fn formats_march_first_of_a_century_without_leap_day() {
        check_utc(4_107_542_400, expect!["2100-03-01 00:00 UTC"]);
    }
}
