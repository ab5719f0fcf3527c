"""How a router process takes its stop signals: an immediate stop cuts a graceful drain
short, and stop signals that come once it is on its way out (a service manager signals
the whole group, the master forwards the same signal again) do not kill it halfway."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time

from _broodkit import wait_until

# A router process as the master forks one: the stop signals at their default
# disposition, run_router on a listener whose node refuses (every request a 502).
# A thread asks once the router answers, then sends SIGINT; after run_router returns,
# each stop signal is sent again and must leave the process alive.
CHILD = textwrap.dedent("""
    import os, signal, socket, sys, threading, time
    from brood.config.load import load_config
    from brood.listener import Listener
    from brood.routers.process import STOPS, run_router

    for signum in STOPS:
        signal.signal(signum, signal.SIG_DFL)
    refused = socket.socket(); refused.bind(("127.0.0.1", 0))
    node = "127.0.0.1:%d" % refused.getsockname()[1]; refused.close()
    sock = socket.socket(); sock.bind(("127.0.0.1", 0)); sock.listen(16)
    cfg = load_config(["--http", "127.0.0.1:0", "--http-to", node])
    address = sock.getsockname()

    def stop_once_serving():
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with socket.create_connection(address, timeout=5) as client:
                client.sendall(b"GET / HTTP/1.0\\r\\nHost: x\\r\\n\\r\\n")
                if client.recv(64).startswith(b"HTTP/1.1 502"):
                    break
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=stop_once_serving, daemon=True).start()
    status = run_router("http", 1, cfg, [Listener(sock, "%s:%d" % address, "http")])
    for signum in STOPS:
        os.kill(os.getpid(), signum)
    print("survived", status, flush=True)
""")


def test_stop_signals_after_the_router_stopped_do_not_kill_it() -> None:
    done = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, (done.returncode, done.stderr)
    assert done.stdout.split() == ["survived", "0"], done.stdout


def test_sigint_cuts_a_graceful_drain_short(start_brood) -> None:
    with socket.socket() as node:  # accepts the request and never answers it
        node.bind(("127.0.0.1", 0))
        node.listen(8)
        node.settimeout(20)
        router = start_brood("--master", "--http", "127.0.0.1:0", "--reload-mercy", "60",
                             "--http-to", f"127.0.0.1:{node.getsockname()[1]}")
        pid = int(router.wait_for_log(r"spawned uWSGI http 1 \(pid: (\d+)")[0][1])
        host, port = router.address_of("http socket 0").rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=20) as client:
            client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            held, _ = node.accept()  # the request is in flight: a session to drain
            with held:
                os.kill(pid, signal.SIGTERM)  # drains (the mercy is 60 s) ...
                router.wait_for_log(r"http SIGTERM: graceful stop, 1 sessions to finish")
                asked = time.monotonic()
                os.kill(pid, signal.SIGINT)  # ... until this cuts it
                line = wait_until(
                    lambda: re.search(rf"http 1 \(pid: {pid}\) \w+ \(([^)]*)\)", router.log()),
                    timeout=10, what="the draining router's exit")
                assert line[1] == "exit status 0"
                assert time.monotonic() - asked < 5  # not the 60 s mercy, nor the master's kill
