"""brood ``--http-socket`` workers under real HTTP clients: wrk (load, keep-alive and
``Connection: close``) and curl (a chunked POST body reaches the app whole)."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
from _interop import HELLO_APP, HttpConn, chunked, need_wrk

pytestmark = pytest.mark.interop

CURL = shutil.which("curl")


@pytest.fixture(scope="module")
def workers(start_brood) -> str:
    proc = start_brood("--http-socket", "127.0.0.1:0", "--wsgi-file", HELLO_APP,
                       "--master", "--processes", "2")
    return proc.address_of("uwsgi socket 0")


def run_wrk(url: str, *extra: str) -> dict[str, float]:
    """wrk -t2 -c16 -d1s; the numbers of its summary (errors are 0 when not printed)."""
    done = subprocess.run([need_wrk(), "-t2", "-c16", "-d1s", "--timeout", "5s", *extra, url],
                          capture_output=True, text=True, timeout=30)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    found = {"requests": 0.0, "rps": 0.0, "connect": 0.0, "read": 0.0, "write": 0.0,
             "timeout": 0.0, "non2xx": 0.0}
    if m := re.search(r"(\d+) requests in", out):
        found["requests"] = float(m[1])
    if m := re.search(r"Requests/sec:\s+([\d.]+)", out):
        found["rps"] = float(m[1])
    if m := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                      out):
        found.update(connect=float(m[1]), read=float(m[2]), write=float(m[3]),
                     timeout=float(m[4]))
    if m := re.search(r"Non-2xx or 3xx responses: (\d+)", out):
        found["non2xx"] = float(m[1])
    found["output"] = out  # type: ignore[assignment]
    return found


def assert_clean(result: dict) -> None:
    out = result["output"]
    assert result["rps"] > 0 and result["requests"] > 0, out
    for key in ("connect", "read", "write", "timeout", "non2xx"):
        assert result[key] == 0, f"{key} errors:\n{out}"


@pytest.mark.parametrize("path", ["/", "/big"])
def test_wrk_keepalive(workers: str, path: str) -> None:
    assert_clean(run_wrk(f"http://{workers}{path}"))


def test_wrk_connection_close(workers: str) -> None:
    assert_clean(run_wrk(f"http://{workers}/", "-H", "Connection: close"))


@pytest.fixture(scope="module")
def http_router(start_brood) -> str:
    """brood's HTTP router (keep-alive) in front of brood --socket workers."""
    nodes = start_brood("--socket", "127.0.0.1:0", "--wsgi-file", HELLO_APP,
                        "--master", "--processes", "2")
    router = start_brood("--master", "--http", "127.0.0.1:0", "--http-keepalive",
                         "--http-to", nodes.address_of("uwsgi socket 0"))
    return router.address_of("http socket 0")


@pytest.mark.parametrize("path", ["/big", "/env"])
def test_wrk_through_http_router(http_router: str, path: str) -> None:
    # Only answers with a Content-Length: wrk counts a close-delimited body (the demo's
    # "/", relayed as the node sent it, as uWSGI's router does) as a read error.
    assert_clean(run_wrk(f"http://{http_router}{path}"))


PAYLOAD = bytes(range(256)) * 257  # 65792 bytes: more than one read, every byte value


def test_chunked_post_reaches_app_raw_socket(workers: str) -> None:
    with HttpConn(workers) as conn:
        conn.send(b"POST /echo HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n"
                  b"Content-Type: application/octet-stream\r\n\r\n" + chunked(PAYLOAD, 5000))
        status, _, body = conn.response("POST")
        assert status == 200
        assert body == PAYLOAD
        # and the connection is still good for the next request
        status, _, body = conn.request("POST", "/echo", body=b"next")
        assert (status, body) == (200, b"next")


@pytest.mark.skipif(CURL is None, reason="curl is not installed")
def test_chunked_post_reaches_app_curl(workers: str, tmp_path) -> None:
    data = tmp_path / "body.bin"
    data.write_bytes(PAYLOAD)
    out = tmp_path / "out.bin"
    done = subprocess.run(
        [CURL, "-sS", "--max-time", "10", "-o", str(out), "-w", "%{http_code}",
         "-H", "Transfer-Encoding: chunked", "-H", "Content-Type: application/octet-stream",
         "--data-binary", f"@{data}", f"http://{workers}/echo"],
        capture_output=True, text=True, timeout=20)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "200"
    assert out.read_bytes() == PAYLOAD
