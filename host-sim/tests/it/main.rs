//! host-sim's integration tests: one binary, one module per feature.

mod add_header;
mod attributes;
mod chain;
mod cli;
mod differential;
mod ext_authz;
mod filters;
mod guest;
mod hcm;
mod host_functions;
mod json_guard;
mod lifecycle;
mod loading;
mod local_rate_limit;
mod memory_safety;
mod scenario;
mod sdk_guest;
mod tcp;
mod test_api;
mod trace_faults;
mod workers;
