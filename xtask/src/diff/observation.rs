//! The observation both sides print (README: "Observation"), and their comparison: volatile
//! headers removed, both pretty-printed with sorted keys, a unified line diff when they differ.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::Serialize;
use serde_json::Value;

use super::client::Answer;
use super::scenario::Pairs;
use super::servers::Received;

/// Headers whose values change from run to run, always removed before comparing.
pub const DEFAULT_VOLATILE_HEADERS: &[&str] =
    &["date", "x-request-id", "x-envoy-upstream-service-time"];

/// What a client saw for one scenario.
#[derive(Debug, Serialize)]
pub struct Observation {
    /// `accepted`, or `rejected` when Envoy refused to start with the configuration.
    pub configuration: &'static str,
    pub responses: Vec<Response>,
    /// A TCP scenario's connections (absent in HTTP scenarios).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub connections: Vec<ConnectionObservation>,
    /// `wasmcustom.*` counters and gauges, by name without the prefix.
    pub metrics: BTreeMap<String, Value>,
}

/// What the client and the upstream saw on one TCP connection.
#[derive(Debug, Serialize)]
pub struct ConnectionObservation {
    pub name: String,
    pub client_received: String,
    /// The client read the end of the stream (or a reset) within its linger time.
    pub client_saw_eof: bool,
    pub upstream_received: String,
    pub upstream_saw_eof: bool,
}

/// One request's response, and what the upstream received for it.
#[derive(Debug, Serialize)]
pub struct Response {
    pub name: String,
    pub status: Option<u16>,
    pub headers: Pairs,
    pub body: String,
    pub trailers: Pairs,
    pub reset: bool,
    pub upstream_request: Option<UpstreamRequest>,
}

/// What the upstream server received.
#[derive(Debug, Serialize)]
pub struct UpstreamRequest {
    pub method: String,
    pub path: String,
    pub authority: String,
    pub headers: Pairs,
    pub body: String,
    pub trailers: Pairs,
}

impl Observation {
    /// Envoy refused the configuration.
    pub fn rejected() -> Observation {
        Observation {
            configuration: "rejected",
            responses: Vec::new(),
            connections: Vec::new(),
            metrics: BTreeMap::new(),
        }
    }
}

/// A body as text, or `base64:<…>` when it is not UTF-8.
pub fn body_text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|error| {
        format!(
            "base64:{}",
            base64::engine::general_purpose::STANDARD.encode(error.as_bytes())
        )
    })
}

fn lowercase(headers: Pairs) -> Pairs {
    headers
        .into_iter()
        .map(|(name, value)| (name.to_ascii_lowercase(), value))
        .collect()
}

impl Response {
    /// The client's answer and the upstream's first received request for it.
    pub fn new(name: &str, answer: Answer, received: Option<Received>) -> Response {
        Response {
            name: name.to_owned(),
            status: answer.status,
            headers: answer.headers,
            body: body_text(answer.body),
            trailers: answer.trailers,
            reset: answer.reset,
            upstream_request: received.map(UpstreamRequest::from),
        }
    }
}

impl From<Received> for UpstreamRequest {
    fn from(received: Received) -> UpstreamRequest {
        let mut authority = String::new();
        let mut headers = Vec::new();
        for (name, value) in lowercase(received.headers) {
            if name == "host" {
                authority = value;
            } else {
                headers.push((name, value));
            }
        }
        UpstreamRequest {
            method: received.method,
            path: received.path,
            authority,
            headers,
            body: body_text(received.body),
            trailers: lowercase(received.trailers),
        }
    }
}

/// A default volatile header, or one of the scenario's (`extra`).
fn is_volatile(name: &str, extra: &[String]) -> bool {
    DEFAULT_VOLATILE_HEADERS
        .iter()
        .any(|volatile| volatile.eq_ignore_ascii_case(name))
        || extra
            .iter()
            .any(|volatile| volatile.eq_ignore_ascii_case(name))
}

impl Observation {
    /// Removes the volatile headers (the defaults and `extra`) from every response and
    /// upstream request.
    pub fn remove_volatile(&mut self, extra: &[String]) {
        for response in &mut self.responses {
            response
                .headers
                .retain(|(name, _)| !is_volatile(name, extra));
            if let Some(upstream) = &mut response.upstream_request {
                upstream
                    .headers
                    .retain(|(name, _)| !is_volatile(name, extra));
            }
        }
    }
}

/// [`Observation::remove_volatile`] for an observation in JSON form (host-sim's).
pub fn remove_volatile(observation: &mut Value, extra: &[String]) {
    let strip = |headers: &mut Value| {
        if let Some(list) = headers.as_array_mut() {
            list.retain(|pair| {
                !pair[0]
                    .as_str()
                    .is_some_and(|name| is_volatile(name, extra))
            });
        }
    };
    let Some(responses) = observation["responses"].as_array_mut() else {
        return;
    };
    for response in responses {
        strip(&mut response["headers"]);
        if response["upstream_request"].is_object() {
            strip(&mut response["upstream_request"]["headers"]);
        }
    }
}

/// Pretty JSON with every object's keys sorted, so the two sides' key order cannot differ.
pub fn stable_text(value: &Value) -> String {
    fn sorted(value: &Value) -> Value {
        match value {
            Value::Object(map) => {
                let ordered: BTreeMap<&String, Value> = map
                    .iter()
                    .map(|(key, value)| (key, sorted(value)))
                    .collect();
                Value::Object(
                    ordered
                        .into_iter()
                        .map(|(key, value)| (key.clone(), value))
                        .collect(),
                )
            }
            Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    pretty(&sorted(value))
}

/// Pretty JSON where an array of scalars (a header pair) stays on one line:
/// `["x-up", "1"]`, so a diff shows whole headers.
pub fn pretty(value: &impl Serialize) -> String {
    let text = serde_json::to_string_pretty(value).expect("observations serialize");
    let lines: Vec<&str> = text.lines().collect();
    let mut out = String::new();
    let mut line_idx = 0;
    while line_idx < lines.len() {
        let line = lines[line_idx];
        if line.ends_with('[') {
            // A line ending in `[` opens an array (a string line ends in `"`); it is joined
            // when every element up to its `]` is a scalar.
            let items: Vec<&str> = lines[line_idx + 1..]
                .iter()
                .take_while(|item| !item.trim_start().starts_with(']'))
                .map(|item| item.trim())
                .collect();
            let scalars = items
                .iter()
                .all(|item| !item.ends_with(['[', '{']) && !item.starts_with(['}', ']']));
            let close = lines.get(line_idx + 1 + items.len());
            if let (true, Some(close)) = (scalars && !items.is_empty(), close) {
                out.push_str(line);
                out.push_str(&items.join(" "));
                out.push_str(close.trim_start());
                out.push('\n');
                line_idx += items.len() + 2;
                continue;
            }
        }
        out.push_str(line);
        out.push('\n');
        line_idx += 1;
    }
    out
}

/// Compares Envoy's and host-sim's observations after removing volatile headers; `None` when
/// they agree, else a unified diff labelled `--- envoy` / `+++ host-sim`.
pub fn compare(envoy: &Value, host_sim: &Value, volatile: &[String]) -> Option<String> {
    let (mut envoy, mut host_sim) = (envoy.clone(), host_sim.clone());
    remove_volatile(&mut envoy, volatile);
    remove_volatile(&mut host_sim, volatile);
    let (envoy, host_sim) = (stable_text(&envoy), stable_text(&host_sim));
    if envoy == host_sim {
        return None;
    }
    Some(
        similar::TextDiff::from_lines(&envoy, &host_sim)
            .unified_diff()
            .context_radius(3)
            .header("envoy", "host-sim")
            .to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::expect;
    use serde_json::json;

    fn observation(response_header: &str, date: &str, request_id: &str) -> Value {
        json!({
            "configuration": "accepted",
            "responses": [{
                "name": "r1", "status": 200,
                "headers": [["date", date], ["x-up", response_header], ["x-trace", request_id]],
                "body": "hello\n", "trailers": [], "reset": false,
                "upstream_request": {
                    "method": "GET", "path": "/", "authority": "example.com",
                    "headers": [["x-request-id", request_id], ["x-forwarded-proto", "http"]],
                    "body": "", "trailers": [],
                },
            }],
            "metrics": {},
        })
    }

    #[test]
    fn volatile_headers_are_ignored() {
        let envoy = observation("1", "Thu, 03 Dec 2026 01:00:00 GMT", "abc");
        let host_sim = observation("1", "Thu, 01 Jan 1970 00:00:00 GMT", "def");
        assert_eq!(compare(&envoy, &host_sim, &["X-Trace".to_owned()]), None);
    }

    #[test]
    fn one_differing_header_gives_a_labelled_diff() {
        let envoy = observation("1", "a", "abc");
        let host_sim = observation("2", "b", "abc");
        let diff = compare(&envoy, &host_sim, &[]).expect("the observations differ");
        expect![[r#"
            --- envoy
            +++ host-sim
            @@ -5,7 +5,7 @@
                 {
                   "body": "hello\n",
                   "headers": [
            -        ["x-up", "1"],
            +        ["x-up", "2"],
                     ["x-trace", "abc"]
                   ],
                   "name": "r1",
        "#]]
        .assert_eq(&diff);
    }

    #[test]
    fn key_order_does_not_matter() {
        let envoy = json!({"b": 1, "a": {"d": 2, "c": 3}});
        let host_sim: Value = serde_json::from_str(r#"{"a": {"c": 3, "d": 2}, "b": 1}"#).unwrap();
        assert_eq!(compare(&envoy, &host_sim, &[]), None);
    }

    #[test]
    fn bodies_that_are_not_utf8_are_base64() {
        assert_eq!(body_text(vec![0xff, 0x00]), "base64:/wA=");
        assert_eq!(body_text(b"ok".to_vec()), "ok");
    }
}
