"""The fastrouter's failures, each said and answered: a node address a key made that does
not parse, a node failing or stalling while a spooled body goes to it; and what is not a
failure: a large vars block, a packet sent slowly."""

from __future__ import annotations

import logging

import pytest
import trio
from _routerkit import (
    ANSWER,
    EARLY_ANSWER,
    connect,
    read_all,
    send_all,
    uwsgi_backend,
    vars_then,
    wait_for,
)
from test_fastrouter import engine_for, packet, request, roundtrip, start

from brood.config.model import Config


def tracebacks(caplog) -> list:
    return [r for r in caplog.records if r.exc_info]


async def test_a_node_address_that_does_not_parse_is_a_logged_failure(caplog):
    caplog.set_level(logging.INFO)
    async with trio.open_nursery() as nursery:
        engine, _ = engine_for({b"a.example": ["127.0.0.1:nosuch.example"]})
        address, _ = await start(nursery, engine)
        answer = await roundtrip(address, request())
        nursery.cancel_scope.cancel()
    assert answer.startswith(b"HTTP/1.0 50")
    assert any("bad node address" in r.getMessage() for r in caplog.records)
    assert not tracebacks(caplog)


async def test_a_large_vars_block_is_forwarded_whatever_the_buffer_size():
    """uWSGI's fastrouter forwards any block a uwsgi header can announce (big cookies
    behind nginx); the buffer size bounds HTTP heads, not these."""
    pairs = [(b"REQUEST_METHOD", b"GET"), (b"PATH_INFO", b"/"), (b"HTTP_HOST", b"a.example"),
             (b"HTTP_COOKIE", b"c=" + b"x" * 40000)]
    data = packet(pairs)
    async with trio.open_nursery() as nursery:
        backend = await nursery.start(uwsgi_backend)
        engine, _ = engine_for({b"a.example": [backend.address]}, buffer_size=4096)
        address, _ = await start(nursery, engine)
        assert await roundtrip(address, data) == ANSWER
        nursery.cancel_scope.cancel()
    assert backend.received == [data]


async def spooled_request_to(how: str, caplog) -> bytes:
    caplog.set_level(logging.INFO)
    cfg = Config.from_dict({"fastrouter-post-buffering": 100})
    async with trio.open_nursery() as nursery:
        node = await nursery.start(vars_then, how)
        engine, _ = engine_for({b"a.example": [node]}, timeout=0.5)
        address, _ = await start(nursery, engine, cfg)
        sock = await connect(address)
        with sock, trio.fail_after(10):
            await send_all(sock, request(body=b"x" * (16 << 20)))
            answer = await read_all(sock)
        nursery.cancel_scope.cancel()
    assert not tracebacks(caplog)
    return answer


async def test_a_node_closing_while_a_spooled_body_goes_to_it_is_a_502(caplog):
    answer = await spooled_request_to("close", caplog)
    assert answer.startswith(b"HTTP/1.0 502 ")
    assert any(": 502 node " in r.getMessage() for r in caplog.records)


async def test_a_node_not_reading_a_spooled_body_is_a_504_within_the_timeout(caplog):
    answer = await spooled_request_to("stall", caplog)
    assert answer.startswith(b"HTTP/1.0 504 ")
    assert any("made no room for more of the body" in r.getMessage() for r in caplog.records)


async def test_a_packet_sent_slowly_but_steadily_is_served():
    """The timeout is per read, as in uWSGI: 10 pieces 0.1 s apart, 0.3 s timeout."""
    data = request()
    async with trio.open_nursery() as nursery:
        backend = await nursery.start(uwsgi_backend)
        engine, _ = engine_for({b"a.example": [backend.address]}, timeout=0.3)
        address, _ = await start(nursery, engine)
        sock = await connect(address)
        with sock:
            step = len(data) // 10 + 1
            for i in range(0, len(data), step):
                await send_all(sock, data[i:i + step])
                await trio.sleep(0.1)
            assert await read_all(sock) == ANSWER
        nursery.cancel_scope.cancel()


def test_a_missing_spool_directory_stops_the_start_with_a_message():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "brood", "--fastrouter", "127.0.0.1:0",
                          "--fastrouter-to", "127.0.0.1:1",
                          "--fastrouter-post-buffering-dir", "/nonexistent/brood-spool"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert "--fastrouter-post-buffering-dir" in out.stderr and "not a directory" in out.stderr


async def send_in_two(sock, data: bytes) -> None:
    """A packet in two writes: the lane hands it to the general path."""
    await send_all(sock, data[:5])
    await trio.sleep(0.01)
    await send_all(sock, data[5:])


async def asked_on_the_general_path(nursery, answer: bytes, data: bytes, *,
                                    timeout: float) -> trio.socket.SocketType:
    """A fastrouter (idle ``timeout``) before a node answering ``answer``; a client
    socket that sent ``data`` to it in two writes (the general path)."""
    backend = await nursery.start(uwsgi_backend, answer)
    engine, _ = engine_for({b"a.example": [backend.address]}, timeout=timeout)
    address, _ = await start(nursery, engine)
    sock = await connect(address)
    await send_in_two(sock, data)
    return sock


async def test_a_slow_but_steady_reader_is_not_cut_on_the_general_path():
    """The relay's idle timeout: bytes the client takes, however slowly, are progress
    (the kernel wakes a blocked sender only once a third of a large buffer is free)."""
    total = 8 << 20
    big = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % total + b"x" * total
    data = request()
    async with trio.open_nursery() as nursery:
        sock = await asked_on_the_general_path(nursery, big, data, timeout=0.15)
        with sock:
            got = 0
            with trio.fail_after(20):
                while got < len(big):
                    chunk = await sock.recv(65536)
                    assert chunk, f"cut after {got} bytes"
                    got += len(chunk)
                    await trio.sleep(0.01)
        nursery.cancel_scope.cancel()


def streamed(body_length: int, body: bytes = b"") -> bytes:
    """A request whose CONTENT_LENGTH says more than comes with the packet: the general
    path streams the rest of the body (no post-buffering)."""
    pairs = [(b"REQUEST_METHOD", b"POST"), (b"PATH_INFO", b"/"), (b"HTTP_HOST", b"a.example"),
             (b"CONTENT_LENGTH", str(body_length).encode())]
    return packet(pairs, body)


async def test_an_early_answer_to_a_streamed_body_reaches_the_client(caplog):
    """A node answers (a 413, say) and closes without reading the body: the write to it
    fails first, its answer is still in the router's socket and goes to the client."""
    caplog.set_level(logging.INFO)
    size = 16 << 20
    async with trio.open_nursery() as nursery:
        node = await nursery.start(vars_then, "early")
        engine, _ = engine_for({b"a.example": [node]}, timeout=5)
        address, _ = await start(nursery, engine)
        sock = await connect(address)

        async def send_body():
            try:
                await send_all(sock, streamed(size) + b"x" * size)
            except OSError:
                pass  # the router closed after its linger: the rest was not wanted

        with sock:
            nursery.start_soon(send_body)
            answer = await read_all(sock)
        nursery.cancel_scope.cancel()
    assert answer == EARLY_ANSWER
    assert not any(": 502 " in r.getMessage() for r in caplog.records)
    assert not tracebacks(caplog)


@pytest.mark.parametrize("size", [1000, 60000])
async def test_an_early_answer_on_the_fast_lane_is_no_node_failure(caplog, size):
    """The whole request in one send (the lane serves it): the node answers without
    reading the body and its close is a reset; the client has the answer, and no 502
    is logged against the node (the reviewer saw one per such request)."""
    data = packet([(b"REQUEST_METHOD", b"POST"), (b"PATH_INFO", b"/"),
                   (b"HTTP_HOST", b"a.example"), (b"CONTENT_LENGTH", str(size).encode())],
                  b"x" * size)
    async with trio.open_nursery() as nursery:
        node = await nursery.start(vars_then, "early")
        engine, _ = engine_for({b"a.example": [node]}, timeout=5)
        address, _ = await start(nursery, engine)
        with caplog.at_level(logging.WARNING, "brood.routers"):
            answers = [await roundtrip(address, data) for _ in range(5)]
        nursery.cancel_scope.cancel()
    assert answers == [EARLY_ANSWER] * 5
    assert not [r.getMessage() for r in caplog.records if "502" in r.getMessage()]


async def test_a_client_that_stops_sending_its_body_is_a_408_not_a_silent_node(caplog):
    caplog.set_level(logging.INFO)
    async with trio.open_nursery() as nursery:
        node = await nursery.start(vars_then, "listen")
        engine, _ = engine_for({b"a.example": [node]}, timeout=0.3)
        address, _ = await start(nursery, engine)
        sock = await connect(address)
        with sock:
            await send_all(sock, streamed(1000, b"x" * 100))
            answer = await read_all(sock)
        nursery.cancel_scope.cancel()
    assert answer.startswith(b"HTTP/1.0 408 ")
    messages = [r.getMessage() for r in caplog.records]
    assert any("client sent no body byte for 0.3s" in m for m in messages), messages
    assert not any("silent" in m for m in messages), messages


async def test_a_client_that_stops_reading_is_said_not_blamed_on_the_node(caplog):
    caplog.set_level(logging.INFO)
    total = 16 << 20
    big = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % total + b"x" * total
    data = request()

    def said() -> list[str]:
        return [r.getMessage() for r in caplog.records if "fastrouter" in r.getMessage()
                or "client" in r.getMessage() or "node" in r.getMessage()]

    async with trio.open_nursery() as nursery:
        sock = await asked_on_the_general_path(nursery, big, data, timeout=0.3)
        with sock:
            await wait_for(lambda: any("took no byte" in m for m in said()), limit=10)
        nursery.cancel_scope.cancel()
    messages = said()
    assert any("client took no byte for 0.3s" in m for m in messages), messages
    assert not any("silent" in m for m in messages), messages


async def test_a_node_that_resets_inside_its_answer_is_said(caplog):
    caplog.set_level(logging.INFO)
    data = request()
    async with trio.open_nursery() as nursery:
        node = await nursery.start(vars_then, "half")
        engine, _ = engine_for({b"a.example": [node]})
        address, _ = await start(nursery, engine)
        sock = await connect(address)
        with sock:
            await send_in_two(sock, data)
            answer = await read_all(sock)
        nursery.cancel_scope.cancel()
    assert answer == ANSWER[:-4]  # what came before the reset
    assert any(f"node {node}: " in r.getMessage() and "reset" in r.getMessage()
               for r in caplog.records), [r.getMessage() for r in caplog.records]


def test_a_code_string_that_does_not_load_stops_the_start_with_a_message(tmp_path):
    """Checked in the master without running the file (it runs in the routers, after
    privileges are dropped): a spec, a file or a function that is not there."""
    import subprocess
    import sys

    nofunc = tmp_path / "mapper.py"
    nofunc.write_text("def other(key):\n    return None\n")
    broken = tmp_path / "broken.py"
    broken.write_text("def route(key:\n")
    for value, said in ((f"0:{tmp_path}/missing.py:route", "cannot load"),
                        (f"0:{broken}:route", "cannot load"),
                        (f"0:{nofunc}:route", "has no function 'route'"),
                        ("nonsense", "expected modifier1:file:function")):
        out = subprocess.run([sys.executable, "-m", "brood", "--fastrouter", "127.0.0.1:0",
                              "--fastrouter-use-code-string", value],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode != 0 and "Traceback" not in out.stderr, out.stderr
        assert "--fastrouter-use-code-string" in out.stderr and said in out.stderr, out.stderr


def test_a_code_string_file_is_not_run_in_the_master(tmp_path, start_brood):
    """Its top-level code runs in the router processes only (uWSGI's gateways), never in
    the master before it drops privileges; one that raises as it runs is said in one
    line, no traceback."""
    mapper = tmp_path / "mapper.py"
    mapper.write_text("import os\nprint('RAN IN', os.getpid(), flush=True)\n"
                      "raise RuntimeError('broken at import')\ndef route(key):\n"
                      "    return None\n")
    router = start_brood("--master", "--fastrouter", "127.0.0.1:0",
                         "--fastrouter-use-code-string", f"0:{mapper}:route")
    router.wait_for_log(r"fastrouter 1: --fastrouter-use-code-string: cannot load code "
                        r"string file .*broken at import")
    ran = [int(m[1]) for m in router.wait_for_log(r"RAN IN (\d+)")]
    assert router.pid not in ran
    assert "Traceback" not in router.log()


def test_a_use_socket_beyond_the_sockets_stops_the_start_with_a_message():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "brood", "--fastrouter", "127.0.0.1:0",
                          "--socket", "127.0.0.1:0", "--fastrouter-use-socket=3"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "Traceback" not in out.stderr, out.stderr
    assert "--fastrouter-use-socket: use-socket 3" in out.stderr, out.stderr


def test_a_code_string_function_that_raises_is_logged(tmp_path, caplog):
    from brood.routers.process import build_engine

    mapper = tmp_path / "mapper.py"
    mapper.write_text("def route(key):\n    raise RuntimeError('boom from user code')\n")
    cfg = Config.from_dict({"fastrouter-use-code-string": f"0:{mapper}:route"})
    engine = build_engine("fastrouter", cfg)
    with caplog.at_level(logging.WARNING, "brood.routers"):
        assert engine.resolver.resolve(b"a.example", 0.0) is None
    assert "boom from user code" in caplog.text and "--fastrouter-use-code-string" in caplog.text
