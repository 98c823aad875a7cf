//! What a filter costs an Envoy sidecar: resident memory and CPU time per request.
//!
//! Each case gets its own Envoy, started as `cargo xtask run` starts it (one worker, dynamic
//! base id, a route that answers by itself), with the Wasm filter or none. A warm-up over
//! keep-alive connections lets V8 compile and the pools fill; then VmRSS and its anonymous part
//! are read from /proc/<pid>/status, and a fixed number of requests is sent while Envoy's CPU
//! time (utime + stime of every thread, /proc/<pid>/stat) is read before and after. Every
//! response is checked (status 200 and the headers the filter adds): failures are counted and
//! shown, because a bench that measures errors measures nothing.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use ureq::Agent;

use crate::envoy::{self, Envoy, Plugin};
use crate::util;

/// One Envoy configuration to measure.
pub struct Case {
    /// What the table calls it.
    pub label: String,
    pub role: Role,
    pub filter: Filter,
    /// Headers every response must carry (name, value).
    pub expected_headers: Vec<(String, String)>,
    /// Whether every response must be a 200; when false any HTTP response counts as answered
    /// (a filter under filters/ without a bench.json may well reject the bench's requests).
    pub expect_ok: bool,
}

/// The HTTP filter in front of the router.
pub enum Filter {
    None,
    /// Envoy's native `header_mutation` filter, appending these response headers.
    HeaderMutation(Vec<(String, String)>),
    /// A Wasm module (V8) with its root_id and plugin configuration.
    Wasm {
        path: PathBuf,
        root_id: String,
        configuration: String,
    },
}

/// What a case is compared with.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Role {
    /// Envoy without an HTTP filter: the baseline for every filter.
    NoFilter,
    /// Envoy's native `header_mutation` filter adding the same headers.
    Native,
    /// A module whose callbacks do nothing: what any Wasm filter costs, whatever its code.
    Trivial,
    /// The hand-written WAT add-header: the floor for a Wasm add-header.
    HandWritten,
    /// The trivial module plus one small loop: the least code that makes V8's optimising
    /// compiler run the paths any real module's code needs.
    Floor,
    /// A real filter.
    Filter,
}

/// How much traffic each case gets.
#[derive(Clone, Copy)]
pub struct Load {
    /// Requests sent before memory is read and the CPU clock starts.
    pub warmup: u64,
    /// Requests over which CPU time and throughput are measured.
    pub requests: u64,
    /// Keep-alive connections, one client thread each.
    pub connections: u64,
}

/// What one case measured.
pub struct Measured {
    pub label: String,
    pub role: Role,
    /// Envoy's worker threads (`--concurrency`).
    pub workers: u32,
    /// From starting Envoy to its listener open, the configuration (and module) accepted.
    pub ready_after: Duration,
    /// Size of the module in bytes, `None` without a filter.
    pub wasm_size: Option<u64>,
    pub rss_after_warmup_kib: u64,
    /// The anonymous part of it (`RssAnon`): heaps, V8's memory, the compiled code. The rest is
    /// file-backed, nearly all pages of Envoy's own binary.
    pub rss_anon_after_warmup_kib: u64,
    pub rss_at_end_kib: u64,
    /// Envoy's CPU time (every thread) over the measured requests.
    pub cpu: Duration,
    /// Wall-clock time of the measured requests.
    pub elapsed: Duration,
    /// Measured requests (the warm-up excluded).
    pub requests: u64,
    /// Failed responses, warm-up included.
    pub failures: Failures,
    /// Envoy's own counters, read from its admin API at the end.
    pub connections_opened: Option<u64>,
    pub responses_2xx: Option<u64>,
    /// Where the bootstrap and Envoy's log are.
    pub work_dir: PathBuf,
}

impl Measured {
    pub fn cpu_us_per_request(&self) -> f64 {
        self.cpu.as_secs_f64() * 1e6 / self.requests as f64
    }

    pub fn requests_per_second(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }
}

/// The bootstrap without a Wasm filter, with Envoy's `header_mutation` appending `headers` to
/// every response before the router.
fn with_header_mutation(headers: &[(String, String)]) -> serde_json::Value {
    let mut bootstrap = envoy::bootstrap(&[]);
    let mutations: Vec<serde_json::Value> = headers
        .iter()
        .map(|(key, value)| {
            serde_json::json!({ "append": {
                "header": { "key": key, "value": value },
                "append_action": "APPEND_IF_EXISTS_OR_ADD",
            }})
        })
        .collect();
    let filter = serde_json::json!({
        "name": "envoy.filters.http.header_mutation",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation",
            "mutations": { "response_mutations": mutations },
        },
    });
    if let Some(filters) = bootstrap
        .pointer_mut(
            "/static_resources/listeners/0/filter_chains/0/filters/0/typed_config/http_filters",
        )
        .and_then(serde_json::Value::as_array_mut)
    {
        filters.insert(0, filter);
    }
    bootstrap
}

/// Failed requests: how many, and the first problem as an example.
#[derive(Default)]
pub struct Failures {
    pub count: u64,
    pub first: Option<String>,
}

impl Failures {
    fn record(&mut self, problem: String) {
        self.count += 1;
        self.first.get_or_insert(problem);
    }

    pub(super) fn merge(mut self, other: Failures) -> Failures {
        self.count += other.count;
        if self.first.is_none() {
            self.first = other.first;
        }
        self
    }
}

/// The case's bootstrap (see [`envoy::bootstrap`]), and its module's size in bytes (`None`
/// without a module).
pub(super) fn bootstrap(case: &Case) -> Result<(Option<u64>, serde_json::Value)> {
    Ok(match &case.filter {
        Filter::None => (None, envoy::bootstrap(&[])),
        Filter::HeaderMutation(headers) => (None, with_header_mutation(headers)),
        Filter::Wasm {
            path,
            root_id,
            configuration,
        } => {
            let size = std::fs::metadata(path)
                .with_context(|| format!("reading {}", path.display()))?
                .len();
            let wasm = std::path::absolute(path).context("resolving the module's path")?;
            let plugin = Plugin {
                name: "bench",
                root_id,
                vm_id: "bench",
                wasm: &wasm,
                configuration,
            };
            (Some(size), envoy::bootstrap(&[plugin]))
        }
    })
}

/// Starts Envoy for `case` with `workers` worker threads, drives `load` through it and stops it
/// (also on error).
pub fn measure(
    envoy_binary: &Path,
    case: &Case,
    workers: u32,
    load: Load,
    work_dir: &Path,
    ticks_per_second: u64,
) -> Result<Measured> {
    let (wasm_size, bootstrap) = bootstrap(case)?;
    let envoy = Envoy::start_with_workers(envoy_binary, &bootstrap, work_dir, workers)
        .with_context(|| format!("starting envoy for {}", case.label))?;
    let pid = envoy.pid();
    let client = Client::new(envoy.listener_url(), load.connections, case);

    let mut failures = client.send(load.warmup)?;
    let after_warmup = rss_kib(pid)?;
    let cpu_before = cpu_time(pid, ticks_per_second)?;
    let started = Instant::now();
    failures = failures.merge(client.send(load.requests)?);
    let elapsed = started.elapsed();
    let cpu = cpu_time(pid, ticks_per_second)?.saturating_sub(cpu_before);
    let rss_at_end_kib = rss_kib(pid)?.total;
    // Read after the CPU clock stops: the admin API runs on Envoy's main thread.
    let counters = admin_counters(&envoy);
    let measured = Measured {
        label: case.label.clone(),
        role: case.role,
        workers,
        ready_after: envoy.ready_after(),
        wasm_size,
        rss_after_warmup_kib: after_warmup.total,
        rss_anon_after_warmup_kib: after_warmup.anon,
        rss_at_end_kib,
        cpu,
        elapsed,
        requests: load.requests,
        failures,
        connections_opened: counters.as_ref().and_then(|counters| counters.connections),
        responses_2xx: counters
            .as_ref()
            .and_then(|counters| counters.responses_2xx),
        work_dir: work_dir.to_path_buf(),
    };
    eprintln!(
        "envoy ({workers} worker(s)): {}: {:.1} MiB, {:.1} µs/request, {:.0} requests/s, {} failures",
        case.label,
        measured.rss_after_warmup_kib as f64 / 1024.0,
        measured.cpu_us_per_request(),
        measured.requests_per_second(),
        measured.failures.count
    );
    // Dropping `envoy` kills and reaps it.
    drop(envoy);
    Ok(measured)
}

/// Failures on one connection after which its remaining requests are not sent.
const GIVE_UP_AFTER_FAILURES: u64 = 20;

/// Keep-alive connections to one listener, one agent (and client thread) each, kept from the
/// warm-up to the end so that Envoy sees exactly `connections` connections.
pub(super) struct Client<'a> {
    url: String,
    agents: Vec<Agent>,
    case: &'a Case,
}

impl<'a> Client<'a> {
    pub(super) fn new(url: String, connections: u64, case: &'a Case) -> Self {
        let agents = (0..connections.max(1))
            .map(|_| {
                // One pooled connection per agent.
                let config = Agent::config_builder()
                    .http_status_as_error(false)
                    .proxy(None)
                    .max_idle_connections(1)
                    .max_idle_connections_per_host(1)
                    .timeout_global(Some(Duration::from_secs(10)))
                    .build();
                Agent::new_with_config(config)
            })
            .collect();
        Client { url, agents, case }
    }

    /// Sends `total` GETs spread over the connections at once and checks every response.
    pub(super) fn send(&self, total: u64) -> Result<Failures> {
        let connections = self.agents.len() as u64;
        std::thread::scope(|scope| {
            let threads: Vec<_> = self
                .agents
                .iter()
                .zip(0..)
                .map(|(agent, connection_idx)| {
                    let share =
                        total / connections + u64::from(connection_idx < total % connections);
                    scope.spawn(move || {
                        let mut failures = Failures::default();
                        for sent in 0..share {
                            if let Err(problem) = get_and_check(agent, &self.url, self.case) {
                                failures.record(problem);
                            }
                            // A hung or broken Envoy must not keep the bench waiting on
                            // timeouts for every remaining request: they count as failed.
                            if failures.count >= GIVE_UP_AFTER_FAILURES {
                                failures.count += share - sent - 1;
                                break;
                            }
                        }
                        failures
                    })
                })
                .collect();
            threads
                .into_iter()
                .try_fold(Failures::default(), |sum, thread| {
                    let failures = thread
                        .join()
                        .map_err(|_| anyhow!("a load thread panicked"))?;
                    Ok(sum.merge(failures))
                })
        })
    }
}

fn get_and_check(agent: &Agent, url: &str, case: &Case) -> std::result::Result<(), String> {
    let mut response = agent
        .get(url)
        .call()
        .map_err(|error| format!("GET {url}: {error}"))?;
    // Reading the body to its end returns the connection to the pool.
    response
        .body_mut()
        .read_to_vec()
        .map_err(|error| format!("reading the body of GET {url}: {error}"))?;
    if case.expect_ok && response.status() != 200 {
        return Err(format!("status {}", response.status().as_u16()));
    }
    for (name, value) in &case.expected_headers {
        match response.headers().get(name.as_str()) {
            Some(found) if found.as_bytes() == value.as_bytes() => {}
            Some(found) => {
                return Err(format!(
                    "header {name}: {}, expected {value:?}",
                    String::from_utf8_lossy(found.as_bytes())
                ));
            }
            None => return Err(format!("no {name} header")),
        }
    }
    Ok(())
}

/// Resident memory of a process, in KiB.
struct Rss {
    /// VmRSS.
    total: u64,
    /// RssAnon: anonymous pages. VmRSS is RssAnon + RssFile + RssShmem.
    anon: u64,
}

fn rss_kib(pid: u32) -> Result<Rss> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let field = |name: &str| {
        parse_status_kib(&status, name).with_context(|| format!("no {name} line in {path}"))
    };
    Ok(Rss {
        total: field("VmRSS")?,
        anon: field("RssAnon")?,
    })
}

/// The value of a `Name:  123 kB` line of /proc/<pid>/status.
fn parse_status_kib(status: &str, name: &str) -> Option<u64> {
    let line = status.lines().find(|line| {
        line.strip_prefix(name)
            .is_some_and(|rest| rest.starts_with(':'))
    })?;
    let mut words = line[name.len() + 1..].split_whitespace();
    let kib = words.next()?.parse().ok()?;
    (words.next()? == "kB").then_some(kib)
}

/// User plus system CPU time of every thread of a process.
fn cpu_time(pid: u32, ticks_per_second: u64) -> Result<Duration> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let ticks = parse_cpu_ticks(&stat).with_context(|| format!("unexpected format of {path}"))?;
    Ok(Duration::from_secs_f64(
        ticks as f64 / ticks_per_second as f64,
    ))
}

/// utime + stime (fields 14 and 15) of a /proc/<pid>/stat line. The command name (field 2) may
/// hold spaces and parentheses, so fields are counted after its last `)`.
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// The kernel's clock ticks per second, the unit of /proc/<pid>/stat's CPU times.
pub fn ticks_per_second() -> Result<u64> {
    let output = util::run_capture(std::process::Command::new("getconf").arg("CLK_TCK"))
        .context("asking `getconf CLK_TCK` for the unit of /proc/<pid>/stat")?;
    let ticks: u64 = output
        .trim()
        .parse()
        .with_context(|| format!("`getconf CLK_TCK` printed {:?}", output.trim()))?;
    if ticks == 0 {
        bail!("`getconf CLK_TCK` printed 0");
    }
    Ok(ticks)
}

struct Counters {
    connections: Option<u64>,
    responses_2xx: Option<u64>,
}

/// The listener's connection and 2xx counters, from Envoy's admin API; `None` if it does not
/// answer (the numbers are a cross-check, not a measurement).
fn admin_counters(envoy: &Envoy) -> Option<Counters> {
    let url = format!(
        "http://{}/stats?filter=^http\\.filterkit\\.downstream_",
        envoy.admin_address()
    );
    let response = envoy::get(&url).ok()?;
    if response.status != 200 {
        return None;
    }
    Some(Counters {
        connections: stat_value(&response.body, "http.filterkit.downstream_cx_total"),
        responses_2xx: stat_value(&response.body, "http.filterkit.downstream_rq_2xx"),
    })
}

/// The value of `name` in the admin API's `name: value` stats text.
fn stat_value(stats: &str, name: &str) -> Option<u64> {
    stats.lines().find_map(|line| {
        let (key, value) = line.split_once(": ")?;
        (key == name).then(|| value.trim().parse().ok()).flatten()
    })
}

#[cfg(test)]
mod tests {
    use expect_test::{Expect, expect};

    /// Renders what each /proc and admin parser reads from `text`.
    fn check(text: &str, expect: Expect) {
        let actual = format!(
            "VmRSS KiB: {:?}\nRssAnon KiB: {:?}\nutime+stime ticks: {:?}\ncx_total: {:?}\n",
            super::parse_status_kib(text, "VmRSS"),
            super::parse_status_kib(text, "RssAnon"),
            super::parse_cpu_ticks(text),
            super::stat_value(text, "http.filterkit.downstream_cx_total"),
        );
        expect.assert_eq(&actual);
    }

    #[test]
    fn reads_vm_rss_from_proc_status() {
        check(
            "Name:\tenvoy\nVmPeak:\t  200000 kB\nVmRSS:\t   87552 kB\nRssAnon:\t 1 kB\n",
            expect![[r#"
                VmRSS KiB: Some(87552)
                RssAnon KiB: Some(1)
                utime+stime ticks: None
                cx_total: None
            "#]],
        );
    }

    #[test]
    fn rejects_vm_rss_without_unit() {
        check(
            "VmRSS:\t87552\n",
            expect![[r#"
                VmRSS KiB: None
                RssAnon KiB: None
                utime+stime ticks: None
                cx_total: None
            "#]],
        );
    }

    #[test]
    fn reads_cpu_ticks_after_a_name_with_spaces_and_parentheses() {
        check(
            "4242 (envoy (main) x) S 1 4242 4242 0 -1 4194560 5000 0 0 0 123 45 0 0 20 0 9 0 100",
            expect![[r#"
                VmRSS KiB: None
                RssAnon KiB: None
                utime+stime ticks: Some(168)
                cx_total: None
            "#]],
        );
    }

    #[test]
    fn rejects_truncated_proc_stat() {
        check(
            "4242 (envoy) S 1 4242",
            expect![[r#"
                VmRSS KiB: None
                RssAnon KiB: None
                utime+stime ticks: None
                cx_total: None
            "#]],
        );
    }

    #[test]
    fn reads_exactly_the_named_admin_counter() {
        check(
            "http.filterkit.downstream_cx_total_x: 9\nhttp.filterkit.downstream_cx_total: 8\n\
             http.filterkit.downstream_rq_2xx: 52000\n",
            expect![[r#"
                VmRSS KiB: None
                RssAnon KiB: None
                utime+stime ticks: None
                cx_total: Some(8)
            "#]],
        );
    }
}
