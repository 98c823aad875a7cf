//! The world: what every VM of one simulation shares, as in one Envoy process (the virtual
//! clock, shared data and queues per vm_id, stats) or what a test inspects in one place (logs,
//! the trace). A simulation owns exactly one; it lives in the active VM's store, and
//! `Sim::switch_to`, FAIL_RELOAD and the whole-process canary hand it over whole, so no field
//! is ever carried between stores by hand.

use std::collections::{BTreeMap, HashMap};

use super::{LogEntry, MetricValue, Queue};
use crate::trace::Trace;

/// See the module documentation.
#[derive(Default)]
pub(crate) struct World {
    /// Virtual time since the simulation started (ns).
    pub(crate) now_ns: u64,
    /// Shared data: value and CAS.
    pub(crate) shared_data: HashMap<Vec<u8>, (Vec<u8>, u32)>,
    /// The last CAS handed out.
    pub(crate) cas: u32,
    /// Shared queues by token.
    pub(crate) queues: BTreeMap<u32, Queue>,
    pub(crate) next_queue_token: u32,
    /// `proxy_on_queue_ready` calls due: (worker, root context, token).
    pub(crate) queue_ready: Vec<(usize, u32, u32)>,
    /// Metric values by name (Envoy's stats, summed over workers).
    pub(crate) metric_values: BTreeMap<String, MetricValue>,
    /// Every log line, from every VM.
    pub(crate) logs: Vec<LogEntry>,
    pub(crate) trace: Trace,
    /// `random_get`'s xorshift state.
    pub(crate) random_state: u64,
}

impl World {
    /// A world at time zero, recording a trace when `trace` is set.
    pub(crate) fn new(trace: bool) -> World {
        World {
            trace: Trace::new(trace),
            random_state: 0x853c_49e6_748f_ea9b,
            ..World::default()
        }
    }

    /// The next CAS value (never 0).
    pub(crate) fn next_cas(&mut self) -> u32 {
        self.cas = self.cas.wrapping_add(1);
        if self.cas == 0 {
            self.cas = 1;
        }
        self.cas
    }
}
