//! The downstream client: each request on a new connection, HTTP/1.1 written and parsed by
//! hand (exact header order and case), or HTTP/2 with prior knowledge through `h2`.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use tokio::net::TcpStream;

use super::scenario::{Pairs, Request};
use super::wire::{self, Framing, Reader};

/// How long the client waits for a whole response before giving up on it (status `null`).
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

/// What the client saw.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Answer {
    /// `None` when no response head arrived.
    pub status: Option<u16>,
    /// Lowercase names in wire order, without `:status`.
    pub headers: Pairs,
    pub body: Vec<u8>,
    pub trailers: Pairs,
    /// The connection or stream broke before the response was complete.
    pub reset: bool,
}

/// Sends `request` to `address` on a new connection. After [`RESPONSE_TIMEOUT`] the client
/// gives up and keeps what arrived (no head: status `None`), not marked reset.
pub async fn send(address: SocketAddr, request: &Request) -> Answer {
    let mut answer = Answer::default();
    let exchange = async {
        // Every early return is a broken connection or stream: what arrived stays in `answer`.
        let Ok(stream) = TcpStream::connect(address).await else {
            answer.reset = true;
            return;
        };
        let complete = if request.http2 {
            exchange_http2(stream, request, &mut answer).await
        } else {
            exchange_http1(stream, request, &mut answer).await
        };
        if complete.is_err() {
            answer.reset = true;
        }
    };
    let _ = tokio::time::timeout(RESPONSE_TIMEOUT, exchange).await;
    answer
}

fn lowercase(headers: Pairs) -> Pairs {
    headers
        .into_iter()
        .map(|(name, value)| (name.to_ascii_lowercase(), value))
        .collect()
}

/// `host` first, the scenario's headers as written, then `content-length` for a body, or
/// chunked encoding when there are trailers. `Err` when the connection broke first.
async fn exchange_http1(
    mut stream: TcpStream,
    request: &Request,
    answer: &mut Answer,
) -> Result<()> {
    let mut headers = vec![("host".to_owned(), request.authority.clone())];
    headers.extend(request.headers.iter().cloned());
    let chunked = !request.trailers.is_empty();
    if chunked {
        headers.push(("transfer-encoding".to_owned(), "chunked".to_owned()));
    } else if !request.body.is_empty() {
        headers.push(("content-length".to_owned(), request.body.len().to_string()));
    }
    let start_line = format!("{} {} HTTP/1.1", request.method, request.path);
    // A write that failed may still have a response waiting (a local reply before the body).
    let _ = wire::write_message(
        &mut stream,
        &start_line,
        &headers,
        request.body.as_bytes(),
        &request.trailers,
        chunked,
    )
    .await;
    let mut reader = Reader::new(stream);
    let head = reader
        .response_head()
        .await?
        .context("the connection closed before a response")?;
    answer.status = Some(head.status);
    answer.headers = lowercase(head.headers.clone());
    let framing = if request.method == "HEAD" || matches!(head.status, 204 | 304) {
        Framing::Empty
    } else {
        wire::framing(&head.headers, true)?
    };
    let (body, trailers) = reader.body(framing).await?;
    answer.body = body;
    answer.trailers = lowercase(trailers);
    Ok(())
}

/// The HTTP/2 exchange (prior knowledge). `Err` when the connection or stream broke first.
async fn exchange_http2(stream: TcpStream, request: &Request, answer: &mut Answer) -> Result<()> {
    let (mut client, connection) = h2::client::handshake(stream).await?;
    tokio::spawn(async move {
        // The connection ends with an error when Envoy resets it: the stream reports that.
        let _ = connection.await;
    });
    let end_of_stream = request.body.is_empty() && request.trailers.is_empty();
    let (response, mut send) = client.send_request(build_http2_request(request)?, end_of_stream)?;
    if !request.body.is_empty() {
        // A failure here (a local reply before the body) shows in the response below.
        let _ = send.send_data(
            Bytes::from(request.body.clone().into_bytes()),
            request.trailers.is_empty(),
        );
    }
    if !request.trailers.is_empty() {
        let _ = send.send_trailers(header_map(&request.trailers)?);
    }
    let response = response.await?;
    answer.status = Some(response.status().as_u16());
    answer.headers = pairs(response.headers());
    let mut body = response.into_body();
    while let Some(chunk) = body.data().await {
        let chunk = chunk?;
        let _ = body.flow_control().release_capacity(chunk.len());
        answer.body.extend_from_slice(&chunk);
    }
    if let Some(trailers) = body.trailers().await? {
        answer.trailers = pairs(&trailers);
    }
    Ok(())
}

fn build_http2_request(request: &Request) -> Result<http::Request<()>> {
    let mut builder = http::Request::builder()
        .method(request.method.as_str())
        .uri(format!("http://{}{}", request.authority, request.path));
    for (name, value) in &request.headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    if !request.body.is_empty() && request.trailers.is_empty() {
        builder = builder.header("content-length", request.body.len());
    }
    builder.body(()).context("building an HTTP/2 request")
}

fn header_map(pairs: &Pairs) -> Result<http::HeaderMap> {
    let mut map = http::HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            http::HeaderName::try_from(name.as_str()).context("header name")?,
            http::HeaderValue::try_from(value.as_str()).context("header value")?,
        );
    }
    Ok(map)
}

/// An `http::HeaderMap` keeps distinct names in arrival order but groups repeated names:
/// over HTTP/2 interleaved repeats are therefore reported grouped.
fn pairs(map: &http::HeaderMap) -> Pairs {
    map.iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::super::scenario::{Scenario, UpstreamResponse};
    use super::super::servers::{Exchange, serve_http1};
    use super::*;

    /// Runs the client against the runner's own HTTP/1.1 server: what one sends, the other
    /// records, and the answer comes back as written.
    #[test]
    fn client_and_upstream_agree_on_bodies_trailers_and_order() {
        let scenario = Scenario::parse(
            r#"{"plugins": [], "requests": [{"name": "r", "method": "POST", "path": "/p?q=1",
                "headers": [["X-B", "1"], ["x-a", "2"], ["x-b", "3"]],
                "body": "ping", "trailers": [["x-t", "t"]]}]}"#,
        )
        .unwrap();
        let exchange = Arc::new(Mutex::new(Exchange {
            response: UpstreamResponse {
                status: 201,
                headers: vec![("X-Up".to_owned(), "1".to_owned())],
                body: "pong".to_owned(),
                trailers: vec![("x-done".to_owned(), "yes".to_owned())],
                delay_ms: 0,
            },
            received: Vec::new(),
        }));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let answer = runtime.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let address = listener.local_addr().unwrap();
            let server = exchange.clone();
            tokio::spawn(async move {
                let (stream, _) = listener.accept().await.unwrap();
                serve_http1(stream, server).await
            });
            send(address, &scenario.requests[0]).await
        });
        let received = &exchange.lock().unwrap().received;
        assert_eq!(
            format!("{received:?}\n{answer:?}"),
            "[Received { method: \"POST\", path: \"/p?q=1\", headers: [(\"host\", \"example.com\"), \
             (\"X-B\", \"1\"), (\"x-a\", \"2\"), (\"x-b\", \"3\"), (\"transfer-encoding\", \"chunked\")], \
             body: [112, 105, 110, 103], trailers: [(\"x-t\", \"t\")] }]\n\
             Answer { status: Some(201), headers: [(\"x-up\", \"1\"), (\"transfer-encoding\", \"chunked\")], \
             body: [112, 111, 110, 103], trailers: [(\"x-done\", \"yes\")], reset: false }"
        );
    }
}
