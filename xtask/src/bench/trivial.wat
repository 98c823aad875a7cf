;; The smallest module Envoy runs as an HTTP filter: ABI 0.2.1, an allocator, and callbacks
;; that do nothing. `cargo xtask bench` measures it to separate what any Wasm filter costs in
;; Envoy (V8, the VM per worker) from what a module's own size adds.
(module
  (memory (export "memory") 1)
  (func (export "proxy_abi_version_0_2_1"))
  ;; Never called by a module that asks the host for nothing.
  (func (export "proxy_on_memory_allocate") (param i32) (result i32) i32.const 0)
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) i32.const 1)
  (func (export "proxy_on_configure") (param i32 i32) (result i32) i32.const 1)
  ;; 0 = Continue.
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) i32.const 0)
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32) i32.const 0)
  (func (export "proxy_on_done") (param i32) (result i32) i32.const 1)
  (func (export "proxy_on_delete") (param i32)))
