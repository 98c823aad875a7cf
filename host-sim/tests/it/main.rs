//! host-sim's integration tests: one binary, one module per feature.

mod add_header;
mod cli;
mod filters;
mod guest;
mod host_functions;
mod lifecycle;
mod loading;
mod memory_safety;
mod scenario;
mod tcp;
mod trace_faults;
mod workers;
