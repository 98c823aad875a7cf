//! Each host function against a tiny WAT guest: the guest calls it from
//! `proxy_on_request_headers` (request headers `:method GET`, `:path /`, `x-a: 1`, `x-a: 2`)
//! and the trace shows the statuses Envoy returns.

use expect_test::{Expect, expect};
use filterkit_host_sim::scenario::render_outcome;
use filterkit_host_sim::{PropertyValue, Sim};

use crate::guest::{Guest, data};

/// Strings the snippets refer to: name at offset, length.
fn strings() -> String {
    [
        (100, "x-a"),
        (120, "x-new"),
        (140, "value"),
        (160, "plugin_root_id"),
        (200, "plugin_vm_id"),
        (220, "auth"),
        (240, "missing"),
        (260, "key"),
        (280, "queue"),
        (300, "requests"),
        (320, "compress"),
        (340, "req\u{0}path"),
        (360, "hello"),
        (380, "fail"),
    ]
    .iter()
    .map(|(offset, text)| data(*offset, text))
    .collect()
}

fn check(snippet: &str, expect: Expect) {
    check_with("", snippet, expect);
}

fn check_with(fields: &str, snippet: &str, expect: Expect) {
    let guest = Guest {
        fields: strings() + fields,
        request_headers: Some(format!("{snippet}\n i32.const 0")),
        ..Guest::default()
    };
    let module = guest.module();
    let mut sim = Sim::builder(&module)
        .plugin("root", "config")
        .vm_id("vm1")
        .vm_configuration("vm-config")
        .cluster("auth")
        .property(&["req", "path"], PropertyValue::String("/p".into()))
        .foreign_function("hello", |args| Ok([b"hi ", args].concat()))
        .foreign_function("fail", |_| Err(filterkit_host_sim::Status::InternalFailure))
        .build()
        .unwrap();
    sim.clear_trace();
    let mut stream = sim.stream("root").unwrap();
    let outcome = stream.send_request_headers(
        &[
            (":method", "GET"),
            (":path", "/"),
            ("x-a", "1"),
            ("x-a", "2"),
        ],
        false,
    );
    let trace = sim.render_trace();
    expect.assert_eq(&format!("{trace}-> {}\n", render_outcome(&outcome)));
}

/// `(drop (call $f args...))` for each call.
fn calls(calls: &[&str]) -> String {
    calls
        .iter()
        .map(|call| format!("(drop (call {call}))\n"))
        .collect()
}

#[test]
fn get_header_map_value_returns_the_first_of_repeated_values() {
    check(
        &calls(&[
            "$proxy_get_header_map_value (i32.const 0) (i32.const 100) (i32.const 3) (i32.const 8) (i32.const 12)",
            "$proxy_get_header_map_value (i32.const 0) (i32.const 240) (i32.const 7) (i32.const 8) (i32.const 12)",
            "$proxy_get_header_map_value (i32.const 2) (i32.const 100) (i32.const 3) (i32.const 8) (i32.const 12)",
            "$proxy_get_header_map_value (i32.const 8) (i32.const 100) (i32.const 3) (i32.const 8) (i32.const 12)",
        ]),
        expect![[r#"
            proxy_on_context_create(ctx=2, 1)
              => ()
            proxy_on_request_headers(ctx=2, 4, 0)
              proxy_get_header_map_value(request_headers, "x-a") -> OK "1"
              proxy_get_header_map_value(request_headers, "missing") -> NOT_FOUND
              proxy_get_header_map_value(response_headers, "x-a") -> BAD_ARGUMENT
              proxy_get_header_map_value(8) -> BAD_ARGUMENT
              => 0
            -> Continue
        "#]],
    );
}

#[test]
fn header_map_mutations_apply_to_available_maps_only() {
    check(
        &calls(&[
            "$proxy_add_header_map_value (i32.const 0) (i32.const 120) (i32.const 5) (i32.const 140) (i32.const 5)",
            "$proxy_replace_header_map_value (i32.const 0) (i32.const 100) (i32.const 3) (i32.const 140) (i32.const 5)",
            "$proxy_remove_header_map_value (i32.const 0) (i32.const 120) (i32.const 5)",
            "$proxy_add_header_map_value (i32.const 2) (i32.const 120) (i32.const 5) (i32.const 140) (i32.const 5)",
            "$proxy_add_header_map_value (i32.const 6) (i32.const 120) (i32.const 5) (i32.const 140) (i32.const 5)",
            "$proxy_get_header_map_size (i32.const 0) (i32.const 8)",
            "$proxy_get_header_map_size (i32.const 6) (i32.const 8)",
            "$proxy_get_header_map_pairs (i32.const 0) (i32.const 8) (i32.const 12)",
            "$proxy_get_header_map_pairs (i32.const 2) (i32.const 8) (i32.const 12)",
        ]),
        expect![[r#"
            proxy_on_context_create(ctx=2, 1)
              => ()
            proxy_on_request_headers(ctx=2, 4, 0)
              proxy_add_header_map_value(request_headers, "x-new", "value") -> OK
              proxy_replace_header_map_value(request_headers, "x-a", "value") -> OK
              proxy_remove_header_map_value(request_headers, "x-new") -> OK
              proxy_add_header_map_value(response_headers, "x-new", "value") -> BAD_ARGUMENT
              proxy_add_header_map_value(http_call_response_headers, "x-new", "value") -> BAD_ARGUMENT
              proxy_get_header_map_size(request_headers, 24) -> OK
              proxy_get_header_map_size(http_call_response_headers, 0) -> BAD_ARGUMENT
              proxy_get_header_map_pairs(request_headers) -> OK
              proxy_get_header_map_pairs(response_headers) -> OK
              => 0
            -> Continue
        "#]],
    );
}

#[test]
fn properties_give_plugin_identity_and_test_values() {
    check(
        &calls(&[
            "$proxy_get_property (i32.const 160) (i32.const 14) (i32.const 8) (i32.const 12)",
            "$proxy_get_property (i32.const 200) (i32.const 12) (i32.const 8) (i32.const 12)",
            "$proxy_get_property (i32.const 340) (i32.const 8) (i32.const 8) (i32.const 12)",
            "$proxy_get_property (i32.const 240) (i32.const 7) (i32.const 8) (i32.const 12)",
            "$proxy_set_property (i32.const 260) (i32.const 3) (i32.const 140) (i32.const 5)",
            "$proxy_get_property (i32.const 260) (i32.const 3) (i32.const 8) (i32.const 12)",
        ]),
        expect![[r#"
            proxy_on_context_create(ctx=2, 1)
              => ()
            proxy_on_request_headers(ctx=2, 4, 0)
              proxy_get_property("plugin_root_id") -> OK "root"
              proxy_get_property("plugin_vm_id") -> OK "vm1"
              proxy_get_property("req\0path") -> OK "/p"
              proxy_get_property("missing") -> NOT_FOUND
              proxy_set_property("key", "value") -> OK
              proxy_get_property("key") -> OK "value"
              => 0
            -> Continue
        "#]],
    );
}

#[test]
fn buffers_follow_envoy_availability() {
    check(
        &calls(&[
            "$proxy_get_buffer_bytes (i32.const 6) (i32.const 0) (i32.const 100) (i32.const 8) (i32.const 12)",
            "$proxy_get_buffer_bytes (i32.const 7) (i32.const 0) (i32.const 100) (i32.const 8) (i32.const 12)",
            "$proxy_get_buffer_bytes (i32.const 0) (i32.const 0) (i32.const 100) (i32.const 8) (i32.const 12)",
            "$proxy_get_buffer_bytes (i32.const 4) (i32.const 0) (i32.const 100) (i32.const 8) (i32.const 12)",
            "$proxy_get_buffer_bytes (i32.const 9) (i32.const 0) (i32.const 100) (i32.const 8) (i32.const 12)",
            "$proxy_get_buffer_status (i32.const 6) (i32.const 8) (i32.const 12)",
            "$proxy_set_buffer_bytes (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 140) (i32.const 5)",
            "$proxy_set_buffer_bytes (i32.const 6) (i32.const 0) (i32.const 0) (i32.const 140) (i32.const 5)",
        ]),
        expect![[r#"
            proxy_on_context_create(ctx=2, 1)
              => ()
            proxy_on_request_headers(ctx=2, 4, 0)
              proxy_get_buffer_bytes(vm_configuration, 0, 100) -> OK "vm-config"
              proxy_get_buffer_bytes(plugin_configuration, 0, 100) -> NOT_FOUND
              proxy_get_buffer_bytes(request_body, 0, 100) -> OK ""
              proxy_get_buffer_bytes(http_call_response_body, 0, 100) -> NOT_FOUND
              proxy_get_buffer_bytes(9, 0, 100) -> BAD_ARGUMENT
              proxy_get_buffer_status(vm_configuration, 9) -> OK
              proxy_set_buffer_bytes(request_body, 0, 0, "value") -> BAD_ARGUMENT
              proxy_set_buffer_bytes(vm_configuration, 0, 0, "value") -> BAD_ARGUMENT
              => 0
            -> Continue
        "#]],
    );
}

#[test]
fn shared_data_compare_and_swap() {
    check(
        &calls(&[
            "$proxy_get_shared_data (i32.const 260) (i32.const 3) (i32.const 8) (i32.const 12) (i32.const 16)",
            "$proxy_set_shared_data (i32.const 260) (i32.const 3) (i32.const 140) (i32.const 5) (i32.const 0)",
            "$proxy_set_shared_data (i32.const 260) (i32.const 3) (i32.const 140) (i32.const 5) (i32.const 7)",
            "$proxy_set_shared_data (i32.const 260) (i32.const 3) (i32.const 140) (i32.const 5) (i32.const 1)",
            "$proxy_get_shared_data (i32.const 260) (i32.const 3) (i32.const 8) (i32.const 12) (i32.const 16)",
        ]),
        expect![[r#"
            proxy_on_context_create(ctx=2, 1)
              => ()
            proxy_on_request_headers(ctx=2, 4, 0)
              proxy_get_shared_data("key") -> NOT_FOUND
              proxy_set_shared_data(0, "key", "value") -> OK
              proxy_set_shared_data(7, "key", "value") -> CAS_MISMATCH
              proxy_set_shared_data(1, "key", "value") -> OK
              proxy_get_shared_data("key") -> OK "value"
              => 0
            -> Continue
        "#]],
    );
}

#[test]
fn shared_queues_register_resolve_enqueue_dequeue() {
    check(
        &calls(&[
            "$proxy_register_shared_queue (i32.const 280) (i32.const 5) (i32.const 8)",
            "$proxy_resolve_shared_queue (i32.const 200) (i32.const 0) (i32.const 280) (i32.const 5) (i32.const 8)",
            "$proxy_resolve_shared_queue (i32.const 200) (i32.const 0) (i32.const 240) (i32.const 7) (i32.const 8)",
            "$proxy_dequeue_shared_queue (i32.const 1) (i32.const 8) (i32.const 12)",
            "$proxy_enqueue_shared_queue (i32.const 1) (i32.const 140) (i32.const 5)",
            "$proxy_dequeue_shared_queue (i32.const 1) (i32.const 8) (i32.const 12)",
            "$proxy_enqueue_shared_queue (i32.const 9) (i32.const 140) (i32.const 5)",
        ]),
        expect![[r#"
            proxy_on_context_create(ctx=2, 1)
              => ()
            proxy_on_request_headers(ctx=2, 4, 0)
              proxy_register_shared_queue(1, "queue") -> OK
              proxy_resolve_shared_queue("", "queue") -> OK
              proxy_resolve_shared_queue("", "missing") -> NOT_FOUND
              proxy_dequeue_shared_queue(1) -> EMPTY
              proxy_enqueue_shared_queue(1, "value") -> OK
              proxy_dequeue_shared_queue(1) -> OK "value"
              proxy_enqueue_shared_queue(9, "value") -> NOT_FOUND
              => 0
            proxy_on_queue_ready(ctx=1, 1)
              => ()
            -> Continue
        "#]],
    );
}

#[test]
fn metrics_follow_envoy_rules() {
    check(
        &calls(&[
            "$proxy_define_metric (i32.const 0) (i32.const 300) (i32.const 8) (i32.const 8)",
            "$proxy_increment_metric (i32.const 4) (i64.const 2)",
            "$proxy_increment_metric (i32.const 4) (i64.const -1)",
            "$proxy_get_metric (i32.const 4) (i32.const 16)",
            "$proxy_define_metric (i32.const 2) (i32.const 300) (i32.const 8) (i32.const 8)",
            "$proxy_get_metric (i32.const 6) (i32.const 16)",
            "$proxy_record_metric (i32.const 6) (i64.const 9)",
            "$proxy_define_metric (i32.const 3) (i32.const 300) (i32.const 8) (i32.const 8)",
            "$proxy_increment_metric (i32.const 8) (i64.const 1)",
        ]),
        expect![[r#"
            proxy_on_context_create(ctx=2, 1)
              => ()
            proxy_on_request_headers(ctx=2, 4, 0)
              proxy_define_metric(0, 4, "requests") -> OK
              proxy_increment_metric(4, 2) -> OK
              proxy_increment_metric(4, 18446744073709551615) -> BAD_ARGUMENT
              proxy_get_metric(4) -> OK
              proxy_define_metric(2, 6, "requests") -> OK
              proxy_get_metric(6) -> BAD_ARGUMENT
              proxy_record_metric(6, 9) -> OK
              proxy_define_metric(3, "requests") -> BAD_ARGUMENT
              proxy_increment_metric(8, 1) -> NOT_FOUND
              => 0
            -> Continue
        "#]],
    );
}

#[test]
fn http_call_needs_a_known_cluster_and_pseudo_headers() {
    // Pairs at 400: 3 pairs (:method GET, :path /, :authority a); at 500: only :path.
    let pairs = "(data (i32.const 400) \"\\03\\00\\00\\00\\07\\00\\00\\00\\03\\00\\00\\00\\05\\00\\00\\00\\01\\00\\00\\00\\0a\\00\\00\\00\\01\\00\\00\\00:method\\00GET\\00:path\\00/\\00:authority\\00a\\00\")\n(data (i32.const 500) \"\\01\\00\\00\\00\\05\\00\\00\\00\\01\\00\\00\\00:path\\00/\\00\")";
    let guest_calls = calls(&[
        "$proxy_http_call (i32.const 220) (i32.const 4) (i32.const 400) (i32.const 61) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 1000) (i32.const 8)",
        "$proxy_http_call (i32.const 240) (i32.const 7) (i32.const 400) (i32.const 61) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 1000) (i32.const 8)",
        "$proxy_http_call (i32.const 220) (i32.const 4) (i32.const 500) (i32.const 20) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 1000) (i32.const 8)",
        "$proxy_http_call (i32.const 220) (i32.const 4) (i32.const 400) (i32.const 61) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const -1) (i32.const 8)",
    ]);
    check_with(
        pairs,
        &guest_calls,
        expect![[r#"
        proxy_on_context_create(ctx=2, 1)
          => ()
        proxy_on_request_headers(ctx=2, 4, 0)
          proxy_http_call(1000, 4, "auth") -> OK
          proxy_http_call(1000, "missing") -> BAD_ARGUMENT
          proxy_http_call(1000, "auth") -> BAD_ARGUMENT
          proxy_http_call(4294967295, "auth") -> BAD_ARGUMENT
          => 0
        -> Continue
    "#]],
    );
}

#[test]
fn local_response_stops_iteration_and_passes_through_response_callbacks() {
    check(
        &calls(&[
            "$proxy_send_local_response (i32.const 403) (i32.const 360) (i32.const 5) (i32.const 140) (i32.const 5) (i32.const 0) (i32.const 0) (i32.const -1)",
        ]),
        expect![[r#"
            proxy_on_context_create(ctx=2, 1)
              => ()
            proxy_on_request_headers(ctx=2, 4, 0)
              proxy_send_local_response(403, "hello", "value") -> OK
              => 0
            # local reply ctx=2 403 "hello"
            proxy_on_response_headers(ctx=2, 3, 0)
              => 0
            proxy_on_response_body(ctx=2, 5, 1)
              => 0
            -> LocalReply(403)
        "#]],
    );
}

#[test]
fn stream_control_statuses() {
    check(
        &calls(&[
            "$proxy_continue_stream (i32.const 2)",
            "$proxy_continue_stream (i32.const 3)",
            "$proxy_continue_stream (i32.const 4)",
            "$proxy_close_stream (i32.const 9)",
            "$proxy_set_effective_context (i32.const 1)",
            "$proxy_set_effective_context (i32.const 99)",
            "$proxy_done",
        ]),
        expect![[r#"
            proxy_on_context_create(ctx=2, 1)
              => ()
            proxy_on_request_headers(ctx=2, 4, 0)
              proxy_continue_stream(downstream) -> OK
              proxy_continue_stream(upstream) -> UNIMPLEMENTED
              proxy_continue_stream(4) -> BAD_ARGUMENT
              proxy_close_stream(9) -> BAD_ARGUMENT
              proxy_set_effective_context(1) -> OK
              proxy_set_effective_context(99) -> BAD_ARGUMENT
              proxy_done() -> NOT_FOUND
              => 0
            -> Continue
        "#]],
    );
}

/// Envoy 1.40 segfaults when a filter continues the response from its request-headers
/// callback before any response (seen with the probe and a 0.1.0 guest); host-sim traps
/// with a message saying so instead of answering OK.
#[test]
fn continue_response_from_request_headers_traps_as_envoy_crashes() {
    check(
        &calls(&["$proxy_continue_stream (i32.const 1)"]),
        expect![[r#"
            proxy_on_context_create(ctx=2, 1)
              => ()
            proxy_on_request_headers(ctx=2, 4, 0)
              => trap "the filter continued the response (proxy_continue_stream(RESPONSE) or proxy_continue_response) from its request-headers callback before any response: Envoy 1.40 crashes on this call (segmentation fault), so host-sim refuses it"
            # local reply by envoy ctx=2 503 "wasm_fail_stream"
            -> Trapped in proxy_on_request_headers: the filter continued the response (proxy_continue_stream(RESPONSE) or proxy_continue_response) from its request-headers callback before any response: Envoy 1.40 crashes on this call (segmentation fault), so host-sim refuses it
        "#]],
    );
}

#[test]
fn foreign_functions_are_not_found_unless_registered() {
    check(
        &calls(&[
            "$proxy_call_foreign_function (i32.const 320) (i32.const 8) (i32.const 140) (i32.const 5) (i32.const 8) (i32.const 12)",
            "$proxy_call_foreign_function (i32.const 360) (i32.const 5) (i32.const 140) (i32.const 5) (i32.const 8) (i32.const 12)",
            "$proxy_call_foreign_function (i32.const 380) (i32.const 4) (i32.const 140) (i32.const 5) (i32.const 8) (i32.const 12)",
        ]),
        expect![[r#"
            proxy_on_context_create(ctx=2, 1)
              => ()
            proxy_on_request_headers(ctx=2, 4, 0)
              proxy_call_foreign_function("compress", "value") -> NOT_FOUND
              proxy_call_foreign_function("hello", "value") -> OK "hi value"
              proxy_call_foreign_function("fail", "value") -> INTERNAL_FAILURE
              => 0
            -> Continue
        "#]],
    );
}

#[test]
fn logging_time_status_and_log_level() {
    check(
        &calls(&[
            "$proxy_log (i32.const 4) (i32.const 140) (i32.const 5)",
            "$proxy_log (i32.const 6) (i32.const 140) (i32.const 5)",
            "$proxy_get_log_level (i32.const 8)",
            "$proxy_get_current_time_nanoseconds (i32.const 8)",
            "$proxy_get_status (i32.const 8) (i32.const 12) (i32.const 16)",
            "$proxy_set_tick_period_milliseconds (i32.const 100)",
        ]),
        expect![[r#"
            proxy_on_context_create(ctx=2, 1)
              => ()
            proxy_on_request_headers(ctx=2, 4, 0)
              log error "value"
              proxy_log(6) -> BAD_ARGUMENT
              proxy_get_log_level() -> OK
              proxy_get_current_time_nanoseconds(1767225600000000000) -> OK
              proxy_get_status(0) -> OK ""
              proxy_set_tick_period_milliseconds(100) -> OK
              => 0
            -> Continue
        "#]],
    );
}

#[test]
fn grpc_calls_need_a_known_cluster() {
    check(
        &calls(&[
            "$proxy_grpc_call (i32.const 220) (i32.const 4) (i32.const 360) (i32.const 5) (i32.const 140) (i32.const 5) (i32.const 0) (i32.const 0) (i32.const 140) (i32.const 5) (i32.const 1000) (i32.const 8)",
            "$proxy_grpc_call (i32.const 240) (i32.const 7) (i32.const 360) (i32.const 5) (i32.const 140) (i32.const 5) (i32.const 0) (i32.const 0) (i32.const 140) (i32.const 5) (i32.const 1000) (i32.const 8)",
            "$proxy_grpc_call (i32.const 240) (i32.const 0) (i32.const 360) (i32.const 5) (i32.const 140) (i32.const 5) (i32.const 0) (i32.const 0) (i32.const 140) (i32.const 5) (i32.const 1000) (i32.const 8)",
            "$proxy_grpc_stream (i32.const 220) (i32.const 4) (i32.const 360) (i32.const 5) (i32.const 140) (i32.const 5) (i32.const 0) (i32.const 0) (i32.const 8)",
            "$proxy_grpc_send (i32.const 6) (i32.const 140) (i32.const 5) (i32.const 0)",
            "$proxy_grpc_send (i32.const 5) (i32.const 140) (i32.const 5) (i32.const 0)",
            "$proxy_grpc_send (i32.const 10) (i32.const 140) (i32.const 5) (i32.const 0)",
            "$proxy_grpc_cancel (i32.const 5)",
            "$proxy_grpc_close (i32.const 6)",
            "$proxy_grpc_close (i32.const 7)",
            "$proxy_grpc_cancel (i32.const 9)",
        ]),
        expect![[r#"
            proxy_on_context_create(ctx=2, 1)
              => ()
            proxy_on_request_headers(ctx=2, 4, 0)
              proxy_grpc_call(1000, "auth", "hello", "value") -> OK
              proxy_grpc_call(1000, "missing", "hello", "value") -> PARSE_FAILURE
              proxy_grpc_call(1000, "", "hello", "value") -> BAD_ARGUMENT
              proxy_grpc_stream("auth", "hello", "value") -> OK
              proxy_grpc_send(6, 0, "value") -> OK
              proxy_grpc_send(5, 0, "value") -> BAD_ARGUMENT
              proxy_grpc_send(10, 0, "value") -> NOT_FOUND
              proxy_grpc_cancel(5) -> OK
              proxy_grpc_close(6) -> OK
              proxy_grpc_close(7) -> BAD_ARGUMENT
              proxy_grpc_cancel(9) -> NOT_FOUND
              => 0
            -> Continue
        "#]],
    );
}

#[test]
fn wasi_stubs_return_envoys_errnos() {
    check(
        &calls(&[
            "$wasi_fd_read (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0)",
            "$wasi_path_open (i32.const 3) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i64.const 0) (i64.const 0) (i32.const 0) (i32.const 8)",
            "$wasi_fd_prestat_get (i32.const 3) (i32.const 8)",
            "$wasi_path_filestat_get (i32.const 3) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 8)",
            "$wasi_fd_seek (i32.const 1) (i64.const 0) (i32.const 0) (i32.const 8)",
            "$wasi_fd_close (i32.const 1)",
            "$wasi_fd_write (i32.const 3) (i32.const 0) (i32.const 0) (i32.const 8)",
            "$wasi_fd_fdstat_get (i32.const 0) (i32.const 8)",
            "$wasi_clock_time_get (i32.const 2) (i64.const 0) (i32.const 8)",
            "$wasi_random_get (i32.const 8) (i32.const 65537)",
            "$wasi_fd_renumber (i32.const 1) (i32.const 2)",
            "$wasi_sched_yield",
        ]),
        expect![[r#"
            proxy_on_context_create(ctx=2, 1)
              => ()
            proxy_on_request_headers(ctx=2, 4, 0)
              fd_read() -> errno 52
              path_open() -> errno 44
              fd_prestat_get() -> errno 8
              path_filestat_get() -> errno 58
              fd_seek() -> errno 0
              fd_close() -> errno 0
              fd_write(3) -> errno 8
              fd_fdstat_get(0) -> errno 8
              clock_time_get(2) -> errno 58
              random_get(65537) -> errno 28
              fd_renumber(1, 2) -> errno 58
              sched_yield() -> errno 0
              => 0
            -> Continue
        "#]],
    );
}

#[test]
fn fd_write_to_stdout_and_stderr_logs() {
    // iovec at 600: {buf 140, len 5}.
    let guest =
        "(i32.store (i32.const 600) (i32.const 140)) (i32.store (i32.const 604) (i32.const 5))\n";
    check(
        &format!(
            "{guest}{}",
            calls(&[
                "$wasi_fd_write (i32.const 1) (i32.const 600) (i32.const 1) (i32.const 8)",
                "$wasi_fd_write (i32.const 2) (i32.const 600) (i32.const 1) (i32.const 8)",
            ])
        ),
        expect![[r#"
            proxy_on_context_create(ctx=2, 1)
              => ()
            proxy_on_request_headers(ctx=2, 4, 0)
              log info "value"
              fd_write(1) -> errno 0
              log error "value"
              fd_write(2) -> errno 0
              => 0
            -> Continue
        "#]],
    );
}

#[test]
fn property_values_are_encoded_as_envoy_serializes_them() {
    let cases = [
        PropertyValue::String("ab".into()),
        PropertyValue::Int(-2),
        PropertyValue::Uint(3),
        PropertyValue::Bool(true),
        PropertyValue::DurationNanos(5),
        PropertyValue::Map(vec![("k".into(), PropertyValue::String("v".into()))]),
        PropertyValue::List(vec![PropertyValue::String("a".into())]),
    ];
    let rendered: Vec<String> = cases
        .iter()
        .map(|value| format!("{:?}", value.encode()))
        .collect();
    expect![[r#"
        [97, 98]
        [254, 255, 255, 255, 255, 255, 255, 255]
        [3, 0, 0, 0, 0, 0, 0, 0]
        [1]
        [5, 0, 0, 0, 0, 0, 0, 0]
        [1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 107, 0, 118, 0]
        [1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 97, 0, 0]"#]]
    .assert_eq(&rendered.join("\n"));
}

/// The four functions only ABI 0.1.0 modules get. `proxy_get_configuration` is the plugin
/// configuration while a plugin is being configured, the VM configuration otherwise (Envoy
/// `Context::getConfiguration`); `proxy_continue_request/response` continue as
/// `proxy_continue_stream` does (here from a tick, through the effective context);
/// `proxy_clear_route_cache` is always OK.
#[test]
fn abi_0_1_0_only_functions() {
    let wat = r#"(module
      (import "env" "proxy_get_configuration" (func $config (param i32 i32) (result i32)))
      (import "env" "proxy_continue_request" (func $continue_request (result i32)))
      (import "env" "proxy_continue_response" (func $continue_response (result i32)))
      (import "env" "proxy_clear_route_cache" (func $clear (result i32)))
      (import "env" "proxy_set_effective_context" (func $effective (param i32) (result i32)))
      (import "env" "proxy_set_tick_period_milliseconds" (func $tick (param i32) (result i32)))
      (memory (export "memory") 1)
      (global $heap (mut i32) (i32.const 4096))
      (func (export "malloc") (param $size i32) (result i32) (local $at i32)
        global.get $heap local.set $at
        global.get $heap local.get $size i32.add global.set $heap
        local.get $at)
      (func (export "proxy_abi_version_0_1_0"))
      (func (export "proxy_on_configure") (param i32 i32) (result i32)
        (drop (call $config (i32.const 8) (i32.const 12)))
        (drop (call $tick (i32.const 10)))
        i32.const 1)
      (func (export "proxy_on_request_headers") (param i32 i32) (result i32)
        (drop (call $config (i32.const 8) (i32.const 12)))
        (drop (call $config (i32.const 65535) (i32.const 12)))
        (drop (call $clear))
        i32.const 1)
      (func (export "proxy_on_request_body") (param i32 i32 i32) (result i32) i32.const 0)
      (func (export "proxy_on_tick") (param i32)
        (drop (call $continue_response))
        (drop (call $effective (i32.const 2)))
        (drop (call $continue_request))))"#;
    let module = filterkit_host_sim::Module::from_bytes(wat.as_bytes()).unwrap();
    let mut sim = Sim::builder(&module)
        .plugin("root", "plugin-config")
        .vm_configuration("vm-config")
        .build()
        .unwrap();
    let start = sim.render_trace();
    sim.clear_trace();
    let mut stream = sim.stream("root").unwrap();
    let headers = stream.send_request_headers(&[(":path", "/")], false);
    let body = stream.send_request_body(b"ab", true);
    let tick = stream.sim().advance(std::time::Duration::from_millis(10));
    let stream = sim.stream_by_id(2).unwrap();
    let upstream = String::from_utf8_lossy(stream.upstream_body()).into_owned();
    expect![[r#"
        proxy_on_configure(ctx=1, 13)
          proxy_get_configuration() -> OK "plugin-config"
          proxy_set_tick_period_milliseconds(10) -> OK
          => 1
        Paused(StopAllIterationAndWatermark) Paused(Held) Continue upstream="ab"
        proxy_on_request_headers(ctx=2, 1)
          proxy_get_configuration() -> OK "vm-config"
          proxy_get_configuration() -> INVALID_MEMORY_ACCESS "vm-config"
          proxy_clear_route_cache() -> OK
          => 1
        proxy_on_tick(ctx=1)
          proxy_continue_response() -> OK
          proxy_set_effective_context(2) -> OK
          proxy_continue_request() -> OK
          => ()
        # request continued ctx=2
        proxy_on_request_body(ctx=2, 2, 1)
          => 0
    "#]]
    .assert_eq(&format!(
        "{start}{} {} {} upstream={upstream:?}\n{}",
        render_outcome(&headers),
        render_outcome(&body),
        render_outcome(&tick),
        sim.render_trace()
    ));
}

/// A call through a `call_wasi_*` forwarder, and the output it should have written: address
/// and width in bytes (1, 2, 4 or 8).
struct WasiCall(&'static str, &'static [i64], Option<(i64, u32)>);

/// Calls each WASI function from the root context and renders its errno and what it wrote.
fn check_wasi(calls: &[WasiCall], expect: Expect) {
    let guest = Guest {
        fields: "(func (export \"load\") (param $at i32) (param $width i32) (result i64)
            (if (result i64) (i32.eq (local.get $width) (i32.const 8))
              (then (i64.load (local.get $at)))
              (else (if (result i64) (i32.eq (local.get $width) (i32.const 4))
                (then (i64.load32_u (local.get $at)))
                (else (if (result i64) (i32.eq (local.get $width) (i32.const 2))
                  (then (i64.load16_u (local.get $at)))
                  (else (i64.load8_u (local.get $at)))))))))
          (func (export \"store\") (param $at i32) (param $value i32)
            (i32.store (local.get $at) (local.get $value)))\n"
            .to_string()
            + &data(140, "value\n"),
        ..Guest::default()
    };
    let module = guest.module();
    let mut sim = Sim::builder(&module)
        .plugin("root", "")
        .environment("HOME", "/x")
        .build()
        .unwrap();
    let root = sim.root_context_id("root").unwrap();
    // An iovec at 600 pointing at "value\n".
    sim.call_guest_function("store", root, &[600, 140]).unwrap();
    sim.call_guest_function("store", root, &[604, 6]).unwrap();
    let mut out = String::new();
    for WasiCall(name, args, output) in calls {
        // Poison the output so a missing write shows.
        if let Some((at, _)) = output {
            sim.call_guest_function("store", root, &[*at, 0x5a5a_5a5a])
                .unwrap();
            sim.call_guest_function("store", root, &[*at + 4, 0x5a5a_5a5a])
                .unwrap();
        }
        let errno = match sim.call_guest_function(&format!("call_wasi_{name}"), root, args) {
            Ok(Some(errno)) => errno.to_string(),
            Ok(None) => "()".to_string(),
            Err(trap) => format!("trap {trap}"),
        };
        out.push_str(&format!("{name}{args:?} -> {errno}"));
        if let Some((at, width)) = output {
            let value = sim
                .call_guest_function("load", root, &[*at, i64::from(*width)])
                .unwrap()
                .unwrap();
            out.push_str(&format!(" [{at}]={value:#x}"));
        }
        out.push('\n');
    }
    for log in sim.logs() {
        out.push_str(&format!("log {} {:?}\n", log.level_name(), log.message));
    }
    expect.assert_eq(&out);
}

#[test]
fn wasi_functions_answer_as_envoy_does() {
    check_wasi(
        &[
            WasiCall("fd_write", &[1, 600, 1, 8], Some((8, 4))),
            WasiCall("fd_write", &[2, 600, 1, 8], Some((8, 4))),
            WasiCall("fd_write", &[3, 600, 1, 8], Some((8, 4))),
            WasiCall("fd_pwrite", &[1, 600, 1, 0, 8], Some((8, 4))),
            WasiCall("fd_pwrite", &[0, 600, 1, 0, 8], Some((8, 4))),
            WasiCall("fd_fdstat_get", &[1, 16], Some((24, 8))),
            WasiCall("fd_fdstat_get", &[3, 16], None),
            WasiCall("clock_time_get", &[0, 1, 8], Some((8, 8))),
            WasiCall("clock_time_get", &[1, 1, 8], Some((8, 8))),
            WasiCall("clock_time_get", &[2, 1, 8], Some((8, 8))),
            WasiCall("clock_res_get", &[0, 8], Some((8, 8))),
            WasiCall("clock_res_get", &[3, 8], Some((8, 8))),
            WasiCall("random_get", &[8, 2], Some((8, 4))),
            WasiCall("random_get", &[8, 0], Some((8, 4))),
            WasiCall("random_get", &[8, 65537], Some((8, 4))),
            WasiCall("environ_sizes_get", &[8, 12], Some((8, 8))),
            WasiCall("environ_get", &[8, 32], Some((32, 8))),
            WasiCall("args_sizes_get", &[8, 12], Some((8, 8))),
            WasiCall("args_get", &[8, 32], None),
            WasiCall("fd_tell", &[1, 8], Some((8, 8))),
            WasiCall("fd_tell", &[3, 8], Some((8, 8))),
            WasiCall("fd_readdir", &[3, 0, 0, 0, 8], Some((8, 4))),
            WasiCall("path_readlink", &[3, 0, 0, 0, 0, 8], Some((8, 4))),
            WasiCall("sock_accept", &[3, 0, 8], Some((8, 8))),
            WasiCall("sock_recv", &[3, 0, 0, 0, 8, 12], Some((8, 8))),
            WasiCall("sock_send", &[3, 0, 0, 0, 8], Some((8, 4))),
            WasiCall("sock_shutdown", &[3, 0], None),
            WasiCall("poll_oneoff", &[0, 0, 1, 8], Some((8, 4))),
            WasiCall("fd_read", &[0, 600, 1, 8], None),
            WasiCall("fd_pread", &[0, 600, 1, 0, 8], None),
            WasiCall("fd_seek", &[1, 0, 0, 8], None),
            WasiCall("fd_close", &[1], None),
            WasiCall("fd_advise", &[9, 0, 0, 0], None),
            WasiCall("fd_allocate", &[1, 0, 0], None),
            WasiCall("fd_allocate", &[3, 0, 0], None),
            WasiCall("fd_datasync", &[2], None),
            WasiCall("fd_datasync", &[3], None),
            WasiCall("fd_sync", &[1], None),
            WasiCall("fd_sync", &[0], None),
            WasiCall("fd_fdstat_set_rights", &[1, 0, 0], None),
            WasiCall("fd_fdstat_set_rights", &[3, 0, 0], None),
            WasiCall("fd_fdstat_set_flags", &[1, 0], None),
            WasiCall("fd_filestat_get", &[1, 8], None),
            WasiCall("fd_filestat_set_size", &[1, 0], None),
            WasiCall("fd_filestat_set_size", &[3, 0], None),
            WasiCall("fd_filestat_set_times", &[2, 0, 0, 0], None),
            WasiCall("fd_filestat_set_times", &[3, 0, 0, 0], None),
            WasiCall("fd_prestat_get", &[3, 8], None),
            WasiCall("fd_prestat_dir_name", &[3, 8, 4], None),
            WasiCall("fd_renumber", &[1, 2], None),
            WasiCall("fd_renumber", &[1, 3], None),
            WasiCall("path_open", &[3, 0, 0, 0, 0, 0, 0, 0, 8], None),
            WasiCall("path_filestat_get", &[3, 0, 0, 0, 8], None),
            WasiCall("path_create_directory", &[3, 0, 0], None),
            WasiCall("path_filestat_set_times", &[3, 0, 0, 0, 0, 0, 0], None),
            WasiCall("path_link", &[3, 0, 0, 0, 3, 0], None),
            WasiCall("path_remove_directory", &[3, 0, 0], None),
            WasiCall("path_rename", &[3, 0, 0, 3, 0, 0], None),
            WasiCall("path_symlink", &[0, 0, 3, 0], None),
            WasiCall("path_unlink_file", &[3, 0, 0], None),
            WasiCall("sched_yield", &[], None),
            WasiCall("proc_exit", &[3], None),
        ],
        expect![[r#"
            fd_write[1, 600, 1, 8] -> 0 [8]=0x6
            fd_write[2, 600, 1, 8] -> 0 [8]=0x6
            fd_write[3, 600, 1, 8] -> 8 [8]=0x5a5a5a5a
            fd_pwrite[1, 600, 1, 0, 8] -> 0 [8]=0x6
            fd_pwrite[0, 600, 1, 0, 8] -> 8 [8]=0x5a5a5a5a
            fd_fdstat_get[1, 16] -> 0 [24]=0x40
            fd_fdstat_get[3, 16] -> 8
            clock_time_get[0, 1, 8] -> 0 [8]=0x18867251edfa0000
            clock_time_get[1, 1, 8] -> 0 [8]=0x0
            clock_time_get[2, 1, 8] -> 58 [8]=0x5a5a5a5a5a5a5a5a
            clock_res_get[0, 8] -> 0 [8]=0x1
            clock_res_get[3, 8] -> 58 [8]=0x5a5a5a5a5a5a5a5a
            random_get[8, 2] -> 0 [8]=0x5a5a698e
            random_get[8, 0] -> 0 [8]=0x5a5a5a5a
            random_get[8, 65537] -> 28 [8]=0x5a5a5a5a
            environ_sizes_get[8, 12] -> 0 [8]=0x800000001
            environ_get[8, 32] -> 0 [32]=0x782f3d454d4f48
            args_sizes_get[8, 12] -> 0 [8]=0x0
            args_get[8, 32] -> 0
            fd_tell[1, 8] -> 0 [8]=0x0
            fd_tell[3, 8] -> 8 [8]=0x5a5a5a5a5a5a5a5a
            fd_readdir[3, 0, 0, 0, 8] -> 20 [8]=0x0
            path_readlink[3, 0, 0, 0, 0, 8] -> 58 [8]=0x0
            sock_accept[3, 0, 8] -> 58 [8]=0x0
            sock_recv[3, 0, 0, 0, 8, 12] -> 58 [8]=0x5a5a000000000000
            sock_send[3, 0, 0, 0, 8] -> 58 [8]=0x0
            sock_shutdown[3, 0] -> 58
            poll_oneoff[0, 0, 1, 8] -> 0 [8]=0x0
            fd_read[0, 600, 1, 8] -> 52
            fd_pread[0, 600, 1, 0, 8] -> 52
            fd_seek[1, 0, 0, 8] -> 0
            fd_close[1] -> 0
            fd_advise[9, 0, 0, 0] -> 0
            fd_allocate[1, 0, 0] -> 0
            fd_allocate[3, 0, 0] -> 8
            fd_datasync[2] -> 0
            fd_datasync[3] -> 8
            fd_sync[1] -> 0
            fd_sync[0] -> 8
            fd_fdstat_set_rights[1, 0, 0] -> 0
            fd_fdstat_set_rights[3, 0, 0] -> 8
            fd_fdstat_set_flags[1, 0] -> 52
            fd_filestat_get[1, 8] -> 8
            fd_filestat_set_size[1, 0] -> 0
            fd_filestat_set_size[3, 0] -> 8
            fd_filestat_set_times[2, 0, 0, 0] -> 0
            fd_filestat_set_times[3, 0, 0, 0] -> 8
            fd_prestat_get[3, 8] -> 8
            fd_prestat_dir_name[3, 8, 4] -> 52
            fd_renumber[1, 2] -> 58
            fd_renumber[1, 3] -> 8
            path_open[3, 0, 0, 0, 0, 0, 0, 0, 8] -> 44
            path_filestat_get[3, 0, 0, 0, 8] -> 58
            path_create_directory[3, 0, 0] -> 58
            path_filestat_set_times[3, 0, 0, 0, 0, 0, 0] -> 58
            path_link[3, 0, 0, 0, 3, 0] -> 58
            path_remove_directory[3, 0, 0] -> 58
            path_rename[3, 0, 0, 3, 0, 0] -> 58
            path_symlink[0, 0, 3, 0] -> 58
            path_unlink_file[3, 0, 0] -> 58
            sched_yield[] -> 0
            proc_exit[3] -> ()
            log info "value"
            log error "value"
            log info "value"
        "#]],
    );
}

/// Envoy's two `env` extras: `pthread_equal` compares, `emscripten_notify_memory_growth` does
/// nothing.
#[test]
fn env_extras_pthread_equal_and_memory_growth() {
    let module = crate::guest::forwarding_module();
    let mut sim = Sim::builder(&module).plugin("root", "").build().unwrap();
    let root = sim.root_context_id("root").unwrap();
    let results: Vec<String> = [
        ("call_pthread_equal", vec![3, 3]),
        ("call_pthread_equal", vec![3, 4]),
        ("call_emscripten_notify_memory_growth", vec![0]),
    ]
    .iter()
    .map(|(name, args)| {
        format!(
            "{name}{args:?} -> {:?}",
            sim.call_guest_function(name, root, args)
        )
    })
    .collect();
    expect![[r#"
        call_pthread_equal[3, 3] -> Ok(Some(1))
        call_pthread_equal[3, 4] -> Ok(Some(0))
        call_emscripten_notify_memory_growth[0] -> Ok(None)"#]]
    .assert_eq(&results.join("\n"));
}

/// The snippet runs in `proxy_on_configure`, on a root context: no stream, so no header
/// maps, no stream properties; the plugin configuration is readable.
fn check_on_root_context(snippet: &str, expect: Expect) {
    let guest = Guest {
        fields: strings(),
        configure: Some(format!("{snippet}\n i32.const 1")),
        ..Guest::default()
    };
    let module = guest.module();
    let sim = Sim::builder(&module)
        .plugin("root", "config")
        .canary(false)
        .build()
        .unwrap();
    expect.assert_eq(&sim.render_trace());
}

#[test]
fn root_context_statuses() {
    check_on_root_context(
        &calls(&[
            "$proxy_set_property (i32.const 260) (i32.const 3) (i32.const 140) (i32.const 5)",
            "$proxy_get_header_map_value (i32.const 0) (i32.const 100) (i32.const 3) (i32.const 8) (i32.const 12)",
            "$proxy_replace_header_map_value (i32.const 0) (i32.const 100) (i32.const 3) (i32.const 140) (i32.const 5)",
            "$proxy_remove_header_map_value (i32.const 2) (i32.const 100) (i32.const 3)",
            "$proxy_set_header_map_pairs (i32.const 0) (i32.const 0) (i32.const 0)",
            "$proxy_get_header_map_pairs (i32.const 0) (i32.const 8) (i32.const 12)",
            "$proxy_get_header_map_pairs (i32.const 9) (i32.const 8) (i32.const 12)",
            "$proxy_get_buffer_bytes (i32.const 7) (i32.const 0) (i32.const 100) (i32.const 8) (i32.const 12)",
            "$proxy_get_buffer_status (i32.const 7) (i32.const 8) (i32.const 12)",
            "$proxy_get_buffer_status (i32.const 4) (i32.const 8) (i32.const 12)",
            "$proxy_get_buffer_status (i32.const 9) (i32.const 8) (i32.const 12)",
            "$proxy_set_buffer_bytes (i32.const 4) (i32.const 0) (i32.const 0) (i32.const 140) (i32.const 5)",
            "$proxy_send_local_response (i32.const 403) (i32.const 360) (i32.const 5) (i32.const 140) (i32.const 5) (i32.const 0) (i32.const 0) (i32.const -1)",
            "$proxy_continue_stream (i32.const 0)",
            "$proxy_close_stream (i32.const 1)",
            "$proxy_done",
            "$proxy_grpc_stream (i32.const 240) (i32.const 7) (i32.const 360) (i32.const 5) (i32.const 140) (i32.const 5) (i32.const 0) (i32.const 0) (i32.const 8)",
            "$proxy_record_metric (i32.const 99) (i64.const 1)",
            "$proxy_get_metric (i32.const 99) (i32.const 16)",
            "$proxy_get_metric (i32.const 100) (i32.const 16)",
        ]),
        expect![[r#"
            proxy_on_context_create(ctx=1, 0)
              => ()
            proxy_on_vm_start(ctx=1, 0)
              => 1
            proxy_on_configure(ctx=1, 6)
              proxy_set_property("key", "value") -> NOT_FOUND
              proxy_get_header_map_value(request_headers, "x-a") -> BAD_ARGUMENT
              proxy_replace_header_map_value(request_headers, "x-a", "value") -> BAD_ARGUMENT
              proxy_remove_header_map_value(response_headers, "x-a") -> BAD_ARGUMENT
              proxy_set_header_map_pairs(request_headers, 0) -> BAD_ARGUMENT
              proxy_get_header_map_pairs(request_headers) -> OK
              proxy_get_header_map_pairs(9) -> BAD_ARGUMENT
              proxy_get_buffer_bytes(plugin_configuration, 0, 100) -> OK "config"
              proxy_get_buffer_status(plugin_configuration, 6) -> OK
              proxy_get_buffer_status(http_call_response_body) -> NOT_FOUND
              proxy_get_buffer_status(9) -> BAD_ARGUMENT
              proxy_set_buffer_bytes(http_call_response_body, 0, 0) -> NOT_FOUND
              proxy_send_local_response(403, "hello", "value") -> OK
              proxy_continue_stream(request) -> OK
              proxy_close_stream(response) -> OK
              proxy_done() -> NOT_FOUND
              proxy_grpc_stream("missing", "hello", "value") -> PARSE_FAILURE
              proxy_record_metric(99, 1) -> NOT_FOUND
              proxy_get_metric(99) -> BAD_ARGUMENT
              proxy_get_metric(100) -> NOT_FOUND
              => 1
        "#]],
    );
}

#[test]
fn envoy_resolve_dns_is_imported_and_answers_a_token() {
    // Envoy registers `env.envoy_resolve_dns` itself (`wasm.cc`); a module importing it loads.
    // The token is written before the lookup starts; host-sim resolves nothing.
    check(
        &calls(&[
            "$envoy_resolve_dns (i32.const 220) (i32.const 4) (i32.const 8)",
            "$envoy_resolve_dns (i32.const 220) (i32.const 4) (i32.const 8)",
            "$envoy_resolve_dns (i32.const 220) (i32.const 4) (i32.const -4)",
        ]),
        expect![[r#"
            proxy_on_context_create(ctx=2, 1)
              => ()
            proxy_on_request_headers(ctx=2, 4, 0)
              envoy_resolve_dns(2, "auth") -> OK
              envoy_resolve_dns(3, "auth") -> OK
              envoy_resolve_dns(4, "auth") -> INVALID_MEMORY_ACCESS
              => 0
            -> Continue
        "#]],
    );
}
