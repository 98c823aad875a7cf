//! guest-probe: a scriptable Proxy-Wasm 0.2.1 test guest for host-sim's differential scenarios.
//!
//! Its plugin configuration is a script that says, per callback, which host functions to call
//! and what to return; results are recorded as `label=STATUS:value` and shown to the client
//! through `emit` (response headers) or a local reply body, so a scenario can compare what a
//! client sees from host-sim and from a real Envoy. README.md documents the script.
//!
//! It is not a filter and not built on `filterkit` or `proxy-wasm`: it declares the ABI from
//! the spec itself (`abi`), so an SDK's reading of the spec cannot hide a host's behaviour.
//! Start reading at [`dispatch`]; the actions are in `run`.
#![allow(
    unsafe_code,
    reason = "a test guest is the ABI's other side: it declares the host imports and exports \
              the callbacks itself (extern blocks, #[no_mangle], pointers the host writes), \
              which the workspace keeps inside the SDK for filters"
)]

mod abi;
mod run;
mod script;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use serde_json::Value;

use crate::script::Script;

/// What one context remembers.
#[derive(Default)]
struct Context {
    /// The root context (itself for a root context).
    root_id: u32,
    /// Results in the order they were recorded: (label, value).
    records: Vec<(String, String)>,
    /// Calls so far per callback name.
    calls: BTreeMap<&'static str, u32>,
    /// The request's `x-probe-case` header, read once in on_request_headers.
    case: Option<String>,
    /// The cas returned by this context's last get_shared_data.
    last_cas: u32,
    /// The token of this context's last gRPC call.
    last_grpc_token: u32,
}

/// Everything the VM remembers; one VM is single-threaded.
#[derive(Default)]
struct Vm {
    /// Per root context, its plugin's script.
    scripts: BTreeMap<u32, Rc<Script>>,
    /// The VM configuration's script, for on_vm_start.
    vm_script: Option<Rc<Script>>,
    contexts: BTreeMap<u32, Context>,
    queues: BTreeMap<String, u32>,
    metrics: BTreeMap<String, u32>,
    trace: Vec<String>,
    /// The context that made each HTTP call, by token: Envoy calls back the root context.
    http_calls: BTreeMap<u32, u32>,
    /// The context that made each gRPC call, by token.
    grpc_calls: BTreeMap<u32, u32>,
}

thread_local! {
    static VM: RefCell<Vm> = RefCell::default();
}

fn with_vm<T>(body: impl FnOnce(&mut Vm) -> T) -> T {
    VM.with(|vm| body(&mut vm.borrow_mut()))
}

/// The callback being run.
pub(crate) struct Call {
    pub context_id: u32,
    /// The context id the host passed, when the probe runs the callback in another context
    /// (a callout's response runs in the context that made the call).
    pub host_context_id: u32,
    pub callback: &'static str,
    pub arguments: Vec<u64>,
    /// The size argument (body, message, configuration), the default for get_buffer.
    pub size: Option<usize>,
    pub end_of_stream: Option<bool>,
}

/// Runs a callback's script in its context and returns its result (`default` when the
/// matching rule says nothing, or no rule matches).
fn dispatch(call: &Call, default: Value) -> Value {
    let (script, n_call) = with_vm(|vm| {
        let context = vm.contexts.entry(call.context_id).or_default();
        let n_call = context.calls.entry(call.callback).or_default();
        *n_call += 1;
        let n_call = *n_call;
        let root_id = context.root_id;
        let script = if call.callback == "on_vm_start" {
            vm.vm_script.clone()
        } else {
            vm.scripts.get(&root_id).cloned()
        };
        (script, n_call)
    });
    let Some(script) = script else {
        return default;
    };
    let Some(rules) = script.callbacks.get(call.callback) else {
        return default;
    };
    if script.uses_case && call.callback == "on_request_headers" && n_call == 1 {
        let (status, value) = abi::get_header_map_value(0, "x-probe-case");
        let case = (status == 0).then(|| String::from_utf8_lossy(&value).into_owned());
        with_vm(|vm| vm.contexts.entry(call.context_id).or_default().case = case);
    }
    let case = with_vm(|vm| {
        vm.contexts
            .get(&call.context_id)
            .and_then(|context| context.case.clone())
    });
    let rule = rules.iter().find(|rule| {
        let when = &rule.when;
        when.eos.is_none_or(|eos| call.end_of_stream == Some(eos))
            && when.call.is_none_or(|n| n == n_call)
            && when.from_call.is_none_or(|n| n_call >= n)
            && when
                .case
                .as_ref()
                .is_none_or(|wanted| case.as_deref() == Some(wanted.as_str()))
    });
    let Some(rule) = rule else {
        return default;
    };
    for step in &rule.actions {
        run::step(call, step);
    }
    rule.result.clone().unwrap_or(default)
}

/// A header, body or trailers callback's action as the ABI's number.
fn filter_status(value: &Value) -> u32 {
    match value {
        Value::Number(number) => number.as_u64().unwrap_or(0) as u32,
        Value::String(name) => match name.as_str() {
            "pause" | "stop" | "stop_iteration" => 1,
            "continue_and_end_stream" => 2,
            "stop_all_iteration_and_buffer" => 3,
            "stop_all_iteration_and_watermark" => 4,
            _ => 0,
        },
        _ => 0,
    }
}

fn truth(value: &Value) -> u32 {
    match value {
        Value::Bool(value) => u32::from(*value),
        Value::Number(number) => number.as_u64().unwrap_or(1) as u32,
        _ => 1,
    }
}

fn call(
    context_id: u32,
    callback: &'static str,
    arguments: &[u64],
    size: Option<usize>,
    end_of_stream: Option<bool>,
) -> Call {
    Call {
        context_id,
        host_context_id: context_id,
        callback,
        arguments: arguments.to_vec(),
        size,
        end_of_stream,
    }
}

fn stream_callback(callback: &'static str, context_id: u32, size: usize, eos: u32) -> u32 {
    let call = call(
        context_id,
        callback,
        &[size as u64, u64::from(eos)],
        Some(size),
        Some(eos != 0),
    );
    filter_status(&dispatch(&call, Value::from("continue")))
}

fn trailers_callback(callback: &'static str, context_id: u32, n_trailers: usize) -> u32 {
    let call = call(context_id, callback, &[n_trailers as u64], None, None);
    filter_status(&dispatch(&call, Value::from("continue")))
}

#[unsafe(no_mangle)]
pub extern "C" fn proxy_abi_version_0_2_1() {}

#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_memory_allocate(size: usize) -> *mut u8 {
    abi::allocate(size)
}

#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_context_create(context_id: u32, parent_context_id: u32) {
    with_vm(|vm| {
        let root_id = if parent_context_id == 0 {
            context_id
        } else {
            parent_context_id
        };
        vm.contexts.insert(
            context_id,
            Context {
                root_id,
                ..Context::default()
            },
        );
    });
    let call = call(
        context_id,
        "on_context_create",
        &[u64::from(parent_context_id)],
        None,
        None,
    );
    dispatch(&call, Value::Null);
}

#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_vm_start(root_context_id: u32, vm_configuration_size: usize) -> u32 {
    let (status, bytes) = abi::get_buffer_bytes(6, 0, vm_configuration_size);
    if status == 0 && !bytes.is_empty() {
        match script::parse(&bytes) {
            Ok(script) => with_vm(|vm| vm.vm_script = Some(Rc::new(script))),
            Err(error) => {
                abi::log(4, &format!("probe: bad vm configuration: {error}"));
                return 0;
            }
        }
    }
    let call = call(
        root_context_id,
        "on_vm_start",
        &[vm_configuration_size as u64],
        Some(vm_configuration_size),
        None,
    );
    truth(&dispatch(&call, Value::Bool(true)))
}

#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_configure(
    root_context_id: u32,
    plugin_configuration_size: usize,
) -> u32 {
    let (_, bytes) = abi::get_buffer_bytes(7, 0, plugin_configuration_size);
    match script::parse(&bytes) {
        Ok(script) => with_vm(|vm| {
            vm.scripts.insert(root_context_id, Rc::new(script));
        }),
        Err(error) => {
            abi::log(4, &format!("probe: bad plugin configuration: {error}"));
            return 0;
        }
    }
    let call = call(
        root_context_id,
        "on_configure",
        &[plugin_configuration_size as u64],
        Some(plugin_configuration_size),
        None,
    );
    truth(&dispatch(&call, Value::Bool(true)))
}

#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_tick(root_context_id: u32) {
    dispatch(
        &call(root_context_id, "on_tick", &[], None, None),
        Value::Null,
    );
}

#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_queue_ready(root_context_id: u32, queue_id: u32) {
    let call = call(
        root_context_id,
        "on_queue_ready",
        &[u64::from(queue_id)],
        None,
        None,
    );
    dispatch(&call, Value::Null);
}

#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_request_headers(context_id: u32, n_headers: usize, eos: u32) -> u32 {
    stream_callback("on_request_headers", context_id, n_headers, eos)
}

#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_request_body(context_id: u32, body_size: usize, eos: u32) -> u32 {
    stream_callback("on_request_body", context_id, body_size, eos)
}

#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_request_trailers(context_id: u32, n_trailers: usize) -> u32 {
    trailers_callback("on_request_trailers", context_id, n_trailers)
}

#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_response_headers(context_id: u32, n_headers: usize, eos: u32) -> u32 {
    stream_callback("on_response_headers", context_id, n_headers, eos)
}

#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_response_body(context_id: u32, body_size: usize, eos: u32) -> u32 {
    stream_callback("on_response_body", context_id, body_size, eos)
}

#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_response_trailers(context_id: u32, n_trailers: usize) -> u32 {
    trailers_callback("on_response_trailers", context_id, n_trailers)
}

#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_log(context_id: u32) {
    dispatch(&call(context_id, "on_log", &[], None, None), Value::Null);
}

#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_done(context_id: u32) -> u32 {
    truth(&dispatch(
        &call(context_id, "on_done", &[], None, None),
        Value::Bool(true),
    ))
}

#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_delete(context_id: u32) {
    dispatch(&call(context_id, "on_delete", &[], None, None), Value::Null);
    with_vm(|vm| vm.contexts.remove(&context_id));
}

/// Runs a callout callback in the context that made the call. Envoy (cpp-host) makes every
/// callout on behalf of the root context and calls it back with the root context's id, so, as
/// the SDKs do, the probe finds the caller by token and makes it the effective context.
fn callout_callback(mut call: Call, token: u32, grpc: bool, last: bool) {
    let origin = with_vm(|vm| {
        let calls = if grpc {
            &mut vm.grpc_calls
        } else {
            &mut vm.http_calls
        };
        if last {
            calls.remove(&token)
        } else {
            calls.get(&token).copied()
        }
    });
    if let Some(origin) = origin.filter(|origin| *origin != call.context_id) {
        abi::set_effective_context(origin);
        call.context_id = origin;
    }
    dispatch(&call, Value::Null);
}

#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_http_call_response(
    context_id: u32,
    token: u32,
    n_headers: usize,
    body_size: usize,
    n_trailers: usize,
) {
    let call = call(
        context_id,
        "on_http_call_response",
        &[n_headers as u64, body_size as u64, n_trailers as u64],
        Some(body_size),
        None,
    );
    callout_callback(call, token, false, true);
}

#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_grpc_receive_initial_metadata(context_id: u32, token: u32, n: usize) {
    let call = call(
        context_id,
        "on_grpc_receive_initial_metadata",
        &[n as u64],
        None,
        None,
    );
    callout_callback(call, token, true, false);
}

#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_grpc_receive(context_id: u32, token: u32, message_size: usize) {
    let call = call(
        context_id,
        "on_grpc_receive",
        &[message_size as u64],
        Some(message_size),
        None,
    );
    callout_callback(call, token, true, false);
}

#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_grpc_receive_trailing_metadata(context_id: u32, token: u32, n: usize) {
    let call = call(
        context_id,
        "on_grpc_receive_trailing_metadata",
        &[n as u64],
        None,
        None,
    );
    callout_callback(call, token, true, false);
}

#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_grpc_close(context_id: u32, token: u32, status_code: u32) {
    let call = call(
        context_id,
        "on_grpc_close",
        &[u64::from(status_code)],
        None,
        None,
    );
    callout_callback(call, token, true, true);
}
