#!/usr/bin/env python3
"""loops.py PER FUNCS OUT.wat: the trivial module plus FUNCS exported functions (never called),
each PER small loops one after the other (load, add, store, count, branch back). The same loops
in fewer, longer functions or more, shorter ones: what V8's compile costs by function shape."""
import sys

per, funcs, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
base = open("xtask/src/bench/trivial.wat").read().rstrip()
assert base.endswith(")")
functions = []
for f in range(funcs):
    loops = []
    for k in range(per):
        body = f"(i32.store (local.get $i) (i32.add (i32.load (local.get $i)) (i32.const {k + 1 + f})))"
        loops.append(f"(local.set $i (i32.const 0)) (loop $l{k} {body} "
                     "(local.set $i (i32.add (local.get $i) (i32.const 4))) "
                     f"(br_if $l{k} (i32.lt_u (local.get $i) (local.get $n))))")
    functions.append(f'(func $w{f} (export "w{f}") (param $n i32) (local $i i32) {" ".join(loops)})')
open(out, "w").write(base[:-1] + "\n" + "\n".join(functions) + ")\n")
