;; A minimal Proxy-Wasm guest for the differential scenarios: at VM start it defines the
;; counter `requests` and the gauge `request_headers`; each request's headers callback
;; increments the counter and records how many request headers the host handed over.
(module
  (import "env" "proxy_define_metric" (func $define_metric (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_increment_metric" (func $increment_metric (param i32 i64) (result i32)))
  (import "env" "proxy_record_metric" (func $record_metric (param i32 i64) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "requests")
  (data (i32.const 32) "request_headers")
  ;; Metric ids live at 64 (counter) and 68 (gauge); host allocations start at 1024.
  (global $heap (mut i32) (i32.const 1024))
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param $size i32) (result i32)
    (local $start i32)
    (local.set $start (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $size)))
    (local.get $start))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32)
    (drop (call $define_metric (i32.const 0) (i32.const 16) (i32.const 8) (i32.const 64)))
    (drop (call $define_metric (i32.const 1) (i32.const 32) (i32.const 15) (i32.const 68)))
    (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32)
    (i32.const 1))
  (func (export "proxy_on_request_headers") (param $context_id i32) (param $n_headers i32) (param $end_of_stream i32) (result i32)
    (drop (call $increment_metric (i32.load (i32.const 64)) (i64.const 1)))
    (drop (call $record_metric (i32.load (i32.const 68)) (i64.extend_i32_u (local.get $n_headers))))
    (i32.const 0)))
