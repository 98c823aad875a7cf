//! The Proxy-Wasm ABI as Envoy implements it: statuses, enums, and which imports Envoy
//! registers for each ABI version (proxy-wasm-cpp-host `include/proxy-wasm/exports.h` and
//! `WasmBase::registerCallbacks` in `src/wasm.cc`).

use std::fmt;

/// A host function's result code (`WasmResult` in proxy-wasm-cpp-host).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum Status {
    /// `OK`.
    Ok = 0,
    /// `NOT_FOUND`.
    NotFound = 1,
    /// `BAD_ARGUMENT`.
    BadArgument = 2,
    /// `SERIALIZATION_FAILURE`.
    SerializationFailure = 3,
    /// `PARSE_FAILURE`.
    ParseFailure = 4,
    /// `BAD_EXPRESSION`.
    BadExpression = 5,
    /// `INVALID_MEMORY_ACCESS`.
    InvalidMemoryAccess = 6,
    /// `EMPTY`.
    Empty = 7,
    /// `CAS_MISMATCH`.
    CasMismatch = 8,
    /// `RESULT_MISMATCH`.
    ResultMismatch = 9,
    /// `INTERNAL_FAILURE`.
    InternalFailure = 10,
    /// `BROKEN_CONNECTION`.
    BrokenConnection = 11,
    /// `UNIMPLEMENTED`.
    Unimplemented = 12,
}

impl Status {
    /// The spec's spelling, e.g. `INVALID_MEMORY_ACCESS`.
    pub fn name(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::NotFound => "NOT_FOUND",
            Status::BadArgument => "BAD_ARGUMENT",
            Status::SerializationFailure => "SERIALIZATION_FAILURE",
            Status::ParseFailure => "PARSE_FAILURE",
            Status::BadExpression => "BAD_EXPRESSION",
            Status::InvalidMemoryAccess => "INVALID_MEMORY_ACCESS",
            Status::Empty => "EMPTY",
            Status::CasMismatch => "CAS_MISMATCH",
            Status::ResultMismatch => "RESULT_MISMATCH",
            Status::InternalFailure => "INTERNAL_FAILURE",
            Status::BrokenConnection => "BROKEN_CONNECTION",
            Status::Unimplemented => "UNIMPLEMENTED",
        }
    }

    /// The status with this code, if any.
    pub fn from_code(code: u32) -> Option<Status> {
        Some(match code {
            0 => Status::Ok,
            1 => Status::NotFound,
            2 => Status::BadArgument,
            3 => Status::SerializationFailure,
            4 => Status::ParseFailure,
            5 => Status::BadExpression,
            6 => Status::InvalidMemoryAccess,
            7 => Status::Empty,
            8 => Status::CasMismatch,
            9 => Status::ResultMismatch,
            10 => Status::InternalFailure,
            11 => Status::BrokenConnection,
            12 => Status::Unimplemented,
            _ => return None,
        })
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The ABI version a module declares by exporting `proxy_abi_version_*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AbiVersion {
    /// `proxy_abi_version_0_1_0`.
    V0_1_0,
    /// `proxy_abi_version_0_2_0`.
    V0_2_0,
    /// `proxy_abi_version_0_2_1`.
    V0_2_1,
}

impl AbiVersion {
    /// The marker export naming this version.
    pub fn marker(self) -> &'static str {
        match self {
            AbiVersion::V0_1_0 => "proxy_abi_version_0_1_0",
            AbiVersion::V0_2_0 => "proxy_abi_version_0_2_0",
            AbiVersion::V0_2_1 => "proxy_abi_version_0_2_1",
        }
    }

    /// The version whose marker this export name is.
    pub fn from_marker(name: &str) -> Option<AbiVersion> {
        [AbiVersion::V0_1_0, AbiVersion::V0_2_0, AbiVersion::V0_2_1]
            .into_iter()
            .find(|version| version.marker() == name)
    }
}

/// Header map types (`WasmHeaderMapType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MapType {
    /// 0.
    RequestHeaders,
    /// 1.
    RequestTrailers,
    /// 2.
    ResponseHeaders,
    /// 3.
    ResponseTrailers,
    /// 4.
    GrpcReceiveInitialMetadata,
    /// 5.
    GrpcReceiveTrailingMetadata,
    /// 6.
    HttpCallResponseHeaders,
    /// 7.
    HttpCallResponseTrailers,
}

impl MapType {
    /// The map type with this code; Envoy answers BAD_ARGUMENT for others.
    pub fn from_code(code: u32) -> Option<MapType> {
        Some(match code {
            0 => MapType::RequestHeaders,
            1 => MapType::RequestTrailers,
            2 => MapType::ResponseHeaders,
            3 => MapType::ResponseTrailers,
            4 => MapType::GrpcReceiveInitialMetadata,
            5 => MapType::GrpcReceiveTrailingMetadata,
            6 => MapType::HttpCallResponseHeaders,
            7 => MapType::HttpCallResponseTrailers,
            _ => return None,
        })
    }

    /// A short name for traces.
    pub fn name(self) -> &'static str {
        match self {
            MapType::RequestHeaders => "request_headers",
            MapType::RequestTrailers => "request_trailers",
            MapType::ResponseHeaders => "response_headers",
            MapType::ResponseTrailers => "response_trailers",
            MapType::GrpcReceiveInitialMetadata => "grpc_initial_metadata",
            MapType::GrpcReceiveTrailingMetadata => "grpc_trailing_metadata",
            MapType::HttpCallResponseHeaders => "http_call_response_headers",
            MapType::HttpCallResponseTrailers => "http_call_response_trailers",
        }
    }
}

/// Buffer types (`WasmBufferType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BufferType {
    /// 0.
    HttpRequestBody,
    /// 1.
    HttpResponseBody,
    /// 2.
    DownstreamData,
    /// 3.
    UpstreamData,
    /// 4.
    HttpCallResponseBody,
    /// 5.
    GrpcReceiveBuffer,
    /// 6.
    VmConfiguration,
    /// 7.
    PluginConfiguration,
    /// 8.
    CallData,
}

impl BufferType {
    /// The buffer type with this code; Envoy answers BAD_ARGUMENT for others.
    pub fn from_code(code: u32) -> Option<BufferType> {
        Some(match code {
            0 => BufferType::HttpRequestBody,
            1 => BufferType::HttpResponseBody,
            2 => BufferType::DownstreamData,
            3 => BufferType::UpstreamData,
            4 => BufferType::HttpCallResponseBody,
            5 => BufferType::GrpcReceiveBuffer,
            6 => BufferType::VmConfiguration,
            7 => BufferType::PluginConfiguration,
            8 => BufferType::CallData,
            _ => return None,
        })
    }

    /// A short name for traces.
    pub fn name(self) -> &'static str {
        match self {
            BufferType::HttpRequestBody => "request_body",
            BufferType::HttpResponseBody => "response_body",
            BufferType::DownstreamData => "downstream_data",
            BufferType::UpstreamData => "upstream_data",
            BufferType::HttpCallResponseBody => "http_call_response_body",
            BufferType::GrpcReceiveBuffer => "grpc_receive_buffer",
            BufferType::VmConfiguration => "vm_configuration",
            BufferType::PluginConfiguration => "plugin_configuration",
            BufferType::CallData => "call_data",
        }
    }
}

/// A Wasm value type in an import signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValType {
    /// i32 (a `Word` in proxy-wasm-cpp-host).
    I32,
    /// i64 (`int64_t` / `uint64_t`).
    I64,
}

/// Where a host function is registered: which module, and for which ABI versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Availability {
    /// Every version (`FOR_ALL_HOST_FUNCTIONS`, WASI, `env.pthread_equal`, ...).
    All,
    /// Only ABI 0.1.0 (`proxy_get_configuration`, `proxy_continue_request`, ...).
    Only010,
    /// ABI 0.2.0 and 0.2.1 (`proxy_continue_stream`, `proxy_close_stream`).
    Since020,
    /// Only ABI 0.2.1 (`proxy_get_log_level`).
    Only021,
}

impl Availability {
    /// Whether Envoy registers the function for this version.
    pub fn includes(self, version: AbiVersion) -> bool {
        match self {
            Availability::All => true,
            Availability::Only010 => version == AbiVersion::V0_1_0,
            Availability::Since020 => version != AbiVersion::V0_1_0,
            Availability::Only021 => version == AbiVersion::V0_2_1,
        }
    }
}

/// One host import Envoy provides.
#[derive(Debug, Clone, Copy)]
pub struct Import {
    /// `env`, `wasi_snapshot_preview1` or `wasi_unstable`.
    pub module: &'static str,
    /// The import name.
    pub name: &'static str,
    /// Parameter types.
    pub params: &'static [ValType],
    /// Whether it returns an i32 (every function but `proc_exit` and
    /// `emscripten_notify_memory_growth`).
    pub returns: bool,
    /// Which ABI versions get it.
    pub availability: Availability,
}

use ValType::{I32, I64};

const fn env(name: &'static str, params: &'static [ValType], availability: Availability) -> Import {
    Import {
        module: "env",
        name,
        params,
        returns: true,
        availability,
    }
}

/// Every `env` import Envoy registers (proxy-wasm-cpp-host `exports.h`, plus Envoy's own
/// `envoy_resolve_dns`).
pub const ENV_IMPORTS: &[Import] = &[
    env("proxy_log", &[I32, I32, I32], Availability::All),
    env("proxy_get_status", &[I32, I32, I32], Availability::All),
    env(
        "proxy_set_property",
        &[I32, I32, I32, I32],
        Availability::All,
    ),
    env(
        "proxy_get_property",
        &[I32, I32, I32, I32],
        Availability::All,
    ),
    env(
        "proxy_send_local_response",
        &[I32, I32, I32, I32, I32, I32, I32, I32],
        Availability::All,
    ),
    env(
        "proxy_get_shared_data",
        &[I32, I32, I32, I32, I32],
        Availability::All,
    ),
    env(
        "proxy_set_shared_data",
        &[I32, I32, I32, I32, I32],
        Availability::All,
    ),
    env(
        "proxy_register_shared_queue",
        &[I32, I32, I32],
        Availability::All,
    ),
    env(
        "proxy_resolve_shared_queue",
        &[I32, I32, I32, I32, I32],
        Availability::All,
    ),
    env(
        "proxy_dequeue_shared_queue",
        &[I32, I32, I32],
        Availability::All,
    ),
    env(
        "proxy_enqueue_shared_queue",
        &[I32, I32, I32],
        Availability::All,
    ),
    env(
        "proxy_get_header_map_value",
        &[I32, I32, I32, I32, I32],
        Availability::All,
    ),
    env(
        "proxy_add_header_map_value",
        &[I32, I32, I32, I32, I32],
        Availability::All,
    ),
    env(
        "proxy_replace_header_map_value",
        &[I32, I32, I32, I32, I32],
        Availability::All,
    ),
    env(
        "proxy_remove_header_map_value",
        &[I32, I32, I32],
        Availability::All,
    ),
    env(
        "proxy_get_header_map_pairs",
        &[I32, I32, I32],
        Availability::All,
    ),
    env(
        "proxy_set_header_map_pairs",
        &[I32, I32, I32],
        Availability::All,
    ),
    env("proxy_get_header_map_size", &[I32, I32], Availability::All),
    env(
        "proxy_get_buffer_status",
        &[I32, I32, I32],
        Availability::All,
    ),
    env(
        "proxy_get_buffer_bytes",
        &[I32, I32, I32, I32, I32],
        Availability::All,
    ),
    env(
        "proxy_set_buffer_bytes",
        &[I32, I32, I32, I32, I32],
        Availability::All,
    ),
    env(
        "proxy_http_call",
        &[I32, I32, I32, I32, I32, I32, I32, I32, I32, I32],
        Availability::All,
    ),
    env(
        "proxy_grpc_call",
        &[I32, I32, I32, I32, I32, I32, I32, I32, I32, I32, I32, I32],
        Availability::All,
    ),
    env(
        "proxy_grpc_stream",
        &[I32, I32, I32, I32, I32, I32, I32, I32, I32],
        Availability::All,
    ),
    env("proxy_grpc_close", &[I32], Availability::All),
    env("proxy_grpc_cancel", &[I32], Availability::All),
    env("proxy_grpc_send", &[I32, I32, I32, I32], Availability::All),
    env(
        "proxy_set_tick_period_milliseconds",
        &[I32],
        Availability::All,
    ),
    env(
        "proxy_get_current_time_nanoseconds",
        &[I32],
        Availability::All,
    ),
    env(
        "proxy_define_metric",
        &[I32, I32, I32, I32],
        Availability::All,
    ),
    env("proxy_increment_metric", &[I32, I64], Availability::All),
    env("proxy_record_metric", &[I32, I64], Availability::All),
    env("proxy_get_metric", &[I32, I32], Availability::All),
    env("proxy_set_effective_context", &[I32], Availability::All),
    env("proxy_done", &[], Availability::All),
    env(
        "proxy_call_foreign_function",
        &[I32, I32, I32, I32, I32, I32],
        Availability::All,
    ),
    env(
        "proxy_get_configuration",
        &[I32, I32],
        Availability::Only010,
    ),
    env("proxy_continue_request", &[], Availability::Only010),
    env("proxy_continue_response", &[], Availability::Only010),
    env("proxy_clear_route_cache", &[], Availability::Only010),
    env("proxy_continue_stream", &[I32], Availability::Since020),
    env("proxy_close_stream", &[I32], Availability::Since020),
    env("proxy_get_log_level", &[I32], Availability::Only021),
    // Envoy's own, registered by `Wasm::registerCallbacks` in Envoy's `wasm.cc`.
    env("envoy_resolve_dns", &[I32, I32, I32], Availability::All),
    env("pthread_equal", &[I32, I32], Availability::All),
    Import {
        module: "env",
        name: "emscripten_notify_memory_growth",
        params: &[I32],
        returns: false,
        availability: Availability::All,
    },
];

const fn wasi(name: &'static str, params: &'static [ValType]) -> Import {
    Import {
        module: "",
        name,
        params,
        returns: true,
        availability: Availability::All,
    }
}

/// Envoy's WASI functions (`FOR_ALL_WASI_FUNCTIONS`), registered under both
/// `wasi_snapshot_preview1` and `wasi_unstable` (module left empty here). The signatures are
/// Envoy's, which differ from WASI's for `path_link` (6 parameters, WASI has 7) and
/// `path_symlink` (4 parameters, WASI has 5).
pub const WASI_IMPORTS: &[Import] = &[
    wasi("fd_write", &[I32, I32, I32, I32]),
    wasi("fd_read", &[I32, I32, I32, I32]),
    wasi("fd_seek", &[I32, I64, I32, I32]),
    wasi("fd_close", &[I32]),
    wasi("fd_fdstat_get", &[I32, I32]),
    wasi("fd_fdstat_set_flags", &[I32, I32]),
    wasi("fd_fdstat_set_rights", &[I32, I64, I64]),
    wasi("environ_get", &[I32, I32]),
    wasi("environ_sizes_get", &[I32, I32]),
    wasi("args_get", &[I32, I32]),
    wasi("args_sizes_get", &[I32, I32]),
    wasi("clock_time_get", &[I32, I64, I32]),
    wasi("clock_res_get", &[I32, I32]),
    wasi("fd_advise", &[I32, I64, I64, I32]),
    wasi("fd_allocate", &[I32, I64, I64]),
    wasi("fd_datasync", &[I32]),
    wasi("fd_filestat_set_size", &[I32, I64]),
    wasi("fd_filestat_set_times", &[I32, I64, I64, I32]),
    wasi("fd_pread", &[I32, I32, I32, I64, I32]),
    wasi("fd_pwrite", &[I32, I32, I32, I64, I32]),
    wasi("fd_readdir", &[I32, I32, I32, I64, I32]),
    wasi("fd_renumber", &[I32, I32]),
    wasi("fd_sync", &[I32]),
    wasi("fd_tell", &[I32, I32]),
    wasi("path_create_directory", &[I32, I32, I32]),
    wasi(
        "path_filestat_set_times",
        &[I32, I32, I32, I32, I64, I64, I32],
    ),
    wasi("path_link", &[I32, I32, I32, I32, I32, I32]),
    wasi("path_readlink", &[I32, I32, I32, I32, I32, I32]),
    wasi("path_remove_directory", &[I32, I32, I32]),
    wasi("path_rename", &[I32, I32, I32, I32, I32, I32]),
    wasi("path_symlink", &[I32, I32, I32, I32]),
    wasi("path_unlink_file", &[I32, I32, I32]),
    wasi("sock_accept", &[I32, I32, I32]),
    wasi("sock_recv", &[I32, I32, I32, I32, I32, I32]),
    wasi("sock_send", &[I32, I32, I32, I32, I32]),
    wasi("sock_shutdown", &[I32, I32]),
    wasi("random_get", &[I32, I32]),
    wasi("sched_yield", &[]),
    wasi("poll_oneoff", &[I32, I32, I32, I32]),
    Import {
        module: "",
        name: "proc_exit",
        params: &[I32],
        returns: false,
        availability: Availability::All,
    },
    wasi("path_open", &[I32, I32, I32, I32, I32, I64, I64, I32, I32]),
    wasi("fd_prestat_get", &[I32, I32]),
    wasi("fd_prestat_dir_name", &[I32, I32, I32]),
    wasi("path_filestat_get", &[I32, I32, I32, I32, I32]),
    wasi("fd_filestat_get", &[I32, I32]),
];

/// The two module names Envoy registers its WASI functions under.
pub const WASI_MODULES: [&str; 2] = ["wasi_snapshot_preview1", "wasi_unstable"];

/// The import Envoy provides under `module.name` for `version`, if any.
pub fn find_import(version: AbiVersion, module: &str, name: &str) -> Option<Import> {
    if module == "env" {
        return ENV_IMPORTS
            .iter()
            .find(|import| import.name == name && import.availability.includes(version))
            .copied();
    }
    if WASI_MODULES.contains(&module) {
        return WASI_IMPORTS
            .iter()
            .find(|import| import.name == name)
            .map(|import| Import {
                module: if module == WASI_MODULES[0] {
                    WASI_MODULES[0]
                } else {
                    WASI_MODULES[1]
                },
                ..*import
            });
    }
    None
}

/// Host functions callable while the VM starts (`_initialize`, `main`): Envoy's
/// `setRestrictedCallback` list in `WasmBase::startVm`; anything else traps with
/// `restricted_callback`.
pub fn allowed_during_start(module: &str, name: &str) -> bool {
    if module == "env" {
        return matches!(name, "emscripten_notify_memory_growth" | "proxy_log");
    }
    !matches!(
        name,
        "fd_read" | "fd_seek" | "fd_close" | "sched_yield" | "proc_exit" | "path_open"
    )
}

/// Filter header statuses (`FilterHeadersStatus`).
pub mod headers_status {
    /// `Continue`.
    pub const CONTINUE: u32 = 0;
    /// `StopIteration`.
    pub const STOP_ITERATION: u32 = 1;
    /// `ContinueAndEndStream`.
    pub const CONTINUE_AND_END_STREAM: u32 = 2;
    /// `StopAllIterationAndBuffer`.
    pub const STOP_ALL_ITERATION_AND_BUFFER: u32 = 3;
    /// `StopAllIterationAndWatermark`.
    pub const STOP_ALL_ITERATION_AND_WATERMARK: u32 = 4;
}

/// Filter data statuses (`FilterDataStatus`).
pub mod data_status {
    /// `Continue`.
    pub const CONTINUE: u32 = 0;
    /// `StopIterationAndBuffer`.
    pub const STOP_ITERATION_AND_BUFFER: u32 = 1;
    /// `StopIterationAndWatermark`.
    pub const STOP_ITERATION_AND_WATERMARK: u32 = 2;
    /// `StopIterationNoBuffer`.
    pub const STOP_ITERATION_NO_BUFFER: u32 = 3;
}
