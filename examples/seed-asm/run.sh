#!/usr/bin/env bash
# The seed article's workflow on this machine: publish add-header to a local registry,
# pull it back with every digest verified, and watch a real Envoy add the demo header.
# Needs `cargo xtask setup` (docker-registry, Envoy). Everything runs on 127.0.0.1 and is
# removed on exit.
set -euo pipefail
cd "$(dirname "$0")/../.."

command -v docker-registry >/dev/null || { echo "docker-registry is missing: run \`cargo xtask setup\`" >&2; exit 1; }
work=$(mktemp -d)
trap 'kill "${registry_pid:-0}" 2>/dev/null || true; rm -rf "$work"' EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$work/registry.yml" <<YAML
version: 0.1
storage:
  filesystem:
    rootdirectory: $work/storage
http:
  addr: 127.0.0.1:$port
YAML
docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
registry_pid=$!
for _ in $(seq 50); do curl -fs "http://127.0.0.1:$port/v2/" >/dev/null && break; sleep 0.1; done

image="127.0.0.1:$port/asm/asm-test:v0.1"
echo "== 1. build, package, write the ASMFilterDeployment, push to $image"
cargo xtask publish add-header --registry "$image" \
  --name details-v1-wasmfiltersample --labels app=details,version=v1 \
  --root-id my_root_id --parameters '{"name":"hello","value":"hello details"}'

echo "== 2. the ASMFilterDeployment"
cat target/deploy/details-v1-wasmfiltersample/asm/asmfilterdeployment.yaml

echo "== 3. pull it back, as ASM's node agent would"
cargo xtask pull "$image" "$work/pulled"

echo "== 4. Envoy with the pulled module, configured from the ASMFilterDeployment"
cargo xtask run add-header --once \
  --deployment target/deploy/details-v1-wasmfiltersample/asm/asmfilterdeployment.yaml \
  --wasm "$work/pulled/add-header.wasm"
