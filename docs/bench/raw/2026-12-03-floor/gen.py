import sys
# gen.py NFUNCS STMTS OUT [LOOPS] (from the repository root; then wat2wasm OUT.wat): trivial
# module + NFUNCS functions, each LOOPS loops one after the other (1 unless given), each loop
# with STMTS load/op/store statements.
n=int(sys.argv[1]); k=int(sys.argv[2]); out=sys.argv[3]; loops=int(sys.argv[4]) if len(sys.argv)>4 else 1
t=open('xtask/src/bench/trivial.wat').read().rstrip()
assert t.endswith(')')
funcs=[]
for f in range(n):
    body=[]
    for s in range(k):
        body.append(f"(local.set $acc (i32.add (i32.mul (local.get $acc) (i32.const {31+s+f})) (i32.load8_u offset={s} (local.get $i))))")
        body.append(f"(i32.store offset={(s*4)%4096+1024} (local.get $i) (i32.xor (local.get $acc) (i32.const {s*7+f})))")
    code=[]
    for l in range(loops):
        # Each loop after the first starts its counter again, under labels of its own.
        suffix='' if l == 0 else str(l)
        restart='' if l == 0 else '(local.set $i (i32.const 0))\n    '
        code.append(f'''{restart}(block $out{suffix} (loop $next{suffix}
      (br_if $out{suffix} (i32.ge_u (local.get $i) (local.get $n)))
      {" ".join(body)}
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $next{suffix})))''')
    code='\n    '.join(code)
    funcs.append(f'''  (func $f{f} (param $n i32) (result i32) (local $i i32) (local $acc i32)
    {code}
    (local.get $acc))''')
t=t[:-1]+"\n"+"\n".join(funcs)+"\n  (export \"keep\" (func $f0)))" if n else t
open(out.replace('.wasm','.wat'),'w').write(t)
