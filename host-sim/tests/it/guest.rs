//! Tiny WAT guests built from a template: every env import of ABI 0.2.1, a bump allocator,
//! and callbacks whose bodies the test supplies.

use std::sync::{Mutex, OnceLock};

use filterkit_host_sim::abi::{ENV_IMPORTS, ValType, WASI_IMPORTS};
use filterkit_host_sim::{AbiVersion, Module};

/// The WAT import lines for every host function of `version` (env and wasi_snapshot_preview1).
pub fn imports(version: AbiVersion) -> String {
    let mut out = String::new();
    let render = |params: &[ValType]| {
        params
            .iter()
            .map(|ty| if *ty == ValType::I64 { " i64" } else { " i32" })
            .collect::<String>()
    };
    for import in ENV_IMPORTS
        .iter()
        .filter(|import| import.availability.includes(version))
    {
        let result = if import.returns { " (result i32)" } else { "" };
        out.push_str(&format!(
            "  (import \"env\" \"{0}\" (func ${0} (param{1}){2}))\n",
            import.name,
            render(import.params),
            result
        ));
    }
    for import in WASI_IMPORTS {
        let result = if import.returns { " (result i32)" } else { "" };
        out.push_str(&format!(
            "  (import \"wasi_snapshot_preview1\" \"{0}\" (func $wasi_{0} (param{1}){2}))\n",
            import.name,
            render(import.params),
            result
        ));
    }
    out
}

/// Exports that forward each host function, named `call_<import>`.
pub fn forwarders(version: AbiVersion) -> String {
    let mut out = String::new();
    let all = ENV_IMPORTS
        .iter()
        .filter(|import| import.availability.includes(version))
        .map(|import| (import, format!("${}", import.name), import.name.to_string()))
        .chain(WASI_IMPORTS.iter().map(|import| {
            (
                import,
                format!("$wasi_{}", import.name),
                format!("wasi_{}", import.name),
            )
        }));
    for (import, func, name) in all {
        let params: String = import
            .params
            .iter()
            .map(|ty| if *ty == ValType::I64 { " i64" } else { " i32" })
            .collect();
        let gets: String = (0..import.params.len())
            .map(|idx| format!(" local.get {idx}"))
            .collect();
        let result = if import.returns { " (result i32)" } else { "" };
        out.push_str(&format!(
            "  (func (export \"call_{name}\") (param{params}){result}{gets} call {func})\n"
        ));
    }
    out
}

/// The parts of a guest.
#[derive(Default, Clone)]
pub struct Guest {
    /// Extra module fields: functions, data segments, globals.
    pub fields: String,
    /// Body of `proxy_on_request_headers` (params $ctx $n $eos, result i32); default `i32.const 0`.
    pub request_headers: Option<String>,
    /// Body of `proxy_on_response_headers`.
    pub response_headers: Option<String>,
    /// Body of `proxy_on_configure` (params $ctx $size, result i32); default `i32.const 1`.
    pub configure: Option<String>,
    /// Body of `proxy_on_vm_start`; default `i32.const 1`.
    pub vm_start: Option<String>,
    /// Body of `proxy_on_request_body` (params $ctx $size $eos).
    pub request_body: Option<String>,
    /// Body of `proxy_on_response_body`.
    pub response_body: Option<String>,
    /// Body of `proxy_on_tick` (param $ctx).
    pub tick: Option<String>,
    /// Body of `proxy_on_http_call_response` (params $ctx $token $headers $body $trailers).
    pub http_call_response: Option<String>,
    /// Body of `proxy_on_log` (param $ctx).
    pub log: Option<String>,
    /// Body of `proxy_on_queue_ready` (params $ctx $token).
    pub queue_ready: Option<String>,
    /// Body of `proxy_on_grpc_receive` (params $ctx $token $size).
    pub grpc_receive: Option<String>,
    /// Body of `proxy_on_grpc_close` (params $ctx $token $status).
    pub grpc_close: Option<String>,
    /// Body of `proxy_on_request_trailers` (params $ctx $n).
    pub request_trailers: Option<String>,
    /// Leaves out the `call_<import>` exports, for guests whose callbacks call the imports
    /// directly: without them a guest compiles about four times faster.
    pub without_forwarders: bool,
}

impl Guest {
    /// The WAT text.
    pub fn wat(&self) -> String {
        let or = |body: &Option<String>, default: &str| {
            body.clone().unwrap_or_else(|| default.to_string())
        };
        format!(
            r#"(module
{preamble}
  (func (export "proxy_on_vm_start") (param $ctx i32) (param $size i32) (result i32) {vm_start})
  (func (export "proxy_on_configure") (param $ctx i32) (param $size i32) (result i32) {configure})
  (func (export "proxy_on_request_headers") (param $ctx i32) (param $n i32) (param $eos i32) (result i32) {request_headers})
  (func (export "proxy_on_response_headers") (param $ctx i32) (param $n i32) (param $eos i32) (result i32) {response_headers})
  (func (export "proxy_on_request_body") (param $ctx i32) (param $size i32) (param $eos i32) (result i32) {request_body})
  (func (export "proxy_on_response_body") (param $ctx i32) (param $size i32) (param $eos i32) (result i32) {response_body})
  (func (export "proxy_on_request_trailers") (param $ctx i32) (param $n i32) (result i32) {request_trailers})
  (func (export "proxy_on_tick") (param $ctx i32) {tick})
  (func (export "proxy_on_log") (param $ctx i32) {log})
  (func (export "proxy_on_done") (param $ctx i32) (result i32) i32.const 1)
  (func (export "proxy_on_queue_ready") (param $ctx i32) (param $token i32) {queue_ready})
  (func (export "proxy_on_grpc_receive") (param $ctx i32) (param $token i32) (param $size i32) {grpc_receive})
  (func (export "proxy_on_grpc_close") (param $ctx i32) (param $token i32) (param $status i32) {grpc_close})
  (func (export "proxy_on_http_call_response") (param $ctx i32) (param $token i32) (param $headers i32) (param $body i32) (param $trailers i32) {http_call_response})
{forwarders}
{fields}
)"#,
            preamble = preamble(),
            forwarders = if self.without_forwarders {
                String::new()
            } else {
                forwarders(AbiVersion::V0_2_1)
            },
            vm_start = or(&self.vm_start, "i32.const 1"),
            configure = or(&self.configure, "i32.const 1"),
            request_headers = or(&self.request_headers, "i32.const 0"),
            response_headers = or(&self.response_headers, "i32.const 0"),
            request_body = or(&self.request_body, "i32.const 0"),
            response_body = or(&self.response_body, "i32.const 0"),
            request_trailers = or(&self.request_trailers, "i32.const 0"),
            tick = or(&self.tick, ""),
            log = or(&self.log, ""),
            queue_ready = or(&self.queue_ready, ""),
            grpc_receive = or(&self.grpc_receive, ""),
            grpc_close = or(&self.grpc_close, ""),
            http_call_response = or(&self.http_call_response, ""),
            fields = self.fields,
        )
    }

    /// Compiles it (cached per text by host-sim's module cache).
    pub fn module(&self) -> Module {
        compile(&self.wat())
    }
}

/// What every test guest module starts with: the 0.2.1 imports, two pages of memory, a bump
/// allocator from 64 KiB, the ABI marker and an empty `proxy_on_context_create`.
pub fn preamble() -> String {
    format!(
        r#"{imports}
  (memory (export "memory") 2)
  (global $heap (mut i32) (i32.const 65536))
  (func (export "malloc") (param $size i32) (result i32) (local $at i32)
    global.get $heap local.set $at
    global.get $heap local.get $size i32.add global.set $heap
    local.get $at)
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_context_create") (param $ctx i32) (param $parent i32))"#,
        imports = imports(AbiVersion::V0_2_1)
    )
}

/// Compiles a test guest's WAT text (cached per text by host-sim's module cache).
pub fn compile(wat: &str) -> Module {
    let wasm = wat::parse_str(wat).expect("test guest is valid WAT");
    Module::from_bytes(&wasm).expect("test guest loads")
}

/// A guest that only forwards host functions (for memory-safety tests), compiled once.
pub fn forwarding_module() -> Module {
    static MODULE: OnceLock<Mutex<Option<Module>>> = OnceLock::new();
    let slot = MODULE.get_or_init(Default::default);
    let mut slot = slot.lock().unwrap();
    slot.get_or_insert_with(|| Guest::default().module())
        .clone()
}

/// A WAT data segment holding `text` at `offset`.
pub fn data(offset: u32, text: &str) -> String {
    let escaped: String = text.bytes().map(|byte| format!("\\{byte:02x}")).collect();
    format!("  (data (i32.const {offset}) \"{escaped}\")\n")
}
