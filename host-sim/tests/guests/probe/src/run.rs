//! Runs one script action: calls the host, then records `STATUS:value` under the step's label.

use serde_json::Value;

use crate::script::{Action, Step};
use crate::{Call, abi, with_vm};

/// The spec's status names, by number.
const STATUS_NAMES: &[&str] = &[
    "OK",
    "NOT_FOUND",
    "BAD_ARGUMENT",
    "SERIALIZATION_FAILURE",
    "PARSE_FAILURE",
    "BAD_EXPRESSION",
    "INVALID_MEMORY_ACCESS",
    "EMPTY",
    "CAS_MISMATCH",
    "RESULT_MISMATCH",
    "INTERNAL_FAILURE",
    "BROKEN_CONNECTION",
    "UNIMPLEMENTED",
];

fn status_name(status: u32) -> String {
    STATUS_NAMES
        .get(status as usize)
        .map_or_else(|| format!("STATUS_{status}"), |name| (*name).to_string())
}

fn map_type(name: &str) -> u32 {
    match name {
        "request_headers" => 0,
        "request_trailers" => 1,
        "response_headers" => 2,
        "response_trailers" => 3,
        "grpc_initial_metadata" => 4,
        "grpc_trailing_metadata" => 5,
        "http_call_response_headers" => 6,
        "http_call_response_trailers" => 7,
        other => other.parse().unwrap_or(u32::MAX),
    }
}

fn buffer_type(name: &str) -> u32 {
    match name {
        "request_body" => 0,
        "response_body" => 1,
        "downstream_data" => 2,
        "upstream_data" => 3,
        "http_call_response_body" => 4,
        "grpc_message" => 5,
        "vm_configuration" => 6,
        "plugin_configuration" => 7,
        "foreign_function_arguments" => 8,
        other => other.parse().unwrap_or(u32::MAX),
    }
}

fn stream_type(name: &str) -> u32 {
    match name {
        "request" => 0,
        "response" => 1,
        "downstream" => 2,
        "upstream" => 3,
        other => other.parse().unwrap_or(u32::MAX),
    }
}

fn metric_type(name: &str) -> u32 {
    match name {
        "counter" => 0,
        "gauge" => 1,
        "histogram" => 2,
        other => other.parse().unwrap_or(u32::MAX),
    }
}

/// Bytes as header-safe text: printable ASCII as is, `\\`, `\n`, `\r`, `\t`, else `\xNN`.
pub fn show(bytes: &[u8]) -> String {
    let mut text = String::new();
    for byte in bytes {
        match byte {
            b'\\' => text.push_str("\\\\"),
            b'\n' => text.push_str("\\n"),
            b'\r' => text.push_str("\\r"),
            b'\t' => text.push_str("\\t"),
            0x20..0x7f => text.push(char::from(*byte)),
            _ => text.push_str(&format!("\\x{byte:02x}")),
        }
    }
    text
}

fn show_pairs(pairs: &[(Vec<u8>, Vec<u8>)]) -> String {
    let pairs: Vec<Value> = pairs
        .iter()
        .map(|(key, value)| Value::from(vec![show(key), show(value)]))
        .collect();
    Value::from(pairs).to_string()
}

fn show_property(bytes: &[u8], format: &str) -> String {
    let eight = || -> Option<[u8; 8]> { bytes.try_into().ok() };
    let shown = match format {
        "status" => Some(String::new()),
        "string" => Some(String::from_utf8_lossy(bytes).into_owned()),
        "hex" => Some(format!("hex:{}", hex(bytes))),
        "int" => eight().map(|word| i64::from_le_bytes(word).to_string()),
        "uint" => eight().map(|word| u64::from_le_bytes(word).to_string()),
        "double" => eight().map(|word| f64::from_le_bytes(word).to_string()),
        "bool" => match bytes {
            [byte] => Some((*byte != 0).to_string()),
            _ => None,
        },
        "pairs" => abi::deserialize_pairs(bytes).map(|pairs| show_pairs(&pairs)),
        _ => Some(show(bytes)),
    };
    shown.unwrap_or_else(|| format!("unexpected:{}", show(bytes)))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn record(context_id: u32, label: &Option<String>, value: String) {
    if let Some(label) = label {
        with_vm(|vm| {
            vm.contexts
                .entry(context_id)
                .or_default()
                .records
                .push((label.clone(), value));
        });
    }
}

fn with_status(status: u32, value: &str) -> String {
    format!("{}:{value}", status_name(status))
}

fn pairs_of(pairs: &[(String, String)]) -> Vec<u8> {
    abi::serialize_pairs(pairs)
}

fn queue_id(name: &str) -> Option<u32> {
    with_vm(|vm| vm.queues.get(name).copied())
}

fn metric_id(name: &str) -> u32 {
    with_vm(|vm| vm.metrics.get(name).copied()).unwrap_or(u32::MAX)
}

/// The latest value recorded under `label` in this context (empty when none), else `literal`.
fn recorded_or(context_id: u32, label: &Option<String>, literal: &str) -> String {
    let Some(label) = label else {
        return literal.to_string();
    };
    with_vm(|vm| {
        vm.contexts
            .get(&context_id)
            .and_then(|context| {
                context
                    .records
                    .iter()
                    .rev()
                    .find(|(recorded, _)| recorded == label)
                    .map(|(_, value)| value.clone())
            })
            .unwrap_or_default()
    })
}

pub fn step(call: &Call, step: &Step) {
    let context_id = call.context_id;
    let result = run(call, &step.action);
    if let Some(result) = result {
        record(context_id, &step.label, result);
    }
}

/// Runs an action; `Some` is what to record under the step's label.
fn run(call: &Call, action: &Action) -> Option<String> {
    let context_id = call.context_id;
    let status_only = |status: u32| Some(with_status(status, ""));
    match action {
        Action::Log { level, message } => status_only(abi::log(*level, message)),
        Action::GetLogLevel {} => {
            let (status, level) = abi::get_log_level();
            Some(with_status(status, &level.to_string()))
        }
        Action::GetHeader { map, key } => {
            let (status, value) = abi::get_header_map_value(map_type(map), key);
            Some(with_status(status, &show(&value)))
        }
        Action::AddHeader { map, key, value } => {
            status_only(abi::add_header_map_value(map_type(map), key, value))
        }
        Action::ReplaceHeader { map, key, value } => {
            status_only(abi::replace_header_map_value(map_type(map), key, value))
        }
        Action::RemoveHeader { map, key } => {
            status_only(abi::remove_header_map_value(map_type(map), key))
        }
        Action::GetPairs { map } => {
            let (status, bytes) = abi::get_header_map_pairs(map_type(map));
            let shown = abi::deserialize_pairs(&bytes).map_or_else(
                || format!("unparsable:{}", show(&bytes)),
                |p| show_pairs(&p),
            );
            Some(with_status(status, &shown))
        }
        Action::SetPairs { map, pairs } => {
            status_only(abi::set_header_map_pairs(map_type(map), &pairs_of(pairs)))
        }
        Action::GetMapSize { map } => {
            let (status, size) = abi::get_header_map_size(map_type(map));
            Some(with_status(status, &size.to_string()))
        }
        Action::GetBuffer {
            buffer,
            start,
            size,
        } => {
            let size = size.or(call.size).unwrap_or(u32::MAX as usize);
            let (status, bytes) = abi::get_buffer_bytes(buffer_type(buffer), *start, size);
            Some(with_status(status, &show(&bytes)))
        }
        Action::SetBuffer {
            buffer,
            start,
            size,
            data,
        } => status_only(abi::set_buffer_bytes(
            buffer_type(buffer),
            *start,
            *size,
            data.as_bytes(),
        )),
        Action::GetBufferStatus { buffer } => {
            let (status, length, flags) = abi::get_buffer_status(buffer_type(buffer));
            Some(with_status(status, &format!("{length}:{flags}")))
        }
        Action::SendLocalResponse {
            status,
            details,
            body,
            body_from_records,
            headers,
            grpc_status,
        } => {
            let mut body = body.clone();
            if *body_from_records {
                let records = with_vm(|vm| {
                    std::mem::take(&mut vm.contexts.entry(context_id).or_default().records)
                });
                for (label, value) in records {
                    body.push_str(&format!("{label}={value}\n"));
                }
            }
            status_only(abi::send_local_response(
                *status,
                details,
                body.as_bytes(),
                &pairs_of(headers),
                *grpc_status,
            ))
        }
        Action::ContinueStream { stream } => status_only(abi::continue_stream(stream_type(stream))),
        Action::CloseStream { stream } => status_only(abi::close_stream(stream_type(stream))),
        Action::HttpCall {
            cluster,
            headers,
            body,
            trailers,
            timeout_ms,
        } => {
            let headers = headers.clone().unwrap_or_else(|| {
                vec![
                    (":method".into(), "GET".into()),
                    (":path".into(), "/".into()),
                    (":authority".into(), cluster.clone()),
                ]
            });
            let (status, token) = abi::http_call(
                cluster,
                &pairs_of(&headers),
                body.as_bytes(),
                &pairs_of(trailers),
                *timeout_ms,
            );
            if status == 0 {
                with_vm(|vm| vm.http_calls.insert(token, context_id));
            }
            status_only(status)
        }
        Action::GrpcCall {
            cluster,
            service,
            method,
            message,
            initial_metadata,
            timeout_ms,
        } => {
            let metadata = pairs_of(initial_metadata);
            let (status, token) = abi::grpc_call(&abi::GrpcCall {
                upstream: cluster,
                service,
                method,
                initial_metadata: &metadata,
                message: message.as_bytes(),
                timeout_milliseconds: *timeout_ms,
            });
            remember_grpc(context_id, status, token);
            status_only(status)
        }
        Action::GrpcStream {
            cluster,
            service,
            method,
            initial_metadata,
        } => {
            let metadata = pairs_of(initial_metadata);
            let (status, token) = abi::grpc_stream(cluster, service, method, &metadata);
            remember_grpc(context_id, status, token);
            status_only(status)
        }
        Action::GrpcSend {
            message,
            end_of_stream,
        } => {
            let token = with_vm(|vm| vm.contexts.entry(context_id).or_default().last_grpc_token);
            status_only(abi::grpc_send(token, message.as_bytes(), *end_of_stream))
        }
        Action::GrpcCancel {} => {
            let token = with_vm(|vm| vm.contexts.entry(context_id).or_default().last_grpc_token);
            status_only(abi::grpc_cancel(token))
        }
        Action::GrpcClose {} => {
            let token = with_vm(|vm| vm.contexts.entry(context_id).or_default().last_grpc_token);
            status_only(abi::grpc_close(token))
        }
        Action::GetProperty { path, r#as } => {
            let (status, bytes) = abi::get_property(&path.join("\0").into_bytes());
            let shown = if status == 0 {
                show_property(&bytes, r#as)
            } else {
                String::new()
            };
            Some(with_status(status, &shown))
        }
        Action::SetProperty { path, value } => status_only(abi::set_property(
            &path.join("\0").into_bytes(),
            value.as_bytes(),
        )),
        Action::GetSharedData { key } => {
            let (status, value, cas) = abi::get_shared_data(key);
            with_vm(|vm| vm.contexts.entry(context_id).or_default().last_cas = cas);
            Some(with_status(status, &show(&value)))
        }
        Action::SetSharedData {
            key,
            value,
            from,
            cas,
        } => {
            let value = recorded_or(context_id, from, value);
            let cas = match cas {
                Value::String(last) if last == "last" => {
                    with_vm(|vm| vm.contexts.entry(context_id).or_default().last_cas)
                }
                Value::Number(number) => number.as_u64().unwrap_or(0) as u32,
                _ => 0,
            };
            status_only(abi::set_shared_data(key, value.as_bytes(), cas))
        }
        Action::RegisterQueue { name } => {
            let (status, id) = abi::register_shared_queue(name);
            if status == 0 {
                with_vm(|vm| vm.queues.insert(name.clone(), id));
            }
            status_only(status)
        }
        Action::ResolveQueue { vm_id, name } => {
            let (status, id) = abi::resolve_shared_queue(vm_id, name);
            if status == 0 {
                with_vm(|vm| vm.queues.insert(name.clone(), id));
            }
            status_only(status)
        }
        Action::Enqueue { name, data, from } => {
            let data = recorded_or(context_id, from, data);
            let id = match queue_id(name) {
                Some(id) => id,
                None => {
                    let (status, id) = abi::resolve_shared_queue("", name);
                    if status != 0 {
                        return status_only(status);
                    }
                    with_vm(|vm| vm.queues.insert(name.clone(), id));
                    id
                }
            };
            status_only(abi::enqueue_shared_queue(id, data.as_bytes()))
        }
        Action::Dequeue { name } => {
            let id = queue_id(name).unwrap_or(u32::MAX);
            let (status, bytes) = abi::dequeue_shared_queue(id);
            Some(with_status(status, &show(&bytes)))
        }
        Action::DefineMetric { kind, name } => {
            let (status, id) = abi::define_metric(metric_type(kind), name);
            if status == 0 {
                with_vm(|vm| vm.metrics.insert(name.clone(), id));
            }
            status_only(status)
        }
        Action::IncrementMetric { name, delta } => {
            status_only(abi::increment_metric(metric_id(name), *delta))
        }
        Action::RecordMetric { name, value } => {
            status_only(abi::record_metric(metric_id(name), *value))
        }
        Action::GetMetric { name } => {
            let (status, value) = abi::get_metric(metric_id(name));
            Some(with_status(status, &value.to_string()))
        }
        Action::SetTickPeriod { ms } => status_only(abi::set_tick_period(*ms)),
        Action::GetStatus {} => {
            let (status, code, message) = abi::get_status();
            Some(with_status(status, &format!("{code}:{}", show(&message))))
        }
        Action::SetEffectiveContext { context } => {
            let id = match context {
                Value::String(name) if name == "root" => {
                    with_vm(|vm| vm.contexts.entry(context_id).or_default().root_id)
                }
                Value::Number(number) => number.as_u64().unwrap_or(0) as u32,
                _ => context_id,
            };
            status_only(abi::set_effective_context(id))
        }
        Action::CallForeignFunction { name, arguments } => {
            let (status, bytes) = abi::call_foreign_function(name, arguments.as_bytes());
            Some(with_status(status, &show(&bytes)))
        }
        Action::Done {} => status_only(abi::done()),
        Action::Note { value } => Some(value.clone()),
        Action::CallbackContext {} => Some(
            if call.host_context_id == call.context_id {
                "own"
            } else if with_vm(|vm| vm.scripts.contains_key(&call.host_context_id)) {
                "root"
            } else {
                "other"
            }
            .to_string(),
        ),
        Action::Args {} => Some(
            call.arguments
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(","),
        ),
        Action::Trace { value } => {
            with_vm(|vm| vm.trace.push(value.clone()));
            None
        }
        Action::Emit {
            map,
            prefix,
            root,
            trace,
        } => {
            emit(context_id, map_type(map), prefix, *root, *trace);
            None
        }
        Action::LogRecords {} => {
            let records = with_vm(|vm| {
                let context = vm.contexts.entry(context_id).or_default();
                let shown: Vec<String> = context
                    .records
                    .iter()
                    .map(|(label, value)| format!("{label}={value}"))
                    .collect();
                format!(
                    "probe: context {context_id} (root {}) in {}: {}",
                    context.root_id,
                    call.callback,
                    shown.join(" ")
                )
            });
            abi::log(2, &records);
            None
        }
        Action::Trap {} => trap(),
    }
}

fn emit(context_id: u32, map: u32, prefix: &str, root: bool, trace: bool) {
    let headers = with_vm(|vm| {
        let context = vm.contexts.entry(context_id).or_default();
        let root_id = context.root_id;
        let mut headers = std::mem::take(&mut context.records);
        if root && root_id != context_id {
            let root_records = vm
                .contexts
                .get(&root_id)
                .map(|root| root.records.clone())
                .unwrap_or_default();
            headers.extend(root_records);
        }
        if trace {
            headers.push(("trace".into(), std::mem::take(&mut vm.trace).join(",")));
        }
        headers
    });
    for (label, value) in headers {
        let key = format!("{prefix}{}", label.to_ascii_lowercase());
        abi::add_header_map_value(map, &key, &value);
    }
}

#[cfg(target_arch = "wasm32")]
fn trap() -> ! {
    core::arch::wasm32::unreachable()
}

#[cfg(not(target_arch = "wasm32"))]
fn trap() -> ! {
    std::process::abort()
}

/// After a gRPC call or stream started with `status`: the context's last token, and which
/// context the token's callbacks belong to.
fn remember_grpc(context_id: u32, status: u32, token: u32) {
    if status == 0 {
        with_vm(|vm| {
            vm.contexts.entry(context_id).or_default().last_grpc_token = token;
            vm.grpc_calls.insert(token, context_id);
        });
    }
}
