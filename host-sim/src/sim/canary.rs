//! The configuration canary: each plugin's configuration is tried in a VM of its own
//! before the workers start (Envoy's `createWasm` on the main thread), its result cached per
//! process; and the whole-process model, where the canaries and the main thread's VM share
//! the world with the workers.

use super::*;

impl SimBuilder {
    /// Starts the VM, runs the canary for each plugin, then starts and configures each
    /// plugin's root context, in order.
    pub fn build(self) -> Result<Sim, Error> {
        if self.whole_process {
            return self.build_whole_process();
        }
        if self.canary {
            self.run_canaries()?;
        }
        let mut sim = self.start(&self.plugins)?;
        for worker in 1..self.workers {
            sim.add_worker(worker)?;
        }
        sim.switch_to(0);
        Ok(sim)
    }

    /// Each plugin's canary in a VM of its own that shares nothing with the workers; a
    /// module remembers the results, so the canary runs once per process and configuration.
    fn run_canaries(&self) -> Result<(), Error> {
        for plugin in &self.plugins {
            let key = self.canary_key(plugin);
            let result = match self.module.canary_result(&key) {
                Some(result) => result,
                None => {
                    let result = match self.start(std::slice::from_ref(plugin)) {
                        Ok(_) => Ok(()),
                        Err(Error::ConfigRejected(rejection)) => Err(rejection),
                        Err(other) => return Err(other),
                    };
                    self.module.store_canary(key, result.clone());
                    result
                }
            };
            result.map_err(Error::ConfigRejected)?;
        }
        Ok(())
    }

    /// The canary cache's key: the plugin and the VM's configuration (not the properties,
    /// environment or clusters, which a canary could also read).
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

    /// [`SimBuilder::whole_process`]: every canary, then the main thread's VM (worker 0),
    /// then the workers, one world passed along from each VM to the next.
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
    pub(super) fn start_after(
        &self,
        plugins: &[PluginConfig],
        before: Option<Sim>,
    ) -> Result<Sim, Error> {
        let mut state = self.host_state(0);
        if let Some(mut before) = before {
            hand_over_world(before.store.data_mut(), &mut state);
        }
        self.start_with(plugins, state)
    }
}
