"""--static-map & co. and --add-header/--del-header through a real brood on loopback:
files sent (sendfile, keep-alive framing), ranges, 304, escapes and misses to the app,
and the request line uWSGI writes for a static file."""

from __future__ import annotations

import socket
from pathlib import Path

APP = '''
def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("X-Del", "1")])
    return [b"APP " + environ["PATH_INFO"].encode("latin-1")]
'''


def exchange(address: str, raw: bytes, answers: int = 1) -> list[tuple[int, dict, bytes]]:
    """Send ``raw`` (requests, maybe pipelined) and read ``answers`` Content-Length-framed
    answers back."""
    host, port = address.rsplit(":", 1)
    out = []
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(raw)
        buf = b""
        for _ in range(answers):
            while b"\r\n\r\n" not in buf:
                buf += sock.recv(65536)
            head, buf = buf.split(b"\r\n\r\n", 1)
            lines = head.decode("latin-1").split("\r\n")
            headers = {}
            for line in lines[1:]:
                k, _, v = line.partition(":")
                headers[k.strip().lower()] = v.strip()
            n = 0 if raw.startswith(b"HEAD") or lines[0].split()[1] == "304" \
                else int(headers.get("content-length", 0))
            while len(buf) < n:
                buf += sock.recv(65536)
            out.append((int(lines[0].split()[1]), headers, buf[:n]))
            buf = buf[n:]
    return out


def get(address: str, path: str, extra: str = "", method: str = "GET"):
    return exchange(address, f"{method} {path} HTTP/1.0\r\n{extra}\r\n".encode())[0]


def test_static_files(start_brood, tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "a.css").write_bytes(b"body{}")
    (root / "digits.txt").write_bytes(b"0123456789")
    (root / "sub" / "index.html").write_bytes(b"hello")
    (tmp_path / "s.txt").write_bytes(b"secret")
    (root / "link.txt").symlink_to(tmp_path / "s.txt")
    (tmp_path / "app.py").write_text(APP)
    b = start_brood("--http-socket", "127.0.0.1:0", "--wsgi-file", tmp_path / "app.py",
                    "--static-map", f"/static={root}", "--static-index", "index.html",
                    "--honour-range", "--add-header", "X-Added: yes",
                    "--del-header", "x-del")
    address = b.address_of("uwsgi socket 0")
    status, h, body = get(address, "/static/a.css")
    assert (status, body, h["content-type"], h["x-added"]) == (200, b"body{}", "text/css", "yes")
    assert "last-modified" in h
    assert get(address, "/static/sub")[2] == b"hello"
    status, h, body = get(address, "/static/digits.txt", "Range: bytes=2-4\r\n")
    assert (status, body, h["content-range"]) == (206, b"234", "bytes 2-4/10")
    assert get(address, "/static/digits.txt", "Range: bytes=20-\r\n")[0] == 416
    ims = f"If-Modified-Since: {h['last-modified']}\r\n"
    assert get(address, "/static/digits.txt", ims)[0] == 304
    status, h, body = get(address, "/static/a.css", method="HEAD")
    assert (status, h["content-length"], body) == (200, "6", b"")
    for path in ("/static/missing", "/static/link.txt", "/static/%2e%2e/s.txt"):
        status, h, body = get(address, path)
        assert body.startswith(b"APP "), path
        assert "x-del" not in h and h["x-added"] == "yes"
    # keep-alive: a file, then the app, on one connection
    two = exchange(address, b"GET /static/a.css HTTP/1.1\r\nHost: x\r\n\r\n"
                            b"GET /app HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 2)
    assert [a[2] for a in two] == [b"body{}", b"APP /app"]
    b.wait_for_log(r"\[pid: \d+\|app: -1\|req: -1/\d+\] .* GET /static/a.css => generated "
                   r"6 bytes in \d+ msecs via sendfile\(\) \(HTTP/1.0 200\)")
    b.wait_for_log(r"app: -1\|req: -1/\d+\] .* => generated 3 bytes .*\(HTTP/1.0 200\)")
    b.wait_for_log(r"security error: .*s.txt is not under")
