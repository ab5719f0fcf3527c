"""curl against brood's HTTP router when no node serves the Host: a 503 with a body.

uWSGI 2.0 closes such a connection without a byte (WIRE §7.2); brood answers instead
(brood/routers/errors.py). The known Host is served by a real uWSGI node on a unix socket
(brood workers when uWSGI or its python3 plugin is missing), found by
``--http-use-pattern DIR/%s.sock``."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from _interop import HELLO_APP, UWSGI, _uwsgi_has, uwsgi_ok

pytestmark = pytest.mark.interop

CURL = shutil.which("curl")


def curl(url: str, host: str, tmp: Path) -> tuple[int, int, bytes]:
    """(curl exit code, HTTP status, body). Exit 52 is curl's "Empty reply from server"."""
    if CURL is None:
        pytest.skip("curl is not installed")
    out = tmp / "curl.out"
    out.unlink(missing_ok=True)
    done = subprocess.run([CURL, "-sS", "--max-time", "10", "-H", f"Host: {host}",
                           "-o", str(out), "-w", "%{http_code}", url],
                          capture_output=True, text=True, timeout=20)
    body = out.read_bytes() if out.exists() else b""
    return done.returncode, int(done.stdout or 0), body


@pytest.fixture(scope="module")
def pattern_router(start_brood, start_uwsgi, short_tmp) -> str:
    sock = short_tmp / "known.test.sock"
    if UWSGI is not None and _uwsgi_has("python3"):
        start_uwsgi(lambda port: ["--plugins", "python3", "--socket", str(sock),
                                  "--wsgi-file", HELLO_APP, "--master", "--processes", "1"],
                    probe=lambda port: uwsgi_ok(str(sock)))
    else:
        start_brood("--socket", str(sock), "--wsgi-file", HELLO_APP, "--master",
                    "--processes", "1")
    router = start_brood("--master", "--http", "127.0.0.1:0",
                         "--http-use-pattern", str(short_tmp / "%s.sock"))
    return router.address_of("http socket 0")


def test_known_host_served(pattern_router: str, tmp_path: Path) -> None:
    assert curl(f"http://{pattern_router}/", "known.test", tmp_path) == (0, 200, b"Hello World")


def test_no_node_for_host_is_503_with_body(pattern_router: str, tmp_path: Path) -> None:
    code, status, body = curl(f"http://{pattern_router}/", "nobody.test", tmp_path)
    assert code == 0, "the router closed the connection without an answer"
    assert status == 503
    assert body.startswith(b"503")
    # and the router still serves the known host afterwards
    assert curl(f"http://{pattern_router}/", "known.test", tmp_path) == (0, 200, b"Hello World")


def test_no_subscribed_node_is_503_with_body(start_brood, tmp_path: Path) -> None:
    router = start_brood("--master", "--http", "127.0.0.1:0",
                         "--http-subscription-server", "127.0.0.1:0")
    code, status, body = curl(f"http://{router.address_of('http socket 0')}/", "nobody.test",
                              tmp_path)
    assert (code, status) == (0, 503)
    assert body.startswith(b"503")
