;; The trivial module plus one loop over 64 bytes of its memory, run once at configuration.
;; The least code that makes V8's optimising compiler (TurboFan; Envoy turns Liftoff off) take
;; the paths any real module needs: `cargo xtask bench` measures it to show the memory every
;; module with a loop pays, whatever its size (docs/benchmarks.md, "The floor").
(module
  (memory (export "memory") 1)
  (func (export "proxy_abi_version_0_2_1"))
  ;; Never called by a module that asks the host for nothing.
  (func (export "proxy_on_memory_allocate") (param i32) (result i32) i32.const 0)
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) i32.const 1)
  ;; Hashes bytes 0..n into bytes 1024..1024+n; returns the hash.
  (func $work (param $n i32) (result i32) (local $i i32) (local $acc i32)
    (block $out
      (loop $next
        (br_if $out (i32.ge_u (local.get $i) (local.get $n)))
        (local.set $acc
          (i32.add (i32.mul (local.get $acc) (i32.const 31)) (i32.load8_u (local.get $i))))
        (i32.store8 (i32.add (local.get $i) (i32.const 1024)) (local.get $acc))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (local.get $acc))
  (func (export "proxy_on_configure") (param i32 i32) (result i32)
    (drop (call $work (i32.const 64)))
    i32.const 1)
  ;; 0 = Continue.
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) i32.const 0)
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32) i32.const 0)
  (func (export "proxy_on_done") (param i32) (result i32) i32.const 1)
  (func (export "proxy_on_delete") (param i32)))
