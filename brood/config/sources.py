"""What ``@(...)`` reads into a config value, as uWSGI 2.0 reads it.

``@(path)`` is a file's content (a relative path is from the working directory);
``@(exec://command)`` what ``/bin/sh -c command`` writes on its stdout (its stderr
goes to brood's); ``@(fd://N)`` what descriptor N gives until its end; ``@(http://host
[:port]/path)`` the body of a 2xx answer to a GET; ``@(-)`` the standard input. One line
end (``\\n`` or ``\\r``) at the very end is dropped and the text stops at a NUL byte, as
uWSGI's C strings do.

Where brood stops the start and uWSGI goes on: a command that exits with another
status than 0 (uWSGI uses whatever it wrote), one that runs past ``EXEC_TIMEOUT``, a
text that is not UTF-8 or larger than ``MAX_SOURCE``. Where brood stops and uWSGI
waits: an http:// answer not whole within ``HTTP_TIMEOUT``, a FIFO, pipe, descriptor
or terminal with no end within ``brood.config.ini.READ_TIMEOUT``. uWSGI's schemes that
read from its own binary (``sym://``, ``data://``, ``section://``, ``call://``,
``callint://``) or from its emperor (``emperor://``) mean nothing for brood and stop
the start too.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse

from brood.config.ini import MAX_INI, TooLarge, read_bounded, read_until_end
from brood.config.option import OptionError

# More than any value of a config; what an endless source (/dev/zero, `yes`) is cut at.
MAX_SOURCE = MAX_INI
# A config command or URL that has not answered by then will not: the start stops
# with a line rather than hanging (uWSGI waits forever).
EXEC_TIMEOUT = 60.0
HTTP_TIMEOUT = 30.0

REFUSED = {
    "sym": "a symbol of the uWSGI binary",
    "data": "data appended to the uWSGI binary",
    "section": "an ELF section of the uWSGI binary",
    "call": "a function of the uWSGI binary",
    "callint": "a function of the uWSGI binary",
    "emperor": "the config an emperor sends its vassal (brood has no emperor)",
}


def read_source(spec: str) -> str:
    """The text ``@(spec)`` stands for; OptionError (one line, without the file:line
    the caller adds) when it cannot be read."""
    scheme, sep, rest = spec.partition("://")
    if sep and scheme in REFUSED:
        raise OptionError(f"@({spec}): {scheme}:// reads {REFUSED[scheme]}: brood cannot "
                          "(run this file with uWSGI, or write the value out)")
    if sep and scheme == "exec":
        data = _run(rest)
    elif sep and scheme == "fd":
        data = _read_fd(_atoi(rest), spec)
    elif sep and scheme == "http":
        data = _http_get(rest, spec)
    elif spec == "-":
        data = _read_fd(sys.stdin.fileno(), spec)
    else:
        data = _read_file(spec)
    return _as_value(data, spec)


def _as_value(data: bytes, spec: str) -> str:
    if data[-1:] in (b"\n", b"\r"):
        data = data[:-1]
    data = data.split(b"\0", 1)[0]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise OptionError(f"@({spec}): not UTF-8 text") from None


def _too_big(spec: str) -> OptionError:
    return OptionError(f"@({spec}): more than {MAX_SOURCE >> 20} MiB: not a config value")


def _read_file(path: str) -> bytes:
    try:
        return read_bounded(path)
    except OSError as exc:
        raise OptionError(f"@({path}): cannot read {path}: {exc.strerror or exc}") from None
    except TooLarge:
        raise _too_big(path) from None


def _read_fd(fd: int, spec: str) -> bytes:
    try:
        return read_until_end(fd)
    except OSError as exc:
        raise OptionError(f"@({spec}): cannot read descriptor {fd}: "
                          f"{exc.strerror or exc}") from None
    except TooLarge:
        raise _too_big(spec) from None


def _atoi(text: str) -> int:
    """C's atoi, as uWSGI reads ``fd://N``: leading digits, 0 when there are none."""
    match = re.match(r"\s*([+-]?[0-9]+)", text)
    return int(match.group(1)) if match else 0


def _run(command: str) -> bytes:
    """stdout of ``/bin/sh -c command`` (in its own session, as uWSGI runs it)."""
    spec = f"exec://{command}"
    try:
        proc = subprocess.Popen(["/bin/sh", "-c", command], stdout=subprocess.PIPE,
                                start_new_session=True)
    except OSError as exc:
        raise OptionError(f"@({spec}): cannot run /bin/sh: {exc.strerror or exc}") from None
    assert proc.stdout is not None
    deadline = time.monotonic() + EXEC_TIMEOUT
    try:
        data = read_until_end(proc.stdout.fileno(), deadline)
        status = proc.wait(timeout=max(0.0, deadline - time.monotonic()))
    except (OSError, TooLarge, subprocess.TimeoutExpired) as exc:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        if isinstance(exc, TooLarge):
            raise _too_big(spec) from None
        if isinstance(exc, OSError) and not isinstance(exc, TimeoutError):
            raise OptionError(f"@({spec}): cannot read its output: "
                              f"{exc.strerror or exc}") from None
        raise OptionError(f"@({spec}): still running after {EXEC_TIMEOUT:g} s") from None
    finally:
        proc.stdout.close()
    if status:
        how = f"was killed by signal {-status}" if status < 0 else f"exited with status {status}"
        raise OptionError(f"@({spec}): the command {how}")
    return data


def _http_get(rest: str, spec: str) -> bytes:
    """The body of ``GET /path`` (HTTP/1.1, no redirect followed, as uWSGI follows none);
    an answer other than 2xx stops the start, as it stops uWSGI. The whole exchange has
    ``HTTP_TIMEOUT``: a server trickling a byte at a time is cut there (the socket's
    own timeout is per read)."""
    host, slash, path = rest.partition("/")
    if not slash or not host:
        raise OptionError(f"@({spec}): not an http://host[:port]/path address")
    parsed = urllib.parse.urlsplit(f"http://{host}")
    late = threading.Event()
    try:
        conn = http.client.HTTPConnection(parsed.hostname or host, parsed.port or 80,
                                          timeout=HTTP_TIMEOUT)
        try:
            conn.connect()
            timer = threading.Timer(HTTP_TIMEOUT, _cut, (conn.sock, late))
            timer.start()
            try:
                conn.request("GET", "/" + path, headers={
                    "Host": host, "User-Agent": f"brood on {socket.gethostname()}"})
                answer = conn.getresponse()
                body = answer.read(MAX_SOURCE + 1)
            finally:
                timer.cancel()
                timer.join()
        finally:
            conn.close()
    except (OSError, http.client.HTTPException, ValueError) as exc:
        if late.is_set() or isinstance(exc, TimeoutError):  # (the socket's own, first)
            raise OptionError(f"@({spec}): no whole answer within {HTTP_TIMEOUT:g} s") from None
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise OptionError(f"@({spec}): {reason or type(exc).__name__}") from None
    if late.is_set():  # (cut just as the body's last byte came)
        raise OptionError(f"@({spec}): no whole answer within {HTTP_TIMEOUT:g} s")
    if not 200 <= answer.status < 300:
        raise OptionError(f"@({spec}): answered {answer.status} {answer.reason}")
    if len(body) > MAX_SOURCE:
        raise _too_big(spec)
    return body


def _cut(sock: socket.socket, late: threading.Event) -> None:
    """The deadline of an http:// read: the blocked read ends (as the peer closing)."""
    late.set()
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
