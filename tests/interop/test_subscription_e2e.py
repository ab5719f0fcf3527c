"""Subscriptions end to end, across implementations, with real processes on both sides
(issue 4, interop "Shown by"):

1. a real uWSGI node subscribes (``--subscribe-to``) to a brood HTTP router process, and a
   request with that Host through brood reaches the uWSGI app;
2. the same with a signed subscription (``KEY,0,SHA1:private.pem`` and ``--subscribe2
   ...,sign=SHA1:...``) against ``--subscriptions-sign-check``; an unsigned uWSGI node for
   the same key is refused and never gets a request;
3. a brood worker pool subscribes to a real uWSGI HTTP router and serves through it;
4. a brood worker pool subscribes to a real uWSGI fastrouter and serves through it
   (raw uwsgi packets with HTTP_HOST).

Every process is stopped with SIGINT (uWSGI reloads on SIGTERM, WIRE §0) by the module's
fixtures even when a test fails; the tests also stop what they no longer need.
"""

from __future__ import annotations

import contextlib
import re
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from _interop import HttpConn, free_port, http, need_uwsgi, uwsgi_call

pytestmark = pytest.mark.interop

APP = '''\
import os

def application(environ, start_response):
    body = os.environ.get("NODE_NAME", "unnamed").encode()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]
'''

DEADLINE = 15.0


def sub_port() -> int:
    """A loopback port free for both UDP (subscriptions) and TCP right now."""
    for _ in range(20):
        port = free_port()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            try:
                udp.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise AssertionError("no port free for both UDP and TCP")


@pytest.fixture(scope="module")
def app_file(run_dir: Path) -> str:
    path = run_dir / "named_app.py"
    path.write_text(APP)
    return str(path)


def poll_answer(call: Callable[[], tuple[int, dict[str, str], bytes]], want: bytes,
                what: str, logs: Callable[[], str], timeout: float = DEADLINE) -> None:
    """Repeat ``call`` until it answers ``(200, want)``; fail with the last answer and logs."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            status, _, body = call()
            last = (status, body[:200])
            if (status, body) == (200, want):
                return
        except (OSError, EOFError, ValueError, IndexError) as exc:
            last = exc
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: no (200, {want!r}) in {timeout}s, last {last!r}\n"
                                 f"{logs()}")
        time.sleep(0.05)


def router_saw(router, line: str, logs: Callable[[], str]) -> None:
    """Wait until a uWSGI router's log has ``line``."""
    deadline = time.monotonic() + DEADLINE
    while line not in router.log():
        assert time.monotonic() < deadline, f"uWSGI never logged {line!r}\n{logs()}"
        time.sleep(0.05)


def tcp_open(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=2):
        return True


def uwsgi_node(start_uwsgi, app_file: str, name: str, *subscribe: str):
    """A real uWSGI node (python3 plugin) answering ``name``, announcing ``subscribe``."""
    def probe(port: int) -> bool:
        return uwsgi_call(f"127.0.0.1:{port}", timeout=2)[2] == name.encode()

    return start_uwsgi(
        lambda port: ["--plugins", "python3", "--master", "--socket", f"127.0.0.1:{port}",
                      "--wsgi-file", app_file, "--env", f"NODE_NAME={name}",
                      "--reload-mercy", "2", "--worker-reload-mercy", "2", *subscribe],
        probe=probe)


def brood_router(start_brood, *extra: str):
    """A brood HTTP router with a subscription server on a fixed (free) port."""
    port = sub_port()
    router = start_brood("--master", "--http", "127.0.0.1:0",
                         "--http-subscription-server", f"127.0.0.1:{port}", *extra)
    return router, port


# ------------------------------------------------------------ uWSGI nodes -> brood router

def test_uwsgi_node_subscribes_to_brood_http_router(start_brood, start_uwsgi,
                                                    app_file: str) -> None:
    need_uwsgi("python3")
    router, port = brood_router(start_brood)
    front = router.address_of("http socket 0")
    node = uwsgi_node(start_uwsgi, app_file, "uwsgi-node",
                      "--subscribe-to", f"127.0.0.1:{port}:plain.example")

    def logs() -> str:
        return f"--- brood\n{router.log()}\n--- uwsgi\n{node.log()}"

    poll_answer(lambda: http(front, host="plain.example", timeout=3), b"uwsgi-node",
                "plain.example through brood", logs)
    assert f"plain.example => new node: 127.0.0.1:{node.port}" in router.log()
    # the slot is the announced key only: another Host has no node
    assert http(front, host="other.example", timeout=3)[0] != 200
    # uWSGI unsubscribes on SIGINT; brood then drops the node (no more 200 for the key)
    node.stop()
    deadline = time.monotonic() + DEADLINE
    while http(front, host="plain.example", timeout=3)[0] == 200:
        assert time.monotonic() < deadline, f"node still served after its exit\n{logs()}"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def sign_keys(run_dir: Path) -> tuple[Path, Path]:
    """(private key PEM, directory holding signed.example.pem = the public key)."""
    rsa = pytest.importorskip("cryptography.hazmat.primitives.asymmetric.rsa")
    serialization = pytest.importorskip("cryptography.hazmat.primitives.serialization")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = run_dir / "private.pem"
    private.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption()))
    keydir = run_dir / "pubkeys"
    keydir.mkdir()
    (keydir / "signed.example.pem").write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return private, keydir


SIGN_UNSUPPORTED = re.compile(r"[^\n]*(?:ssl|SSL|sign)[^\n]*(?:not|unsupported|unknown)[^\n]*")


@pytest.mark.parametrize("form", ["subscribe-to", "subscribe2"])
def test_signed_uwsgi_node_subscribes_to_brood_http_router(
        start_brood, start_uwsgi, app_file: str, sign_keys: tuple[Path, Path],
        form: str) -> None:
    need_uwsgi("python3")
    private, keydir = sign_keys
    router, port = brood_router(start_brood, "--subscriptions-sign-check", f"SHA1:{keydir}")
    front = router.address_of("http socket 0")
    if form == "subscribe-to":
        subscribe = ["--subscribe-to", f"127.0.0.1:{port}:signed.example,0,SHA1:{private}"]
    else:
        subscribe = ["--subscribe2",
                     f"server=127.0.0.1:{port},key=signed.example,sign=SHA1:{private}"]
    signed = uwsgi_node(start_uwsgi, app_file, "signed-node", *subscribe)

    def logs() -> str:
        return f"--- brood\n{router.log()}\n--- uwsgi (signed)\n{signed.log()}"

    try:
        poll_answer(lambda: http(front, host="signed.example", timeout=3), b"signed-node",
                    "signed.example through brood", logs)
    except AssertionError:
        found = SIGN_UNSUPPORTED.search(signed.log())
        if found:  # a uWSGI build without SSL cannot sign
            pytest.skip(f"uWSGI cannot sign subscriptions: {found.group(0).strip()}")
        raise
    assert f"signed.example => new node: 127.0.0.1:{signed.port}" in router.log()
    assert "refused" not in router.log()

    # an unsigned node for the same key: refused, and never given a request
    unsigned = uwsgi_node(start_uwsgi, app_file, "unsigned-node",
                          "--subscribe-to", f"127.0.0.1:{port}:signed.example")
    router.wait_for_log(r"signed\.example refused: unsigned packet for a signed key",
                        timeout=DEADLINE)
    with HttpConn(front, timeout=3) as conn:
        answers = {conn.request("GET", "/", host="signed.example")[2] for _ in range(20)}
    answers |= {http(front, host="signed.example", timeout=3)[2] for _ in range(10)}
    assert answers == {b"signed-node"}, logs()
    assert f"new node: 127.0.0.1:{unsigned.port}" not in router.log()
    unsigned.stop()  # its (unsigned) unsubscribe is refused too: nothing changes
    router.wait_for_log(r"unsubscribe for signed\.example refused", timeout=DEADLINE)
    signed.stop()  # the signed unsubscribe is accepted: the node goes
    router_saw(router, f"signed.example => marking 127.0.0.1:{signed.port} as failed",
               logs)


# ------------------------------------------------------------ brood pool -> uWSGI routers

def brood_pool(start_brood, app_file: str, *subscribe: str):
    return start_brood("--master", "--socket", "127.0.0.1:0", "--wsgi-file", app_file,
                       "--env", "NODE_NAME=brood-node", "-p", "1", *subscribe)


# (uWSGI plugin and option prefix, how a client reaches it, what it is called)
UWSGI_ROUTERS = {
    "http": (lambda front, host: http(front, host=host, timeout=3), "uWSGI's HTTP router"),
    "fastrouter": (lambda front, host: uwsgi_call(front, host=host, timeout=3),
                   "uWSGI's fastrouter"),
}


@pytest.mark.parametrize("kind", sorted(UWSGI_ROUTERS))
def test_brood_pool_subscribes_to_a_uwsgi_router(kind: str, start_brood, start_uwsgi,
                                                 app_file: str) -> None:
    need_uwsgi(kind)
    request, name = UWSGI_ROUTERS[kind]
    port = sub_port()
    router = start_uwsgi(
        lambda front_port: ["--plugins", kind, "--master", f"--{kind}",
                            f"127.0.0.1:{front_port}",
                            f"--{kind}-subscription-server", f"127.0.0.1:{port}"],
        probe=tcp_open)
    front = f"127.0.0.1:{router.port}"
    pool = brood_pool(start_brood, app_file, "--subscribe-to",
                      f"127.0.0.1:{port}:brood.example")

    def logs() -> str:
        return f"--- {name}\n{router.log()}\n--- brood\n{pool.log()}"

    poll_answer(lambda: request(front, "brood.example"), b"brood-node",
                f"brood.example through {name}", logs)
    # an unknown key gets no answer (uWSGI closes the connection)
    with contextlib.suppress(OSError, EOFError):
        assert request(front, "nobody.example")[0] != 200
    node = pool.address_of("uwsgi socket 0")
    assert f"brood.example => new node: {node}" in router.log()
    # brood unsubscribes at shutdown; uWSGI logs the unsubscribe as "marking ... as
    # failed" (WIRE §2.6) and removes the node: the key is no longer served
    pool.stop()
    router_saw(router, f"brood.example => marking {node} as failed", logs)
    with contextlib.suppress(OSError, EOFError):  # uWSGI closes when no node is left
        assert request(front, "brood.example")[0] != 200
    router.stop()


def test_a_brood_fastrouter_resubscribes_to_a_uwsgi_http_router(start_brood, start_uwsgi,
                                                                app_file: str) -> None:
    """Tiers: uWSGI's HTTP router -> brood's fastrouter (--fastrouter-resubscribe) ->
    a brood pool. The fastrouter announces itself, so uWSGI routes to it, not to the
    pool it may not reach."""
    need_uwsgi("http")
    upper_ss = sub_port()
    router = start_uwsgi(
        lambda front_port: ["--plugins", "http", "--master", "--http",
                            f"127.0.0.1:{front_port}",
                            "--http-subscription-server", f"127.0.0.1:{upper_ss}"],
        probe=tcp_open)
    front = f"127.0.0.1:{router.port}"
    lower_ss = sub_port()
    lower = start_brood("--master", "--fastrouter", "127.0.0.1:0",
                        "--fastrouter-subscription-server", f"127.0.0.1:{lower_ss}",
                        "--fastrouter-resubscribe", f"127.0.0.1:{upper_ss}")
    pool = brood_pool(start_brood, app_file, "--subscribe-to",
                      f"127.0.0.1:{lower_ss}:tier.example")

    def logs() -> str:
        return (f"--- uWSGI's HTTP router\n{router.log()}\n--- brood fastrouter\n"
                f"{lower.log()}\n--- brood pool\n{pool.log()}")

    poll_answer(lambda: http(front, host="tier.example", timeout=3), b"brood-node",
                "tier.example through both tiers", logs)
    fastrouter = lower.address_of("fastrouter socket 0")
    assert f"tier.example => new node: {fastrouter}" in router.log()
    assert pool.address_of("uwsgi socket 0") not in router.log()
    # the pool leaves: the fastrouter has no node of the key left and says so upstream
    pool.stop()
    router_saw(router, f"tier.example => marking {fastrouter} as failed", logs)
