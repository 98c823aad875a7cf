//! `cargo xtask bench`: what a filter costs, written to target/bench/results.md.
//!
//! Three sections. Shipped sizes: every filter as shipped (target/filters/) and the plain
//! proxy-wasm reference filter built with proxy-wasm-rust-sdk's example profile. host-sim:
//! `filter-sim bench` on add-header (time to a ready instance, streams per second with tracing
//! on, guest memory). Envoy (the reason Filterkit exists: module size becomes resident memory in
//! every sidecar): Envoy without a Wasm filter, with add-header, and with the reference, each
//! measured by [`envoy_cost`]. Numbers are printed, never asserted: this machine is shared and
//! its timings move by several percent from run to run. docs/benchmarks.md keeps a run's
//! numbers with the method.

mod envoy_cost;

use std::fmt::Write as _;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::{build, util};

use envoy_cost::{Case, Filter, Load, Measured, Role};

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
    /// A run of a minute or two that exercises every case once with little traffic, so that
    /// `cargo xtask test` keeps the bench working; its numbers mean nothing.
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

pub fn run(mut args: Args) -> Result<()> {
    if args.smoke {
        args.rounds = SMOKE_ROUNDS;
        args.warmup = SMOKE_WARMUP;
        args.requests = SMOKE_REQUESTS;
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
        failed = measured
            .iter()
            .filter(|measured| measured.failures.count > 0)
            .map(|measured| measured.label.clone())
            .collect();
        failed.sort();
        failed.dedup();
        let raw = util::target_dir().join("bench").join("raw.csv");
        util::write_atomic(&raw, render_raw(&measured).as_bytes())?;
        results.push('\n');
        results.push_str(&render_envoy(&machine.envoy_version, load, &measured));
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

/// `filter-sim bench`'s `key: value` lines as a table, each known key explained.
fn render_sim(output: &str) -> String {
    let mut table = String::from("| measure | value | meaning |\n|---|---|---|\n");
    for line in output.lines().filter(|line| !line.trim().is_empty()) {
        let (key, value) = line.split_once(':').unwrap_or((line, ""));
        let key = key.trim();
        let _ = writeln!(table, "| {key} | {} | {} |", value.trim(), sim_meaning(key));
    }
    table
}

fn sim_meaning(key: &str) -> &'static str {
    match key {
        "module_load_first_us" => "µs to compile the module with wasmtime (first load)",
        "module_load_cached_us" => "µs to load the same bytes again (in-process module cache)",
        "ready_instance_us" => {
            "µs from the cached module to a configured plugin ready for streams (mean of 2,000; issue 3 target < 100)"
        }
        "streams" => "add-header streams run in one VM (the first 1,000 are warm-up)",
        "streams_per_second" => {
            "request headers + response headers + done, one thread, every host call traced (issue 3 target >= 100,000)"
        }
        "tracing" => "whether the trace of host calls was recorded",
        "memory_after_warmup_bytes" => "guest linear memory after the warm-up",
        "memory_at_end_bytes" => "guest linear memory after every stream (equal = no growth)",
        _ => "",
    }
}

/// The median of some numbers (the mean of the middle two for an even count), 0 for none.
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    match values.len() {
        0 => 0.0,
        len if len % 2 == 1 => values[middle],
        _ => (values[middle - 1] + values[middle]) / 2.0,
    }
}

/// `median (lowest–highest)` with `decimals`, or just the value for one number, `—` for none.
fn spread(values: &[f64], decimals: usize) -> String {
    let lowest = values.iter().copied().fold(f64::INFINITY, f64::min);
    let highest = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    match values.len() {
        0 => "—".to_string(),
        1 => format!("{:.decimals$}", values[0]),
        _ => format!(
            "{:.decimals$} ({lowest:.decimals$}–{highest:.decimals$})",
            median(values.to_vec())
        ),
    }
}

/// The rounds of one case at one worker count, in round order.
struct Rounds<'a> {
    first: &'a Measured,
    all: Vec<&'a Measured>,
}

/// Groups measurements by worker count, then by case, both in the order they were measured.
fn group(measured: &[Measured]) -> Vec<(u32, Vec<Rounds<'_>>)> {
    let mut groups: Vec<(u32, Vec<Rounds<'_>>)> = Vec::new();
    for one in measured {
        let idx = match groups
            .iter()
            .position(|(workers, _)| *workers == one.workers)
        {
            Some(idx) => idx,
            None => {
                groups.push((one.workers, Vec::new()));
                groups.len() - 1
            }
        };
        let cases = &mut groups[idx].1;
        match cases
            .iter_mut()
            .find(|rounds| rounds.first.label == one.label)
        {
            Some(rounds) => rounds.all.push(one),
            None => cases.push(Rounds {
                first: one,
                all: vec![one],
            }),
        }
    }
    groups
}

/// Per round, `combine(case, baseline)` of a case against the baseline measured in the same
/// round (paired), or nothing when the case is the baseline or there is none; non-finite
/// results are left out.
fn paired(
    rounds: &Rounds<'_>,
    cases: &[Rounds<'_>],
    baseline: Role,
    combine: impl Fn(&Measured, &Measured) -> f64,
) -> Vec<f64> {
    if rounds.first.role == baseline {
        return Vec::new();
    }
    let Some(base) = cases.iter().find(|case| case.first.role == baseline) else {
        return Vec::new();
    };
    rounds
        .all
        .iter()
        .zip(&base.all)
        .map(|(case, base)| combine(case, base))
        // A ratio to a round with no measurable CPU (a smoke run's few requests) means nothing.
        .filter(|value| value.is_finite())
        .collect()
}

fn rss_mib(measured: &Measured) -> f64 {
    measured.rss_after_warmup_kib as f64 / 1024.0
}

/// The Envoy section: per worker count, a table of medians with (lowest–highest).
fn render_envoy(envoy_version: &str, load: Load, measured: &[Measured]) -> String {
    let mut text = format!("## Envoy {envoy_version}\n");
    for (workers, cases) in group(measured) {
        let n_rounds = cases.first().map_or(0, |rounds| rounds.all.len());
        let _ = write!(
            text,
            "\n### {workers} worker(s), n = {n_rounds} round(s)\n\n\
             Medians (lowest–highest). \"Paired\": per round, against the baseline measured in the \
             same round, then the median of those.\n\n\
             | module | bytes | RSS MiB | RSS above trivial module, paired | CPU µs/request | CPU ÷ hand-written WAT, paired | CPU ÷ native header_mutation, paired | configuration accepted, ms | failures |\n\
             |---|---|---|---|---|---|---|---|---|\n"
        );
        for rounds in &cases {
            let first = rounds.first;
            let values = |of: fn(&Measured) -> f64| -> Vec<f64> {
                rounds.all.iter().map(|measured| of(measured)).collect()
            };
            let rss_above = paired(rounds, &cases, Role::Trivial, |case, base| {
                rss_mib(case) - rss_mib(base)
            });
            let cpu_ratio = |baseline| {
                paired(rounds, &cases, baseline, |case, base| {
                    case.cpu_us_per_request() / base.cpu_us_per_request()
                })
            };
            let _ = writeln!(
                text,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                first.label,
                first
                    .wasm_size
                    .map_or_else(|| "—".to_string(), |size| size.to_string()),
                spread(&values(rss_mib), 1),
                spread(&rss_above, 2),
                spread(&values(Measured::cpu_us_per_request), 1),
                spread(&cpu_ratio(Role::HandWritten), 3),
                spread(&cpu_ratio(Role::Native), 3),
                spread(
                    &values(|measured| measured.ready_after.as_secs_f64() * 1e3),
                    0
                ),
                rounds
                    .all
                    .iter()
                    .map(|measured| measured.failures.count)
                    .sum::<u64>(),
            );
        }
        if let Some(add_header) = cases
            .iter()
            .find(|rounds| rounds.first.label.starts_with("add-header"))
        {
            let ratios = paired(add_header, &cases, Role::HandWritten, |case, base| {
                case.cpu_us_per_request() / base.cpu_us_per_request()
            });
            if ratios.len() > 1 {
                let lowest = ratios.iter().copied().fold(f64::INFINITY, f64::min);
                let highest = ratios.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let width = (highest - lowest) / median(ratios.clone()) * 100.0;
                let _ = writeln!(
                    text,
                    "\nResolution: add-header's paired CPU ratio to the hand-written WAT spans {width:.1}% \
                     across {} rounds; {}.",
                    ratios.len(),
                    if width <= 3.0 {
                        "a 3% difference is resolved"
                    } else {
                        "this run cannot resolve a 3% difference (more rounds, or a quieter machine)"
                    }
                );
            }
        }
    }
    let _ = write!(
        text,
        "\nEach round of a case: a fresh Envoy (`--concurrency` as titled, direct_response route; \
         each module with root_id {SEED_ROOT_ID} and `{SEED_CONFIG}`, other filters as their \
         bench.json says), {} warm-up requests, then VmRSS; then {} requests over {} keep-alive \
         connections from an in-process client, Envoy's utime + stime (all threads) over them \
         divided by the count. \"configuration accepted\" is from starting Envoy to its listener \
         being open (the configuration, with the module compiled and its plugin configured). \
         Every response must be 200 and, from an add-header, carry {}; failures counts the \
         others (warm-up included).\n",
        load.warmup,
        load.requests,
        load.connections,
        SEED_HEADERS
            .iter()
            .map(|(name, value)| format!("`{name}: {value}`"))
            .collect::<Vec<_>>()
            .join(" and "),
    );
    text
}

/// Every round of every case, one CSV line each.
fn render_raw(measured: &[Measured]) -> String {
    let mut text = String::from(
        "workers,round,case,role,bytes,rss_kib_after_warmup,rss_kib_at_end,cpu_us_per_request,\
         requests,elapsed_s,configuration_accepted_ms,failures,envoy_connections,envoy_2xx,log\n",
    );
    let mut seen: Vec<(u32, &str)> = Vec::new();
    for one in measured {
        seen.push((one.workers, &one.label));
        let round = seen
            .iter()
            .filter(|(workers, label)| *workers == one.workers && *label == one.label)
            .count();
        let optional = |value: Option<u64>| value.map_or_else(String::new, |v| v.to_string());
        let _ = writeln!(
            text,
            "{},{round},\"{}\",{:?},{},{},{},{:.2},{},{:.3},{:.1},{},{},{},{}",
            one.workers,
            one.label,
            one.role,
            optional(one.wasm_size),
            one.rss_after_warmup_kib,
            one.rss_at_end_kib,
            one.cpu_us_per_request(),
            one.requests,
            one.elapsed.as_secs_f64(),
            one.ready_after.as_secs_f64() * 1e3,
            one.failures.count,
            optional(one.connections_opened),
            optional(one.responses_2xx),
            util::relative(&one.work_dir.join("envoy.log")),
        );
    }
    text
}

/// host-sim's time per stream beside Envoy's CPU per request for add-header (one worker).
fn render_sim_against_envoy(sim_output: &str, measured: &[Measured]) -> String {
    let streams_per_second = sim_output.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key.trim() == "streams_per_second")
            .then(|| value.trim().parse::<f64>().ok())
            .flatten()
    });
    let groups = group(measured);
    let Some((_, cases)) = groups.iter().find(|(workers, _)| *workers == 1) else {
        return String::new();
    };
    let Some(add_header) = cases
        .iter()
        .find(|rounds| rounds.first.label.starts_with("add-header"))
    else {
        return String::new();
    };
    let total: Vec<f64> = add_header
        .all
        .iter()
        .map(|measured| measured.cpu_us_per_request())
        .collect();
    let above_none = paired(add_header, cases, Role::NoFilter, |case, base| {
        case.cpu_us_per_request() - base.cpu_us_per_request()
    });
    format!(
        "## host-sim against Envoy (add-header, one worker)\n\n\
         | measure | µs |\n|---|---|\n\
         | host-sim: one stream (request headers, response headers, done; tracing on) | {} |\n\
         | Envoy: CPU per request, whole process | {} |\n\
         | Envoy: CPU per request above no HTTP filter, paired | {} |\n",
        streams_per_second.map_or_else(|| "—".to_string(), |rate| format!("{:.2}", 1e6 / rate)),
        spread(&total, 1),
        spread(&above_none, 1),
    )
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use expect_test::{Expect, expect};

    use super::envoy_cost::{Failures, Load, Measured, Role};

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

    #[test]
    fn explains_known_filter_sim_lines_and_keeps_unknown_ones() {
        expect![[r#"
            | measure | value | meaning |
            |---|---|---|
            | ready_instance_us | 66.2 | µs from the cached module to a configured plugin ready for streams (mean of 2,000; issue 3 target < 100) |
            | new_measure | 7 |  |
        "#]]
        .assert_eq(&super::render_sim("ready_instance_us: 66.2\n\nnew_measure: 7\n"));
    }

    fn measured(label: &str, role: Role, wasm_size: Option<u64>, rss_mib: u64) -> Measured {
        Measured {
            label: label.to_string(),
            role,
            workers: 1,
            ready_after: Duration::from_millis(200),
            wasm_size,
            rss_after_warmup_kib: rss_mib * 1024,
            rss_at_end_kib: rss_mib * 1024 + 512,
            cpu: Duration::from_millis(2_500),
            elapsed: Duration::from_secs(5),
            requests: 50_000,
            failures: Failures::default(),
            connections_opened: Some(8),
            responses_2xx: Some(52_000),
            work_dir: PathBuf::from("/tmp/case"),
        }
    }

    /// Two rounds of the cases, as `measure_envoy` returns them: the second round with 1 MiB
    /// more memory, 1 s more CPU and 100 ms longer to start for every case but the trivial
    /// module, whose memory stays.
    fn two_rounds(cases: &[(&str, Role, Option<u64>, u64)]) -> Vec<Measured> {
        let mut all = Vec::new();
        for round in 0..2 {
            for &(label, role, wasm_size, rss_mib) in cases {
                let mut one = measured(label, role, wasm_size, rss_mib);
                if round == 1 && role != Role::Trivial {
                    one.rss_after_warmup_kib += 1024;
                    one.cpu += Duration::from_secs(1);
                    one.ready_after += Duration::from_millis(100);
                }
                all.push(one);
            }
        }
        all
    }

    #[test]
    fn envoy_table_pairs_rounds_against_the_baselines() {
        let mut measured = two_rounds(&[
            ("none", Role::NoFilter, None, 64),
            ("native", Role::Native, None, 64),
            ("trivial", Role::Trivial, Some(322), 79),
            ("wat", Role::HandWritten, Some(473), 79),
            ("add-header on filterkit", Role::Filter, Some(29_000), 83),
        ]);
        measured[9].failures.count = 3;
        let load = Load {
            warmup: 2_000,
            requests: 50_000,
            connections: 8,
        };
        expect![[r###"
            ## Envoy 1.40.0

            ### 1 worker(s), n = 2 round(s)

            Medians (lowest–highest). "Paired": per round, against the baseline measured in the same round, then the median of those.

            | module | bytes | RSS MiB | RSS above trivial module, paired | CPU µs/request | CPU ÷ hand-written WAT, paired | CPU ÷ native header_mutation, paired | configuration accepted, ms | failures |
            |---|---|---|---|---|---|---|---|---|
            | none | — | 64.5 (64.0–65.0) | -14.50 (-15.00–-14.00) | 60.0 (50.0–70.0) | 1.000 (1.000–1.000) | 1.000 (1.000–1.000) | 250 (200–300) | 0 |
            | native | — | 64.5 (64.0–65.0) | -14.50 (-15.00–-14.00) | 60.0 (50.0–70.0) | 1.000 (1.000–1.000) | — | 250 (200–300) | 0 |
            | trivial | 322 | 79.0 (79.0–79.0) | — | 50.0 (50.0–50.0) | 0.857 (0.714–1.000) | 0.857 (0.714–1.000) | 200 (200–200) | 0 |
            | wat | 473 | 79.5 (79.0–80.0) | 0.50 (0.00–1.00) | 60.0 (50.0–70.0) | — | 1.000 (1.000–1.000) | 250 (200–300) | 0 |
            | add-header on filterkit | 29000 | 83.5 (83.0–84.0) | 4.50 (4.00–5.00) | 60.0 (50.0–70.0) | 1.000 (1.000–1.000) | 1.000 (1.000–1.000) | 250 (200–300) | 3 |

            Resolution: add-header's paired CPU ratio to the hand-written WAT spans 0.0% across 2 rounds; a 3% difference is resolved.

            Each round of a case: a fresh Envoy (`--concurrency` as titled, direct_response route; each module with root_id my_root_id and `{"name":"hello","value":"hello details"}`, other filters as their bench.json says), 2000 warm-up requests, then VmRSS; then 50000 requests over 8 keep-alive connections from an in-process client, Envoy's utime + stime (all threads) over them divided by the count. "configuration accepted" is from starting Envoy to its listener being open (the configuration, with the module compiled and its plugin configured). Every response must be 200 and, from an add-header, carry `resp-header-demo: added by our filter` and `hello: hello details`; failures counts the others (warm-up included).
        "###]].assert_eq(&super::render_envoy("1.40.0", load, &measured));
        expect![[r#"
            workers,round,case,role,bytes,rss_kib_after_warmup,rss_kib_at_end,cpu_us_per_request,requests,elapsed_s,configuration_accepted_ms,failures,envoy_connections,envoy_2xx,log
            1,1,"none",NoFilter,,65536,66048,50.00,50000,5.000,200.0,0,8,52000,/tmp/case/envoy.log
            1,1,"native",Native,,65536,66048,50.00,50000,5.000,200.0,0,8,52000,/tmp/case/envoy.log
        "#]].assert_eq(&super::render_raw(&measured[..2]));
    }
}
