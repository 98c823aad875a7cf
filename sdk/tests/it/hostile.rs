//! Untrusted input never panics: configurations, header maps, bodies, properties and host
//! statuses through the fake host, and raw callback arguments (unknown ids and tokens, huge
//! sizes, odd flags) through the exported entry points. A panic would trap the VM in Envoy and
//! fail every request on that worker; here it fails the test.

use std::rc::Rc;

use filterkit::__private::{Filter, on_memory_allocate};
use filterkit::http::{self, BufferType, HeaderMap, MapType};
use filterkit::testing::Vm;
use filterkit::{Action, Error, HttpContext, RootContext, Status, grpc, properties};

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    name: String,
    #[serde(default)]
    limits: Vec<u32>,
}

impl filterkit::Config for Config {
    fn empty() -> Option<Config> {
        Some(Config {
            name: String::new(),
            limits: Vec::new(),
        })
    }
}

#[derive(Default)]
struct Root;

impl RootContext for Root {
    type Config = Config;
    type Http = Greedy;

    fn on_configure(&mut self, config: &Rc<Config>) -> bool {
        log::info!(
            "configured name={} limits={}",
            config.name.len(),
            config.limits.len()
        );
        true
    }

    fn create_http_context(&mut self, _: u32, _: Rc<Config>) -> Greedy {
        Greedy
    }
}

/// Reads everything it can in every callback, with the sizes the host claims.
struct Greedy;

const MAPS: [MapType; 8] = [
    MapType::RequestHeaders,
    MapType::RequestTrailers,
    MapType::ResponseHeaders,
    MapType::ResponseTrailers,
    MapType::GrpcReceiveInitialMetadata,
    MapType::GrpcReceiveTrailingMetadata,
    MapType::HttpCallResponseHeaders,
    MapType::HttpCallResponseTrailers,
];

fn touch_everything(size: usize) {
    for map_type in MAPS {
        let map = HeaderMap::new(map_type);
        let _ = map.pairs();
        let _ = map.get_str(":path");
        let _ = map.get("x-bytes");
        let _ = map.size();
        let _ = map.add("x-added", b"\xff\x00");
    }
    for buffer_type in [
        BufferType::HttpRequestBody,
        BufferType::HttpResponseBody,
        BufferType::CallData,
    ] {
        let buffer = http::Buffer::new(buffer_type);
        let _ = buffer.read(0, size);
        let _ = buffer.read(size, size);
        let _ = buffer.read(usize::MAX, usize::MAX);
        let _ = buffer.replace(usize::MAX, usize::MAX, b"x");
        let _ = buffer.len();
    }
    let _ = properties::plugin_root_id();
    let _ = properties::request_path();
    let _ = properties::response_code();
    let _ = properties::request_duration();
    let _ = properties::request_time();
    let _ = properties::connection_mtls();
    let _ = properties::get_f64(&["ratio"]);
    let _ = properties::get_u64(&["ratio"]);
    let _ = filterkit::host::status();
    let _ = filterkit::time::now();
    let _ = filterkit::shared::update(b"k", 3, |old| old.unwrap_or_default().to_vec());
    let _ = http::LocalReply::new(u32::MAX)
        .header("\u{0}", "\r\n")
        .grpc_status(u32::MAX)
        .send();
    log::debug!("touched size={size}");
}

impl HttpContext for Greedy {
    fn on_http_request_headers(&mut self, n_headers: usize, _: bool) -> Action {
        touch_everything(n_headers);
        Action::Continue
    }
    fn on_http_request_body(&mut self, body_size: usize, _: bool) -> Action {
        touch_everything(body_size);
        Action::Continue
    }
    fn on_http_request_trailers(&mut self, n_trailers: usize) -> Action {
        touch_everything(n_trailers);
        Action::Continue
    }
    fn on_http_response_headers(&mut self, n_headers: usize, _: bool) -> Action {
        touch_everything(n_headers);
        Action::Continue
    }
    fn on_http_response_body(&mut self, body_size: usize, _: bool) -> Action {
        touch_everything(body_size);
        Action::Continue
    }
    fn on_foreign_function(&mut self, _: u32, arguments: &[u8]) {
        touch_everything(arguments.len());
    }
}

/// Puts non-UTF-8 names and values, malformed properties and odd buffers in the fake host.
fn hostile_host(vm: &Vm<Root>) {
    let headers: [(&[u8], &[u8]); 4] = [
        (b":path", b"/\xff\xfe"),
        (b"\xc3\x28", b"invalid name"),
        (b"x-bytes", b"\x00\r\n"),
        (b"", b""),
    ];
    for map_type in MAPS {
        vm.set_header_bytes(map_type, &headers);
    }
    vm.set_property(&["request", "path"], b"\xff");
    vm.set_property(&["response", "code"], b"abc");
    vm.set_property(&["request", "duration"], &i64::MIN.to_le_bytes());
    vm.set_property(&["request", "time"], &(-1i64).to_le_bytes());
    vm.set_property(&["connection", "mtls"], b"");
    vm.set_property(&["ratio"], &f64::NAN.to_le_bytes());
    vm.set_buffer(BufferType::HttpRequestBody, &[0xff; 3]);
}

#[test]
fn hostile_host_data_and_statuses_are_error_values() {
    let vm = Vm::<Root>::new();
    vm.set_log_level(0);
    hostile_host(&vm);
    assert!(vm.configure("\u{0}root\n", b""));
    let stream = vm.create_stream();
    assert_eq!(
        HeaderMap::new(MapType::RequestHeaders).get_str(":path"),
        Err(Error::NotUtf8)
    );
    assert_eq!(
        properties::response_code(),
        Err(Error::BadPropertyValue {
            expected_len: 8,
            actual_len: 3
        })
    );
    assert!(properties::request_duration().is_err());
    // Every status the host could answer, known or not, instead of OK.
    for status in [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 99, u32::MAX] {
        vm.fail_host_calls(Some(status));
        vm.request_headers(stream, &[(":path", "/")]);
        vm.request_body(stream, b"body", true);
        vm.request_trailers(stream, &[]);
        vm.response_headers(stream, &[]);
        vm.response_body(stream, b"", false);
        vm.foreign_function(stream, 1, b"args");
        assert_eq!(
            HeaderMap::new(MapType::ResponseHeaders).get("x"),
            match status {
                1 => Ok(None),
                other => Err(Error::Host {
                    function: "proxy_get_header_map_value",
                    status: Status::check(other).unwrap_err(),
                }),
            }
        );
        // A configuration the host cannot hand over is rejected, not taken as empty;
        // NOT_FOUND means there is none.
        assert_eq!(vm.configure("r", br#"{"name":"x"}"#), status == 1);
    }
    vm.fail_host_calls(None);
    let logs = vm.logs();
    let rejected = "error: invalid plugin configuration for root_id=: \
                    proxy_get_buffer_bytes returned status 10";
    assert!(logs.iter().any(|line| line == rejected), "{logs:#?}");
    // 15 statuses × 6 callbacks, each logged once it had touched everything (with every host
    // call failing, `proxy_get_log_level` too: then everything is logged).
    let touched = logs
        .iter()
        .filter(|line| line.starts_with("debug: touched"))
        .count();
    assert_eq!(touched, 15 * 6, "{logs:#?}");
    assert_eq!(
        vm.request_headers(stream, &[(":path", "/")]),
        Action::Pause,
        "the LocalReply in touch_everything stops the stream"
    );
    vm.end_stream(stream);
}

#[test]
fn hostile_configurations_are_rejected_with_one_line_each() {
    let deep_array = "[".repeat(100_000);
    let deep_object = r#"{"name":"#.repeat(10_000);
    let long_name = format!(r#"{{"name":"{}"}}"#, "\\u00e9".repeat(100_000));
    let configs: Vec<&[u8]> = vec![
        b"\xff\xfe",
        b"{\"name\":\"\xff\"}",
        deep_array.as_bytes(),
        deep_object.as_bytes(),
        br#"{"name":"\ud800"}"#,
        br#"{"name":"\udc00\ud800"}"#,
        br#"{"name":"\u12"}"#,
        br#"{"name":"a","limits":[99999999999999999999999]}"#,
        br#"{"name":"a","limits":[-1]}"#,
        br#"{"name":1e999}"#,
        br#"{"name":"a"}garbage"#,
        b"{\"name\":\"a\0\"}",
        b"\0",
        b"-",
        b"{",
        b"\"\\",
        br#"{"name":"a","name":"b"}"#,
        br#"{"name":"a","other":1}"#,
    ];
    let vm = Vm::<Root>::new();
    for config in &configs {
        assert!(
            !vm.configure("r", config),
            "{}",
            String::from_utf8_lossy(config)
        );
    }
    let logs = vm.logs();
    assert_eq!(logs.len(), configs.len(), "{logs:#?}");
    assert!(
        logs.iter()
            .all(|line| line.starts_with("error: invalid plugin configuration for root_id=r: ")),
        "{logs:#?}"
    );
    // The parser still works afterwards, on a value as long as the hostile ones.
    assert!(vm.configure("r", long_name.as_bytes()));
}

#[test]
fn raw_entry_points_survive_unknown_ids_and_huge_sizes() {
    let vm = Vm::<Root>::new();
    vm.set_log_level(0);
    hostile_host(&vm);
    vm.set_buffer(BufferType::PluginConfiguration, br#"{"name":"x"}"#);
    let filter = Filter::<Root>::new();
    // Callbacks for contexts that were never created.
    for id in [0, 1, 7, u32::MAX] {
        assert_eq!(filter.on_configure(id, usize::MAX), 0);
        assert_eq!(filter.on_vm_start(id, usize::MAX), 1);
        assert_eq!(filter.on_request_headers(id, usize::MAX, u32::MAX), 0);
        assert_eq!(filter.on_response_body(id, usize::MAX, 2), 0);
        assert_eq!(filter.on_new_connection(id), 0);
        assert_eq!(filter.on_downstream_data(id, usize::MAX, 1), 0);
        filter.on_tick(id);
        filter.on_queue_ready(id, u32::MAX);
        filter.on_log(id);
        assert_eq!(filter.on_done(id), 1);
        filter.on_delete(id);
        filter.on_http_call_response(id, u32::MAX, usize::MAX, usize::MAX, usize::MAX);
        filter.on_grpc_receive_initial_metadata(id, u32::MAX, usize::MAX);
        filter.on_grpc_receive(id, u32::MAX, usize::MAX);
        filter.on_grpc_receive_trailing_metadata(id, u32::MAX, usize::MAX);
        filter.on_grpc_close(id, u32::MAX, u32::MAX);
        filter.on_foreign_function(id, u32::MAX, usize::MAX);
        filter.on_downstream_connection_close(id, u32::MAX);
        filter.on_upstream_connection_close(id, u32::MAX);
    }
    // A stream whose parent is not a root, a root created twice, a stream before configure.
    filter.on_context_create(5, 4);
    filter.on_context_create(1, 0);
    filter.on_context_create(2, 1);
    filter.on_context_create(1, 0);
    assert_eq!(filter.on_configure(1, usize::MAX), 1);
    filter.on_context_create(3, 1);
    filter.on_context_create(4, 3);
    // Sizes the host claims but does not have, flags that are neither 0 nor 1.
    assert_eq!(filter.on_request_headers(3, usize::MAX, u32::MAX), 0);
    // (Raw results: the local reply Greedy sends forces Stop in the host, not in the guest.)
    assert_eq!(filter.on_request_body(3, usize::MAX, 7), 0);
    assert_eq!(filter.on_request_trailers(3, usize::MAX), 0);
    assert_eq!(filter.on_response_headers(3, 0, 0), 0);
    filter.on_foreign_function(3, 0, usize::MAX);
    // gRPC signals for a stream the filter opened, in a hostile order.
    let opened = grpc::Stream::open("c", "s", "m", &[], |_: &mut Greedy, event| {
        log::info!("grpc {event:?}");
    })
    .unwrap();
    filter.on_grpc_close(3, opened.token(), u32::MAX);
    filter.on_grpc_receive_initial_metadata(3, opened.token(), usize::MAX);
    // The stream's own callbacks after its delete, and a second delete.
    filter.on_delete(3);
    filter.on_delete(3);
    assert_eq!(filter.on_response_trailers(3, usize::MAX), 0);
    assert_eq!(filter.on_done(1), 1);
    filter.on_delete(1);
    // Only the live stream and its gRPC handler ran, with the sizes the host claimed (the
    // foreign function's arguments are the four bytes `touch_everything` appended to them);
    // everything else was ignored.
    assert_eq!(
        vm.logs(),
        [
            "info: configured name=1 limits=0",
            "debug: touched size=18446744073709551615",
            "debug: touched size=18446744073709551615",
            "debug: touched size=18446744073709551615",
            "debug: touched size=0",
            "debug: touched size=4",
            "info: grpc Close { status_code: 4294967295 }",
        ]
    );
}

#[test]
fn allocation_requests_the_guest_cannot_meet_get_null_not_a_trap() {
    assert!(on_memory_allocate(usize::MAX).is_null());
    assert!(on_memory_allocate(isize::MAX as usize + 1).is_null());
    assert!(!on_memory_allocate(0).is_null());
}
