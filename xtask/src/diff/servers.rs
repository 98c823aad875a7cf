//! The servers behind Envoy: the upstream (HTTP/1.1, answers what the current request's
//! scenario says and records what it received) and one server per scenario cluster (HTTP/1.1
//! for `kind: http`, gRPC over HTTP/2 for `kind: grpc`). They run on their own thread with a
//! tokio runtime, so the runner's blocking steps (starting Envoy, waiting) never stall them.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

use super::bootstrap::Ports;
use super::scenario::{Cluster, GrpcResponse, Pairs, Scenario, UpstreamResponse};
use super::wire::{self, Reader};

/// A request as an HTTP/1.1 server read it off the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub method: String,
    pub path: String,
    /// Names as sent, in wire order, `host` included.
    pub headers: Pairs,
    pub body: Vec<u8>,
    pub trailers: Pairs,
}

/// What an HTTP/1.1 server answers next, and what it has received.
#[derive(Debug, Default)]
pub struct Exchange {
    pub response: UpstreamResponse,
    pub received: Vec<Received>,
}

type Shared = Arc<Mutex<Exchange>>;

fn lock(exchange: &Shared) -> MutexGuard<'_, Exchange> {
    // A server task that panicked cannot leave the exchange half-written: it only pushes.
    exchange
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The running servers; dropping them stops their thread.
pub struct Servers {
    pub ports: Ports,
    upstream: Shared,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

enum Service {
    Http(Shared),
    Grpc(Arc<GrpcResponse>, Bytes),
}

impl Servers {
    /// Binds the upstream and every cluster of `scenario` on 127.0.0.1 and starts serving.
    pub fn start(scenario: &Scenario) -> Result<Servers> {
        let upstream: Shared = Arc::default();
        let mut listeners = vec![(bind()?, Service::Http(upstream.clone()))];
        let mut ports = Ports {
            upstream: port(&listeners[0].0)?,
            clusters: BTreeMap::new(),
        };
        for (name, cluster) in &scenario.clusters {
            let service = match cluster {
                Cluster::Http(response) => Service::Http(Arc::new(Mutex::new(Exchange {
                    response: response.clone(),
                    received: Vec::new(),
                }))),
                Cluster::Grpc(response) => {
                    let message = response
                        .message_bytes()
                        .with_context(|| format!("cluster {name}"))?;
                    Service::Grpc(Arc::new(response.clone()), Bytes::from(message))
                }
            };
            let listener = bind()?;
            ports.clusters.insert(name.clone(), port(&listener)?);
            listeners.push((listener, service));
        }
        let (shutdown, stopped) = oneshot::channel();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the servers' runtime")?;
        let thread = std::thread::Builder::new()
            .name("differential-servers".to_owned())
            .spawn(move || {
                runtime.block_on(async move {
                    for (listener, service) in listeners {
                        tokio::spawn(accept_loop(listener, service));
                    }
                    // Either a stop or a dropped sender ends the servers.
                    let _ = stopped.await;
                });
            })
            .context("starting the servers' thread")?;
        Ok(Servers {
            ports,
            upstream,
            shutdown: Some(shutdown),
            thread: Some(thread),
        })
    }

    /// The upstream answers `response` from now on, and forgets what it received.
    pub fn answer_next(&self, response: UpstreamResponse) {
        let mut exchange = lock(&self.upstream);
        exchange.response = response;
        exchange.received.clear();
    }

    /// What the upstream received since [`Servers::answer_next`].
    pub fn received(&self) -> Vec<Received> {
        lock(&self.upstream).received.clone()
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn bind() -> Result<std::net::TcpListener> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0")?;
    listener
        .set_nonblocking(true)
        .context("making a listener non-blocking")?;
    Ok(listener)
}

fn port(listener: &std::net::TcpListener) -> Result<u16> {
    Ok(listener
        .local_addr()
        .context("reading a bound address")?
        .port())
}

async fn accept_loop(listener: std::net::TcpListener, service: Service) {
    let Ok(listener) = TcpListener::from_std(listener) else {
        return;
    };
    while let Ok((stream, _)) = listener.accept().await {
        // A connection that breaks mid-way is the peer's business (Envoy resets streams on
        // purpose in some scenarios): what was received is already recorded.
        match &service {
            Service::Http(exchange) => {
                tokio::spawn(serve_http1(stream, exchange.clone()));
            }
            Service::Grpc(response, message) => {
                tokio::spawn(serve_grpc(stream, response.clone(), message.clone()));
            }
        }
    }
}

/// Serves requests on one keep-alive HTTP/1.1 connection until the peer closes it.
pub async fn serve_http1(stream: TcpStream, exchange: Shared) -> Result<()> {
    let mut reader = Reader::new(stream);
    while let Some(head) = reader.request_head().await? {
        let framing = wire::framing(&head.headers, false)?;
        let (body, trailers) = reader.body(framing).await?;
        let response = {
            let mut exchange = lock(&exchange);
            exchange.received.push(Received {
                method: head.method,
                path: head.path,
                headers: head.headers,
                body,
                trailers,
            });
            exchange.response.clone()
        };
        // The scenario's slow upstream, not a wait for the test: Envoy must see the delay.
        // The scenario's slow gRPC service, not a wait for the test.
        tokio::time::sleep(Duration::from_millis(response.delay_ms)).await;
        write_response(reader.stream_mut(), &response).await?;
    }
    Ok(())
}

/// The scenario's status, headers in order, then the framing header the body needs
/// (`content-length`, or `transfer-encoding: chunked` when there are trailers) unless the
/// scenario's headers already frame it.
async fn write_response(stream: &mut TcpStream, response: &UpstreamResponse) -> Result<()> {
    let reason = http::StatusCode::from_u16(response.status)
        .ok()
        .and_then(|status| status.canonical_reason())
        .unwrap_or("Status");
    let status_line = format!("HTTP/1.1 {} {reason}", response.status);
    let mut headers = response.headers.clone();
    let bodiless = matches!(response.status, 100..=199 | 204 | 304);
    let framed = wire::header(&headers, "content-length").is_some()
        || wire::header(&headers, "transfer-encoding").is_some();
    let chunked = !response.trailers.is_empty()
        || wire::header(&headers, "transfer-encoding").is_some_and(|te| te.ends_with("chunked"));
    if !bodiless && !framed {
        if chunked {
            headers.push(("transfer-encoding".to_owned(), "chunked".to_owned()));
        } else {
            headers.push(("content-length".to_owned(), response.body.len().to_string()));
        }
    }
    let body = if bodiless {
        &b""[..]
    } else {
        response.body.as_bytes()
    };
    wire::write_message(
        stream,
        &status_line,
        &headers,
        body,
        &response.trailers,
        chunked && !bodiless,
    )
    .await
}

async fn serve_grpc(stream: TcpStream, response: Arc<GrpcResponse>, message: Bytes) -> Result<()> {
    let mut connection = h2::server::handshake(stream)
        .await
        .context("gRPC handshake")?;
    while let Some(next) = connection.accept().await {
        let (request, respond) = next.context("accepting a gRPC call")?;
        tokio::spawn(answer_grpc(
            request,
            respond,
            response.clone(),
            message.clone(),
        ));
    }
    Ok(())
}

/// Answers one call: after the delay, headers with the initial metadata, the message in gRPC
/// framing (only when `grpc_status` is 0), then `grpc-status`, `grpc-message` and the
/// trailing metadata as trailers. The request (a unary message or a stream) is drained.
async fn answer_grpc(
    request: http::Request<h2::RecvStream>,
    mut respond: h2::server::SendResponse<Bytes>,
    response: Arc<GrpcResponse>,
    message: Bytes,
) -> Result<()> {
    let mut body = request.into_body();
    tokio::spawn(async move {
        while let Some(chunk) = body.data().await {
            let Ok(chunk) = chunk else { break };
            let _ = body.flow_control().release_capacity(chunk.len());
        }
    });
    tokio::time::sleep(Duration::from_millis(response.delay_ms)).await;
    let mut head = http::Response::builder()
        .status(200)
        .header("content-type", "application/grpc");
    for (name, value) in &response.initial_metadata {
        head = head.header(name.as_str(), value.as_str());
    }
    let head = head.body(()).context("gRPC initial metadata")?;
    let mut send = respond
        .send_response(head, false)
        .context("sending gRPC headers")?;
    if response.grpc_status == 0 {
        let length = u32::try_from(message.len()).context("gRPC message length")?;
        let mut frame = Vec::with_capacity(5 + message.len());
        frame.push(0);
        frame.extend_from_slice(&length.to_be_bytes());
        frame.extend_from_slice(&message);
        send.send_data(Bytes::from(frame), false)
            .context("sending the gRPC message")?;
    }
    let mut trailers = http::HeaderMap::new();
    trailers.insert("grpc-status", response.grpc_status.into());
    if !response.grpc_message.is_empty() {
        trailers.insert(
            "grpc-message",
            response.grpc_message.parse().context("grpc-message")?,
        );
    }
    for (name, value) in &response.trailing_metadata {
        trailers.append(
            http::HeaderName::try_from(name.as_str()).context("trailing metadata name")?,
            value.parse().context("trailing metadata value")?,
        );
    }
    send.send_trailers(trailers)
        .context("sending gRPC trailers")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A gRPC call to the runner's own gRPC server with a bare `h2` client: initial metadata,
    /// one framed message, then status and trailing metadata as trailers.
    #[test]
    fn grpc_cluster_answers_with_framing_and_metadata() {
        let response = GrpcResponse {
            message: "ok".to_owned(),
            grpc_message: "fine".to_owned(),
            initial_metadata: vec![("x-initial".to_owned(), "1".to_owned())],
            trailing_metadata: vec![("x-trailing".to_owned(), "2".to_owned())],
            ..GrpcResponse::default()
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let seen = runtime.block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let address = listener.local_addr().unwrap();
            tokio::spawn(async move {
                let (stream, _) = listener.accept().await.unwrap();
                serve_grpc(stream, Arc::new(response), Bytes::from_static(b"ok")).await
            });
            let stream = TcpStream::connect(address).await.unwrap();
            let (mut client, connection) = h2::client::handshake(stream).await.unwrap();
            tokio::spawn(connection);
            let request = http::Request::post("http://authz/pkg.Service/Call")
                .header("content-type", "application/grpc")
                .body(())
                .unwrap();
            let (response, mut send) = client.send_request(request, false).unwrap();
            send.send_data(Bytes::from_static(b"\0\0\0\0\0"), true)
                .unwrap();
            let response = response.await.unwrap();
            let head = format!("{} {:?}", response.status(), response.headers());
            let mut body = response.into_body();
            let mut data = Vec::new();
            while let Some(chunk) = body.data().await {
                data.extend_from_slice(&chunk.unwrap());
            }
            let trailers = body.trailers().await.unwrap().unwrap();
            format!("{head}\n{data:?}\n{trailers:?}")
        });
        assert_eq!(
            seen,
            "200 OK {\"content-type\": \"application/grpc\", \"x-initial\": \"1\"}\n\
             [0, 0, 0, 0, 2, 111, 107]\n\
             {\"grpc-status\": \"0\", \"grpc-message\": \"fine\", \"x-trailing\": \"2\"}"
        );
    }
}
