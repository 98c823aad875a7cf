//! [`SimBuilder`]: the settings of a simulation, and how each VM is built from them.

use super::*;

/// The fuel a callback gets when the test set no limit (Envoy has no instruction budget).
pub(super) const NO_FUEL_LIMIT: u64 = u64::MAX;

/// Builds a [`Sim`]: plugins, clusters, properties, limits.
#[derive(Clone)]
pub struct SimBuilder {
    pub(super) module: Module,
    pub(super) plugins: Vec<PluginConfig>,
    pub(super) vm_id: String,
    pub(super) vm_configuration: Vec<u8>,
    pub(super) clusters: Vec<String>,
    pub(super) properties: Vec<(Vec<Vec<u8>>, PropertyValue)>,
    pub(super) environment: Vec<(String, String)>,
    pub(super) foreign_functions: Vec<(String, Arc<ForeignFunction>)>,
    pub(super) fuel: u64,
    pub(super) memory_limit: usize,
    pub(super) injected: HashMap<String, Status>,
    pub(super) allowed: Option<Vec<String>>,
    pub(super) trace: bool,
    pub(super) log_level: u32,
    pub(super) buffer_limit: usize,
    pub(super) failure_policy: FailurePolicy,
    pub(super) reload_backoff: Duration,
    pub(super) workers: usize,
    pub(super) canary: bool,
    pub(super) whole_process: bool,
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

    /// A fresh host state for one VM, from the builder's settings.
    pub(super) fn host_state(&self, worker: usize) -> HostState {
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
    pub(super) fn instantiate(
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
        let exports = Exports::find(&instance, &mut store, self.module.abi_version());
        Ok((store, instance, exports))
    }

    pub(super) fn start(&self, plugins: &[PluginConfig]) -> Result<Sim, Error> {
        self.start_with(plugins, self.host_state(0))
    }

    pub(super) fn start_with(
        &self,
        plugins: &[PluginConfig],
        state: HostState,
    ) -> Result<Sim, Error> {
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
}
