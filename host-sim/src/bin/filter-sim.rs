//! `filter-sim`: run a scenario against a Proxy-Wasm module, check a plugin configuration as
//! Envoy would before accepting it, or measure host-sim's speed.

#![forbid(unsafe_code)]

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use filterkit_host_sim::{Module, Outcome, Sim, exchange, scenario};

#[derive(Parser)]
#[command(
    name = "filter-sim",
    about = "An Envoy-faithful Proxy-Wasm host for tests"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs a scenario file (JSON) and prints the trace.
    Run {
        /// The module (.wasm or .wat).
        module: PathBuf,
        /// The scenario file.
        scenario: PathBuf,
    },
    /// Runs a client-level scenario (host-sim/tests/differential/README.md) through a model
    /// of Envoy's HTTP connection manager and the plugins' filter chain, and prints what the
    /// client saw as the observation JSON.
    Exchange {
        /// The module (.wasm or .wat).
        module: PathBuf,
        /// The client-level scenario file.
        scenario: PathBuf,
        /// Also print the trace of every call Envoy would make, on stderr.
        #[arg(long)]
        trace: bool,
    },
    /// Loads the module and configures one plugin as Envoy does before accepting a config
    /// (import check, VM start, `on_configure` canary); exits 1 with the filter's own log
    /// lines when Envoy would reject it.
    Check {
        /// The module (.wasm or .wat).
        module: PathBuf,
        /// Plugin configuration (e.g. the ASMFilterDeployment's `parameters`).
        #[arg(long, default_value = "")]
        config: String,
        /// The plugin's root_id.
        #[arg(long, default_value = "my_root_id")]
        root_id: String,
    },
    /// Measures load time, time to a ready instance, and add-header-style streams per second.
    Bench {
        /// The module (.wasm or .wat).
        module: PathBuf,
        /// Plugin configuration.
        #[arg(long, default_value = "")]
        config: String,
        /// The plugin's root_id.
        #[arg(long, default_value = "my_root_id")]
        root_id: String,
        /// How many streams to run in one VM.
        #[arg(long, default_value_t = 200_000)]
        streams: u64,
    },
}

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<ExitCode> {
    match Cli::parse().command {
        Command::Run {
            module,
            scenario: path,
        } => {
            let module =
                Module::load(&module).with_context(|| format!("loading {}", module.display()))?;
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            let parsed =
                scenario::parse(&text).with_context(|| format!("parsing {}", path.display()))?;
            let output = scenario::run(&module, &parsed)?;
            // A closed pipe (e.g. `| head`) is not an error worth a panic.
            let _ = std::io::Write::write_all(&mut std::io::stdout(), output.as_bytes());
            Ok(ExitCode::SUCCESS)
        }
        Command::Exchange {
            module,
            scenario: path,
            trace,
        } => {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            let parsed =
                exchange::parse(&text).with_context(|| format!("parsing {}", path.display()))?;
            let (observation, calls) = exchange::run_path_traced(&module, &parsed, trace)
                .with_context(|| format!("running {}", module.display()))?;
            if trace {
                eprint!("{calls}");
            }
            let mut output = serde_json::to_string_pretty(&observation)?;
            output.push('\n');
            let _ = std::io::Write::write_all(&mut std::io::stdout(), output.as_bytes());
            Ok(ExitCode::SUCCESS)
        }
        Command::Check {
            module,
            config,
            root_id,
        } => check(&module, &config, &root_id),
        Command::Bench {
            module,
            config,
            root_id,
            streams,
        } => {
            match bench(&module, &config, &root_id, streams) {
                // A closed pipe (e.g. `| head -1`) ends the benchmark quietly.
                Err(error) if is_broken_pipe(&error) => Ok(ExitCode::SUCCESS),
                other => other.map(|()| ExitCode::SUCCESS),
            }
        }
    }
}

fn check(path: &PathBuf, config: &str, root_id: &str) -> anyhow::Result<ExitCode> {
    let module = Module::load(path).with_context(|| format!("loading {}", path.display()))?;
    match Sim::builder(&module).plugin(root_id, config).build() {
        Ok(_) => {
            emit("accepted", format_args!("root_id={root_id}"))?;
            Ok(ExitCode::SUCCESS)
        }
        Err(filterkit_host_sim::Error::ConfigRejected(rejection)) => {
            let mut stdout = std::io::stdout().lock();
            writeln!(stdout, "rejected: {}", rejection.reason)?;
            for log in &rejection.logs {
                writeln!(stdout, "  {} {}", log.level_name(), log.message)?;
            }
            Ok(ExitCode::FAILURE)
        }
        Err(other) => Err(other).with_context(|| format!("configuring {}", path.display())),
    }
}

fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error
        .downcast_ref::<std::io::Error>()
        .is_some_and(|error| error.kind() == std::io::ErrorKind::BrokenPipe)
}

/// Prints one `key: value` line; unlike `println!`, a closed stdout is an error, not a panic.
fn emit(key: &str, value: impl std::fmt::Display) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{key}: {value}")?;
    stdout.flush()?;
    Ok(())
}

fn bench(path: &PathBuf, config: &str, root_id: &str, streams: u64) -> anyhow::Result<()> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let started = Instant::now();
    let module =
        Module::from_bytes(&bytes).with_context(|| format!("loading {}", path.display()))?;
    let first_load = started.elapsed();
    let started = Instant::now();
    let _ = Module::from_bytes(&bytes)?;
    let cached_load = started.elapsed();
    emit(
        "module_load_first_us",
        format_args!("{:.1}", first_load.as_secs_f64() * 1e6),
    )?;
    emit(
        "module_load_cached_us",
        format_args!("{:.1}", cached_load.as_secs_f64() * 1e6),
    )?;

    // The first build runs the canary; later builds find it cached, as Envoy does.
    let build = || Sim::builder(&module).plugin(root_id, config).build();
    drop(build().context("starting the plugin")?);
    let rounds = 2_000;
    let started = Instant::now();
    for _ in 0..rounds {
        let sim = build()?;
        std::hint::black_box(&sim);
    }
    let ready = started.elapsed() / rounds;
    emit(
        "ready_instance_us",
        format_args!("{:.1}", ready.as_secs_f64() * 1e6),
    )?;

    let mut sim = build()?;
    let warmup = 1_000.min(streams);
    let run_streams = |sim: &mut Sim, count: u64| -> anyhow::Result<()> {
        for _ in 0..count {
            let mut stream = sim.stream(root_id)?;
            let request = stream.send_request_headers(
                &[
                    (":method", "GET"),
                    (":path", "/"),
                    (":authority", "example.com"),
                    ("user-agent", "bench"),
                ],
                true,
            );
            let response =
                stream.send_response_headers(&[(":status", "200"), ("content-length", "0")], true);
            let done = stream.complete();
            if request != Outcome::Continue
                || response != Outcome::Continue
                || done != Outcome::Continue
            {
                anyhow::bail!("a stream did not continue: {request:?} {response:?} {done:?}");
            }
            sim.clear_trace();
            sim.clear_logs();
        }
        Ok(())
    };
    run_streams(&mut sim, warmup)?;
    let memory_after_warmup = sim.memory_size();
    let started = Instant::now();
    run_streams(&mut sim, streams - warmup)?;
    let elapsed = started.elapsed();
    let per_second = (streams - warmup) as f64 / elapsed.as_secs_f64();
    emit("streams", streams)?;
    emit("streams_per_second", format_args!("{per_second:.0}"))?;
    emit("tracing", "on")?;
    emit("memory_after_warmup_bytes", memory_after_warmup)?;
    emit("memory_at_end_bytes", sim.memory_size())?;
    Ok(())
}
