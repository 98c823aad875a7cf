#!/usr/bin/env python3
# Quick bisect harness: RSS of Envoy after warm-up for several modules, alternated rounds.
import json, os, subprocess, sys, time, tempfile, http.client, statistics, threading, urllib.request
ENVOY = "/work/wt/lean/target/tools/bin/envoy"
CONFIG = '{"name":"hello","value":"hello details"}'
def bootstrap(wasm):
    filters = []
    if wasm:
        filters.append({"name": "envoy.filters.http.wasm", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {"name": "bench", "root_id": "my_root_id",
                "vm_config": {"vm_id": "bench", "runtime": "envoy.wasm.runtime.v8",
                    "code": {"local": {"filename": os.path.abspath(wasm)}}},
                "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": CONFIG}}}})
    filters.append({"name": "envoy.filters.http.router", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}})
    z = {"socket_address": {"address": "127.0.0.1", "port_value": 0}}
    return {"admin": {"address": z}, "static_resources": {"listeners": [{"name": "l", "address": z, "filter_chains": [{"filters": [{
        "name": "envoy.filters.network.http_connection_manager", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "b", "route_config": {"virtual_hosts": [{"name": "d", "domains": ["*"], "routes": [{"match": {"prefix": "/"},
        "direct_response": {"status": 200, "body": {"inline_string": "ok\n"}}}]}]}, "http_filters": filters}}]}]}]}}
MEM={}
def rss(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS"): return int(line.split()[1])
def one(wasm, workers, warm):
    d = tempfile.mkdtemp(prefix="fp")
    b = os.path.join(d, "b.json"); json.dump(bootstrap(wasm), open(b, "w"))
    ap = os.path.join(d, "admin")
    t0 = time.time()
    p = subprocess.Popen([ENVOY, "-c", b, "--use-dynamic-base-id", "--concurrency", str(workers), "--admin-address-path", ap, "-l", "warning"],
        stdout=open(os.path.join(d, "log"), "w"), stderr=subprocess.STDOUT)
    try:
        port = None
        while time.time() - t0 < 30:
            if p.poll() is not None: raise SystemExit("envoy exited: " + open(os.path.join(d, "log")).read()[-2000:])
            if os.path.exists(ap) and os.path.getsize(ap) > 0:
                try:
                    admin = open(ap).read().strip()
                    ls = json.load(urllib.request.urlopen(f"http://{admin}/listeners?format=json"))
                    port = ls["listener_statuses"][0]["local_address"]["socket_address"]["port_value"]
                    break
                except Exception: pass
            time.sleep(0.02)
        ready = time.time() - t0
        def client(n):
            c = http.client.HTTPConnection("127.0.0.1", port)
            for _ in range(n):
                c.request("GET", "/"); r = c.getresponse(); r.read()
                pass
        ts = [threading.Thread(target=client, args=(warm // 8,)) for _ in range(8)]
        [t.start() for t in ts]; [t.join() for t in ts]
        time.sleep(0.3)
        mem = json.load(urllib.request.urlopen(f"http://{admin}/memory"))
        global MEM; MEM.setdefault(wasm, []).append({k: int(v)//1024 for k, v in mem.items() if str(v).isdigit()})
        return rss(p.pid), ready, r_hdr(port)
    finally:
        p.kill(); p.wait()
def r_hdr(port):
    c = http.client.HTTPConnection("127.0.0.1", port); c.request("GET", "/"); r = c.getresponse(); r.read()
    return r.getheader("hello")
if __name__ == "__main__":
    rounds = int(os.environ.get("ROUNDS", "5")); workers = int(os.environ.get("WORKERS", "1")); warm = int(os.environ.get("WARM", "800"))
    cases = sys.argv[1:]
    res = {c: [] for c in cases}
    for r in range(rounds):
        for c in cases:
            k, ready, h = one(None if c == "none" else c, workers, warm)
            res[c].append(k)
    base = statistics.median(res[cases[0]])
    for c in cases:
        v = res[c]; m = statistics.median(v)
        ms = MEM.get(None if c=='none' else c, [{}])
        print('   mem KiB', {k: sorted(m.get(k,0) for m in ms)[len(ms)//2] for k in ms[0]})
        print(f"{os.path.basename(c):40s} size={os.path.getsize(c) if c!='none' else 0:>7} rss_med={m/1024:7.2f}MiB ({min(v)/1024:.2f}-{max(v)/1024:.2f}) d_first={(m-base)/1024:+.2f}MiB hdr={h!r}")
