//! Scenario files: a test as data in, a trace out.
//!
//! A scenario is JSON: the plugins (root_id + configuration), VM settings, clusters,
//! properties, then steps applied in order (stream events, TCP connection events, callout
//! answers, clock advances). [`run`] returns the rendered trace: each step, the calls it caused, and its
//! outcome. See host-sim/README.md for the format.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde::Deserialize;

use crate::{Error, FailurePolicy, Module, Outcome, PluginConfig, PropertyValue, Sim};

/// A scenario file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// The plugins, in order.
    pub plugins: Vec<ScenarioPlugin>,
    /// The VM id.
    #[serde(default)]
    pub vm_id: String,
    /// The VM configuration.
    #[serde(default)]
    pub vm_configuration: String,
    /// Clusters `proxy_http_call` / gRPC may use.
    #[serde(default)]
    pub clusters: Vec<String>,
    /// Properties every context sees.
    #[serde(default)]
    pub properties: Vec<ScenarioProperty>,
    /// Worker threads, one VM each (default 1); `use_worker` steps choose among them.
    #[serde(default)]
    pub workers: Option<usize>,
    /// What Envoy does after a trap (default `fail_closed`).
    #[serde(default)]
    pub failure_policy: Option<ScenarioFailurePolicy>,
    /// FAIL_RELOAD's backoff base in milliseconds (default 1000).
    #[serde(default)]
    pub reload_backoff_ms: Option<u64>,
    /// Steps, in order.
    #[serde(default)]
    pub steps: Vec<Step>,
}

/// One plugin of a scenario.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioPlugin {
    /// The root_id.
    pub root_id: String,
    /// The configuration: a string is used as is, any other JSON value is serialized.
    #[serde(default)]
    pub configuration: Option<serde_json::Value>,
    /// Envoy's `allow_on_headers_stop_iteration`.
    #[serde(default)]
    pub allow_on_headers_stop_iteration: bool,
}

/// Envoy's `failure_policy`, as a scenario spells it.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScenarioFailurePolicy {
    /// `FAIL_CLOSED`.
    FailClosed,
    /// `FAIL_OPEN`.
    FailOpen,
    /// `FAIL_RELOAD`.
    FailReload,
}

/// A property of a scenario.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioProperty {
    /// Path segments.
    pub path: Vec<String>,
    /// The typed value, e.g. `{"string": "x"}`, `{"int": 3}`.
    pub value: PropertyValue,
}

/// One step.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Step {
    /// Request headers on a stream (created on first use, on `root_id` or the first plugin).
    RequestHeaders {
        /// The stream's name in the scenario.
        stream: String,
        /// The plugin; default the first.
        #[serde(default)]
        root_id: Option<String>,
        /// Headers.
        headers: Vec<(String, String)>,
        /// End of stream.
        #[serde(default)]
        end_of_stream: bool,
    },
    /// A request body chunk.
    RequestBody {
        /// The stream.
        stream: String,
        /// Body text.
        body: String,
        /// End of stream.
        #[serde(default)]
        end_of_stream: bool,
    },
    /// Request trailers.
    RequestTrailers {
        /// The stream.
        stream: String,
        /// Trailers.
        trailers: Vec<(String, String)>,
    },
    /// Response headers.
    ResponseHeaders {
        /// The stream.
        stream: String,
        /// Headers.
        headers: Vec<(String, String)>,
        /// End of stream.
        #[serde(default)]
        end_of_stream: bool,
    },
    /// A response body chunk.
    ResponseBody {
        /// The stream.
        stream: String,
        /// Body text.
        body: String,
        /// End of stream.
        #[serde(default)]
        end_of_stream: bool,
    },
    /// Response trailers.
    ResponseTrailers {
        /// The stream.
        stream: String,
        /// Trailers.
        trailers: Vec<(String, String)>,
    },
    /// Log, done, delete.
    Complete {
        /// The stream.
        stream: String,
    },
    /// Answers an HTTP callout.
    HttpCallResponse {
        /// The token.
        token: u32,
        /// Headers.
        #[serde(default)]
        headers: Vec<(String, String)>,
        /// Body text.
        #[serde(default)]
        body: String,
        /// Trailers.
        #[serde(default)]
        trailers: Vec<(String, String)>,
    },
    /// Fails an HTTP callout (reset).
    HttpCallFailure {
        /// The token.
        token: u32,
    },
    /// Answers a gRPC call.
    GrpcResponse {
        /// The token.
        token: u32,
        /// Message bytes as text.
        message: String,
    },
    /// Closes a gRPC call or stream.
    GrpcClose {
        /// The token.
        token: u32,
        /// gRPC status.
        status: u32,
        /// Status message.
        #[serde(default)]
        message: String,
    },
    /// Advances the virtual clock.
    AdvanceMs(u64),
    /// Enqueues on a shared queue.
    Enqueue {
        /// Queue name.
        queue: String,
        /// Item text.
        data: String,
    },
    /// Streams created from now on (and callout answers) go to this worker.
    UseWorker(usize),
    /// Bytes from the client on a TCP connection (opened on first use, on `root_id` or the
    /// first plugin; `proxy_on_new_connection` runs then).
    DownstreamData {
        /// The connection's name in the scenario.
        connection: String,
        /// The plugin; default the first.
        #[serde(default)]
        root_id: Option<String>,
        /// The bytes, as text.
        data: String,
        /// The client half-closes.
        #[serde(default)]
        end_of_stream: bool,
    },
    /// Bytes from upstream on a TCP connection.
    UpstreamData {
        /// The connection.
        connection: String,
        /// The plugin, if this step opens the connection; default the first.
        #[serde(default)]
        root_id: Option<String>,
        /// The bytes, as text.
        data: String,
        /// The upstream half-closes.
        #[serde(default)]
        end_of_stream: bool,
    },
    /// The client closes the connection.
    DownstreamClose {
        /// The connection.
        connection: String,
    },
    /// The upstream connection closes (tcp_proxy then closes the client's).
    UpstreamClose {
        /// The connection.
        connection: String,
    },
}

/// Parses a scenario.
pub fn parse(text: &str) -> Result<Scenario, Error> {
    serde_json::from_str(text).map_err(|error| Error::Scenario(error.to_string()))
}

fn pairs(items: &[(String, String)]) -> Vec<(&str, &str)> {
    items
        .iter()
        .map(|(key, value)| (key.as_str(), value.as_str()))
        .collect()
}

/// Runs a scenario against a module and renders what happened.
pub fn run(module: &Module, scenario: &Scenario) -> Result<String, Error> {
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
    for cluster in &scenario.clusters {
        builder = builder.cluster(cluster);
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
    for property in &scenario.properties {
        let path: Vec<&str> = property.path.iter().map(String::as_str).collect();
        builder = builder.property(&path, property.value.clone());
    }
    let mut out = String::new();
    let mut sim = match builder.build() {
        Ok(sim) => sim,
        Err(Error::ConfigRejected(rejection)) => {
            let _ = writeln!(
                out,
                "configuration rejected: root_id={} ({})",
                rejection.root_id, rejection.reason
            );
            for log in &rejection.logs {
                let _ = writeln!(out, "  log {} {:?}", log.level_name(), log.message);
            }
            return Ok(out);
        }
        Err(error) => return Err(error),
    };
    let _ = writeln!(out, "== start");
    out.push_str(&sim.render_trace());
    sim.clear_trace();
    let default_root = scenario
        .plugins
        .first()
        .map(|plugin| plugin.root_id.clone())
        .unwrap_or_default();
    let mut streams: HashMap<String, u32> = HashMap::new();
    let mut connections: HashMap<String, u32> = HashMap::new();
    for (idx, step) in scenario.steps.iter().enumerate() {
        let (label, outcome) =
            match connection_step(&mut sim, step, &default_root, &mut connections) {
                Some(result) => result?,
                None => run_step(&mut sim, step, &default_root, &mut streams)?,
            };
        let _ = writeln!(out, "== step {}: {label}", idx + 1);
        out.push_str(&sim.render_trace());
        let _ = writeln!(out, "-> {}", render_outcome(&outcome));
        sim.clear_trace();
    }
    Ok(out)
}

fn stream_id(
    sim: &mut Sim,
    streams: &mut HashMap<String, u32>,
    name: &str,
    root_id: &str,
) -> Result<u32, Error> {
    if let Some(id) = streams.get(name) {
        return Ok(*id);
    }
    let id = sim.stream(root_id)?.id();
    streams.insert(name.to_string(), id);
    Ok(id)
}

fn run_step(
    sim: &mut Sim,
    step: &Step,
    default_root: &str,
    streams: &mut HashMap<String, u32>,
) -> Result<(String, Outcome), Error> {
    // A stream step: its label (`<what> <stream>`) and what the stream answered.
    let mut on_stream = |sim: &mut Sim,
                         what: &str,
                         name: &str,
                         root: Option<&str>,
                         act: &mut dyn FnMut(&mut crate::Stream<'_>) -> Outcome|
     -> Result<(String, Outcome), Error> {
        let id = stream_id(sim, streams, name, root.unwrap_or(default_root))?;
        let outcome = match sim.stream_by_id(id) {
            Some(mut stream) => act(&mut stream),
            None => Outcome::NotDelivered,
        };
        Ok((format!("{what} {name}"), outcome))
    };
    Ok(match step {
        Step::RequestHeaders {
            stream,
            root_id,
            headers,
            end_of_stream,
        } => on_stream(
            sim,
            "request_headers",
            stream,
            root_id.as_deref(),
            &mut |s| s.send_request_headers(&pairs(headers), *end_of_stream),
        )?,
        Step::RequestBody {
            stream,
            body,
            end_of_stream,
        } => on_stream(sim, "request_body", stream, None, &mut |s| {
            s.send_request_body(body.as_bytes(), *end_of_stream)
        })?,
        Step::RequestTrailers { stream, trailers } => {
            on_stream(sim, "request_trailers", stream, None, &mut |s| {
                s.send_request_trailers(&pairs(trailers))
            })?
        }
        Step::ResponseHeaders {
            stream,
            headers,
            end_of_stream,
        } => on_stream(sim, "response_headers", stream, None, &mut |s| {
            s.send_response_headers(&pairs(headers), *end_of_stream)
        })?,
        Step::ResponseBody {
            stream,
            body,
            end_of_stream,
        } => on_stream(sim, "response_body", stream, None, &mut |s| {
            s.send_response_body(body.as_bytes(), *end_of_stream)
        })?,
        Step::ResponseTrailers { stream, trailers } => {
            on_stream(sim, "response_trailers", stream, None, &mut |s| {
                s.send_response_trailers(&pairs(trailers))
            })?
        }
        Step::Complete { stream } => {
            let mut summary = String::new();
            let (label, outcome) = on_stream(sim, "complete", stream, None, &mut |s| {
                let outcome = s.complete();
                summary = render_stream(s);
                outcome
            })?;
            (
                format!("{label}\n{summary}").trim_end().to_string(),
                outcome,
            )
        }
        Step::HttpCallResponse {
            token,
            headers,
            body,
            trailers,
        } => (
            format!("http_call_response {token}"),
            sim.respond_http_call(*token, &pairs(headers), body.as_bytes(), &pairs(trailers)),
        ),
        Step::HttpCallFailure { token } => (
            format!("http_call_failure {token}"),
            sim.fail_http_call(*token),
        ),
        Step::GrpcResponse { token, message } => (
            format!("grpc_response {token}"),
            sim.respond_grpc_call(*token, message.as_bytes()),
        ),
        Step::GrpcClose {
            token,
            status,
            message,
        } => (
            format!("grpc_close {token}"),
            sim.close_grpc(*token, &[], *status, message),
        ),
        Step::AdvanceMs(ms) => (
            format!("advance {ms}ms"),
            sim.advance(Duration::from_millis(*ms)),
        ),
        Step::Enqueue { queue, data } => (
            format!("enqueue {queue}"),
            sim.enqueue(queue, data.as_bytes())
                .unwrap_or(Outcome::NotDelivered),
        ),
        Step::UseWorker(worker) => {
            sim.use_worker(*worker)?;
            (format!("use_worker {worker}"), Outcome::Continue)
        }
        Step::DownstreamData { .. }
        | Step::UpstreamData { .. }
        | Step::DownstreamClose { .. }
        | Step::UpstreamClose { .. } => unreachable!("connection steps run in connection_step"),
    })
}

/// A TCP connection step: its label and outcome (`None` for other steps). A step that opens
/// the connection says so, with what `proxy_on_new_connection` answered; a close step ends
/// with what passed each way.
fn connection_step(
    sim: &mut Sim,
    step: &Step,
    default_root: &str,
    connections: &mut HashMap<String, u32>,
) -> Option<Result<(String, Outcome), Error>> {
    let (what, name, root_id) = match step {
        Step::DownstreamData {
            connection,
            root_id,
            ..
        } => ("downstream_data", connection, root_id.as_deref()),
        Step::UpstreamData {
            connection,
            root_id,
            ..
        } => ("upstream_data", connection, root_id.as_deref()),
        Step::DownstreamClose { connection } => ("downstream_close", connection, None),
        Step::UpstreamClose { connection } => ("upstream_close", connection, None),
        _ => return None,
    };
    let mut label = format!("{what} {name}");
    let id = match connections.get(name) {
        Some(id) => *id,
        None => match sim.connection(root_id.unwrap_or(default_root)) {
            Ok(connection) => {
                let _ = write!(label, " (opened: {})", render_outcome(connection.opened()));
                let id = connection.id();
                connections.insert(name.clone(), id);
                id
            }
            Err(error) => return Some(Err(error)),
        },
    };
    let Some(mut connection) = sim.connection_by_id(id) else {
        return Some(Ok((label, Outcome::NotDelivered)));
    };
    let outcome = match step {
        Step::DownstreamData {
            data,
            end_of_stream,
            ..
        } => connection.send_downstream_data(data.as_bytes(), *end_of_stream),
        Step::UpstreamData {
            data,
            end_of_stream,
            ..
        } => connection.send_upstream_data(data.as_bytes(), *end_of_stream),
        Step::DownstreamClose { .. } => connection.close_downstream(),
        _ => connection.close_upstream(),
    };
    if connection.was_closed() {
        let _ = write!(
            label,
            "\n  upstream received: {:?}{}\n  client received: {:?}{}\n  closed: {}",
            String::from_utf8_lossy(connection.upstream_bytes()),
            if connection.upstream_ended() {
                " +end"
            } else {
                ""
            },
            String::from_utf8_lossy(connection.downstream_bytes()),
            if connection.downstream_ended() {
                " +end"
            } else {
                ""
            },
            connection.close_reason().unwrap_or_default(),
        );
    }
    Some(Ok((label, outcome)))
}

/// Renders an outcome as one line.
pub fn render_outcome(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Continue => "Continue".into(),
        Outcome::Paused(pause) => format!("Paused({pause:?})"),
        Outcome::LocalReply { status_code } => format!("LocalReply({status_code})"),
        Outcome::Reset => "Reset".into(),
        Outcome::Trapped { callback, message } => format!("Trapped in {callback}: {message}"),
        Outcome::NotDelivered => "NotDelivered".into(),
    }
}

/// Renders what a completed stream sent upstream and downstream.
pub fn render_stream(stream: &crate::Stream<'_>) -> String {
    let mut out = String::new();
    let mut headers = |label: &str, map: &crate::HeaderMap| {
        let _ = writeln!(out, "  {label}:");
        for (key, value) in map.to_vec() {
            let _ = writeln!(out, "    {key}: {value}");
        }
    };
    headers("upstream request headers", stream.request_headers());
    headers("downstream response headers", stream.response_headers());
    if !stream.upstream_body().is_empty() {
        let _ = writeln!(
            out,
            "  upstream body: {:?}",
            String::from_utf8_lossy(stream.upstream_body())
        );
    }
    if !stream.downstream_body().is_empty() {
        let _ = writeln!(
            out,
            "  downstream body: {:?}",
            String::from_utf8_lossy(stream.downstream_body())
        );
    }
    if let Some(reply) = stream.local_reply() {
        let _ = writeln!(
            out,
            "  local reply: {} {}",
            reply.status_code, reply.details
        );
    }
    out
}
