//! A TCP scenario through a real Envoy (README: "TCP scenarios"): the plugins as
//! `envoy.filters.network.wasm` filters before `tcp_proxy` on a TCP listener, an upstream TCP
//! server that answers as each connection says, a client that plays the connection's steps.
//! Plain threads and blocking sockets: one connection at a time.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::{Value, json};

use super::bootstrap::{UPSTREAM_CLUSTER, loopback, plugin_config};
use super::observation::{ConnectionObservation, Observation, body_text};
use super::runner::{self, REJECTIONS};
use super::scenario::{Connection, Scenario, TcpUpstream};
use crate::envoy::{Envoy, Exited};
use crate::util;

/// How long the client waits for the end of the connection after its last step.
const CLIENT_LINGER: Duration = Duration::from_secs(1);

/// How long the upstream may take to see the end after the client's linger.
const UPSTREAM_SETTLE: Duration = Duration::from_millis(300);

/// How long the upstream may take to see the end once the client closed.
const CLOSE_SETTLE: Duration = Duration::from_secs(2);

/// Runs a TCP scenario through Envoy.
pub fn observe(scenario: &Scenario, wasm: &Path, work_dir: &Path) -> Result<Observation> {
    let envoy_binary = util::tool("envoy")?;
    let upstream = Upstream::start()?;
    let bootstrap = bootstrap(scenario, wasm, upstream.port);
    let envoy =
        match Envoy::start_with_workers(&envoy_binary, &bootstrap, work_dir, scenario.workers) {
            Ok(envoy) => envoy,
            Err(error) => {
                return match error.downcast_ref::<Exited>() {
                    Some(exited) if REJECTIONS.iter().any(|line| exited.log.contains(line)) => {
                        Ok(Observation::rejected())
                    }
                    _ => Err(error),
                };
            }
        };
    let mut connections = Vec::new();
    for connection in &scenario.connections {
        connections.push(
            run_one(envoy.listener(), &upstream, connection)
                .with_context(|| format!("connection {}", connection.name))?,
        );
    }
    Ok(Observation {
        configuration: "accepted",
        responses: Vec::new(),
        connections,
        metrics: runner::metrics(&envoy)?,
    })
}

/// The bootstrap: one TCP listener with the network filters and tcp_proxy to the upstream.
pub fn bootstrap(scenario: &Scenario, wasm: &Path, upstream_port: u16) -> Value {
    let mut filters: Vec<Value> = scenario
        .plugins
        .iter()
        .map(|plugin| {
            json!({
                "name": "envoy.filters.network.wasm",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.network.wasm.v3.Wasm",
                    "config": plugin_config(scenario, plugin, wasm),
                },
            })
        })
        .collect();
    filters.push(json!({
        "name": "envoy.filters.network.tcp_proxy",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
            "stat_prefix": "differential",
            "cluster": UPSTREAM_CLUSTER,
        },
    }));
    json!({
        "admin": { "address": loopback(0) },
        "static_resources": {
            "listeners": [{
                "name": "differential",
                "address": loopback(0),
                "per_connection_buffer_limit_bytes": scenario.buffer_limit_bytes,
                "filter_chains": [{ "filters": filters }],
            }],
            "clusters": [{
                "name": UPSTREAM_CLUSTER,
                "type": "STATIC",
                "connect_timeout": "5s",
                "load_assignment": {
                    "cluster_name": UPSTREAM_CLUSTER,
                    "endpoints": [{ "lb_endpoints": [{ "endpoint": { "address": loopback(upstream_port) } }] }],
                },
            }],
        },
    })
}

/// What one side of a connection read.
#[derive(Debug, Default)]
struct Seen {
    received: Vec<u8>,
    eof: bool,
}

type SharedSeen = Arc<Mutex<Seen>>;

fn lock<T>(shared: &Mutex<T>) -> MutexGuard<'_, T> {
    shared
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Reads `stream` into `seen` until the end of the stream or an error (a reset); then `after`.
fn read_all(mut stream: TcpStream, seen: &SharedSeen, mut on_chunk: impl FnMut(&[u8])) {
    let mut buffer = [0; 16 * 1024];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                lock(seen).received.extend_from_slice(&buffer[..n]);
                on_chunk(&buffer[..n]);
            }
        }
    }
    lock(seen).eof = true;
}

/// One connection: the client's steps, its linger, then it closes.
fn run_one(
    listener: SocketAddr,
    upstream: &Upstream,
    spec: &Connection,
) -> Result<ConnectionObservation> {
    *lock(&upstream.behaviour) = spec.upstream.clone();
    let accepted_before = lock(&upstream.accepted).len();
    let stream =
        TcpStream::connect(listener).with_context(|| format!("connecting to {listener}"))?;
    let client = SharedSeen::default();
    let reader = stream.try_clone().context("cloning the client socket")?;
    let reader_seen = client.clone();
    let reader_thread = std::thread::spawn(move || read_all(reader, &reader_seen, |_| {}));
    let mut writer = &stream;
    for step in &spec.client {
        // Envoy may have closed the connection already: a failed write is not an error.
        if let Some(text) = &step.send {
            let _ = writer.write_all(text.as_bytes());
        }
        if step.half_close {
            let _ = stream.shutdown(Shutdown::Write);
        }
        if let Some(ms) = step.wait_ms {
            runner::wait(Duration::from_millis(ms))?;
        }
    }
    let linger_end = Instant::now() + CLIENT_LINGER;
    util::poll_until(
        linger_end + Duration::from_secs(1),
        "the client's linger",
        || Ok((lock(&client).eof || Instant::now() >= linger_end).then_some(())),
    )?;

    // What Envoy forwards at the client's end (its FIN) may still be on its way upstream.
    let settle_end = Instant::now() + UPSTREAM_SETTLE;
    util::poll_until(
        settle_end + Duration::from_secs(1),
        "the upstream to settle",
        || {
            let seen = lock(&upstream.accepted).get(accepted_before).cloned();
            let ended = seen.is_none_or(|seen| lock(&seen).eof);
            Ok((ended || Instant::now() >= settle_end).then_some(()))
        },
    )?;
    let upstream_seen = lock(&upstream.accepted).get(accepted_before).cloned();
    let (upstream_received, upstream_saw_eof) = match &upstream_seen {
        Some(seen) => {
            let seen = lock(seen);
            (body_text(seen.received.clone()), seen.eof)
        }
        None => (String::new(), false),
    };
    let (client_received, client_saw_eof) = {
        let seen = lock(&client);
        (body_text(seen.received.clone()), seen.eof)
    };

    // The client closes; Envoy then closes the upstream connection, which tells that Envoy
    // ran the close callbacks before the metrics are read.
    let _ = stream.shutdown(Shutdown::Both);
    drop(stream);
    let _ = reader_thread.join();
    let settled = Instant::now() + CLOSE_SETTLE;
    util::poll_until(settled, "the upstream to see the connection end", || {
        let seen = lock(&upstream.accepted).get(accepted_before).cloned();
        Ok(seen.is_none_or(|seen| lock(&seen).eof).then_some(()))
    })?;
    Ok(ConnectionObservation {
        name: spec.name.clone(),
        client_received,
        client_saw_eof,
        upstream_received,
        upstream_saw_eof,
    })
}

/// The upstream TCP server: every connection it accepts answers as `behaviour` says then.
struct Upstream {
    port: u16,
    behaviour: Arc<Mutex<TcpUpstream>>,
    accepted: Arc<Mutex<Vec<SharedSeen>>>,
    stop: Arc<AtomicBool>,
}

impl Upstream {
    fn start() -> Result<Upstream> {
        let listener = TcpListener::bind("127.0.0.1:0").context("binding the TCP upstream")?;
        let port = listener.local_addr()?.port();
        let upstream = Upstream {
            port,
            behaviour: Arc::default(),
            accepted: Arc::default(),
            stop: Arc::default(),
        };
        let behaviour = upstream.behaviour.clone();
        let accepted = upstream.accepted.clone();
        let stop = upstream.stop.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let seen = SharedSeen::default();
                lock(&accepted).push(seen.clone());
                let answer = lock(&behaviour).clone();
                std::thread::spawn(move || serve(stream, &seen, &answer));
            }
        });
        Ok(upstream)
    }
}

/// One upstream connection: answers every chunk, half-closes after the end of the stream.
fn serve(stream: TcpStream, seen: &SharedSeen, answer: &TcpUpstream) {
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut half_closed = false;
    read_all(stream, seen, |chunk| {
        if half_closed {
            return;
        }
        let mut reply = Vec::new();
        if answer.echo {
            reply.extend_from_slice(chunk);
        }
        reply.extend_from_slice(answer.reply.as_bytes());
        if answer.half_close_after_first {
            half_closed = true;
            write_then_half_close(&writer, &reply);
        } else {
            let _ = writer.write_all(&reply);
        }
    });
    if !half_closed {
        let _ = writer.shutdown(Shutdown::Write);
    }
}

/// Writes `reply` and the end of stream in one TCP segment, so Envoy reads them together: one
/// `proxy_on_upstream_data` with end_of_stream, as host-sim delivers them. Written then shut
/// down separately, the FIN could leave in a segment of its own, and a loaded Envoy then read
/// the reply and the end in two reads (two callbacks; seen in 7 of 40 runs of
/// `tcp-upstream-half-closes-first` on a loaded machine). `TCP_CORK` holds the reply until
/// the shutdown puts the FIN on its last segment (Linux `tcp_send_fin`); the cork's 200 ms
/// ceiling only matters if this thread stalls that long between the two calls.
fn write_then_half_close(mut writer: &TcpStream, reply: &[u8]) {
    let _ = socket2::SockRef::from(writer).set_tcp_cork(true);
    let _ = writer.write_all(reply);
    let _ = writer.shutdown(Shutdown::Write);
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so it sees `stop`.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_readme_tcp_example_becomes_network_filters_before_tcp_proxy() {
        let readme = include_str!("../../../host-sim/tests/differential/README.md");
        let example = readme
            .split("## TCP scenarios")
            .nth(1)
            .and_then(|rest| rest.split("```json\n").nth(1))
            .and_then(|rest| rest.split("```").next())
            .expect("the README shows a TCP scenario");
        let scenario = Scenario::parse(example).unwrap();
        assert_eq!(scenario.connections[0].client.len(), 5);
        assert!(scenario.connections[0].upstream.echo);
        let yaml = serde_yaml_ng::to_string(&bootstrap(&scenario, Path::new("/m/tcp.wasm"), 10001))
            .unwrap();
        expect_test::expect![[r#"
            admin:
              address:
                socket_address:
                  address: 127.0.0.1
                  port_value: 0
            static_resources:
              clusters:
              - connect_timeout: 5s
                load_assignment:
                  cluster_name: upstream
                  endpoints:
                  - lb_endpoints:
                    - endpoint:
                        address:
                          socket_address:
                            address: 127.0.0.1
                            port_value: 10001
                name: upstream
                type: STATIC
              listeners:
              - address:
                  socket_address:
                    address: 127.0.0.1
                    port_value: 0
                filter_chains:
                - filters:
                  - name: envoy.filters.network.wasm
                    typed_config:
                      '@type': type.googleapis.com/envoy.extensions.filters.network.wasm.v3.Wasm
                      config:
                        allow_on_headers_stop_iteration: false
                        configuration:
                          '@type': type.googleapis.com/google.protobuf.StringValue
                          value: p
                        failure_policy: FAIL_CLOSED
                        name: tcp
                        reload_config:
                          backoff:
                            base_interval: 1.000s
                        root_id: tcp
                        vm_config:
                          code:
                            local:
                              filename: /m/tcp.wasm
                          configuration:
                            '@type': type.googleapis.com/google.protobuf.StringValue
                            value: ''
                          runtime: envoy.wasm.runtime.v8
                          vm_id: ''
                  - name: envoy.filters.network.tcp_proxy
                    typed_config:
                      '@type': type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
                      cluster: upstream
                      stat_prefix: differential
                name: differential
                per_connection_buffer_limit_bytes: 1048576
        "#]].assert_eq(&yaml);
    }
}
