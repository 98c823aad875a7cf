//! A test guest built from filterkit: each request path exercises one SDK feature, so
//! host-sim (`host-sim/tests/it/sdk_guest.rs`) checks the SDK as Envoy would run it.
//!
//! - `/http`: an http callout; the continuation adds `x-auth: <status>` and resumes.
//! - `/grpc`: a unary gRPC call; success adds `x-grpc: <message>` and resumes, failure
//!   answers 503.
//! - `/grpc-cancel`: a unary gRPC call cancelled at once.
//! - `/shared`: counts requests in shared data (compare-and-swap) and in a counter metric.
//! - `/grpc-stream`: a gRPC stream; each event is logged, a `bye` message cancels it.
//! - `/body`: the request body, buffered to the end, is upper-cased.
//! - every request logs its path read as a property (`request.path`).
//! - the root makes a unary gRPC call on each tick and logs the reply; it registers the queue
//!   `jobs` and logs what it dequeues; it logs foreign function calls.
//! - with `{"tcp": true}` connections get a TCP context that calls out on `AUTH` and resumes.
#![no_std]
#![deny(unsafe_code)]

extern crate alloc;

use alloc::boxed::Box;
use alloc::rc::Rc;
use alloc::string::String;
use core::time::Duration;

use filterkit::{
    Action, HttpContext, RootContext, grpc, http, metrics, properties, shared, tcp, time,
};
use serde::Deserialize;

/// The plugin configuration.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Connections get a TCP context.
    #[serde(default)]
    pub tcp: bool,
    /// The root's tick period in milliseconds (0 = none).
    #[serde(default)]
    pub tick_milliseconds: u64,
}

impl filterkit::Config for Config {
    fn empty() -> Option<Config> {
        Some(Config::default())
    }
}

const CALL_HEADERS: [(&str, &str); 3] = [
    (":method", "GET"),
    (":path", "/check"),
    (":authority", "auth"),
];

/// The root context.
#[derive(Default)]
pub struct Root {
    tcp: bool,
    n_ticks: u32,
    queue: Option<shared::Queue>,
}

impl RootContext for Root {
    type Config = Config;
    type Http = Stream;
    const TCP: bool = true;

    fn on_configure(&mut self, config: &Rc<Config>) -> bool {
        self.tcp = config.tcp;
        self.queue = shared::Queue::register("jobs").ok();
        log::info!("root queue registered={}", self.queue.is_some());
        if config.tick_milliseconds > 0 {
            let _ = time::set_tick_period(Duration::from_millis(config.tick_milliseconds));
        }
        true
    }

    fn create_http_context(&mut self, context_id: u32, _: Rc<Config>) -> Stream {
        Stream {
            context_id,
            grpc: None,
        }
    }

    fn create_tcp_context(
        &mut self,
        context_id: u32,
        _: Rc<Config>,
    ) -> Option<Box<dyn tcp::TcpContext>> {
        if !self.tcp {
            return None;
        }
        Some(Box::new(Connection { context_id }))
    }

    fn on_queue_ready(&mut self, queue_id: u32) {
        let Some(queue) = self.queue else {
            return;
        };
        while let Ok(Some(item)) = queue.dequeue() {
            log::info!(
                "root dequeued queue={} same_id={} item={:?}",
                queue_id,
                queue.id() == queue_id,
                String::from_utf8_lossy(&item)
            );
        }
    }

    fn on_foreign_function(&mut self, function_id: u32, arguments: &[u8]) {
        log::info!(
            "root foreign function={function_id} arguments={:?}",
            String::from_utf8_lossy(arguments)
        );
    }

    fn on_tick(&mut self) {
        self.n_ticks += 1;
        let sent = grpc::call(
            "authz",
            "pkg.Auth",
            "Check",
            &[],
            b"tick",
            Duration::from_secs(1),
            |root: &mut Root, reply| {
                log::info!(
                    "root reply tick={} status={} message={:?}",
                    root.n_ticks,
                    reply.status_code,
                    reply.message.as_deref().map(String::from_utf8_lossy)
                );
            },
        );
        log::info!("root tick={} grpc sent={}", self.n_ticks, sent.is_ok());
    }
}

/// An HTTP stream.
pub struct Stream {
    context_id: u32,
    grpc: Option<grpc::Stream>,
}

impl Stream {
    fn http_call(&mut self) -> Action {
        let sent = http::call(
            "auth",
            &CALL_HEADERS,
            b"",
            Duration::from_secs(1),
            |this: &mut Stream, response| {
                let status = response.status().unwrap_or(0);
                log::info!("stream={} http status={status}", this.context_id);
                let mut value = String::new();
                push_decimal(&mut value, status);
                let _ = http::request_headers().add("x-auth", &value);
                let _ = http::resume_request();
            },
        );
        if sent.is_ok() {
            Action::Pause
        } else {
            Action::Continue
        }
    }

    fn grpc_call(&mut self, cancel: bool) -> Action {
        let sent = grpc::call(
            "authz",
            "pkg.Auth",
            "Check",
            &[("x-stream", b"1".as_slice())],
            b"check",
            Duration::from_secs(1),
            |this: &mut Stream, reply| {
                log::info!(
                    "stream={} grpc status={} message={:?}",
                    this.context_id,
                    reply.status_code,
                    reply.message.as_deref().map(String::from_utf8_lossy)
                );
                match reply.message {
                    Some(message) if reply.status_code == 0 => {
                        let _ = http::request_headers().add("x-grpc", &message);
                        let _ = http::resume_request();
                    }
                    _ => {
                        let _ = http::LocalReply::new(503).body(b"authz unavailable").send();
                    }
                }
            },
        );
        match sent {
            Ok(token) if cancel => {
                log::info!(
                    "stream={} grpc cancel={}",
                    self.context_id,
                    grpc::cancel(token).is_ok()
                );
                Action::Continue
            }
            Ok(_) => Action::Pause,
            Err(_) => Action::Continue,
        }
    }

    fn count(&mut self) -> Action {
        let updated = shared::update(b"requests", 4, |current| {
            let n = current
                .and_then(|bytes| <[u8; 8]>::try_from(bytes).ok())
                .map_or(0, u64::from_le_bytes);
            (n + 1).to_le_bytes().to_vec()
        });
        let counter = metrics::Counter::define("sdk_guest_requests");
        let counted = counter.as_ref().map(|counter| counter.increment(1));
        log::info!(
            "stream={} shared updated={} counted={}",
            self.context_id,
            updated.is_ok(),
            matches!(counted, Ok(Ok(())))
        );
        Action::Continue
    }
}

impl Stream {
    fn open_grpc_stream(&mut self) -> Action {
        let opened = grpc::Stream::open(
            "authz",
            "pkg.Chat",
            "Talk",
            &[],
            |this: &mut Stream, event: grpc::Event| {
                log::info!("stream={} grpc event {:?}", this.context_id, event);
                if event == grpc::Event::Message(b"bye".to_vec())
                    && let Some(stream) = this.grpc
                {
                    log::info!(
                        "stream={} grpc cancel={}",
                        this.context_id,
                        stream.cancel().is_ok()
                    );
                }
            },
        );
        if let Ok(stream) = opened {
            let _ = stream.send(b"hello", false);
        }
        self.grpc = opened.ok();
        Action::Continue
    }
}

impl HttpContext for Stream {
    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if !end_of_stream {
            return Action::Pause;
        }
        let body = http::request_body().read(0, body_size).unwrap_or_default();
        let _ = http::request_body().replace(0, body_size, &body.to_ascii_uppercase());
        Action::Continue
    }

    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        let path = http::request_headers().get_str(":path").ok().flatten();
        let property = properties::get_string(&["request", "path"]).ok().flatten();
        log::info!("stream={} request.path={:?}", self.context_id, property);
        match path.as_deref() {
            Some("/grpc-stream") => self.open_grpc_stream(),
            Some("/http") => self.http_call(),
            Some("/grpc") => self.grpc_call(false),
            Some("/grpc-cancel") => self.grpc_call(true),
            Some("/shared") => self.count(),
            _ => Action::Continue,
        }
    }
}

/// A TCP connection.
pub struct Connection {
    context_id: u32,
}

impl tcp::TcpContext for Connection {
    fn on_downstream_data(&mut self, data_size: usize, _: bool) -> Action {
        let data = tcp::downstream_data()
            .read(0, data_size)
            .unwrap_or_default();
        if !data.starts_with(b"AUTH") {
            return Action::Continue;
        }
        let sent = http::call(
            "auth",
            &CALL_HEADERS,
            b"",
            Duration::from_secs(1),
            |this: &mut Connection, response| {
                log::info!(
                    "connection={} http status={:?}",
                    this.context_id,
                    response.status()
                );
                let _ = tcp::resume_downstream();
            },
        );
        if sent.is_ok() {
            Action::Pause
        } else {
            Action::Continue
        }
    }
}

fn push_decimal(text: &mut String, value: u32) {
    if value >= 10 {
        push_decimal(text, value / 10);
    }
    text.push(char::from(b'0' + (value % 10) as u8));
}

filterkit::export_filter!(Root);
