;; A 0.2.1 guest that, in proxy_on_request_headers, runs a loop of 200 million iterations
;; (Envoy has no instruction budget: the callback finishes), then grows its memory of 1 page by
;; 16384 pages (past Envoy's 1 GiB cap of 16384 pages: -1) and by 16383 pages (to exactly the
;; cap: the old size, 1). proxy_on_response_headers adds `x-loop: done` and `x-grow-past-cap`,
;; `x-grow-to-cap` (`refused` for -1, `grown` otherwise).
(module
  (import "env" "proxy_add_header_map_value"
    (func $add_header (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 100) "x-loop")
  (data (i32.const 110) "done")
  (data (i32.const 120) "x-grow-past-cap")
  (data (i32.const 140) "x-grow-to-cap")
  (data (i32.const 160) "refused")
  (data (i32.const 170) "grown")
  (global $looped (mut i32) (i32.const 0))
  (global $past_cap (mut i32) (i32.const 0))
  (global $to_cap (mut i32) (i32.const 0))
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 1024))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (local $n i32)
    (local.set $n (i32.const 200000000))
    (loop $spin
      (local.set $n (i32.sub (local.get $n) (i32.const 1)))
      (br_if $spin (local.get $n)))
    (global.set $looped (i32.const 1))
    (global.set $past_cap (memory.grow (i32.const 16384)))
    (global.set $to_cap (memory.grow (i32.const 16383)))
    (i32.const 0))
  ;; Adds response header `name` (at $name, $name_len) with `refused` or `grown` after $result.
  (func $add_grow_header (param $name i32) (param $name_len i32) (param $result i32)
    (if (i32.eq (local.get $result) (i32.const -1))
      (then (drop (call $add_header (i32.const 2) (local.get $name) (local.get $name_len)
                                     (i32.const 160) (i32.const 7))))
      (else (drop (call $add_header (i32.const 2) (local.get $name) (local.get $name_len)
                                     (i32.const 170) (i32.const 5))))))
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
    (if (global.get $looped)
      (then (drop (call $add_header (i32.const 2) (i32.const 100) (i32.const 6)
                                     (i32.const 110) (i32.const 4)))))
    (call $add_grow_header (i32.const 120) (i32.const 15) (global.get $past_cap))
    (call $add_grow_header (i32.const 140) (i32.const 13) (global.get $to_cap))
    (i32.const 0)))
