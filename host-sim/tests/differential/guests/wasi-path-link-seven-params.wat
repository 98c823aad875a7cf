;; A 0.2.1 guest importing WASI's `path_link` with the 7 parameters of the WASI preview 1
;; signature; Envoy's (proxy-wasm-cpp-host `exports.h`) has 6, so the import does not match.
(module
  (import "wasi_snapshot_preview1" "path_link"
    (func $path_link (param i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 1024))
  (func (export "proxy_on_context_create") (param i32 i32)))
