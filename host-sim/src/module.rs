//! Loading modules: one wasmtime engine per process, each module compiled once per process
//! (an in-process cache keyed by the bytes' SHA-256, over wasmtime's own on-disk cache), and
//! validated against what Envoy would provide.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use sha2::{Digest, Sha256};
use wasmtime::{Engine, ExternType, InstancePre, Linker, ValType};

use crate::Error;
use crate::abi::{self, AbiVersion};
use crate::host::{self, HostState};

/// The exports host-sim calls, with the signature Envoy expects: (name, params, returns a value).
pub(crate) const KNOWN_EXPORTS: &[(&str, usize, bool)] = &[
    ("_initialize", 0, false),
    ("_start", 0, false),
    ("__main_void", 0, true),
    ("main", 2, true),
    ("malloc", 1, true),
    ("proxy_on_memory_allocate", 1, true),
    ("proxy_on_context_create", 2, false),
    ("proxy_on_vm_start", 2, true),
    ("proxy_on_configure", 2, true),
    ("proxy_on_tick", 1, false),
    ("proxy_on_queue_ready", 2, false),
    ("proxy_on_request_body", 3, true),
    ("proxy_on_request_trailers", 2, true),
    ("proxy_on_response_body", 3, true),
    ("proxy_on_response_trailers", 2, true),
    ("proxy_on_log", 1, false),
    ("proxy_on_done", 1, true),
    ("proxy_on_delete", 1, false),
    ("proxy_on_http_call_response", 5, false),
    ("proxy_on_grpc_receive_initial_metadata", 3, false),
    ("proxy_on_grpc_receive", 3, false),
    ("proxy_on_grpc_receive_trailing_metadata", 3, false),
    ("proxy_on_grpc_close", 3, false),
    ("proxy_on_foreign_function", 3, false),
    ("proxy_on_new_connection", 1, true),
    ("proxy_on_downstream_data", 3, true),
    ("proxy_on_upstream_data", 3, true),
    ("proxy_on_downstream_connection_close", 2, false),
    ("proxy_on_upstream_connection_close", 2, false),
];

struct Inner {
    bytes_sha256: [u8; 32],
    abi: AbiVersion,
    pre: InstancePre<HostState>,
    canaries: Mutex<HashMap<[u8; 32], Result<(), crate::sim::Rejection>>>,
}

/// A compiled, validated Proxy-Wasm module. Cheap to clone; compiled once per process.
#[derive(Clone)]
pub struct Module {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Module {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Module")
            .field("abi", &self.inner.abi)
            .finish_non_exhaustive()
    }
}

/// The directory of wasmtime's on-disk compilation cache: `$FILTERKIT_SIM_CACHE_DIR`, else
/// `target/wasmtime-cache` of this workspace.
pub fn cache_directory() -> PathBuf {
    if let Some(dir) = std::env::var_os("FILTERKIT_SIM_CACHE_DIR") {
        return PathBuf::from(dir);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("wasmtime-cache")
}

pub(crate) struct Runtime {
    pub(crate) engine: Engine,
    pub(crate) linker: Linker<HostState>,
}

pub(crate) fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        let mut config = wasmtime::Config::new();
        config.consume_fuel(true);
        config.wasm_backtrace_max_frames(None);
        let mut cache_config = wasmtime::CacheConfig::new();
        cache_config.with_directory(cache_directory());
        // The on-disk cache is an optimization: without it, modules still compile.
        if let Ok(cache) = wasmtime::Cache::new(cache_config) {
            config.cache(Some(cache));
        }
        let engine = Engine::new(&config).expect("the wasmtime configuration is valid");
        let mut linker = Linker::new(&engine);
        host::add_to_linker(&mut linker).expect("host functions have distinct names");
        Runtime { engine, linker }
    })
}

fn cache() -> &'static Mutex<HashMap<[u8; 32], Module>> {
    static CACHE: OnceLock<Mutex<HashMap<[u8; 32], Module>>> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

impl Module {
    /// Loads a `.wasm` (or `.wat`) file, compiling it at most once per process.
    pub fn load(path: impl AsRef<Path>) -> Result<Module, Error> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| Error::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Module::from_bytes(&bytes)
    }

    /// Loads a module from its bytes (binary or text), compiling it at most once per process.
    pub fn from_bytes(bytes: &[u8]) -> Result<Module, Error> {
        let digest: [u8; 32] = Sha256::digest(bytes).into();
        if let Some(module) = cache().lock().expect("module cache lock").get(&digest) {
            return Ok(module.clone());
        }
        let module = Module::compile(bytes, digest)?;
        cache()
            .lock()
            .expect("module cache lock")
            .insert(digest, module.clone());
        Ok(module)
    }

    /// The ABI version the module declares.
    pub fn abi_version(&self) -> AbiVersion {
        self.inner.abi
    }

    /// The SHA-256 of the module's bytes.
    pub fn sha256(&self) -> [u8; 32] {
        self.inner.bytes_sha256
    }

    pub(crate) fn instance_pre(&self) -> &InstancePre<HostState> {
        &self.inner.pre
    }

    pub(crate) fn canary_result(
        &self,
        key: &[u8; 32],
    ) -> Option<Result<(), crate::sim::Rejection>> {
        self.inner
            .canaries
            .lock()
            .expect("canary cache lock")
            .get(key)
            .cloned()
    }

    pub(crate) fn store_canary(&self, key: [u8; 32], result: Result<(), crate::sim::Rejection>) {
        self.inner
            .canaries
            .lock()
            .expect("canary cache lock")
            .insert(key, result);
    }

    fn compile(bytes: &[u8], digest: [u8; 32]) -> Result<Module, Error> {
        let runtime = runtime();
        let module = wasmtime::Module::new(&runtime.engine, bytes)
            .map_err(|error| Error::Compile(format!("{error:#}")))?;
        let abi = module
            .exports()
            .find_map(|export| AbiVersion::from_marker(export.name()))
            .ok_or(Error::MissingAbiVersion)?;
        for import in module.imports() {
            let name = format!("{}.{}", import.module(), import.name());
            let ExternType::Func(func) = import.ty() else {
                return Err(Error::MissingImport(name));
            };
            let Some(expected) = abi::find_import(abi, import.module(), import.name()) else {
                return Err(Error::MissingImport(name));
            };
            let params: Vec<abi::ValType> = func
                .params()
                .map(|ty| match ty {
                    ValType::I64 => Ok(abi::ValType::I64),
                    ValType::I32 => Ok(abi::ValType::I32),
                    _ => Err(()),
                })
                .collect::<Result<_, _>>()
                .map_err(|()| Error::ImportTypeMismatch(name.clone()))?;
            let results: Vec<ValType> = func.results().collect();
            let results_ok = matches!(
                (expected.returns, results.as_slice()),
                (true, [ValType::I32]) | (false, [])
            );
            if params != expected.params || !results_ok {
                return Err(Error::ImportTypeMismatch(name));
            }
        }
        if !module
            .exports()
            .any(|export| export.name() == "memory" && matches!(export.ty(), ExternType::Memory(_)))
        {
            return Err(Error::MissingMemory);
        }
        let mut has_malloc = false;
        for export in module.exports() {
            let ExternType::Func(func) = export.ty() else {
                continue;
            };
            let expected = match export.name() {
                "proxy_on_request_headers" | "proxy_on_response_headers" => {
                    Some(if abi == AbiVersion::V0_1_0 {
                        (2, true)
                    } else {
                        (3, true)
                    })
                }
                name => KNOWN_EXPORTS
                    .iter()
                    .find(|(known, _, _)| *known == name)
                    .map(|(_, params, returns)| (*params, *returns)),
            };
            let Some((n_params, returns)) = expected else {
                continue;
            };
            let params_ok = func.params().len() == n_params
                && func.params().all(|ty| matches!(ty, ValType::I32));
            let results: Vec<ValType> = func.results().collect();
            let results_ok = matches!(
                (returns, results.as_slice()),
                (true, [ValType::I32]) | (false, [])
            );
            if !params_ok || !results_ok {
                return Err(Error::BadExportSignature(export.name().to_string()));
            }
            if matches!(export.name(), "malloc" | "proxy_on_memory_allocate") {
                has_malloc = true;
            }
        }
        if !has_malloc {
            return Err(Error::MissingMalloc);
        }
        let pre = runtime
            .linker
            .instantiate_pre(&module)
            .map_err(|error| Error::Compile(format!("{error:#}")))?;
        Ok(Module {
            inner: Arc::new(Inner {
                bytes_sha256: digest,
                abi,
                pre,
                canaries: Mutex::new(HashMap::new()),
            }),
        })
    }
}
