;; A 0.2.1 guest whose proxy_on_vm_start returns 0 (failure): does Envoy reject the
;; configuration, or run on_configure anyway?
(module
  (memory (export "memory") 1)
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 1024))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 0))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1)))
