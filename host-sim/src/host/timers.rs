//! The tick period and the virtual clock.

use wasmtime::Linker;

use super::HostState;
use super::call::{E, OK, answer, host, wrote};
use super::memory::set_u64;
use crate::trace::FirstArg;

/// Registers this family's host functions.
pub(super) fn register(l: &mut Linker<HostState>) -> wasmtime::Result<()> {
    use FirstArg::Plain;

    host!(
        l,
        E,
        "proxy_set_tick_period_milliseconds",
        Plain,
        |c, period: u32| {
            let state = c.data_mut();
            let root = state.root_of(state.context());
            if let Some(plugin) = state.root_contexts.get(&root).copied() {
                let now = state.world.now_ns;
                let plugin = &mut state.plugins[plugin];
                plugin.tick_period_ms = period;
                plugin.next_tick = (period > 0).then(|| now + u64::from(period) * 1_000_000);
            }
            Ok(answer(OK).nums(&[period]))
        }
    );

    host!(
        l,
        E,
        "proxy_get_current_time_nanoseconds",
        Plain,
        |c, ptr: u32| {
            let now = c.data().epoch_ns + c.data().world.now_ns;
            Ok(answer(wrote(set_u64(c, ptr, now)?)).nums(&[now]))
        }
    );

    Ok(())
}
