#!/usr/bin/env python3
"""Rewrites function bodies of a Wasm module, for bisecting what V8's compile of it costs.

stub.py IN OUT MODE [PATTERN...]
  all        every body `unreachable`; exports become no-ops returning 1 (vm_start, configure,
             done) or 0, so the module loads and nothing of it runs
  only P...  the same, but keeps the bodies of functions whose name matches a pattern
  drop P...  the same, but stubs only the functions whose name matches a pattern
  cold P...  exports kept: stubs only the matching functions (the module must still work; the
             harness checks the header)
Names come from IN's name section (build-named.sh keeps it).
"""
import re, sys
from names import read_names, leb


def uleb(value):
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


data = open(sys.argv[1], "rb").read()
mode, patterns = sys.argv[3], sys.argv[4:]
names = read_names(sys.argv[1])
sections, i = [], 8
while i < len(data):
    n, j = leb(data, i + 1)
    sections.append((data[i], data[j:j + n]))
    i = j + n
results, n_imported, func_types, exports = [], 0, [], {}
for sid, body in sections:
    if sid == 1:  # types: keep each one's results
        count, j = leb(body, 0)
        for _ in range(count):
            n, j = leb(body, j + 1)
            j += n
            n, j = leb(body, j)
            results.append(body[j:j + n])
            j += n
    elif sid == 2:  # imports: count the functions
        count, j = leb(body, 0)
        for _ in range(count):
            for _ in range(2):
                n, j = leb(body, j)
                j += n
            kind = body[j]
            j += 1
            if kind == 0:
                n_imported += 1
                _, j = leb(body, j)
            elif kind == 1:
                j += 1
                flags, j = leb(body, j)
                _, j = leb(body, j)
                if flags & 1:
                    _, j = leb(body, j)
            elif kind == 2:
                flags, j = leb(body, j)
                _, j = leb(body, j)
                if flags & 1:
                    _, j = leb(body, j)
            else:
                j += 2
    elif sid == 3:
        count, j = leb(body, 0)
        for _ in range(count):
            t, j = leb(body, j)
            func_types.append(t)
    elif sid == 7:
        count, j = leb(body, 0)
        for _ in range(count):
            n, j = leb(body, j)
            name = body[j:j + n].decode()
            j += n
            kind = body[j]
            index, j = leb(body, j + 1)
            if kind == 0:
                exports[index - n_imported] = name
out = bytearray(data[:8])
for sid, body in sections:
    if sid == 10:
        count, j = leb(body, 0)
        code = bytearray(uleb(count))
        for k in range(count):
            n, j = leb(body, j)
            function = body[j:j + n]
            j += n
            matches = any(re.search(p, names.get(n_imported + k, "")) for p in patterns)
            if k in exports and mode != "cold":
                one = exports[k] in ("proxy_on_vm_start", "proxy_on_configure", "proxy_on_done")
                returns_i32 = results[func_types[k]] == b"\x7f"
                function = b"\x00" + (bytes([0x41, int(one)]) if returns_i32 else b"") + b"\x0b"
            elif {"all": True, "only": not matches, "drop": matches, "cold": matches}[mode]:
                function = b"\x00\x00\x0b"
            code += uleb(len(function)) + function
        body = bytes(code)
    out.append(sid)
    out += uleb(len(body)) + body
open(sys.argv[2], "wb").write(out)
