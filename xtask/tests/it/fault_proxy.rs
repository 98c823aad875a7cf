//! A fault-injecting HTTP/1.1 proxy the tests put in front of a registry: it forwards each
//! request on its own upstream connection and, when a rule matches, answers with a status of
//! its choosing, cuts the connection mid-body, or corrupts the body. It logs every request so
//! a test can count uploads.
//!
//! The registry builds upload URLs from the Host header, which the proxy passes on unchanged,
//! so a whole push goes through the proxy.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, bail};

/// What to do to a matching request.
#[derive(Clone, Debug)]
pub enum Fault {
    /// Answer with this status and headers without forwarding.
    Status(u16, Vec<(&'static str, String)>),
    /// Read half the request body, then close the connection (an upload cut mid-blob).
    CutRequest,
    /// Forward, then flip a byte of the response body.
    CorruptResponse,
    /// Rate limiting as a registry does it: answer 429 with `Retry-After: <seconds>`, and
    /// answer the next `GET /v2/` (how xtask reads a 429's Retry-After) the same way.
    RateLimit(u64),
}

/// A fault for the next `times` requests with this method whose path contains `path`.
#[derive(Clone, Debug)]
pub struct Rule {
    pub method: &'static str,
    pub path: String,
    /// Only requests whose body is at least this long.
    pub min_body: usize,
    pub times: usize,
    pub fault: Fault,
}

#[derive(Default)]
struct State {
    rules: Vec<Rule>,
    /// `METHOD path status` per request (`cut` when cut).
    log: Vec<String>,
}

pub struct FaultProxy {
    /// `127.0.0.1:<port>`, to use as the registry in references.
    pub address: String,
    state: Arc<Mutex<State>>,
}

impl FaultProxy {
    /// Listens on a free port on 127.0.0.1 and forwards to `upstream` (`host:port`). Its thread
    /// ends with the test process.
    pub fn start(upstream: &str) -> Result<FaultProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").context("binding the proxy")?;
        let address = listener.local_addr()?.to_string();
        let state = Arc::new(Mutex::new(State::default()));
        let upstream = upstream.to_string();
        let shared = Arc::clone(&state);
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let state = Arc::clone(&shared);
                let upstream = upstream.clone();
                std::thread::spawn(move || {
                    if let Err(error) = serve(client, &upstream, &state) {
                        eprintln!("fault proxy: {error:#}");
                    }
                });
            }
        });
        Ok(FaultProxy { address, state })
    }

    pub fn add(&self, rule: Rule) {
        self.lock().rules.push(rule);
    }

    pub fn clear_rules(&self) {
        self.lock().rules.clear();
    }

    /// Every request so far, `METHOD path status`.
    pub fn log(&self) -> Vec<String> {
        self.lock().log.clone()
    }

    pub fn clear_log(&self) {
        self.lock().log.clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// One request per connection: every answer says `Connection: close`.
fn serve(mut client: TcpStream, upstream: &str, state: &Mutex<State>) -> Result<()> {
    let (head, body_start) = read_head(&mut client)?;
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut request = httparse::Request::new(&mut headers);
    request.parse(&head).context("parsing a request")?;
    let method = request.method.context("no method")?.to_string();
    let path = request.path.context("no path")?.to_string();
    let mut content_length = 0;
    let mut forwarded_head = format!("{method} {path} HTTP/1.1\r\n");
    for header in request.headers.iter() {
        if header.name.eq_ignore_ascii_case("content-length") {
            content_length = std::str::from_utf8(header.value)?.trim().parse()?;
        }
        if header.name.eq_ignore_ascii_case("transfer-encoding") {
            bail!("the proxy does not take chunked request bodies");
        }
        if header.name.eq_ignore_ascii_case("connection") {
            continue;
        }
        forwarded_head.push_str(&format!(
            "{}: {}\r\n",
            header.name,
            String::from_utf8_lossy(header.value)
        ));
    }
    forwarded_head.push_str("Connection: close\r\n\r\n");

    let fault = {
        let mut state = state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let rule = state.rules.iter_mut().find(|rule| {
            rule.times > 0
                && rule.method == method
                && path.contains(&rule.path)
                && content_length >= rule.min_body
        });
        let fault = rule.map(|rule| {
            rule.times -= 1;
            rule.fault.clone()
        });
        match fault {
            Some(Fault::RateLimit(seconds)) => {
                let answer = Fault::Status(429, vec![("Retry-After", seconds.to_string())]);
                state.rules.insert(
                    0,
                    Rule {
                        method: "GET",
                        path: "/v2/".to_string(),
                        min_body: 0,
                        times: 1,
                        fault: answer.clone(),
                    },
                );
                Some(answer)
            }
            fault => fault,
        }
    };
    let log = |status: &str| {
        state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .log
            .push(format!("{method} {path} {status}"));
    };

    if let Some(Fault::CutRequest) = fault {
        let mut half = vec![0; content_length / 2];
        let already = body_start.len().min(half.len());
        half[..already].copy_from_slice(&body_start[..already]);
        client.read_exact(&mut half[already..])?;
        log("cut");
        client.shutdown(Shutdown::Both)?;
        return Ok(());
    }
    let mut body = body_start;
    if body.len() < content_length {
        let mut rest = vec![0; content_length - body.len()];
        client.read_exact(&mut rest)?;
        body.extend_from_slice(&rest);
    }
    if let Some(Fault::Status(status, extra)) = &fault {
        let mut answer =
            format!("HTTP/1.1 {status} Injected\r\nContent-Length: 0\r\nConnection: close\r\n");
        for (name, value) in extra {
            answer.push_str(&format!("{name}: {value}\r\n"));
        }
        answer.push_str("\r\n");
        client.write_all(answer.as_bytes())?;
        log(&status.to_string());
        return Ok(());
    }

    let mut server = TcpStream::connect(upstream).context("connecting to the registry")?;
    server.write_all(forwarded_head.as_bytes())?;
    server.write_all(&body)?;
    let mut response = Vec::new();
    server.read_to_end(&mut response)?;
    let status = String::from_utf8_lossy(response.get(9..12).unwrap_or_default()).to_string();
    if let Some(Fault::CorruptResponse) = fault {
        let body_at = find(&response, b"\r\n\r\n").context("a response head")? + 4;
        if body_at < response.len() {
            response[body_at] ^= 0xff;
            log(&format!("{status} corrupted"));
        } else {
            log(&status);
        }
    } else {
        log(&status);
    }
    client.write_all(&response)?;
    client.shutdown(Shutdown::Both).ok();
    Ok(())
}

/// Reads up to the end of the head; returns the head and the body bytes read with it.
fn read_head(client: &mut TcpStream) -> Result<(Vec<u8>, Vec<u8>)> {
    let mut bytes = Vec::new();
    let mut buffer = [0; 8192];
    loop {
        if let Some(end) = find(&bytes, b"\r\n\r\n") {
            let body = bytes.split_off(end + 4);
            return Ok((bytes, body));
        }
        let n = client.read(&mut buffer)?;
        if n == 0 {
            bail!("the client closed before a whole request head");
        }
        bytes.extend_from_slice(&buffer[..n]);
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}
