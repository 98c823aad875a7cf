;; A 0.2.1 guest that imports Envoy's own `env.envoy_resolve_dns` (registered by Envoy's
;; `Wasm::registerCallbacks`, not by the proxy-wasm ABI) and never calls it: does the module
;; load? Requests then pass through untouched.
(module
  (import "env" "envoy_resolve_dns" (func $resolve_dns (param i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 1024))
  (func (export "proxy_on_context_create") (param i32 i32)))
