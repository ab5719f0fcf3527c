"""``--X-harakiri`` as uWSGI's gateways have it: a router process whose loop is stuck
(here a --X-use-code-string function that blocks) is killed and respawned, and routes
again; ``--X-session-max-age`` is brood's cut of sessions by age (test_engine)."""

from __future__ import annotations

import socket
import threading

from _broodkit import uwsgi_request, wait_until

from brood.protocol.uwsgi import encode_packet

MAPPER = """
import time


def route(key):
    if key == b"stuck":
        time.sleep(60)  # blocks the router's loop: every connection waits with it
    return None
"""


def test_a_router_stuck_in_its_loop_is_killed_and_respawned(start_brood, tmp_path) -> None:
    mapper = tmp_path / "mapper.py"
    mapper.write_text(MAPPER)
    router = start_brood("--master", "--fastrouter", "127.0.0.1:0",
                         "--fastrouter-use-code-string", f"0:{mapper}:route",
                         "--fastrouter-harakiri", "1")
    address = router.address_of("fastrouter socket 0")
    (first,) = router.wait_for_log(r"spawned uWSGI fastrouter 1 \(pid: (\d+)")
    host, port = address.rsplit(":", 1)
    stuck = socket.create_connection((host, int(port)), timeout=30)
    packet = encode_packet([(b"REQUEST_METHOD", b"GET"), (b"PATH_INFO", b"/"),
                            (b"UWSGI_FASTROUTER_KEY", b"stuck")])
    threading.Thread(target=stuck.sendall, args=(packet,), daemon=True).start()
    try:
        router.wait_for_log(r"HARAKIRI ON GATEWAY fastrouter 1 \(pid: " + first[1], timeout=10)
        spawns = router.wait_for_log(r"spawned uWSGI fastrouter 1 \(pid: (\d+)", count=2,
                                     timeout=10)
        assert spawns[-1][1] != first[1]

        def answered() -> bool:  # the new process routes: a 503 for a key with no node
            try:
                return uwsgi_request(address)[0] == 503  # key "localhost": no node
            except OSError:
                return False

        wait_until(answered, timeout=10, what="the respawned router answering")
    finally:
        stuck.close()
