import sys
# gen.py NFUNCS STMTS OUT (from the repository root; then wat2wasm OUT.wat): trivial module + NFUNCS functions, each a loop with STMTS load/op/store statements.
n=int(sys.argv[1]); k=int(sys.argv[2]); out=sys.argv[3]
t=open('xtask/src/bench/trivial.wat').read().rstrip()
assert t.endswith(')')
funcs=[]
for f in range(n):
    body=[]
    for s in range(k):
        body.append(f"(local.set $acc (i32.add (i32.mul (local.get $acc) (i32.const {31+s+f})) (i32.load8_u offset={s} (local.get $i))))")
        body.append(f"(i32.store offset={(s*4)%4096+1024} (local.get $i) (i32.xor (local.get $acc) (i32.const {s*7+f})))")
    funcs.append(f'''  (func $f{f} (param $n i32) (result i32) (local $i i32) (local $acc i32)
    (block $out (loop $next
      (br_if $out (i32.ge_u (local.get $i) (local.get $n)))
      {" ".join(body)}
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $next)))
    (local.get $acc))''')
t=t[:-1]+"\n"+"\n".join(funcs)+"\n  (export \"keep\" (func $f0)))" if n else t
open(out.replace('.wasm','.wat'),'w').write(t)
