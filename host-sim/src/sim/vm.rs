//! One VM's lifecycle: start, each plugin's root context, calls into the guest as Envoy's
//! `ContextBase` makes them, and the deferred actions after each call.

use super::*;

impl Sim {
    pub(super) fn start_vm(&mut self) -> Result<(), Error> {
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

    pub(super) fn start_plugin(&mut self, plugin: &PluginConfig) -> Result<(), Error> {
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
    pub(super) fn call<P: WasmParams + Copy + IntoNums, Rt: WasmResults + IntoValue>(
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

    pub(super) fn trapped(&self) -> Outcome {
        let (callback, message) = self.last_trap.clone().unwrap_or_default();
        Outcome::Trapped { callback, message }
    }

    /// Envoy's deferred actions, then shared-queue deliveries (on the worker whose root
    /// context registered the queue).
    pub(super) fn after_top_level(&mut self) {
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
    pub(super) fn drain_after(&mut self) {
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

    pub(super) fn run_after(&mut self, action: After) {
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

pub(super) fn trap_message(error: &wasmtime::Error) -> String {
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
