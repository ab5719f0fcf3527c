"""A real brood master serving the demo app on every kind of socket, and its user errors."""

from __future__ import annotations

import subprocess
import sys

from _broodkit import http_get, read_stats, uwsgi_request, wait_until, worker_pids


def test_uwsgi_and_http_sockets_with_stats(start_brood, hello_app) -> None:
    b = start_brood("--socket", "127.0.0.1:0", "--http-socket", "127.0.0.1:0",
                    "--wsgi-file", hello_app, "--processes", "2", "--master",
                    "--stats", "127.0.0.1:0")
    assert uwsgi_request(b.address_of("uwsgi socket 0")) == (200, b"Hello World")
    assert http_get(b.address_of("uwsgi socket 1")) == (200, b"Hello World")

    def both_counted() -> dict | None:
        # a worker publishes its request counter to the master with a lag (~100 ms)
        stats = b.stats()
        return stats if sum(w["requests"] for w in stats["workers"]) >= 2 else None

    stats = wait_until(both_counted, timeout=5, what="both requests in the worker stats")
    assert stats["pid"] == b.pid
    assert [(s["name"], s["proto"], s["shared"]) for s in stats["sockets"]] == [
        (b.address_of("uwsgi socket 0"), "uwsgi", 0),
        (b.address_of("uwsgi socket 1"), "http", 0),
    ]
    assert [w["id"] for w in stats["workers"]] == [1, 2]
    assert all(pid > 0 and w["accepting"] == 1 and w["respawn_count"] == 1
               for pid, w in zip(worker_pids(stats), stats["workers"], strict=True))
    assert sum(w["requests"] for w in stats["workers"]) == 2
    assert "spawned uWSGI worker 2 (pid: " in b.log()


def test_unix_socket_minified_unix_stats(start_brood, hello_app, tmp_path) -> None:
    sock, stats_sock = str(tmp_path / "app.sock"), str(tmp_path / "stats.sock")
    b = start_brood("--http-socket", sock, "--wsgi-file", hello_app,
                    "--stats", stats_sock, "--stats-minified")
    assert b.address_of("uwsgi socket 0") == sock
    assert http_get(sock) == (200, b"Hello World")
    raw = read_stats(stats_sock)
    assert raw.startswith(b'{"version":') and b"\n" not in raw


def test_stats_http_waits_for_a_request(start_brood, hello_app) -> None:
    b = start_brood("--http-socket", "127.0.0.1:0", "--wsgi-file", hello_app,
                    "--stats", "127.0.0.1:0", "--stats-http")
    raw = read_stats(b.address_of("stats server"), http=True)
    assert raw.startswith(b"HTTP/1.0 200 OK\r\nConnection: close\r\n")
    assert b'"workers":[' in raw


def test_shared_socket_reference(start_brood, hello_app) -> None:
    b = start_brood("--shared-socket", "127.0.0.1:0", "--socket", "=0",
                    "--wsgi-file", hello_app, "--stats", "127.0.0.1:0")
    shared = b.address_of("uwsgi shared socket 0")
    b.wait_for_log(r"uwsgi socket 0 mapped to shared socket 0 \(" + shared + r"\) fd 3")
    assert uwsgi_request(shared) == (200, b"Hello World")
    assert b.stats()["sockets"][0]["shared"] == 1


def _run(*args: str, cwd: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "brood", *args], capture_output=True,
                          text=True, timeout=30, cwd=cwd, stdin=subprocess.DEVNULL)


def test_bare_brood_prints_usage() -> None:
    done = _run()
    assert done.returncode == 1 and "usage: brood" in done.stderr


def test_bad_option_is_one_line() -> None:
    done = _run("--no-such-option", "1")
    assert done.returncode == 1
    assert done.stderr.startswith("brood: ") and done.stderr.count("\n") == 1
    assert "Traceback" not in done.stderr


def test_bad_address_is_one_line(hello_app) -> None:
    done = _run("--socket", "127.0.0.1:99999", "--wsgi-file", hello_app)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("brood: --socket 127.0.0.1:99999")


def test_missing_wsgi_file_exits_1_without_traceback(tmp_path) -> None:
    done = _run("--http-socket", "127.0.0.1:0", "--wsgi-file", str(tmp_path / "nope.py"),
                "--processes", "2")
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "nope.py" in done.stderr
    assert "spawned uWSGI worker" not in done.stderr


def test_version_and_help() -> None:
    assert _run("--version").stdout.startswith("brood ")
    helped = _run("--help")
    assert helped.returncode == 0 and "--socket" in helped.stdout


def test_http_to_https_binds_its_socket_and_redirects(start_brood) -> None:
    import socket

    b = start_brood("--master", "--http-to-https", "127.0.0.1:0")
    host, port = b.address_of("http-to-https socket 0").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(b"GET /a?b=1 HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n")
        answer = b""
        while data := sock.recv(4096):
            answer += data
    assert answer.startswith(b"HTTP/1.1 301 ")
    assert b"\r\nLocation: https://example.com/a?b=1\r\n" in answer


def test_http_to_https_with_a_port_names_it_in_its_redirects(start_brood) -> None:
    """uWSGI's ``--http-to-https ADDR,PORT``: the Host's port replaced by PORT (IPv6
    literal hosts keep their brackets)."""
    import socket

    b = start_brood("--master", "--http-to-https", "127.0.0.1:0,8443")
    host, port = b.address_of("http-to-https socket 0").rsplit(":", 1)
    for sent, location in ((b"example.com:8080", b"https://example.com:8443/a?b=1"),
                           (b"[::1]:8080", b"https://[::1]:8443/a?b=1"),
                           (b"example.com", b"https://example.com:8443/a?b=1")):
        with socket.create_connection((host, int(port)), timeout=5) as sock:
            sock.sendall(b"GET /a?b=1 HTTP/1.1\r\nHost: " + sent + b"\r\nConnection: close\r\n\r\n")
            answer = b""
            while data := sock.recv(4096):
                answer += data
        assert answer.startswith(b"HTTP/1.1 301 ")
        assert b"\r\nLocation: " + location + b"\r\n" in answer


def test_http_to_https_with_a_bad_port_is_refused(tmp_path) -> None:
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "brood", "--http-to-https", "127.0.0.1:0,https"],
                          capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert done.returncode == 1
    assert done.stderr.endswith("brood: --http-to-https 127.0.0.1:0,https: the port after the "
                                "comma must be a number from 1 to 65535\n")
