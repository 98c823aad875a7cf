;; add-header by hand: the two response headers of the seed's filter, from constants, with no
;; allocator, no configuration parsing and no logging. `cargo xtask bench` measures it as the
;; floor any SDK's add-header can approach in Envoy: what V8 and the ABI calls cost for this
;; job, without a language runtime.
(module
  (import "env" "proxy_add_header_map_value"
    (func $add_header (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "resp-header-demo")     ;; 16 bytes at 16
  (data (i32.const 32) "added by our filter")  ;; 19 bytes at 32
  (data (i32.const 64) "hello")                ;; 5 bytes at 64
  (data (i32.const 80) "hello details")        ;; 13 bytes at 80
  (func (export "proxy_abi_version_0_2_1"))
  ;; Never called: the module asks the host for nothing that returns bytes.
  (func (export "proxy_on_memory_allocate") (param i32) (result i32) i32.const 0)
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) i32.const 1)
  (func (export "proxy_on_configure") (param i32 i32) (result i32) i32.const 1)
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) i32.const 0)
  ;; Map type 2 is the response headers; a failed add is ignored, as add-header ignores it.
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
    (drop (call $add_header (i32.const 2) (i32.const 16) (i32.const 16) (i32.const 32) (i32.const 19)))
    (drop (call $add_header (i32.const 2) (i32.const 64) (i32.const 5) (i32.const 80) (i32.const 13)))
    i32.const 0)
  (func (export "proxy_on_done") (param i32) (result i32) i32.const 1)
  (func (export "proxy_on_delete") (param i32)))
