//! Metrics: define, increment, record and get.

use wasmtime::Linker;

use super::HostState;
use super::call::{BAD_ARGUMENT, E, IMA, NOT_FOUND, OK, answer, host, wrote};
use super::memory::{read, set_u32, set_u64};
use super::{Metric, MetricValue};
use crate::trace::FirstArg;

/// Registers this family's host functions.
pub(super) fn register(l: &mut Linker<HostState>) -> wasmtime::Result<()> {
    use FirstArg::Plain;

    host!(
        l,
        E,
        "proxy_define_metric",
        Plain,
        |c, kind: u32, name_ptr: u32, name_size: u32, id_ptr: u32| {
            let name = read(c, name_ptr, name_size)?
                .ok_or_else(|| answer(IMA).nums(&[kind, name_ptr, name_size]))?;
            if kind > 2 {
                return Ok(answer(BAD_ARGUMENT).nums(&[kind]).strs([name]));
            }
            let state = c.data_mut();
            let counter = match kind {
                0 => &mut state.next_counter,
                1 => &mut state.next_gauge,
                _ => &mut state.next_histogram,
            };
            *counter += 4;
            let id = *counter;
            let name_text = String::from_utf8_lossy(&name).into_owned();
            state
                .world
                .metric_values
                .entry(name_text.clone())
                .or_insert(MetricValue {
                    kind,
                    value: 0,
                    count: 0,
                });
            state.metrics.insert(
                id,
                Metric {
                    kind,
                    name: name_text,
                },
            );
            let status = wrote(set_u32(c, id_ptr, id)?);
            Ok(answer(status).nums(&[kind, id]).strs([name]))
        }
    );

    host!(
        l,
        E,
        "proxy_increment_metric",
        Plain,
        |c, id: u32, offset: i64| {
            let state = c.data_mut();
            let metric = state.metrics.get(&id).cloned();
            let status = match (id & 3, metric) {
                (0, None) | (1, None) => NOT_FOUND,
                (0, Some(metric)) => {
                    if offset > 0 {
                        let value = state.world.metric_values.entry(metric.name).or_default();
                        value.value = value.value.wrapping_add(offset as u64);
                        OK
                    } else {
                        BAD_ARGUMENT
                    }
                }
                (1, Some(metric)) => {
                    let value = state.world.metric_values.entry(metric.name).or_default();
                    value.value = value.value.wrapping_add(offset as u64);
                    OK
                }
                _ => BAD_ARGUMENT,
            };
            Ok(answer(status).nums(&[u64::from(id), offset as u64]))
        }
    );

    host!(
        l,
        E,
        "proxy_record_metric",
        Plain,
        |c, id: u32, value: u64| {
            let state = c.data_mut();
            let status = match state.metrics.get(&id).cloned() {
                None => NOT_FOUND,
                Some(metric) => {
                    let slot = state.world.metric_values.entry(metric.name).or_default();
                    match metric.kind {
                        0 => slot.value = slot.value.wrapping_add(value),
                        1 => slot.value = value,
                        _ => {
                            slot.value = value;
                            slot.count += 1;
                        }
                    }
                    OK
                }
            };
            Ok(answer(status).nums(&[u64::from(id), value]))
        }
    );

    host!(l, E, "proxy_get_metric", Plain, |c, id: u32, ptr: u32| {
        let state = c.data();
        let value = match (id & 3, state.metrics.get(&id)) {
            (0 | 1, None) => Err(NOT_FOUND),
            (0 | 1, Some(metric)) => Ok(state
                .world
                .metric_values
                .get(&metric.name)
                .map_or(0, |value| value.value)),
            _ => Err(BAD_ARGUMENT),
        };
        let status = match value {
            Err(status) => status,
            Ok(value) => wrote(set_u64(c, ptr, value)?),
        };
        Ok(answer(status).nums(&[id]))
    });

    Ok(())
}
