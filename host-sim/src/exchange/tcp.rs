//! TCP scenarios (`tests/differential/README.md`, "TCP scenarios"): connections a client opens
//! through the plugins' network filters in front of `tcp_proxy` ([`Sim::connection_chain`]), to an
//! upstream that answers as the scenario says, on the virtual clock.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::format::text;
use crate::{Error, Sim};

/// How long the runner's client waits for the end of the connection after its last step.
const CLIENT_LINGER: Duration = Duration::from_secs(1);

/// One connection: what the client does, how the upstream answers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConnection {
    /// Its name in the observation.
    pub name: String,
    /// The client's steps, in order.
    #[serde(default)]
    pub client: Vec<Step>,
    /// The upstream's behaviour on this connection.
    #[serde(default)]
    pub upstream: TcpUpstream,
}

/// One client step: `send` some text, `half_close`, or let `wait_ms` pass (one key a step;
/// several run in that order).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// Bytes the client writes (one read on Envoy's side).
    #[serde(default)]
    pub send: Option<String>,
    /// The client shuts down its write side.
    #[serde(default)]
    pub half_close: bool,
    /// Virtual time that passes.
    #[serde(default)]
    pub wait_ms: Option<u64>,
}

/// What the upstream does with each chunk it reads; it half-closes when it reads the end.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpUpstream {
    /// Writes every chunk back.
    #[serde(default)]
    pub echo: bool,
    /// Writes this text after every chunk (after the echo).
    #[serde(default)]
    pub reply: String,
    /// Half-closes right after answering its first chunk (and keeps reading).
    #[serde(default)]
    pub half_close_after_first: bool,
}

/// What the client and the upstream saw on one connection.
#[derive(Debug, Serialize)]
pub struct ConnectionObservation {
    /// The connection's name.
    pub name: String,
    /// Every byte the client read.
    pub client_received: String,
    /// The client read the end of the stream (or a reset) within its linger time.
    pub client_saw_eof: bool,
    /// Every byte the upstream read (empty when it was never connected).
    pub upstream_received: String,
    /// The upstream read the end of the stream (or a reset).
    pub upstream_saw_eof: bool,
}

/// Runs the connections one after another through the plugins' network filters, in order.
pub(super) fn run(
    sim: &mut Sim,
    root_ids: &[&str],
    connections: &[ClientConnection],
) -> Result<Vec<ConnectionObservation>, Error> {
    connections
        .iter()
        .map(|connection| run_one(sim, root_ids, connection))
        .collect()
}

fn run_one(
    sim: &mut Sim,
    root_ids: &[&str],
    spec: &ClientConnection,
) -> Result<ConnectionObservation, Error> {
    let mut connection = sim.connection_chain(root_ids)?;
    // tcp_proxy connects upstream once the filter let the new connection through.
    let mut connected = connection.opened() == &crate::Outcome::Continue;
    let mut upstream = Upstream::default();
    let mut half_closed = false;
    for step in &spec.client {
        if let Some(bytes) = &step.send {
            connection.send_downstream_data(bytes.as_bytes(), false);
            upstream.react(&mut connection, &spec.upstream);
        }
        if step.half_close {
            half_closed = true;
            connection.send_downstream_data(b"", true);
            upstream.react(&mut connection, &spec.upstream);
        }
        if let Some(ms) = step.wait_ms {
            connection.sim().advance(Duration::from_millis(ms));
            upstream.react(&mut connection, &spec.upstream);
        }
    }
    connection.sim().advance(CLIENT_LINGER);
    upstream.react(&mut connection, &spec.upstream);
    connected |= !connection.upstream_bytes().is_empty() || connection.upstream_ended();
    let closed = connection.was_closed();
    let observation = ConnectionObservation {
        name: spec.name.clone(),
        client_received: text(connection.downstream_bytes()),
        client_saw_eof: closed || connection.downstream_ended(),
        upstream_received: text(connection.upstream_bytes()),
        upstream_saw_eof: connected && (closed || connection.upstream_ended()),
    };
    // Then the client closes its socket (the close callbacks count in the metrics): Envoy
    // reads its FIN as a half-close, which ends the connection once the upstream answers it.
    if !connection.was_closed() && !half_closed {
        connection.send_downstream_data(b"", true);
        upstream.react(&mut connection, &spec.upstream);
    }
    if !connection.was_closed() {
        connection.close_downstream();
    }
    Ok(observation)
}

/// The upstream's side: what it has read so far, whether it half-closed.
#[derive(Default)]
struct Upstream {
    read: usize,
    half_closed: bool,
}

impl Upstream {
    /// Answers what reached the upstream since the last look, until nothing new arrives.
    fn react(&mut self, connection: &mut crate::Connection<'_>, behaviour: &TcpUpstream) {
        while !connection.was_closed() {
            let passed = connection.upstream_bytes();
            if passed.len() > self.read && self.half_closed {
                // It can no longer write.
                self.read = passed.len();
            } else if passed.len() > self.read {
                let mut answer = Vec::new();
                if behaviour.echo {
                    answer.extend_from_slice(&passed[self.read..]);
                }
                answer.extend_from_slice(behaviour.reply.as_bytes());
                self.read = passed.len();
                let end = behaviour.half_close_after_first && !self.half_closed;
                self.half_closed |= end;
                if !answer.is_empty() || end {
                    connection.send_upstream_data(&answer, end);
                }
            } else if connection.upstream_ended() && !self.half_closed {
                self.half_closed = true;
                connection.send_upstream_data(b"", true);
            } else {
                break;
            }
        }
    }
}
