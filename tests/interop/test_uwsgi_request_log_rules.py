"""uWSGI's request-log exceptions through real uWSGI 2.0.21 and brood workers: with
--disable-logging, --log-zero, --log-slow, --log-big and --log-sendfile pick the same
requests, and --log-micros / --log-x-forwarded-for make the lines say the same."""

from __future__ import annotations

import re

import pytest
from _broodkit import wait_until
from _interop import HELLO_APP, HttpConn, http, need_uwsgi

pytestmark = pytest.mark.interop

OPTIONS = ["--disable-logging", "--log-zero", "--log-slow", "150", "--log-big", "4000",
           "--log-sendfile", "true", "--log-micros", "--log-x-forwarded-for"]
FORWARDED = "203.0.113.7, 198.51.100.1"
# (method, path, body): which requests the exceptions want is in the test's assert
REQUESTS = [("GET", "/", None), ("GET", "/sleep?s=0.2", None), ("GET", "/big", None),
            ("GET", "/file", None), ("POST", "/echo", b""), ("GET", "/env", None)]
LINE = re.compile(r"\[pid: \d+\|app: 0\|req: \d+/\d+\] (?P<addr>[^(]*) \(\) .*? "
                  r"(?P<method>\w+) (?P<uri>\S+) => generated (?P<size>\d+) bytes in "
                  r"(?P<time>\d+) (?P<unit>\w+)(?P<via> via sendfile\(\))? \(HTTP/1\.1 200\)")


def _exercise(address: str, log) -> list[dict[str, str]]:
    for method, path, body in REQUESTS:
        status, _, _ = http(address, method, path, body, headers={"X-Forwarded-For": FORWARDED})
    assert status == 200
    # a request without the header: logged (empty body) with its own address
    with HttpConn(address) as conn:
        assert conn.request("POST", "/echo", b"", {"Connection": "close"})[0] == 200
    found = wait_until(lambda: len(m := list(LINE.finditer(log()))) >= 5 and m,
                       what="five request lines")
    return [m.groupdict() for m in found]


def _compare(lines: list[dict[str, str]]) -> None:
    assert [(d["method"], d["uri"]) for d in lines] == [
        ("GET", "/sleep?s=0.2"), ("GET", "/big"), ("GET", "/file"), ("POST", "/echo"),
        ("POST", "/echo")]
    assert [d["addr"] for d in lines] == [FORWARDED] * 4 + ["127.0.0.1"]
    assert {d["unit"] for d in lines} == {"micros"}
    assert int(lines[0]["time"]) >= 200_000  # the slow one, in micros
    assert [bool(d["via"]) for d in lines] == [False, False, True, False, False]
    assert [d["size"] for d in lines][3:] == ["0", "0"]


def test_uwsgi_picks_these_lines(start_uwsgi) -> None:
    need_uwsgi("python3")
    proc = start_uwsgi(
        lambda port: ["--plugin", "python3", "--master", "--http-socket", f"127.0.0.1:{port}",
                      "--wsgi-file", HELLO_APP, *OPTIONS],
        probe=lambda port: http(f"127.0.0.1:{port}", "HEAD", "/")[0] == 200)
    _compare(_exercise(f"127.0.0.1:{proc.port}", proc.log))


def test_brood_picks_the_same_lines(start_brood) -> None:
    b = start_brood("--master", "--http-socket", "127.0.0.1:0", "--wsgi-file", HELLO_APP,
                    *OPTIONS)
    _compare(_exercise(b.address_of("uwsgi socket 0"), b.log))
