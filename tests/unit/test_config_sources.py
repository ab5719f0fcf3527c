"""What @(...) reads (brood.config.sources): files, exec://, fd://, http://, refusals.

Trailing line ends and NUL bytes as uWSGI 2.0.21 gives them (checked there with
--show-config: "a\\n\\n" -> "a\\n", "a\\r\\n" -> "a\\r", "x\\0y" -> "x").
"""

import http.server
import os
import socket
import threading

import pytest

from brood.config import ini, sources
from brood.config.load import load_config
from brood.config.option import OptionError
from brood.config.sources import read_source


@pytest.mark.parametrize("data, expected", [
    (b"vm\n", "vm"), (b"a\n\n", "a\n"), (b"a\r\n", "a\r"), (b"a\nb\n", "a\nb"),
    (b"", ""), (b"x y", "x y"), (b"x\0y\n", "x"), (b"caf\xc3\xa9\n", "café"),
])
def test_a_file_loses_one_line_end_and_stops_at_nul(tmp_path, data, expected) -> None:
    path = tmp_path / "f"
    path.write_bytes(data)
    assert read_source(str(path)) == expected


def test_a_relative_path_is_from_the_working_directory(tmp_path, monkeypatch) -> None:
    (tmp_path / "rel").write_text("here\n")
    monkeypatch.chdir(tmp_path)
    assert read_source("rel") == "here"


@pytest.mark.parametrize("make, message", [
    (lambda p: str(p / "missing"), "cannot read .*missing: No such file or directory"),
    (lambda p: str(p), "cannot read .*: Is a directory"),
    (lambda p: _write(p / "latin1", b"caf\xe9"), "not UTF-8 text"),
])
def test_a_file_that_cannot_be_a_value_is_one_line(tmp_path, make, message) -> None:
    with pytest.raises(OptionError, match=rf"^@\(.*\): {message}$"):
        read_source(make(tmp_path))


def test_an_endless_file_is_cut_short() -> None:
    with pytest.raises(OptionError, match=r"^@\(/dev/zero\): more than 4 MiB"):
        read_source("/dev/zero")


def test_a_fifo_nobody_writes_is_one_line_not_a_wait(tmp_path, monkeypatch) -> None:
    """uWSGI waits for a writer (opening a FIFO blocks): brood gives up after
    READ_TIMEOUT, for @(), --ini/include and for-readline alike."""
    monkeypatch.setattr(ini, "READ_TIMEOUT", 0.2)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    late = rf"{fifo}: no end of it within 0.2 s \(a FIFO or pipe nobody writes\?\)$"
    with pytest.raises(OptionError, match=rf"^@\({fifo}\): cannot read {late}"):
        read_source(str(fifo))
    with pytest.raises(OptionError, match=rf"^--ini: cannot read {late}"):
        load_config(["--ini", str(fifo)], environ={})
    conf = _write(tmp_path / "a.ini", f"[uwsgi]\nfor-readline = {fifo}\nx = %(_)\n"
                                      "endfor =\n".encode())
    with pytest.raises(OptionError, match=rf"a\.ini:2: for-readline: {late}"):
        load_config([conf], environ={})


def test_a_fifo_read_once_its_writer_closes(tmp_path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)

    def write() -> None:
        with open(fifo, "wb") as fh:
            fh.write(b"from a fifo\n")

    writer = threading.Thread(target=write)
    writer.start()
    try:
        assert read_source(str(fifo)) == "from a fifo"
    finally:
        writer.join()


def test_a_pipe_that_never_ends_is_one_line(monkeypatch) -> None:
    monkeypatch.setattr(ini, "READ_TIMEOUT", 0.2)
    read_end, write_end = os.pipe()
    os.write(write_end, b"more to come")
    try:
        with pytest.raises(OptionError, match=rf"^@\(fd://{read_end}\): cannot read "
                                              r"descriptor \d+: no end of it within 0.2 s"):
            read_source(f"fd://{read_end}")
    finally:
        os.close(read_end)
        os.close(write_end)


def _write(path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


def test_exec_gives_the_commands_stdout() -> None:
    assert read_source("exec://echo hi there") == "hi there"
    assert read_source('exec://printf "a\\n\\n"') == "a\n"
    assert read_source("exec://echo $(echo nested)") == "nested"  # a shell runs it


@pytest.mark.parametrize("command, how", [
    ("false", "exited with status 1"),
    ("exit 3", "exited with status 3"),
    ("kill -9 $$", "was killed by signal 9"),
    ("no-such-command-here 2>/dev/null", "exited with status 127"),
])
def test_a_failing_command_stops_the_load(command, how) -> None:
    """uWSGI uses whatever a failed command wrote (often nothing): brood says so."""
    with pytest.raises(OptionError) as info:
        read_source(f"exec://{command}")
    assert str(info.value) == f"@(exec://{command}): the command {how}"


def test_a_command_that_never_ends_is_stopped(monkeypatch) -> None:
    monkeypatch.setattr(sources, "EXEC_TIMEOUT", 0.3)
    with pytest.raises(OptionError, match=r"^@\(exec://sleep 30\): still running after 0.3 s$"):
        read_source("exec://sleep 30")


def test_fd_reads_the_descriptor_to_its_end() -> None:
    read_end, write_end = os.pipe()
    os.write(write_end, b"from a pipe\n")
    os.close(write_end)
    try:
        assert read_source(f"fd://{read_end}") == "from a pipe"
    finally:
        os.close(read_end)


def test_a_closed_descriptor_is_one_line() -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)
    os.close(write_end)
    with pytest.raises(OptionError, match=rf"^@\(fd://{read_end}\): cannot read descriptor"):
        read_source(f"fd://{read_end}")


@pytest.mark.parametrize("scheme", ["sym", "data", "section", "call", "callint", "emperor"])
def test_schemes_of_the_uwsgi_binary_are_refused_by_name(scheme) -> None:
    with pytest.raises(OptionError) as info:
        read_source(f"{scheme}://thing")
    assert str(info.value).startswith(f"@({scheme}://thing): {scheme}:// reads ")
    assert "brood cannot" in str(info.value)


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        status, body = {"/value": (200, b"from http\n"), "/moved": (302, b"")}.get(
            self.path, (404, b"nope"))
        self.send_response(status)
        if status == 302:
            self.send_header("Location", "/value")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_http_gives_the_body_of_a_2xx_answer(http_server) -> None:
    assert read_source(f"http://{http_server}/value") == "from http"


@pytest.mark.parametrize("path, status", [("nothing", "404 Not Found"),
                                          ("moved", "302 Found")])
def test_http_other_answers_stop_the_load(http_server, path, status) -> None:
    """uWSGI stops on anything but 2xx, and follows no redirect."""
    with pytest.raises(OptionError) as info:
        read_source(f"http://{http_server}/{path}")
    assert str(info.value) == f"@(http://{http_server}/{path}): answered {status}"


def test_http_without_a_path_or_server_is_one_line() -> None:
    with pytest.raises(OptionError, match=r"not an http://host\[:port\]/path address"):
        read_source("http://127.0.0.1:1")
    with pytest.raises(OptionError, match=r"^@\(http://127\.0\.0\.1:1/x\): "):
        read_source("http://127.0.0.1:1/x")  # nothing listens on port 1


@pytest.fixture
def slow_server():
    """Answers 200 with a 1 MB Content-Length, then a byte every 20 ms (for 10 s at
    most): every read comes within the socket's timeout, the whole never does."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n")
            for _ in range(500):
                if stop.wait(0.02):
                    return
                try:
                    conn.sendall(b"x")
                except OSError:
                    return

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        yield f"127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        with socket.create_connection(listener.getsockname()):  # (if never accepted)
            pass
        thread.join()
        listener.close()


def test_http_that_trickles_is_cut_at_the_timeout(slow_server, monkeypatch) -> None:
    """HTTP_TIMEOUT is the whole answer's, not each read's (a byte every 20 ms kept
    brood reading for 1 MB)."""
    monkeypatch.setattr(sources, "HTTP_TIMEOUT", 0.5)
    with pytest.raises(OptionError) as info:
        read_source(f"http://{slow_server}/value")
    assert str(info.value) == f"@(http://{slow_server}/value): no whole answer within 0.5 s"


def test_http_that_never_answers_is_one_line(monkeypatch) -> None:
    monkeypatch.setattr(sources, "HTTP_TIMEOUT", 0.3)
    with socket.create_server(("127.0.0.1", 0)) as silent:  # (the kernel accepts)
        where = f"127.0.0.1:{silent.getsockname()[1]}"
        with pytest.raises(OptionError) as info:
            read_source(f"http://{where}/value")
    assert str(info.value) == f"@(http://{where}/value): no whole answer within 0.3 s"
