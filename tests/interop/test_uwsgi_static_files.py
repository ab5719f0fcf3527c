"""Static files from the workers, real uWSGI 2.0.21 against brood: the same options give
the same status, headers that matter and bodies (files, index, 304, ranges, escapes,
missing files, HEAD, gzip, add/del-header)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from _interop import need_uwsgi

pytestmark = pytest.mark.interop

APP = '''
def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("X-Del", "1")])
    return [b"APP " + environ["PATH_INFO"].encode("latin-1")]
'''
REQUESTS = [
    "GET /static/a.css", "HEAD /static/a.css", "GET /static/sub", "GET /static/sub/",
    "GET /static/missing", "GET /static/link.txt", "GET /static/%2e%2e/s.txt",
    "GET /static/x.py", "POST /static/a.css", "GET /staticx", "GET /static/README",
    ("GET /static/digits.txt", "Range: bytes=2-4"), ("GET /static/digits.txt", "Range: bytes=-3"),
    ("GET /static/digits.txt", "Range: bytes=20-"),
    ("GET /static/digits.txt", "If-Modified-Since: Thu, 01 Jan 2099 00:00:00 GMT"),
    ("GET /static/a.css", "Accept-Encoding: gzip"), ("GET /m2/root/a.css", ""),
]
COMPARED = ("content-type", "content-length", "content-range", "content-encoding",
            "last-modified", "x-added", "x-del", "expires")


def _tree(tmp: Path) -> list[str]:
    root = tmp / "root"
    (root / "sub").mkdir(parents=True)
    (root / "a.css").write_bytes(b"body{}")
    (root / "a.css.gz").write_bytes(b"GZ")
    (root / "x.py").write_bytes(b"py")
    (root / "README").write_bytes(b"readme")
    (root / "digits.txt").write_bytes(b"0123456789")
    (root / "sub" / "index.html").write_bytes(b"hello")
    (tmp / "s.txt").write_bytes(b"secret")
    (root / "link.txt").symlink_to(tmp / "s.txt")
    (tmp / "app.py").write_text(APP)
    return ["--wsgi-file", str(tmp / "app.py"), "--static-map", f"/static={root}",
            "--static-map2", f"/m2={tmp}", "--static-index", "index.html",
            "--static-skip-ext", ".py", "--honour-range", "--static-gzip-ext", ".css",
            "--add-header", "X-Added: yes", "--del-header", "X-Del",
            "--static-expires-type", "text/plain=3600"]


def _ask(port: int, req: str | tuple[str, str]) -> tuple:
    line, extra = (req, "") if isinstance(req, str) else req
    body = b"" if not line.startswith("POST") else b"x"
    raw = f"{line} HTTP/1.0\r\nContent-Length: {len(body)}\r\n{extra and extra + chr(13) + chr(10)}\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(raw.encode() + body)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, content = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for h in lines[1:]:
        k, _, v = h.partition(":")
        headers[k.strip().lower()] = v.strip()
    status = int(lines[0].split()[1])
    if status == 416 or content.startswith(b"APP"):  # brood frames every answer
        headers.pop("content-length", None)
    if content.startswith(b"APP"):  # the app answered (brood's PATH_INFO of a decoded
        content = b"APP"            # %2e%2e differs from uWSGI's: not static's doing)
    kept = {k: v for k, v in headers.items() if k in COMPARED and k != "expires"}
    return status, kept, "expires" in headers, content


def _up(port: int) -> bool:
    try:
        return _ask(port, "GET /static/a.css")[0] == 200
    except OSError:
        return False


def test_same_answers(start_uwsgi, start_brood, tmp_path: Path) -> None:
    need_uwsgi("python3")
    args = _tree(tmp_path)
    uw = start_uwsgi(lambda port: ["--plugin", "python3", "--http-socket",
                                   f"127.0.0.1:{port}", *args], probe=_up)
    b = start_brood("--http-socket", "127.0.0.1:0", *args)
    bport = int(b.address_of("uwsgi socket 0").rsplit(":", 1)[1])
    for req in REQUESTS:
        assert _ask(bport, req) == _ask(uw.port, req), req
