//! local-rate-limit in a real Envoy with four workers: clients on sixteen keep-alive
//! connections (spread over the workers) send as fast as they can, faster than the limit;
//! the rate Envoy lets through is the configured one within 10%, and the filter's counters
//! in Envoy's stats agree with what the clients saw.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::envoy::{Envoy, Plugin, bootstrap, get};
use crate::support::{built_filter, temp_dir, tool};
use crate::util;

const RATE_PER_SECOND: f64 = 100.0;
const BURST: f64 = 10.0;
const CONFIG: &str =
    r#"{"max_tokens":10,"tokens_per_fill":100,"fill_interval_ms":1000,"key_header":"x-client"}"#;
const CONNECTIONS: usize = 16;
const SENDING: Duration = Duration::from_secs(3);

/// Sends GETs with `x-client: load` on one keep-alive connection until `until`; returns the
/// number of 200s and 429s.
fn send_until(listener: SocketAddr, until: Instant) -> Result<(u64, u64)> {
    let stream = TcpStream::connect(listener).context("connecting to envoy")?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let (mut allowed, mut limited) = (0, 0);
    while Instant::now() < until {
        writer.write_all(b"GET / HTTP/1.1\r\nhost: example.com\r\nx-client: load\r\n\r\n")?;
        let mut status_line = String::new();
        reader.read_line(&mut status_line)?;
        let mut content_length = 0;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line)?;
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                content_length = value.trim().parse()?;
            }
        }
        let mut body = vec![0; content_length];
        reader.read_exact(&mut body)?;
        match status_line.split(' ').nth(1) {
            Some("200") => allowed += 1,
            Some("429") => limited += 1,
            _ => bail!("unexpected response {status_line:?}"),
        }
    }
    Ok((allowed, limited))
}

fn counter(envoy: &Envoy, name: &str) -> Result<Option<u64>> {
    let stats = get(&format!(
        "http://{}/stats?filter=wasmcustom.local_rate_limit",
        envoy.admin_address()
    ))?;
    Ok(stats.body.lines().find_map(|line| {
        let (stat, value) = line.split_once(": ")?;
        (stat == format!("wasmcustom.local_rate_limit.rl.{name}"))
            .then(|| value.trim().parse().ok())?
    }))
}

#[test]
fn four_workers_let_through_the_configured_rate() -> Result<()> {
    let dir = temp_dir()?;
    let wasm = built_filter("local-rate-limit", dir.path())?;
    let plugin = Plugin {
        name: "rl",
        root_id: "rl",
        vm_id: "rl",
        wasm: &wasm,
        configuration: CONFIG,
    };
    let envoy = Envoy::start_with_workers(
        &tool("envoy")?,
        &bootstrap(&[plugin]),
        &dir.path().join("envoy"),
        4,
    )?;
    let listener = envoy.listener();
    let started = Instant::now();
    let until = started + SENDING;
    let clients: Vec<_> = (0..CONNECTIONS)
        .map(|_| std::thread::spawn(move || send_until(listener, until)))
        .collect();
    let (mut allowed, mut limited) = (0, 0);
    for client in clients {
        let (client_allowed, client_limited) = client
            .join()
            .map_err(|_| anyhow::anyhow!("a client thread panicked"))??;
        allowed += client_allowed;
        limited += client_limited;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let rate = (allowed as f64 - BURST) / elapsed;
    eprintln!(
        "local-rate-limit in envoy --concurrency 4: {allowed} allowed, {limited} limited in \
         {elapsed:.2}s: {rate:.1}/s allowed, {:.1}/s sent (configured {RATE_PER_SECOND}/s)",
        (allowed + limited) as f64 / elapsed
    );
    assert!(
        limited > allowed,
        "the clients were not faster than the limit: {allowed} allowed, {limited} limited"
    );
    assert!(
        (rate - RATE_PER_SECOND).abs() <= RATE_PER_SECOND * 0.1,
        "allowed {rate:.1}/s, configured {RATE_PER_SECOND}/s"
    );
    // The filter counted what the clients saw, across the four workers' VMs.
    let counted = util::poll_until(
        Instant::now() + Duration::from_secs(10),
        "the filter's counters in envoy's stats",
        || {
            let counted = (counter(&envoy, "allowed")?, counter(&envoy, "limited")?);
            Ok((counted == (Some(allowed), Some(limited))).then_some(counted))
        },
    );
    counted.with_context(|| format!("clients saw {allowed} allowed, {limited} limited"))?;
    // The connections were spread over the workers, so the bucket really was shared.
    let stats = get(&format!(
        "http://{}/stats?filter=worker_.*downstream_cx_total",
        envoy.admin_address()
    ))?;
    let busy_workers = stats
        .body
        .lines()
        .filter(|line| line.starts_with("listener.") && !line.ends_with(": 0"))
        .count();
    assert!(
        busy_workers >= 2,
        "connections on {busy_workers} workers:\n{}",
        stats.body
    );
    eprintln!("connections per worker:\n{}", stats.body);
    Ok(())
}
