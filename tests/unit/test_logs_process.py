"""The log master's loop parts, in this process over real pipes (brood.logs.process):
lines reassembled per source, routed, request lines apart, sources added by the
master's messages, everything drained at stop. And --log-date's prefix (brood.log)."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest

from brood import log as brood_log
from brood.config.model import Config
from brood.logs import control
from brood.logs.process import LogProcess, Source
from brood.logs.spec import LogPlan


@pytest.fixture
def ctl():
    ours, theirs = control.pair()
    yield ours, theirs
    ours.close()
    theirs.close()


def _process(tmp_path: Path, theirs: socket.socket, sources: list[Source], **values
             ) -> tuple[LogProcess, Path]:
    raw = tmp_path / "raw.log"
    values.setdefault("logto", str(raw))
    plan = LogPlan.from_config(Config.from_dict(values))
    fd = os.open(raw, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    return LogProcess(plan, fd, theirs, sources), raw


def test_lines_of_two_sources_never_mix(tmp_path: Path, ctl) -> None:
    a_r, a_w = os.pipe()
    b_r, b_w = os.pipe()
    proc, raw = _process(tmp_path, ctl[1], [Source(a_r, "a"), Source(b_r, "b")])
    os.write(a_w, b"A: a long line, written in ")
    os.write(b_w, b"B: one line\nB: and half")
    proc._read(proc.sources[b_r], time.time())
    proc._read(proc.sources[a_r], time.time())
    os.write(a_w, b"two writes\n")
    os.write(b_w, b" of another\n")
    proc._read(proc.sources[a_r], time.time())
    proc._read(proc.sources[b_r], time.time())
    assert raw.read_text().splitlines() == [
        "B: one line", "A: a long line, written in two writes", "B: and half of another"]
    os.close(a_w)
    os.write(b_w, b"no newline at the end")
    os.close(b_w)
    proc.drain(time.time())
    assert raw.read_text().splitlines()[-1] == "no newline at the end"
    assert not proc.sources  # (both at end of file: read to the end, closed)


def test_routes_loggers_and_the_request_channel(tmp_path: Path, ctl) -> None:
    out_r, out_w = os.pipe()
    req_r, req_w = os.pipe()
    app, every, reqs = (tmp_path / n for n in ("app.log", "every.log", "req.log"))
    proc, raw = _process(
        tmp_path, ctl[1], [Source(out_r, "w"), Source(req_r, "w", requests=True)],
        logger=[f"app file:{app}", f"file:{every}"], **{
            "req-logger": [f"file:{reqs}"], "log-route": ["app ^APP"],
            "log-drain": ["^DROP"]})
    os.write(out_w, b"APP print\nplain line\nDROP me\n")
    os.write(req_w, b"[pid: 1|app: 0|req: 1/1] GET /\n")
    proc._read(proc.sources[out_r], time.time())
    proc._read(proc.sources[req_r], time.time())
    assert app.read_text() == "APP print\n"
    assert every.read_text() == "plain line\n"
    assert reqs.read_text() == "[pid: 1|app: 0|req: 1/1] GET /\n"
    assert raw.read_text() == ""  # a logger without a name takes what is not routed
    for fd in (out_w, req_w):
        os.close(fd)
    proc.drain(time.time())


def test_the_master_adds_sources_and_asks_for_a_rotation(tmp_path: Path, ctl) -> None:
    ours, theirs = ctl
    proc, raw = _process(tmp_path, theirs, [])
    r, w = os.pipe()
    control.send(ours, {"op": "add", "sources": [{"name": "worker 1", "req": False}]}, [r])
    os.close(r)
    proc._control(time.time())
    [source] = proc.sources.values()
    assert source.name == "worker 1"
    os.write(w, b"from the worker\n")
    proc._read(source, time.time())
    control.send(ours, {"op": "rotate"})
    proc._control(time.time())
    [rotated] = tmp_path.glob("raw.log.*")
    assert rotated.read_text().startswith("from the worker\n") and raw.read_text() == ""
    control.send(ours, {"op": "stop"})
    proc._control(time.time())
    assert proc.stopping
    os.close(w)
    proc.drain(time.time())


def test_a_master_gone_means_drain_and_stop_unless_retired(tmp_path: Path, ctl) -> None:
    ours, theirs = ctl
    proc, _ = _process(tmp_path, theirs, [])
    control.send(ours, {"op": "retire"})
    proc._control(time.time())
    ours.close()
    proc._control(time.time())
    assert proc.retired and not proc.stopping
    proc.close()


@pytest.mark.parametrize(("value", "shape"), [
    (None, r"\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}"),
    ("true", r"\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}"),
    ("YES", r"\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}"),
    ("%Y-%m-%dT%H:%M:%S", r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d"),
    ("[app]", r"\[app\]"),
    ("", ""),
    ("false", "false"),  # (uWSGI 2.0.21 prints it, as a strftime format)
])
def test_log_date_prefix(value, shape, monkeypatch) -> None:
    import re

    monkeypatch.setattr(brood_log, "_date_format", None)
    brood_log.set_date(value)
    assert re.fullmatch(shape, brood_log.prefix()), brood_log.prefix()


def test_encoders_per_logger_and_per_channel(tmp_path: Path, ctl) -> None:
    """--log-encoder on the general lines (the plain log's chain leaves out the one bound
    to a name), ``:NAME`` on the routed logger's; --log-req-encoder on a --req-logger's
    lines; a carriage return inside a line keeps it one line."""
    out_r, out_w = os.pipe()
    req_r, req_w = os.pipe()
    app, reqs = tmp_path / "app.log", tmp_path / "req.log"
    proc, raw = _process(
        tmp_path, ctl[1], [Source(out_r, "w"), Source(req_r, "w", requests=True)],
        logger=[f"app file:{app}"], **{
            "req-logger": [f"file:{reqs}"], "log-route": ["app ^APP"],
            "log-encoder": ["format <${msg}>", "json:app {\"m\":\"${msg}\"}", "nl"],
            "log-req-encoder": ["prefix [req] "]})
    os.write(out_w, b"APP a\"b\nplain\rline\n")
    os.write(req_w, b"GET /\n")
    proc._read(proc.sources[out_r], time.time())
    proc._read(proc.sources[req_r], time.time())
    assert app.read_bytes() == b'{"m":"<APP a\\"b>"}\n'
    assert raw.read_bytes() == b"<plain\rline>\n"
    assert reqs.read_bytes() == b"[req] GET /\n"
    for fd in (out_w, req_w):
        os.close(fd)
    proc.drain(time.time())


def test_a_datagram_logger_gets_one_datagram_per_encoded_line(tmp_path: Path, ctl) -> None:
    import gzip

    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.settimeout(5)
    port = receiver.getsockname()[1]
    out_r, out_w = os.pipe()
    proc, _ = _process(tmp_path, ctl[1], [Source(out_r, "w")],
                       logger=[f"socket:127.0.0.1:{port}"],
                       **{"log-encoder": ["format ${msg}", "gzip"]})
    os.write(out_w, b"one\ntwo\n")
    proc._read(proc.sources[out_r], time.time())
    assert [gzip.decompress(receiver.recv(65536)) for _ in range(2)] == [b"one", b"two"]
    os.close(out_w)
    proc.drain(time.time())
    receiver.close()


def test_an_encoder_that_makes_nothing_writes_nothing(tmp_path: Path, ctl) -> None:
    """``json`` without a template: uWSGI's loggers get 0 bytes for every line."""
    out_r, out_w = os.pipe()
    proc, raw = _process(tmp_path, ctl[1], [Source(out_r, "w")],
                         **{"log-encoder": ["json"]})
    os.write(out_w, b"gone\n")
    proc._read(proc.sources[out_r], time.time())
    assert raw.read_bytes() == b""
    os.close(out_w)
    proc.drain(time.time())
