//! filterkit-host-sim: an Envoy-faithful Proxy-Wasm host on wasmtime.
