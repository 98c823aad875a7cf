//! Every host function treats guest pointers and lengths as hostile: out-of-bounds or
//! overflowing ranges give INVALID_MEMORY_ACCESS (WASI: EFAULT), never a panic or a trap.

use filterkit_host_sim::Sim;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

use crate::guest::forwarding_module;

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
}

use Arg::{In, Iovs, Len, Out, OutBuf, Value};

/// A host function, how to call it, and whether its outputs are always written on the
/// path taken from a root context with valid inputs.
struct Spec {
    export: &'static str,
    args: &'static [Arg],
    writes: bool,
    fault: i64,
}

const IMA: i64 = 6;
const EFAULT: i64 = 21;

const fn proxy(export: &'static str, args: &'static [Arg], writes: bool) -> Spec {
    Spec {
        export,
        args,
        writes,
        fault: IMA,
    }
}

const fn wasi(export: &'static str, args: &'static [Arg], writes: bool) -> Spec {
    Spec {
        export,
        args,
        writes,
        fault: EFAULT,
    }
}

const SPECS: &[Spec] = &[
    proxy("call_proxy_log", &[Value(2), In(2), Len], false),
    proxy("call_proxy_get_log_level", &[Out(4)], true),
    proxy("call_proxy_get_status", &[Out(4), Out(4), Out(4)], true),
    proxy("call_proxy_set_property", &[In(1), Len, In(3), Len], false),
    proxy(
        "call_proxy_get_property",
        &[In(1), Len, Out(4), Out(4)],
        false,
    ),
    proxy(
        "call_proxy_send_local_response",
        &[Value(403), In(2), Len, In(4), Len, In(6), Len, Value(0)],
        false,
    ),
    proxy(
        "call_proxy_get_shared_data",
        &[In(1), Len, Out(4), Out(4), Out(4)],
        false,
    ),
    proxy(
        "call_proxy_set_shared_data",
        &[In(1), Len, In(3), Len, Value(0)],
        false,
    ),
    proxy(
        "call_proxy_register_shared_queue",
        &[In(1), Len, Out(4)],
        true,
    ),
    proxy(
        "call_proxy_resolve_shared_queue",
        &[In(1), Len, In(3), Len, Out(4)],
        false,
    ),
    proxy(
        "call_proxy_dequeue_shared_queue",
        &[Value(999), Out(4), Out(4)],
        false,
    ),
    proxy(
        "call_proxy_enqueue_shared_queue",
        &[Value(999), In(2), Len],
        false,
    ),
    proxy(
        "call_proxy_get_header_map_value",
        &[Value(0), In(2), Len, Out(4), Out(4)],
        false,
    ),
    proxy(
        "call_proxy_add_header_map_value",
        &[Value(2), In(2), Len, In(4), Len],
        false,
    ),
    proxy(
        "call_proxy_replace_header_map_value",
        &[Value(1), In(2), Len, In(4), Len],
        false,
    ),
    proxy(
        "call_proxy_remove_header_map_value",
        &[Value(3), In(2), Len],
        false,
    ),
    proxy(
        "call_proxy_get_header_map_pairs",
        &[Value(0), Out(4), Out(4)],
        true,
    ),
    proxy(
        "call_proxy_set_header_map_pairs",
        &[Value(2), In(2), Len],
        false,
    ),
    proxy("call_proxy_get_header_map_size", &[Value(0), Out(4)], false),
    proxy(
        "call_proxy_get_buffer_status",
        &[Value(6), Out(4), Out(4)],
        true,
    ),
    proxy(
        "call_proxy_get_buffer_bytes",
        &[Value(6), Value(0), Value(8), Out(4), Out(4)],
        true,
    ),
    proxy(
        "call_proxy_set_buffer_bytes",
        &[Value(0), Value(0), Value(0), In(4), Len],
        false,
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
        true,
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
        false,
    ),
    proxy(
        "call_proxy_grpc_stream",
        &[In(1), Len, In(3), Len, In(5), Len, In(7), Len, Out(4)],
        false,
    ),
    proxy(
        "call_proxy_grpc_send",
        &[Value(6), In(2), Len, Value(0)],
        false,
    ),
    proxy("call_proxy_get_current_time_nanoseconds", &[Out(8)], true),
    proxy(
        "call_proxy_define_metric",
        &[Value(0), In(2), Len, Out(4)],
        true,
    ),
    proxy("call_proxy_get_metric", &[Value(4), Out(8)], false),
    proxy(
        "call_proxy_call_foreign_function",
        &[In(1), Len, In(3), Len, Out(4), Out(4)],
        false,
    ),
    wasi(
        "call_wasi_fd_write",
        &[Value(1), Iovs(2), Len, Out(4)],
        true,
    ),
    wasi(
        "call_wasi_fd_pwrite",
        &[Value(2), Iovs(2), Len, Value(0), Out(4)],
        true,
    ),
    wasi("call_wasi_environ_sizes_get", &[Out(4), Out(4)], true),
    wasi("call_wasi_args_sizes_get", &[Out(4), Out(4)], true),
    wasi(
        "call_wasi_clock_time_get",
        &[Value(0), Value(1), Out(8)],
        true,
    ),
    wasi("call_wasi_clock_res_get", &[Value(1), Out(8)], true),
    wasi("call_wasi_random_get", &[OutBuf(1), Len], true),
    wasi(
        "call_wasi_poll_oneoff",
        &[Value(0), Value(0), Value(0), Out(4)],
        true,
    ),
    wasi("call_wasi_fd_tell", &[Value(1), Out(8)], true),
    wasi(
        "call_wasi_fd_readdir",
        &[Value(3), Value(0), Value(0), Value(0), Out(4)],
        true,
    ),
    wasi(
        "call_wasi_path_readlink",
        &[Value(3), Value(0), Value(0), Value(0), Value(0), Out(4)],
        true,
    ),
    wasi("call_wasi_sock_accept", &[Value(3), Value(0), Out(8)], true),
    wasi(
        "call_wasi_sock_recv",
        &[Value(3), Value(0), Value(0), Value(0), Out(4), Out(2)],
        true,
    ),
    wasi(
        "call_wasi_sock_send",
        &[Value(3), Value(0), Value(0), Value(0), Out(4)],
        true,
    ),
    wasi("call_wasi_fd_fdstat_get", &[Value(1), Out(24)], false),
    wasi("call_wasi_environ_get", &[Out(4), Out(4)], false),
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
        0..u64::from(u32::MAX),
    ]
}

fn fits(pointer: u64, length: u64, memory_end: u64) -> bool {
    pointer + length <= memory_end
}

/// Runs one hostile call and checks its status.
fn check_call(
    sim: &mut Sim,
    root: u32,
    spec: &Spec,
    values: &[u64],
    memory_end: u64,
) -> Result<(), TestCaseError> {
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
    for (idx, arg) in spec.args.iter().enumerate() {
        let value = args[idx] as u64;
        match arg {
            In(len) => bad_input |= !fits(value, args[*len] as u64, memory_end),
            Iovs(count) => {
                let count = args[*count] as u64;
                bad_input |= count > 0 && !fits(value, count * 8, memory_end);
            }
            Out(size) => bad_output |= !fits(value, u64::from(*size), memory_end),
            OutBuf(len) => {
                let len = args[*len] as u64;
                bad_output |= len > 0 && len <= 65_536 && !fits(value, len, memory_end);
            }
            Len | Value(_) => {}
        }
    }
    let result = sim.call_guest_function(spec.export, root, &args);
    let status = match result {
        Ok(Some(status)) => status,
        Ok(None) => {
            return Err(TestCaseError::fail(format!(
                "{} returned nothing",
                spec.export
            )));
        }
        Err(trap) => {
            return Err(TestCaseError::fail(format!(
                "{} trapped: {trap} (args {args:?})",
                spec.export
            )));
        }
    };
    if bad_input || (spec.writes && bad_output) {
        prop_assert_eq!(status, spec.fault, "{} with {:?}", spec.export, args);
    }
    Ok(())
}

#[test]
fn hostile_pointers_and_lengths_fault_without_panicking() {
    let module = forwarding_module();
    let mut sim = Sim::builder(&module)
        .plugin("root", "cfg")
        .vm_configuration("vm-config")
        .build()
        .unwrap();
    sim.set_tracing(false);
    let sim = std::cell::RefCell::new(sim);
    let root = sim.borrow().root_context_id("root").unwrap();
    let memory_end = sim.borrow().memory_size() as u64;
    let strategy = (0..SPECS.len()).prop_flat_map(move |idx| {
        let values: Vec<BoxedStrategy<u64>> = SPECS[idx]
            .args
            .iter()
            .map(|arg| match arg {
                Len => length(memory_end).boxed(),
                Value(_) => Just(0u64).boxed(),
                Iovs(_) => pointer(memory_end).boxed(),
                _ => pointer(memory_end).boxed(),
            })
            .collect();
        (Just(idx), values)
    });
    let mut runner = TestRunner::new(Config {
        cases: 12_000,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&strategy, |(idx, values)| {
            check_call(
                &mut sim.borrow_mut(),
                root,
                &SPECS[idx],
                &values,
                memory_end,
            )
        })
        .unwrap();
}

/// The fd_write iovec count is a count of 8-byte entries: a count that makes the array
/// overflow the address space faults.
#[test]
fn fd_write_with_overflowing_iovec_count_faults() {
    let module = forwarding_module();
    let mut sim = Sim::builder(&module).plugin("root", "").build().unwrap();
    let root = sim.root_context_id("root").unwrap();
    let status = sim
        .call_guest_function("call_wasi_fd_write", root, &[1, 16, 0x2000_0001, 1024])
        .unwrap();
    assert_eq!(status, Some(EFAULT));
}
