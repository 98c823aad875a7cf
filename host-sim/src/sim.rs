//! A simulated Envoy worker VM: one wasmtime `Store`, several plugins (root contexts), HTTP
//! streams, a virtual clock, and callouts the test answers.

use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::{Instance, Store, TypedFunc, WasmParams, WasmResults};

use crate::abi::{AbiVersion, data_status, headers_status};
use crate::headers::HeaderMap;
use crate::host::{
    After, ForeignFunction, GrpcCallout, HostState, HostTrap, HttpCallout, HttpResponseData,
    LocalReply, LogEntry, MetricValue, PluginState, Queued, Restriction, StreamData, avail,
};
use crate::module::Module;
use crate::property::PropertyValue;
use crate::trace::Trace;
use crate::{Error, Status};

mod tcp;
pub use tcp::Connection;

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

/// What Envoy does after a plugin's Wasm VM failed (a trap).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FailurePolicy {
    /// Answer 503 with details `wasm_fail_stream` (Envoy's default).
    #[default]
    FailClosed,
    /// Let traffic pass without the filter.
    FailOpen,
    /// Like FAIL_CLOSED, but a stream created once the reload backoff has passed since the
    /// VM was last loaded gets a fresh VM (Envoy ≥ 1.33 `FAIL_RELOAD`, runtime errors only).
    FailReload,
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

type F<P, Rt> = Option<TypedFunc<P, Rt>>;

#[derive(Default)]
struct Exports {
    on_context_create: F<(u32, u32), ()>,
    on_vm_start: F<(u32, u32), u32>,
    on_configure: F<(u32, u32), u32>,
    on_tick: F<u32, ()>,
    on_queue_ready: F<(u32, u32), ()>,
    on_request_headers: F<(u32, u32, u32), u32>,
    on_request_headers_01: F<(u32, u32), u32>,
    on_request_body: F<(u32, u32, u32), u32>,
    on_request_trailers: F<(u32, u32), u32>,
    on_response_headers: F<(u32, u32, u32), u32>,
    on_response_headers_01: F<(u32, u32), u32>,
    on_response_body: F<(u32, u32, u32), u32>,
    on_response_trailers: F<(u32, u32), u32>,
    on_log: F<u32, ()>,
    on_done: F<u32, u32>,
    on_delete: F<u32, ()>,
    on_http_call_response: F<(u32, u32, u32, u32, u32), ()>,
    on_grpc_receive_initial_metadata: F<(u32, u32, u32), ()>,
    on_grpc_receive: F<(u32, u32, u32), ()>,
    on_grpc_receive_trailing_metadata: F<(u32, u32, u32), ()>,
    on_grpc_close: F<(u32, u32, u32), ()>,
    on_foreign_function: F<(u32, u32, u32), ()>,
    tcp: tcp::TcpExports,
}

/// Builds a [`Sim`]: plugins, clusters, properties, limits.
#[derive(Clone)]
pub struct SimBuilder {
    module: Module,
    plugins: Vec<PluginConfig>,
    vm_id: String,
    vm_configuration: Vec<u8>,
    clusters: Vec<String>,
    properties: Vec<(Vec<Vec<u8>>, PropertyValue)>,
    environment: Vec<(String, String)>,
    foreign_functions: Vec<(String, Arc<ForeignFunction>)>,
    fuel: u64,
    trace: bool,
    log_level: u32,
    buffer_limit: usize,
    failure_policy: FailurePolicy,
    reload_backoff: Duration,
    workers: usize,
    canary: bool,
}

/// A worker VM that is not the one [`Sim`]'s calls act on right now.
struct Parked {
    store: Store<HostState>,
    instance: Instance,
    exports: Exports,
    last_trap: Option<(String, String)>,
    generation: u32,
    last_load_ns: u64,
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

fn get<P: WasmParams, Rt: WasmResults>(
    instance: &Instance,
    store: &mut Store<HostState>,
    name: &str,
) -> F<P, Rt> {
    instance.get_typed_func::<P, Rt>(&mut *store, name).ok()
}

fn trap_message(error: &wasmtime::Error) -> String {
    if let Some(trap) = error.downcast_ref::<wasmtime::Trap>() {
        return trap.to_string();
    }
    if let Some(trap) = error.downcast_ref::<HostTrap>() {
        return trap.0.clone();
    }
    format!("{error:#}")
}

impl SimBuilder {
    /// Adds a plugin with this root_id and configuration (name = root_id).
    pub fn plugin(mut self, root_id: &str, configuration: impl AsRef<[u8]>) -> SimBuilder {
        self.plugins.push(PluginConfig {
            root_id: root_id.to_string(),
            name: root_id.to_string(),
            configuration: configuration.as_ref().to_vec(),
            allow_on_headers_stop_iteration: false,
        });
        self
    }

    /// Adds a fully described plugin.
    pub fn plugin_config(mut self, plugin: PluginConfig) -> SimBuilder {
        self.plugins.push(plugin);
        self
    }

    /// Sets the VM id (`plugin_vm_id`; shared data and queues are per VM id).
    pub fn vm_id(mut self, vm_id: &str) -> SimBuilder {
        self.vm_id = vm_id.to_string();
        self
    }

    /// Sets the VM configuration (buffer 6, `proxy_on_vm_start`'s size).
    pub fn vm_configuration(mut self, configuration: impl AsRef<[u8]>) -> SimBuilder {
        self.vm_configuration = configuration.as_ref().to_vec();
        self
    }

    /// Declares a cluster `proxy_http_call` and `proxy_grpc_*` may use.
    pub fn cluster(mut self, name: &str) -> SimBuilder {
        self.clusters.push(name.to_string());
        self
    }

    /// Sets a property (path segments) every context sees.
    pub fn property(mut self, path: &[&str], value: impl Into<PropertyValue>) -> SimBuilder {
        self.properties.push((
            path.iter()
                .map(|segment| segment.as_bytes().to_vec())
                .collect(),
            value.into(),
        ));
        self
    }

    /// Sets a VM environment variable (`environ_get`).
    pub fn environment(mut self, key: &str, value: &str) -> SimBuilder {
        self.environment.push((key.to_string(), value.to_string()));
        self
    }

    /// Registers a foreign function for `proxy_call_foreign_function`.
    pub fn foreign_function(
        mut self,
        name: &str,
        function: impl Fn(&[u8]) -> Result<Vec<u8>, Status> + Send + Sync + 'static,
    ) -> SimBuilder {
        self.foreign_functions
            .push((name.to_string(), Arc::new(Box::new(function))));
        self
    }

    /// Fuel per callback (wasmtime fuel units, about one per instruction); a callback that
    /// runs out traps. Default 100,000,000.
    pub fn fuel(mut self, fuel: u64) -> SimBuilder {
        self.fuel = fuel;
        self
    }

    /// Records the trace (default on).
    pub fn trace(mut self, enabled: bool) -> SimBuilder {
        self.trace = enabled;
        self
    }

    /// The log level `proxy_get_log_level` reports (default 2, info).
    pub fn log_level(mut self, level: u32) -> SimBuilder {
        self.log_level = level;
        self
    }

    /// Envoy's per-stream buffer limit (default 1 MiB): a paused body over it is answered
    /// with 413 (request) or 500 (response) by Envoy itself.
    pub fn buffer_limit(mut self, bytes: usize) -> SimBuilder {
        self.buffer_limit = bytes;
        self
    }

    /// What happens to streams after a trap (default FAIL_CLOSED).
    pub fn failure_policy(mut self, policy: FailurePolicy) -> SimBuilder {
        self.failure_policy = policy;
        self
    }

    /// How many worker threads (default 1): Envoy runs one VM per worker, each with every
    /// plugin's root context, so ticks fire once per worker; shared data and queues are
    /// shared by all. Streams run on the worker chosen with [`Sim::use_worker`].
    pub fn workers(mut self, workers: usize) -> SimBuilder {
        self.workers = workers.max(1);
        self
    }

    /// FAIL_RELOAD's backoff base (`reload_config.backoff.base_interval`, default 1 s). Envoy
    /// jitters each wait up to 1.5 × the base; host-sim waits exactly the base.
    pub fn reload_backoff(mut self, base: Duration) -> SimBuilder {
        self.reload_backoff = base;
        self
    }

    /// Whether to run Envoy's configuration canary in a throwaway VM first (default on;
    /// results are cached per module and plugin, as Envoy caches them).
    pub fn canary(mut self, enabled: bool) -> SimBuilder {
        self.canary = enabled;
        self
    }

    fn canary_key(&self, plugin: &PluginConfig) -> [u8; 32] {
        let mut hasher = Sha256::new();
        for part in [
            plugin.root_id.as_bytes(),
            plugin.name.as_bytes(),
            &plugin.configuration,
            self.vm_id.as_bytes(),
            &self.vm_configuration,
        ] {
            hasher.update((part.len() as u64).to_le_bytes());
            hasher.update(part);
        }
        hasher.finalize().into()
    }

    /// Starts the VM, runs the canary for each plugin, then starts and configures each
    /// plugin's root context, in order.
    pub fn build(self) -> Result<Sim, Error> {
        if self.canary {
            for plugin in &self.plugins {
                let key = self.canary_key(plugin);
                let result = match self.module.canary_result(&key) {
                    Some(result) => result,
                    None => {
                        let result = self.start(std::slice::from_ref(plugin)).map(|_| ());
                        let result = match result {
                            Ok(()) => Ok(()),
                            Err(Error::ConfigRejected(rejection)) => Err(rejection),
                            Err(other) => return Err(other),
                        };
                        self.module.store_canary(key, result.clone());
                        result
                    }
                };
                result.map_err(Error::ConfigRejected)?;
            }
        }
        let mut sim = self.start(&self.plugins)?;
        for worker in 1..self.workers {
            sim.add_worker(worker)?;
        }
        sim.switch_to(0);
        Ok(sim)
    }

    /// A fresh host state for one VM, from the builder's settings.
    fn host_state(&self, worker: usize) -> HostState {
        let mut state = HostState::new(self.module.abi_version(), self.trace);
        state.worker = worker;
        state.vm_id = self.vm_id.clone();
        state.vm_configuration = self.vm_configuration.clone();
        state.clusters = self.clusters.clone();
        state.environment = self.environment.clone();
        state.log_level = self.log_level;
        for (path, value) in &self.properties {
            state.properties.insert(path.clone(), value.clone());
        }
        for (name, function) in &self.foreign_functions {
            state
                .foreign_functions
                .insert(name.clone(), function.clone());
        }
        state
    }

    /// Instantiates the module in a new store holding `state`, and finds the exports.
    fn instantiate(
        &self,
        state: HostState,
    ) -> Result<(Store<HostState>, Instance, Exports), Error> {
        let runtime = crate::module::runtime();
        let mut store = Store::new(&runtime.engine, state);
        store
            .set_fuel(self.fuel)
            .map_err(|error| Error::StartFailed(error.to_string()))?;
        let instance = self
            .module
            .instance_pre()
            .instantiate(&mut store)
            .map_err(|error| Error::StartFailed(trap_message(&error)))?;
        let memory = instance.get_memory(&mut store, "memory");
        let malloc = get::<u32, u32>(&instance, &mut store, "malloc")
            .or_else(|| get::<u32, u32>(&instance, &mut store, "proxy_on_memory_allocate"));
        store.data_mut().memory = memory;
        store.data_mut().malloc = malloc;
        let abi = self.module.abi_version();
        let exports = Exports {
            on_context_create: get(&instance, &mut store, "proxy_on_context_create"),
            on_vm_start: get(&instance, &mut store, "proxy_on_vm_start"),
            on_configure: get(&instance, &mut store, "proxy_on_configure"),
            on_tick: get(&instance, &mut store, "proxy_on_tick"),
            on_queue_ready: get(&instance, &mut store, "proxy_on_queue_ready"),
            on_request_headers: if abi == AbiVersion::V0_1_0 {
                None
            } else {
                get(&instance, &mut store, "proxy_on_request_headers")
            },
            on_request_headers_01: if abi == AbiVersion::V0_1_0 {
                get(&instance, &mut store, "proxy_on_request_headers")
            } else {
                None
            },
            on_request_body: get(&instance, &mut store, "proxy_on_request_body"),
            on_request_trailers: get(&instance, &mut store, "proxy_on_request_trailers"),
            on_response_headers: if abi == AbiVersion::V0_1_0 {
                None
            } else {
                get(&instance, &mut store, "proxy_on_response_headers")
            },
            on_response_headers_01: if abi == AbiVersion::V0_1_0 {
                get(&instance, &mut store, "proxy_on_response_headers")
            } else {
                None
            },
            on_response_body: get(&instance, &mut store, "proxy_on_response_body"),
            on_response_trailers: get(&instance, &mut store, "proxy_on_response_trailers"),
            on_log: get(&instance, &mut store, "proxy_on_log"),
            on_done: get(&instance, &mut store, "proxy_on_done"),
            on_delete: get(&instance, &mut store, "proxy_on_delete"),
            on_http_call_response: get(&instance, &mut store, "proxy_on_http_call_response"),
            on_grpc_receive_initial_metadata: get(
                &instance,
                &mut store,
                "proxy_on_grpc_receive_initial_metadata",
            ),
            on_grpc_receive: get(&instance, &mut store, "proxy_on_grpc_receive"),
            on_grpc_receive_trailing_metadata: get(
                &instance,
                &mut store,
                "proxy_on_grpc_receive_trailing_metadata",
            ),
            on_grpc_close: get(&instance, &mut store, "proxy_on_grpc_close"),
            on_foreign_function: if abi == AbiVersion::V0_1_0 {
                None
            } else {
                get(&instance, &mut store, "proxy_on_foreign_function")
            },
            tcp: tcp::TcpExports::get(&instance, &mut store),
        };
        Ok((store, instance, exports))
    }

    fn start(&self, plugins: &[PluginConfig]) -> Result<Sim, Error> {
        let (store, instance, exports) = self.instantiate(self.host_state(0))?;
        let mut sim = Sim {
            store,
            instance,
            exports,
            module: self.module.clone(),
            fuel: self.fuel,
            buffer_limit: self.buffer_limit,
            failure_policy: self.failure_policy,
            next_context_id: 1,
            last_trap: None,
            config: self.clone(),
            generation: 0,
            last_load_ns: 0,
            active: 0,
            parked: vec![None],
        };
        sim.start_vm()?;
        for plugin in plugins {
            sim.start_plugin(plugin)?;
        }
        Ok(sim)
    }
}

impl Sim {
    /// Starts building a simulation of `module`.
    pub fn builder(module: &Module) -> SimBuilder {
        SimBuilder {
            module: module.clone(),
            plugins: Vec::new(),
            vm_id: String::new(),
            vm_configuration: Vec::new(),
            clusters: Vec::new(),
            properties: Vec::new(),
            environment: Vec::new(),
            foreign_functions: Vec::new(),
            fuel: 100_000_000,
            trace: true,
            log_level: 2,
            buffer_limit: 1024 * 1024,
            failure_policy: FailurePolicy::FailClosed,
            reload_backoff: Duration::from_secs(1),
            workers: 1,
            canary: true,
        }
    }

    /// Puts `parked` in place of the active VM's parts and returns those.
    fn swap_active(&mut self, parked: Parked) -> Parked {
        Parked {
            store: std::mem::replace(&mut self.store, parked.store),
            instance: std::mem::replace(&mut self.instance, parked.instance),
            exports: std::mem::replace(&mut self.exports, parked.exports),
            last_trap: std::mem::replace(&mut self.last_trap, parked.last_trap),
            generation: std::mem::replace(&mut self.generation, parked.generation),
            last_load_ns: std::mem::replace(&mut self.last_load_ns, parked.last_load_ns),
        }
    }

    /// Makes `worker`'s VM the active one; what all workers share moves along.
    fn switch_to(&mut self, worker: usize) {
        if worker == self.active || worker >= self.parked.len() {
            return;
        }
        let mut next = self.parked[worker]
            .take()
            .expect("a parked worker exists at every index but the active one");
        move_shared(self.store.data_mut(), next.store.data_mut());
        let previous = self.swap_active(next);
        self.parked[self.active] = Some(previous);
        self.active = worker;
        self.store.data_mut().trace.set_worker(worker);
    }

    /// Starts another worker's VM (its own instance, every plugin's root context).
    fn add_worker(&mut self, worker: usize) -> Result<(), Error> {
        let (store, instance, exports) = self.config.instantiate(self.config.host_state(worker))?;
        let mut next = Parked {
            store,
            instance,
            exports,
            last_trap: None,
            generation: 0,
            last_load_ns: self.store.data().now_ns,
        };
        move_shared(self.store.data_mut(), next.store.data_mut());
        let previous = self.swap_active(next);
        self.parked[self.active] = Some(previous);
        self.parked.push(None);
        self.active = worker;
        self.store.data_mut().trace.set_worker(worker);
        self.start_vm()?;
        let plugins = self.config.plugins.clone();
        for plugin in &plugins {
            self.start_plugin(plugin)?;
        }
        Ok(())
    }

    /// The host state of a worker's VM, active or parked.
    fn state_of(&self, worker: usize) -> &HostState {
        match self.parked.get(worker).and_then(Option::as_ref) {
            Some(parked) => parked.store.data(),
            None => self.store.data(),
        }
    }

    /// How many worker VMs this simulation runs.
    pub fn workers(&self) -> usize {
        self.parked.len()
    }

    /// The worker whose VM [`Sim::stream`], callouts, `root_context_id`, `memory_size` and
    /// `failed` refer to.
    pub fn active_worker(&self) -> usize {
        self.active
    }

    /// Chooses the worker for what follows (streams created next, callouts answered next).
    pub fn use_worker(&mut self, worker: usize) -> Result<(), Error> {
        if worker >= self.parked.len() {
            return Err(Error::UnknownWorker(worker));
        }
        self.switch_to(worker);
        Ok(())
    }

    fn start_vm(&mut self) -> Result<(), Error> {
        let instance = self.instance;
        let store = &mut self.store;
        let mark = store.data().trace.mark();
        store.data_mut().restricted = Restriction::Start;
        store.data_mut().current = 0;
        let initialize = get::<(), ()>(&instance, store, "_initialize");
        let result = if let Some(initialize) = initialize {
            store.data_mut().trace.call("_initialize", 0, &[]);
            let mut result = initialize.call(&mut *store, ());
            if result.is_ok() {
                if let Some(main) = get::<(u32, u32), u32>(&instance, store, "main") {
                    store.data_mut().trace.call("main", 0, &[0, 0]);
                    result = main.call(&mut *store, (0, 0)).map(|_| ());
                } else if let Some(main) = get::<(), u32>(&instance, store, "__main_void") {
                    store.data_mut().trace.call("__main_void", 0, &[]);
                    result = main.call(&mut *store, ()).map(|_| ());
                }
            }
            result
        } else if let Some(start) = get::<(), ()>(&instance, store, "_start") {
            store.data_mut().trace.call("_start", 0, &[]);
            start.call(&mut *store, ())
        } else {
            Ok(())
        };
        store.data_mut().restricted = Restriction::None;
        store.data_mut().trace.truncate(mark);
        result.map_err(|error| Error::StartFailed(trap_message(&error)))
    }

    fn start_plugin(&mut self, plugin: &PluginConfig) -> Result<(), Error> {
        let id = self.next_context_id;
        self.next_context_id += 1;
        let idx = {
            let state = self.store.data_mut();
            state.plugins.push(PluginState {
                root_id: plugin.root_id.clone(),
                name: plugin.name.clone(),
                configuration: plugin.configuration.clone(),
                root_context_id: id,
                allow_on_headers_stop_iteration: plugin.allow_on_headers_stop_iteration,
                tick_period_ms: 0,
                next_tick: None,
                status_code: 0,
                status_message: Vec::new(),
                pending_done: false,
            });
            state.root_contexts.insert(id, state.plugins.len() - 1);
            state.plugins.len() - 1
        };
        let reject = |sim: &Sim, reason: String| {
            let logs = sim.store.data().logs.clone();
            Error::ConfigRejected(Rejection {
                root_id: plugin.root_id.clone(),
                reason,
                logs,
            })
        };
        self.store.data_mut().temp_plugin = Some(idx);
        let created = match self.exports.on_context_create.clone() {
            Some(func) => self
                .call("proxy_on_context_create", id, func, (id, 0))
                .map(|_| ()),
            None => Ok(()),
        };
        self.store.data_mut().temp_plugin = None;
        if let Err(trap) = created {
            return Err(reject(self, trap));
        }
        if let Some(func) = self.exports.on_vm_start.clone() {
            let size = self.store.data().vm_configuration.len() as u32;
            match self.call("proxy_on_vm_start", id, func, (id, size)) {
                Err(trap) => return Err(reject(self, trap)),
                Ok(0) => return Err(reject(self, "proxy_on_vm_start returned false".into())),
                Ok(_) => {}
            }
        }
        if let Some(func) = self.exports.on_configure.clone() {
            let size = plugin.configuration.len() as u32;
            self.store.data_mut().temp_plugin = Some(idx);
            let result = self.call("proxy_on_configure", id, func, (id, size));
            self.store.data_mut().temp_plugin = None;
            match result {
                Err(trap) => return Err(reject(self, trap)),
                Ok(0) => return Err(reject(self, "proxy_on_configure returned false".into())),
                Ok(_) => {}
            }
        }
        self.after_top_level();
        Ok(())
    }

    /// Calls an export as Envoy's `ContextBase` does: sets the current context, clears the
    /// effective one, refuels, records the call; a trap fails the VM and is returned as text.
    fn call<P: WasmParams + Copy + IntoNums, Rt: WasmResults + IntoValue>(
        &mut self,
        name: &'static str,
        ctx: u32,
        func: TypedFunc<P, Rt>,
        params: P,
    ) -> Result<Rt, String> {
        let saved = (self.store.data().current, self.store.data().effective);
        {
            let state = self.store.data_mut();
            state.current = ctx;
            state.effective = 0;
            if state.trace.enabled() {
                let nums = params.nums();
                state.trace.call(name, ctx, &nums.as_slice()[1..]);
            }
        }
        // Each callback gets a fresh budget; allocations it triggers share it.
        let _ = self.store.set_fuel(self.fuel);
        let result = func.call(&mut self.store, params);
        let state = self.store.data_mut();
        state.current = saved.0;
        state.effective = saved.1;
        match result {
            Ok(value) => {
                state.trace.returned(ctx, value.value());
                Ok(value)
            }
            Err(error) => {
                let message = trap_message(&error);
                state.trace.trap(ctx, &message);
                state.failed = true;
                state.after.clear();
                self.last_trap = Some((name.to_string(), message.clone()));
                Err(message)
            }
        }
    }

    fn trapped(&self) -> Outcome {
        let (callback, message) = self.last_trap.clone().unwrap_or_default();
        Outcome::Trapped { callback, message }
    }

    /// Envoy's deferred actions, then shared-queue deliveries (on the worker whose root
    /// context registered the queue).
    fn after_top_level(&mut self) {
        self.store.data_mut().stop_next_iteration = false;
        let home = self.active;
        for _round in 0..10_000 {
            self.drain_after();
            let ready = std::mem::take(&mut self.store.data_mut().queue_ready);
            if ready.is_empty() {
                break;
            }
            for (worker, context_id, token) in ready {
                self.switch_to(worker);
                if self.store.data().failed {
                    continue;
                }
                let func = self.exports.on_queue_ready.clone();
                let exists = self.store.data().root_contexts.contains_key(&context_id);
                if let (Some(func), true) = (func, exists) {
                    let _ = self.call(
                        "proxy_on_queue_ready",
                        context_id,
                        func,
                        (context_id, token),
                    );
                    self.store.data_mut().stop_next_iteration = false;
                    self.drain_after();
                }
            }
            self.switch_to(home);
        }
        self.switch_to(home);
    }

    /// Runs the active VM's deferred actions.
    fn drain_after(&mut self) {
        loop {
            let action = {
                let state = self.store.data_mut();
                if state.after.is_empty() {
                    None
                } else {
                    Some(state.after.remove(0))
                }
            };
            match action {
                Some(action) => self.run_after(action),
                None => break,
            }
        }
    }

    fn run_after(&mut self, action: After) {
        match action {
            After::LocalReply { context_id, reply } => self.send_local_reply(context_id, reply),
            After::Continue {
                context_id,
                stream_type,
            } => self.resume(context_id, stream_type),
            After::ContinueConnection { context_id } => self.continue_connection(context_id),
            After::CloseConnection {
                context_id,
                stream_type,
            } => self.close_connection_by_filter(context_id, stream_type),
            After::DeleteRoot { context_id } => {
                if let Some(plugin) = self.store.data().root_contexts.get(&context_id).copied() {
                    self.store.data_mut().plugins[plugin].next_tick = None;
                }
                if let Some(func) = self.exports.on_delete.clone() {
                    let _ = self.call("proxy_on_delete", context_id, func, context_id);
                }
            }
            After::Close {
                context_id,
                stream_type,
            } => {
                let state = self.store.data_mut();
                state
                    .trace
                    .note("stream reset", context_id, &[u64::from(stream_type)], &[]);
                if let Some(stream) = state.streams.get_mut(&context_id) {
                    stream.reset = Some("wasm_close_stream");
                    stream.ended = true;
                }
            }
        }
    }

    fn stream_mut(&mut self, ctx: u32) -> &mut StreamData {
        self.store
            .data_mut()
            .streams
            .get_mut(&ctx)
            .expect("stream exists while its handle lives")
    }

    fn ensure_created(&mut self, ctx: u32) -> Result<(), String> {
        let stream = self.stream_mut(ctx);
        if stream.created {
            return Ok(());
        }
        stream.created = true;
        let root = stream.root;
        if self.store.data().failed {
            return Ok(());
        }
        if let Some(func) = self.exports.on_context_create.clone() {
            self.call("proxy_on_context_create", ctx, func, (ctx, root))?;
        }
        Ok(())
    }

    /// Whether the stream's VM has failed: this VM after a trap, or an earlier VM that a
    /// reload replaced.
    fn vm_failed_for(&self, ctx: u32) -> bool {
        let state = self.store.data();
        state.failed
            || state
                .streams
                .get(&ctx)
                .is_some_and(|stream| stream.generation != self.generation)
    }

    /// FAIL_RELOAD: Envoy's `PluginConfig::maybeReloadHandleIfNeeded`, run as a stream is
    /// created. A failed VM is replaced once the backoff has passed since the last load; the
    /// attempt counts as a load even when the fresh VM fails to start (it then stays failed).
    fn maybe_reload(&mut self) {
        let now = self.store.data().now_ns;
        let backoff = self
            .config
            .reload_backoff
            .as_nanos()
            .min(u128::from(u64::MAX)) as u64;
        if !self.store.data().failed
            || self.config.failure_policy != FailurePolicy::FailReload
            || now.saturating_sub(self.last_load_ns) < backoff
        {
            return;
        }
        self.last_load_ns = now;
        let mut state = self.config.host_state(self.active);
        carry_over(self.store.data_mut(), &mut state);
        state.trace.note("vm reload", 0, &[], &[]);
        let (store, instance, exports) = match self.config.instantiate(state) {
            Ok(parts) => parts,
            Err(_) => return,
        };
        let old_store = std::mem::replace(&mut self.store, store);
        let old_instance = std::mem::replace(&mut self.instance, instance);
        let old_exports = std::mem::replace(&mut self.exports, exports);
        let old_next_context_id = self.next_context_id;
        let plugins = self.config.plugins.clone();
        let started = self.start_vm().and_then(|()| {
            plugins
                .iter()
                .try_for_each(|plugin| self.start_plugin(plugin))
        });
        match started {
            Ok(()) => self.generation += 1,
            Err(error) => {
                // Keep the failed VM; what is shared across VMs goes back to it.
                let mut failed = old_store;
                carry_over(self.store.data_mut(), failed.data_mut());
                failed.data_mut().trace.note(
                    "vm reload failed",
                    0,
                    &[],
                    &[error.to_string().as_bytes()],
                );
                self.store = failed;
                self.instance = old_instance;
                self.exports = old_exports;
                self.next_context_id = old_next_context_id;
            }
        }
    }

    /// Envoy's FAIL_CLOSED: 503 `wasm_fail_stream`, sent without calling the VM.
    fn fail_stream(&mut self, ctx: u32) -> Outcome {
        if self.failure_policy == FailurePolicy::FailOpen {
            return Outcome::Continue;
        }
        let stream = self.stream_mut(ctx);
        if stream.ended {
            return Outcome::NotDelivered;
        }
        stream.ended = true;
        let reply = LocalReply {
            status_code: 503,
            details: "wasm_fail_stream".into(),
            body: Vec::new(),
            headers: Vec::new(),
            grpc_status: Some(14),
        };
        stream.response_headers = local_reply_headers(&reply);
        stream.local_reply = Some(reply);
        self.store.data_mut().trace.note(
            "local reply by envoy",
            ctx,
            &[503],
            &[b"wasm_fail_stream"],
        );
        Outcome::LocalReply { status_code: 503 }
    }

    fn outcome_after(&mut self, ctx: u32, result: Result<Outcome, String>) -> Outcome {
        let outcome = match result {
            Err(_) => {
                let trapped = self.trapped();
                let _ = self.fail_stream(ctx);
                return trapped;
            }
            Ok(outcome) => outcome,
        };
        self.after_top_level();
        let Some(stream) = self.store.data().streams.get(&ctx) else {
            return outcome;
        };
        if let (Some(reply), true) = (&stream.local_reply, stream.ended) {
            return Outcome::LocalReply {
                status_code: reply.status_code,
            };
        }
        if stream.reset.is_some() {
            return Outcome::Reset;
        }
        outcome
    }

    fn headers_pause(&self, ctx: u32, result: u32) -> Option<Pause> {
        let state = self.store.data();
        let allow = state
            .streams
            .get(&ctx)
            .map(|stream| state.plugins[stream.plugin].allow_on_headers_stop_iteration)
            .unwrap_or(false);
        if state.stop_next_iteration || result > headers_status::STOP_ALL_ITERATION_AND_WATERMARK {
            return Some(Pause::StopAllIterationAndWatermark);
        }
        match result {
            headers_status::CONTINUE | headers_status::CONTINUE_AND_END_STREAM => None,
            headers_status::STOP_ITERATION if allow => Some(Pause::StopIteration),
            headers_status::STOP_ITERATION => Some(Pause::StopAllIterationAndWatermark),
            headers_status::STOP_ALL_ITERATION_AND_BUFFER => Some(Pause::StopAllIterationAndBuffer),
            _ => Some(Pause::StopAllIterationAndWatermark),
        }
    }

    fn data_pause(&self, result: u32) -> Option<Pause> {
        if self.store.data().stop_next_iteration || result > data_status::STOP_ITERATION_NO_BUFFER {
            return Some(Pause::StopIterationNoBuffer);
        }
        match result {
            data_status::CONTINUE => None,
            data_status::STOP_ITERATION_AND_BUFFER => Some(Pause::StopIterationAndBuffer),
            data_status::STOP_ITERATION_AND_WATERMARK => Some(Pause::StopIterationAndWatermark),
            _ => Some(Pause::StopIterationNoBuffer),
        }
    }

    fn trailers_pause(&self, result: u32) -> Option<Pause> {
        if self.store.data().stop_next_iteration || result != 0 {
            Some(Pause::TrailersStopIteration)
        } else {
            None
        }
    }

    fn deliver_headers(
        &mut self,
        ctx: u32,
        response: bool,
        headers: HeaderMap,
        end_of_stream: bool,
    ) -> Result<Outcome, String> {
        self.ensure_created(ctx)?;
        let n = headers.len() as u32;
        let stream = self.stream_mut(ctx);
        stream.end_of_stream = end_of_stream;
        if response {
            stream.response_headers = headers;
            stream.avail |= avail::RESPONSE_HEADERS;
            stream.response_started = true;
        } else {
            stream.request_headers = headers;
            stream.avail |= avail::REQUEST_HEADERS;
        }
        let eos = u32::from(end_of_stream);
        let result = if response {
            match (
                self.exports.on_response_headers.clone(),
                self.exports.on_response_headers_01.clone(),
            ) {
                (Some(func), _) => {
                    self.call("proxy_on_response_headers", ctx, func, (ctx, n, eos))?
                }
                (None, Some(func)) => {
                    self.call("proxy_on_response_headers", ctx, func, (ctx, n))?
                }
                (None, None) => 0,
            }
        } else {
            match (
                self.exports.on_request_headers.clone(),
                self.exports.on_request_headers_01.clone(),
            ) {
                (Some(func), _) => {
                    self.call("proxy_on_request_headers", ctx, func, (ctx, n, eos))?
                }
                (None, Some(func)) => self.call("proxy_on_request_headers", ctx, func, (ctx, n))?,
                (None, None) => 0,
            }
        };
        let pause = self.headers_pause(ctx, result);
        let stream = self.stream_mut(ctx);
        let bit = if response {
            avail::RESPONSE_HEADERS
        } else {
            avail::REQUEST_HEADERS
        };
        match pause {
            None => {
                stream.avail &= !bit;
                if response {
                    stream.response_headers_sent = true;
                }
                Ok(Outcome::Continue)
            }
            Some(Pause::StopIteration) => Ok(Outcome::Paused(Pause::StopIteration)),
            Some(pause) => {
                if response {
                    stream.response_paused = true;
                } else {
                    stream.request_paused = true;
                }
                Ok(Outcome::Paused(pause))
            }
        }
    }

    fn deliver_body(
        &mut self,
        ctx: u32,
        response: bool,
        chunk: Vec<u8>,
        end_of_stream: bool,
    ) -> Result<Outcome, String> {
        let limit = self.buffer_limit;
        let stream = self.stream_mut(ctx);
        let (body, buffering) = if response {
            (&mut stream.response_body, stream.response_buffering)
        } else {
            (&mut stream.request_body, stream.request_buffering)
        };
        if buffering {
            body.extend_from_slice(&chunk);
            if body.len() > limit {
                // Envoy answers itself when a buffered body outgrows its limit.
                let (code, details): (u32, &[u8]) = if response {
                    (500, b"response_payload_too_large")
                } else {
                    (413, b"request_payload_too_large")
                };
                let reply = LocalReply {
                    status_code: code,
                    details: String::from_utf8_lossy(details).into_owned(),
                    body: if response {
                        b"Internal Server Error".to_vec()
                    } else {
                        b"Payload Too Large".to_vec()
                    },
                    headers: Vec::new(),
                    grpc_status: None,
                };
                self.store.data_mut().trace.note(
                    "local reply by envoy",
                    ctx,
                    &[u64::from(code)],
                    &[details],
                );
                if response {
                    let stream = self.stream_mut(ctx);
                    stream.response_headers = local_reply_headers(&reply);
                    stream.downstream_body = reply.body.clone();
                    stream.local_reply = Some(reply);
                    stream.ended = true;
                } else {
                    self.send_local_reply(ctx, reply);
                }
                return Ok(Outcome::LocalReply { status_code: code });
            }
        } else {
            *body = chunk;
        }
        let size = body.len() as u32;
        stream.end_of_stream = end_of_stream;
        stream.avail |= if response {
            avail::RESPONSE_BODY
        } else {
            avail::REQUEST_BODY
        };
        let eos = u32::from(end_of_stream);
        let func = if response {
            self.exports.on_response_body.clone()
        } else {
            self.exports.on_request_body.clone()
        };
        let name = if response {
            "proxy_on_response_body"
        } else {
            "proxy_on_request_body"
        };
        let result = match func {
            Some(func) => self.call(name, ctx, func, (ctx, size, eos))?,
            None => 0,
        };
        let pause = self.data_pause(result);
        let stream = self.stream_mut(ctx);
        let (body, held, out, buffering, bit) = if response {
            (
                &mut stream.response_body,
                &mut stream.response_held,
                &mut stream.downstream_body,
                &mut stream.response_buffering,
                avail::RESPONSE_BODY,
            )
        } else {
            (
                &mut stream.request_body,
                &mut stream.request_held,
                &mut stream.upstream_body,
                &mut stream.request_buffering,
                avail::REQUEST_BODY,
            )
        };
        *buffering = false;
        match pause {
            None => {
                out.append(held);
                out.append(body);
                stream.avail &= !bit;
                // Continuing the body also lets headers held by StopIteration go.
                if response {
                    stream.response_headers_sent = true;
                }
                Ok(Outcome::Continue)
            }
            Some(Pause::StopIterationAndBuffer) => {
                *buffering = true;
                Ok(Outcome::Paused(Pause::StopIterationAndBuffer))
            }
            Some(Pause::StopIterationAndWatermark) => {
                held.append(body);
                Ok(Outcome::Paused(Pause::StopIterationAndWatermark))
            }
            Some(pause) => {
                body.clear();
                Ok(Outcome::Paused(pause))
            }
        }
    }

    fn deliver_trailers(
        &mut self,
        ctx: u32,
        response: bool,
        trailers: HeaderMap,
    ) -> Result<Outcome, String> {
        let n = trailers.len() as u32;
        let stream = self.stream_mut(ctx);
        if response {
            stream.response_trailers = Some(trailers);
            stream.avail |= avail::RESPONSE_TRAILERS;
        } else {
            stream.request_trailers = Some(trailers);
            stream.avail |= avail::REQUEST_TRAILERS;
        }
        let func = if response {
            self.exports.on_response_trailers.clone()
        } else {
            self.exports.on_request_trailers.clone()
        };
        let name = if response {
            "proxy_on_response_trailers"
        } else {
            "proxy_on_request_trailers"
        };
        let result = match func {
            Some(func) => self.call(name, ctx, func, (ctx, n))?,
            None => 0,
        };
        let pause = self.trailers_pause(result);
        let stream = self.stream_mut(ctx);
        match pause {
            None => {
                if response {
                    stream.response_headers_sent = true;
                    stream.avail &= !avail::RESPONSE_TRAILERS;
                    let body = std::mem::take(&mut stream.response_body);
                    stream.downstream_body.append(&mut stream.response_held);
                    stream.downstream_body.extend(body);
                    stream.response_buffering = false;
                } else {
                    stream.avail &= !avail::REQUEST_TRAILERS;
                    let body = std::mem::take(&mut stream.request_body);
                    stream.upstream_body.append(&mut stream.request_held);
                    stream.upstream_body.extend(body);
                    stream.request_buffering = false;
                }
                Ok(Outcome::Continue)
            }
            Some(pause) => {
                if response {
                    stream.response_paused = true;
                } else {
                    stream.request_paused = true;
                }
                Ok(Outcome::Paused(pause))
            }
        }
    }

    /// Sends an event for a stream through the filter, as Envoy's filter manager does.
    fn send(&mut self, ctx: u32, response: bool, event: Event) -> Outcome {
        if self
            .store
            .data()
            .streams
            .get(&ctx)
            .is_none_or(|stream| stream.ended)
        {
            return Outcome::NotDelivered;
        }
        if self.vm_failed_for(ctx) {
            return self.fail_stream(ctx);
        }
        let paused = {
            let stream = self.stream_mut(ctx);
            if response {
                stream.response_paused
            } else {
                stream.request_paused
            }
        };
        if paused && !matches!(event, Event::Headers(..)) {
            let stream = self.stream_mut(ctx);
            let queue = if response {
                &mut stream.response_queue
            } else {
                &mut stream.request_queue
            };
            queue.push(match event {
                Event::Body(body, eos) => Queued::Body(body, eos),
                Event::Trailers(trailers) => Queued::Trailers(trailers),
                Event::Headers(..) => unreachable!("headers are never queued"),
            });
            return Outcome::Paused(Pause::Held);
        }
        let result = match event {
            Event::Headers(headers, eos) => self.deliver_headers(ctx, response, headers, eos),
            Event::Body(body, eos) => self.deliver_body(ctx, response, body, eos),
            Event::Trailers(trailers) => self.deliver_trailers(ctx, response, trailers),
        };
        self.outcome_after(ctx, result)
    }

    /// `proxy_continue_stream` after the callback: Envoy forgets the request maps (for
    /// either direction, as its `Context::continueStream` does), then resumes iteration and
    /// delivers what it held.
    fn resume(&mut self, ctx: u32, stream_type: u32) {
        let response = stream_type == 1;
        let Some(stream) = self.store.data_mut().streams.get_mut(&ctx) else {
            return;
        };
        stream.avail &= !(avail::REQUEST_HEADERS | avail::REQUEST_BODY | avail::REQUEST_TRAILERS);
        if stream.ended {
            return;
        }
        let was_paused = if response {
            stream.response_paused
        } else {
            stream.request_paused
        };
        if response {
            stream.response_paused = false;
            stream.response_headers_sent = true;
            stream.avail &= !avail::RESPONSE_HEADERS;
            let body = std::mem::take(&mut stream.response_body);
            stream.downstream_body.append(&mut stream.response_held);
            stream.downstream_body.extend(body);
            stream.response_buffering = false;
        } else {
            stream.request_paused = false;
            let body = std::mem::take(&mut stream.request_body);
            stream.upstream_body.append(&mut stream.request_held);
            stream.upstream_body.extend(body);
            stream.request_buffering = false;
        }
        self.store.data_mut().trace.note(
            if response {
                "response continued"
            } else {
                "request continued"
            },
            ctx,
            &[],
            &[],
        );
        if !was_paused {
            return;
        }
        // Deliver held events: consecutive body chunks coalesce, as Envoy's buffer does.
        loop {
            let stream = self.stream_mut(ctx);
            let queue = if response {
                &mut stream.response_queue
            } else {
                &mut stream.request_queue
            };
            if queue.is_empty() {
                break;
            }
            let event = match queue.remove(0) {
                Queued::Body(mut body, mut eos) => {
                    while let Some(Queued::Body(more, more_eos)) = queue.first() {
                        body.extend_from_slice(more);
                        eos = *more_eos;
                        queue.remove(0);
                    }
                    Event::Body(body, eos)
                }
                Queued::Trailers(trailers) => Event::Trailers(trailers),
            };
            let result = match event {
                Event::Body(body, eos) => self.deliver_body(ctx, response, body, eos),
                Event::Trailers(trailers) => self.deliver_trailers(ctx, response, trailers),
                Event::Headers(..) => unreachable!("headers are never queued"),
            };
            match result {
                Err(_) => {
                    let _ = self.fail_stream(ctx);
                    break;
                }
                Ok(Outcome::Continue) => {}
                Ok(_) => break,
            }
        }
    }

    /// Envoy's `DownstreamFilterManager::sendLocalReply`, run after the callback that asked
    /// for it: before any response it goes through the filter chain (the filter's own response
    /// callbacks see it); once the response started but its headers have not left (the filter
    /// stopped them, or this is the response-headers callback itself) it replaces the response
    /// and goes directly to the codec, bypassing the filters; after the headers left, all Envoy
    /// can do is reset the stream.
    fn send_local_reply(&mut self, ctx: u32, reply: LocalReply) {
        let Some(stream) = self.store.data_mut().streams.get_mut(&ctx) else {
            return;
        };
        if stream.ended {
            self.store.data_mut().trace.note(
                "local reply ignored",
                ctx,
                &[u64::from(reply.status_code)],
                &[],
            );
            return;
        }
        if stream.response_headers_sent {
            stream.reset = Some("local_reply_after_response_headers_sent");
            stream.ended = true;
            self.store.data_mut().trace.note(
                "stream reset: local reply after response headers were sent",
                ctx,
                &[u64::from(reply.status_code)],
                &[reply.details.as_bytes()],
            );
            return;
        }
        let headers = local_reply_headers(&reply);
        let body = reply.body.clone();
        let through_filter = !stream.response_started;
        stream.local_reply = Some(reply.clone());
        stream.request_paused = false;
        stream.request_queue.clear();
        self.store.data_mut().trace.note(
            if through_filter {
                "local reply"
            } else {
                "local reply directly to the codec"
            },
            ctx,
            &[u64::from(reply.status_code)],
            &[reply.details.as_bytes()],
        );
        if !through_filter || self.store.data().failed {
            let stream = self.stream_mut(ctx);
            stream.response_headers = headers;
            stream.response_trailers = None;
            stream.downstream_body = body;
            stream.response_body.clear();
            stream.response_held.clear();
            stream.response_queue.clear();
            stream.response_headers_sent = true;
            stream.ended = true;
            return;
        }
        let end_of_stream = body.is_empty();
        let result = self.deliver_headers(ctx, true, headers, end_of_stream);
        // A local reply the filter asks for while its response callbacks see this one runs
        // when that callback returns (Envoy's deferred action), as a direct reply.
        if self.nested_local_reply(ctx) {
            return;
        }
        if result.is_ok() && !end_of_stream {
            let paused = self.stream_mut(ctx).response_paused;
            if paused {
                self.stream_mut(ctx)
                    .response_queue
                    .push(Queued::Body(body, true));
            } else {
                let _ = self.deliver_body(ctx, true, body, true);
                self.nested_local_reply(ctx);
            }
        }
        let stream = self.stream_mut(ctx);
        stream.ended = true;
    }

    /// Runs a local reply the filter requested during a callback of a local reply at once;
    /// true if there was one.
    fn nested_local_reply(&mut self, ctx: u32) -> bool {
        let state = self.store.data_mut();
        let Some(idx) = state.after.iter().position(
            |action| matches!(action, After::LocalReply { context_id, .. } if *context_id == ctx),
        ) else {
            return false;
        };
        let After::LocalReply { reply, .. } = state.after.remove(idx) else {
            unreachable!("the position matched a local reply")
        };
        self.send_local_reply(ctx, reply);
        true
    }

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
        let id = self.next_context_id;
        self.next_context_id += 1;
        self.store.data_mut().streams.insert(
            id,
            StreamData {
                generation,
                plugin,
                root,
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
        &self.store.data().trace
    }

    /// Renders the trace as text.
    pub fn render_trace(&self) -> String {
        self.store.data().trace.render()
    }

    /// Forgets the trace and the logs recorded so far.
    pub fn clear_trace(&mut self) {
        let state = self.store.data_mut();
        state.trace.clear();
        state.logs.clear();
    }

    /// Turns tracing on or off.
    pub fn set_tracing(&mut self, enabled: bool) {
        self.store.data_mut().trace.set_enabled(enabled);
    }

    /// Every log line the guest wrote in this VM.
    pub fn logs(&self) -> &[LogEntry] {
        &self.store.data().logs
    }

    /// A metric's value by the name the guest defined.
    pub fn metric(&self, name: &str) -> Option<MetricValue> {
        self.store.data().metric_values.get(name).copied()
    }

    /// A shared-data entry: value and CAS.
    pub fn shared_data(&self, key: &[u8]) -> Option<(Vec<u8>, u32)> {
        self.store.data().shared_data.get(key).cloned()
    }

    /// Sets a shared-data entry as another VM would (new CAS).
    pub fn set_shared_data(&mut self, key: &[u8], value: &[u8]) {
        let state = self.store.data_mut();
        state.cas = state.cas.wrapping_add(1).max(1);
        let cas = state.cas;
        state
            .shared_data
            .insert(key.to_vec(), (value.to_vec(), cas));
    }

    /// Enqueues an item on a shared queue registered under this VM id, as another VM would;
    /// `proxy_on_queue_ready` runs at once.
    pub fn enqueue(&mut self, queue_name: &str, item: &[u8]) -> Result<Outcome, Status> {
        let state = self.store.data_mut();
        let vm_id = state.vm_id.clone();
        let Some((token, queue)) = state
            .queues
            .iter_mut()
            .find(|(_, queue)| queue.vm_id == vm_id && queue.name == queue_name)
        else {
            return Err(Status::NotFound);
        };
        queue.items.push_back(item.to_vec());
        let ready = (queue.worker, queue.context_id, *token);
        state.queue_ready.push(ready);
        Ok(self.top_level_outcome())
    }

    /// Items waiting in a shared queue.
    pub fn queue_items(&self, queue_name: &str) -> Vec<Vec<u8>> {
        self.store
            .data()
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

    /// HTTP callouts of the active worker's VM waiting for an answer, by token.
    pub fn http_callouts(&self) -> Vec<HttpCallout> {
        self.store.data().http_callouts.values().cloned().collect()
    }

    /// gRPC calls and streams in flight on the active worker's VM, by token.
    pub fn grpc_callouts(&self) -> Vec<GrpcCallout> {
        self.store.data().grpc_callouts.values().cloned().collect()
    }

    /// Answers an HTTP callout: `proxy_on_http_call_response` runs on the calling root context
    /// with the response's header count, body size and trailer count.
    pub fn respond_http_call(
        &mut self,
        token: u32,
        headers: &[(&str, &str)],
        body: &[u8],
        trailers: &[(&str, &str)],
    ) -> Outcome {
        let response = HttpResponseData {
            headers: HeaderMap::from_pairs(headers.iter().copied()),
            body: body.to_vec(),
            trailers: (!trailers.is_empty())
                .then(|| HeaderMap::from_pairs(trailers.iter().copied())),
        };
        self.deliver_http_response(token, Some(response))
    }

    /// Fails an HTTP callout (a reset): `proxy_on_http_call_response(…, 0, 0, 0)` and
    /// `proxy_get_status` gives BROKEN_CONNECTION "reset" during it.
    pub fn fail_http_call(&mut self, token: u32) -> Outcome {
        self.deliver_http_response(token, None)
    }

    fn deliver_http_response(&mut self, token: u32, response: Option<HttpResponseData>) -> Outcome {
        let Some(callout) = self.store.data_mut().http_callouts.remove(&token) else {
            return Outcome::NotDelivered;
        };
        let ctx = callout.context_id;
        if self.store.data().failed {
            return Outcome::NotDelivered;
        }
        let plugin = self.store.data().root_contexts.get(&ctx).copied();
        let (headers, body, trailers) = match &response {
            Some(response) => (
                response.headers.len() as u32,
                response.body.len() as u32,
                response.trailers.as_ref().map_or(0, HeaderMap::len) as u32,
            ),
            None => {
                if let Some(plugin) = plugin {
                    let plugin = &mut self.store.data_mut().plugins[plugin];
                    plugin.status_code = Status::BrokenConnection as u32;
                    plugin.status_message = b"reset".to_vec();
                }
                (0, 0, 0)
            }
        };
        self.store.data_mut().http_call_response = response;
        let result = match self.exports.on_http_call_response.clone() {
            Some(func) => self.call(
                "proxy_on_http_call_response",
                ctx,
                func,
                (ctx, token, headers, body, trailers),
            ),
            None => Ok(()),
        };
        let state = self.store.data_mut();
        state.http_call_response = None;
        if let Some(plugin) = plugin {
            state.plugins[plugin].status_message.clear();
        }
        if result.is_err() {
            return self.trapped();
        }
        self.top_level_outcome()
    }

    /// Answers a gRPC call successfully: `proxy_on_grpc_receive` with the message.
    pub fn respond_grpc_call(&mut self, token: u32, message: &[u8]) -> Outcome {
        let Some(callout) = self.store.data_mut().grpc_callouts.remove(&token) else {
            return Outcome::NotDelivered;
        };
        let ctx = callout.context_id;
        self.receive_grpc_message(ctx, token, message)
    }

    /// `proxy_on_grpc_receive` with `message` readable as the gRPC receive buffer.
    fn receive_grpc_message(&mut self, ctx: u32, token: u32, message: &[u8]) -> Outcome {
        self.store.data_mut().grpc_receive_buffer = Some(message.to_vec());
        let result = match self.exports.on_grpc_receive.clone() {
            Some(func) => self.call(
                "proxy_on_grpc_receive",
                ctx,
                func,
                (ctx, token, message.len() as u32),
            ),
            None => Ok(()),
        };
        self.store.data_mut().grpc_receive_buffer = None;
        if result.is_err() {
            return self.trapped();
        }
        self.top_level_outcome()
    }

    /// Closes a gRPC call or stream from the remote side: trailing metadata (if any), then
    /// `proxy_on_grpc_close` with the status; `proxy_get_status` gives (status, message) during it.
    pub fn close_grpc(
        &mut self,
        token: u32,
        trailing_metadata: &[(&str, &str)],
        status: u32,
        message: &str,
    ) -> Outcome {
        let Some(callout) = self.store.data().grpc_callouts.get(&token).cloned() else {
            return Outcome::NotDelivered;
        };
        if !trailing_metadata.is_empty() {
            let ctx = callout.context_id;
            let map = HeaderMap::from_pairs(trailing_metadata.iter().copied());
            let n = map.len() as u32;
            self.store.data_mut().grpc_trailing_metadata = Some(map);
            let result = match self.exports.on_grpc_receive_trailing_metadata.clone() {
                Some(func) => self.call(
                    "proxy_on_grpc_receive_trailing_metadata",
                    ctx,
                    func,
                    (ctx, token, n),
                ),
                None => Ok(()),
            };
            self.store.data_mut().grpc_trailing_metadata = None;
            if result.is_err() {
                return self.trapped();
            }
        }
        if !callout.is_stream || callout.local_closed {
            self.store.data_mut().grpc_callouts.remove(&token);
        }
        let ctx = callout.context_id;
        let plugin = self.store.data().root_contexts.get(&ctx).copied();
        if let Some(plugin) = plugin {
            let plugin = &mut self.store.data_mut().plugins[plugin];
            plugin.status_code = status;
            plugin.status_message = message.as_bytes().to_vec();
        }
        let result = match self.exports.on_grpc_close.clone() {
            Some(func) => self.call("proxy_on_grpc_close", ctx, func, (ctx, token, status)),
            None => Ok(()),
        };
        if let Some(plugin) = plugin {
            self.store.data_mut().plugins[plugin].status_message.clear();
        }
        if result.is_err() {
            return self.trapped();
        }
        self.top_level_outcome()
    }

    /// Sends a message on a gRPC stream from the remote side (`proxy_on_grpc_receive`), with
    /// optional initial metadata first.
    pub fn grpc_stream_message(
        &mut self,
        token: u32,
        initial_metadata: &[(&str, &str)],
        message: &[u8],
    ) -> Outcome {
        let Some(callout) = self.store.data().grpc_callouts.get(&token).cloned() else {
            return Outcome::NotDelivered;
        };
        let ctx = callout.context_id;
        if !initial_metadata.is_empty() {
            let map = HeaderMap::from_pairs(initial_metadata.iter().copied());
            let n = map.len() as u32;
            self.store.data_mut().grpc_initial_metadata = Some(map);
            let result = match self.exports.on_grpc_receive_initial_metadata.clone() {
                Some(func) => self.call(
                    "proxy_on_grpc_receive_initial_metadata",
                    ctx,
                    func,
                    (ctx, token, n),
                ),
                None => Ok(()),
            };
            self.store.data_mut().grpc_initial_metadata = None;
            if result.is_err() {
                return self.trapped();
            }
        }
        self.receive_grpc_message(ctx, token, message)
    }

    /// Calls `proxy_on_foreign_function(root, function_id, size)` with this call data
    /// (buffer 8), as an Envoy extension would.
    pub fn call_on_foreign_function(
        &mut self,
        root_id: &str,
        function_id: u32,
        data: &[u8],
    ) -> Result<Outcome, Error> {
        let ctx = self.root_context_id(root_id)?;
        self.store.data_mut().call_data = data.to_vec();
        let result = match self.exports.on_foreign_function.clone() {
            Some(func) => self.call(
                "proxy_on_foreign_function",
                ctx,
                func,
                (ctx, function_id, data.len() as u32),
            ),
            None => Ok(()),
        };
        if result.is_err() {
            return Ok(self.trapped());
        }
        Ok(self.top_level_outcome())
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

    /// Moves the virtual clock forward, firing ticks and callout timeouts in time order
    /// (a timed-out HTTP callout gets Envoy's 504 "upstream request timeout" response).
    pub fn advance(&mut self, duration: Duration) -> Outcome {
        let target = self
            .store
            .data()
            .now_ns
            .saturating_add(duration.as_nanos().min(u128::from(u64::MAX)) as u64);
        let home = self.active;
        let mut outcome = Outcome::Continue;
        // Events in time order; at the same instant ticks before timeouts, then by worker.
        while let Some((at, is_timeout, worker, id)) = self.next_timer() {
            if at > target {
                break;
            }
            self.switch_to(worker);
            self.store.data_mut().now_ns = at;
            let result = if is_timeout {
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
        state.now_ns = state.now_ns.max(target);
        outcome
    }

    /// The earliest tick (of a VM that has not failed) or callout timeout over all workers:
    /// (time, whether a timeout, worker, plugin index or callout token).
    fn next_timer(&self) -> Option<(u64, bool, usize, u32)> {
        (0..self.parked.len())
            .flat_map(|worker| {
                let state = self.state_of(worker);
                let ticks = state
                    .plugins
                    .iter()
                    .enumerate()
                    .filter(|_| !state.failed)
                    .filter_map(move |(idx, plugin)| {
                        plugin.next_tick.map(|at| (at, false, worker, idx as u32))
                    });
                let timeouts = state.http_callouts.values().filter_map(move |callout| {
                    callout.deadline.map(|at| (at, true, worker, callout.token))
                });
                ticks.chain(timeouts)
            })
            .min()
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
        Duration::from_nanos(self.store.data().now_ns)
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

    /// Shuts the VM down as Envoy does: `proxy_on_done` on each root context; one that
    /// returns false stays pending until it calls `proxy_done`; then `proxy_on_delete`.
    /// Returns the root_ids still pending. With several workers, every worker's VM shuts
    /// down (a root_id pending on two workers is listed twice).
    pub fn shutdown(&mut self) -> Vec<String> {
        let home = self.active;
        let mut pending = Vec::new();
        for worker in 0..self.parked.len() {
            self.switch_to(worker);
            pending.extend(self.shutdown_active());
        }
        self.switch_to(home);
        pending
    }

    fn shutdown_active(&mut self) -> Vec<String> {
        let roots: Vec<(usize, u32)> = self
            .store
            .data()
            .plugins
            .iter()
            .enumerate()
            .map(|(idx, plugin)| (idx, plugin.root_context_id))
            .collect();
        let mut pending = Vec::new();
        for (idx, ctx) in roots {
            if self.store.data().failed {
                break;
            }
            // The root context joins `pending_done_` only after `proxy_on_done` returned
            // false (cpp-host `WasmBase::startShutdown`), so `proxy_done` from inside it is
            // NOT_FOUND.
            let done = match self.exports.on_done.clone() {
                Some(func) => self.call("proxy_on_done", ctx, func, ctx).unwrap_or(1),
                None => 1,
            };
            if done == 0 && !self.store.data().failed {
                self.store.data_mut().plugins[idx].pending_done = true;
                pending.push(self.store.data().plugins[idx].root_id.clone());
                continue;
            }
            self.store.data_mut().plugins[idx].next_tick = None;
            if let Some(func) = self.exports.on_delete.clone() {
                let _ = self.call("proxy_on_delete", ctx, func, ctx);
            }
        }
        self.after_top_level();
        pending
    }
}

enum Event {
    Headers(HeaderMap, bool),
    Body(Vec<u8>, bool),
    Trailers(HeaderMap),
}

/// Moves what outlives one VM (process-wide in Envoy, or what the test inspects) from a
/// failed VM's state to its replacement: the clock, shared data and queues (per vm_id),
/// metric values (Envoy's stats), logs, the trace, and the streams of the failed VM.
fn carry_over(from: &mut HostState, to: &mut HostState) {
    move_shared(from, to);
    to.streams = std::mem::take(&mut from.streams);
    to.connections = std::mem::take(&mut from.connections);
}

/// Moves what all worker VMs of one Envoy share (or what the test inspects in one place)
/// to the VM that becomes active: the clock, shared data and queues (per vm_id), queue
/// deliveries due, metric values (Envoy's stats), logs and the trace.
fn move_shared(from: &mut HostState, to: &mut HostState) {
    to.now_ns = from.now_ns;
    to.queue_ready = std::mem::take(&mut from.queue_ready);
    to.shared_data = std::mem::take(&mut from.shared_data);
    to.cas = from.cas;
    to.queues = std::mem::take(&mut from.queues);
    to.next_queue_token = from.next_queue_token;
    to.metric_values = std::mem::take(&mut from.metric_values);
    to.logs = std::mem::take(&mut from.logs);
    to.trace = std::mem::take(&mut from.trace);
    to.random_state = from.random_state;
}

/// The headers Envoy's `sendLocalReply` builds.
fn local_reply_headers(reply: &LocalReply) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.add(b":status", reply.status_code.to_string().as_bytes());
    if !reply.body.is_empty() {
        headers.add(b"content-length", reply.body.len().to_string().as_bytes());
        headers.add(b"content-type", b"text/plain");
    }
    for (key, value) in &reply.headers {
        headers.add(key.as_bytes(), value.as_bytes());
    }
    headers
}

/// An HTTP stream through one plugin's filter.
pub struct Stream<'a> {
    sim: &'a mut Sim,
    id: u32,
    /// The worker whose VM runs the stream.
    worker: usize,
    finished: Option<StreamData>,
}

impl std::fmt::Debug for Stream<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Stream<'_> {
    /// The stream's context id.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The worker whose VM runs the stream.
    pub fn worker(&self) -> usize {
        self.worker
    }

    /// The simulation, e.g. to answer a callout while the stream is paused.
    pub fn sim(&mut self) -> &mut Sim {
        self.sim
    }

    fn data(&self) -> &StreamData {
        match &self.finished {
            Some(data) => data,
            None => self
                .sim
                .state_of(self.worker)
                .streams
                .get(&self.id)
                .expect("stream exists while its handle lives"),
        }
    }

    fn send(&mut self, response: bool, event: Event) -> Outcome {
        if self.finished.is_some() {
            return Outcome::NotDelivered;
        }
        self.sim.switch_to(self.worker);
        self.sim.send(self.id, response, event)
    }

    /// Request headers from downstream.
    pub fn send_request_headers(
        &mut self,
        headers: &[(&str, &str)],
        end_of_stream: bool,
    ) -> Outcome {
        self.send(
            false,
            Event::Headers(
                HeaderMap::from_pairs(headers.iter().copied()),
                end_of_stream,
            ),
        )
    }

    /// A request body chunk.
    pub fn send_request_body(&mut self, body: &[u8], end_of_stream: bool) -> Outcome {
        self.send(false, Event::Body(body.to_vec(), end_of_stream))
    }

    /// Request trailers.
    pub fn send_request_trailers(&mut self, trailers: &[(&str, &str)]) -> Outcome {
        self.send(
            false,
            Event::Trailers(HeaderMap::from_pairs(trailers.iter().copied())),
        )
    }

    /// Response headers from upstream.
    pub fn send_response_headers(
        &mut self,
        headers: &[(&str, &str)],
        end_of_stream: bool,
    ) -> Outcome {
        self.send(
            true,
            Event::Headers(
                HeaderMap::from_pairs(headers.iter().copied()),
                end_of_stream,
            ),
        )
    }

    /// A response body chunk.
    pub fn send_response_body(&mut self, body: &[u8], end_of_stream: bool) -> Outcome {
        self.send(true, Event::Body(body.to_vec(), end_of_stream))
    }

    /// Response trailers.
    pub fn send_response_trailers(&mut self, trailers: &[(&str, &str)]) -> Outcome {
        self.send(
            true,
            Event::Trailers(HeaderMap::from_pairs(trailers.iter().copied())),
        )
    }

    /// Ends the stream as Envoy does: `proxy_on_log` (access-log phase), then
    /// `proxy_on_done` and `proxy_on_delete`. The stream's data stays inspectable.
    pub fn complete(&mut self) -> Outcome {
        if self.finished.is_some() {
            return Outcome::NotDelivered;
        }
        let ctx = self.id;
        let sim = &mut *self.sim;
        sim.switch_to(self.worker);
        let mut outcome = Outcome::Continue;
        if !sim.vm_failed_for(ctx) {
            let result = (|| -> Result<(), String> {
                sim.ensure_created(ctx)?;
                if sim.store.data().failed {
                    return Ok(());
                }
                sim.stream_mut(ctx).access_log_phase = true;
                if let Some(func) = sim.exports.on_log.clone() {
                    sim.call("proxy_on_log", ctx, func, ctx)?;
                }
                sim.stream_mut(ctx).access_log_phase = false;
                if let Some(func) = sim.exports.on_done.clone() {
                    sim.call("proxy_on_done", ctx, func, ctx)?;
                }
                if let Some(func) = sim.exports.on_delete.clone() {
                    sim.call("proxy_on_delete", ctx, func, ctx)?;
                }
                Ok(())
            })();
            if result.is_err() {
                outcome = sim.trapped();
            } else {
                sim.after_top_level();
            }
        }
        let data = sim.store.data_mut().streams.remove(&ctx);
        self.finished = data;
        outcome
    }

    /// The request headers as the filter left them (what goes upstream).
    pub fn request_headers(&self) -> &HeaderMap {
        &self.data().request_headers
    }

    /// The request trailers, if any.
    pub fn request_trailers(&self) -> Option<&HeaderMap> {
        self.data().request_trailers.as_ref()
    }

    /// The response headers as the filter left them (what goes downstream), including a
    /// local reply's.
    pub fn response_headers(&self) -> &HeaderMap {
        &self.data().response_headers
    }

    /// The response trailers, if any.
    pub fn response_trailers(&self) -> Option<&HeaderMap> {
        self.data().response_trailers.as_ref()
    }

    /// The request body that passed the filter (upstream).
    pub fn upstream_body(&self) -> &[u8] {
        &self.data().upstream_body
    }

    /// The response body that passed the filter (downstream).
    pub fn downstream_body(&self) -> &[u8] {
        &self.data().downstream_body
    }

    /// The body buffered in the filter right now (request side).
    pub fn buffered_request_body(&self) -> &[u8] {
        &self.data().request_body
    }

    /// The local reply sent on this stream, if any.
    pub fn local_reply(&self) -> Option<&LocalReply> {
        self.data().local_reply.as_ref()
    }

    /// Whether the filter reset the stream.
    pub fn was_reset(&self) -> bool {
        self.data().reset.is_some()
    }

    /// Sets a property only this stream sees.
    pub fn set_property(&mut self, path: &[&str], value: impl Into<PropertyValue>) {
        if self.finished.is_none() {
            let key = path
                .iter()
                .map(|segment| segment.as_bytes().to_vec())
                .collect();
            let value = value.into();
            self.sim.switch_to(self.worker);
            if let Some(stream) = self.sim.store.data_mut().streams.get_mut(&self.id) {
                stream.properties.insert(key, value);
            }
        }
    }

    /// The value the filter stored with `proxy_set_property`.
    pub fn filter_state(&self, key: &str) -> Option<&[u8]> {
        self.data()
            .filter_state
            .iter()
            .find(|(name, _)| name.as_slice() == key.as_bytes())
            .map(|(_, value)| value.as_slice())
    }
}

/// Numbers of an export's parameters, for the trace.
pub(crate) trait IntoNums {
    fn nums(&self) -> NumList;
}

/// A short list of numbers.
pub(crate) struct NumList {
    values: [u64; 5],
    len: usize,
}

impl NumList {
    fn as_slice(&self) -> &[u64] {
        &self.values[..self.len]
    }
}

impl IntoNums for u32 {
    fn nums(&self) -> NumList {
        NumList {
            values: [u64::from(*self), 0, 0, 0, 0],
            len: 1,
        }
    }
}

impl IntoNums for (u32, u32) {
    fn nums(&self) -> NumList {
        NumList {
            values: [self.0.into(), self.1.into(), 0, 0, 0],
            len: 2,
        }
    }
}

impl IntoNums for (u32, u32, u32) {
    fn nums(&self) -> NumList {
        NumList {
            values: [self.0.into(), self.1.into(), self.2.into(), 0, 0],
            len: 3,
        }
    }
}

impl IntoNums for (u32, u32, u32, u32, u32) {
    fn nums(&self) -> NumList {
        NumList {
            values: [
                self.0.into(),
                self.1.into(),
                self.2.into(),
                self.3.into(),
                self.4.into(),
            ],
            len: 5,
        }
    }
}

/// An export's result, for the trace.
pub(crate) trait IntoValue: Sized {
    fn value(&self) -> Option<u64>;
}

impl IntoValue for u32 {
    fn value(&self) -> Option<u64> {
        Some(u64::from(*self))
    }
}

impl IntoValue for () {
    fn value(&self) -> Option<u64> {
        None
    }
}
