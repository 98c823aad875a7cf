//! The virtual clock: ticks and callout timeouts fire in time order as the test advances it.

use super::*;

/// What fires on the virtual clock; at the same instant ticks come first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Timer {
    Tick,
    HttpTimeout,
    GrpcTimeout,
}

impl Sim {
    /// Moves the virtual clock forward, firing ticks and callout timeouts in time order
    /// (a timed-out HTTP callout gets Envoy's 504 "upstream request timeout" response).
    pub fn advance(&mut self, duration: Duration) -> Outcome {
        let target = self
            .store
            .data()
            .world
            .now_ns
            .saturating_add(duration.as_nanos().min(u128::from(u64::MAX)) as u64);
        let home = self.active;
        let mut outcome = Outcome::Continue;
        // Events in time order; at the same instant ticks before timeouts, then by worker.
        while let Some((at, timer, worker, id)) = self.next_timer() {
            if at > target {
                break;
            }
            self.switch_to(worker);
            self.store.data_mut().world.now_ns = at;
            let result = if timer == Timer::GrpcTimeout {
                // Envoy's async client router times the call out with a 504 local reply that
                // its gRPC client reads as UNAVAILABLE with these details (seen in Envoy 1.40:
                // `proxy_on_grpc_close(root, token, 14)`, `get_status` the message below).
                self.close_grpc(id, &[], 14, "upstream request timeout{response_timeout}")
            } else if timer == Timer::HttpTimeout {
                self.respond_http_call(
                    id,
                    &[
                        (":status", "504"),
                        ("content-length", "24"),
                        ("content-type", "text/plain"),
                    ],
                    b"upstream request timeout",
                    &[],
                )
            } else {
                let plugin_state = &mut self.store.data_mut().plugins[id as usize];
                plugin_state.next_tick =
                    Some(at + u64::from(plugin_state.tick_period_ms) * 1_000_000);
                let ctx = plugin_state.root_context_id;
                match self.exports.on_tick.clone() {
                    Some(func) => match self.call("proxy_on_tick", ctx, func, ctx) {
                        Ok(()) => self.top_level_outcome(),
                        Err(_) => self.trapped(),
                    },
                    None => Outcome::Continue,
                }
            };
            if matches!(result, Outcome::Trapped { .. }) && outcome == Outcome::Continue {
                outcome = result;
            }
        }
        self.switch_to(home);
        let state = self.store.data_mut();
        state.world.now_ns = state.world.now_ns.max(target);
        outcome
    }

    /// When the next tick or callout timeout is due on any worker (virtual ns).
    pub(crate) fn next_timer_at(&self) -> Option<u64> {
        self.next_timer().map(|(at, ..)| at)
    }

    /// The earliest tick (of a VM that has not failed) or callout timeout over all workers:
    /// (time, which timer, worker, plugin index or callout token).
    pub(super) fn next_timer(&self) -> Option<(u64, Timer, usize, u32)> {
        (0..self.parked.len())
            .flat_map(|worker| {
                let state = self.state_of(worker);
                let ticks = state
                    .plugins
                    .iter()
                    .enumerate()
                    .filter(|_| !state.failed)
                    .filter_map(move |(idx, plugin)| {
                        plugin
                            .next_tick
                            .map(|at| (at, Timer::Tick, worker, idx as u32))
                    });
                let timeouts = state.http_callouts.values().filter_map(move |callout| {
                    callout
                        .deadline
                        .map(|at| (at, Timer::HttpTimeout, worker, callout.token))
                });
                let grpc_timeouts = state.grpc_callouts.values().filter_map(move |callout| {
                    callout
                        .deadline
                        .map(|at| (at, Timer::GrpcTimeout, worker, callout.token))
                });
                ticks.chain(timeouts).chain(grpc_timeouts)
            })
            .min()
    }
}
