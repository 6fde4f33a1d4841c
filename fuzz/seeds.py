#!/usr/bin/env python3
"""Write the seed corpora under fuzz/corpus/TARGET/ (run from anywhere).

Seeds are realistic inputs: the requests, responses, CGI outputs, Range
headers and dates of the project's own tests (string literals extracted from
the sources named below), plus hand-written edge cases, each behind the
control bytes its target expects (see the doc comment of each target). Files
are named by the SHA-1 of their contents, as libFuzzer names its own, so
re-running only adds what is missing; libFuzzer adds what it finds next to
them.
"""

import hashlib
import pathlib
import re
import struct
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
# `seeds.py DIR` writes elsewhere (e.g. to see which files are seeds).
CORPUS = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "fuzz" / "corpus"

LITERAL = re.compile(rb'(?<![A-Za-z0-9_#])b?"((?:[^"\\]|\\.|\\\n)*)"', re.S)


def unescape(s: bytes) -> bytes:
    """A Rust (byte) string literal's contents to bytes."""
    out = bytearray()
    i = 0
    while i < len(s):
        c = s[i]
        if c != 0x5C:  # backslash
            out.append(c)
            i += 1
            continue
        e = s[i + 1 : i + 2]
        if e == b"\n":  # line continuation: skip the newline and indentation
            i += 2
            while i < len(s) and s[i] in b" \t\n":
                i += 1
            continue
        simple = {b"r": 13, b"n": 10, b"t": 9, b"0": 0, b"\\": 92, b'"': 34, b"'": 39}
        if e in simple:
            out.append(simple[e])
            i += 2
        elif e == b"x":
            out.append(int(s[i + 2 : i + 4], 16))
            i += 4
        elif e == b"u":  # \u{...}
            end = s.index(b"}", i)
            out += chr(int(s[i + 3 : end], 16)).encode()
            i = end + 1
        else:
            out.append(c)
            i += 1
    return bytes(out)


def literals(*paths, prefixes=()):
    found = []
    for p in paths:
        for path in sorted((ROOT / p).rglob("*.rs")) if (ROOT / p).is_dir() else [ROOT / p]:
            for m in LITERAL.finditer(path.read_bytes()):
                try:
                    b = unescape(m.group(1))
                except (ValueError, IndexError):
                    continue
                if any(b.startswith(x) for x in prefixes) and b"{" not in b:
                    found.append(b)
    return sorted(set(found))


def pick(r: bytes, n: int) -> int:
    """A choice in 0..n fixed by the contents, not by the position in a
    list, so that a new test literal does not change the other seeds."""
    return hashlib.sha1(r).digest()[0] % n


def write(target, seeds):
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    n = 0
    for s in seeds:
        f = d / hashlib.sha1(s).hexdigest()
        if not f.exists():
            f.write_bytes(s)
            n += 1
    print(f"{target}: {len(set(seeds))} seeds ({n} new)")


# ---------------------------------------------------------------- requests

METHODS = tuple(
    m.encode()
    for m in "GET POST PUT HEAD DELETE OPTIONS PATCH TRACE CONNECT \r\n".split(" ")
)

REQUESTS_BY_HAND = [
    b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
    b"GET /plaintext HTTP/1.1\r\nHost: localhost:8080\r\nUser-Agent: loadgen\r\nAccept: */*\r\n\r\n",
    b"GET /a/b?c=d&e HTTP/1.1\r\nHost: example.com\r\nUser-Agent: fuzz/1.0\r\nAccept: */*\r\nConnection: close\r\n\r\n",
    b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello",
    b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 40\r\n\r\n0123456789012345678901234567890123456789",
    b"PUT /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nxyz",
    b"POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n4\r\ndefg\r\n0\r\nTrailer: t\r\n\r\n",
    b"POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1a\r\nabcdefghijklmnopqrstuvwxyz\r\n10\r\n0123456789abcdef\r\n0\r\n\r\n",
    b"POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5 ; ext=\"q\"\r\nhello\r\n0\r\nA: 1\r\nB: 2\r\n\r\n",
    b"POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\nConnection: keep-alive\r\n\r\nF\r\n0123456789abcde\r\n0\r\n\r\n",
    b"POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
    b"POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n",
    b"POST /c HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\n",
    b"POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n",
    b"POST /c HTTP/1.1\r\nHost: a\r\nContent-Length: 18446744073709551616\r\n\r\n",
    b"POST /c HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
    b"POST /c HTTP/1.1\r\nHost: a\r\nContent-Length: +1\r\n\r\na",
    b"GET /old HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    b"GET /old HTTP/1.0\r\n\r\n",
    b"\r\n\r\nOPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET http://h.example/p?q HTTP/1.1\r\nHost: h.example\r\n\r\n",
    b"GET HTTPS://h.example?only=query HTTP/1.1\r\nHost: h.example\r\n\r\n",
    b"GET http://h.example HTTP/1.1\r\nHost: h.example\r\n\r\n",
    b"GET / HTTP/2.0\r\nHost: a\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nRange: bytes=0-9\r\nIf-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT\r\n\r\n",
    b"GET /cgi-bin/env.sh/extra?x=1 HTTP/1.1\r\nHost: a\r\nCookie: sid=abc\r\n\r\n",
    b"HEAD /index.html HTTP/1.1\r\nHost: a\r\nConnection: close, TE\r\n\r\n",
    b"GET /%2e%2e/etc/passwd HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: caf\xc3\xa9\r\n\r\n",
    b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(63)) + b"Host: a\r\n\r\n",
    b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(64)) + b"Host: a\r\n\r\n",
    b"GET /" + b"a" * 300 + b" HTTP/1.1\r\nHost: a\r\n\r\n",
]

PIPELINES = [
    REQUESTS_BY_HAND[0] * 3,
    REQUESTS_BY_HAND[3] + REQUESTS_BY_HAND[6] + REQUESTS_BY_HAND[0],
    REQUESTS_BY_HAND[7] + REQUESTS_BY_HAND[4],
    REQUESTS_BY_HAND[5] + b"GET / HTTP/1.1\r\nHost: b\r\n\r\n",
    REQUESTS_BY_HAND[0] + b"GET / HTTP/1.1\r\nHost: a\r\n",
]


def req_seeds():
    # Requests, not prose that happens to start with a method name.
    reqs = [r for r in literals("servers/tests", "servers/src", prefixes=METHODS) if b"HTTP/" in r]
    reqs = sorted(set(reqs) | set(REQUESTS_BY_HAND))
    out = []
    for r in reqs + PIPELINES:
        n = len(r)
        head_end = r.find(b"\r\n\r\n")
        # ctl: [limits, tiny-limit bits, cut lo, cut hi, cut2 lo, cut2 hi]
        out.append(bytes([0, 0]) + struct.pack("<HH", n // 2, 3) + r)
        if 0 <= head_end < n - 4:
            # Cut just after the head: the body is taken over and streamed.
            out.append(bytes([0, 0]) + struct.pack("<HH", head_end + 5, 2) + r)
        if pick(r, 5) == 0:
            out.append(bytes([3, 0]) + struct.pack("<HH", n // 3, 1) + r)
            out.append(bytes([2 | (20 << 2), 0xFF]) + struct.pack("<HH", n // 4, 7) + r)
    return out


# --------------------------------------------------------------- responses

RESPONSES_BY_HAND = [
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n\r\nHello, World!",
    b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 10\r\n\r\nnot found\n",
    b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-4/100\r\nContent-Length: 5\r\n\r\n01234",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\nA\r\n0123456789\r\n0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nuntil close",
    b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok",
    b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx",
    b"HTTP/1.1 304 Not Modified\r\nContent-Length: 100\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"f" * 15 + b"\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 9999999999999999999\r\n\r\n",
    b"HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.0 200 OK\r\n\r\nbody until close",
]

# A chunk line over MAX_LINE (see harness/tests/fuzz_regressions.rs).
LONG_CHUNK_LINE = (
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;" + b"a" * 1100 + b"\r\nx\r\n0\r\n\r\n"
)


def resp_seeds():
    resps = literals("harness/src/loadgen", "harness/tests", prefixes=(b"HTTP/1.",))
    resps = sorted(set(resps) | set(RESPONSES_BY_HAND))
    ok = RESPONSES_BY_HAND[0]
    resps += [ok * 3, ok + RESPONSES_BY_HAND[4] + RESPONSES_BY_HAND[2], LONG_CHUNK_LINE]
    out = []
    for r in resps:
        out.append(bytes([pick(r, 2)]) + struct.pack("<H", len(r) // 2) + r)
    return out


# ------------------------------------------------------------- CGI output

CGI_BY_HAND = [
    b"Content-Type: text/plain\r\n\r\nhello\n",
    b"Status: 201 Created\nContent-Type: application/json\nX-Request-Id: 42\n\n{}",
    b"Location: /elsewhere\n\n",
    b"Status: 302 Found\nLocation: http://example.test/\nContent-Type: text/html\n\n<a>moved</a>",
    b"Content-Type: text/plain\nContent-Length: 5\nConnection: close\nDate: x\nTransfer-Encoding: chunked\n\nhello",
    b"Content-Type: text/plain\nSet-Cookie: a=1\nSet-Cookie: b=2\nX-Bad: \x01\nX-Latin: caf\xe9\n\nbody",
    b"\n",
    b"\r\n",
    b"".join(b"X-%d: v\n" % i for i in range(100)) + b"\n",
    b"".join(b"X-%d: v\n" % i for i in range(101)) + b"\n",
]


def cgi_seeds():
    outs = literals("servers/tests/cgi.rs", "servers/src/app/cgi.rs",
                    prefixes=(b"Content-Type", b"Status", b"Location", b"content-type", b"X-", b"\n"))
    return sorted(set(outs) | set(CGI_BY_HAND))


# ---------------------------------------------------- Range and HTTP-date

RANGES_BY_HAND = [
    b"bytes=0-0", b"bytes=0-", b"bytes=-1", b" bytes= 5 - 9 ", b"bytes=18446744073709551615-",
    b"bytes=0-18446744073709551616", b"bytes=-18446744073709551615", b"bytes=\xff-1",
    b"Bytes=0-1", b"bytes=1-2-3", b"bytes=--1",
]

DATES = [
    b"Sun, 06 Nov 1994 08:49:37 GMT",
    b"Thu, 01 Jan 1970 00:00:00 GMT",
    b"Tue, 29 Feb 2000 00:00:00 GMT",
    b"Mon, 31 Feb 2021 23:59:60 GMT",
    b"Sat, 01 Jan 0000 00:00:00 GMT",
    b"Fri, 31 Dec 9999 23:59:59 GMT",
    b"Sunday, 06-Nov-94 08:49:37 GMT",
    b"Sun Nov  6 08:49:37 1994",
    b"Sun, 06 Nov 1994 08:49:37 UTC",
]


def range_seeds():
    ranges = literals("servers/tests", "servers/src/app/files.rs", prefixes=(b"bytes=",))
    values = sorted(set(ranges) | set(RANGES_BY_HAND)) + DATES
    out = []
    sizes = [(0, 100), (0, 1_000_000), (1, 5000), (2, 0), (3, 0), (0, 1 << 40), (0, 784_111_777)]
    for v in values:
        mode, size = sizes[pick(v, len(sizes))]
        out.append(bytes([mode]) + struct.pack("<Q", size) + v)
    return out


if __name__ == "__main__":
    write("request_parser", req_seeds())
    write("response_parser", resp_seeds())
    write("cgi_output", cgi_seeds())
    write("range_and_conditional", range_seeds())
