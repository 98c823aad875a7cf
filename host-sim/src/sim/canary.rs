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

    pub(super) fn canary_key(&self, plugin: &PluginConfig) -> [u8; 32] {
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

    pub(super) fn build_whole_process(self) -> Result<Sim, Error> {
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
