//! `proxy_get_shared_data` and `proxy_set_shared_data`, with compare-and-swap.

use wasmtime::Linker;

use super::HostState;
use super::call::{CAS_MISMATCH, E, IMA, NOT_FOUND, OK, answer, host, read_pair, wrote};
use super::memory::{copy_out, read, set_u32};
use crate::trace::FirstArg;

/// Registers this family's host functions.
pub(super) fn register(l: &mut Linker<HostState>) -> wasmtime::Result<()> {
    use FirstArg::Plain;

    host!(
        l,
        E,
        "proxy_get_shared_data",
        Plain,
        |c, key_ptr: u32, key_size: u32, ptr_ptr: u32, size_ptr: u32, cas_ptr: u32| {
            let key = read(c, key_ptr, key_size)?
                .ok_or_else(|| answer(IMA).nums(&[key_ptr, key_size]))?;
            let Some((value, cas)) = c.data().world.shared_data.get(&key).cloned() else {
                return Ok(answer(NOT_FOUND).strs([key]));
            };
            let written = copy_out(c, &value, ptr_ptr, size_ptr)? && set_u32(c, cas_ptr, cas)?;
            Ok(answer(wrote(written)).strs([key]).result(value))
        }
    );

    host!(
        l,
        E,
        "proxy_set_shared_data",
        Plain,
        |c, key_ptr: u32, key_size: u32, value_ptr: u32, value_size: u32, cas: u32| {
            let (key, value) = read_pair(c, (key_ptr, key_size), (value_ptr, value_size))?;
            let state = c.data_mut();
            let status = match state
                .world
                .shared_data
                .get(&key)
                .map(|(_, current)| *current)
            {
                Some(current) if cas != 0 && cas != current => CAS_MISMATCH,
                _ => {
                    let next = state.world.next_cas();
                    state
                        .world
                        .shared_data
                        .insert(key.clone(), (value.clone(), next));
                    OK
                }
            };
            Ok(answer(status).nums(&[cas]).strs([key, value]))
        }
    );

    Ok(())
}
