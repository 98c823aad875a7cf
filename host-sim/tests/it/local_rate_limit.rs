//! The local-rate-limit filter (target/filters/local-rate-limit.wasm, built by `cargo xtask
//! build`) on host-sim's virtual clock: the 429 and its headers, the refill, several workers
//! sharing one bucket through compare-and-swap, the cap on keys, and the counters.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use expect_test::{Expect, expect};
use filterkit_host_sim::{Error, Module, Outcome, Sim};

fn module() -> Module {
    static MODULE: OnceLock<Module> = OnceLock::new();
    MODULE
        .get_or_init(|| {
            let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../target/filters/local-rate-limit.wasm");
            assert!(
                path.exists(),
                "target/filters/local-rate-limit.wasm not found: run `cargo xtask build`"
            );
            Module::load(&path).expect("local-rate-limit.wasm loads")
        })
        .clone()
}

fn sim(config: &str, workers: usize) -> Sim {
    Sim::builder(&module())
        .plugin("rl", config)
        .workers(workers)
        .build()
        .expect("configuration accepted")
}

/// One request on `worker` with `headers`: its status and the rate-limit headers the client
/// sees (from the local reply, or added to the upstream's 200).
fn request(sim: &mut Sim, worker: usize, headers: &[(&str, &str)]) -> String {
    sim.use_worker(worker).unwrap();
    let mut stream = sim.stream("rl").unwrap();
    let mut all = vec![(":method", "GET"), (":path", "/"), (":authority", "a")];
    all.extend_from_slice(headers);
    let shown = |pairs: Vec<(String, String)>| {
        pairs
            .into_iter()
            .filter(|(name, _)| name.starts_with("x-ratelimit") || name == "retry-after")
            .map(|(name, value)| format!(" {name}={value}"))
            .collect::<String>()
    };
    match stream.send_request_headers(&all, true) {
        Outcome::Continue => {
            stream.send_response_headers(&[(":status", "200")], true);
            let headers = stream.response_headers().to_vec();
            format!("200{}", shown(headers))
        }
        Outcome::LocalReply { status_code } => {
            let reply = stream.local_reply().expect("a local reply").clone();
            format!(
                "{status_code}{} body={:?}",
                shown(reply.headers),
                String::from_utf8_lossy(&reply.body)
            )
        }
        other => format!("{other:?}"),
    }
}

fn counters(sim: &Sim) -> String {
    let value = |name: &str| sim.metric(name).map_or(0, |metric| metric.value);
    format!(
        "allowed={} limited={}",
        value("local_rate_limit.rl.allowed"),
        value("local_rate_limit.rl.limited")
    )
}

/// Steps: `"<worker> <key>"` sends a request with `x-key: <key>` on that worker (`-` for no
/// header); `"+<ms>"` advances the virtual clock.
fn check(config: &str, workers: usize, steps: &[&str], expect: Expect) {
    let mut sim = sim(config, workers);
    let mut out = String::new();
    for step in steps {
        if let Some(ms) = step.strip_prefix('+') {
            sim.advance(Duration::from_millis(ms.parse().unwrap()));
            out.push_str(&format!("{step}\n"));
            continue;
        }
        let (worker, key) = step.split_once(' ').unwrap();
        let headers: &[(&str, &str)] = if key == "-" { &[] } else { &[("x-key", key)] };
        let shown = request(&mut sim, worker.parse().unwrap(), headers);
        out.push_str(&format!("{step}: {shown}\n"));
    }
    out.push_str(&counters(&sim));
    out.push('\n');
    expect.assert_eq(&out);
}

#[test]
fn answers_429_with_headers_once_the_burst_is_spent_and_refills_with_time() {
    check(
        r#"{"max_tokens":2,"tokens_per_fill":1,"fill_interval_ms":1000,"key_header":"x-key"}"#,
        1,
        &[
            "0 a", "0 a", "0 a", "0 b", "+500", "0 a", "+500", "0 a", "0 a", "+3000", "0 a",
        ],
        expect![[r#"
            0 a: 200 x-ratelimit-limit=2 x-ratelimit-remaining=1 x-ratelimit-reset=1
            0 a: 200 x-ratelimit-limit=2 x-ratelimit-remaining=0 x-ratelimit-reset=2
            0 a: 429 retry-after=1 x-ratelimit-limit=2 x-ratelimit-remaining=0 x-ratelimit-reset=2 body="rate limited\n"
            0 b: 200 x-ratelimit-limit=2 x-ratelimit-remaining=1 x-ratelimit-reset=1
            +500
            0 a: 429 retry-after=1 x-ratelimit-limit=2 x-ratelimit-remaining=0 x-ratelimit-reset=2 body="rate limited\n"
            +500
            0 a: 200 x-ratelimit-limit=2 x-ratelimit-remaining=0 x-ratelimit-reset=2
            0 a: 429 retry-after=1 x-ratelimit-limit=2 x-ratelimit-remaining=0 x-ratelimit-reset=2 body="rate limited\n"
            +3000
            0 a: 200 x-ratelimit-limit=2 x-ratelimit-remaining=1 x-ratelimit-reset=1
            allowed=5 limited=3
        "#]],
    );
}

#[test]
fn workers_share_one_bucket() {
    check(
        r#"{"max_tokens":3,"fill_interval_ms":60000,"key_header":"x-key"}"#,
        4,
        &["0 a", "1 a", "2 a", "3 a", "0 a", "3 b"],
        expect![[r#"
            0 a: 200 x-ratelimit-limit=3 x-ratelimit-remaining=2 x-ratelimit-reset=20
            1 a: 200 x-ratelimit-limit=3 x-ratelimit-remaining=1 x-ratelimit-reset=40
            2 a: 200 x-ratelimit-limit=3 x-ratelimit-remaining=0 x-ratelimit-reset=60
            3 a: 429 retry-after=20 x-ratelimit-limit=3 x-ratelimit-remaining=0 x-ratelimit-reset=60 body="rate limited\n"
            0 a: 429 retry-after=20 x-ratelimit-limit=3 x-ratelimit-remaining=0 x-ratelimit-reset=60 body="rate limited\n"
            3 b: 200 x-ratelimit-limit=3 x-ratelimit-remaining=2 x-ratelimit-reset=20
            allowed=4 limited=2
        "#]],
    );
}

#[test]
fn without_the_header_the_client_address_is_the_key() {
    check(
        r#"{"max_tokens":1,"fill_interval_ms":60000,"key_header":"x-key"}"#,
        1,
        &["0 -", "0 -", "0 a"],
        expect![[r#"
            0 -: 200 x-ratelimit-limit=1 x-ratelimit-remaining=0 x-ratelimit-reset=60
            0 -: 429 retry-after=60 x-ratelimit-limit=1 x-ratelimit-remaining=0 x-ratelimit-reset=60 body="rate limited\n"
            0 a: 200 x-ratelimit-limit=1 x-ratelimit-remaining=0 x-ratelimit-reset=60
            allowed=2 limited=1
        "#]],
    );
}

#[test]
fn the_cap_on_keys_evicts_the_bucket_refilled_longest_ago() {
    // One slot: each new key takes it over and starts full; "a" loses its spent bucket.
    check(
        r#"{"max_tokens":1,"fill_interval_ms":60000,"key_header":"x-key","max_keys":1}"#,
        1,
        &["0 a", "0 a", "+1", "0 b", "0 a"],
        expect![[r#"
            0 a: 200 x-ratelimit-limit=1 x-ratelimit-remaining=0 x-ratelimit-reset=60
            0 a: 429 retry-after=60 x-ratelimit-limit=1 x-ratelimit-remaining=0 x-ratelimit-reset=60 body="rate limited\n"
            +1
            0 b: 200 x-ratelimit-limit=1 x-ratelimit-remaining=0 x-ratelimit-reset=60
            0 a: 200 x-ratelimit-limit=1 x-ratelimit-remaining=0 x-ratelimit-reset=60
            allowed=3 limited=1
        "#]],
    );
}

#[test]
fn the_number_of_buckets_never_exceeds_max_keys() {
    let mut sim = sim(
        r#"{"max_tokens":1,"fill_interval_ms":60000,"key_header":"x-key","max_keys":8}"#,
        1,
    );
    for key in 0..100 {
        request(&mut sim, 0, &[("x-key", &format!("client-{key}"))]);
    }
    let slots = (0..1000)
        .filter(|slot| {
            sim.shared_data(format!("local-rate-limit/rl/{slot}").as_bytes())
                .is_some()
        })
        .count();
    assert!(slots <= 8, "{slots} buckets");
}

/// The measure: four workers, a client sending four times faster than the limit
/// (round-robin over the workers, one request every 5 ms of virtual time for 10 s); the
/// allowed rate after the initial burst is the configured 50 per second within 10%.
#[test]
fn four_workers_allow_the_configured_rate() {
    let mut sim = sim(
        r#"{"max_tokens":10,"tokens_per_fill":50,"fill_interval_ms":1000,"key_header":"x-key"}"#,
        4,
    );
    let (mut allowed, mut limited) = (0u64, 0u64);
    for n in 0..2000 {
        let shown = request(&mut sim, n % 4, &[("x-key", "k")]);
        if shown.starts_with("200") {
            allowed += 1;
        } else {
            limited += 1;
        }
        sim.advance(Duration::from_millis(5));
    }
    let rate = (allowed - 10) as f64 / 10.0;
    assert!((45.0..=55.0).contains(&rate), "allowed rate {rate}/s");
    expect![[r#"
        allowed=509 limited=1491 rate=49.9/s
        allowed=509 limited=1491
    "#]]
    .assert_eq(&format!(
        "allowed={allowed} limited={limited} rate={rate}/s\n{}\n",
        counters(&sim)
    ));
}

#[test]
fn rejects_bad_configurations_with_one_line() {
    let mut out = String::new();
    for config in [
        r#"{"max_tokens":0}"#,
        r#"{"max_tokens":1,"fill_interval_ms":0}"#,
        r#"{"max_tokens":1,"key_header":"x key"}"#,
        r#"{"max_tokens":1,"max_keys":0}"#,
        r#"{"max_tokens":1,"burst":2}"#,
        "",
    ] {
        match Sim::builder(&module()).plugin("rl", config).build() {
            Err(Error::ConfigRejected(rejection)) => {
                for log in rejection.logs.iter().filter(|log| log.level >= 4) {
                    out.push_str(&format!("{}\n", log.message));
                }
            }
            Err(other) => panic!("unexpected error: {other}"),
            Ok(_) => out.push_str(&format!("accepted {config}\n")),
        }
    }
    expect![[r#"
        invalid plugin configuration for root_id=rl: max_tokens is 0, not between 1 and 1000000
        invalid plugin configuration for root_id=rl: fill_interval_ms is 0, not between 1 and 86400000
        invalid plugin configuration for root_id=rl: key_header "x key" is not a valid HTTP token
        invalid plugin configuration for root_id=rl: max_keys is 0, not between 1 and 1000000
        invalid plugin configuration for root_id=rl: unknown field `burst`, expected one of `max_tokens`, `tokens_per_fill`, `fill_interval_ms`, `key_header`, `max_keys`
        invalid plugin configuration for root_id=rl: plugin configuration is empty
    "#]].assert_eq(&out);
}
