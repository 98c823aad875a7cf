//! Shared queues: register, resolve, enqueue and dequeue.

use wasmtime::Linker;

use super::HostState;
use super::call::{E, EMPTY, IMA, NOT_FOUND, OK, answer, host, read_pair, wrote};
use super::memory::{copy_out, read, set_u32};
use crate::trace::FirstArg;

/// Registers this family's host functions.
pub(super) fn register(l: &mut Linker<HostState>) -> wasmtime::Result<()> {
    use FirstArg::Plain;

    host!(
        l,
        E,
        "proxy_register_shared_queue",
        Plain,
        |c, name_ptr: u32, name_size: u32, token_ptr: u32| {
            let name = read(c, name_ptr, name_size)?
                .ok_or_else(|| answer(IMA).nums(&[name_ptr, name_size]))?;
            let state = c.data_mut();
            let ctx = state.context();
            let root = state.root_of(ctx);
            let name_text = String::from_utf8_lossy(&name).into_owned();
            let vm_id = state.vm_id.clone();
            let existing = state
                .world
                .queues
                .iter()
                .find(|(_, queue)| queue.vm_id == vm_id && queue.name == name_text)
                .map(|(token, _)| *token);
            let token = match existing {
                Some(token) => token,
                None => {
                    state.world.next_queue_token += 1;
                    state.world.next_queue_token
                }
            };
            let queue = state.world.queues.entry(token).or_default();
            queue.vm_id = vm_id;
            queue.name = name_text;
            queue.context_id = root;
            queue.worker = state.worker;
            let status = wrote(set_u32(c, token_ptr, token)?);
            Ok(answer(status).nums(&[token]).strs([name]))
        }
    );

    host!(
        l,
        E,
        "proxy_resolve_shared_queue",
        Plain,
        |c, vm_ptr: u32, vm_size: u32, name_ptr: u32, name_size: u32, token_ptr: u32| {
            let (vm_id, name) = read_pair(c, (vm_ptr, vm_size), (name_ptr, name_size))?;
            let state = c.data();
            let vm_text = if vm_id.is_empty() {
                state.vm_id.clone()
            } else {
                String::from_utf8_lossy(&vm_id).into_owned()
            };
            let name_text = String::from_utf8_lossy(&name);
            let token = state
                .world
                .queues
                .iter()
                .find(|(_, queue)| queue.vm_id == vm_text && queue.name == name_text)
                .map(|(token, _)| *token);
            let status = match token {
                None => NOT_FOUND,
                Some(token) => wrote(set_u32(c, token_ptr, token)?),
            };
            Ok(answer(status).strs([vm_id, name]))
        }
    );

    host!(
        l,
        E,
        "proxy_dequeue_shared_queue",
        Plain,
        |c, token: u32, ptr_ptr: u32, size_ptr: u32| {
            let item = match c.data_mut().world.queues.get_mut(&token) {
                None => Err(NOT_FOUND),
                Some(queue) => queue.items.pop_front().ok_or(EMPTY),
            };
            match item {
                Err(status) => Ok(answer(status).nums(&[token])),
                Ok(item) => {
                    let status = wrote(copy_out(c, &item, ptr_ptr, size_ptr)?);
                    Ok(answer(status).nums(&[token]).result(item))
                }
            }
        }
    );

    host!(
        l,
        E,
        "proxy_enqueue_shared_queue",
        Plain,
        |c, token: u32, ptr: u32, size: u32| {
            let data = read(c, ptr, size)?.ok_or_else(|| answer(IMA).nums(&[token, ptr, size]))?;
            let state = c.data_mut();
            let status = match state.world.queues.get_mut(&token) {
                None => NOT_FOUND,
                Some(queue) => {
                    queue.items.push_back(data.clone());
                    let ready = (queue.worker, queue.context_id, token);
                    state.world.queue_ready.push(ready);
                    OK
                }
            };
            Ok(answer(status).nums(&[token]).strs([data]))
        }
    );

    Ok(())
}
