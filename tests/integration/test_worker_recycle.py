"""uWSGI's worker-pool options on real brood processes: --reload-on-exception (and its
message filters), --reload-on-as, --touch-workers-reload, --touch-chain-reload,
--touch-exec, --http11-socket and the socket buffer/timeout options."""

from __future__ import annotations

import os
import socket

from _broodkit import http_get, listen_buffers, wait_until, worker_pids


def _touch(path) -> None:
    """A new mtime whatever the file system's resolution."""
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))


def test_reload_on_exception_answers_500_then_recycles(start_brood, hello_app) -> None:
    b = start_brood("--http-socket", "127.0.0.1:0", "--wsgi-file", hello_app,
                    "--reload-on-exception", "--stats", "127.0.0.1:0")
    addr = b.address_of("uwsgi socket 0")
    first = worker_pids(b.stats())
    assert http_get(addr, "/error")[0] == 500
    b.wait_for_log(r"monitored exception detected \(RuntimeError\), worker 1")
    wait_until(lambda: 0 not in (p := worker_pids(b.stats())) and p != first,
               what="a fresh worker")
    assert http_get(addr) == (200, b"Hello World")


def test_exception_filters_compare_the_message(start_brood, hello_app) -> None:
    # as uWSGI 2.0.21: -type RuntimeError names no message, -value "demo error" does
    b = start_brood("--http-socket", "127.0.0.1:0", "--wsgi-file", hello_app,
                    "--reload-on-exception-type", "RuntimeError",
                    "--reload-on-exception-repr", "builtins.RuntimeError: demo error",
                    "--stats", "127.0.0.1:0")
    addr = b.address_of("uwsgi socket 0")
    first = worker_pids(b.stats())
    assert http_get(addr, "/error")[0] == 500
    assert http_get(addr) == (200, b"Hello World")  # the same worker, after it
    assert worker_pids(b.stats()) == first
    assert "monitored exception" not in b.log()
    b.stop()
    b = start_brood("--http-socket", "127.0.0.1:0", "--wsgi-file", hello_app,
                    "--reload-on-exception-value", "demo error", "--threads", "2",
                    "--stats", "127.0.0.1:0")
    first = worker_pids(b.stats())
    assert http_get(b.address_of("uwsgi socket 0"), "/error")[0] == 500
    wait_until(lambda: 0 not in (p := worker_pids(b.stats())) and p != first,
               what="a fresh worker")


def test_reload_on_as_recycles_after_the_request(start_brood, hello_app) -> None:
    b = start_brood("--http-socket", "127.0.0.1:0", "--wsgi-file", hello_app,
                    "--reload-on-as", "1", "--min-worker-lifetime", "0",
                    "--stats", "127.0.0.1:0")
    first = worker_pids(b.stats())
    assert http_get(b.address_of("uwsgi socket 0")) == (200, b"Hello World")
    b.wait_for_log(r"worker 1 address space \d+ MB over reload-on-as, stopping")
    wait_until(lambda: 0 not in (p := worker_pids(b.stats())) and p != first,
               what="a fresh worker")


def test_touch_workers_and_chain_reload(start_brood, hello_app, tmp_path) -> None:
    workers, chain = tmp_path / "workers.touch", tmp_path / "chain.touch"
    workers.write_text("")
    chain.write_text("")
    b = start_brood("--http-socket", "127.0.0.1:0", "--wsgi-file", hello_app, "-p", "2",
                    "--touch-workers-reload", str(workers),
                    "--touch-chain-reload", str(chain), "--stats", "127.0.0.1:0")
    first = set(worker_pids(b.stats()))
    _touch(workers)
    b.wait_for_log(r"\*\*\* .*workers\.touch has been touched\.\.\. workers reload !!! \*\*\*")
    second = wait_until(lambda: (p := set(worker_pids(b.stats()))).isdisjoint(first)
                        and 0 not in p and p, what="two fresh workers")
    _touch(chain)
    b.wait_for_log(r"\*\*\* .*chain\.touch has been touched\.\.\. chain reload !!! \*\*\*")
    b.wait_for_log(r"chain reloading complete")
    wait_until(lambda: (p := set(worker_pids(b.stats()))).isdisjoint(second) and 0 not in p,
               what="two more fresh workers")
    log = b.log()
    assert log.index("chain next victim is worker 1") < log.index(
        "chain next victim is worker 2")
    assert "brood: ready" in log and log.count("brood: ready") == 1  # the master stayed
    assert http_get(b.address_of("uwsgi socket 0")) == (200, b"Hello World")


def test_touch_exec_runs_the_command(start_brood, hello_app, tmp_path) -> None:
    trigger, out = tmp_path / "exec.touch", tmp_path / "out.txt"
    trigger.write_text("")
    b = start_brood("--http-socket", "127.0.0.1:0", "--wsgi-file", hello_app,
                    "--touch-exec", f"{trigger} echo ran; ls /proc/self/fd > {out}")
    _touch(trigger)
    found = b.wait_for_log(r"subprocess (\d+) exited with code 0")
    assert f"[uwsgi-touch-exec] running echo ran; ls /proc/self/fd > {out}" in b.log()
    # stdin, stdout, stderr and ls's own directory fd: no listening socket of brood's
    assert sorted(out.read_text().split()) == ["0", "1", "2", "3"]
    assert "ran\n" in b.log()
    assert int(found[0][1]) != b.pid


def test_http11_socket_keeps_alive_with_framed_answers(start_brood, hello_app) -> None:
    b = start_brood("--http11-socket", "127.0.0.1:0", "--wsgi-file", hello_app)
    host, port = b.address_of("uwsgi socket 0").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while not data.endswith(b"0\r\n\r\n"):
            chunk = sock.recv(65536)
            assert chunk, data
            data += chunk
    first, _, second = data.partition(b"Hello World")
    assert first.startswith(b"HTTP/1.1 200 OK") and b"Content-Length: 11" in first
    assert b"Transfer-Encoding: chunked" in second


def test_socket_buffers_on_every_bound_socket(start_brood, hello_app) -> None:
    b = start_brood("--http-socket", "127.0.0.1:0", "--wsgi-file", hello_app,
                    "--stats", "127.0.0.1:0", "--socket-sndbuf", "65536",
                    "--socket-rcvbuf", "32768", "--socket-send-timeout=5")
    # the kernel doubles the values it is given
    assert listen_buffers(b.port_of("uwsgi socket 0")) == (65536, 131072)
    assert listen_buffers(b.port_of("stats server")) == (65536, 131072)
    assert http_get(b.address_of("uwsgi socket 0")) == (200, b"Hello World")
