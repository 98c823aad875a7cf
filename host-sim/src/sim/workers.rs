//! One VM per worker thread: the active one is in [`Sim`]'s fields, the others are parked;
//! the world goes with the active VM.

use super::*;

/// A worker VM that is not the one [`Sim`]'s calls act on right now.
pub(super) struct Parked {
    pub(super) store: Store<HostState>,
    pub(super) instance: Instance,
    pub(super) exports: Exports,
    pub(super) last_trap: Option<(String, String)>,
    pub(super) generation: u32,
    pub(super) last_load_ns: u64,
}

impl Sim {
    /// Puts `parked` in place of the active VM's parts and returns those.
    pub(super) fn swap_active(&mut self, parked: Parked) -> Parked {
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
    pub(super) fn switch_to(&mut self, worker: usize) {
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
    pub(super) fn add_worker(&mut self, worker: usize) -> Result<(), Error> {
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
    pub(super) fn state_of(&self, worker: usize) -> &HostState {
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

    pub(super) fn each_state(&mut self, mut change: impl FnMut(&mut HostState)) {
        change(self.store.data_mut());
        for parked in self.parked.iter_mut().flatten() {
            change(parked.store.data_mut());
        }
    }
}

/// Hands the simulation's one [`World`](crate::host::World) to the VM that becomes active;
/// `from` keeps an empty one until it is active again.
pub(super) fn hand_over_world(from: &mut HostState, to: &mut HostState) {
    to.world = std::mem::take(&mut from.world);
}
