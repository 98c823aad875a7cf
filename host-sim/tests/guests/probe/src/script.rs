//! The probe's script: what each callback does and returns, parsed from the plugin
//! configuration (and, for `on_vm_start`, from the VM configuration). README.md describes it.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

/// Per callback name (`on_request_headers`, ...), the rules; the first whose `when` matches runs.
#[derive(Default)]
pub struct Script {
    pub callbacks: BTreeMap<String, Vec<Rule>>,
    /// Whether a rule looks at the request's `x-probe-case` header.
    pub uses_case: bool,
}

pub struct Rule {
    pub when: When,
    pub actions: Vec<Step>,
    /// `None`: the callback's default (continue, true).
    pub result: Option<Value>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct When {
    /// Only when the callback's end_of_stream argument is this.
    pub eos: Option<bool>,
    /// Only the Nth call (from 1) of this callback in this context.
    pub call: Option<u32>,
    /// Only from the Nth call on.
    pub from_call: Option<u32>,
    /// Only when the request's `x-probe-case` header has this value.
    pub case: Option<String>,
}

/// One action, and the label its result is recorded under (none: not recorded).
pub struct Step {
    pub label: Option<String>,
    pub action: Action,
}

fn default_request_headers() -> String {
    "request_headers".into()
}

fn default_response_headers() -> String {
    "response_headers".into()
}

fn default_timeout() -> u32 {
    5000
}

fn default_grpc_status() -> i32 {
    -1
}

fn default_prefix() -> String {
    "x-probe-".into()
}

#[derive(Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Action {
    Log {
        #[serde(default = "default_log_level")]
        level: u32,
        message: String,
    },
    GetLogLevel {},
    GetHeader {
        #[serde(default = "default_request_headers")]
        map: String,
        key: String,
    },
    AddHeader {
        #[serde(default = "default_response_headers")]
        map: String,
        key: String,
        value: String,
    },
    ReplaceHeader {
        #[serde(default = "default_response_headers")]
        map: String,
        key: String,
        value: String,
    },
    RemoveHeader {
        #[serde(default = "default_response_headers")]
        map: String,
        key: String,
    },
    GetPairs {
        #[serde(default = "default_request_headers")]
        map: String,
    },
    SetPairs {
        #[serde(default = "default_response_headers")]
        map: String,
        pairs: Vec<(String, String)>,
    },
    GetMapSize {
        #[serde(default = "default_request_headers")]
        map: String,
    },
    GetBuffer {
        buffer: String,
        #[serde(default)]
        start: usize,
        /// Default: the size the callback was given (body size, message size...).
        size: Option<usize>,
    },
    SetBuffer {
        buffer: String,
        #[serde(default)]
        start: usize,
        #[serde(default)]
        size: usize,
        data: String,
    },
    GetBufferStatus {
        buffer: String,
    },
    SendLocalResponse {
        #[serde(default = "default_local_status")]
        status: u32,
        #[serde(default)]
        details: String,
        #[serde(default)]
        body: String,
        /// Append the recorded results to the body, one `label=value` line each.
        #[serde(default)]
        body_from_records: bool,
        #[serde(default)]
        headers: Vec<(String, String)>,
        #[serde(default = "default_grpc_status")]
        grpc_status: i32,
    },
    ContinueStream {
        #[serde(default = "default_stream")]
        stream: String,
    },
    CloseStream {
        #[serde(default = "default_stream")]
        stream: String,
    },
    HttpCall {
        cluster: String,
        /// Default: `:method GET`, `:path /`, `:authority <cluster>`.
        headers: Option<Vec<(String, String)>>,
        #[serde(default)]
        body: String,
        #[serde(default)]
        trailers: Vec<(String, String)>,
        #[serde(default = "default_timeout")]
        timeout_ms: u32,
    },
    GrpcCall {
        cluster: String,
        #[serde(default = "default_grpc_service")]
        service: String,
        #[serde(default = "default_grpc_method")]
        method: String,
        #[serde(default)]
        message: String,
        #[serde(default)]
        initial_metadata: Vec<(String, String)>,
        #[serde(default = "default_timeout")]
        timeout_ms: u32,
    },
    /// Opens a gRPC stream (`proxy_grpc_stream`); it becomes this context's last gRPC call.
    GrpcStream {
        cluster: String,
        #[serde(default = "default_grpc_service")]
        service: String,
        #[serde(default = "default_grpc_method")]
        method: String,
        #[serde(default)]
        initial_metadata: Vec<(String, String)>,
    },
    /// Sends a message on this context's last gRPC call (`proxy_grpc_send`).
    GrpcSend {
        #[serde(default)]
        message: String,
        #[serde(default)]
        end_of_stream: bool,
    },
    /// Cancels this context's last gRPC call.
    GrpcCancel {},
    /// Closes this context's last gRPC call.
    GrpcClose {},
    GetProperty {
        path: Vec<String>,
        /// How to show the bytes: `auto` (escaped text), `string`, `hex`, `int`, `uint`,
        /// `double`, `bool`, `pairs`, or `status` (nothing: for values that vary by run).
        #[serde(default = "default_as")]
        r#as: String,
    },
    SetProperty {
        path: Vec<String>,
        value: String,
    },
    GetSharedData {
        key: String,
    },
    SetSharedData {
        key: String,
        #[serde(default)]
        value: String,
        /// Instead of `value`: the latest result recorded under this label in this context.
        from: Option<String>,
        /// A number, or `"last"`: the cas of this context's last get_shared_data.
        #[serde(default)]
        cas: Value,
    },
    RegisterQueue {
        name: String,
    },
    ResolveQueue {
        #[serde(default)]
        vm_id: String,
        name: String,
    },
    Enqueue {
        name: String,
        #[serde(default)]
        data: String,
        /// Instead of `data`: the latest result recorded under this label in this context.
        from: Option<String>,
    },
    Dequeue {
        name: String,
    },
    DefineMetric {
        /// `counter`, `gauge` or `histogram`.
        kind: String,
        name: String,
    },
    IncrementMetric {
        name: String,
        #[serde(default = "default_delta")]
        delta: i64,
    },
    RecordMetric {
        name: String,
        value: u64,
    },
    GetMetric {
        name: String,
    },
    SetTickPeriod {
        ms: u32,
    },
    GetStatus {},
    /// `"root"`, `"self"` or a context id.
    SetEffectiveContext {
        context: Value,
    },
    CallForeignFunction {
        name: String,
        #[serde(default)]
        arguments: String,
    },
    Done {},
    /// Records a literal value (for example to show that a callback ran).
    Note {
        #[serde(default)]
        value: String,
    },
    /// Records the callback's arguments, comma-separated.
    Args {},
    /// Records which context id the host called a callout callback with: `own` (the caller's),
    /// `root` (its root context's), or `other`.
    CallbackContext {},
    /// Appends to the VM-wide trace, which `emit` with `trace: true` shows.
    Trace {
        value: String,
    },
    /// Adds every recorded result as a header `<prefix><label>: <value>` and forgets them.
    Emit {
        #[serde(default = "default_response_headers")]
        map: String,
        #[serde(default = "default_prefix")]
        prefix: String,
        /// Also the root context's results (kept, not forgotten).
        #[serde(default)]
        root: bool,
        /// Also the VM-wide trace, as `<prefix>trace`, and clear it.
        #[serde(default)]
        trace: bool,
    },
    /// Logs this context's id and recorded results at info level (for writing scenarios).
    LogRecords {},
    /// Executes `unreachable`: the VM traps.
    Trap {},
}

fn default_log_level() -> u32 {
    2
}

fn default_local_status() -> u32 {
    403
}

fn default_stream() -> String {
    "request".into()
}

fn default_grpc_service() -> String {
    "probe.Probe".into()
}

fn default_grpc_method() -> String {
    "Call".into()
}

fn default_as() -> String {
    "auto".into()
}

fn default_delta() -> i64 {
    1
}

pub fn parse(text: &[u8]) -> Result<Script, String> {
    if text.iter().all(u8::is_ascii_whitespace) {
        return Ok(Script::default());
    }
    let value: Value = serde_json::from_slice(text).map_err(|error| error.to_string())?;
    let Value::Object(object) = value else {
        return Err("the script is not a JSON object".into());
    };
    let mut script = Script::default();
    for (callback, rules) in object {
        if !callback.starts_with("on_") {
            return Err(format!(
                "unknown key {callback:?}: callbacks start with on_"
            ));
        }
        let rules = parse_rules(rules).map_err(|error| format!("{callback}: {error}"))?;
        script.uses_case |= rules.iter().any(|rule| rule.when.case.is_some());
        script.callbacks.insert(callback, rules);
    }
    Ok(script)
}

fn is_action(value: &Value) -> bool {
    value.get("op").is_some()
}

/// A callback's value: a rule, a list of rules, an action, or a list of actions (one rule).
fn parse_rules(value: Value) -> Result<Vec<Rule>, String> {
    match value {
        Value::Array(items) if items.iter().all(is_action) => Ok(vec![Rule {
            when: When::default(),
            actions: items
                .into_iter()
                .map(parse_step)
                .collect::<Result<_, _>>()?,
            result: None,
        }]),
        Value::Array(items) => items.into_iter().map(parse_rule).collect(),
        value if is_action(&value) => parse_rules(Value::Array(vec![value])),
        value => Ok(vec![parse_rule(value)?]),
    }
}

fn parse_rule(value: Value) -> Result<Rule, String> {
    let Value::Object(mut object) = value else {
        return Err("a rule is a JSON object".into());
    };
    let when = match object.remove("when") {
        Some(when) => serde_json::from_value(when).map_err(|error| format!("when: {error}"))?,
        None => When::default(),
    };
    let actions = match object.remove("do") {
        Some(Value::Array(items)) => items
            .into_iter()
            .map(parse_step)
            .collect::<Result<_, _>>()?,
        Some(item) => vec![parse_step(item)?],
        None => Vec::new(),
    };
    let result = object.remove("return");
    if let Some(key) = object.keys().next() {
        return Err(format!("unknown rule key {key:?} (when, do, return)"));
    }
    Ok(Rule {
        when,
        actions,
        result,
    })
}

fn parse_step(value: Value) -> Result<Step, String> {
    let Value::Object(mut object) = value else {
        return Err("an action is a JSON object with an op".into());
    };
    let label = match object.remove("label") {
        Some(Value::String(label)) => Some(label),
        Some(other) => return Err(format!("label {other} is not a string")),
        None => None,
    };
    let action = serde_json::from_value(Value::Object(object))
        .map_err(|error| format!("action: {error}"))?;
    Ok(Step { label, action })
}
