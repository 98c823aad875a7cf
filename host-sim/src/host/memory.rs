//! Guest memory: every pointer and length is hostile, so reads and writes check bounds against
//! the current memory size, and the guest's allocator is called as Envoy calls it.

use wasmtime::Memory;

use super::call::C;
use super::{HostTrap, Restriction};

/// Reads `len` bytes at `ptr` from guest memory; `None` when any byte is out of bounds.
pub(crate) fn read_guest(data: &[u8], ptr: u32, len: u32) -> Option<&[u8]> {
    let start = ptr as usize;
    let end = start.checked_add(len as usize)?;
    data.get(start..end)
}

/// Writes bytes at `ptr`; `false` when any byte is out of bounds.
pub(crate) fn write_guest(data: &mut [u8], ptr: u32, bytes: &[u8]) -> bool {
    let start = ptr as usize;
    let Some(end) = start.checked_add(bytes.len()) else {
        return false;
    };
    match data.get_mut(start..end) {
        Some(slot) => {
            slot.copy_from_slice(bytes);
            true
        }
        None => false,
    }
}

pub(super) fn memory(c: &C<'_>) -> wasmtime::Result<Memory> {
    c.data()
        .memory
        .ok_or_else(|| wasmtime::Error::new(HostTrap("module has no memory".into())))
}

pub(super) fn read(c: &C<'_>, ptr: u32, len: u32) -> wasmtime::Result<Option<Vec<u8>>> {
    let memory = memory(c)?;
    Ok(read_guest(memory.data(c), ptr, len).map(<[u8]>::to_vec))
}

pub(super) fn write(c: &mut C<'_>, ptr: u32, bytes: &[u8]) -> wasmtime::Result<bool> {
    let memory = memory(c)?;
    Ok(write_guest(memory.data_mut(c), ptr, bytes))
}

pub(super) fn set_u32(c: &mut C<'_>, ptr: u32, value: u32) -> wasmtime::Result<bool> {
    write(c, ptr, &value.to_le_bytes())
}

pub(super) fn set_u64(c: &mut C<'_>, ptr: u32, value: u64) -> wasmtime::Result<bool> {
    write(c, ptr, &value.to_le_bytes())
}

/// `WasmBase::allocMemory`: calls the guest's allocator (with Envoy's restricted import list)
/// and checks that the block it returns lies in memory. `None` = Envoy's nullptr.
pub(super) fn alloc(c: &mut C<'_>, size: u32) -> wasmtime::Result<Option<u32>> {
    let Some(malloc) = c.data().malloc.clone() else {
        return Ok(None);
    };
    let saved = c.data().restricted;
    c.data_mut().restricted = Restriction::Malloc;
    let result = malloc.call(&mut *c, size);
    c.data_mut().restricted = saved;
    let address = result?;
    if address == 0 {
        return Ok(None);
    }
    let memory = memory(c)?;
    if read_guest(memory.data(&*c), address, size).is_none() {
        return Ok(None);
    }
    Ok(Some(address))
}

/// `WasmBase::copyToPointerSize`: allocates a copy in the guest, then writes its address and
/// size. Empty strings give address 0 without allocating.
pub(super) fn copy_out(
    c: &mut C<'_>,
    bytes: &[u8],
    ptr_ptr: u32,
    size_ptr: u32,
) -> wasmtime::Result<bool> {
    let mut address = 0;
    if !bytes.is_empty() {
        let Ok(size) = u32::try_from(bytes.len()) else {
            return Ok(false);
        };
        match alloc(c, size)? {
            Some(at) => address = at,
            None => return Ok(false),
        }
        if !write(c, address, bytes)? {
            return Ok(false);
        }
    }
    if !set_u32(c, ptr_ptr, address)? {
        return Ok(false);
    }
    set_u32(c, size_ptr, bytes.len() as u32)
}
