//! Every host function treats guest pointers and lengths as hostile, and answers exactly as
//! Envoy does (proxy-wasm-cpp-host `src/exports.cc`): an input range out of bounds is
//! INVALID_MEMORY_ACCESS (WASI: EFAULT); an out-pointer out of bounds is a fault exactly when
//! Envoy writes it on the path taken; anything else gives the status the same call gets with
//! valid out-pointers. Never a panic or a trap.

use filterkit_host_sim::Sim;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

use crate::guest::Guest;

/// How one argument is chosen and checked.
#[derive(Debug, Clone, Copy)]
enum Arg {
    /// A pointer the host reads; its length is the argument at this index.
    In(usize),
    /// A length (paired with an `In`).
    Len,
    /// An iovec array pointer (8 bytes per entry); the count is the argument at this index.
    Iovs(usize),
    /// A pointer the host writes this many bytes to.
    Out(u32),
    /// A buffer the host fills; its length is the argument at this index.
    OutBuf(usize),
    /// A fixed value.
    Value(i64),
    /// A pointer or length Envoy never looks at (its stubs ignore them).
    Any,
}

use Arg::{Any, In, Iovs, Len, Out, OutBuf, Value};

/// When Envoy writes a function's out-pointers, given the status of the call with valid ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Writes {
    /// Never (e.g. `fd_fdstat_get` ignores a failed write; stubs write nothing).
    Never,
    /// On every path once the inputs are read.
    Always,
    /// Only when the call succeeds (status 0).
    OnSuccess,
    /// Unless the call is NOT_FOUND (`proxy_call_foreign_function` writes results even when
    /// the function fails).
    UnlessNotFound,
}

/// A host function, how to call it, and when Envoy writes its outputs.
struct Spec {
    export: &'static str,
    args: &'static [Arg],
    writes: Writes,
    fault: i64,
}

const IMA: i64 = 6;
const EFAULT: i64 = 21;
const NOT_FOUND: i64 = 1;

use Writes::{Always, Never, OnSuccess, UnlessNotFound};

const fn proxy(export: &'static str, args: &'static [Arg], writes: Writes) -> Spec {
    Spec {
        export,
        args,
        writes,
        fault: IMA,
    }
}

const fn wasi(export: &'static str, args: &'static [Arg], writes: Writes) -> Spec {
    Spec {
        export,
        args,
        writes,
        fault: EFAULT,
    }
}

const SPECS: &[Spec] = &[
    proxy("call_proxy_log", &[Value(2), In(2), Len], Never),
    proxy("call_proxy_get_log_level", &[Out(4)], Always),
    proxy("call_proxy_get_status", &[Out(4), Out(4), Out(4)], Always),
    proxy("call_proxy_set_property", &[In(1), Len, In(3), Len], Never),
    proxy(
        "call_proxy_get_property",
        &[In(1), Len, Out(4), Out(4)],
        OnSuccess,
    ),
    proxy(
        "call_proxy_send_local_response",
        &[Value(403), In(2), Len, In(4), Len, In(6), Len, Value(0)],
        Never,
    ),
    proxy(
        "call_proxy_get_shared_data",
        &[In(1), Len, Out(4), Out(4), Out(4)],
        OnSuccess,
    ),
    proxy(
        "call_proxy_set_shared_data",
        &[In(1), Len, In(3), Len, Value(0)],
        Never,
    ),
    proxy(
        "call_proxy_register_shared_queue",
        &[In(1), Len, Out(4)],
        OnSuccess,
    ),
    proxy(
        "call_proxy_resolve_shared_queue",
        &[In(1), Len, In(3), Len, Out(4)],
        OnSuccess,
    ),
    proxy(
        "call_proxy_dequeue_shared_queue",
        &[Value(999), Out(4), Out(4)],
        OnSuccess,
    ),
    proxy(
        "call_proxy_enqueue_shared_queue",
        &[Value(999), In(2), Len],
        Never,
    ),
    proxy(
        "call_proxy_get_header_map_value",
        &[Value(0), In(2), Len, Out(4), Out(4)],
        OnSuccess,
    ),
    proxy(
        "call_proxy_add_header_map_value",
        &[Value(2), In(2), Len, In(4), Len],
        Never,
    ),
    proxy(
        "call_proxy_replace_header_map_value",
        &[Value(1), In(2), Len, In(4), Len],
        Never,
    ),
    proxy(
        "call_proxy_remove_header_map_value",
        &[Value(3), In(2), Len],
        Never,
    ),
    proxy(
        "call_proxy_get_header_map_pairs",
        &[Value(0), Out(4), Out(4)],
        OnSuccess,
    ),
    proxy(
        "call_proxy_set_header_map_pairs",
        &[Value(2), In(2), Len],
        Never,
    ),
    proxy(
        "call_proxy_get_header_map_size",
        &[Value(0), Out(4)],
        OnSuccess,
    ),
    proxy(
        "call_proxy_get_buffer_status",
        &[Value(6), Out(4), Out(4)],
        OnSuccess,
    ),
    proxy(
        "call_proxy_get_buffer_bytes",
        &[Value(6), Value(0), Value(8), Out(4), Out(4)],
        OnSuccess,
    ),
    proxy(
        "call_proxy_set_buffer_bytes",
        &[Value(0), Value(0), Value(0), In(4), Len],
        Never,
    ),
    proxy(
        "call_proxy_http_call",
        &[
            In(1),
            Len,
            In(3),
            Len,
            In(5),
            Len,
            In(7),
            Len,
            Value(1000),
            Out(4),
        ],
        Always,
    ),
    proxy(
        "call_proxy_grpc_call",
        &[
            In(1),
            Len,
            In(3),
            Len,
            In(5),
            Len,
            In(7),
            Len,
            In(9),
            Len,
            Value(1000),
            Out(4),
        ],
        OnSuccess,
    ),
    proxy(
        "call_proxy_grpc_stream",
        &[In(1), Len, In(3), Len, In(5), Len, In(7), Len, Out(4)],
        OnSuccess,
    ),
    proxy(
        "call_proxy_grpc_send",
        &[Value(6), In(2), Len, Value(0)],
        Never,
    ),
    proxy("call_proxy_get_current_time_nanoseconds", &[Out(8)], Always),
    proxy("call_envoy_resolve_dns", &[In(1), Len, Out(4)], Always),
    proxy(
        "call_proxy_define_metric",
        &[Value(0), In(2), Len, Out(4)],
        OnSuccess,
    ),
    proxy("call_proxy_get_metric", &[Value(4), Out(8)], OnSuccess),
    proxy(
        "call_proxy_call_foreign_function",
        &[In(1), Len, In(3), Len, Out(4), Out(4)],
        UnlessNotFound,
    ),
    wasi(
        "call_wasi_fd_write",
        &[Value(1), Iovs(2), Len, Out(4)],
        OnSuccess,
    ),
    wasi(
        "call_wasi_fd_pwrite",
        &[Value(2), Iovs(2), Len, Value(0), Out(4)],
        OnSuccess,
    ),
    wasi("call_wasi_environ_sizes_get", &[Out(4), Out(4)], Always),
    wasi("call_wasi_args_sizes_get", &[Out(4), Out(4)], Always),
    wasi(
        "call_wasi_clock_time_get",
        &[Value(0), Value(1), Out(8)],
        Always,
    ),
    wasi("call_wasi_clock_res_get", &[Value(1), Out(8)], Always),
    wasi("call_wasi_random_get", &[OutBuf(1), Len], OnSuccess),
    wasi(
        "call_wasi_poll_oneoff",
        &[Value(0), Value(0), Value(0), Out(4)],
        Always,
    ),
    wasi("call_wasi_fd_tell", &[Value(1), Out(8)], Always),
    wasi(
        "call_wasi_fd_readdir",
        &[Value(3), Value(0), Value(0), Value(0), Out(4)],
        Always,
    ),
    wasi(
        "call_wasi_path_readlink",
        &[Value(3), Value(0), Value(0), Value(0), Value(0), Out(4)],
        Always,
    ),
    wasi(
        "call_wasi_sock_accept",
        &[Value(3), Value(0), Out(8)],
        Always,
    ),
    wasi(
        "call_wasi_sock_recv",
        &[Value(3), Value(0), Value(0), Value(0), Out(4), Out(2)],
        Always,
    ),
    wasi(
        "call_wasi_sock_send",
        &[Value(3), Value(0), Value(0), Value(0), Out(4)],
        Always,
    ),
    wasi("call_wasi_fd_fdstat_get", &[Value(1), Out(24)], Never),
    wasi("call_wasi_environ_get", &[Out(4), Out(4)], Always),
    // Stubs that never touch memory: any pointer gives Envoy's fixed errno.
    wasi("call_wasi_fd_read", &[Value(0), Any, Any, Any], Never),
    wasi(
        "call_wasi_fd_pread",
        &[Value(0), Any, Any, Value(0), Any],
        Never,
    ),
    wasi(
        "call_wasi_path_open",
        &[
            Value(3),
            Value(0),
            Any,
            Any,
            Value(0),
            Value(0),
            Value(0),
            Value(0),
            Any,
        ],
        Never,
    ),
    wasi("call_wasi_fd_prestat_get", &[Value(3), Any], Never),
    wasi(
        "call_wasi_fd_prestat_dir_name",
        &[Value(3), Any, Any],
        Never,
    ),
    wasi("call_wasi_fd_filestat_get", &[Value(1), Any], Never),
    wasi(
        "call_wasi_path_filestat_get",
        &[Value(3), Value(0), Any, Any, Any],
        Never,
    ),
    wasi(
        "call_wasi_fd_seek",
        &[Value(1), Value(0), Value(0), Any],
        Never,
    ),
    wasi("call_wasi_args_get", &[Any, Any], Never),
    wasi("call_wasi_path_unlink_file", &[Value(3), Any, Any], Never),
];

fn pointer(memory_end: u64) -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0u64),
        Just(8),
        Just(70_000),
        Just(memory_end - 8),
        Just(memory_end - 4),
        Just(memory_end - 1),
        Just(memory_end),
        Just(memory_end + 1),
        Just(0x8000_0000),
        Just(u64::from(u32::MAX) - 3),
        Just(u64::from(u32::MAX)),
        0..memory_end,
        0..u64::from(u32::MAX),
    ]
}

fn length(memory_end: u64) -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0u64),
        Just(1),
        Just(4),
        Just(16),
        Just(memory_end),
        Just(memory_end + 1),
        Just(0x8000_0000),
        Just(u64::from(u32::MAX)),
        0..64u64,
        0..u64::from(u32::MAX),
    ]
}

fn fits(pointer: u64, length: u64, memory_end: u64) -> bool {
    pointer + length <= memory_end
}

/// Where the reference call writes its outputs (valid, and restored afterwards).
const SCRATCH: i64 = 1024;

/// The guest: every import forwarded, request headers paused (so a stream context has its
/// request headers), and a way to reset the bump allocator between calls.
fn module() -> filterkit_host_sim::Module {
    Guest {
        fields: "(func (export \"reset_heap\") i32.const 65536 global.set $heap)\n".into(),
        request_headers: Some("i32.const 1".into()),
        ..Guest::default()
    }
    .module()
}

fn call(sim: &mut Sim, export: &str, ctx: u32, args: &[i64]) -> Result<i64, TestCaseError> {
    sim.call_guest_function("reset_heap", ctx, &[])
        .map_err(TestCaseError::fail)?;
    match sim.call_guest_function(export, ctx, args) {
        Ok(Some(status)) => Ok(status),
        Ok(None) => Err(TestCaseError::fail(format!("{export} returned nothing"))),
        Err(trap) => Err(TestCaseError::fail(format!(
            "{export} trapped: {trap} (args {args:?})"
        ))),
    }
}

/// Which rule decided a case's expected status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    /// An input range out of bounds.
    BadInput,
    /// An out-pointer out of bounds that Envoy writes.
    OutputFault,
    /// An out-pointer out of bounds that Envoy does not write on the path taken.
    OutputUnwritten,
    /// Everything in bounds (or ignored).
    Clean,
}

/// Runs one hostile call on context `ctx` and checks its exact status.
fn check_call(
    sim: &mut Sim,
    ctx: u32,
    spec: &Spec,
    values: &[u64],
    memory_end: u64,
) -> Result<Path, TestCaseError> {
    let args: Vec<i64> = spec
        .args
        .iter()
        .zip(values)
        .map(|(arg, value)| match arg {
            Value(fixed) => *fixed,
            _ => *value as i64,
        })
        .collect();
    let mut bad_input = false;
    let mut bad_output = false;
    let mut reference = args.clone();
    for (idx, arg) in spec.args.iter().enumerate() {
        let value = args[idx] as u64;
        match arg {
            In(len) => bad_input |= !fits(value, args[*len] as u64, memory_end),
            Iovs(count) => {
                let count = args[*count] as u64;
                bad_input |= count > 0 && !fits(value, count * 8, memory_end);
            }
            Out(size) => {
                bad_output |= !fits(value, u64::from(*size), memory_end);
                reference[idx] = SCRATCH + 32 * idx as i64;
            }
            OutBuf(len) => {
                let len = args[*len] as u64;
                bad_output |= len > 0 && !fits(value, len, memory_end);
                reference[idx] = 0;
            }
            Len | Value(_) | Any => {}
        }
    }
    let mut path = Path::Clean;
    let expected = if bad_input {
        path = Path::BadInput;
        spec.fault
    } else {
        // The same call with valid out-pointers, then memory put back as it was.
        let memory = sim.guest_memory();
        let status = call(sim, spec.export, ctx, &reference)?;
        sim.restore_guest_memory(&memory);
        let written = match spec.writes {
            Never => false,
            Always => true,
            OnSuccess => status == 0,
            UnlessNotFound => status != NOT_FOUND,
        };
        if bad_output && written {
            path = Path::OutputFault;
            spec.fault
        } else {
            if bad_output {
                path = Path::OutputUnwritten;
            }
            status
        }
    };
    let status = call(sim, spec.export, ctx, &args)?;
    prop_assert_eq!(
        status,
        expected,
        "{} on context {} with {:?} (bad input {}, bad output {})",
        spec.export,
        ctx,
        args,
        bad_input,
        bad_output
    );
    Ok(path)
}

#[test]
fn hostile_pointers_and_lengths_get_envoys_exact_status() {
    let module = module();
    let mut sim = Sim::builder(&module)
        .plugin("root", "cfg")
        .vm_configuration("vm-config")
        .environment("K", "V")
        .build()
        .unwrap();
    sim.set_tracing(false);
    let root = sim.root_context_id("root").unwrap();
    let stream = {
        let mut stream = sim.stream("root").unwrap();
        let outcome = stream.send_request_headers(&[(":path", "/"), ("x-a", "1")], false);
        assert!(matches!(outcome, filterkit_host_sim::Outcome::Paused(_)));
        stream.id()
    };
    let sim = std::cell::RefCell::new(sim);
    let memory_end = sim.borrow().memory_size() as u64;
    let strategy = (0..SPECS.len(), any::<bool>()).prop_flat_map(move |(idx, on_stream)| {
        let values: Vec<BoxedStrategy<u64>> = SPECS[idx]
            .args
            .iter()
            .map(|arg| match arg {
                Len => length(memory_end).boxed(),
                Value(_) => Just(0u64).boxed(),
                _ => pointer(memory_end).boxed(),
            })
            .collect();
        (Just(idx), Just(on_stream), values)
    });
    let mut runner = TestRunner::new(Config {
        cases: 12_000,
        failure_persistence: None,
        ..Config::default()
    });
    let paths = std::cell::RefCell::new(std::collections::BTreeMap::<String, u32>::new());
    runner
        .run(&strategy, |(idx, on_stream, values)| {
            let ctx = if on_stream { stream } else { root };
            let path = check_call(&mut sim.borrow_mut(), ctx, &SPECS[idx], &values, memory_end)?;
            *paths.borrow_mut().entry(format!("{path:?}")).or_default() += 1;
            Ok(())
        })
        .unwrap();
    // Every rule must have decided a fair share of the cases, or the strategies degenerated.
    let paths = paths.into_inner();
    for path in [
        Path::BadInput,
        Path::OutputFault,
        Path::OutputUnwritten,
        Path::Clean,
    ] {
        let count = paths.get(&format!("{path:?}")).copied().unwrap_or(0);
        assert!(count >= 200, "only {count} cases took {path:?}: {paths:?}");
    }
}

/// The fd_write iovec count is a count of 8-byte entries: a count that makes the array
/// overflow the address space faults.
#[test]
fn fd_write_with_overflowing_iovec_count_faults() {
    let module = module();
    let mut sim = Sim::builder(&module).plugin("root", "").build().unwrap();
    let root = sim.root_context_id("root").unwrap();
    let status = sim
        .call_guest_function("call_wasi_fd_write", root, &[1, 16, 0x2000_0001, 1024])
        .unwrap();
    assert_eq!(status, Some(EFAULT));
}
