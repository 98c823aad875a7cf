//! Client-level scenarios (`host-sim/tests/differential/README.md`): requests a client sends
//! through Envoy's HTTP connection manager, the plugins' filter chain ([`crate::Chain`]), an
//! upstream and callout clusters that answer as the scenario says, all on the virtual clock.
//! [`run`] gives the observation JSON that `cargo xtask sim envoy` builds from a real Envoy.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use crate::hcm::{self, ClientRequest, Protocol};
use crate::scenario::ScenarioFailurePolicy;
use crate::{Error, FailurePolicy, HeaderMap, Module, PluginConfig, Sim};

mod clock;
mod format;
mod tcp;

use clock::Clock;
pub use format::{
    Answer, Cluster, ClusterKind, Exchange, Observation, Request, Response, UpstreamRequest,
};
use format::{Pairs, text};
pub use tcp::{ClientConnection, ConnectionObservation, Step, TcpUpstream};

/// How long a request may take before it counts as unanswered (the runner's timeout).
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Parses a scenario.
pub fn parse(text: &str) -> Result<Exchange, Error> {
    serde_json::from_str(text).map_err(|error| Error::Scenario(error.to_string()))
}

/// Loads the module at `path` and runs the scenario: a module Envoy cannot make a VM of
/// (no allocator, a missing import, …: Envoy logs "Unable to create Wasm plugin" and exits at
/// startup) is a rejected configuration, as Envoy 1.40 shows in `wat-no-allocator-get-header`.
pub fn run_path(path: &std::path::Path, scenario: &Exchange) -> Result<Observation, Error> {
    run_path_traced(path, scenario, false).map(|(observation, _)| observation)
}

/// [`run_path`], with the trace of every call (empty unless `trace`).
pub fn run_path_traced(
    path: &std::path::Path,
    scenario: &Exchange,
    trace: bool,
) -> Result<(Observation, String), Error> {
    match Module::load(path) {
        Ok(module) => run_traced(&module, scenario, trace),
        Err(error @ Error::Read { .. }) => Err(error),
        Err(_) => Ok((rejected(), String::new())),
    }
}

/// What a client sees when Envoy refused to start with the configuration.
fn rejected() -> Observation {
    Observation {
        configuration: "rejected",
        responses: Vec::new(),
        connections: Vec::new(),
        metrics: BTreeMap::new(),
    }
}

/// Runs the scenario's requests through a simulated Envoy and returns what a client saw.
pub fn run(module: &Module, scenario: &Exchange) -> Result<Observation, Error> {
    run_traced(module, scenario, false).map(|(observation, _)| observation)
}

/// [`run`], with the trace of every call (empty unless `trace`).
pub fn run_traced(
    module: &Module,
    scenario: &Exchange,
    trace: bool,
) -> Result<(Observation, String), Error> {
    let built = builder(module, scenario)
        .trace(trace)
        .whole_process(true)
        .build();
    let mut sim = match built {
        Ok(sim) => sim,
        // Envoy refuses to start: a configure or VM start that failed or trapped.
        Err(Error::ConfigRejected(_) | Error::StartFailed(_)) => {
            return Ok((rejected(), String::new()));
        }
        Err(error) => return Err(error),
    };
    let root_ids: Vec<&str> = scenario
        .plugins
        .iter()
        .map(|plugin| plugin.root_id.as_str())
        .collect();
    let mut clock = Clock {
        clusters: &scenario.clusters,
        due: HashMap::new(),
    };
    let connections = if scenario.connections.is_empty() {
        Vec::new()
    } else {
        tcp::run(&mut sim, &root_ids, &scenario.connections)?
    };
    let mut responses = Vec::new();
    for (index, request) in scenario.requests.iter().enumerate() {
        let wait_until = now_ns(&sim) + ms_ns(request.wait_before_ms);
        clock.run_until(&mut sim, wait_until);
        responses.push(exchange(
            &mut sim, &mut clock, &root_ids, scenario, request, index,
        )?);
    }
    let metrics = sim
        .metrics()
        .into_iter()
        .filter(|(_, value)| value.kind != 2)
        .map(|(name, value)| (name, value.value))
        .collect();
    let observation = Observation {
        configuration: "accepted",
        responses,
        connections,
        metrics,
    };
    Ok((observation, sim.render_trace()))
}

fn builder(module: &Module, scenario: &Exchange) -> crate::SimBuilder {
    let mut builder = Sim::builder(module)
        .vm_id(&scenario.vm_id)
        .vm_configuration(scenario.vm_configuration.as_bytes());
    for plugin in &scenario.plugins {
        let configuration = match &plugin.configuration {
            None => Vec::new(),
            Some(serde_json::Value::String(text)) => text.as_bytes().to_vec(),
            Some(value) => value.to_string().into_bytes(),
        };
        builder = builder.plugin_config(PluginConfig {
            root_id: plugin.root_id.clone(),
            name: plugin.root_id.clone(),
            configuration,
            allow_on_headers_stop_iteration: plugin.allow_on_headers_stop_iteration,
        });
    }
    for name in scenario.clusters.keys() {
        builder = builder.cluster(name);
    }
    if let Some(workers) = scenario.workers {
        builder = builder.workers(workers);
    }
    if let Some(policy) = scenario.failure_policy {
        builder = builder.failure_policy(match policy {
            ScenarioFailurePolicy::FailClosed => FailurePolicy::FailClosed,
            ScenarioFailurePolicy::FailOpen => FailurePolicy::FailOpen,
            ScenarioFailurePolicy::FailReload => FailurePolicy::FailReload,
        });
    }
    if let Some(ms) = scenario.reload_backoff_ms {
        builder = builder.reload_backoff(Duration::from_millis(ms));
    }
    if let Some(bytes) = scenario.buffer_limit_bytes {
        builder = builder.buffer_limit(bytes);
    }
    builder
}

fn ms_ns(ms: u64) -> u64 {
    ms.saturating_mul(1_000_000)
}

fn now_ns(sim: &Sim) -> u64 {
    sim.now().as_nanos().min(u128::from(u64::MAX)) as u64
}

fn pairs_map(pairs: &[(String, String)]) -> HeaderMap {
    HeaderMap::from_pairs(
        pairs
            .iter()
            .map(|(key, value)| (key.as_str(), value.as_str())),
    )
}

/// One request: through the chain, to the upstream after it fully passed, back through the
/// chain, until the client has the whole response, a reset, or the response timeout.
fn exchange(
    sim: &mut Sim,
    clock: &mut Clock<'_>,
    root_ids: &[&str],
    scenario: &Exchange,
    request: &Request,
    index: usize,
) -> Result<Response, Error> {
    let answer = request.upstream.over(&scenario.upstream);
    let start = now_ns(sim);
    let deadline = start + RESPONSE_TIMEOUT.as_nanos() as u64;
    // Worker 1 is the first worker thread (0 is the main thread).
    sim.use_worker(1)?;
    let mut chain = sim.chain(root_ids)?;
    let client = ClientRequest {
        method: request.method.clone().unwrap_or_else(|| "GET".into()),
        path: request.path.clone().unwrap_or_else(|| "/".into()),
        authority: request
            .authority
            .clone()
            .unwrap_or_else(|| "example.com".into()),
        headers: request.headers.clone(),
        body_len: (!request.body.is_empty() && request.trailers.is_empty())
            .then_some(request.body.len()),
        protocol: if request.http2 {
            Protocol::Http2
        } else {
            Protocol::Http1
        },
        request_id: format!("00000000-0000-4000-8000-{index:012}"),
    };
    let head = client.method == "HEAD";
    let body = request.body.as_bytes();
    let trailers = &request.trailers;
    chain.send_request_headers(
        hcm::request_headers(&client),
        body.is_empty() && trailers.is_empty(),
    );
    send_body_and_trailers(&mut chain, false, body, trailers, !request.http2);

    let mut upstream_due: Option<u64> = None;
    let mut answered = false;
    loop {
        if chain.client().ended || chain.was_reset() {
            break;
        }
        let now = now_ns(chain.sim());
        if upstream_due.is_none() && whole(chain.upstream()) && !chain.request_stopped() {
            upstream_due = Some(now + ms_ns(answer.delay_ms.unwrap_or(0)));
        }
        if !answered && upstream_due.is_some_and(|due| due <= now) {
            answered = true;
            respond_upstream(&mut chain, &answer, head);
            continue;
        }
        let pending_upstream = upstream_due.filter(|_| !answered);
        let next = clock
            .next_due(chain.sim())
            .into_iter()
            .chain(pending_upstream)
            .min();
        match next {
            Some(at) if at <= deadline => {
                clock.run_until(chain.sim(), at);
                chain.pump();
            }
            _ => {
                clock.run_until(chain.sim(), deadline);
                chain.pump();
                break;
            }
        }
    }
    let response = observe(&chain, request, &client, head);
    chain.complete();
    Ok(response)
}

/// Whether the upstream server has the whole request: the stream ended, with as many body
/// bytes as its `content-length` says (a server waits for the rest).
fn whole(upstream: &crate::Side) -> bool {
    let length = upstream
        .headers
        .as_ref()
        .and_then(|headers| headers.get_str("content-length"))
        .and_then(|length| length.parse::<usize>().ok());
    upstream.ended && length.is_none_or(|length| upstream.body.len() >= length)
}

/// The upstream's answer, as the last filter receives it.
fn respond_upstream(chain: &mut crate::Chain<'_>, answer: &Answer, head: bool) {
    let status = answer.status.unwrap_or(200);
    let body = answer.body.clone().unwrap_or_default();
    let trailers = answer.trailers.clone().unwrap_or_default();
    let bodiless = matches!(status, 100..=199 | 204 | 304);
    let headers = answer.headers.clone().unwrap_or_default();
    let framed = !bodiless && trailers.is_empty();
    let headers = hcm::upstream_response_headers(
        status,
        &headers,
        framed.then_some(body.len()),
        answer.delay_ms.unwrap_or(0),
    );
    let body = if bodiless || head { "" } else { body.as_str() };
    let trailers = if bodiless { Vec::new() } else { trailers };
    chain.send_response_headers(headers, body.is_empty() && trailers.is_empty());
    send_body_and_trailers(chain, true, body.as_bytes(), &trailers, true);
}

/// The body and trailers after the headers. Envoy's HTTP/1.1 codec delivers a body read in
/// one piece, then an empty chunk that ends the stream when the message completes (seen in
/// Envoy 1.40: the last body callback gets size 0 and end_of_stream); HTTP/2 ends the stream
/// with the data frame.
fn send_body_and_trailers(
    chain: &mut crate::Chain<'_>,
    response: bool,
    body: &[u8],
    trailers: &[(String, String)],
    http1: bool,
) {
    let send = |chain: &mut crate::Chain<'_>, chunk: &[u8], eos: bool| {
        if response {
            chain.send_response_body(chunk, eos);
        } else {
            chain.send_request_body(chunk, eos);
        }
    };
    if !body.is_empty() {
        let split = http1 && trailers.is_empty();
        send(chain, body, trailers.is_empty() && !split);
        if split {
            send(chain, b"", true);
        }
    }
    if !trailers.is_empty() {
        if response {
            chain.send_response_trailers(pairs_map(trailers));
        } else {
            chain.send_request_trailers(pairs_map(trailers));
        }
    }
}

fn observe(
    chain: &crate::Chain<'_>,
    request: &Request,
    client: &ClientRequest,
    head: bool,
) -> Response {
    // The upstream server reports a request it received whole.
    let upstream = chain.upstream();
    let received = upstream.headers.as_ref().filter(|_| whole(upstream));
    let upstream_request = received.map(|headers| {
        let get = |key: &[u8]| String::from_utf8_lossy(headers.get(key).unwrap_or_default()).into();
        let chunked = headers.get(b"content-length").is_none()
            && (!upstream.body.is_empty() || upstream.trailers.is_some());
        UpstreamRequest {
            method: get(b":method"),
            path: get(b":path"),
            authority: get(b":authority"),
            headers: hcm::upstream_headers(headers, chunked),
            body: text(&upstream.body),
            trailers: upstream
                .trailers
                .as_ref()
                .map(HeaderMap::to_vec)
                .unwrap_or_default(),
        }
    });
    let seen = chain.client();
    let mut reset = chain.was_reset();
    let mut body = seen.body.clone();
    if let (Protocol::Http1, Some(length)) = (
        client.protocol,
        seen.headers
            .as_ref()
            .and_then(|headers| headers.get_str("content-length"))
            .and_then(|length| length.parse::<usize>().ok()),
    ) {
        // An HTTP/1.1 client reads `content-length` bytes: what follows is not seen, and a
        // reset after them is not seen either.
        if body.len() >= length {
            body.truncate(length);
            reset = false;
        }
    }
    // A reset after the response head reached the client still shows the head.
    let (status, headers) = match (&seen.headers, reset) {
        (Some(headers), _) => {
            let end = seen.ended && seen.body.is_empty() && seen.trailers.is_none();
            let wire = hcm::client_headers(
                headers,
                end,
                client.protocol,
                head,
                chain.responded_early(),
                "Thu, 01 Jan 1970 00:00:00 GMT",
            );
            let status = headers
                .get_str(":status")
                .and_then(|status| status.parse().ok());
            let pairs: Pairs = wire
                .to_vec()
                .into_iter()
                .filter(|(key, _)| key != ":status")
                .collect();
            match client.protocol {
                Protocol::Http1 => {
                    http1_wire(pairs).map_or((None, Vec::new()), |pairs| (status, pairs))
                }
                Protocol::Http2 => (status, grouped(pairs)),
            }
        }
        _ => (None, Vec::new()),
    };
    if status.is_none() && seen.headers.is_some() {
        // The response head could not be read: the client sees a broken stream.
        reset = true;
    }
    Response {
        name: request.name.clone(),
        status,
        headers,
        body: if status.is_some() {
            text(&body)
        } else {
            String::new()
        },
        trailers: if status.is_some() {
            seen.trailers
                .as_ref()
                .map(HeaderMap::to_vec)
                .unwrap_or_default()
        } else {
            Vec::new()
        },
        reset,
        upstream_request,
    }
}

/// Response headers as an HTTP/1.1 client reads them from what Envoy's codec writes (seen
/// in Envoy 1.40): a value with CRLF in it is written as is, so what follows the CRLF reads as
/// a header line of its own; a name that is not an HTTP token breaks the response head
/// (`None`: the client sees a reset).
fn http1_wire(pairs: Pairs) -> Option<Pairs> {
    let mut out = Vec::new();
    for (name, value) in pairs {
        let mut lines = value.split("\r\n");
        out.push((name, lines.next().unwrap_or_default().to_string()));
        for line in lines {
            let (name, value) = line.split_once(':')?;
            out.push((name.to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    let token = |name: &str| {
        !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    };
    out.iter().all(|(name, _)| token(name)).then_some(out)
}

/// Response headers as the runner's HTTP/2 client reads them (`http::HeaderMap`): distinct
/// names in order, a repeated name's values together at its first position.
fn grouped(pairs: Pairs) -> Pairs {
    let mut out: Pairs = Vec::new();
    for (name, value) in pairs {
        match out.iter().rposition(|(seen, _)| *seen == name) {
            Some(last) => out.insert(last + 1, (name, value)),
            None => out.push((name, value)),
        }
    }
    out
}
