//! filterkit-host-sim: an Envoy-faithful Proxy-Wasm host on wasmtime, for tests.
//!
//! It loads any Proxy-Wasm module (ABI 0.2.1, 0.2.0 or 0.1.0; built with filterkit, the
//! `proxy-wasm` crate or another SDK), refuses what Envoy would refuse, and drives it the way
//! Envoy does: VM start, the configuration canary, several plugins (root_ids) in one VM,
//! HTTP streams with Envoy's pause, buffering and local-reply semantics, TCP connections through
//! network filters ([`Sim::connection`], [`Sim::connection_chain`]), a virtual clock for
//! ticks and callout timeouts, callouts the test answers. Every host call is traced.
//!
//! It is the test oracle: it implements the ABI from the spec and Envoy's sources
//! (proxy-wasm-cpp-host, Envoy's `source/extensions/common/wasm/`) and never depends on
//! filterkit or the `proxy-wasm` crate. It runs one VM per simulated worker thread
//! ([`SimBuilder::workers`]) and Envoy's failure policies, FAIL_RELOAD included. It does not
//! implement Envoy's built-in foreign functions.
//!
//! Start reading at [`Module::load`] and [`Sim`]:
//!
//! ```no_run
//! use filterkit_host_sim::{Module, Outcome, Sim};
//!
//! let module = Module::load("target/filters/add-header.wasm")?;
//! let mut sim = Sim::builder(&module)
//!     .plugin("my_root_id", r#"{"name":"hello","value":"world"}"#)
//!     .build()?;
//! let mut stream = sim.stream("my_root_id")?;
//! stream.send_request_headers(&[(":method", "GET"), (":path", "/")], true);
//! let outcome = stream.send_response_headers(&[(":status", "200")], true);
//! assert_eq!(outcome, Outcome::Continue);
//! assert_eq!(stream.response_headers().get_str("hello"), Some("world"));
//! # Ok::<(), filterkit_host_sim::Error>(())
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod abi;
mod attributes;
mod connection;
pub mod exchange;
pub mod hcm;
mod headers;
mod host;
mod module;
mod property;
pub mod scenario;
mod sim;
mod trace;

pub use abi::{AbiVersion, Status};
pub use headers::{HeaderMap, parse_pairs, serialize_pairs};
pub use host::{ForeignFunction, GrpcCallout, HttpCallout, LocalReply, LogEntry, MetricValue};
pub use module::{Module, cache_directory};
pub use property::PropertyValue;
pub use sim::{
    Chain, Connection, FailurePolicy, Outcome, Pause, PluginConfig, Rejection, Side, Sim,
    SimBuilder, Stream,
};
pub use trace::Trace;

use std::path::PathBuf;

/// Everything that can go wrong loading a module or starting a simulation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The module file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// wasmtime refused the module.
    #[error("failed to compile Wasm module: {0}")]
    Compile(String),
    /// No `proxy_abi_version_*` export (Envoy: "Missing or unknown Proxy-Wasm ABI version").
    #[error("missing or unknown Proxy-Wasm ABI version")]
    MissingAbiVersion,
    /// The module imports something Envoy does not provide for its ABI version.
    #[error("failed to load Wasm module due to a missing import: {0}")]
    MissingImport(String),
    /// The module imports a function Envoy provides, with another signature.
    #[error("failed to load Wasm module due to an import type mismatch: {0}")]
    ImportTypeMismatch(String),
    /// An export host-sim calls has the wrong signature (Envoy: "Bad function signature").
    #[error("bad function signature for: {0}")]
    BadExportSignature(String),
    /// No exported `memory`.
    #[error("wasm module is missing memory")]
    MissingMemory,
    /// Neither `malloc` nor `proxy_on_memory_allocate` is exported.
    #[error("wasm module is missing malloc function")]
    MissingMalloc,
    /// `_initialize`, `main` or `_start` trapped.
    #[error("failed to start Wasm VM: {0}")]
    StartFailed(String),
    /// A plugin's root context refused to start (`proxy_on_vm_start` returned false) or
    /// `proxy_on_configure` returned false (or trapped): Envoy rejects the configuration.
    #[error("{0}")]
    ConfigRejected(Rejection),
    /// No worker with this index ([`Sim::use_worker`]).
    #[error("no worker {0}")]
    UnknownWorker(usize),
    /// No plugin with this root_id was configured.
    #[error("no plugin with root_id {0:?}")]
    UnknownRootId(String),
    /// A scenario file could not be parsed.
    #[error("invalid scenario: {0}")]
    Scenario(String),
}
