;; A 0.2.1 guest that imports Envoy's own `env.envoy_resolve_dns` (registered by Envoy's
;; `Wasm::registerCallbacks`, not by the proxy-wasm ABI) and never calls it, and cpp-host's
;; Emscripten helpers `env.pthread_equal` and `env.emscripten_notify_memory_growth`: does the
;; module load? proxy_on_response_headers adds `x-pthread-equal: <pthread_equal(3, 3)>
;; <pthread_equal(3, 4)>` (digits) after notifying a memory growth.
(module
  (import "env" "envoy_resolve_dns" (func $resolve_dns (param i32 i32 i32) (result i32)))
  (import "env" "pthread_equal" (func $pthread_equal (param i32 i32) (result i32)))
  (import "env" "emscripten_notify_memory_growth" (func $notify_memory_growth (param i32)))
  (import "env" "proxy_add_header_map_value"
    (func $add_header (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 100) "x-pthread-equal")
  (data (i32.const 200) "0123456789")
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 1024))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
    (call $notify_memory_growth (i32.const 0))
    (i32.store8 (i32.const 300)
      (i32.load8_u (i32.add (i32.const 200) (call $pthread_equal (i32.const 3) (i32.const 3)))))
    (i32.store8 (i32.const 301) (i32.const 32))
    (i32.store8 (i32.const 302)
      (i32.load8_u (i32.add (i32.const 200) (call $pthread_equal (i32.const 3) (i32.const 4)))))
    (drop (call $add_header (i32.const 2) (i32.const 100) (i32.const 15) (i32.const 300) (i32.const 3)))
    (i32.const 0)))
