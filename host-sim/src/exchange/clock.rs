//! The callouts' side of the virtual clock: each callout to a scenario cluster is answered as
//! the cluster says, after its delay, unless the call's own timeout comes first.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use super::format::{Cluster, Pairs, base64_decode};
use super::{ms_ns, now_ns};
use crate::Sim;
use crate::hcm;

/// The callouts' side of the virtual clock: when each callout the guest made gets its
/// cluster's answer.
pub(super) struct Clock<'a> {
    pub(super) clusters: &'a BTreeMap<String, Cluster>,
    /// (worker, token) → when it is answered.
    pub(super) due: HashMap<(usize, u32), u64>,
}

impl Clock<'_> {
    /// Notes the callouts made since the last look (made now), on every worker.
    fn discover(&mut self, sim: &mut Sim) {
        let now = now_ns(sim);
        let home = sim.active_worker();
        for worker in 0..sim.workers() {
            let _ = sim.use_worker(worker);
            let http = sim
                .http_callouts()
                .into_iter()
                .map(|call| (call.token, call.cluster, call.timeout_ms));
            let grpc = sim
                .grpc_callouts()
                .into_iter()
                .map(|call| (call.token, call.cluster, call.timeout_ms));
            for (token, cluster, timeout_ms) in http.chain(grpc).collect::<Vec<_>>() {
                let Some(config) = self.clusters.get(&cluster) else {
                    continue;
                };
                self.due.entry((worker, token)).or_insert_with(|| {
                    let timeout = u64::from(timeout_ms);
                    if timeout == 0 || timeout > config.delay_ms {
                        now + ms_ns(config.delay_ms)
                    } else if token % 4 == 0 {
                        // An HTTP call's own timeout fires first (the sim's 504).
                        u64::MAX
                    } else {
                        // A gRPC call's deadline (answered as DEADLINE_EXCEEDED).
                        now + ms_ns(timeout)
                    }
                });
            }
        }
        let _ = sim.use_worker(home);
    }

    /// The next time something is due: a callout answer, a tick, a timeout.
    pub(super) fn next_due(&mut self, sim: &mut Sim) -> Option<u64> {
        self.discover(sim);
        let answers = self.due.values().copied().filter(|at| *at != u64::MAX);
        answers.chain(sim.next_timer_at()).min()
    }

    /// Advances the virtual clock to `target`, event by event: ticks and timeouts (the sim's),
    /// callout answers (ours), noting new callouts as they are made.
    pub(super) fn run_until(&mut self, sim: &mut Sim, target: u64) {
        for _round in 0..1_000_000 {
            let now = now_ns(sim);
            let next = self.next_due(sim).filter(|at| *at <= target);
            let Some(at) = next else {
                if target > now {
                    sim.advance(Duration::from_nanos(target - now));
                    self.discover(sim);
                }
                return;
            };
            sim.advance(Duration::from_nanos(at.saturating_sub(now)));
            self.answer_due(sim, now_ns(sim));
            self.discover(sim);
        }
    }

    /// Answers the callouts due by `now`; true if any was.
    fn answer_due(&mut self, sim: &mut Sim, now: u64) -> bool {
        let mut due: Vec<((usize, u32), u64)> = self
            .due
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(key, at)| (*key, *at))
            .collect();
        due.sort_by_key(|(key, at)| (*at, *key));
        let any = !due.is_empty();
        for ((worker, token), _) in due {
            self.due.insert((worker, token), u64::MAX);
            let _ = sim.use_worker(worker);
            self.answer(sim, token);
        }
        any
    }

    fn answer(&self, sim: &mut Sim, token: u32) {
        if let Some(call) = sim.http_callouts().into_iter().find(|c| c.token == token) {
            let Some(cluster) = self.clusters.get(&call.cluster) else {
                return;
            };
            let status = cluster.status.unwrap_or(200);
            let framed = cluster.trailers.is_empty();
            let headers = hcm::upstream_response_headers(
                status,
                &cluster.headers,
                framed.then_some(cluster.body.len()),
                cluster.delay_ms,
            );
            let headers: Vec<(String, String)> = headers.to_vec();
            let headers: Vec<(&str, &str)> = headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let trailers: Vec<(&str, &str)> = cluster
                .trailers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            sim.respond_http_call(token, &headers, cluster.body.as_bytes(), &trailers);
            return;
        }
        let Some(call) = sim.grpc_callouts().into_iter().find(|c| c.token == token) else {
            return;
        };
        let Some(cluster) = self.clusters.get(&call.cluster) else {
            return;
        };
        let timed_out = call.timeout_ms > 0 && u64::from(call.timeout_ms) <= cluster.delay_ms;
        if timed_out {
            // Seen in Envoy 1.40: UNAVAILABLE, with the router's details in braces.
            sim.close_grpc(token, &[], 14, "upstream request timeout{response_timeout}");
            return;
        }
        let message = match &cluster.message_base64 {
            Some(encoded) => base64_decode(encoded),
            None => cluster.message.as_bytes().to_vec(),
        };
        let pairs = |items: &Pairs| -> Vec<(String, String)> { items.clone() };
        if call.is_stream {
            // A stream's metadata maps are the whole header and trailer maps the server sent
            // (seen in Envoy 1.40: differential `grpc-stream-metadata-message-trailers-close`).
            let mut initial = vec![
                (":status".to_string(), "200".to_string()),
                ("content-type".to_string(), "application/grpc".to_string()),
            ];
            initial.extend(pairs(&cluster.initial_metadata));
            let initial: Vec<(&str, &str)> = initial
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            if cluster.grpc_status == 0 {
                sim.grpc_stream_message(token, &initial, &message);
            }
            let mut trailing = vec![("grpc-status".to_string(), cluster.grpc_status.to_string())];
            if !cluster.grpc_message.is_empty() {
                trailing.push(("grpc-message".to_string(), cluster.grpc_message.clone()));
            }
            trailing.extend(pairs(&cluster.trailing_metadata));
            let trailing: Vec<(&str, &str)> = trailing
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            sim.close_grpc(token, &trailing, cluster.grpc_status, &cluster.grpc_message);
        } else if cluster.grpc_status == 0 {
            // cpp-host `onGrpcReceiveWrapper`: a unary success is one receive, no close.
            sim.respond_grpc_call(token, &message);
        } else {
            // Seen in Envoy 1.40: the message carries the response code details in braces.
            let message = format!("{}{{via_upstream}}", cluster.grpc_message);
            sim.close_grpc(token, &[], cluster.grpc_status, &message);
        }
    }
}
