//! A simulated Envoy: one VM (a wasmtime `Store`) per worker, several plugins (root contexts)
//! in each, HTTP streams and TCP connections, a virtual clock, and callouts the test answers.
//!
//! This file holds the public types and [`Sim`]'s accessors; the rest is one module per
//! responsibility: `builder.rs` ([`SimBuilder`], instantiating a VM), `canary.rs` (the
//! configuration canary and the whole-process model), `workers.rs` (one VM per worker, the
//! active one and the parked ones), `vm.rs` (VM start, root contexts, calls into the guest,
//! deferred actions, shutdown), `failure.rs` ([`FailurePolicy`], failing streams, FAIL_RELOAD),
//! `filter_manager.rs` (Envoy's filter manager for one filter as plain Rust), `stream.rs` (a
//! stream's events through the guest, applying the filter manager's decisions), `handle.rs`
//! ([`Stream`]), `chain.rs` (several filters in one chain), `tcp.rs` (network filters),
//! `callouts.rs`, `clock.rs` and `exports.rs`. What every VM shares (clock, shared data,
//! queues, stats, logs, trace) is one `host::World`, which goes with the active VM.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::{Instance, Store, TypedFunc, WasmParams, WasmResults};

use crate::abi::AbiVersion;
use crate::headers::HeaderMap;
use crate::host::{
    After, ForeignFunction, GrpcCallout, HostState, HostTrap, HttpCallout, HttpResponseData,
    LocalReply, LogEntry, MetricValue, Passed, PluginState, Queued, Restriction, StreamData, avail,
};
use crate::module::Module;
use crate::property::PropertyValue;
use crate::trace::Trace;
use crate::{Error, Status};

mod builder;
mod callouts;
mod canary;
mod chain;
mod clock;
mod exports;
mod failure;
mod filter_manager;
mod handle;
mod stream;
mod tcp;
mod vm;
mod workers;

pub use builder::SimBuilder;
pub use chain::{Chain, Side};
pub use failure::FailurePolicy;
pub use handle::Stream;
pub use tcp::Connection;

use exports::{Exports, F, get};
use vm::trap_message;
use workers::{Parked, hand_over_world};

/// Why Envoy rejected a plugin configuration, with the filter's own log lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The plugin's root_id.
    pub root_id: String,
    /// What failed: `proxy_on_vm_start returned false`, `proxy_on_configure returned false`,
    /// or a trap.
    pub reason: String,
    /// The logs the canary VM wrote.
    pub logs: Vec<LogEntry>,
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "plugin configuration for root_id={} rejected: {}",
            self.root_id, self.reason
        )
    }
}

/// One plugin: a root_id with its configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginConfig {
    /// The root_id (what the filter reads as the `plugin_root_id` property).
    pub root_id: String,
    /// The plugin name (`plugin_name`); defaults to the root_id.
    pub name: String,
    /// The plugin configuration bytes (buffer 7).
    pub configuration: Vec<u8>,
    /// Envoy's `allow_on_headers_stop_iteration`.
    pub allow_on_headers_stop_iteration: bool,
}

/// How Envoy treats the filter's answer for a stream event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pause {
    /// Headers: StopIteration (only with `allow_on_headers_stop_iteration`).
    StopIteration,
    /// Headers: StopAllIterationAndBuffer.
    StopAllIterationAndBuffer,
    /// Headers: StopAllIterationAndWatermark (what a plain pause becomes).
    StopAllIterationAndWatermark,
    /// Body: StopIterationAndBuffer.
    StopIterationAndBuffer,
    /// Body: StopIterationAndWatermark.
    StopIterationAndWatermark,
    /// Body: StopIterationNoBuffer.
    StopIterationNoBuffer,
    /// Trailers: StopIteration.
    TrailersStopIteration,
    /// The event was held because the filter is paused (delivered on continue).
    Held,
}

/// The result of sending one event through the filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The filter let it through.
    Continue,
    /// The filter stopped iteration.
    Paused(Pause),
    /// The stream was answered locally (by the filter, or by Envoy: 413, 503 after a failure).
    LocalReply {
        /// HTTP status sent downstream.
        status_code: u32,
    },
    /// The filter reset the stream (`proxy_close_stream`).
    Reset,
    /// The guest trapped; the VM is now failed.
    Trapped {
        /// The export that trapped.
        callback: String,
        /// The trap message.
        message: String,
    },
    /// Envoy would not deliver this event (the stream already ended).
    NotDelivered,
}

/// A simulated Envoy: one VM per worker thread (one by default), each with the plugins.
pub struct Sim {
    store: Store<HostState>,
    instance: Instance,
    exports: Exports,
    module: Module,
    fuel: u64,
    buffer_limit: usize,
    failure_policy: FailurePolicy,
    next_context_id: u32,
    last_trap: Option<(String, String)>,
    /// How this VM was built, to build a fresh one (FAIL_RELOAD).
    config: SimBuilder,
    /// Which VM this is: 0 for the first, one more per reload. Streams of an earlier VM get
    /// the failure policy's answer.
    generation: u32,
    /// Virtual time (ns) of the last VM load or reload attempt (Envoy's `last_load`).
    last_load_ns: u64,
    /// The worker whose VM the fields above are (the active one).
    active: usize,
    /// Every worker's VM but the active one (`None` at the active index).
    parked: Vec<Option<Parked>>,
}

impl std::fmt::Debug for Sim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sim")
            .field("module", &self.module)
            .finish_non_exhaustive()
    }
}

impl Sim {
    /// Creates a stream on the plugin with this root_id, on the active worker (its context is
    /// created in the VM when the first event arrives, as Envoy does). Under FAIL_RELOAD this
    /// is when a failed VM may be replaced.
    pub fn stream(&mut self, root_id: &str) -> Result<Stream<'_>, Error> {
        self.maybe_reload();
        let generation = self.generation;
        let state = self.store.data();
        let plugin = state
            .plugins
            .iter()
            .position(|plugin| plugin.root_id == root_id)
            .ok_or_else(|| Error::UnknownRootId(root_id.to_string()))?;
        let root = state.plugins[plugin].root_context_id;
        let started_ns = state.world.now_ns;
        let id = self.next_context_id;
        self.next_context_id += 1;
        self.store.data_mut().streams.insert(
            id,
            StreamData {
                generation,
                plugin,
                root,
                started_ns,
                ..StreamData::default()
            },
        );
        let worker = self.active;
        Ok(Stream {
            sim: self,
            id,
            worker,
            finished: None,
        })
    }

    /// A handle on a stream created earlier with [`Sim::stream`] (by its id), if it has not
    /// completed.
    pub fn stream_by_id(&mut self, id: u32) -> Option<Stream<'_>> {
        let worker = (0..self.parked.len())
            .find(|worker| self.state_of(*worker).streams.contains_key(&id))?;
        Some(Stream {
            sim: self,
            id,
            worker,
            finished: None,
        })
    }

    /// The trace recorded so far.
    pub fn trace(&self) -> &Trace {
        &self.store.data().world.trace
    }

    /// Renders the trace as text.
    pub fn render_trace(&self) -> String {
        self.store.data().world.trace.render()
    }

    /// Fault injection from now on, on every worker: each call of the host function `name`
    /// answers `status` without effect (see [`SimBuilder::inject`]).
    pub fn inject(&mut self, name: &str, status: Status) {
        self.config.injected.insert(name.to_string(), status);
        self.each_state(|state| {
            state.injected.insert(name.to_string(), status);
        });
    }

    /// Ends the injection for `name`: its calls work again.
    pub fn clear_injection(&mut self, name: &str) {
        self.config.injected.remove(name);
        self.each_state(|state| {
            state.injected.remove(name);
        });
    }

    /// Forgets the trace recorded so far. The logs stay (a test that clears the trace after
    /// setup still sees what the filter logged while configuring); [`Sim::clear_logs`]
    /// forgets them.
    pub fn clear_trace(&mut self) {
        self.store.data_mut().world.trace.clear();
    }

    /// Forgets the log lines recorded so far ([`Sim::logs`]).
    pub fn clear_logs(&mut self) {
        self.store.data_mut().world.logs.clear();
    }

    /// Turns tracing on or off.
    pub fn set_tracing(&mut self, enabled: bool) {
        self.store.data_mut().world.trace.set_enabled(enabled);
    }

    /// Every log line the guest wrote in this VM.
    pub fn logs(&self) -> &[LogEntry] {
        &self.store.data().world.logs
    }

    /// A metric's value by the name the guest defined.
    pub fn metric(&self, name: &str) -> Option<MetricValue> {
        self.store.data().world.metric_values.get(name).copied()
    }

    /// A shared-data entry: value and CAS.
    pub fn shared_data(&self, key: &[u8]) -> Option<(Vec<u8>, u32)> {
        self.store.data().world.shared_data.get(key).cloned()
    }

    /// Sets a shared-data entry as another VM would (new CAS).
    pub fn set_shared_data(&mut self, key: &[u8], value: &[u8]) {
        let state = self.store.data_mut();
        state.world.cas = state.world.cas.wrapping_add(1).max(1);
        let cas = state.world.cas;
        state
            .world
            .shared_data
            .insert(key.to_vec(), (value.to_vec(), cas));
    }

    /// Enqueues an item on a shared queue registered under this VM id, as another VM would;
    /// `proxy_on_queue_ready` runs at once.
    pub fn enqueue(&mut self, queue_name: &str, item: &[u8]) -> Result<Outcome, Status> {
        let state = self.store.data_mut();
        let vm_id = state.vm_id.clone();
        let Some((token, queue)) = state
            .world
            .queues
            .iter_mut()
            .find(|(_, queue)| queue.vm_id == vm_id && queue.name == queue_name)
        else {
            return Err(Status::NotFound);
        };
        queue.items.push_back(item.to_vec());
        let ready = (queue.worker, queue.context_id, *token);
        state.world.queue_ready.push(ready);
        Ok(self.top_level_outcome())
    }

    /// Items waiting in a shared queue.
    pub fn queue_items(&self, queue_name: &str) -> Vec<Vec<u8>> {
        self.store
            .data()
            .world
            .queues
            .values()
            .find(|queue| queue.name == queue_name)
            .map(|queue| queue.items.iter().cloned().collect())
            .unwrap_or_default()
    }

    fn top_level_outcome(&mut self) -> Outcome {
        let traps_before = self.last_trap.clone();
        self.after_top_level();
        if self.last_trap != traps_before {
            self.trapped()
        } else {
            Outcome::Continue
        }
    }

    /// The root context id of a plugin in the active worker's VM.
    pub fn root_context_id(&self, root_id: &str) -> Result<u32, Error> {
        self.store
            .data()
            .plugins
            .iter()
            .find(|plugin| plugin.root_id == root_id)
            .map(|plugin| plugin.root_context_id)
            .ok_or_else(|| Error::UnknownRootId(root_id.to_string()))
    }

    /// Every metric value by name (counters, gauges and histograms), across workers.
    pub fn metrics(&self) -> Vec<(String, MetricValue)> {
        self.store
            .data()
            .world
            .metric_values
            .iter()
            .map(|(name, value)| (name.clone(), *value))
            .collect()
    }

    /// Calls any export by name with integer arguments, as if Envoy called it on this
    /// context (for tests of host functions through guests that forward them). A trap is
    /// returned as its message.
    #[doc(hidden)]
    pub fn call_guest_function(
        &mut self,
        name: &str,
        context_id: u32,
        args: &[i64],
    ) -> Result<Option<i64>, String> {
        use wasmtime::Val;
        let Some(func) = self.instance.get_func(&mut self.store, name) else {
            return Err(format!("no export {name}"));
        };
        let ty = func.ty(&self.store);
        let params: Vec<Val> = ty
            .params()
            .zip(args.iter().chain(std::iter::repeat(&0)))
            .map(|(ty, value)| match ty {
                wasmtime::ValType::I64 => Val::I64(*value),
                _ => Val::I32(*value as i32),
            })
            .collect();
        let mut results = vec![Val::I32(0); ty.results().len()];
        let saved = (self.store.data().current, self.store.data().effective);
        self.store.data_mut().current = context_id;
        self.store.data_mut().effective = 0;
        let _ = self.store.set_fuel(self.fuel);
        let result = func.call(&mut self.store, &params, &mut results);
        self.store.data_mut().current = saved.0;
        self.store.data_mut().effective = saved.1;
        result.map_err(|error| trap_message(&error))?;
        Ok(results.first().map(|value| match value {
            Val::I64(value) => *value,
            Val::I32(value) => i64::from(*value as u32),
            _ => 0,
        }))
    }

    /// A copy of the guest's linear memory (for tests that compare host calls).
    #[doc(hidden)]
    pub fn guest_memory(&self) -> Vec<u8> {
        self.store
            .data()
            .memory
            .map_or_else(Vec::new, |memory| memory.data(&self.store).to_vec())
    }

    /// Writes back a copy taken with [`Sim::guest_memory`] (as much of it as fits).
    #[doc(hidden)]
    pub fn restore_guest_memory(&mut self, bytes: &[u8]) {
        if let Some(memory) = self.store.data().memory {
            let data = memory.data_mut(&mut self.store);
            let len = data.len().min(bytes.len());
            data[..len].copy_from_slice(&bytes[..len]);
        }
    }

    /// Virtual time since the simulation started.
    pub fn now(&self) -> Duration {
        Duration::from_nanos(self.store.data().world.now_ns)
    }

    /// The guest's linear memory size in bytes (active worker's VM).
    pub fn memory_size(&self) -> usize {
        self.store
            .data()
            .memory
            .map_or(0, |memory| memory.data_size(&self.store))
    }

    /// Whether a trap failed the active worker's VM.
    pub fn failed(&self) -> bool {
        self.store.data().failed
    }

    /// The module this VM runs.
    pub fn module(&self) -> &Module {
        &self.module
    }
}
