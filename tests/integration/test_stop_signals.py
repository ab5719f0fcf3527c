"""How the master's children take their stop signals (brood.signals): held from the fork
until the child's own handlers are in; a router's immediate stop cuts its graceful drain
short, and stop signals that come once it is on its way out (a service manager signals
the whole group, the master forwards the same signal again) do not kill it halfway; a
threaded worker takes them on its main thread."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest
from _broodkit import wait_until

from brood.master_children import ChildTable
from brood.plan import ChildSpec
from brood.signals import STOPS

# A router process as the master forks one: the stop signals at their default
# disposition, run_router on a listener whose node refuses (every request a 502).
# A thread asks once the router answers, then stops it: SIGINT, or SIGQUIT and SIGINT
# together to the main thread (the second is still queued in trio's receiver when the
# loop ends, and trio raises it again then). After run_router returns, each stop
# signal is sent again and must leave the process alive.
CHILD = textwrap.dedent("""
    import os, signal, socket, sys, threading, time
    from brood.config.load import load_config
    from brood.listener import Listener
    from brood.routers.process import run_router
    from brood.signals import STOPS

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
            try:
                with socket.create_connection(address, timeout=5) as client:
                    client.sendall(b"GET / HTTP/1.0\\r\\nHost: x\\r\\n\\r\\n")
                    if client.recv(64).startswith(b"HTTP/1.1 502"):
                        break
            except OSError:
                pass
        if sys.argv[1] == "queued":
            main = threading.main_thread().ident
            signal.pthread_kill(main, signal.SIGQUIT)
            signal.pthread_kill(main, signal.SIGINT)
        else:
            os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=stop_once_serving, daemon=True).start()
    status = run_router("http", 1, cfg, [Listener(sock, "%s:%d" % address, "http")])
    for signum in STOPS:
        os.kill(os.getpid(), signum)
    print("survived", status, flush=True)
""")


@pytest.mark.parametrize("stop", ["one", "queued"])
def test_stop_signals_after_the_router_stopped_do_not_kill_it(stop: str) -> None:
    done = subprocess.run([sys.executable, "-c", CHILD, stop], capture_output=True,
                          text=True, timeout=60)
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


def test_a_child_starts_with_the_stop_signals_held_and_the_master_keeps_its_mask() -> None:
    """Until a child has its own handlers, a stop signal sent to it must wait: it would
    otherwise meet the master's handlers, which write it into the master's wakeup pipe."""
    read_end, write_end = os.pipe()

    def report(index: int) -> int:
        held = signal.pthread_sigmask(signal.SIG_BLOCK, [])
        os.write(write_end, b"".join(b"%d," % s for s in sorted(held)))
        return 0

    table = ChildTable([ChildSpec("probe", 1, report)], lambda spec, index: None)
    before = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    table.spawn_all(time.time())
    os.close(write_end)
    try:
        reported = os.read(read_end, 4096)
    finally:
        os.close(read_end)
        _, status = os.waitpid(table.children[0].pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    held = {int(s) for s in reported.split(b",") if s}
    assert set(STOPS) <= held, held
    assert signal.pthread_sigmask(signal.SIG_BLOCK, []) == before


def _blocked(pid: int, tid: int) -> int:
    with open(f"/proc/{pid}/task/{tid}/status") as status:
        return next(int(line.split()[1], 16) for line in status if line.startswith("SigBlk:"))


def test_a_threaded_worker_takes_stop_signals_on_its_main_thread_only(start_brood,
                                                                     hello_app) -> None:
    """A signal the kernel gives a serving thread would wait for the main thread to run
    bytecode, and it sleeps until the threads end: the serving threads hold them."""
    pool = start_brood("--master", "--http-socket", "127.0.0.1:0", "--wsgi-file", hello_app,
                       "-p", "1", "--threads", "3")
    pid = int(pool.wait_for_log(r"spawned uWSGI worker 1 \(pid: (\d+)")[0][1])
    tids = wait_until(lambda: (t := [int(x) for x in os.listdir(f"/proc/{pid}/task")])
                      and len(t) >= 4 and t, what="the worker's three serving threads")
    stops = sum(1 << (s - 1) for s in STOPS)
    assert _blocked(pid, pid) & stops == 0
    for tid in tids:
        if tid != pid:
            assert _blocked(pid, tid) & stops == stops, tid
    os.killpg(pool.pid, signal.SIGQUIT)  # the whole group, as a service manager stops it
    assert pool.wait_exit(timeout=10) == 0
    assert re.search(r"worker 1 \(pid: \d+\) exited \(exit status 0\)", pool.log()), pool.log()
    assert "respawning" not in pool.log()  # the master stopped as they did
