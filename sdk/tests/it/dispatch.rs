//! Roots, streams, callouts and their lifetimes.

use std::rc::Rc;
use std::time::Duration;

use expect_test::expect;
use filterkit::testing::Vm;
use filterkit::{Action, HttpContext, RootContext, grpc, http};

use crate::check;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    tag: String,
}

impl filterkit::Config for Config {
    fn validate(&self) -> Result<(), String> {
        if self.tag.contains(' ') {
            return Err(filterkit::join(&[
                "tag ",
                &filterkit::quote(&self.tag),
                " has a space",
            ]));
        }
        Ok(())
    }
}

/// Logs every callback it sees, calls out on `/call` and `/grpc`, replies locally on `/deny`.
#[derive(Default)]
struct Root {
    ticks: u32,
}

impl RootContext for Root {
    type Config = Config;
    type Http = Stream;

    fn on_configure(&mut self, config: &Rc<Config>) -> bool {
        log::info!("root configured tag={}", config.tag);
        true
    }

    fn create_http_context(&mut self, context_id: u32, config: Rc<Config>) -> Stream {
        Stream {
            context_id,
            config,
            grpc: None,
        }
    }

    fn on_tick(&mut self) {
        self.ticks += 1;
        log::info!("tick {}", self.ticks);
    }

    fn on_foreign_function(&mut self, function_id: u32, arguments: &[u8]) {
        log::info!(
            "root foreign function {function_id} {} bytes",
            arguments.len()
        );
    }
}

struct Stream {
    context_id: u32,
    config: Rc<Config>,
    grpc: Option<grpc::Stream>,
}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        let path = http::request_headers().get_str(":path").ok().flatten();
        match path.as_deref() {
            Some("/call") => {
                let headers = [
                    (":method", "GET"),
                    (":path", "/auth"),
                    (":authority", "auth"),
                ];
                let sent = http::call(
                    "auth",
                    &headers,
                    b"",
                    Duration::from_millis(500),
                    |this: &mut Stream, response| {
                        let body = response.body().unwrap_or_default();
                        log::info!(
                            "stream {} got status={:?} body={}",
                            this.context_id,
                            response.status(),
                            String::from_utf8_lossy(&body)
                        );
                        let _ = http::resume_request();
                    },
                );
                log::info!("stream {} call sent={}", self.context_id, sent.is_ok());
                Action::Pause
            }
            Some("/grpc") => {
                let sent = grpc::call(
                    "authz",
                    "pkg.Auth",
                    "Check",
                    &[],
                    b"req",
                    Duration::ZERO,
                    |this: &mut Stream, reply| {
                        log::info!("stream {} grpc {:?}", this.context_id, reply);
                    },
                );
                log::info!("stream {} grpc sent={}", self.context_id, sent.is_ok());
                Action::Pause
            }
            Some(path) if path.starts_with("/call-as-root/") => {
                // The call belongs to the root made effective, so its continuation is typed
                // for the root.
                let root_id = path["/call-as-root/".len()..].parse().unwrap_or(0);
                let _ = filterkit::host::set_effective_context(root_id);
                let sent = http::call(
                    "auth",
                    &[(":method", "GET"), (":path", "/"), (":authority", "a")],
                    b"",
                    Duration::ZERO,
                    |root: &mut Root, response| {
                        log::info!(
                            "root got status={:?} ticks={}",
                            response.status(),
                            root.ticks
                        );
                    },
                );
                log::info!(
                    "stream {} call as root sent={}",
                    self.context_id,
                    sent.is_ok()
                );
                Action::Continue
            }
            Some("/call-typed-for-root") => {
                let sent = http::call(
                    "auth",
                    &[(":method", "GET"), (":path", "/"), (":authority", "a")],
                    b"",
                    Duration::ZERO,
                    |_: &mut Root, _| log::info!("never: the caller is a stream"),
                );
                log::info!(
                    "stream {} mistyped call sent={}",
                    self.context_id,
                    sent.is_ok()
                );
                Action::Pause
            }
            Some("/deny") => {
                let _ = http::LocalReply::new(403).body(b"denied\n").send();
                Action::Pause
            }
            Some("/deny-but-continue") => {
                // Envoy stops the stream anyway; the fake host must say so too.
                let _ = http::LocalReply::new(429).send();
                Action::Continue
            }
            Some("/grpc-stream") => {
                let opened = grpc::Stream::open(
                    "chat",
                    "pkg.Chat",
                    "Talk",
                    &[],
                    |this: &mut Stream, event: grpc::Event| {
                        log::info!("stream {} grpc event {:?}", this.context_id, event);
                        if event == grpc::Event::Message(b"bye".to_vec())
                            && let Some(stream) = this.grpc
                        {
                            let _ = stream.cancel();
                        }
                    },
                );
                log::info!("stream {} grpc opened={}", self.context_id, opened.is_ok());
                self.grpc = opened.ok();
                Action::Continue
            }
            _ => Action::Continue,
        }
    }

    fn on_http_response_headers(&mut self, _: usize, _: bool) -> Action {
        let _ = http::response_headers().add("x-tag", &self.config.tag);
        Action::Continue
    }

    fn on_log(&mut self) {
        log::info!("stream {} log", self.context_id);
    }

    fn on_foreign_function(&mut self, function_id: u32, arguments: &[u8]) {
        log::info!(
            "stream {} foreign function {function_id} {:?}",
            self.context_id,
            String::from_utf8_lossy(arguments)
        );
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        log::info!("stream {} dropped", self.context_id);
    }
}

#[test]
fn continuation_runs_with_its_stream() {
    let vm = Vm::<Root>::new();
    assert!(vm.configure("r", br#"{"tag":"a"}"#));
    let caller = vm.create_stream();
    let other = vm.create_stream();
    assert_eq!(
        vm.request_headers(caller, &[(":path", "/call")]),
        Action::Pause
    );
    assert_eq!(
        vm.request_headers(other, &[(":path", "/")]),
        Action::Continue
    );
    let call = &vm.http_calls()[0];
    assert_eq!(
        (call.upstream.as_str(), call.timeout_milliseconds),
        ("auth", 500)
    );
    // Envoy hands the answer to the caller's root context; it reaches the stream anyway.
    let root = vm.root("r");
    vm.respond_to_call(root, call.token, &[(":status", "200")], b"ok");
    // A token answered twice (or unknown) is ignored.
    vm.respond_to_call(root, call.token, &[(":status", "500")], b"");
    let mut lines = vm.logs();
    lines.extend(vm.stream_actions());
    check(
        &lines,
        expect![[r#"
            info: root configured tag=a
            info: stream 2 call sent=true
            info: stream 2 got status=Some(200) body=ok
            continue request
        "#]],
    );
}

#[test]
fn failed_call_has_no_status() {
    let vm = Vm::<Root>::new();
    assert!(vm.configure("r", br#"{"tag":"a"}"#));
    let stream = vm.create_stream();
    vm.request_headers(stream, &[(":path", "/call")]);
    vm.respond_to_call(stream, vm.http_calls()[0].token, &[], b"");
    check(
        &vm.logs(),
        expect![[r#"
            info: root configured tag=a
            info: stream 2 call sent=true
            info: stream 2 got status=None body=
        "#]],
    );
}

#[test]
fn deleting_a_stream_drops_it_and_its_pending_callout() {
    let vm = Vm::<Root>::new();
    assert!(vm.configure("r", br#"{"tag":"a"}"#));
    let stream = vm.create_stream();
    vm.request_headers(stream, &[(":path", "/call")]);
    vm.end_stream(stream);
    vm.respond_to_call(stream, vm.http_calls()[0].token, &[(":status", "200")], b"");
    check(
        &vm.logs(),
        expect![[r#"
            info: root configured tag=a
            info: stream 2 call sent=true
            info: stream 2 log
            info: stream 2 dropped
            info: context deleted with pending callouts, continuations dropped context_id=2 n_callouts=1
        "#]],
    );
}

#[test]
fn unary_grpc_call_completes_on_its_one_message() {
    let vm = Vm::<Root>::new();
    assert!(vm.configure("r", br#"{"tag":"a"}"#));
    let stream = vm.create_stream();
    vm.request_headers(stream, &[(":path", "/grpc")]);
    // What Envoy sends for a successful unary call: one message, on the root context, and no
    // close. The handler is freed: nothing more reaches it.
    let root = vm.root("r");
    vm.grpc_message(root, 1, b"resp");
    vm.grpc_message(root, 1, b"again");
    vm.grpc_close(root, 1, 0);
    check(
        &vm.logs(),
        expect![[r#"
            info: root configured tag=a
            info: stream 2 grpc sent=true
            info: stream 2 grpc Reply { status_code: 0, message: Some([114, 101, 115, 112]) }
        "#]],
    );
}

#[test]
fn unary_grpc_failure_is_one_close_with_its_status() {
    let vm = Vm::<Root>::new();
    assert!(vm.configure("r", br#"{"tag":"a"}"#));
    let stream = vm.create_stream();
    vm.request_headers(stream, &[(":path", "/grpc")]);
    let root = vm.root("r");
    vm.grpc_close(root, 1, 14);
    vm.grpc_close(root, 1, 14);
    check(
        &vm.logs(),
        expect![[r#"
            info: root configured tag=a
            info: stream 2 grpc sent=true
            info: stream 2 grpc Reply { status_code: 14, message: None }
        "#]],
    );
}

#[test]
fn continuation_runs_with_the_context_made_effective_at_call_time() {
    let vm = Vm::<Root>::new();
    assert!(vm.configure("r", br#"{"tag":"a"}"#));
    let root = vm.root("r");
    vm.tick();
    let stream = vm.create_stream();
    let path = format!("/call-as-root/{root}");
    vm.request_headers(stream, &[(":path", path.as_str())]);
    vm.respond_to_call(root, vm.http_calls()[0].token, &[(":status", "204")], b"");
    check(
        &vm.logs(),
        expect![[r#"
            info: root configured tag=a
            info: tick 1
            info: stream 2 call as root sent=true
            info: root got status=Some(204) ticks=1
        "#]],
    );
}

#[test]
fn continuation_for_another_context_type_is_an_error_in_the_log() {
    let vm = Vm::<Root>::new();
    assert!(vm.configure("r", br#"{"tag":"a"}"#));
    let stream = vm.create_stream();
    vm.request_headers(stream, &[(":path", "/call-typed-for-root")]);
    vm.respond_to_call(
        vm.root("r"),
        vm.http_calls()[0].token,
        &[(":status", "200")],
        b"",
    );
    check(
        &vm.logs(),
        expect![[r#"
            info: root configured tag=a
            info: stream 2 mistyped call sent=true
            error: callout continuation not run: it takes another context type context_id=2 token=1
        "#]],
    );
}

#[test]
fn streams_keep_the_config_they_started_with() {
    let vm = Vm::<Root>::new();
    assert!(vm.configure("r", br#"{"tag":"old"}"#));
    let before = vm.create_stream();
    assert!(vm.configure("r", br#"{"tag":"new"}"#));
    assert!(!vm.configure("r", br#"{"tag":"bad tag"}"#));
    let after = vm.create_stream();
    vm.response_headers(before, &[]);
    let mut lines = vm.headers(filterkit::http::MapType::ResponseHeaders);
    vm.response_headers(after, &[]);
    lines.extend(vm.headers(filterkit::http::MapType::ResponseHeaders));
    lines.extend(vm.logs());
    check(
        &lines,
        expect![[r#"
            x-tag: old
            x-tag: new
            info: root configured tag=old
            info: root configured tag=new
            error: invalid plugin configuration for root_id=r: tag "bad tag" has a space
        "#]],
    );
}

#[test]
fn local_reply_and_ticks() {
    let vm = Vm::<Root>::new();
    assert!(vm.configure("a", br#"{"tag":"a"}"#));
    assert!(vm.configure("b", br#"{"tag":"b"}"#));
    let stream = vm.create_stream();
    assert_eq!(
        vm.request_headers(stream, &[(":path", "/deny")]),
        Action::Pause
    );
    vm.tick();
    vm.tick();
    let replies = vm.local_responses();
    assert_eq!(
        (replies[0].status_code, replies[0].body.as_slice()),
        (403, b"denied\n".as_slice())
    );
    check(
        &vm.logs(),
        expect![[r#"
            info: root configured tag=a
            info: root configured tag=b
            info: tick 1
            info: tick 1
            info: tick 2
            info: tick 2
        "#]],
    );
}

#[test]
fn rejects_empty_configuration_unless_the_config_allows_it() {
    let vm = Vm::<Root>::new();
    assert!(!vm.configure("r", b""));
    assert!(!vm.configure("r", b"  \n"));
    let stream = vm.create_stream();
    assert_eq!(
        vm.request_headers(stream, &[(":path", "/deny")]),
        Action::Continue
    );
    check(
        &vm.logs(),
        expect![[r#"
            error: invalid plugin configuration for root_id=r: plugin configuration is empty
            error: invalid plugin configuration for root_id=r: plugin configuration is empty
        "#]],
    );
}

/// A network filter: connections get a `TcpContext`, which can read and close.
#[derive(Default)]
struct TcpRoot;

impl RootContext for TcpRoot {
    type Config = ();
    type Http = ();
    const TCP: bool = true;

    fn create_http_context(&mut self, _: u32, _: Rc<()>) {}

    fn create_tcp_context(
        &mut self,
        context_id: u32,
        _: Rc<()>,
    ) -> Option<Box<dyn filterkit::tcp::TcpContext>> {
        Some(Box::new(Connection { context_id }))
    }
}

struct Connection {
    context_id: u32,
}

impl filterkit::tcp::TcpContext for Connection {
    fn on_downstream_data(&mut self, data_size: usize, end_of_stream: bool) -> Action {
        let data = filterkit::tcp::downstream_data()
            .read(0, data_size)
            .unwrap_or_default();
        log::info!(
            "connection {} got {:?} eos={end_of_stream}",
            self.context_id,
            String::from_utf8_lossy(&data)
        );
        if data.starts_with(b"QUIT") {
            let _ = filterkit::tcp::close_downstream();
        }
        if data.starts_with(b"AUTH") {
            let sent = http::call(
                "auth",
                &[(":method", "GET"), (":path", "/"), (":authority", "a")],
                b"",
                Duration::ZERO,
                |this: &mut Connection, response| {
                    log::info!(
                        "connection {} got status={:?}",
                        this.context_id,
                        response.status()
                    );
                },
            );
            log::info!("connection {} call sent={}", self.context_id, sent.is_ok());
            return Action::Pause;
        }
        Action::Continue
    }

    fn on_log(&mut self) {
        log::info!("connection {} log", self.context_id);
    }
}

#[test]
fn tcp_connections_get_their_own_context() {
    let vm = Vm::<TcpRoot>::new();
    assert!(vm.configure("tcp", b""));
    let connection = vm.create_stream();
    assert_eq!(
        vm.downstream_data(connection, b"PING", false),
        Action::Continue
    );
    assert_eq!(
        vm.downstream_data(connection, b"QUIT", true),
        Action::Continue
    );
    vm.end_stream(connection);
    let mut lines = vm.logs();
    lines.extend(vm.stream_actions());
    check(
        &lines,
        expect![[r#"
            info: connection 2 got "PING" eos=false
            info: connection 2 got "QUIT" eos=true
            info: connection 2 log
            close downstream
        "#]],
    );
}

#[test]
fn tcp_connection_gets_its_callout_answer() {
    let vm = Vm::<TcpRoot>::new();
    assert!(vm.configure("tcp", b""));
    let connection = vm.create_stream();
    assert_eq!(
        vm.downstream_data(connection, b"AUTH", false),
        Action::Pause
    );
    vm.respond_to_call(
        vm.root("tcp"),
        vm.http_calls()[0].token,
        &[(":status", "200")],
        b"",
    );
    check(
        &vm.logs(),
        expect![[r#"
            info: connection 2 got "AUTH" eos=false
            info: connection 2 call sent=true
            info: connection 2 got status=Some(200)
        "#]],
    );
}

#[test]
fn grpc_stream_handler_gets_metadata_messages_and_close() {
    let vm = Vm::<Root>::new();
    assert!(vm.configure("r", br#"{"tag":"a"}"#));
    let stream = vm.create_stream();
    vm.request_headers(stream, &[(":path", "/grpc-stream")]);
    vm.grpc_initial_metadata(stream, 1, &[("x-id", "7")]);
    vm.grpc_message(stream, 1, b"hello");
    vm.grpc_trailing_metadata(stream, 1, &[("grpc-status", "0")]);
    vm.grpc_close(stream, 1, 0);
    // Closed: nothing more reaches the handler.
    vm.grpc_message(stream, 1, b"late");
    check(
        &vm.logs(),
        expect![[r#"
            info: root configured tag=a
            info: stream 2 grpc opened=true
            info: stream 2 grpc event InitialMetadata([([120, 45, 105, 100], [55])])
            info: stream 2 grpc event Message([104, 101, 108, 108, 111])
            info: stream 2 grpc event TrailingMetadata([([103, 114, 112, 99, 45, 115, 116, 97, 116, 117, 115], [48])])
            info: stream 2 grpc event Close { status_code: 0 }
        "#]],
    );
}

#[test]
fn grpc_handler_that_cancels_its_stream_gets_nothing_more() {
    let vm = Vm::<Root>::new();
    assert!(vm.configure("r", br#"{"tag":"a"}"#));
    let stream = vm.create_stream();
    vm.request_headers(stream, &[(":path", "/grpc-stream")]);
    vm.grpc_message(stream, 1, b"bye");
    vm.grpc_trailing_metadata(stream, 1, &[]);
    vm.grpc_close(stream, 1, 1);
    check(
        &vm.logs(),
        expect![[r#"
            info: root configured tag=a
            info: stream 2 grpc opened=true
            info: stream 2 grpc event Message([98, 121, 101])
        "#]],
    );
}

#[test]
fn unary_grpc_call_ignores_metadata() {
    let vm = Vm::<Root>::new();
    assert!(vm.configure("r", br#"{"tag":"a"}"#));
    let stream = vm.create_stream();
    vm.request_headers(stream, &[(":path", "/grpc")]);
    // Envoy sends no metadata for a unary call; a host that did would not confuse the SDK.
    vm.grpc_initial_metadata(stream, 1, &[("x", "1")]);
    vm.grpc_trailing_metadata(stream, 1, &[("y", "2")]);
    vm.grpc_message(stream, 1, b"r");
    check(
        &vm.logs(),
        expect![[r#"
            info: root configured tag=a
            info: stream 2 grpc sent=true
            info: stream 2 grpc Reply { status_code: 0, message: Some([114]) }
        "#]],
    );
}

#[test]
fn foreign_functions_reach_the_context_they_name() {
    let vm = Vm::<Root>::new();
    assert!(vm.configure("r", br#"{"tag":"a"}"#));
    let stream = vm.create_stream();
    vm.foreign_function(vm.root("r"), 3, b"abc");
    vm.foreign_function(stream, 4, b"\xffx");
    vm.foreign_function(99, 5, b"unknown context: ignored");
    check(
        &vm.logs(),
        expect![[r#"
            info: root configured tag=a
            info: root foreign function 3 3 bytes
            info: stream 2 foreign function 4 "�x"
        "#]],
    );
}

#[test]
fn local_reply_forces_the_callback_to_stop() {
    let vm = Vm::<Root>::new();
    assert!(vm.configure("r", br#"{"tag":"a"}"#));
    let denied = vm.create_stream();
    let allowed = vm.create_stream();
    assert_eq!(
        vm.request_headers(denied, &[(":path", "/deny-but-continue")]),
        Action::Pause
    );
    assert_eq!(
        vm.request_headers(allowed, &[(":path", "/")]),
        Action::Continue
    );
    let replies: Vec<u32> = vm
        .local_responses()
        .iter()
        .map(|reply| reply.status_code)
        .collect();
    assert_eq!(replies, [429]);
}

/// Whether `T` is `Sync`, decided by method resolution: the inherent-looking `IsSync` applies
/// only when the bound holds, otherwise autoref falls through to `NotSync`.
struct Probe<T>(std::marker::PhantomData<T>);

trait IsSync {
    fn is_sync(&self) -> bool {
        true
    }
}

impl<T: Sync> IsSync for Probe<T> {}

trait NotSync {
    fn is_sync(&self) -> bool {
        false
    }
}

impl<T> NotSync for &Probe<T> {}

#[test]
#[allow(
    clippy::needless_borrow,
    reason = "the explicit borrow is what lets resolution fall through to NotSync"
)]
fn filter_state_cannot_be_shared_between_native_threads() {
    let probe_u8 = (&Probe::<u8>(std::marker::PhantomData)).is_sync();
    let probe_filter =
        (&Probe::<filterkit::__private::Filter<Root>>(std::marker::PhantomData)).is_sync();
    assert_eq!((probe_u8, probe_filter), (true, false));
}
