;; A 0.2.1 guest whose `_initialize` calls `proxy_set_tick_period_milliseconds`, which is not
;; among the imports Envoy allows while a VM starts (proxy-wasm-cpp-host `startVm`): the call
;; fails the start as a restricted callback, so no VM can be made of the module.
(module
  (import "env" "proxy_set_tick_period_milliseconds" (func $set_tick_period (param i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 1024))
  (func (export "_initialize") (drop (call $set_tick_period (i32.const 1000))))
  (func (export "proxy_on_context_create") (param i32 i32)))
