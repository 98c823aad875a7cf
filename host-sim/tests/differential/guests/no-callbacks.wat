;; A 0.2.1 guest with an ABI marker, an allocator and memory, and no callback at all: Envoy
;; calls only what a module exports, so requests pass through untouched.
(module
  (memory (export "memory") 1)
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 1024)))
