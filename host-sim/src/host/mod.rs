//! The host side: the state each simulated VM keeps (`state.rs`) and every host function the
//! guest can import, with the statuses Envoy returns (proxy-wasm-cpp-host `src/exports.cc` and
//! Envoy's `source/extensions/common/wasm/context.cc`).
//!
//! One module per family of host functions, each with a `register` that adds its functions to
//! the linker; [`add_to_linker`] calls them all. `call.rs` is the machinery they share: each
//! function is registered by `host!`, its body returns an `Answer` (the status and what the
//! trace records with it), and `run` records that answer once.
//!
//! Every guest pointer and length is treated as hostile: reads and writes go through
//! `memory.rs`, which uses checked arithmetic against the current memory size, and sizes are
//! capped.

mod buffers;
mod call;
mod context;
mod grpc;
mod http_call;
mod logging;
mod maps;
mod memory;
mod metrics;
mod properties;
mod shared_data;
mod shared_queue;
mod state;
mod stream;
mod timers;
mod wasi;
mod world;

use wasmtime::Linker;

use crate::abi;

pub(crate) use state::*;
pub use state::{ForeignFunction, GrpcCallout, HttpCallout, LocalReply, LogEntry, MetricValue};
pub(crate) use world::World;

/// Registers every import Envoy could provide (validation has already refused imports the
/// module's ABI version does not get).
pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    logging::register(linker)?;
    context::register(linker)?;
    stream::register(linker)?;
    properties::register(linker)?;
    shared_data::register(linker)?;
    shared_queue::register(linker)?;
    maps::register(linker)?;
    buffers::register(linker)?;
    http_call::register(linker)?;
    grpc::register(linker)?;
    timers::register(linker)?;
    metrics::register(linker)?;
    for module in abi::WASI_MODULES {
        wasi::register(linker, module)?;
    }
    Ok(())
}
