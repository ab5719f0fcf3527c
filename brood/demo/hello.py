"""Demo WSGI app: hello world at every path except a few used by tests and benchmarks.

/big     64 KiB body            /echo   POST body sent back
/stream  write() then iterable  /file   wsgi.file_wrapper over this file
/error   raises                 /sleep?s=N  sleeps N seconds (float) first
/env     JSON of the environ's keys and str values

Works when loaded by path (uWSGI's --wsgi-file) or as a module: it imports only stdlib.
"""

import json
import time

HELLO = b"Hello World"
BIG = b"x" * 65536


def _reply(start_response, body, ctype=b"text/plain"):
    start_response("200 OK", [("Content-Type", ctype.decode()), ("Content-Length", str(len(body)))])
    return [body]


def application(environ, start_response):
    path = environ.get("PATH_INFO", "")
    if path == "/big":
        return _reply(start_response, BIG)
    if path == "/echo":
        body = environ["wsgi.input"].read()
        return _reply(start_response, body, b"application/octet-stream")
    if path == "/stream":
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"first\n")
        return iter([b"second\n", b"third\n"])
    if path == "/file":
        start_response("200 OK", [("Content-Type", "text/x-python")])
        return environ["wsgi.file_wrapper"](open(__file__, "rb"), 4096)
    if path == "/error":
        raise RuntimeError("demo error")
    if path == "/sleep":
        seconds = 1.0
        for part in environ.get("QUERY_STRING", "").split("&"):
            if part.startswith("s="):
                seconds = float(part[2:] or 0)
        time.sleep(min(max(seconds, 0.0), 60.0))
        return _reply(start_response, b"slept\n")
    if path == "/env":
        data = {k: v for k, v in environ.items() if isinstance(v, (str, bool, int))}
        return _reply(
            start_response, json.dumps(data, sort_keys=True).encode(), b"application/json"
        )
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [HELLO]
