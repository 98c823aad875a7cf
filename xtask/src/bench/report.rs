//! The bench's output: host-sim's lines as a table, the Envoy tables (medians, spreads and
//! paired comparisons per worker count, then the instructions callgrind counted), the raw CSV,
//! and host-sim against Envoy.

use std::fmt::Write as _;

use super::envoy_cost::{Load, Measured, Role};
use super::instructions::{Counted, Split};
use super::{SEED_CONFIG, SEED_HEADERS, SEED_ROOT_ID};
use crate::util;

/// `filter-sim bench`'s `key: value` lines as a table, each known key explained.
pub(super) fn render_sim(output: &str) -> String {
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
            "µs from the cached module to a configured plugin ready for streams (mean of 2,000; target < 100)"
        }
        "streams" => "add-header streams run in one VM (the first 1,000 are warm-up)",
        "streams_per_second" => {
            "request headers + response headers + done, one thread, every host call traced (target >= 100,000)"
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

fn rss_anon_mib(measured: &Measured) -> f64 {
    measured.rss_anon_after_warmup_kib as f64 / 1024.0
}

/// The Envoy section: per worker count, a table of medians with (lowest–highest).
pub(super) fn render_envoy(envoy_version: &str, load: Load, measured: &[Measured]) -> String {
    let mut text = format!("## Envoy {envoy_version}\n");
    for (workers, cases) in group(measured) {
        let n_rounds = cases.first().map_or(0, |rounds| rounds.all.len());
        let _ = write!(
            text,
            "\n### {workers} worker(s), n = {n_rounds} round(s)\n\n\
             Medians (lowest–highest). \"Paired\": per round, against the baseline measured in the \
             same round, then the median of those.\n\n\
             | module | bytes | RSS MiB | RSS above trivial module, paired | of it anonymous, paired | CPU µs/request | CPU ÷ hand-written WAT, paired | CPU ÷ native header_mutation, paired | configuration accepted, ms | failures |\n\
             |---|---|---|---|---|---|---|---|---|---|\n"
        );
        for rounds in &cases {
            let first = rounds.first;
            let values = |of: fn(&Measured) -> f64| -> Vec<f64> {
                rounds.all.iter().map(|measured| of(measured)).collect()
            };
            let rss_above = paired(rounds, &cases, Role::Trivial, |case, base| {
                rss_mib(case) - rss_mib(base)
            });
            let rss_anon_above = paired(rounds, &cases, Role::Trivial, |case, base| {
                rss_anon_mib(case) - rss_anon_mib(base)
            });
            let cpu_ratio = |baseline| {
                paired(rounds, &cases, baseline, |case, base| {
                    case.cpu_us_per_request() / base.cpu_us_per_request()
                })
            };
            let _ = writeln!(
                text,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                first.label,
                first
                    .wasm_size
                    .map_or_else(|| "—".to_string(), |size| size.to_string()),
                spread(&values(rss_mib), 1),
                spread(&rss_above, 2),
                spread(&rss_anon_above, 2),
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
         bench.json says), {} warm-up requests, then VmRSS and its anonymous part (RssAnon: heaps, \
         V8's memory, the compiled code; the rest is clean file pages, nearly all of Envoy's own \
         binary, which the kernel shares between processes mapping the same file and can drop \
         under memory pressure); then {} requests over {} keep-alive \
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

/// The instructions section: per case, instructions per request under callgrind, paired
/// ratios and where the instructions run, medians with (lowest–highest).
pub(super) fn render_instructions(warmup: u64, counted: &[Counted]) -> String {
    let mut cases: Vec<Vec<&Counted>> = Vec::new();
    for one in counted {
        match cases.iter_mut().find(|rounds| rounds[0].label == one.label) {
            Some(rounds) => rounds.push(one),
            None => cases.push(vec![one]),
        }
    }
    let n_rounds = cases.first().map_or(0, Vec::len);
    let requests = counted.first().map_or(0, |one| one.requests);
    // Per round, `combine(case, baseline)` against the baseline counted in the same round.
    let paired = |rounds: &[&Counted], baseline: Role, combine: fn(&Counted, &Counted) -> f64| {
        if rounds[0].role == baseline {
            return Vec::new();
        }
        let Some(base) = cases.iter().find(|base| base[0].role == baseline) else {
            return Vec::new();
        };
        rounds
            .iter()
            .zip(base)
            .map(|(case, base)| combine(case, base))
            .filter(|value| value.is_finite())
            .collect::<Vec<f64>>()
    };
    let ratio: fn(&Counted, &Counted) -> f64 = |case, base| case.per_request() / base.per_request();
    let mut text = format!(
        "## Instructions per request (callgrind), 1 worker, n = {n_rounds} round(s)\n\n\
         Medians (lowest–highest); \"paired\" as above. The last three columns split the \
         instructions by where the code lives.\n\n\
         | module | bytes | instructions/request | ÷ hand-written WAT, paired | ÷ native header_mutation, paired | above no HTTP filter, paired | in Envoy's binary | in shared libraries | in code V8 generated | failures |\n\
         |---|---|---|---|---|---|---|---|---|---|\n"
    );
    for rounds in &cases {
        let first = rounds[0];
        let per_request = |of: fn(&Split) -> u64| -> Vec<f64> {
            rounds
                .iter()
                .map(|one| of(&one.instructions) as f64 / one.requests as f64)
                .collect()
        };
        let _ = writeln!(
            text,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            first.label,
            first
                .wasm_size
                .map_or_else(|| "—".to_string(), |size| size.to_string()),
            spread(&per_request(Split::total), 0),
            spread(&paired(rounds, Role::HandWritten, ratio), 4),
            spread(&paired(rounds, Role::Native, ratio), 4),
            spread(
                &paired(rounds, Role::NoFilter, |case, base| case.per_request()
                    - base.per_request()),
                0
            ),
            spread(&per_request(|split| split.envoy), 0),
            spread(&per_request(|split| split.libraries), 0),
            spread(&per_request(|split| split.generated), 0),
            rounds.iter().map(|one| one.failures.count).sum::<u64>(),
        );
    }
    if let Some(add_header) = cases
        .iter()
        .find(|rounds| rounds[0].label.starts_with("add-header"))
    {
        let ratios = paired(add_header, Role::HandWritten, ratio);
        if ratios.len() > 1 {
            let lowest = ratios.iter().copied().fold(f64::INFINITY, f64::min);
            let highest = ratios.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let width = (highest - lowest) / median(ratios.clone()) * 100.0;
            let _ = writeln!(
                text,
                "\nResolution: add-header's paired instruction ratio to the hand-written WAT spans \
                 {width:.2}% across {} rounds; {}.",
                ratios.len(),
                if width <= 3.0 {
                    "a 3% difference is resolved"
                } else {
                    "this run cannot resolve a 3% difference"
                }
            );
        }
    }
    let _ = write!(
        text,
        "\nEach round of a case: a fresh Envoy (`--concurrency 1`) under `valgrind \
         --tool=callgrind --instr-atstart=no --smc-check=all-non-file`, {warmup} warm-up requests \
         uninstrumented, then instrumentation on, a few requests, the counters zeroed, {requests} \
         requests over one keep-alive connection, and the counters dumped: the instructions \
         Envoy's threads executed in user space, divided by the count. Not counted: the kernel's \
         work for Envoy's system calls, and what an instruction costs (cache misses, mispredicted \
         branches). \"in code V8 generated\" is code in no file (the module compiled by V8, its \
         stubs); Envoy's binary includes tcmalloc and V8's runtime. callgrind's output per \
         round is under target/bench/callgrind/ (`callgrind_annotate` reads it).\n"
    );
    text
}

/// Every round of every case, one CSV line each: the clock rounds (`method` clock), then the
/// callgrind rounds (`method` callgrind); a column that does not apply is empty.
pub(super) fn render_raw(measured: &[Measured], counted: &[Counted]) -> String {
    let mut text = String::from(
        "method,workers,round,case,role,bytes,rss_kib_after_warmup,rss_anon_kib_after_warmup,rss_kib_at_end,cpu_us_per_request,\
         requests,elapsed_s,configuration_accepted_ms,failures,envoy_connections,envoy_2xx,\
         instructions_per_request,instructions_envoy_per_request,\
         instructions_libraries_per_request,instructions_generated_per_request,log\n",
    );
    let optional = |value: Option<u64>| value.map_or_else(String::new, |v| v.to_string());
    let mut seen: Vec<(u32, &str)> = Vec::new();
    for one in measured {
        seen.push((one.workers, &one.label));
        let round = seen
            .iter()
            .filter(|(workers, label)| *workers == one.workers && *label == one.label)
            .count();
        let _ = writeln!(
            text,
            "clock,{},{round},\"{}\",{:?},{},{},{},{},{:.2},{},{:.3},{:.1},{},{},{},,,,,{}",
            one.workers,
            one.label,
            one.role,
            optional(one.wasm_size),
            one.rss_after_warmup_kib,
            one.rss_anon_after_warmup_kib,
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
    let mut seen: Vec<&str> = Vec::new();
    for one in counted {
        seen.push(&one.label);
        let round = seen.iter().filter(|label| **label == one.label).count();
        let per_request = |instructions: u64| instructions as f64 / one.requests as f64;
        let _ = writeln!(
            text,
            "callgrind,1,{round},\"{}\",{:?},{},,,,,{},,,{},,,{:.1},{:.1},{:.1},{:.1},{}",
            one.label,
            one.role,
            optional(one.wasm_size),
            one.requests,
            one.failures.count,
            one.per_request(),
            per_request(one.instructions.envoy),
            per_request(one.instructions.libraries),
            per_request(one.instructions.generated),
            util::relative(&one.work_dir.join("envoy.log")),
        );
    }
    text
}

/// host-sim's time per stream beside Envoy's CPU per request for add-header (one worker).
pub(super) fn render_sim_against_envoy(sim_output: &str, measured: &[Measured]) -> String {
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

    use expect_test::expect;

    use super::super::envoy_cost::{Failures, Load, Measured, Role};
    use super::super::instructions::{Counted, Split};

    #[test]
    fn explains_known_filter_sim_lines_and_keeps_unknown_ones() {
        expect![[r#"
            | measure | value | meaning |
            |---|---|---|
            | ready_instance_us | 66.2 | µs from the cached module to a configured plugin ready for streams (mean of 2,000; target < 100) |
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
            rss_anon_after_warmup_kib: rss_mib * 1024 / 4,
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
                    one.rss_anon_after_warmup_kib += 512;
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

            | module | bytes | RSS MiB | RSS above trivial module, paired | of it anonymous, paired | CPU µs/request | CPU ÷ hand-written WAT, paired | CPU ÷ native header_mutation, paired | configuration accepted, ms | failures |
            |---|---|---|---|---|---|---|---|---|---|
            | none | — | 64.5 (64.0–65.0) | -14.50 (-15.00–-14.00) | -3.50 (-3.75–-3.25) | 60.0 (50.0–70.0) | 1.000 (1.000–1.000) | 1.000 (1.000–1.000) | 250 (200–300) | 0 |
            | native | — | 64.5 (64.0–65.0) | -14.50 (-15.00–-14.00) | -3.50 (-3.75–-3.25) | 60.0 (50.0–70.0) | 1.000 (1.000–1.000) | — | 250 (200–300) | 0 |
            | trivial | 322 | 79.0 (79.0–79.0) | — | — | 50.0 (50.0–50.0) | 0.857 (0.714–1.000) | 0.857 (0.714–1.000) | 200 (200–200) | 0 |
            | wat | 473 | 79.5 (79.0–80.0) | 0.50 (0.00–1.00) | 0.25 (0.00–0.50) | 60.0 (50.0–70.0) | — | 1.000 (1.000–1.000) | 250 (200–300) | 0 |
            | add-header on filterkit | 29000 | 83.5 (83.0–84.0) | 4.50 (4.00–5.00) | 1.25 (1.00–1.50) | 60.0 (50.0–70.0) | 1.000 (1.000–1.000) | 1.000 (1.000–1.000) | 250 (200–300) | 3 |

            Resolution: add-header's paired CPU ratio to the hand-written WAT spans 0.0% across 2 rounds; a 3% difference is resolved.

            Each round of a case: a fresh Envoy (`--concurrency` as titled, direct_response route; each module with root_id my_root_id and `{"name":"hello","value":"hello details"}`, other filters as their bench.json says), 2000 warm-up requests, then VmRSS and its anonymous part (RssAnon: heaps, V8's memory, the compiled code; the rest is clean file pages, nearly all of Envoy's own binary, which the kernel shares between processes mapping the same file and can drop under memory pressure); then 50000 requests over 8 keep-alive connections from an in-process client, Envoy's utime + stime (all threads) over them divided by the count. "configuration accepted" is from starting Envoy to its listener being open (the configuration, with the module compiled and its plugin configured). Every response must be 200 and, from an add-header, carry `resp-header-demo: added by our filter` and `hello: hello details`; failures counts the others (warm-up included).
        "###]].assert_eq(&super::render_envoy("1.40.0", load, &measured));
        expect![[r#"
            method,workers,round,case,role,bytes,rss_kib_after_warmup,rss_anon_kib_after_warmup,rss_kib_at_end,cpu_us_per_request,requests,elapsed_s,configuration_accepted_ms,failures,envoy_connections,envoy_2xx,instructions_per_request,instructions_envoy_per_request,instructions_libraries_per_request,instructions_generated_per_request,log
            clock,1,1,"none",NoFilter,,65536,16384,66048,50.00,50000,5.000,200.0,0,8,52000,,,,,/tmp/case/envoy.log
            clock,1,1,"native",Native,,65536,16384,66048,50.00,50000,5.000,200.0,0,8,52000,,,,,/tmp/case/envoy.log
        "#]].assert_eq(&super::render_raw(&measured[..2], &[]));
    }

    /// Two callgrind rounds of four cases over 1,000 requests: the second round 1% more in
    /// Envoy's binary for every case, and add-header 30 instructions more in generated code.
    fn counted_rounds() -> Vec<Counted> {
        let cases = [
            ("none", Role::NoFilter, None, 70_000, 0),
            ("native", Role::Native, None, 75_000, 0),
            ("wat", Role::HandWritten, Some(473), 80_000, 300),
            (
                "add-header on filterkit",
                Role::Filter,
                Some(27_098),
                82_000,
                3_600,
            ),
        ];
        let mut all = Vec::new();
        for round in 0..2 {
            for (label, role, wasm_size, envoy, generated) in cases {
                let envoy = if round == 1 {
                    envoy + envoy / 100
                } else {
                    envoy
                };
                let generated = if round == 1 && label.starts_with("add-header") {
                    generated + 30
                } else {
                    generated
                };
                all.push(Counted {
                    label: label.to_string(),
                    role,
                    wasm_size,
                    requests: 1_000,
                    instructions: Split {
                        envoy: envoy * 1_000,
                        libraries: 7_000_000,
                        generated: generated * 1_000,
                    },
                    failures: Failures::default(),
                    work_dir: PathBuf::from(format!("/tmp/callgrind/{label}")),
                });
            }
        }
        all
    }

    #[test]
    fn instructions_table_pairs_rounds_and_splits_by_place() {
        expect![[r###"
            ## Instructions per request (callgrind), 1 worker, n = 2 round(s)

            Medians (lowest–highest); "paired" as above. The last three columns split the instructions by where the code lives.

            | module | bytes | instructions/request | ÷ hand-written WAT, paired | ÷ native header_mutation, paired | above no HTTP filter, paired | in Envoy's binary | in shared libraries | in code V8 generated | failures |
            |---|---|---|---|---|---|---|---|---|---|
            | none | — | 77350 (77000–77700) | 0.8820 (0.8820–0.8820) | 0.9390 (0.9390–0.9390) | — | 70350 (70000–70700) | 7000 (7000–7000) | 0 (0–0) | 0 |
            | native | — | 82375 (82000–82750) | 0.9393 (0.9393–0.9393) | — | 5025 (5000–5050) | 75375 (75000–75750) | 7000 (7000–7000) | 0 (0–0) | 0 |
            | wat | 473 | 87700 (87300–88100) | — | 1.0646 (1.0646–1.0647) | 10350 (10300–10400) | 80400 (80000–80800) | 7000 (7000–7000) | 300 (300–300) | 0 |
            | add-header on filterkit | 27098 | 93025 (92600–93450) | 1.0607 (1.0607–1.0607) | 1.1293 (1.1293–1.1293) | 15675 (15600–15750) | 82410 (82000–82820) | 7000 (7000–7000) | 3615 (3600–3630) | 0 |

            Resolution: add-header's paired instruction ratio to the hand-written WAT spans 0.00% across 2 rounds; a 3% difference is resolved.

            Each round of a case: a fresh Envoy (`--concurrency 1`) under `valgrind --tool=callgrind --instr-atstart=no --smc-check=all-non-file`, 2000 warm-up requests uninstrumented, then instrumentation on, a few requests, the counters zeroed, 1000 requests over one keep-alive connection, and the counters dumped: the instructions Envoy's threads executed in user space, divided by the count. Not counted: the kernel's work for Envoy's system calls, and what an instruction costs (cache misses, mispredicted branches). "in code V8 generated" is code in no file (the module compiled by V8, its stubs); Envoy's binary includes tcmalloc and V8's runtime. callgrind's output per round is under target/bench/callgrind/ (`callgrind_annotate` reads it).
        "###]].assert_eq(&super::render_instructions(2_000, &counted_rounds()));
    }

    #[test]
    fn raw_csv_holds_clock_and_callgrind_rounds() {
        let measured = two_rounds(&[("none", Role::NoFilter, None, 64)]);
        expect![[r#"
            method,workers,round,case,role,bytes,rss_kib_after_warmup,rss_anon_kib_after_warmup,rss_kib_at_end,cpu_us_per_request,requests,elapsed_s,configuration_accepted_ms,failures,envoy_connections,envoy_2xx,instructions_per_request,instructions_envoy_per_request,instructions_libraries_per_request,instructions_generated_per_request,log
            clock,1,1,"none",NoFilter,,65536,16384,66048,50.00,50000,5.000,200.0,0,8,52000,,,,,/tmp/case/envoy.log
            callgrind,1,1,"none",NoFilter,,,,,,1000,,,0,,,77000.0,70000.0,7000.0,0.0,/tmp/callgrind/none/envoy.log
            callgrind,1,1,"native",Native,,,,,,1000,,,0,,,82000.0,75000.0,7000.0,0.0,/tmp/callgrind/native/envoy.log
        "#]].assert_eq(&super::render_raw(&measured[..1], &counted_rounds()[..2]));
    }
}
