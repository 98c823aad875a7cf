;; A 0.2.1 guest that answers every request locally (403, body `no`) from
;; proxy_on_request_headers with extra headers given as serialized pairs: the first request's
;; pairs are malformed (a count of 5 and nothing after it), the second's are well formed but
;; followed by two more bytes, the third's well formed (`x-one: 1`). Malformed pairs are an empty list (proxy-wasm-cpp-host `PairsUtil::toPairs`).
(module
  (import "env" "proxy_send_local_response"
    (func $send_local_response (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 100) "no")
  ;; Malformed: the count 5, no sizes.
  (data (i32.const 200) "\05\00\00\00")
  ;; Well formed: 1 pair, sizes 5 and 1, then "x-one\00" "1\00".
  (data (i32.const 300) "\01\00\00\00\05\00\00\00\01\00\00\00x-one\001\00")
  (global $requests (mut i32) (i32.const 0))
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 1024))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (global.set $requests (i32.add (global.get $requests) (i32.const 1)))
    (if (i32.eq (global.get $requests) (i32.const 1))
      (then (drop (call $send_local_response (i32.const 403) (i32.const 0) (i32.const 0)
                    (i32.const 100) (i32.const 2) (i32.const 200) (i32.const 4) (i32.const -1)))
            (return (i32.const 1))))
    ;; The second request: the well-formed pairs and two bytes more.
    (if (i32.eq (global.get $requests) (i32.const 2))
      (then (drop (call $send_local_response (i32.const 403) (i32.const 0) (i32.const 0)
                    (i32.const 100) (i32.const 2) (i32.const 300) (i32.const 22) (i32.const -1)))
            (return (i32.const 1))))
    (drop (call $send_local_response (i32.const 403) (i32.const 0) (i32.const 0)
            (i32.const 100) (i32.const 2) (i32.const 300) (i32.const 20) (i32.const -1)))
    (i32.const 1)))
