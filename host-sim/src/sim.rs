//! A simulated Envoy worker VM: one wasmtime `Store`, several plugins (root contexts), HTTP
//! streams, a virtual clock, and callouts the test answers.

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

mod chain;
mod filter_manager;
mod handle;
mod stream;
mod tcp;

pub use chain::{Chain, Side};
pub use handle::Stream;
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
    memory_limit: usize,
    injected: HashMap<String, Status>,
    allowed: Option<Vec<String>>,
    trace: bool,
    log_level: u32,
    buffer_limit: usize,
    failure_policy: FailurePolicy,
    reload_backoff: Duration,
    workers: usize,
    canary: bool,
    whole_process: bool,
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

/// What fires on the virtual clock; at the same instant ticks come first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Tick,
    HttpTimeout,
    GrpcTimeout,
}

/// The fuel a callback gets when the test set no limit (Envoy has no instruction budget).
const NO_FUEL_LIMIT: u64 = u64::MAX;

fn trap_message(error: &wasmtime::Error) -> String {
    if let Some(wasmtime::Trap::OutOfFuel) = error.downcast_ref::<wasmtime::Trap>() {
        return "wasm trap: all fuel consumed by WebAssembly: the callback ran past the \
                test's fuel limit; Envoy has no instruction budget, so there it would never \
                return and would hang its worker thread"
            .to_string();
    }
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

    /// Opts into an instruction budget: fuel per callback (wasmtime fuel units, about one per
    /// instruction); a callback that runs out traps, and the trap message says that in Envoy,
    /// which has no instruction budget, it would hang its worker. Default: no limit, as Envoy.
    pub fn fuel(mut self, fuel: u64) -> SimBuilder {
        self.fuel = fuel;
        self
    }

    /// The cap on the guest's linear memory, in bytes. Default 1 GiB, Envoy's (proxy-wasm-cpp-host
    /// gives V8 `PROXY_WASM_HOST_MAX_WASM_MEMORY_SIZE_BYTES`): `memory.grow` past it answers -1
    /// and a module whose initial memory is larger fails to start.
    pub fn memory_limit(mut self, bytes: usize) -> SimBuilder {
        self.memory_limit = bytes;
        self
    }

    /// Fault injection: every call of the host function `name` (e.g. `proxy_http_call`)
    /// answers `status` without effect and writes nothing; the trace records
    /// `# injected <name> <STATUS>`. [`Sim::inject`] and [`Sim::clear_injection`] change it
    /// while the simulation runs.
    pub fn inject(mut self, name: &str, status: Status) -> SimBuilder {
        self.injected.insert(name.to_string(), status);
        self
    }

    /// Strict mode: the guest may call only these host functions (by import name, any
    /// module); a call to another traps with a message naming it, which fails the VM as a
    /// trap does in Envoy. Off by default.
    pub fn strict(mut self, allowed: &[&str]) -> SimBuilder {
        self.allowed = Some(allowed.iter().map(|name| name.to_string()).collect());
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

    /// Models Envoy's whole process (what `filter-sim exchange` compares with Envoy): each
    /// plugin's configuration canary runs in a VM of its own every time (no cache) and the
    /// main thread has a VM too (worker 0, before the worker threads, which are 1..=n); what
    /// they do to shared data, queues and metrics counts, as in Envoy (seen in Envoy 1.40:
    /// `on_configure` runs 2 + workers times for one plugin).
    pub fn whole_process(mut self, enabled: bool) -> SimBuilder {
        self.whole_process = enabled;
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
        if self.whole_process {
            return self.build_whole_process();
        }
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
        state.injected = self.injected.clone();
        state.allowed = self.allowed.clone();
        state.limits = crate::host::memory_limits(self.memory_limit);
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
        store.limiter(|state| &mut state.limits);
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

    fn build_whole_process(self) -> Result<Sim, Error> {
        let mut before: Option<Sim> = None;
        if self.canary {
            for plugin in &self.plugins {
                before = Some(self.start_after(std::slice::from_ref(plugin), before)?);
            }
        }
        let mut sim = self.start_after(&self.plugins, before)?;
        for worker in 1..=self.workers {
            sim.add_worker(worker)?;
        }
        sim.switch_to(1);
        Ok(sim)
    }

    /// [`SimBuilder::start`] in a VM that takes over what an earlier VM shared.
    fn start_after(&self, plugins: &[PluginConfig], before: Option<Sim>) -> Result<Sim, Error> {
        let mut state = self.host_state(0);
        if let Some(mut before) = before {
            hand_over_world(before.store.data_mut(), &mut state);
        }
        self.start_with(plugins, state)
    }

    fn start(&self, plugins: &[PluginConfig]) -> Result<Sim, Error> {
        self.start_with(plugins, self.host_state(0))
    }

    fn start_with(&self, plugins: &[PluginConfig], state: HostState) -> Result<Sim, Error> {
        let (store, instance, exports) = self.instantiate(state)?;
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
            fuel: NO_FUEL_LIMIT,
            memory_limit: crate::host::MAX_MEMORY_BYTES,
            injected: HashMap::new(),
            allowed: None,
            trace: true,
            log_level: 2,
            buffer_limit: 1024 * 1024,
            failure_policy: FailurePolicy::FailClosed,
            reload_backoff: Duration::from_secs(1),
            workers: 1,
            canary: true,
            whole_process: false,
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
        hand_over_world(self.store.data_mut(), next.store.data_mut());
        let previous = self.swap_active(next);
        self.parked[self.active] = Some(previous);
        self.active = worker;
        self.store.data_mut().world.trace.set_worker(worker);
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
            last_load_ns: self.store.data().world.now_ns,
        };
        hand_over_world(self.store.data_mut(), next.store.data_mut());
        let previous = self.swap_active(next);
        self.parked[self.active] = Some(previous);
        self.parked.push(None);
        self.active = worker;
        self.store.data_mut().world.trace.set_worker(worker);
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
        let mark = store.data().world.trace.mark();
        store.data_mut().restricted = Restriction::Start;
        store.data_mut().current = 0;
        let initialize = get::<(), ()>(&instance, store, "_initialize");
        let result = if let Some(initialize) = initialize {
            store.data_mut().world.trace.call("_initialize", 0, &[]);
            let mut result = initialize.call(&mut *store, ());
            if result.is_ok() {
                if let Some(main) = get::<(u32, u32), u32>(&instance, store, "main") {
                    store.data_mut().world.trace.call("main", 0, &[0, 0]);
                    result = main.call(&mut *store, (0, 0)).map(|_| ());
                } else if let Some(main) = get::<(), u32>(&instance, store, "__main_void") {
                    store.data_mut().world.trace.call("__main_void", 0, &[]);
                    result = main.call(&mut *store, ()).map(|_| ());
                }
            }
            result
        } else if let Some(start) = get::<(), ()>(&instance, store, "_start") {
            store.data_mut().world.trace.call("_start", 0, &[]);
            start.call(&mut *store, ())
        } else {
            Ok(())
        };
        store.data_mut().restricted = Restriction::None;
        store.data_mut().world.trace.truncate(mark);
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
            let logs = sim.store.data().world.logs.clone();
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
            if state.world.trace.enabled() {
                let nums = params.nums();
                state.world.trace.call(name, ctx, &nums.as_slice()[1..]);
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
                state.world.trace.returned(ctx, value.value());
                Ok(value)
            }
            Err(error) => {
                let message = trap_message(&error);
                state.world.trace.trap(ctx, &message);
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
            let ready = std::mem::take(&mut self.store.data_mut().world.queue_ready);
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
                    .world
                    .trace
                    .note("stream reset", context_id, &[u64::from(stream_type)], &[]);
                if let Some(stream) = state.streams.get_mut(&context_id) {
                    stream.reset = Some("wasm_close_stream");
                    stream.ended = true;
                }
            }
        }
    }

    /// FAIL_RELOAD: Envoy's `PluginConfig::maybeReloadHandleIfNeeded`, run as a stream is
    /// created. A failed VM is replaced once the backoff has passed since the last load; the
    /// attempt counts as a load even when the fresh VM fails to start (it then stays failed).
    fn maybe_reload(&mut self) {
        let now = self.store.data().world.now_ns;
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
        state.world.trace.note("vm reload", 0, &[], &[]);
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
                failed.data_mut().world.trace.note(
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

    fn each_state(&mut self, mut change: impl FnMut(&mut HostState)) {
        change(self.store.data_mut());
        for parked in self.parked.iter_mut().flatten() {
            change(parked.store.data_mut());
        }
    }

    /// Forgets the trace and the logs recorded so far.
    pub fn clear_trace(&mut self) {
        let state = self.store.data_mut();
        state.world.trace.clear();
        state.world.logs.clear();
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

    /// HTTP callouts of the active worker's VM waiting for an answer, by token.
    pub fn http_callouts(&self) -> Vec<HttpCallout> {
        self.store.data().http_callouts.values().cloned().collect()
    }

    /// gRPC calls and streams in flight on the active worker's VM, by token.
    pub fn grpc_callouts(&self) -> Vec<GrpcCallout> {
        self.store
            .data()
            .grpc_callouts
            .values()
            .filter(|callout| !callout.remote_closed)
            .cloned()
            .collect()
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

    /// A gRPC call or stream that can still get events (not closed by the remote side).
    fn open_grpc_callout(&self, token: u32) -> Option<GrpcCallout> {
        let callout = self.store.data().grpc_callouts.get(&token)?;
        (!callout.remote_closed).then(|| callout.clone())
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
        let Some(callout) = self.open_grpc_callout(token) else {
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
        } else if let Some(open) = self.store.data_mut().grpc_callouts.get_mut(&token) {
            open.remote_closed = true;
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
        let Some(callout) = self.open_grpc_callout(token) else {
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

    /// The earliest tick (of a VM that has not failed) or callout timeout over all workers:
    /// (time, which timer, worker, plugin index or callout token).
    fn next_timer(&self) -> Option<(u64, Timer, usize, u32)> {
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

/// Moves what outlives one VM from a failed VM's state to its replacement (or back, when
/// the replacement failed to start): the world, and the streams and connections of the
/// failed VM.
fn carry_over(from: &mut HostState, to: &mut HostState) {
    hand_over_world(from, to);
    to.streams = std::mem::take(&mut from.streams);
    to.connections = std::mem::take(&mut from.connections);
}

/// Hands the simulation's one [`World`](crate::host::World) to the VM that becomes active;
/// `from` keeps an empty one until it is active again.
fn hand_over_world(from: &mut HostState, to: &mut HostState) {
    to.world = std::mem::take(&mut from.world);
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
