"""The servers behind Envoy in the ext-authz end-to-end test (xtask/tests/it/ext_authz.rs).

Three servers on 127.0.0.1, ports chosen by the kernel and written as JSON to the file named
by the first argument (written whole, then renamed):

- upstream: answers every request 200 with a plain-text account of what it received (method,
  path, headers, body); `GET /__control/received` counts the requests it got.
- http: an HTTP authorization service. The request's `x-authz` header decides: `allow` (200
  with `x-user: alice`), `deny` (401 with `www-authenticate` and a body), `never` (no answer),
  `hold` (no answer until `POST /__control/release`; `GET /__control/pending` counts them).
  `GET /__control/last-check` tells what the last check carried.
- grpc: `envoy.service.auth.v3.Authorization/Check` on grpcio, with messages built and read by
  hand: `allow`, `deny` (401 with a header and body), `deny-plain` (no status: the filter's
  `status_on_deny`), `error` (UNAVAILABLE), `never`.

The test kills the process when it is done.
"""

import json
import os
import sys
import threading
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc

RELEASE = threading.Event()
LOCK = threading.Lock()
STATE = {"received": 0, "pending": 0, "last_check": ""}
# Headers that differ from run to run (ports, ids) or between clients.
VOLATILE = {"x-request-id", "user-agent", "accept-encoding", "accept", "date", "host",
            "x-envoy-expected-rq-timeout-ms"}


def stable_headers(headers, keep=()):
    return sorted((name.lower(), value) for name, value in headers.items()
                  if name.lower() not in VOLATILE or name.lower() in keep)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self, status, headers=(), body=b""):
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def read_body(self):
        length = int(self.headers.get("content-length") or 0)
        return self.rfile.read(length) if length else b""

    def do_GET(self):
        self.handle_any()

    def do_POST(self):
        self.handle_any()


class Upstream(Handler):
    def handle_any(self):
        if self.path == "/__control/received":
            with LOCK:
                return self.answer(200, body=str(STATE["received"]).encode())
        body = self.read_body()
        with LOCK:
            STATE["received"] += 1
        lines = [f"upstream got {self.command} {self.path}"]
        lines += [f"{name}: {value}" for name, value in stable_headers(self.headers)]
        lines.append(f"body: {body.decode(errors='replace')!r}")
        self.answer(200, [("content-type", "text/plain")], ("\n".join(lines) + "\n").encode())


class HttpAuthz(Handler):
    def handle_any(self):
        if self.path == "/__control/pending":
            with LOCK:
                return self.answer(200, body=str(STATE["pending"]).encode())
        if self.path == "/__control/release":
            RELEASE.set()
            return self.answer(200)
        if self.path == "/__control/last-check":
            with LOCK:
                return self.answer(200, body=STATE["last_check"].encode())
        self.read_body()
        lines = [f"check {self.command} {self.path}"]
        # The check's host is the filter's `authority`, not a port.
        lines += [f"{name}: {value}" for name, value in stable_headers(self.headers, ["host"])]
        with LOCK:
            STATE["last_check"] = "\n".join(lines) + "\n"
        decision = self.headers.get("x-authz", "")
        if decision == "allow":
            return self.answer(200, [("x-user", "alice"), ("x-not-copied", "1")])
        if decision == "deny":
            return self.answer(401, [("www-authenticate", 'Bearer realm="shop"'),
                                     ("content-type", "text/plain")], b"denied by authz\n")
        if decision == "hold":
            with LOCK:
                STATE["pending"] += 1
            RELEASE.wait(60)
            return self.answer(200, [("x-user", "held")])
        # `never` (and anything else): no answer; the filter's timeout ends the check.
        RELEASE.wait(60)
        self.close_connection = True


def varint(value):
    out = b""
    while value >= 0x80:
        out += bytes([(value & 0x7F) | 0x80])
        value >>= 7
    return out + bytes([value])


def field(number, payload):
    if isinstance(payload, str):
        payload = payload.encode()
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def varint_field(number, value):
    return varint(number << 3) + varint(value)


def fields(data):
    """(field number, wire type, value) of a message; values of length-delimited fields as bytes."""
    position = 0
    while position < len(data):
        key, position = read_varint(data, position)
        wire = key & 7
        if wire == 0:
            value, position = read_varint(data, position)
        elif wire == 2:
            length, position = read_varint(data, position)
            value, position = data[position:position + length], position + length
        elif wire == 1:
            value, position = None, position + 8
        elif wire == 5:
            value, position = None, position + 4
        else:
            raise ValueError("bad wire type")
        yield key >> 3, wire, value


def read_varint(data, position):
    value, shift = 0, 0
    while True:
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, position


def sub(data, number):
    return b"".join(value for n, wire, value in fields(data) if n == number and wire == 2)


def check_headers(request):
    """attributes(1).request(4).http(2).headers(3) of a CheckRequest, as a dict."""
    http = sub(sub(sub(request, 1), 4), 2)
    headers = {}
    for number, wire, entry in fields(http):
        if number == 3 and wire == 2:
            key = sub(entry, 1).decode()
            headers[key] = sub(entry, 2).decode()
    return headers


def header_option(name, value):
    return field(1, field(1, name) + field(2, value))


def check(request, context):
    decision = check_headers(request).get("x-authz", "")
    if decision == "allow":
        ok = (field(2, header_option("x-user", "alice"))
              + field(5, "x-remove-me")
              + field(6, header_option("x-authz-checked", "grpc")))
        return field(1, varint_field(1, 0)) + field(3, ok)
    if decision == "deny":
        denied = (field(1, varint_field(1, 401))
                  + field(2, header_option("www-authenticate", 'Bearer realm="shop"'))
                  + field(3, "denied by policy\n"))
        return field(1, varint_field(1, 7)) + field(2, denied)
    if decision == "deny-plain":
        return field(1, varint_field(1, 7))
    if decision == "error":
        context.abort(grpc.StatusCode.UNAVAILABLE, "authorization is down")
    RELEASE.wait(60)
    context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "never answered")


def serve_http(handler):
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server.server_address[1]


def main():
    port_file = sys.argv[1]
    ports = {"upstream": serve_http(Upstream), "http": serve_http(HttpAuthz)}
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        "envoy.service.auth.v3.Authorization",
        {"Check": grpc.unary_unary_rpc_method_handler(check)}),))
    ports["grpc"] = server.add_insecure_port("127.0.0.1:0")
    server.start()
    temporary = port_file + ".tmp"
    with open(temporary, "w") as out:
        json.dump(ports, out)
    os.rename(temporary, port_file)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
