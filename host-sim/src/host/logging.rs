//! `proxy_log` and `proxy_get_log_level`: logs are recorded as data for assertions.

use wasmtime::Linker;

use super::HostState;
use super::call::{BAD_ARGUMENT, E, IMA, OK, answer, host, wrote};
use super::memory::{read, set_u32};
use crate::trace::FirstArg;

/// Registers this family's host functions.
pub(super) fn register(l: &mut Linker<HostState>) -> wasmtime::Result<()> {
    use FirstArg::{Level, Plain};

    host!(
        l,
        E,
        "proxy_log",
        Level,
        |c, level: u32, ptr: u32, size: u32| {
            if level > 5 {
                return Ok(answer(BAD_ARGUMENT).nums(&[level]));
            }
            let message =
                read(c, ptr, size)?.ok_or_else(|| answer(IMA).nums(&[level, ptr, size]))?;
            let ctx = c.data().context();
            c.data_mut().push_log(ctx, level, &message);
            Ok(answer(OK).unrecorded())
        }
    );

    host!(l, E, "proxy_get_log_level", Plain, |c, ptr: u32| {
        let level = c.data().log_level;
        Ok(answer(wrote(set_u32(c, ptr, level)?)))
    });

    Ok(())
}
