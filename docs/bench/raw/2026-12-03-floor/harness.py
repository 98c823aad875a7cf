#!/usr/bin/env python3
"""Envoy's memory per module, split by where it lives (a throw-away harness, kept with its results).

Usage: ROUNDS=7 python3 harness.py trivial.wasm other.wasm ...   (after `cargo xtask setup`;
CONFIG and ROOT_ID override the seed's plugin configuration and root_id). Each round starts a fresh Envoy 1.40 per module, in the order given (cases
alternate), with the seed's root_id and configuration, sends 800 warm-up requests over 8
connections, then reads /proc/<pid>/smaps and VmRSS. Prints medians above the first module:
VmRSS, anonymous memory (heaps: tcmalloc's, V8's), the JIT code mapping (rwx), and Envoy's own
binary (executable and read-only pages), and tcmalloc's account from the admin API's /memory
(live bytes, heap, free page heap, thread caches), in KiB, plus whether the add-header's header
came back.
"""
import json, os, re, statistics, subprocess, sys, tempfile, threading, time, http.client, urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..", ".."))
ENVOY = os.path.join(ROOT, "target", "tools", "bin", "envoy")
CONFIG = os.environ.get("CONFIG", '{"name":"hello","value":"hello details"}')
ROOT_ID = os.environ.get("ROOT_ID", "my_root_id")


def bootstrap(wasm):
    filters = [{"name": "envoy.filters.http.wasm", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
        "config": {"name": "bench", "root_id": ROOT_ID,
                   "vm_config": {"vm_id": "bench", "runtime": "envoy.wasm.runtime.v8",
                                 "code": {"local": {"filename": os.path.abspath(wasm)}}},
                   "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": CONFIG}}}},
               {"name": "envoy.filters.http.router", "typed_config": {
                   "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]
    any_port = {"socket_address": {"address": "127.0.0.1", "port_value": 0}}
    return {"admin": {"address": any_port}, "static_resources": {"listeners": [{"name": "l", "address": any_port, "filter_chains": [{"filters": [{
        "name": "envoy.filters.network.http_connection_manager", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
            "stat_prefix": "b", "route_config": {"virtual_hosts": [{"name": "d", "domains": ["*"], "routes": [{"match": {"prefix": "/"},
                "direct_response": {"status": 200, "body": {"inline_string": "ok\n"}}}]}]}, "http_filters": filters}}]}]}]}}


def split(pid):
    """Rss of /proc/<pid>/smaps summed by kind of mapping, KiB."""
    out, key = {}, None
    for line in open(f"/proc/{pid}/smaps"):
        parts = line.split()
        if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
            perms, path = parts[1], (parts[5] if len(parts) > 5 else "[anon]")
            if path.endswith("/envoy"):
                key = "envoy-x" if "x" in perms else "envoy-r"
            elif perms.startswith("rwx"):
                key = "jit"
            elif path.startswith("["):
                key = "anon"
            else:
                key = "lib"
        elif parts[0] == "Rss:":
            out[key] = out.get(key, 0) + int(parts[1])
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            out["VmRSS"] = int(line.split()[1])
    return out


def one(wasm, warm=800):
    work = tempfile.mkdtemp(prefix="floor")
    config, admin_path = os.path.join(work, "b.json"), os.path.join(work, "admin")
    json.dump(bootstrap(wasm), open(config, "w"))
    envoy = subprocess.Popen([ENVOY, "-c", config, "--use-dynamic-base-id", "--concurrency", os.environ.get("WORKERS", "1"),
                              "--admin-address-path", admin_path, "-l", "warning"],
                             stdout=open(os.path.join(work, "log"), "w"), stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 30
        while True:
            if envoy.poll() is not None or time.time() > deadline:
                raise SystemExit(f"envoy did not start for {wasm}: " + open(os.path.join(work, "log")).read()[-2000:])
            try:
                admin = open(admin_path).read().strip()
                listeners = json.load(urllib.request.urlopen(f"http://{admin}/listeners?format=json"))
                port = listeners["listener_statuses"][0]["local_address"]["socket_address"]["port_value"]
                break
            except Exception:
                time.sleep(0.02)

        def client(n):
            connection = http.client.HTTPConnection("127.0.0.1", port)
            for _ in range(n):
                connection.request("GET", "/")
                connection.getresponse().read()
        threads = [threading.Thread(target=client, args=(warm // 8,)) for _ in range(8)]
        [t.start() for t in threads]
        [t.join() for t in threads]
        time.sleep(0.3)
        connection = http.client.HTTPConnection("127.0.0.1", port)
        connection.request("GET", "/")
        response = connection.getresponse()
        response.read()
        measured = split(envoy.pid)
        # tcmalloc's own account (admin /memory, bytes): live, heap, free page heap, caches.
        memory = json.load(urllib.request.urlopen(f"http://{admin}/memory"))
        for key in ("allocated", "heap_size", "pageheap_free", "total_thread_cache"):
            measured[key] = int(memory.get(key, 0)) // 1024
        return measured, response.getheader("hello")
    finally:
        envoy.kill()
        envoy.wait()


if __name__ == "__main__":
    cases, rounds = sys.argv[1:], int(os.environ.get("ROUNDS", "5"))
    seen = {case: [] for case in cases}
    header = {}
    for _ in range(rounds):
        for case in cases:
            measured, header[case] = one(case)
            seen[case].append(measured)
    med = lambda case, key: statistics.median(m.get(key, 0) for m in seen[case])
    base = cases[0]
    print(f"n = {rounds} per module; KiB above {os.path.basename(base)} (medians), VmRSS in MiB (lowest-highest)")
    print(f"{'module':28s} {'bytes':>6s} {'VmRSS':>16s} {'+VmRSS':>7s} {'+anon':>6s} {'+jit':>5s} {'+envoy x':>8s} {'+envoy r':>8s} {'+alloc':>6s} {'+heap':>6s} {'+free':>6s} {'+cache':>6s}  header")
    for case in cases:
        rss = [m["VmRSS"] / 1024 for m in seen[case]]
        d = lambda key: int(med(case, key) - med(base, key))
        print(f"{os.path.basename(case):28s} {os.path.getsize(case):6d} {statistics.median(rss):7.2f} ({min(rss):.1f}-{max(rss):.1f})"
              f" {(med(case, 'VmRSS') - med(base, 'VmRSS')) / 1024:+7.2f} {d('anon'):+6d} {d('jit'):+5d} {d('envoy-x'):+8d} {d('envoy-r'):+8d}"
              f" {d('allocated'):+6d} {d('heap_size'):+6d} {d('pageheap_free'):+6d} {d('total_thread_cache'):+6d}  {header[case]!r}")
