//! The calling context and the VM: `proxy_set_effective_context`, `proxy_done`,
//! `proxy_get_status`, `proxy_get_configuration`, `proxy_call_foreign_function`,
//! `envoy_resolve_dns` and the emscripten leftovers Envoy still registers.

use wasmtime::Linker;

use super::After;
use super::HostState;
use super::call::{BAD_ARGUMENT, C, E, IMA, NOT_FOUND, OK, R, answer, enter, host, wrote};
use super::memory::{alloc, copy_out, read, set_u32, write};
use crate::trace::FirstArg;

/// Registers this family's host functions.
pub(super) fn register(l: &mut Linker<HostState>) -> wasmtime::Result<()> {
    use FirstArg::Plain;

    host!(
        l,
        E,
        "proxy_get_status",
        Plain,
        |c, code_ptr: u32, ptr_ptr: u32, size_ptr: u32| {
            let state = c.data();
            let root = state.root_of(state.context());
            let (code, message) = match state.root_contexts.get(&root) {
                Some(plugin) => {
                    let plugin = &state.plugins[*plugin];
                    (plugin.status_code, plugin.status_message.clone())
                }
                None => (0, Vec::new()),
            };
            let written = set_u32(c, code_ptr, code)? && copy_out(c, &message, ptr_ptr, size_ptr)?;
            Ok(answer(wrote(written)).nums(&[code]).result(message))
        }
    );

    host!(
        l,
        E,
        "proxy_get_configuration",
        Plain,
        |c, ptr_ptr: u32, size_ptr: u32| {
            let state = c.data();
            let value = match state.temp_plugin {
                Some(plugin) => state.plugins[plugin].configuration.clone(),
                None => state.vm_configuration.clone(),
            };
            Ok(answer(wrote(copy_out(c, &value, ptr_ptr, size_ptr)?)).result(value))
        }
    );

    host!(l, E, "proxy_set_effective_context", Plain, |c, id: u32| {
        let status = if c.data().context_exists(id) {
            c.data_mut().effective = id;
            OK
        } else {
            BAD_ARGUMENT
        };
        Ok(answer(status).nums(&[id]))
    });

    host!(l, E, "proxy_done", Plain, |c| {
        let state = c.data_mut();
        let ctx = state.context();
        match state.root_contexts.get(&ctx).copied() {
            Some(plugin) if state.plugins[plugin].pending_done => {
                state.plugins[plugin].pending_done = false;
                state.after.push(After::DeleteRoot { context_id: ctx });
                Ok(answer(OK))
            }
            _ => Ok(answer(NOT_FOUND)),
        }
    });

    host!(
        l,
        E,
        "proxy_call_foreign_function",
        Plain,
        |c,
         name_ptr: u32,
         name_size: u32,
         args_ptr: u32,
         args_size: u32,
         results_ptr: u32,
         results_size_ptr: u32| {
            let name = read(c, name_ptr, name_size)?
                .ok_or_else(|| answer(IMA).nums(&[name_ptr, name_size]))?;
            let Some(args) = read(c, args_ptr, args_size)? else {
                return Ok(answer(IMA).strs([name]));
            };
            let function = c
                .data()
                .foreign_functions
                .get(&*String::from_utf8_lossy(&name))
                .cloned();
            let Some(function) = function else {
                return Ok(answer(NOT_FOUND).strs([name, args]));
            };
            let (mut status, output) = match function(&args) {
                Ok(output) => (OK, Some(output)),
                Err(status) => (status as u32, None),
            };
            let mut address = 0;
            let size = output.as_ref().map_or(0, Vec::len) as u32;
            if let Some(output) = output
                .as_ref()
                .filter(|output| results_ptr != 0 && !output.is_empty())
            {
                match alloc(c, size)? {
                    Some(at) if write(c, at, output)? => address = at,
                    _ => status = IMA,
                }
            }
            let written = (results_ptr == 0 || set_u32(c, results_ptr, address)?)
                && (results_size_ptr == 0 || set_u32(c, results_size_ptr, size)?);
            if !written {
                status = IMA;
            }
            let answer = answer(status).strs([name, args]);
            Ok(match output {
                Some(output) => answer.result(output),
                None => answer,
            })
        }
    );

    // Envoy's own extension (`wasm.cc` `resolve_dns`): the token is written before the
    // resolution starts; a VM's first token is 2 (seen in Envoy 1.40, which also resolved
    // `localhost` inline, calling `envoy_on_resolve_dns` before the call returned). host-sim
    // resolves nothing, so no `envoy_on_resolve_dns` follows.
    host!(
        l,
        E,
        "envoy_resolve_dns",
        Plain,
        |c, address_ptr: u32, address_size: u32, token_ptr: u32| {
            let address = read(c, address_ptr, address_size)?.ok_or_else(|| answer(IMA))?;
            let state = c.data_mut();
            state.next_dns_token = state.next_dns_token.wrapping_add(1).max(1);
            let token = state.next_dns_token;
            let status = wrote(set_u32(c, token_ptr, token)?);
            Ok(answer(status).nums(&[token]).strs([address]))
        }
    );

    l.func_wrap(E, "pthread_equal", |c: C<'_>, left: u32, right: u32| -> R {
        enter(&c, E, "pthread_equal")?;
        Ok(u32::from(left == right))
    })?;

    l.func_wrap(
        E,
        "emscripten_notify_memory_growth",
        |c: C<'_>, _memory_index: u32| -> wasmtime::Result<()> {
            enter(&c, E, "emscripten_notify_memory_growth")?;
            Ok(())
        },
    )?;

    Ok(())
}
