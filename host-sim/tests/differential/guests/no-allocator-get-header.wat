;; A 0.2.1 guest that exports no allocator (neither malloc nor proxy_on_memory_allocate) and
;; asks for a request header, which the host must allocate guest memory to return. It answers
;; with a local reply whose body is the status digit ('0' + status).
(module
  (import "env" "proxy_get_header_map_value"
    (func $get (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_send_local_response"
    (func $reply (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "x-a")
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (i32.store8 (i32.const 100)
      (i32.add (i32.const 48)
        (call $get (i32.const 0) (i32.const 16) (i32.const 3) (i32.const 32) (i32.const 36))))
    (drop (call $reply (i32.const 200) (i32.const 0) (i32.const 0) (i32.const 100) (i32.const 1)
      (i32.const 0) (i32.const 0) (i32.const -1)))
    (i32.const 1)))
