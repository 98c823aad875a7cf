//! What the trace records when a host function fails: one case per host function and per
//! way it can fail (an input range past the end of memory, an out-pointer past it, an unknown
//! map, buffer or metric code, something not found). `memory_safety.rs` checks the statuses
//! over many pointers; these snapshots pin the recorded lines, so a change in what a failed
//! call records (or in the status it records) shows up here.
//!
//! Each case is the body of `proxy_on_request_headers` on a stream (request headers
//! available, ABI 0.2.1) ending in one call whose status the guest then logs as two digits,
//! so the snapshot also shows that the status the trace records is the one the guest got.
//! The frame around the calls (context creation, the callback, the log, Continue) is checked
//! by `check` and left out of the snapshots.
//! Memory is two pages: 131072 is the first address past its end.

use expect_test::{Expect, expect};
use filterkit_host_sim::scenario::render_outcome;
use filterkit_host_sim::{Sim, Status};

use crate::guest::{Guest, data};

/// Strings the cases refer to: offset, text.
const STRINGS: &[(u32, &str)] = &[
    (100, "x-a"),
    (120, "x-new"),
    (140, "value"),
    (160, "plugin_root_id"),
    (220, "auth"),
    (240, "missing"),
    (260, "key"),
    (280, "queue"),
    (300, "requests"),
    (320, "compress"),
    (360, "hello"),
    (380, "fail"),
];

/// Where the guest writes the two digits of the status it got.
const ECHO_AT: u32 = 50;

/// Runs `guest_call` (WAT leaving an i32 status on the stack; earlier calls may set things
/// up) in `proxy_on_request_headers` and compares the trace, the callback's outcome and the
/// status the guest got with `expect`.
fn check(guest_call: &str, expect: Expect) {
    let guest = Guest {
        fields: STRINGS
            .iter()
            .map(|(offset, text)| data(*offset, text))
            .collect(),
        // `$n` (the header count) is reused as the local holding the status.
        request_headers: Some(format!(
            "{guest_call}
             local.set $n
             (i32.store8 (i32.const {ECHO_AT})
               (i32.add (i32.const 48) (i32.div_u (local.get $n) (i32.const 10))))
             (i32.store8 (i32.const {echo_ones})
               (i32.add (i32.const 48) (i32.rem_u (local.get $n) (i32.const 10))))
             (drop (call $proxy_log (i32.const 2) (i32.const {ECHO_AT}) (i32.const 2)))
             i32.const 0",
            echo_ones = ECHO_AT + 1,
        )),
        without_forwarders: true,
        ..Guest::default()
    };
    let module = guest.module();
    let mut sim = Sim::builder(&module)
        .plugin("root", "config")
        .vm_id("vm1")
        .vm_configuration("vm-config")
        .cluster("auth")
        .foreign_function("hello", |args| Ok([b"hi ", args].concat()))
        .foreign_function("fail", |_| Err(Status::InternalFailure))
        .build()
        .unwrap();
    sim.clear_trace();
    let mut stream = sim.stream("root").unwrap();
    let outcome =
        stream.send_request_headers(&[(":method", "GET"), (":path", "/"), ("x-a", "1")], false);
    let echoed = &sim
        .logs()
        .last()
        .expect("the guest logs the status")
        .message;
    let code: u32 = echoed.parse().expect("two digits");
    let got = if guest_call.contains("$wasi_") {
        format!("errno {code}")
    } else {
        Status::from_code(code).map_or_else(|| code.to_string(), |status| status.name().into())
    };
    let trace = sim.render_trace();
    let outcome = render_outcome(&outcome);
    // Most cases run in the same frame (the stream's creation, the callback, the guest's log
    // of the status, Continue): it is checked here and only the calls inside it are shown.
    let end_of_frame = format!("  log info \"{echoed}\"\n  => 0\n");
    let inside_frame = trace
        .strip_prefix(FRAME_START)
        .and_then(|rest| rest.strip_suffix(&end_of_frame))
        .filter(|_| outcome == "Continue");
    let shown = match inside_frame {
        Some(calls) => calls
            .lines()
            .map(|line| format!("{}\n", line.strip_prefix("  ").unwrap_or(line)))
            .collect(),
        None => format!("{trace}-> {outcome}\n"),
    };
    expect.assert_eq(&format!("{shown}guest got {got}\n"));
}

/// The trace every case starts with: the stream's context, then its request headers callback.
const FRAME_START: &str =
    "proxy_on_context_create(ctx=2, 1)\n  => ()\nproxy_on_request_headers(ctx=2, 3, 0)\n";

#[test]
fn log_with_unknown_level_is_bad_argument() {
    check(
        "(call $proxy_log (i32.const 6) (i32.const 140) (i32.const 5))",
        expect![[r#"
            proxy_log(6) -> BAD_ARGUMENT
            guest got BAD_ARGUMENT
        "#]],
    );
}

#[test]
fn log_with_message_past_memory_is_invalid_memory_access() {
    check(
        "(call $proxy_log (i32.const 2) (i32.const 131072) (i32.const 5))",
        expect![[r#"
            proxy_log(info, 131072, 5) -> INVALID_MEMORY_ACCESS
            guest got INVALID_MEMORY_ACCESS
        "#]],
    );
}

#[test]
fn log_with_unknown_level_and_message_past_memory_is_bad_argument() {
    check(
        "(call $proxy_log (i32.const 6) (i32.const 131072) (i32.const 5))",
        expect![[r#"
            proxy_log(6) -> BAD_ARGUMENT
            guest got BAD_ARGUMENT
        "#]],
    );
}

#[test]
fn get_log_level_into_pointer_past_memory() {
    check(
        "(call $proxy_get_log_level (i32.const 131072))",
        expect![[r#"
            proxy_get_log_level() -> INVALID_MEMORY_ACCESS
            guest got INVALID_MEMORY_ACCESS
        "#]],
    );
}

#[test]
fn get_status_code_pointer_past_memory() {
    check(
        "(call $proxy_get_status (i32.const 131072) (i32.const 8) (i32.const 12))",
        expect![[r#"
            proxy_get_status(0) -> INVALID_MEMORY_ACCESS ""
            guest got INVALID_MEMORY_ACCESS
        "#]],
    );
}

#[test]
fn get_status_message_pointer_past_memory() {
    check(
        "(call $proxy_get_status (i32.const 16) (i32.const 131072) (i32.const 12))",
        expect![[r#"
            proxy_get_status(0) -> INVALID_MEMORY_ACCESS ""
            guest got INVALID_MEMORY_ACCESS
        "#]],
    );
}

#[test]
fn set_property_key_past_memory() {
    check(
        "(call $proxy_set_property (i32.const 131072) (i32.const 3) (i32.const 140) (i32.const 5))",
        expect![[r#"
            proxy_set_property(131072, 3, 140, 5) -> INVALID_MEMORY_ACCESS
            guest got INVALID_MEMORY_ACCESS
        "#]],
    );
}

#[test]
fn set_property_value_past_memory() {
    check(
        "(call $proxy_set_property (i32.const 260) (i32.const 3) (i32.const 131072) (i32.const 5))",
        expect![[r#"
            proxy_set_property(260, 3, 131072, 5) -> INVALID_MEMORY_ACCESS
            guest got INVALID_MEMORY_ACCESS
        "#]],
    );
}

#[test]
fn get_property_path_past_memory() {
    check(
        "(call $proxy_get_property (i32.const 131072) (i32.const 14) (i32.const 8) (i32.const 12))",
        expect![[r#"
            proxy_get_property(131072, 14) -> INVALID_MEMORY_ACCESS
            guest got INVALID_MEMORY_ACCESS
        "#]],
    );
}

#[test]
fn get_property_value_pointer_past_memory() {
    check(
        "(call $proxy_get_property (i32.const 160) (i32.const 14) (i32.const 131072) (i32.const 12))",
        expect![[r#"
            proxy_get_property("plugin_root_id") -> INVALID_MEMORY_ACCESS "root"
            guest got INVALID_MEMORY_ACCESS
        "#]],
    );
}

#[test]
fn get_property_value_size_pointer_past_memory() {
    check(
        "(call $proxy_get_property (i32.const 160) (i32.const 14) (i32.const 8) (i32.const 131072))",
        expect![[r#"
            proxy_get_property("plugin_root_id") -> INVALID_MEMORY_ACCESS "root"
            guest got INVALID_MEMORY_ACCESS
        "#]],
    );
}

#[test]
fn get_property_unknown_path_is_not_found() {
    check(
        "(call $proxy_get_property (i32.const 240) (i32.const 7) (i32.const 8) (i32.const 12))",
        expect![[r#"
            proxy_get_property("missing") -> NOT_FOUND
            guest got NOT_FOUND
        "#]],
    );
}

#[test]
fn get_property_unknown_path_with_out_pointers_past_memory_is_not_found() {
    check(
        "(call $proxy_get_property (i32.const 240) (i32.const 7) (i32.const 131072) (i32.const 131072))",
        expect![[r#"
            proxy_get_property("missing") -> NOT_FOUND
            guest got NOT_FOUND
        "#]],
    );
}

#[test]
fn send_local_response_details_past_memory() {
    check(
        "(call $proxy_send_local_response (i32.const 403) (i32.const 131072) (i32.const 5) (i32.const 140) (i32.const 5) (i32.const 0) (i32.const 0) (i32.const -1))",
        expect![[r#"
            proxy_send_local_response(403) -> INVALID_MEMORY_ACCESS
            guest got INVALID_MEMORY_ACCESS
        "#]],
    );
}

#[test]
fn send_local_response_body_past_memory() {
    check(
        "(call $proxy_send_local_response (i32.const 403) (i32.const 360) (i32.const 5) (i32.const 131072) (i32.const 5) (i32.const 0) (i32.const 0) (i32.const -1))",
        expect![[r#"
            proxy_send_local_response(403) -> INVALID_MEMORY_ACCESS
            guest got INVALID_MEMORY_ACCESS
        "#]],
    );
}

#[test]
fn send_local_response_headers_past_memory() {
    check(
        "(call $proxy_send_local_response (i32.const 403) (i32.const 360) (i32.const 5) (i32.const 140) (i32.const 5) (i32.const 131072) (i32.const 8) (i32.const -1))",
        expect![[r#"
            proxy_send_local_response(403) -> INVALID_MEMORY_ACCESS
            guest got INVALID_MEMORY_ACCESS
        "#]],
    );
}

#[test]
fn set_effective_context_unknown_id_is_bad_argument() {
    check(
        "(call $proxy_set_effective_context (i32.const 99))",
        expect![[r#"
            proxy_set_effective_context(99) -> BAD_ARGUMENT
            guest got BAD_ARGUMENT
        "#]],
    );
}

#[test]
fn done_from_a_stream_is_not_found() {
    check(
        "(call $proxy_done)",
        expect![[r#"
            proxy_done() -> NOT_FOUND
            guest got NOT_FOUND
        "#]],
    );
}

#[test]
fn call_foreign_function_name_past_memory() {
    check(
        "(call $proxy_call_foreign_function (i32.const 131072) (i32.const 5) (i32.const 140) (i32.const 5) (i32.const 8) (i32.const 12))",
        expect![[r#"
            proxy_call_foreign_function(131072, 5) -> INVALID_MEMORY_ACCESS
            guest got INVALID_MEMORY_ACCESS
        "#]],
    );
}

#[test]
fn call_foreign_function_args_past_memory() {
    check(
        "(call $proxy_call_foreign_function (i32.const 360) (i32.const 5) (i32.const 131072) (i32.const 5) (i32.const 8) (i32.const 12))",
        expect![[r#"
            proxy_call_foreign_function("hello") -> INVALID_MEMORY_ACCESS
            guest got INVALID_MEMORY_ACCESS
        "#]],
    );
}

#[test]
fn call_foreign_function_unknown_is_not_found() {
    check(
        "(call $proxy_call_foreign_function (i32.const 240) (i32.const 7) (i32.const 140) (i32.const 5) (i32.const 8) (i32.const 12))",
        expect![[r#"
            proxy_call_foreign_function("missing", "value") -> NOT_FOUND
            guest got NOT_FOUND
        "#]],
    );
}

#[test]
fn call_foreign_function_results_pointer_past_memory() {
    check(
        "(call $proxy_call_foreign_function (i32.const 360) (i32.const 5) (i32.const 140) (i32.const 5) (i32.const 131072) (i32.const 12))",
        expect![[r#"
            proxy_call_foreign_function("hello", "value") -> INVALID_MEMORY_ACCESS "hi value"
            guest got INVALID_MEMORY_ACCESS
        "#]],
    );
}

#[test]
fn call_foreign_function_results_size_pointer_past_memory() {
    check(
        "(call $proxy_call_foreign_function (i32.const 360) (i32.const 5) (i32.const 140) (i32.const 5) (i32.const 8) (i32.const 131072))",
        expect![[r#"
            proxy_call_foreign_function("hello", "value") -> INVALID_MEMORY_ACCESS "hi value"
            guest got INVALID_MEMORY_ACCESS
        "#]],
    );
}

#[test]
fn call_foreign_function_failing_answers_its_status() {
    check(
        "(call $proxy_call_foreign_function (i32.const 380) (i32.const 4) (i32.const 140) (i32.const 5) (i32.const 8) (i32.const 12))",
        expect![[r#"
            proxy_call_foreign_function("fail", "value") -> INTERNAL_FAILURE
            guest got INTERNAL_FAILURE
        "#]],
    );
}

#[test]
fn get_shared_data_key_past_memory() {
    check(
        "(call $proxy_get_shared_data (i32.const 131072) (i32.const 3) (i32.const 8) (i32.const 12) (i32.const 16))",
        expect![[r#"
            proxy_get_shared_data(131072, 3) -> INVALID_MEMORY_ACCESS
            guest got INVALID_MEMORY_ACCESS
        "#]],
    );
}

#[test]
fn get_shared_data_unknown_key_is_not_found() {
    check(
        "(call $proxy_get_shared_data (i32.const 240) (i32.const 7) (i32.const 8) (i32.const 12) (i32.const 16))",
        expect![[r#"
            proxy_get_shared_data("missing") -> NOT_FOUND
            guest got NOT_FOUND
        "#]],
    );
}

#[test]
fn get_shared_data_value_pointer_past_memory() {
    check(
        "(drop (call $proxy_set_shared_data (i32.const 260) (i32.const 3) (i32.const 140) (i32.const 5) (i32.const 0))) (call $proxy_get_shared_data (i32.const 260) (i32.const 3) (i32.const 131072) (i32.const 12) (i32.const 16))",
        expect![[r#"
            proxy_set_shared_data(0, "key", "value") -> OK
            proxy_get_shared_data("key") -> INVALID_MEMORY_ACCESS "value"
            guest got INVALID_MEMORY_ACCESS
        "#]],
    );
}

#[test]
fn get_shared_data_cas_pointer_past_memory() {
    check(
        "(drop (call $proxy_set_shared_data (i32.const 260) (i32.const 3) (i32.const 140) (i32.const 5) (i32.const 0))) (call $proxy_get_shared_data (i32.const 260) (i32.const 3) (i32.const 8) (i32.const 12) (i32.const 131072))",
        expect![[r#"
            proxy_set_shared_data(0, "key", "value") -> OK
            proxy_get_shared_data("key") -> INVALID_MEMORY_ACCESS "value"
            guest got INVALID_MEMORY_ACCESS
        "#]],
    );
}

#[test]
fn set_shared_data_key_past_memory() {
    check(
        "(call $proxy_set_shared_data (i32.const 131072) (i32.const 3) (i32.const 140) (i32.const 5) (i32.const 0))",
        expect![[r#"
            proxy_set_shared_data(131072, 3, 140, 5) -> INVALID_MEMORY_ACCESS
            guest got INVALID_MEMORY_ACCESS
        "#]],
    );
}

#[test]
fn set_shared_data_value_past_memory() {
    check(
        "(call $proxy_set_shared_data (i32.const 260) (i32.const 3) (i32.const 131072) (i32.const 5) (i32.const 0))",
        expect![[r#"
            proxy_set_shared_data(260, 3, 131072, 5) -> INVALID_MEMORY_ACCESS
            guest got INVALID_MEMORY_ACCESS
        "#]],
    );
}

#[test]
fn set_shared_data_stale_cas_is_cas_mismatch() {
    check(
        "(drop (call $proxy_set_shared_data (i32.const 260) (i32.const 3) (i32.const 140) (i32.const 5) (i32.const 0))) (call $proxy_set_shared_data (i32.const 260) (i32.const 3) (i32.const 140) (i32.const 5) (i32.const 77))",
        expect![[r#"
            proxy_set_shared_data(0, "key", "value") -> OK
            proxy_set_shared_data(77, "key", "value") -> CAS_MISMATCH
            guest got CAS_MISMATCH
        "#]],
    );
}

#[test]
fn register_shared_queue_name_past_memory() {
    check(
        "(call $proxy_register_shared_queue (i32.const 131072) (i32.const 5) (i32.const 8))",
        expect![[r#"
            proxy_register_shared_queue(131072, 5) -> INVALID_MEMORY_ACCESS
            guest got INVALID_MEMORY_ACCESS
        "#]],
    );
}

#[test]
fn register_shared_queue_token_pointer_past_memory() {
    check(
        "(call $proxy_register_shared_queue (i32.const 280) (i32.const 5) (i32.const 131072))",
        expect![[r#"
            proxy_register_shared_queue(1, "queue") -> INVALID_MEMORY_ACCESS
            guest got INVALID_MEMORY_ACCESS
        "#]],
    );
}

#[test]
fn resolve_shared_queue_vm_id_past_memory() {
    check(
        "(call $proxy_resolve_shared_queue (i32.const 131072) (i32.const 3) (i32.const 280) (i32.const 5) (i32.const 8))",
        expect![[r#"
            proxy_resolve_shared_queue(131072, 3, 280, 5) -> INVALID_MEMORY_ACCESS
            guest got INVALID_MEMORY_ACCESS
        "#]],
    );
}

#[test]
fn resolve_shared_queue_name_past_memory() {
    check(
        "(call $proxy_resolve_shared_queue (i32.const 0) (i32.const 0) (i32.const 131072) (i32.const 5) (i32.const 8))",
        expect![[r#"
            proxy_resolve_shared_queue(0, 0, 131072, 5) -> INVALID_MEMORY_ACCESS
            guest got INVALID_MEMORY_ACCESS
        "#]],
    );
}

#[test]
fn resolve_shared_queue_unknown_is_not_found() {
    check(
        "(call $proxy_resolve_shared_queue (i32.const 0) (i32.const 0) (i32.const 240) (i32.const 7) (i32.const 8))",
        expect![[r#"
            proxy_resolve_shared_queue("", "missing") -> NOT_FOUND
            guest got NOT_FOUND
        "#]],
    );
}

#[test]
fn resolve_shared_queue_unknown_with_token_pointer_past_memory_is_not_found() {
    check(
        "(call $proxy_resolve_shared_queue (i32.const 0) (i32.const 0) (i32.const 240) (i32.const 7) (i32.const 131072))",
        expect![[r#"
            proxy_resolve_shared_queue("", "missing") -> NOT_FOUND
            guest got NOT_FOUND
        "#]],
    );
}

#[test]
fn resolve_shared_queue_token_pointer_past_memory() {
    check(
        "(drop (call $proxy_register_shared_queue (i32.const 280) (i32.const 5) (i32.const 8))) (call $proxy_resolve_shared_queue (i32.const 0) (i32.const 0) (i32.const 280) (i32.const 5) (i32.const 131072))",
        expect![[r#"
            proxy_register_shared_queue(1, "queue") -> OK
            proxy_resolve_shared_queue("", "queue") -> INVALID_MEMORY_ACCESS
            guest got INVALID_MEMORY_ACCESS
        "#]],
    );
}

#[test]
fn dequeue_shared_queue_unknown_token_is_not_found() {
    check(
        "(call $proxy_dequeue_shared_queue (i32.const 99) (i32.const 8) (i32.const 12))",
        expect![[r#"
            proxy_dequeue_shared_queue(99) -> NOT_FOUND
            guest got NOT_FOUND
        "#]],
    );
}

#[test]
fn dequeue_shared_queue_empty_is_empty() {
    check(
        "(drop (call $proxy_register_shared_queue (i32.const 280) (i32.const 5) (i32.const 8))) (call $proxy_dequeue_shared_queue (i32.const 1) (i32.const 8) (i32.const 12))",
        expect![[r#"
            proxy_register_shared_queue(1, "queue") -> OK
            proxy_dequeue_shared_queue(1) -> EMPTY
            guest got EMPTY
        "#]],
    );
}

#[test]
fn dequeue_shared_queue_item_pointer_past_memory() {
    check(
        "(drop (call $proxy_register_shared_queue (i32.const 280) (i32.const 5) (i32.const 8))) (drop (call $proxy_enqueue_shared_queue (i32.const 1) (i32.const 140) (i32.const 5))) (call $proxy_dequeue_shared_queue (i32.const 1) (i32.const 131072) (i32.const 12))",
        expect![[r#"
            proxy_on_context_create(ctx=2, 1)
              => ()
            proxy_on_request_headers(ctx=2, 3, 0)
              proxy_register_shared_queue(1, "queue") -> OK
              proxy_enqueue_shared_queue(1, "value") -> OK
              proxy_dequeue_shared_queue(1) -> INVALID_MEMORY_ACCESS "value"
              log info "06"
              => 0
            proxy_on_queue_ready(ctx=1, 1)
              => ()
            -> Continue
            guest got INVALID_MEMORY_ACCESS
        "#]],
    );
}

#[test]
fn enqueue_shared_queue_data_past_memory() {
    check(
        "(drop (call $proxy_register_shared_queue (i32.const 280) (i32.const 5) (i32.const 8))) (call $proxy_enqueue_shared_queue (i32.const 1) (i32.const 131072) (i32.const 5))",
        expect![[r#"
            proxy_register_shared_queue(1, "queue") -> OK
            proxy_enqueue_shared_queue(1, 131072, 5) -> INVALID_MEMORY_ACCESS
            guest got INVALID_MEMORY_ACCESS
        "#]],
    );
}

#[test]
fn enqueue_shared_queue_unknown_token_is_not_found() {
    check(
        "(call $proxy_enqueue_shared_queue (i32.const 99) (i32.const 140) (i32.const 5))",
        expect![[r#"
            proxy_enqueue_shared_queue(99, "value") -> NOT_FOUND
            guest got NOT_FOUND
        "#]],
    );
}

#[test]
fn get_header_map_value_unknown_map_is_bad_argument() {
    check(
        "(call $proxy_get_header_map_value (i32.const 8) (i32.const 100) (i32.const 3) (i32.const 8) (i32.const 12))",
        expect![[r#"
            proxy_get_header_map_value(8) -> BAD_ARGUMENT
            guest got BAD_ARGUMENT
        "#]],
    );
}

#[test]
fn get_header_map_value_unknown_map_and_key_past_memory_is_bad_argument() {
    check(
        "(call $proxy_get_header_map_value (i32.const 8) (i32.const 131072) (i32.const 3) (i32.const 8) (i32.const 12))",
        expect![[r#"
            proxy_get_header_map_value(8) -> BAD_ARGUMENT
            guest got BAD_ARGUMENT
        "#]],
    );
}

#[test]
fn get_header_map_value_key_past_memory() {
    check(
        "(call $proxy_get_header_map_value (i32.const 0) (i32.const 131072) (i32.const 3) (i32.const 8) (i32.const 12))",
        expect![[r#"
            proxy_get_header_map_value(request_headers, 131072, 3) -> INVALID_MEMORY_ACCESS
            guest got INVALID_MEMORY_ACCESS
        "#]],
    );
}

#[test]
fn get_header_map_value_value_pointer_past_memory() {
    check(
        "(call $proxy_get_header_map_value (i32.const 0) (i32.const 100) (i32.const 3) (i32.const 131072) (i32.const 12))",
        expect![[r#"
            proxy_get_header_map_value(request_headers, "x-a") -> INVALID_MEMORY_ACCESS "1"
            guest got INVALID_MEMORY_ACCESS
        "#]],
    );
}

#[test]
fn get_header_map_value_missing_key_is_not_found() {
    check(
        "(call $proxy_get_header_map_value (i32.const 0) (i32.const 240) (i32.const 7) (i32.const 8) (i32.const 12))",
        expect![[r#"
            proxy_get_header_map_value(request_headers, "missing") -> NOT_FOUND
            guest got NOT_FOUND
        "#]],
    );
}

#[test]
fn get_header_map_value_missing_key_with_out_pointers_past_memory_is_not_found() {
    check(
        "(call $proxy_get_header_map_value (i32.const 0) (i32.const 240) (i32.const 7) (i32.const 131072) (i32.const 131072))",
        expect![[r#"
            proxy_get_header_map_value(request_headers, "missing") -> NOT_FOUND
            guest got NOT_FOUND
        "#]],
    );
}

#[test]
fn get_header_map_value_unavailable_map_is_bad_argument() {
    check(
        "(call $proxy_get_header_map_value (i32.const 2) (i32.const 100) (i32.const 3) (i32.const 8) (i32.const 12))",
        expect![[r#"
            proxy_get_header_map_value(response_headers, "x-a") -> BAD_ARGUMENT
            guest got BAD_ARGUMENT
        "#]],
    );
}

#[test]
fn add_header_map_value_unknown_map_is_bad_argument() {
    check(
        "(call $proxy_add_header_map_value (i32.const 8) (i32.const 120) (i32.const 5) (i32.const 140) (i32.const 5))",
        expect![[r#"
            proxy_add_header_map_value(8) -> BAD_ARGUMENT
            guest got BAD_ARGUMENT
        "#]],
    );
}

#[test]
fn add_header_map_value_key_past_memory() {
    check(
        "(call $proxy_add_header_map_value (i32.const 0) (i32.const 131072) (i32.const 5) (i32.const 140) (i32.const 5))",
        expect![[r#"
            proxy_add_header_map_value(request_headers, 131072, 5, 140) -> INVALID_MEMORY_ACCESS
            guest got INVALID_MEMORY_ACCESS
        "#]],
    );
}

#[test]
fn add_header_map_value_value_past_memory() {
    check(
        "(call $proxy_add_header_map_value (i32.const 0) (i32.const 120) (i32.const 5) (i32.const 131072) (i32.const 5))",
        expect![[r#"
            proxy_add_header_map_value(request_headers, 120, 5, 131072) -> INVALID_MEMORY_ACCESS
            guest got INVALID_MEMORY_ACCESS
        "#]],
    );
}

#[test]
fn add_header_map_value_unavailable_map_is_bad_argument() {
    check(
        "(call $proxy_add_header_map_value (i32.const 2) (i32.const 120) (i32.const 5) (i32.const 140) (i32.const 5))",
        expect![[r#"
            proxy_add_header_map_value(response_headers, "x-new", "value") -> BAD_ARGUMENT
            guest got BAD_ARGUMENT
        "#]],
    );
}

#[test]
fn replace_header_map_value_unknown_map_is_bad_argument() {
    check(
        "(call $proxy_replace_header_map_value (i32.const 8) (i32.const 100) (i32.const 3) (i32.const 140) (i32.const 5))",
        expect![[r#"
            proxy_replace_header_map_value(8) -> BAD_ARGUMENT
            guest got BAD_ARGUMENT
        "#]],
    );
}

#[test]
fn replace_header_map_value_key_past_memory() {
    check(
        "(call $proxy_replace_header_map_value (i32.const 0) (i32.const 131072) (i32.const 3) (i32.const 140) (i32.const 5))",
        expect![[r#"
            proxy_replace_header_map_value(request_headers, 131072, 3, 140) -> INVALID_MEMORY_ACCESS
            guest got INVALID_MEMORY_ACCESS
        "#]],
    );
}

#[test]
fn replace_header_map_value_value_past_memory() {
    check(
        "(call $proxy_replace_header_map_value (i32.const 0) (i32.const 100) (i32.const 3) (i32.const 131072) (i32.const 5))",
        expect![[r#"
            proxy_replace_header_map_value(request_headers, 100, 3, 131072) -> INVALID_MEMORY_ACCESS
            guest got INVALID_MEMORY_ACCESS
        "#]],
    );
}

#[test]
fn replace_header_map_value_unavailable_map_is_bad_argument() {
    check(
        "(call $proxy_replace_header_map_value (i32.const 3) (i32.const 100) (i32.const 3) (i32.const 140) (i32.const 5))",
        expect![[r#"
            proxy_replace_header_map_value(response_trailers, "x-a", "value") -> BAD_ARGUMENT
            guest got BAD_ARGUMENT
        "#]],
    );
}

#[test]
fn remove_header_map_value_unknown_map_is_bad_argument() {
    check(
        "(call $proxy_remove_header_map_value (i32.const 8) (i32.const 100) (i32.const 3))",
        expect![[r#"
            proxy_remove_header_map_value(8) -> BAD_ARGUMENT
            guest got BAD_ARGUMENT
        "#]],
    );
}

#[test]
fn remove_header_map_value_key_past_memory() {
    check(
        "(call $proxy_remove_header_map_value (i32.const 0) (i32.const 131072) (i32.const 3))",
        expect![[r#"
            proxy_remove_header_map_value(request_headers, 131072, 3) -> INVALID_MEMORY_ACCESS
            guest got INVALID_MEMORY_ACCESS
        "#]],
    );
}

#[test]
fn remove_header_map_value_unavailable_map_is_bad_argument() {
    check(
        "(call $proxy_remove_header_map_value (i32.const 2) (i32.const 100) (i32.const 3))",
        expect![[r#"
            proxy_remove_header_map_value(response_headers, "x-a") -> BAD_ARGUMENT
            guest got BAD_ARGUMENT
        "#]],
    );
}

#[test]
fn get_header_map_pairs_unknown_map_is_bad_argument() {
    check(
        "(call $proxy_get_header_map_pairs (i32.const 8) (i32.const 8) (i32.const 12))",
        expect![[r#"
            proxy_get_header_map_pairs(8) -> BAD_ARGUMENT
            guest got BAD_ARGUMENT
        "#]],
    );
}

#[test]
fn get_header_map_pairs_pointer_past_memory() {
    check(
        "(call $proxy_get_header_map_pairs (i32.const 0) (i32.const 131072) (i32.const 12))",
        expect![[r#"
            proxy_get_header_map_pairs(request_headers) -> INVALID_MEMORY_ACCESS
            guest got INVALID_MEMORY_ACCESS
        "#]],
    );
}

#[test]
fn get_header_map_pairs_unavailable_map_with_pointer_past_memory() {
    check(
        "(call $proxy_get_header_map_pairs (i32.const 2) (i32.const 131072) (i32.const 12))",
        expect![[r#"
            proxy_get_header_map_pairs(response_headers) -> INVALID_MEMORY_ACCESS
            guest got INVALID_MEMORY_ACCESS
        "#]],
    );
}

#[test]
fn set_header_map_pairs_unknown_map_is_bad_argument() {
    check(
        "(call $proxy_set_header_map_pairs (i32.const 8) (i32.const 0) (i32.const 0))",
        expect![[r#"
            proxy_set_header_map_pairs(8) -> BAD_ARGUMENT
            guest got BAD_ARGUMENT
        "#]],
    );
}

#[test]
fn set_header_map_pairs_data_past_memory() {
    check(
        "(call $proxy_set_header_map_pairs (i32.const 0) (i32.const 131072) (i32.const 8))",
        expect![[r#"
            proxy_set_header_map_pairs(request_headers, 131072, 8) -> INVALID_MEMORY_ACCESS
            guest got INVALID_MEMORY_ACCESS
        "#]],
    );
}

#[test]
fn set_header_map_pairs_unavailable_map_is_bad_argument() {
    check(
        "(call $proxy_set_header_map_pairs (i32.const 2) (i32.const 0) (i32.const 0))",
        expect![[r#"
            proxy_set_header_map_pairs(response_headers, 0) -> BAD_ARGUMENT
            guest got BAD_ARGUMENT
        "#]],
    );
}

#[test]
fn get_header_map_size_unknown_map_is_bad_argument() {
    check(
        "(call $proxy_get_header_map_size (i32.const 8) (i32.const 8))",
        expect![[r#"
            proxy_get_header_map_size(8) -> BAD_ARGUMENT
            guest got BAD_ARGUMENT
        "#]],
    );
}

#[test]
fn get_header_map_size_pointer_past_memory() {
    check(
        "(call $proxy_get_header_map_size (i32.const 0) (i32.const 131072))",
        expect![[r#"
            proxy_get_header_map_size(request_headers, 20) -> INVALID_MEMORY_ACCESS
            guest got INVALID_MEMORY_ACCESS
        "#]],
    );
}

#[test]
fn get_header_map_size_unavailable_map_is_bad_argument() {
    check(
        "(call $proxy_get_header_map_size (i32.const 2) (i32.const 8))",
        expect![[r#"
            proxy_get_header_map_size(response_headers, 0) -> BAD_ARGUMENT
            guest got BAD_ARGUMENT
        "#]],
    );
}

#[test]
fn get_buffer_status_unknown_buffer_is_bad_argument() {
    check(
        "(call $proxy_get_buffer_status (i32.const 9) (i32.const 8) (i32.const 12))",
        expect![[r#"
            proxy_get_buffer_status(9) -> BAD_ARGUMENT
            guest got BAD_ARGUMENT
        "#]],
    );
}

#[test]
fn get_buffer_status_plugin_configuration_outside_configure_is_not_found() {
    check(
        "(call $proxy_get_buffer_status (i32.const 7) (i32.const 8) (i32.const 12))",
        expect![[r#"
            proxy_get_buffer_status(plugin_configuration) -> NOT_FOUND
            guest got NOT_FOUND
        "#]],
    );
}

#[test]
fn get_buffer_status_length_pointer_past_memory() {
    check(
        "(call $proxy_get_buffer_status (i32.const 6) (i32.const 131072) (i32.const 12))",
        expect![[r#"
            proxy_get_buffer_status(vm_configuration, 9) -> INVALID_MEMORY_ACCESS
            guest got INVALID_MEMORY_ACCESS
        "#]],
    );
}

#[test]
fn get_buffer_status_flags_pointer_past_memory() {
    check(
        "(call $proxy_get_buffer_status (i32.const 6) (i32.const 8) (i32.const 131072))",
        expect![[r#"
            proxy_get_buffer_status(vm_configuration, 9) -> INVALID_MEMORY_ACCESS
            guest got INVALID_MEMORY_ACCESS
        "#]],
    );
}

#[test]
fn get_buffer_bytes_unknown_buffer_is_bad_argument() {
    check(
        "(call $proxy_get_buffer_bytes (i32.const 9) (i32.const 0) (i32.const 10) (i32.const 8) (i32.const 12))",
        expect![[r#"
            proxy_get_buffer_bytes(9, 0, 10) -> BAD_ARGUMENT
            guest got BAD_ARGUMENT
        "#]],
    );
}

#[test]
fn get_buffer_bytes_http_call_body_without_a_call_is_not_found() {
    check(
        "(call $proxy_get_buffer_bytes (i32.const 4) (i32.const 0) (i32.const 10) (i32.const 8) (i32.const 12))",
        expect![[r#"
            proxy_get_buffer_bytes(http_call_response_body, 0, 10) -> NOT_FOUND
            guest got NOT_FOUND
        "#]],
    );
}

#[test]
fn get_buffer_bytes_pointer_past_memory() {
    check(
        "(call $proxy_get_buffer_bytes (i32.const 6) (i32.const 0) (i32.const 10) (i32.const 131072) (i32.const 12))",
        expect![[r#"
            proxy_get_buffer_bytes(vm_configuration, 0, 10) -> INVALID_MEMORY_ACCESS "vm-config"
            guest got INVALID_MEMORY_ACCESS
        "#]],
    );
}

#[test]
fn set_buffer_bytes_unknown_buffer_is_bad_argument() {
    check(
        "(call $proxy_set_buffer_bytes (i32.const 9) (i32.const 0) (i32.const 0) (i32.const 140) (i32.const 5))",
        expect![[r#"
            proxy_set_buffer_bytes(9, 0, 0) -> BAD_ARGUMENT
            guest got BAD_ARGUMENT
        "#]],
    );
}

#[test]
fn set_buffer_bytes_plugin_configuration_outside_configure_is_not_found() {
    check(
        "(call $proxy_set_buffer_bytes (i32.const 7) (i32.const 0) (i32.const 0) (i32.const 140) (i32.const 5))",
        expect![[r#"
            proxy_set_buffer_bytes(plugin_configuration, 0, 0) -> NOT_FOUND
            guest got NOT_FOUND
        "#]],
    );
}

#[test]
fn set_buffer_bytes_data_past_memory() {
    check(
        "(call $proxy_set_buffer_bytes (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 131072) (i32.const 5))",
        expect![[r#"
            proxy_set_buffer_bytes(request_body, 0, 0, 131072) -> INVALID_MEMORY_ACCESS
            guest got INVALID_MEMORY_ACCESS
        "#]],
    );
}

#[test]
fn set_buffer_bytes_immutable_buffer_is_bad_argument() {
    check(
        "(call $proxy_set_buffer_bytes (i32.const 6) (i32.const 0) (i32.const 0) (i32.const 140) (i32.const 5))",
        expect![[r#"
            proxy_set_buffer_bytes(vm_configuration, 0, 0, "value") -> BAD_ARGUMENT
            guest got BAD_ARGUMENT
        "#]],
    );
}

#[test]
fn http_call_uri_past_memory() {
    check(
        "(call $proxy_http_call (i32.const 131072) (i32.const 4) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 1000) (i32.const 8))",
        expect![[r#"
            proxy_http_call(131072, 4) -> INVALID_MEMORY_ACCESS
            guest got INVALID_MEMORY_ACCESS
        "#]],
    );
}

#[test]
fn http_call_headers_past_memory() {
    check(
        "(call $proxy_http_call (i32.const 220) (i32.const 4) (i32.const 131072) (i32.const 8) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 1000) (i32.const 8))",
        expect![[r#"
            proxy_http_call(220, 4) -> INVALID_MEMORY_ACCESS
            guest got INVALID_MEMORY_ACCESS
        "#]],
    );
}

#[test]
fn http_call_token_pointer_past_memory() {
    check(
        "(call $proxy_http_call (i32.const 220) (i32.const 4) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 1000) (i32.const 131072))",
        expect![[r#"
            proxy_http_call("auth") -> INVALID_MEMORY_ACCESS
            guest got INVALID_MEMORY_ACCESS
        "#]],
    );
}

#[test]
fn http_call_unknown_cluster_is_bad_argument() {
    check(
        "(call $proxy_http_call (i32.const 240) (i32.const 7) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 1000) (i32.const 8))",
        expect![[r#"
            proxy_http_call(1000, "missing") -> BAD_ARGUMENT
            guest got BAD_ARGUMENT
        "#]],
    );
}

#[test]
fn grpc_call_service_past_memory() {
    check(
        "(call $proxy_grpc_call (i32.const 131072) (i32.const 4) (i32.const 300) (i32.const 8) (i32.const 320) (i32.const 8) (i32.const 0) (i32.const 0) (i32.const 140) (i32.const 5) (i32.const 1000) (i32.const 8))",
        expect![[r#"
            proxy_grpc_call(131072, 4) -> INVALID_MEMORY_ACCESS
            guest got INVALID_MEMORY_ACCESS
        "#]],
    );
}

#[test]
fn grpc_call_request_past_memory() {
    check(
        "(call $proxy_grpc_call (i32.const 220) (i32.const 4) (i32.const 300) (i32.const 8) (i32.const 320) (i32.const 8) (i32.const 0) (i32.const 0) (i32.const 131072) (i32.const 5) (i32.const 1000) (i32.const 8))",
        expect![[r#"
            proxy_grpc_call(220, 4) -> INVALID_MEMORY_ACCESS
            guest got INVALID_MEMORY_ACCESS
        "#]],
    );
}

#[test]
fn grpc_call_token_pointer_past_memory() {
    check(
        "(call $proxy_grpc_call (i32.const 220) (i32.const 4) (i32.const 300) (i32.const 8) (i32.const 320) (i32.const 8) (i32.const 0) (i32.const 0) (i32.const 140) (i32.const 5) (i32.const 1000) (i32.const 131072))",
        expect![[r#"
            proxy_grpc_call(1000, "auth", "requests", "compress") -> INVALID_MEMORY_ACCESS
            guest got INVALID_MEMORY_ACCESS
        "#]],
    );
}

#[test]
fn grpc_call_unknown_cluster_is_parse_failure() {
    check(
        "(call $proxy_grpc_call (i32.const 240) (i32.const 7) (i32.const 300) (i32.const 8) (i32.const 320) (i32.const 8) (i32.const 0) (i32.const 0) (i32.const 140) (i32.const 5) (i32.const 1000) (i32.const 8))",
        expect![[r#"
            proxy_grpc_call(1000, "missing", "requests", "compress") -> PARSE_FAILURE
            guest got PARSE_FAILURE
        "#]],
    );
}

#[test]
fn grpc_stream_method_past_memory() {
    check(
        "(call $proxy_grpc_stream (i32.const 220) (i32.const 4) (i32.const 300) (i32.const 8) (i32.const 131072) (i32.const 8) (i32.const 0) (i32.const 0) (i32.const 8))",
        expect![[r#"
            proxy_grpc_stream(220, 4) -> INVALID_MEMORY_ACCESS
            guest got INVALID_MEMORY_ACCESS
        "#]],
    );
}

#[test]
fn grpc_stream_token_pointer_past_memory() {
    check(
        "(call $proxy_grpc_stream (i32.const 220) (i32.const 4) (i32.const 300) (i32.const 8) (i32.const 320) (i32.const 8) (i32.const 0) (i32.const 0) (i32.const 131072))",
        expect![[r#"
            proxy_grpc_stream("auth", "requests", "compress") -> INVALID_MEMORY_ACCESS
            guest got INVALID_MEMORY_ACCESS
        "#]],
    );
}

#[test]
fn grpc_stream_unknown_cluster_is_parse_failure() {
    check(
        "(call $proxy_grpc_stream (i32.const 240) (i32.const 7) (i32.const 300) (i32.const 8) (i32.const 320) (i32.const 8) (i32.const 0) (i32.const 0) (i32.const 8))",
        expect![[r#"
            proxy_grpc_stream("missing", "requests", "compress") -> PARSE_FAILURE
            guest got PARSE_FAILURE
        "#]],
    );
}

#[test]
fn grpc_send_message_past_memory() {
    check(
        "(call $proxy_grpc_send (i32.const 6) (i32.const 131072) (i32.const 5) (i32.const 0))",
        expect![[r#"
            proxy_grpc_send(6, 131072, 5) -> INVALID_MEMORY_ACCESS
            guest got INVALID_MEMORY_ACCESS
        "#]],
    );
}

#[test]
fn grpc_send_call_token_is_bad_argument() {
    check(
        "(call $proxy_grpc_send (i32.const 5) (i32.const 140) (i32.const 5) (i32.const 0))",
        expect![[r#"
            proxy_grpc_send(5, 0, "value") -> BAD_ARGUMENT
            guest got BAD_ARGUMENT
        "#]],
    );
}

#[test]
fn grpc_send_unknown_stream_is_not_found() {
    check(
        "(call $proxy_grpc_send (i32.const 6) (i32.const 140) (i32.const 5) (i32.const 0))",
        expect![[r#"
            proxy_grpc_send(6, 0, "value") -> NOT_FOUND
            guest got NOT_FOUND
        "#]],
    );
}

#[test]
fn grpc_cancel_non_grpc_token_is_bad_argument() {
    check(
        "(call $proxy_grpc_cancel (i32.const 4))",
        expect![[r#"
            proxy_grpc_cancel(4) -> BAD_ARGUMENT
            guest got BAD_ARGUMENT
        "#]],
    );
}

#[test]
fn grpc_cancel_unknown_call_is_not_found() {
    check(
        "(call $proxy_grpc_cancel (i32.const 5))",
        expect![[r#"
            proxy_grpc_cancel(5) -> NOT_FOUND
            guest got NOT_FOUND
        "#]],
    );
}

#[test]
fn grpc_close_non_grpc_token_is_bad_argument() {
    check(
        "(call $proxy_grpc_close (i32.const 7))",
        expect![[r#"
            proxy_grpc_close(7) -> BAD_ARGUMENT
            guest got BAD_ARGUMENT
        "#]],
    );
}

#[test]
fn grpc_close_unknown_stream_is_not_found() {
    check(
        "(call $proxy_grpc_close (i32.const 6))",
        expect![[r#"
            proxy_grpc_close(6) -> NOT_FOUND
            guest got NOT_FOUND
        "#]],
    );
}

#[test]
fn continue_stream_unknown_type_is_bad_argument() {
    check(
        "(call $proxy_continue_stream (i32.const 4))",
        expect![[r#"
            proxy_continue_stream(4) -> BAD_ARGUMENT
            guest got BAD_ARGUMENT
        "#]],
    );
}

#[test]
fn close_stream_unknown_type_is_bad_argument() {
    check(
        "(call $proxy_close_stream (i32.const 4))",
        expect![[r#"
            proxy_close_stream(4) -> BAD_ARGUMENT
            guest got BAD_ARGUMENT
        "#]],
    );
}

#[test]
fn get_current_time_pointer_past_memory() {
    check(
        "(call $proxy_get_current_time_nanoseconds (i32.const 131072))",
        expect![[r#"
            proxy_get_current_time_nanoseconds(1767225600000000000) -> INVALID_MEMORY_ACCESS
            guest got INVALID_MEMORY_ACCESS
        "#]],
    );
}

#[test]
fn define_metric_name_past_memory() {
    check(
        "(call $proxy_define_metric (i32.const 0) (i32.const 131072) (i32.const 8) (i32.const 8))",
        expect![[r#"
            proxy_define_metric(0, 131072, 8) -> INVALID_MEMORY_ACCESS
            guest got INVALID_MEMORY_ACCESS
        "#]],
    );
}

#[test]
fn define_metric_unknown_kind_is_bad_argument() {
    check(
        "(call $proxy_define_metric (i32.const 3) (i32.const 300) (i32.const 8) (i32.const 8))",
        expect![[r#"
            proxy_define_metric(3, "requests") -> BAD_ARGUMENT
            guest got BAD_ARGUMENT
        "#]],
    );
}

#[test]
fn define_metric_reads_the_name_before_checking_the_kind() {
    check(
        "(call $proxy_define_metric (i32.const 3) (i32.const 131072) (i32.const 8) (i32.const 8))",
        expect![[r#"
            proxy_define_metric(3, 131072, 8) -> INVALID_MEMORY_ACCESS
            guest got INVALID_MEMORY_ACCESS
        "#]],
    );
}

#[test]
fn define_metric_id_pointer_past_memory() {
    check(
        "(call $proxy_define_metric (i32.const 0) (i32.const 300) (i32.const 8) (i32.const 131072))",
        expect![[r#"
            proxy_define_metric(0, 4, "requests") -> INVALID_MEMORY_ACCESS
            guest got INVALID_MEMORY_ACCESS
        "#]],
    );
}

#[test]
fn increment_metric_unknown_counter_is_not_found() {
    check(
        "(call $proxy_increment_metric (i32.const 4) (i64.const 1))",
        expect![[r#"
            proxy_increment_metric(4, 1) -> NOT_FOUND
            guest got NOT_FOUND
        "#]],
    );
}

#[test]
fn increment_metric_histogram_is_bad_argument() {
    check(
        "(drop (call $proxy_define_metric (i32.const 2) (i32.const 300) (i32.const 8) (i32.const 8))) (call $proxy_increment_metric (i32.const 6) (i64.const 1))",
        expect![[r#"
            proxy_define_metric(2, 6, "requests") -> OK
            proxy_increment_metric(6, 1) -> BAD_ARGUMENT
            guest got BAD_ARGUMENT
        "#]],
    );
}

#[test]
fn increment_metric_counter_by_zero_is_bad_argument() {
    check(
        "(drop (call $proxy_define_metric (i32.const 0) (i32.const 300) (i32.const 8) (i32.const 8))) (call $proxy_increment_metric (i32.const 4) (i64.const 0))",
        expect![[r#"
            proxy_define_metric(0, 4, "requests") -> OK
            proxy_increment_metric(4, 0) -> BAD_ARGUMENT
            guest got BAD_ARGUMENT
        "#]],
    );
}

#[test]
fn record_metric_unknown_is_not_found() {
    check(
        "(call $proxy_record_metric (i32.const 5) (i64.const 1))",
        expect![[r#"
            proxy_record_metric(5, 1) -> NOT_FOUND
            guest got NOT_FOUND
        "#]],
    );
}

#[test]
fn get_metric_unknown_is_not_found() {
    check(
        "(call $proxy_get_metric (i32.const 4) (i32.const 8))",
        expect![[r#"
            proxy_get_metric(4) -> NOT_FOUND
            guest got NOT_FOUND
        "#]],
    );
}

#[test]
fn get_metric_unknown_with_pointer_past_memory_is_not_found() {
    check(
        "(call $proxy_get_metric (i32.const 4) (i32.const 131072))",
        expect![[r#"
            proxy_get_metric(4) -> NOT_FOUND
            guest got NOT_FOUND
        "#]],
    );
}

#[test]
fn get_metric_bad_type_bits_is_bad_argument() {
    check(
        "(call $proxy_get_metric (i32.const 7) (i32.const 8))",
        expect![[r#"
            proxy_get_metric(7) -> BAD_ARGUMENT
            guest got BAD_ARGUMENT
        "#]],
    );
}

#[test]
fn get_metric_pointer_past_memory() {
    check(
        "(drop (call $proxy_define_metric (i32.const 0) (i32.const 300) (i32.const 8) (i32.const 8))) (call $proxy_get_metric (i32.const 4) (i32.const 131072))",
        expect![[r#"
            proxy_define_metric(0, 4, "requests") -> OK
            proxy_get_metric(4) -> INVALID_MEMORY_ACCESS
            guest got INVALID_MEMORY_ACCESS
        "#]],
    );
}

#[test]
fn wasi_fd_write_iovec_past_memory() {
    check(
        "(call $wasi_fd_write (i32.const 1) (i32.const 131072) (i32.const 1) (i32.const 8))",
        expect![[r#"
            fd_write(1) -> errno 21
            guest got errno 21
        "#]],
    );
}

#[test]
fn wasi_fd_write_nwritten_pointer_past_memory() {
    check(
        "(call $wasi_fd_write (i32.const 1) (i32.const 0) (i32.const 0) (i32.const 131072))",
        expect![[r#"
            fd_write(1) -> errno 21
            guest got errno 21
        "#]],
    );
}

#[test]
fn wasi_clock_time_get_pointer_past_memory() {
    check(
        "(call $wasi_clock_time_get (i32.const 0) (i64.const 1) (i32.const 131072))",
        expect![[r#"
            clock_time_get(0) -> errno 21
            guest got errno 21
        "#]],
    );
}

#[test]
fn wasi_random_get_past_memory() {
    check(
        "(call $wasi_random_get (i32.const 131072) (i32.const 8))",
        expect![[r#"
            random_get(8) -> errno 21
            guest got errno 21
        "#]],
    );
}
