//! The WASI preview 1 functions Envoy registers, with its fixed answers (stdout and stderr
//! become logs, the clock is the virtual clock, nothing touches the real file system).

use wasmtime::Linker;

use super::HostState;
use super::call::{C, answer, enter, host, run};
use super::memory::{memory, read_guest, set_u32, set_u64, write};
use crate::trace::FirstArg;

pub(super) const WASI_SUCCESS: u32 = 0;
pub(super) const WASI_EBADF: u32 = 8;
pub(super) const WASI_EFAULT: u32 = 21;
pub(super) const WASI_EINVAL: u32 = 28;
pub(super) const WASI_ENOENT: u32 = 44;
pub(super) const WASI_ENOSYS: u32 = 52;
pub(super) const WASI_ENOTSUP: u32 = 58;
pub(super) const WASI_ENOTDIR: u32 = 20;

/// The most bytes `random_get` hands out at once (`PROXY_WASM_HOST_WASI_RANDOM_GET_MAX_SIZE_BYTES`).
pub(super) const RANDOM_GET_MAX: u32 = 64 * 1024;

pub(super) fn register(l: &mut Linker<HostState>, m: &'static str) -> wasmtime::Result<()> {
    use FirstArg::Plain;

    fn stdio(fd: u32) -> bool {
        fd == 1 || fd == 2
    }

    /// `errno` when the answer's write to guest memory succeeded, EFAULT when it did not.
    fn unless_fault(written: bool, errno: u32) -> u32 {
        if written { errno } else { WASI_EFAULT }
    }

    /// Logs what the guest writes to stdout (info) or stderr (error), then writes how many
    /// bytes it took; answers the errno.
    fn writev(
        c: &mut C<'_>,
        fd: u32,
        iovs: u32,
        iovs_len: u32,
        nwritten_ptr: u32,
    ) -> wasmtime::Result<u32> {
        let level = match fd {
            1 => 2,
            2 => 4,
            _ => return Ok(WASI_EBADF),
        };
        let memory = memory(c)?;
        let data = memory.data(&*c);
        let mut text = Vec::new();
        for idx in 0..iovs_len {
            let Some(at) = idx
                .checked_mul(8)
                .and_then(|offset| iovs.checked_add(offset))
            else {
                return Ok(WASI_EFAULT);
            };
            let Some(iovec) = read_guest(data, at, 8) else {
                return Ok(WASI_EFAULT);
            };
            let buf = u32::from_le_bytes(iovec[0..4].try_into().expect("4 bytes"));
            let buf_len = u32::from_le_bytes(iovec[4..8].try_into().expect("4 bytes"));
            if buf_len != 0 {
                let Some(bytes) = read_guest(data, buf, buf_len) else {
                    return Ok(WASI_EFAULT);
                };
                if text.len() + bytes.len() > 16 * 1024 * 1024 {
                    return Ok(WASI_EFAULT);
                }
                text.extend_from_slice(bytes);
            }
        }
        let written = text.len() as u32;
        if !text.is_empty() {
            if text.last() == Some(&b'\n') {
                text.pop();
            }
            let ctx = c.data().context();
            c.data_mut().push_log(ctx, level, &text);
        }
        Ok(unless_fault(
            set_u32(c, nwritten_ptr, written)?,
            WASI_SUCCESS,
        ))
    }

    // fd_pwrite is answered as fd_write: stdout and stderr have no offset.
    host!(
        l,
        m,
        "fd_write",
        Plain,
        |c, fd: u32, iovs: u32, iovs_len: u32, nwritten_ptr: u32| {
            Ok(answer(writev(c, fd, iovs, iovs_len, nwritten_ptr)?).nums(&[fd]))
        }
    );
    host!(
        l,
        m,
        "fd_pwrite",
        Plain,
        |c, fd: u32, iovs: u32, iovs_len: u32, _offset: u64, nwritten_ptr: u32| {
            Ok(answer(writev(c, fd, iovs, iovs_len, nwritten_ptr)?).nums(&[fd]))
        }
    );

    // Fixed answers.
    macro_rules! fixed {
        ($name:literal, ($($arg:ident : $ty:ty),*), $errno:expr) => {
            host!(l, m, $name, Plain, |_c $(, $arg: $ty)*| {
                $(let _ = $arg;)*
                Ok(answer($errno))
            });
        };
    }
    fixed!("fd_read", (a: u32, b: u32, d: u32, e: u32), WASI_ENOSYS);
    fixed!("path_open", (a: u32, b: u32, d: u32, e: u32, f: u32, g: i64, h: i64, i: u32, j: u32), WASI_ENOENT);
    fixed!("fd_prestat_get", (a: u32, b: u32), WASI_EBADF);
    fixed!("fd_prestat_dir_name", (a: u32, b: u32, d: u32), WASI_ENOSYS);
    fixed!("fd_filestat_get", (a: u32, b: u32), WASI_EBADF);
    fixed!("path_filestat_get", (a: u32, b: u32, d: u32, e: u32, f: u32), WASI_ENOTSUP);
    fixed!("fd_fdstat_set_flags", (a: u32, b: u32), WASI_ENOSYS);
    fixed!("args_get", (a: u32, b: u32), WASI_SUCCESS);
    fixed!("fd_advise", (a: u32, b: u64, d: u64, e: u32), WASI_SUCCESS);
    fixed!("fd_pread", (a: u32, b: u32, d: u32, e: u64, f: u32), WASI_ENOSYS);
    fixed!("path_create_directory", (a: u32, b: u32, d: u32), WASI_ENOTSUP);
    fixed!("path_filestat_set_times", (a: u32, b: u32, d: u32, e: u32, f: u64, g: u64, h: u32), WASI_ENOTSUP);
    fixed!("path_link", (a: u32, b: u32, d: u32, e: u32, f: u32, g: u32), WASI_ENOTSUP);
    fixed!("path_remove_directory", (a: u32, b: u32, d: u32), WASI_ENOTSUP);
    fixed!("path_rename", (a: u32, b: u32, d: u32, e: u32, f: u32, g: u32), WASI_ENOTSUP);
    fixed!("path_symlink", (a: u32, b: u32, d: u32, e: u32), WASI_ENOTSUP);
    fixed!("path_unlink_file", (a: u32, b: u32, d: u32), WASI_ENOTSUP);
    fixed!("sock_shutdown", (a: u32, b: u32), WASI_ENOTSUP);
    fixed!("sched_yield", (), WASI_SUCCESS);
    fixed!("fd_seek", (a: u32, b: i64, d: u32, e: u32), WASI_SUCCESS);
    fixed!("fd_close", (a: u32), WASI_SUCCESS);

    // Answers that depend on the fd being stdout or stderr.
    macro_rules! stdio_only {
        ($name:literal, ($fd:ident $(, $arg:ident : $ty:ty)*), $ok:expr) => {
            host!(l, m, $name, Plain, |_c, $fd: u32 $(, $arg: $ty)*| {
                $(let _ = $arg;)*
                let errno = if stdio($fd) { $ok } else { WASI_EBADF };
                Ok(answer(errno).nums(&[$fd]))
            });
        };
    }
    stdio_only!("fd_allocate", (fd, a: u64, b: u64), WASI_SUCCESS);
    stdio_only!("fd_datasync", (fd), WASI_SUCCESS);
    stdio_only!("fd_fdstat_set_rights", (fd, a: u64, b: u64), WASI_SUCCESS);
    stdio_only!("fd_filestat_set_size", (fd, a: u64), WASI_SUCCESS);
    stdio_only!("fd_filestat_set_times", (fd, a: u64, b: u64, d: u32), WASI_SUCCESS);
    stdio_only!("fd_sync", (fd), WASI_SUCCESS);

    host!(l, m, "fd_renumber", Plain, |_c, fd: u32, to: u32| {
        let errno = if stdio(fd) && stdio(to) {
            WASI_ENOTSUP
        } else {
            WASI_EBADF
        };
        Ok(answer(errno).nums(&[fd, to]))
    });

    host!(l, m, "fd_fdstat_get", Plain, |c, fd: u32, stat_ptr: u32| {
        if !stdio(fd) {
            return Ok(answer(WASI_EBADF).nums(&[fd]));
        }
        // Envoy ignores a failed write here and still answers success.
        let mut stat = [0u8; 24];
        stat[8..16].copy_from_slice(&64u64.to_le_bytes());
        let _ = write(c, stat_ptr, &stat)?;
        Ok(answer(WASI_SUCCESS).nums(&[fd]))
    });

    host!(
        l,
        m,
        "environ_sizes_get",
        Plain,
        |c, count_ptr: u32, size_ptr: u32| {
            let env = &c.data().environment;
            let count = env.len() as u32;
            let size: usize = env
                .iter()
                .map(|(key, value)| key.len() + value.len() + 2)
                .sum();
            let written = set_u32(c, count_ptr, count)? && set_u32(c, size_ptr, size as u32)?;
            Ok(answer(unless_fault(written, WASI_SUCCESS)))
        }
    );

    host!(
        l,
        m,
        "environ_get",
        Plain,
        |c, array_ptr: u32, buf_ptr: u32| {
            let (mut array_ptr, mut buf_ptr) = (array_ptr, buf_ptr);
            let env = c.data().environment.clone();
            for (key, value) in env {
                if !set_u32(c, array_ptr, buf_ptr)? {
                    return Ok(answer(WASI_EFAULT));
                }
                let entry = format!("{key}={value}\0");
                if !write(c, buf_ptr, entry.as_bytes())? {
                    return Ok(answer(WASI_EFAULT));
                }
                buf_ptr = buf_ptr.wrapping_add(entry.len() as u32);
                array_ptr = array_ptr.wrapping_add(4);
            }
            Ok(answer(WASI_SUCCESS))
        }
    );

    host!(
        l,
        m,
        "args_sizes_get",
        Plain,
        |c, argc_ptr: u32, size_ptr: u32| {
            let written = set_u32(c, argc_ptr, 0)? && set_u32(c, size_ptr, 0)?;
            Ok(answer(unless_fault(written, WASI_SUCCESS)))
        }
    );

    host!(
        l,
        m,
        "clock_time_get",
        Plain,
        |c, clock: u32, _precision: u64, ptr: u32| {
            let state = c.data();
            let errno = match clock {
                0 => unless_fault(
                    set_u64(c, ptr, state.epoch_ns + state.world.now_ns)?,
                    WASI_SUCCESS,
                ),
                1 => unless_fault(set_u64(c, ptr, state.world.now_ns)?, WASI_SUCCESS),
                _ => WASI_ENOTSUP,
            };
            Ok(answer(errno).nums(&[clock]))
        }
    );

    host!(l, m, "clock_res_get", Plain, |c, clock: u32, ptr: u32| {
        let errno = if clock > 1 {
            WASI_ENOTSUP
        } else {
            unless_fault(set_u64(c, ptr, 1)?, WASI_SUCCESS)
        };
        Ok(answer(errno).nums(&[clock]))
    });

    host!(
        l,
        m,
        "fd_readdir",
        Plain,
        |c, _fd: u32, _buf: u32, _len: u32, _cookie: u64, nread_ptr: u32| {
            Ok(answer(unless_fault(
                set_u32(c, nread_ptr, 0)?,
                WASI_ENOTDIR,
            )))
        }
    );

    host!(l, m, "fd_tell", Plain, |c, fd: u32, ptr: u32| {
        let errno = if stdio(fd) {
            unless_fault(set_u64(c, ptr, 0)?, WASI_SUCCESS)
        } else {
            WASI_EBADF
        };
        Ok(answer(errno).nums(&[fd]))
    });

    host!(
        l,
        m,
        "path_readlink",
        Plain,
        |c, _fd: u32, _path: u32, _len: u32, _buf: u32, _buf_len: u32, ptr: u32| {
            Ok(answer(unless_fault(set_u32(c, ptr, 0)?, WASI_ENOTSUP)))
        }
    );

    host!(
        l,
        m,
        "sock_accept",
        Plain,
        |c, _fd: u32, _flags: u32, ptr: u32| {
            // Envoy writes a 64-bit zero here (`setDatatype(retptr0, 0UL)`).
            Ok(answer(unless_fault(set_u64(c, ptr, 0)?, WASI_ENOTSUP)))
        }
    );

    host!(
        l,
        m,
        "sock_recv",
        Plain,
        |c, _fd: u32, _data: u32, _len: u32, _flags: u32, ptr0: u32, ptr1: u32| {
            Ok(answer(unless_fault(
                set_u32(c, ptr0, 0)? && write(c, ptr1, &0u16.to_le_bytes())?,
                WASI_ENOTSUP,
            )))
        }
    );

    host!(
        l,
        m,
        "sock_send",
        Plain,
        |c, _fd: u32, _data: u32, _len: u32, _flags: u32, ptr0: u32| {
            Ok(answer(unless_fault(set_u32(c, ptr0, 0)?, WASI_ENOTSUP)))
        }
    );

    host!(l, m, "random_get", Plain, |c, ptr: u32, len: u32| {
        if len > RANDOM_GET_MAX {
            return Ok(answer(WASI_EINVAL).nums(&[len]));
        }
        if len == 0 {
            return Ok(answer(WASI_SUCCESS).nums(&[len]));
        }
        // Deterministic bytes (a test needs reproducible runs), from a xorshift generator.
        let mut bytes = vec![0u8; len as usize];
        let state = c.data_mut();
        for byte in &mut bytes {
            state.world.random_state ^= state.world.random_state << 13;
            state.world.random_state ^= state.world.random_state >> 7;
            state.world.random_state ^= state.world.random_state << 17;
            *byte = state.world.random_state as u8;
        }
        Ok(answer(unless_fault(write(c, ptr, &bytes)?, WASI_SUCCESS)).nums(&[len]))
    });

    host!(
        l,
        m,
        "poll_oneoff",
        Plain,
        |c, _in: u32, _out: u32, _n: u32, nevents_ptr: u32| {
            Ok(answer(unless_fault(
                set_u32(c, nevents_ptr, 0)?,
                WASI_SUCCESS,
            )))
        }
    );

    l.func_wrap(
        m,
        "proc_exit",
        move |mut c: C<'_>, code: u32| -> wasmtime::Result<()> {
            enter(&c, m, "proc_exit")?;
            // Envoy only logs (at trace level) and returns.
            run(&mut c, "proc_exit", Plain, |_| Ok(answer(0).nums(&[code])))?;
            Ok(())
        },
    )?;

    Ok(())
}
