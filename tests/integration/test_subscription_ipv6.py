"""Subscriptions over IPv6: a router listening and taking announces on [::1], a worker
pool announcing to it, a request served through it."""

from __future__ import annotations

import re
import socket

import pytest
from _broodkit import http_get, wait_until


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


pytestmark = pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback")


def test_node_announces_to_an_ipv6_subscription_server(start_brood, hello_app) -> None:
    router = start_brood("--master", "--http", "[::1]:0",
                         "--http-subscription-server", "[::1]:0")
    (bound,) = router.wait_for_log(r"http subscription server bound on (\[::1\]:\d+) fd")
    server = bound[1]
    pool = start_brood("--master", "--socket", "[::1]:0", "--wsgi-file", hello_app,
                       "--disable-logging", "--subscribe-to", f"{server}:localhost")
    node = pool.address_of()
    assert node.startswith("[::1]:") and not node.endswith(":0")  # the real port announced
    router.wait_for_log(re.escape(f"localhost => new node: {node}"))
    front = router.address_of("http socket 0")

    def served() -> tuple[int, bytes] | None:
        try:
            answer = http_get(front)
        except OSError:
            return None
        return answer if answer[0] == 200 else None

    assert wait_until(served, timeout=10, what="an answer through the router")[1] == (
        b"Hello World")
