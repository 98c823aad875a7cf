#!/bin/sh
# The floor ladder (docs/benchmarks.md, "The floor, requirement by requirement"): add-header
# on the ABI by hand with each set of requirements, beside the shipped add-header; then the
# same 40 small loops in functions of different shapes. From the repository root, after
# `cargo xtask setup` and `cargo xtask build`.
set -e
here=docs/bench/raw/2026-12-03-ladder
harness=../../docs/bench/raw/2026-12-03-floor/harness.py
out=target/ladder
features="--enable-bulk-memory --enable-sign-ext --enable-mutable-globals --enable-nontrapping-float-to-int --enable-multivalue --enable-reference-types"
mkdir -p $out
wat2wasm xtask/src/bench/trivial.wat -o $out/trivial.wasm
wat2wasm xtask/src/bench/one_loop.wat -o $out/one_loop.wasm
wat2wasm xtask/src/bench/add_header.wat -o $out/wat_add_header.wasm
cp target/filters/add-header.wasm $out/add_header.wasm
for variant in constant:constant-warning bare:"" log:log config:config config_log:config,log \
    config_log_split:config,log,split; do
  name=${variant%%:*}
  cargo build -q --release --target wasm32-wasip1 --manifest-path $here/Cargo.toml \
    --target-dir target/ladder/cargo --no-default-features --features "${variant#*:}"
  wasm-opt -Oz --one-caller-inline-max-function-size 0 --always-inline-max-function-size 15 $features \
    --strip-debug target/ladder/cargo/wasm32-wasip1/release/ladder.wasm -o $out/abi_$name.wasm
done
# LOOPSxFUNCTIONS: the same 40 (or 20) one-statement loops, LOOPS to a function.
for shape in 40x1 20x1 10x4 4x10 1x40 1x20; do
  python3 docs/bench/raw/2026-12-03-floor/gen.py ${shape#*x} 1 $out/loops_$shape.wasm ${shape%x*}
  wat2wasm $out/loops_$shape.wat -o $out/loops_$shape.wasm
done
cd $out
ROUNDS=${ROUNDS:-9} python3 $harness trivial.wasm one_loop.wasm wat_add_header.wasm abi_constant.wasm \
  abi_bare.wasm abi_log.wasm abi_config.wasm abi_config_log.wasm abi_config_log_split.wasm add_header.wasm
ROUNDS=${ROUNDS:-9} python3 $harness trivial.wasm loops_40x1.wasm loops_20x1.wasm loops_10x4.wasm \
  loops_4x10.wasm loops_1x40.wasm loops_1x20.wasm
